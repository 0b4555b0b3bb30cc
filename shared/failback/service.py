"""Reprotect to on-premises: the use cases behind POST /api/machines/{id}/reprotect, its job and the
reverse cycles that follow it.

The HTTP function moves the machine FailoverCommitted -> ReverseReprotecting, records the Reprotect job
and the machine's reverse protection (the appliance, each Azure disk and the on-premises disk it is
written to) here, then starts the machine's reverse orchestration. The job's steps run as activities
that call the functions below; the job ends here: ReverseReplicating with the initial sync's reverse
recovery point, or back to FailoverCommitted with the catalog's error (health through the health
writer) naming the failing step. Reverse cycles record their points here too (`record_reverse_point`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from shared.appliances.commands import queue_reverse_command
from shared.domain.appliance import Appliance
from shared.domain.command import (
    ApplianceCommand,
    CommandResult,
    CommandStatus,
    PowerOffMachine,
    ReverseRequest,
)
from shared.domain.errors import Conflict, NotFound
from shared.domain.failback import (
    MAX_REVERSE_DISKS_PER_APPLIANCE,
    MAX_REVERSE_POINTS,
    BaselineMethod,
    ReprotectStep,
    ReverseDisk,
    ReverseProtection,
    ReverseRecoveryPoint,
)
from shared.domain.job import Job, JobError, JobKind, JobStatus, new_job
from shared.domain.lifecycle import MachineState, transition
from shared.domain.machine import Machine
from shared.domain.pending_start import StartRunner
from shared.domain.wire import RequestModel
from shared.health import (
    Failure,
    HealthRules,
    HealthSettings,
    Transition,
    health_event,
    record_failures,
    record_reverse_point_health,
)
from shared.health.catalog import reprotect_error
from shared.jobs import lifecycle as jobs
from shared.jobs import starts
from shared.platform.documents import Query
from shared.platform.repository import Repositories

# The reverse data path is in place: reverse cycles run (ReverseReplicating), or a planned failback's
# pre-sync and final sync (PlannedFailingBack) or its cancel (CancellingPlannedFailback) use it.
REVERSE_STATES = frozenset(
    {
        MachineState.REVERSE_REPROTECTING,
        MachineState.REVERSE_REPLICATING,
        MachineState.PLANNED_FAILING_BACK,
        MachineState.CANCELLING_PLANNED_FAILBACK,
    }
)


class ReprotectRequest(RequestModel):
    """Body of POST /api/machines/{id}/reprotect."""

    appliance_id: str = Field(
        min_length=1,
        max_length=200,
        description="the appliance that writes the on-premises machine's disks (healthy, of the machine's kind)",
    )


class ApplianceNotFound(NotFound):
    code = "ApplianceNotFound"


class NoFailoverToProtect(Conflict):
    code = "NoFailoverToProtect"


@dataclass(frozen=True)
class ReprotectStarted:
    machine: Machine
    job: Job
    replayed: bool = False  # a resend of a recorded start: its orchestration may already run it


def reprotect_steps() -> tuple[str, ...]:
    return tuple(step.value for step in ReprotectStep)


def start_reprotect(
    repos: Repositories,
    machine_id: str,
    request: ReprotectRequest,
    *,
    job_id: str,
    now: datetime,
    idempotency_key: starts.RetryOf | str | None = None,
) -> ReprotectStarted:
    """FailoverCommitted -> ReverseReprotecting and a Reprotect job. 404 for an unknown appliance, 409
    (with `allowedOperations`) when the machine is in another state or has no failed-over disks; nothing
    is written then. Crash-safe (`shared.jobs.starts`, runner REVERSE): the reverse orchestration
    acknowledges the job when it checks its prerequisites."""
    if repos.appliances.get(request.appliance_id) is None:
        raise ApplianceNotFound(
            f"appliance {request.appliance_id} is not registered; use the id of a registered appliance of "
            "the machine's kind",
            details=[{"applianceId": request.appliance_id}],
        )

    def apply(machine: Machine) -> None:
        transition(machine, MachineState.REVERSE_REPROTECTING, action="reprotect to on-premises")
        failover = machine.failover
        if failover is None or not failover.disk_ids:
            raise NoFailoverToProtect(
                f"machine {machine.id} has no failed-over disks recorded: nothing to protect back",
                details=[{"machineId": machine.id}],
            )
        machine.reverse = ReverseProtection(
            job_id=job_id, appliance_id=request.appliance_id, disks=disk_pairs(machine)
        )
        machine.active_job_id = job_id
        machine.updated_at = now

    job = new_job(job_id, JobKind.REPROTECT, machine_id, reprotect_steps(), now)
    started = starts.begin(
        repos, machine_id, apply, job, now=now, idempotency_key=idempotency_key, runner=StartRunner.REVERSE
    )
    return ReprotectStarted(started.machine, started.job, started.replayed)


def disk_pairs(machine: Machine) -> list[ReverseDisk]:
    """Each Azure disk with the on-premises disk it came from: the failover made the OS disk first, then
    the data disks in the inventory's order."""
    assert machine.failover is not None
    inventory = machine.inventory
    on_premises = [inventory.os_disk.id] + [d.id for d in inventory.disks if not d.is_os_disk]
    return [
        ReverseDisk(azure_disk_id=azure, on_premises_disk_id=on_premises[i] if i < len(on_premises) else "")
        for i, azure in enumerate(machine.failover.disk_ids)
    ]


