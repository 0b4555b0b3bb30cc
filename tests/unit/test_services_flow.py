"""Service layer over the in-memory store (same ETag semantics as Cosmos; the integration suite runs
the same flow against the Cosmos emulator). Round-trip budgets are asserted here too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from shared.appliances import commands
from shared.appliances import registry as appliances
from shared.appliances.credentials import CredentialHasher
from shared.domain.api import RegisterApplianceRequest
from shared.domain.appliance import ApplianceKind
from shared.domain.command import CommandKind, CommandStatus
from shared.domain.cycle import Consistency, RecoveryPoint
from shared.domain.errors import ConcurrencyConflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from shared.domain.inventory import DiscoveryReport
from shared.domain.job import JobKind, JobStatus
from shared.domain.lifecycle import ForbiddenTransition, MachineState
from shared.domain.machine import Health, Machine
from shared.domain.policy import ReplicationPolicyUpdate
from shared.domain.target import TargetSettings
from shared.health.rules import HealthRules
from shared.health.writer import flag_source_disks_changed
from shared.jobs import lifecycle as jobs
from shared.platform.repository import Repositories
from shared.replication import machines
from tests.support.memory_store import InMemoryDocumentStore

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
GIB = 1024**3
TARGET: dict[str, Any] = {
    "resourceGroup": "rg-target",
    "virtualNetwork": "vnet-prod",
    "subnet": "app",
    "subnetAddressPrefix": "10.1.2.0/24",
    "vmSize": "Standard_D4s_v3",
    "diskType": "Premium_LRS",
    "staticIpAddress": "10.1.2.10",
    "testVirtualNetwork": "vnet-test",
}

# What functions/appliances.py passes: health's writer flags a changed disk layout.
report_machines = partial(
    appliances.report_machines,
    on_disks_changed=partial(flag_source_disks_changed, rules=HealthRules()),
)


def discovered(
    machine_id: str, *, name: str = "web01", os_type: str = "linux", disk_gib: int = 20
) -> dict[str, Any]:
    return {
        "id": machine_id,
        "displayName": name,
        "osType": os_type,
        "osName": "Ubuntu" if os_type == "linux" else "Windows Server 2019",
        "osVersion": "20.04",
        "firmware": "UEFI",
        "disks": [
            {"id": "disk0", "sizeBytes": disk_gib * GIB, "isOsDisk": True},
            {"id": "disk1", "sizeBytes": GIB},
        ],
        "nics": [{"id": "nic0"}],
    }


def report(*machine_list: dict[str, Any]) -> DiscoveryReport:
    return DiscoveryReport.model_validate({"machines": list(machine_list)})


@pytest.fixture
def repos() -> Repositories:
    return Repositories(InMemoryDocumentStore())


@pytest.fixture(scope="module")
def hasher() -> CredentialHasher:
    return CredentialHasher(b"unit-test-pepper-0123456789", n=2**12)


def register(repos: Repositories, hasher: CredentialHasher, name: str = "vmware-site-a") -> tuple[str, str]:
    result = appliances.register_appliance(
        repos, hasher, RegisterApplianceRequest(name=name, kind=ApplianceKind.VMWARE, site="dc1"), now=NOW
    )
    return result.id, result.credential


def enable(repos: Repositories, machine_id: str, job_id: str = "job-1", **target: Any) -> machines.JobStarted:
    command = machines.EnableReplication(
        machine_id, TargetSettings.model_validate({**TARGET, **target}), job_id
    )
    return machines.enable_replication(repos, command, now=NOW)


def set_state(repos: Repositories, machine_id: str, state: MachineState) -> None:
    def apply(machine: Machine) -> None:
        machine.state = state

    repos.machines.update_with_retry(machine_id, apply)


@pytest.fixture
def appliance(repos: Repositories, hasher: CredentialHasher) -> Iterator[tuple[str, str]]:
    yield register(repos, hasher)


# -- appliances -------------------------------------------------------------------------------------------


def test_register_stores_only_a_hash_and_authenticates(repos: Repositories, hasher: CredentialHasher) -> None:
    repos.counter.reset()
    appliance_id, credential = register(repos, hasher)
    assert repos.counter.total == 1
    stored = repos.appliances.require(appliance_id).item
    assert credential.split(".")[-1] not in stored.credential_hash
    assert stored.credential_hash.startswith("scrypt$")
    repos.counter.reset()
    assert appliances.authenticate_appliance(repos, hasher, credential).id == appliance_id
    assert repos.counter.total == 1


@pytest.mark.parametrize(
    "mangle", [lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"), lambda c: None, lambda c: ""]
)
def test_bad_or_missing_credential_is_unauthorized(
    repos: Repositories, hasher: CredentialHasher, appliance: tuple[str, str], mangle: Any
) -> None:
    with pytest.raises(Unauthorized):
        appliances.authenticate_appliance(repos, hasher, mangle(appliance[1]))


@pytest.mark.parametrize("forged_id", ["appl-../../dbs", "someone-else", "appl-a/b"])
def test_forged_ids_never_reach_the_store(
    repos: Repositories, hasher: CredentialHasher, forged_id: str
) -> None:
    repos.counter.reset()
    with pytest.raises(Unauthorized):
        appliances.authenticate_appliance(repos, hasher, f"{forged_id}.{'A' * 43}")
    assert repos.counter.total == 0


def test_credential_of_a_deleted_or_unknown_appliance_is_unauthorized(
    repos: Repositories, hasher: CredentialHasher, appliance: tuple[str, str]
) -> None:
    repos.appliances.delete(appliance[0])
    with pytest.raises(Unauthorized, match="not valid"):
        appliances.authenticate_appliance(repos, hasher, appliance[1])


def test_appliance_acts_only_as_itself(
    repos: Repositories, hasher: CredentialHasher, appliance: tuple[str, str]
) -> None:
    me = appliances.authenticate_appliance(repos, hasher, appliance[1])
    appliances.authorize_appliance(me, appliance[0])
    with pytest.raises(Forbidden):
        appliances.authorize_appliance(me, "appl-someone-else")


def test_report_creates_updates_and_skips_unchanged(repos: Repositories, appliance: tuple[str, str]) -> None:
    me = repos.appliances.require(appliance[0]).item
    first = report_machines(repos, me, report(discovered("vm-1"), discovered("vm-2")), now=NOW)
    assert [(r.id, r.outcome, r.state) for r in first.machines] == [
        ("vm-1", "Created", MachineState.DISCOVERED),
        ("vm-2", "Created", MachineState.DISCOVERED),
    ]
    repos.counter.reset()
    again = report_machines(repos, me, report(discovered("vm-1"), discovered("vm-2", name="web02")), now=NOW)
    assert [r.outcome for r in again.machines] == ["Unchanged", "Updated"]
    assert repos.counter.snapshot() == {"read:machines": 2, "replace:machines": 1}
    assert repos.machines.require("vm-2").item.inventory.display_name == "web02"


def test_appliance_cannot_touch_another_appliances_machine(
    repos: Repositories, hasher: CredentialHasher, appliance: tuple[str, str]
) -> None:
    owner = repos.appliances.require(appliance[0]).item
    report_machines(repos, owner, report(discovered("vm-1", name="original")), now=NOW)
    intruder_id, _ = register(repos, hasher, name="other-site")
    intruder = repos.appliances.require(intruder_id).item
    with pytest.raises(Forbidden, match="owned by another appliance: vm-1") as caught:
        report_machines(
            repos, intruder, report(discovered("vm-new"), discovered("vm-1", name="hijacked")), now=NOW
        )
    assert caught.value.details == [{"machineId": "vm-1"}]
    # All or nothing: neither the foreign machine nor the new one was written.
    assert repos.machines.require("vm-1").item.inventory.display_name == "original"
    assert repos.machines.get("vm-new") is None


def test_disk_change_while_replicating_raises_a_warning(
    repos: Repositories, appliance: tuple[str, str]
) -> None:
    me = repos.appliances.require(appliance[0]).item
    report_machines(repos, me, report(discovered("vm-1")), now=NOW)
    enable(repos, "vm-1")
    report_machines(repos, me, report(discovered("vm-1", disk_gib=40)), now=NOW)
    machine = repos.machines.require("vm-1").item
    [error] = machine.replication.current_errors
    assert (
        error.code == "SourceDisksChanged"
        and "disk0" in error.message
        and "Repair replication" in error.message
    )
    assert machine.health is Health.WARNING


def test_policy_defaults_update_and_validation(repos: Repositories, appliance: tuple[str, str]) -> None:
    assert appliances.get_policy(repos, appliance[0]).upload_threads_per_vm == 4
    updated = appliances.update_policy(
        repos,
        appliance[0],
        ReplicationPolicyUpdate.model_validate({"uploadThreadsPerVm": 32, "throttlingEnabled": True}),
    )
    assert updated.upload_threads_per_vm == 32 and updated.throttling_enabled
    assert appliances.get_policy(repos, appliance[0]) == updated
    with pytest.raises(NotFound):
        appliances.get_policy(repos, "appl-missing")


def test_heartbeat_never_goes_backwards(repos: Repositories, appliance: tuple[str, str]) -> None:
    appliances.record_heartbeat(repos, appliance[0], NOW)
    appliances.record_heartbeat(repos, appliance[0], NOW - timedelta(minutes=5))
    assert repos.appliances.require(appliance[0]).item.last_heartbeat == NOW
    with pytest.raises(NotFound):
        appliances.record_heartbeat(repos, "appl-missing", NOW)


# -- machines ---------------------------------------------------------------------------------------------


@pytest.fixture
def machine_id(repos: Repositories, appliance: tuple[str, str]) -> str:
    me = repos.appliances.require(appliance[0]).item
    report_machines(
        repos, me, report(discovered("vm-1"), discovered("win-1", name="WIN01", os_type="windows")), now=NOW
    )
    return "vm-1"


def test_enable_replication_moves_state_and_records_the_job(repos: Repositories, machine_id: str) -> None:
    repos.counter.reset()
    started = enable(repos, machine_id)
    # The machine's transition, its job, and the job's "Job started" event.
    assert repos.counter.snapshot() == {
        "read:machines": 1,
        "replace:machines": 1,
        "upsert:jobs": 1,
        "upsert:events": 1,
    }
    assert not started.is_retry
    machine = repos.machines.require(machine_id).item
    assert machine.state is MachineState.ENABLING_REPLICATION
    assert machine.target is not None and str(machine.target.static_ip_address) == "10.1.2.10"
    assert machine.active_job_id == "job-1"
    job = repos.jobs.require("job-1").item
    assert job.kind is JobKind.ENABLE_REPLICATION and job.status is JobStatus.IN_PROGRESS
    assert [(s.name, s.status) for s in job.steps] == [
        ("Validate target settings", JobStatus.SUCCEEDED),
        ("Create replica disks", JobStatus.NOT_STARTED),
        ("Start initial replication", JobStatus.NOT_STARTED),
    ]


def test_repeating_the_same_enable_is_idempotent(repos: Repositories, machine_id: str) -> None:
    enable(repos, machine_id, job_id="job-1")
    again = enable(repos, machine_id, job_id="job-2")
    assert again.is_retry and again.job.id == "job-1"
    assert repos.jobs.get("job-2") is None


def test_enable_with_other_settings_while_enabling_is_a_conflict(
    repos: Repositories, machine_id: str
) -> None:
    enable(repos, machine_id)
    with pytest.raises(
        ForbiddenTransition, match="cannot enable replication: machine vm-1 is EnablingReplication"
    ):
        enable(repos, machine_id, job_id="job-2", vmSize="Standard_D8s_v3")


def test_enable_when_already_replicating_is_409(repos: Repositories, machine_id: str) -> None:
    enable(repos, machine_id)
    set_state(repos, machine_id, MachineState.REPLICATING)
    with pytest.raises(ForbiddenTransition) as caught:
        enable(repos, machine_id, job_id="job-2")
    assert "machine vm-1 is Replicating" in caught.value.message
    assert caught.value.details[0]["allowed"] == sorted(
        ["Resyncing", "TestMigrating", "Migrating", "FailingOver", "ReplicationStopped"]
    )


def test_enable_unknown_machine_is_404(repos: Repositories) -> None:
    with pytest.raises(NotFound, match="machine nope does not exist"):
        enable(repos, "nope")


def test_enable_refuses_settings_invalid_for_this_machine(repos: Repositories, machine_id: str) -> None:
    repos.counter.reset()
    with pytest.raises(ValidationFailed) as caught:
        enable(repos, "win-1", targetVmName="windows-name-too-long")
    assert caught.value.details == [
        {
            "field": "targetVmName",
            "problem": "must be 1-15 characters for a Windows VM; 'windows-name-too-long' has 21",
        }
    ]
    assert repos.counter.snapshot() == {"read:machines": 1}  # nothing written
    assert repos.machines.require("win-1").item.state is MachineState.DISCOVERED


def test_get_machine_reports_progress_last_sync_rpo_and_points(repos: Repositories, machine_id: str) -> None:
    enable(repos, machine_id)

    def replicate(machine: Machine) -> None:
        machine.state = MachineState.REPLICATING
        machine.replication.progress_percent = 100.0
        machine.replication.last_sync_time = NOW - timedelta(minutes=4)
        machine.record_cycle_applied(117, NOW - timedelta(minutes=4))
        for minutes, consistency in ((64, Consistency.APP), (34, Consistency.CRASH), (4, Consistency.CRASH)):
            machine.replication.recovery_points.append(
                RecoveryPoint(
                    id=f"rp-{minutes}",
                    cycle_id=f"c-{minutes}",
                    time=NOW - timedelta(minutes=minutes),
                    consistency=consistency,
                    disk_snapshots={"disk0": "snap", "disk1": "snap"},
                )
            )

    repos.machines.update_with_retry(machine_id, replicate)
    repos.counter.reset()
    detail = machines.get_machine(repos, machine_id, now=NOW)
    # The machine's point read and one query of its newest cycles (the replication statistics).
    assert repos.counter.snapshot() == {"read:machines": 1, "query:cycles": 1}
    assert detail.state is MachineState.REPLICATING and detail.health is Health.HEALTHY
    assert detail.progress_percent == 100.0
    assert detail.rpo_seconds == 4 * 60
    assert detail.recovery_points.count == 3
    assert detail.recovery_points.latest == NOW - timedelta(minutes=4)
    assert detail.recovery_points.latest_app_consistent == NOW - timedelta(minutes=64)
    assert [p.id for p in detail.recovery_point_list] == ["rp-64", "rp-34", "rp-4"]
    wire = detail.to_wire()
    assert wire["rpoSeconds"] == 240 and wire["lastSyncTime"].startswith("2026-11-22T02:56")
    # The appliance's watermark comes from the same machine document: no extra round trip.
    assert wire["lastAppliedSequence"] == 117


def test_rpo_is_absent_before_protection(repos: Repositories, machine_id: str) -> None:
    assert machines.get_machine(repos, machine_id, now=NOW).rpo_seconds is None


def test_last_applied_sequence_is_null_until_a_cycle_applies(repos: Repositories, machine_id: str) -> None:
    assert machines.get_machine(repos, machine_id, now=NOW).to_wire()["lastAppliedSequence"] is None


def test_list_machines_filters_and_pages(
    repos: Repositories, hasher: CredentialHasher, machine_id: str
) -> None:
    other_id, _ = register(repos, hasher, name="hyperv-host")
    other = repos.appliances.require(other_id).item
    report_machines(repos, other, report(*(discovered(f"hv-{i}") for i in range(3))), now=NOW)
    first = machines.list_machines(repos, now=NOW, appliance_id=other_id, page_size=2)
    assert [m.id for m in first.machines] == ["hv-0", "hv-1"] and first.continuation_token
    rest = machines.list_machines(
        repos, now=NOW, appliance_id=other_id, page_size=2, continuation=first.continuation_token
    )
    assert [m.id for m in rest.machines] == ["hv-2"] and rest.continuation_token is None
    enable(repos, machine_id)
    enabling = machines.list_machines(repos, now=NOW, state=MachineState.ENABLING_REPLICATION)
    assert [m.id for m in enabling.machines] == [machine_id]
    with pytest.raises(ValidationFailed, match="pageSize"):
        machines.list_machines(repos, now=NOW, page_size=0)


def test_stop_replication_and_complete_migration(repos: Repositories, machine_id: str) -> None:
    with pytest.raises(ForbiddenTransition, match="cannot stop replication: machine vm-1 is Discovered"):
        machines.stop_replication(repos, machines.StopReplication(machine_id, "job-stop"), now=NOW)
    enable(repos, machine_id)
    set_state(repos, machine_id, MachineState.REPLICATING)
    stopped = machines.stop_replication(repos, machines.StopReplication(machine_id, "job-stop"), now=NOW)
    assert (
        stopped.machine.state is MachineState.REPLICATION_STOPPED
        and stopped.job.kind is JobKind.STOP_REPLICATION
    )
    # The move above stopped replication; the orchestration deletes the data.
    assert [(s.name, s.status) for s in jobs.require(repos, "job-stop").steps] == [
        ("Stop replication", JobStatus.SUCCEEDED),
        ("Delete replica disks and cached data", JobStatus.NOT_STARTED),
    ]
    set_state(repos, machine_id, MachineState.MIGRATED)
    completed = machines.stop_replication(repos, machines.StopReplication(machine_id, "job-done"), now=NOW)
    assert completed.machine.state is MachineState.MIGRATION_COMPLETED
    assert completed.job.kind is JobKind.COMPLETE_MIGRATION
    assert jobs.require(repos, "job-done").machine_id == machine_id


# -- commands ---------------------------------------------------------------------------------------------


def test_commands_queue_poll_and_acknowledge(
    repos: Repositories, appliance: tuple[str, str], machine_id: str
) -> None:
    appliance_id = appliance[0]
    first = commands.queue_command(
        repos, command_id="cmd-1", machine_id=machine_id, kind=CommandKind.RUN_CYCLE, now=NOW
    )
    again = commands.queue_command(
        repos, command_id="cmd-1", machine_id=machine_id, kind=CommandKind.RUN_CYCLE, now=NOW
    )
    assert again == first and first.appliance_id == appliance_id
    commands.queue_command(
        repos,
        command_id="cmd-2",
        machine_id=machine_id,
        kind=CommandKind.RESYNC_DISK,
        disk_id="disk1",
        now=NOW + timedelta(seconds=1),
    )
    repos.counter.reset()
    assert [c.id for c in commands.pending_commands(repos, appliance_id)] == ["cmd-1", "cmd-2"]
    assert repos.counter.snapshot() == {"query:commands": 1}
    acked = commands.acknowledge_command(repos, appliance_id, "cmd-1", now=NOW)
    assert acked.status is CommandStatus.ACKNOWLEDGED and acked.ttl == commands.ACKNOWLEDGED_TTL_SECONDS
    repos.counter.reset()
    assert (
        commands.acknowledge_command(
            repos, appliance_id, "cmd-1", now=NOW + timedelta(hours=1)
        ).acknowledged_at
        == NOW
    )
    assert repos.counter.snapshot() == {"read:commands": 1}  # repeated ack: nothing written
    assert [c.id for c in commands.pending_commands(repos, appliance_id)] == ["cmd-2"]
    with pytest.raises(NotFound):
        commands.acknowledge_command(repos, "appl-other", "cmd-2", now=NOW)


# -- optimistic concurrency -------------------------------------------------------------------------------


def test_update_with_retry_keeps_a_concurrent_writers_change(repos: Repositories, machine_id: str) -> None:
    interleaved = {"done": False}

    def mine(machine: Machine) -> None:
        if not interleaved["done"]:
            interleaved["done"] = True

            # Another writer saves between our read and our replace.
            def theirs(m: Machine) -> None:
                m.replication.progress_percent = 42.0

            repos.machines.update_with_retry(machine_id, theirs)
        machine.health = Health.WARNING

    repos.counter.reset()
    stored, _ = repos.machines.update_with_retry(machine_id, mine)
    assert stored.item.health is Health.WARNING and stored.item.replication.progress_percent == 42.0
    # ours: read, replace(412), read, replace; theirs: read, replace.
    assert repos.counter.snapshot() == {"read:machines": 3, "replace:machines": 3}


def test_update_with_retry_gives_up_after_bounded_attempts(repos: Repositories, machine_id: str) -> None:
    def always_contended(machine: Machine) -> None:
        def bump(m: Machine) -> None:
            m.replication.progress_percent = (m.replication.progress_percent + 1) % 100

        repos.machines.update_with_retry(machine_id, bump)
        machine.health = Health.CRITICAL

    with pytest.raises(ConcurrencyConflict, match="3 attempts"):
        repos.machines.update_with_retry(machine_id, always_contended, attempts=3)
    assert repos.machines.require(machine_id).item.health is Health.HEALTHY
