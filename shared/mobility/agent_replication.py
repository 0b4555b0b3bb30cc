"""A Mobility agent replicating its own server: the appliance's cycle protocol, over the agent's routes.

The agent runs on the source server's stdlib Python, so it cannot publish to Event Grid; it calls the API
instead, with its own credential (`Authorization: Bearer <agentId>.<secret>` from its registration). Each
use case here first finds the agent's machine (an agent registered by hostname and BIOS UUID has none yet:
409) and then does what the appliance path does for that machine: the same command queue (only the
machine's cycle commands: RunCycle, ResyncDisk), the same write-only SAS scope, the same cycle inbox. An
agent acts for its own machine only: naming another machine is a 403, and nothing is changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from shared import health
from shared.appliances import commands, upload_credentials
from shared.appliances.events import CycleFailed, CycleUploaded
from shared.domain.api import UploadCredentials, UploadCredentialsRequest
from shared.domain.command import ApplianceCommand, CommandKind
from shared.domain.cycle import CycleKind
from shared.domain.errors import Conflict, Forbidden, NotFound
from shared.domain.machine import Machine
from shared.domain.policy import ReplicationPolicy
from shared.domain.wire import RequestModel, ResourceId, WireModel
from shared.mobility.registration import MobilityAgent, machines_with_agents
from shared.platform.repository import Repositories
from shared.replication import cycles

# What an agent answers: its machine's cycles. Shutdown, power and reverse protection stay the appliance's.
AGENT_COMMAND_KINDS = frozenset({CommandKind.RUN_CYCLE, CommandKind.RESYNC_DISK})


class AgentCommandList(WireModel):
    """GET /api/mobility/agents/commands: the agent's machine, where its next cycle continues, its commands."""

    machine_id: str
    last_applied_sequence: int | None = Field(
        description="the newest applied cycle's sequence (null before the first): a delta must be this + 1, "
        "an initial or resync higher than it"
    )
    commands: list[ApplianceCommand] = Field(
        description="pending RunCycle and ResyncDisk commands of the agent's machine, oldest first"
    )


class AgentCycleUploaded(RequestModel):
    """POST /api/mobility/agents/cycles: every disk's data blobs and manifest of the cycle are uploaded.

    The fields of the `Migrate.Replication.CycleUploaded` event without `applianceId` (the agent is not an
    appliance: the control plane fills in the machine's)."""

    machine_id: ResourceId = Field(description="the agent's own machine")
    cycle_id: ResourceId = Field(
        description="never reused: the same id again is a duplicate if identical, else refused"
    )
    sequence: int = Field(
        ge=0,
        description="a delta or final applies only as the machine's lastAppliedSequence + 1, an initial or "
        "resync whenever it is higher",
    )
    kind: CycleKind
    app_consistent: bool = False
    manifests: dict[str, str] = Field(
        min_length=1,
        description="disk id (of the machine's inventory) -> its manifest's blob name in `uploads`, "
        "{machineId}/{cycleId}/{diskId}/manifest.json",
    )


class AgentCycleAccepted(WireModel):
    machine_id: str
    cycle_id: str
    sequence: int
    duplicate: bool = Field(description="the same cycle was already accepted: nothing changed")


def agent_machine(repos: Repositories, agent: MobilityAgent) -> Machine:
    """The machine the agent registered for (409 when it registered without one, 404 when it is gone)."""
    if agent.machine_id is None:
        raise Conflict(
            f"agent {agent.id} registered with hostname and BIOS UUID, not with a machine id, so it has no "
            "machine to replicate: register it again with the machine id (UnifiedAgentConfigurator.sh -m)",
            details=[{"agentId": agent.id}],
        )
    return repos.machines.require(agent.machine_id).item


def _own(agent: MobilityAgent, machine_id: str) -> None:
    if machine_id != agent.machine_id:
        raise Forbidden(
            f"agent {agent.id} replicates machine {agent.machine_id}, not {machine_id}: an agent acts for its "
            "own machine only",
            details=[{"machineId": machine_id}],
        )


def agent_commands(repos: Repositories, agent: MobilityAgent) -> AgentCommandList:
    """The machine's pending cycle commands from its appliance's queue (one single-partition query)."""
    machine = agent_machine(repos, agent)
    pending = [
        c
        for c in commands.pending_commands(repos, machine.appliance_id)
        if c.machine_id == machine.id and c.kind in AGENT_COMMAND_KINDS
    ]
    return AgentCommandList(
        machine_id=machine.id,
        last_applied_sequence=machine.replication.last_applied_sequence,
        commands=pending,
    )


def appliance_commands(repos: Repositories, appliance_id: str) -> list[ApplianceCommand]:
    """GET /api/appliances/{id}/commands: the appliance's pending commands less the cycle commands of the
    machines a Mobility agent replicates, which only the agent may answer (two sources taking cycles of one
    machine would race for its sequence numbers). One query, plus one query of the agents of all the
    machines with a pending cycle command (when there are any), however many they are."""
    pending = commands.pending_commands(repos, appliance_id)
    cycle_machines = {c.machine_id for c in pending if c.kind in AGENT_COMMAND_KINDS}
    agent_replicated = machines_with_agents(repos, cycle_machines) if cycle_machines else set()
    return [c for c in pending if not (c.kind in AGENT_COMMAND_KINDS and c.machine_id in agent_replicated)]