# --- the job's steps ------------------------------------------------------------------------------


class Problem(BaseModel):
    """Why a step cannot go on: the catalog code and the reason."""

    model_config = ConfigDict(frozen=True)

    code: str
    message: str


def reprotecting(repos: Repositories, machine_id: str, job_id: str) -> Machine:
    machine = repos.machines.require(machine_id).item
    if machine.state is not MachineState.REVERSE_REPROTECTING or machine.reverse is None:
        raise Conflict(f"machine {machine_id} is {machine.state}, not reprotecting (job {job_id})")
    if machine.reverse.job_id != job_id:
        raise Conflict(
            f"machine {machine_id} is reprotecting under job {machine.reverse.job_id}, not {job_id}"
        )
    return machine


def prerequisite_problem(
    machine: Machine,
    appliance: Appliance | None,
    *,
    machine_appliance: Appliance | None,
    azure_disk_sizes: dict[str, int],
    disks_on_appliance: int,
    now: datetime,
    heartbeat_timeout: timedelta,
) -> Problem | None:
    """The first reason the reprotect cannot start, or None. Pure: the caller reads the appliance, the
    Azure disks' sizes and how many disks the appliance already writes back."""
    assert machine.reverse is not None
    appliance_id = machine.reverse.appliance_id
    if appliance is None:
        return Problem(code="ApplianceUnreachable", message=f"appliance {appliance_id} is not registered")
    if machine_appliance is not None and appliance.kind is not machine_appliance.kind:
        return Problem(
            code="ApplianceUnreachable",
            message=f"appliance {appliance.name} is a {appliance.kind.value} appliance; machine {machine.id} "
            f"was replicated by a {machine_appliance.kind.value} appliance: choose one of that kind",
        )
    if appliance.last_heartbeat is None or now - appliance.last_heartbeat > heartbeat_timeout:
        heard = appliance.last_heartbeat.isoformat() if appliance.last_heartbeat else "never"
        return Problem(
            code="ApplianceUnreachable",
            message=f"appliance {appliance.name} is not healthy: its last heartbeat was {heard} (more than "
            f"{heartbeat_timeout.total_seconds() / 60:.0f} minutes ago)",
        )
    disks = machine.reverse.disks
    if disks_on_appliance + len(disks) > MAX_REVERSE_DISKS_PER_APPLIANCE:
        return Problem(
            code="ReprotectStepFailed",
            message=f"appliance {appliance.name} already writes {disks_on_appliance} disk(s) back; this "
            f"machine's {len(disks)} would pass its limit of {MAX_REVERSE_DISKS_PER_APPLIANCE}: use another "
            "appliance",
        )
    sizes = {d.id: d.size_bytes for d in machine.inventory.disks}
    for disk in disks:
        if disk.on_premises_disk_id not in sizes:
            return Problem(
                code="OnPremisesDiskNotFound",
                message=f"the on-premises machine has no disk for Azure disk {disk.azure_disk_id}",
            )
        azure_size = azure_disk_sizes.get(disk.azure_disk_id)
        if azure_size is None:
            return Problem(
                code="ReprotectStepFailed", message=f"Azure disk {disk.azure_disk_id} was not found"
            )
        if sizes[disk.on_premises_disk_id] < azure_size:
            return Problem(
                code="OnPremisesDiskTooSmall",
                message=f"on-premises disk {disk.on_premises_disk_id} is {sizes[disk.on_premises_disk_id]} "
                f"bytes; Azure disk {disk.azure_disk_id} is {azure_size} bytes",
            )
    return None


