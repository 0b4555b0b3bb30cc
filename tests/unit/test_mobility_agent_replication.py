"""An agent replicating its own server through the API: it sees and acknowledges only its machine's cycle
commands, gets SAS URLs only for its machine's cycle blobs, and its cycles enter the machine's inbox as an
appliance's CycleUploaded would; anything else is refused and changes nothing. The push body's disk paths
are checked against the machine's inventory."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from azure.storage.blob import BlobSasPermissions

from shared.appliances import commands
from shared.appliances.credentials import CredentialHasher
from shared.domain.api import UploadCredentialsRequest
from shared.domain.appliance import Appliance
from shared.domain.command import CommandKind, CommandStatus
from shared.domain.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shared.domain.lifecycle import MachineState
from shared.domain.machine import Machine
from shared.health import events as machine_events
from shared.health.settings import HealthSettings
from shared.mobility import agent_replication, registration
from shared.mobility.agent_replication import AgentCycleUploaded
from shared.mobility.push import PushInstallBody
from shared.mobility.registration import MobilityAgent, RegisterAgentRequest
from shared.platform.repository import Repositories
from tests.support.memory_store import InMemoryDocumentStore
from tests.unit.test_api_http import machine_json

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


class Signer:
    def __init__(self) -> None:
        self.signed: list[str] = []

    def blob_url(
        self, blob_name: str, *, permission: BlobSasPermissions, expiry: datetime, now: datetime
    ) -> str:
        self.signed.append(blob_name)
        return f"https://cache/uploads/{blob_name}?sp={permission}"


def _machine(machine_id: str, state: MachineState = MachineState.INITIAL_REPLICATION) -> Machine:
    return Machine.model_validate(
        {
            "id": machine_id,
            "applianceId": "appl-1",
            "inventory": {k: v for k, v in machine_json(machine_id).items() if k != "id"},
            "state": state.value,
            "discoveredAt": NOW.isoformat(),
            "updatedAt": NOW.isoformat(),
        }
    )


@pytest.fixture
def repos() -> Repositories:
    repos = Repositories(InMemoryDocumentStore())
    repos.appliances.add(
        Appliance(id="appl-1", name="a", kind="vmware", site="s", credential_hash="-", registered_at=NOW)
    )
    for machine_id in ("m-1", "m-2"):
        repos.machines.add(_machine(machine_id))
    return repos


@pytest.fixture
def agent(repos: Repositories) -> MobilityAgent:
    hasher = CredentialHasher(b"agent-replication-pepper-0123", n=2**12)
    passphrase = registration.rotate_passphrase(repos, hasher, now=NOW).passphrase
    request = RegisterAgentRequest.model_validate({"passphrase": passphrase, "machineId": "m-1"})
    registered = registration.register_agent(repos, hasher, request, now=NOW)
    return registration.authenticate_agent(repos, hasher, registered.credential)


def _queue(repos: Repositories, command_id: str, machine_id: str, kind: CommandKind, **extra: Any) -> None:
    commands.queue_command(repos, command_id=command_id, machine_id=machine_id, kind=kind, now=NOW, **extra)


def test_the_agent_sees_and_acknowledges_only_its_machines_cycle_commands(
    repos: Repositories, agent: MobilityAgent
) -> None:
    _queue(repos, "run-1", "m-1", CommandKind.RUN_CYCLE, cycle_kind="initial")
    _queue(repos, "resync-1", "m-1", CommandKind.RESYNC_DISK, disk_id="sda")
    _queue(repos, "shutdown-1", "m-1", CommandKind.SHUT_DOWN_SOURCE)
    _queue(repos, "run-2", "m-2", CommandKind.RUN_CYCLE)
    work = agent_replication.agent_commands(repos, agent)
    assert work.machine_id == "m-1" and work.last_applied_sequence is None
    assert [c.id for c in work.commands] == ["run-1", "resync-1"]

    for other in ("shutdown-1", "run-2"):
        with pytest.raises(Forbidden):
            agent_replication.acknowledge_agent_command(repos, agent, other, now=NOW)
        assert repos.commands.require(other, "appl-1").item.status is CommandStatus.PENDING
    with pytest.raises(NotFound):
        agent_replication.acknowledge_agent_command(repos, agent, "no-such", now=NOW)
    acked = agent_replication.acknowledge_agent_command(repos, agent, "run-1", now=NOW)
    assert acked.status is CommandStatus.ACKNOWLEDGED
    assert [c.id for c in agent_replication.agent_commands(repos, agent).commands] == ["resync-1"]
    # The appliance's own list still holds what the agent does not answer.
    assert {c.id for c in commands.pending_commands(repos, "appl-1")} == {"resync-1", "shutdown-1", "run-2"}


def test_the_appliance_no_longer_sees_the_cycle_commands_of_an_agent_replicated_machine(
    repos: Repositories, agent: MobilityAgent
) -> None:
    _queue(repos, "run-1", "m-1", CommandKind.RUN_CYCLE, cycle_kind="initial")
    _queue(repos, "resync-1", "m-1", CommandKind.RESYNC_DISK, disk_id="sda")
    _queue(repos, "shutdown-1", "m-1", CommandKind.SHUT_DOWN_SOURCE)
    _queue(repos, "run-2", "m-2", CommandKind.RUN_CYCLE)
    _queue(repos, "resync-2", "m-2", CommandKind.RESYNC_DISK, disk_id="sda")
    # m-1 has the agent: its cycles are the agent's, its shutdown still the appliance's; m-2 has none.
    assert [c.id for c in agent_replication.appliance_commands(repos, "appl-1")] == [
        "shutdown-1",
        "run-2",
        "resync-2",
    ]
    assert [c.id for c in agent_replication.agent_commands(repos, agent).commands] == ["run-1", "resync-1"]


def test_without_any_agent_the_appliance_sees_every_pending_command(repos: Repositories) -> None:
    _queue(repos, "run-1", "m-1", CommandKind.RUN_CYCLE, cycle_kind="initial")
    _queue(repos, "shutdown-1", "m-1", CommandKind.SHUT_DOWN_SOURCE)
    assert [c.id for c in agent_replication.appliance_commands(repos, "appl-1")] == ["run-1", "shutdown-1"]


def test_upload_credentials_only_for_its_own_machines_cycle_blobs(
    repos: Repositories, agent: MobilityAgent
) -> None:
    signer = Signer()
    names = ["m-1/c-1/sda/data-00000.bin", "m-1/c-1/sda/manifest.json"]
    issued = agent_replication.issue_agent_upload_credentials(
        repos, signer, agent, UploadCredentialsRequest(machine_id="m-1", cycle_id="c-1", blobs=names), now=NOW
    )
    assert list(issued.blobs) == names and issued.permissions == "cw"
    with pytest.raises(Forbidden):
        agent_replication.issue_agent_upload_credentials(
            repos,
            signer,
            agent,
            UploadCredentialsRequest(machine_id="m-2", cycle_id="c-1", blobs=["m-2/c-1/sda/manifest.json"]),
            now=NOW,
        )
    with pytest.raises(ValidationFailed) as refused:
        agent_replication.issue_agent_upload_credentials(
            repos,
            signer,
            agent,
            UploadCredentialsRequest(machine_id="m-1", cycle_id="c-1", blobs=["m-2/c-1/sda/manifest.json"]),
            now=NOW,
        )
    assert refused.value.details[0]["field"] == "blobs[0]"
    assert signer.signed == names


def _cycle(**overrides: Any) -> AgentCycleUploaded:
    body = {
        "machineId": "m-1",
        "cycleId": "agent-1-00000001",
        "sequence": 1,
        "kind": "initial",
        "manifests": {"sda": "m-1/agent-1-00000001/sda/manifest.json"},
        **overrides,
    }
    return AgentCycleUploaded.model_validate(body)


def test_a_cycle_enters_the_machines_inbox_once_as_the_appliances_event_would(
    repos: Repositories, agent: MobilityAgent
) -> None:
    answer, accepted = agent_replication.accept_agent_cycle(repos, agent, _cycle(), now=NOW)
    assert (answer.machine_id, answer.sequence, answer.duplicate) == ("m-1", 1, False)
    assert accepted.cycle.sequence == 1  # what the trigger signals the machine's orchestration with
    stored = repos.cycles.require("agent-1-00000001", partition_key="m-1").item
    assert stored.kind.value == "initial" and stored.manifests == {
        "sda": "m-1/agent-1-00000001/sda/manifest.json"
    }
    again, _ = agent_replication.accept_agent_cycle(repos, agent, _cycle(), now=NOW)
    assert again.duplicate
    with pytest.raises(Conflict):  # the same id with other content
        agent_replication.accept_agent_cycle(repos, agent, _cycle(sequence=2), now=NOW)
    with pytest.raises(Forbidden):
        agent_replication.accept_agent_cycle(repos, agent, _cycle(machineId="m-2"), now=NOW)
    with pytest.raises(ValidationFailed):
        agent_replication.accept_agent_cycle(
            repos, agent, _cycle(cycleId="c-9", manifests={"sdz": "m-1/c-9/sdz/manifest.json"}), now=NOW
        )
    assert not repos.cycles.get("c-9", partition_key="m-1")


def test_a_machine_that_does_not_replicate_takes_no_cycle(repos: Repositories, agent: MobilityAgent) -> None:
    repos.machines.put(_machine("m-1", MachineState.DISCOVERED))
    with pytest.raises(Conflict, match="replication is not enabled"):
        agent_replication.accept_agent_cycle(repos, agent, _cycle(), now=NOW)


def test_an_agent_registered_without_a_machine_id_has_nothing_to_replicate(repos: Repositories) -> None:
    loose = MobilityAgent(
        id="agent-x", hostname="web01", credential_hash="-", registered_at=NOW, passphrase_generation=1
    )
    with pytest.raises(Conflict, match="register it again with the machine id"):
        agent_replication.agent_commands(repos, loose)
    with pytest.raises(Conflict):
        agent_replication.agent_policy(repos, loose)


def test_the_policy_is_the_machines_appliances(repos: Repositories, agent: MobilityAgent) -> None:
    appliance = repos.appliances.require("appl-1").item
    appliance.policy.upload_threads_per_vm = 9
    repos.appliances.put(appliance)
    assert agent_replication.agent_policy(repos, agent).upload_threads_per_vm == 9


@pytest.mark.parametrize(
    ("paths", "problem"),
    [({"sda": "dev/sda"}, "should match pattern"), ({"sda": "/dev/sda; rm -rf /"}, "should match pattern")],
)
def test_push_disk_paths_are_absolute_plain_paths(paths: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        PushInstallBody.model_validate({"credentialName": "root", "diskPaths": paths})
    assert PushInstallBody.model_validate({"credentialName": "root", "diskPaths": {"sda": "/srv/d.img"}})


def test_a_failed_cycle_becomes_the_machines_catalog_error_once_per_report(
    repos: Repositories, agent: MobilityAgent
) -> None:
    body = agent_replication.AgentCycleFailed.model_validate(
        {
            "reportId": "f-1",
            "machineId": "m-1",
            "failedAt": "2026-12-03T08:30:00Z",  # ahead of the control plane's clock: dated NOW
            "diskId": "sda",
            "message": "cannot read /dev/sda: [Errno 5] Input/output error",
        }
    )
    first = agent_replication.record_agent_cycle_failure(
        repos, agent, body, now=NOW, settings=HealthSettings()
    )
    assert first.machine_id == "m-1" and first.error_code and first.health in ("Warning", "Critical")
    events = machine_events.list_events(repos, "m-1")
    again = agent_replication.record_agent_cycle_failure(
        repos, agent, body, now=NOW, settings=HealthSettings()
    )
    assert again == first and len(machine_events.list_events(repos, "m-1")) == len(events)
    failure = next(e for e in events if e.error_code == first.error_code)
    assert "Input/output error" in failure.message and failure.time == NOW
    with pytest.raises(Forbidden):
        agent_replication.record_agent_cycle_failure(
            repos, agent, body.model_copy(update={"machine_id": "m-2"}), now=NOW, settings=HealthSettings()
        )


def test_a_command_poll_costs_two_queries_however_many_machines_wait_for_a_cycle(
    repos: Repositories, agent: MobilityAgent
) -> None:
    """Which machines an agent replicates is one query for all of them: a point read per machine with a
    pending cycle made an appliance's poll grow with its fleet (50 reads a poll while 50 machines waited
    for their initial copy, in the fleet benchmark)."""
    for n in range(3, 53):
        repos.machines.add(_machine(f"m-{n}"))
        _queue(repos, f"run-{n}", f"m-{n}", CommandKind.RUN_CYCLE, cycle_kind="initial")
    _queue(repos, "run-1", "m-1", CommandKind.RUN_CYCLE, cycle_kind="initial")  # m-1 has the agent
    repos.store.counter.reset()
    seen = agent_replication.appliance_commands(repos, "appl-1")
    assert {c.id for c in seen} == {f"run-{n}" for n in range(3, 53)}
    assert repos.store.counter.snapshot() == {"query:commands": 1, "query:mobility": 1}


def test_machines_with_agents_looks_up_in_chunks(repos: Repositories, agent: MobilityAgent) -> None:
    machine_ids = ["m-1", *(f"x-{n}" for n in range(registration.AGENT_LOOKUP_CHUNK + 10))]
    repos.store.counter.reset()
    assert registration.machines_with_agents(repos, machine_ids) == {"m-1"}
    assert repos.store.counter.snapshot() == {"query:mobility": 2}