def acknowledge_agent_command(
    repos: Repositories, agent: MobilityAgent, command_id: str, *, now: datetime
) -> ApplianceCommand:
    """Acknowledge one of the machine's cycle commands (idempotent); 403 for any other command."""
    machine = agent_machine(repos, agent)
    found = repos.commands.get(command_id, machine.appliance_id)
    if found is None:
        raise NotFound(f"machine {machine.id} has no command {command_id}", details=[{"id": command_id}])
    command = found.item
    if command.machine_id != machine.id or command.kind not in AGENT_COMMAND_KINDS:
        raise Forbidden(
            f"command {command_id} is not a cycle command of machine {machine.id}: an agent acknowledges only "
            "its own machine's RunCycle and ResyncDisk",
            details=[{"id": command_id}],
        )
    return commands.acknowledge_command(repos, machine.appliance_id, command_id, now=now)


def agent_policy(repos: Repositories, agent: MobilityAgent) -> ReplicationPolicy:
    """The replication policy of the machine's appliance: one throttle for every source it protects."""
    machine = agent_machine(repos, agent)
    return repos.appliances.require(machine.appliance_id).item.policy


def issue_agent_upload_credentials(
    repos: Repositories,
    signer: upload_credentials.BlobSigner,
    agent: MobilityAgent,
    request: UploadCredentialsRequest,
    *,
    now: datetime,
) -> UploadCredentials:
    """Write-only SAS URLs for the named blobs of a cycle of the agent's own machine, as for an appliance."""
    upload_credentials.check_cycle_blob_names(request)
    _own(agent, request.machine_id)
    agent_machine(repos, agent)
    return upload_credentials.sign_cycle_blobs(signer, request, now=now)


def accept_agent_cycle(
    repos: Repositories, agent: MobilityAgent, body: AgentCycleUploaded, *, now: datetime
) -> tuple[AgentCycleAccepted, cycles.CycleAcceptance]:
    """The cycle into the machine's inbox, exactly as an appliance's CycleUploaded event puts it there
    (same checks, same idempotency by cycle id); the caller wakes the machine's orchestration."""
    _own(agent, body.machine_id)
    machine = agent_machine(repos, agent)
    upload = CycleUploaded(
        appliance_id=machine.appliance_id,
        machine_id=machine.id,
        cycle_id=body.cycle_id,
        sequence=body.sequence,
        kind=body.kind,
        app_consistent=body.app_consistent,
        manifests=body.manifests,
    )
    accepted = cycles.accept_cycle_upload(repos, upload, now=now)
    answer = AgentCycleAccepted(
        machine_id=machine.id, cycle_id=body.cycle_id, sequence=body.sequence, duplicate=accepted.duplicate
    )
    return answer, accepted


# --- a cycle the agent could not take ---------------------------------------------------------------------

ReportId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class AgentCycleFailed(RequestModel):
    """POST /api/mobility/agents/cycle-failures: the agent could not take or upload a cycle (a disk it cannot
    read, a disk whose size changed). What an appliance's `Migrate.Replication.CycleFailed` event says."""

    report_id: ReportId = Field(
        description="unique per failure, the same on a retry of the same report (it is then counted once)"
    )
    machine_id: ResourceId = Field(description="the agent's own machine")
    failed_at: datetime = Field(description="when the cycle failed, on the server's clock (UTC)")
    cycle_id: ResourceId | None = None
    disk_id: ResourceId | None = None
    error_code: str | None = Field(
        default=None, max_length=64, description="a catalog code, when the agent knows one"
    )
    message: str = Field(min_length=1, max_length=8192)


class AgentCycleFailureRecorded(WireModel):
    machine_id: str
    error_code: str = Field(description="the catalog entry the failure was matched to")
    health: str = Field(description="the machine's health after it")


def record_agent_cycle_failure(
    repos: Repositories,
    agent: MobilityAgent,
    body: AgentCycleFailed,
    *,
    now: datetime,
    settings: health.HealthSettings,
) -> AgentCycleFailureRecorded:
    """The failure becomes the machine's catalog error exactly as an appliance's CycleFailed does."""
    _own(agent, body.machine_id)
    machine = agent_machine(repos, agent)
    failure = CycleFailed(
        appliance_id=machine.appliance_id,
        machine_id=machine.id,
        cycle_id=body.cycle_id,
        disk_id=body.disk_id,
        error_code=body.error_code,
        message=body.message,
    )
    recorded = health.record_appliance_failure(
        repos,
        failure,
        event_id=f"{agent.id}-{body.report_id}",
        # The server's clock may run ahead: a failure is never dated after it reached us.
        reported_at=min(body.failed_at, now),
        settings=settings,
    )
    return AgentCycleFailureRecorded(
        machine_id=machine.id,
        error_code=recorded.events[0].error_code or "",
        health=recorded.change.health.value,
    )