def disks_written_back(repos: Repositories, appliance_id: str, *, except_machine: str) -> int:
    """Disks of the other machines this appliance protects back now (one cross-partition query)."""
    machines = repos.machines.query(Query(equals={"applianceId": appliance_id}), partition_key=None)
    others = repos.machines.query(Query(equals={"reverse.applianceId": appliance_id}), partition_key=None)
    seen = {m.id: m for m in [*machines, *others]}
    return sum(
        len(m.reverse.disks)
        for m in seen.values()
        if m.id != except_machine
        and m.reverse is not None
        and m.reverse.appliance_id == appliance_id
        and m.state in REVERSE_STATES
    )


def record_disk_sizes(repos: Repositories, machine_id: str, sizes: dict[str, int], *, now: datetime) -> None:
    def apply(machine: Machine) -> None:
        if machine.reverse is None:
            return
        machine.reverse.disks = [
            d.model_copy(update={"size_bytes": sizes.get(d.azure_disk_id, d.size_bytes)})
            for d in machine.reverse.disks
        ]
        machine.updated_at = now

    repos.machines.update_with_retry(machine_id, apply)


def queue_for_reverse_appliance(
    repos: Repositories, machine_id: str, command_id: str, request: ReverseRequest, *, now: datetime
) -> ApplianceCommand:
    """Queue a reverse-protection command for the appliance the machine is protected back with;
    idempotent by command id."""
    machine = repos.machines.require(machine_id).item
    appliance_id = machine.reverse.appliance_id if machine.reverse is not None else machine.appliance_id
    return queue_reverse_command(
        repos,
        command_id=command_id,
        machine_id=machine_id,
        request=request,
        now=now,
        appliance_id=appliance_id,
    )


def queue_power_off(repos: Repositories, machine_id: str, job_id: str, *, now: datetime) -> str:
    command_id = f"{job_id}-power-off"
    queue_for_reverse_appliance(repos, machine_id, command_id, PowerOffMachine(), now=now)
    return command_id


class CommandState(BaseModel):
    """A queued command as the waiting flow sees it."""

    model_config = ConfigDict(frozen=True)

    acknowledged: bool
    result: CommandResult | None = None
    error_code: str | None = None
    error_message: str | None = None


def command_state(repos: Repositories, machine_id: str, command_id: str) -> CommandState:
    machine = repos.machines.require(machine_id).item
    appliance_id = machine.reverse.appliance_id if machine.reverse is not None else machine.appliance_id
    stored = repos.commands.get(command_id, appliance_id)
    if stored is None or stored.item.status is not CommandStatus.ACKNOWLEDGED:
        return CommandState(acknowledged=False)
    command = stored.item
    return CommandState(
        acknowledged=True,
        result=command.result,
        error_code=command.error.code if command.error else None,
        error_message=command.error.message if command.error else None,
    )


def failover_point_cycle(machine: Machine) -> str | None:
    """The forward cycle that made the recovery point the Azure VM was built from."""
    point_id = machine.failover.recovery_point_id if machine.failover else None
    point = next((p for p in machine.replication.recovery_points if p.id == point_id), None)
    return point.cycle_id if point is not None else None


# --- recording ------------------------------------------------------------------------------------


class ReverseTotals(BaseModel):
    model_config = ConfigDict(frozen=True)

    bytes_processed: int = 0
    bytes_transferred: int = 0
    bytes_matched: int = 0


def record_reverse_point(
    repos: Repositories,
    machine_id: str,
    *,
    cycle_id: str,
    snapshot_ids: dict[str, str],
    totals: ReverseTotals,
    now: datetime,
    baseline: BaselineMethod | None = None,
    rules: HealthRules | None = None,
) -> ReverseRecoveryPoint | None:
    """The on-premises disks equal the Azure disks at these snapshots (by Azure disk id): a reverse
    recovery point, the disks' last snapshots, the bytes counted. Idempotent by cycle id. With `rules`
    the point also heals the reverse direction's next-cycle errors (ReverseRpoExceeded among them), with
    an event when that changes the machine's health."""
    recorded: list[ReverseRecoveryPoint] = []
    healed: list[Transition] = []

    def apply(machine: Machine) -> None:
        reverse = machine.reverse
        if reverse is None or machine.state not in REVERSE_STATES:
            return
        if any(p.cycle_id == cycle_id for p in reverse.recovery_points):
            return
        point = ReverseRecoveryPoint(
            id=f"rrp-{cycle_id}"[-200:],
            cycle_id=cycle_id,
            created_at=now,
            snapshot_ids=[
                snapshot_ids[d.azure_disk_id] for d in reverse.disks if d.azure_disk_id in snapshot_ids
            ],
            bytes_processed=totals.bytes_processed,
            bytes_transferred=totals.bytes_transferred,
            bytes_matched=totals.bytes_matched,
        )
        reverse.disks = [
            d.model_copy(update={"last_snapshot_id": snapshot_ids.get(d.azure_disk_id, d.last_snapshot_id)})
            for d in reverse.disks
        ]
        reverse.recovery_points = [*reverse.recovery_points, point][-MAX_REVERSE_POINTS:]
        reverse.bytes_processed += totals.bytes_processed
        reverse.bytes_transferred += totals.bytes_transferred
        reverse.bytes_matched += totals.bytes_matched
        reverse.last_point_at = now
        if baseline is not None:
            reverse.baseline = baseline
        if machine.state is MachineState.REVERSE_REPLICATING:
            reverse.cycle_sequence += 1
        machine.updated_at = now
        recorded.append(point)
        if rules is not None:
            healed.append(record_reverse_point_health(machine, at=now, rules=rules))

    repos.machines.update_with_retry(machine_id, apply)
    if healed and healed[-1].changed:
        repos.events.put(
            health_event(
                machine_id,
                f"rrp-{cycle_id}-health"[-200:],
                now,
                healed[-1],
                "a reverse recovery point was recorded",
            )
        )
    return recorded[0] if recorded else None


# --- the job's end --------------------------------------------------------------------------------


class ReprotectOutcome(BaseModel):
    """How the Reprotect job ends."""

    model_config = ConfigDict(frozen=True)

    machine_id: str
    job_id: str
    succeeded: bool
    failed_step: str | None = None
    error_code: str | None = None
    error_message: str | None = None


def end_reprotect(
    repos: Repositories, outcome: ReprotectOutcome, *, now: datetime, health: HealthSettings
) -> Job:
    """ReverseReplicating, or back to FailoverCommitted with the catalog's error (through the health
    writer) and the job Failed at its step. Idempotent."""
    job = jobs.require(repos, outcome.job_id)
    if job.status.finished:
        return job
    if outcome.succeeded:

        def succeed(machine: Machine) -> None:
            if machine.state is MachineState.REVERSE_REPROTECTING and machine.active_job_id == job.id:
                transition(machine, MachineState.REVERSE_REPLICATING, action="start reverse replication")
                machine.updated_at = now

        repos.machines.update_with_retry(outcome.machine_id, succeed)
        warned = any(s.status is JobStatus.WARNING for s in job.steps)
        return jobs.finish(repos, job.id, JobStatus.WARNING if warned else JobStatus.SUCCEEDED, now=now)

    step = outcome.failed_step or ReprotectStep.CHECK_PREREQUISITES.value
    match = reprotect_error(step, outcome.error_code, reason=outcome.error_message or "the step failed")

    def back(machine: Machine) -> None:
        if machine.state is MachineState.REVERSE_REPROTECTING and machine.active_job_id == job.id:
            transition(machine, MachineState.FAILOVER_COMMITTED, action="end the failed reprotect")
            machine.reverse = None
            machine.updated_at = now

    machine = repos.machines.require(outcome.machine_id).item
    if machine.state is MachineState.REVERSE_REPROTECTING and machine.active_job_id == job.id:
        record_failures(
            repos,
            outcome.machine_id,
            [Failure(match=match, at=now, event_id=f"{job.id}-failed", values=dict(match.values))],
            settings=health,
            also=back,
        )
    rendered = match.render()
    steps = " ".join(f"({i}) {r}" for i, r in enumerate(rendered.recommendations, start=1))
    error = JobError(code=match.error_code, message=f"{match.message} Recommended steps: {steps}")
    return jobs.finish(repos, job.id, JobStatus.FAILED, now=now, error=error, failed_step=step)
