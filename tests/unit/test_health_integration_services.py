"""Health wired to the machine document, over the in-memory store: what each path writes, how health
moves, what it costs in round-trips, and that repeats change nothing. (End to end on the local stack:
tests/e2e_health.)"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta

import pytest

from shared import health
from shared.appliances.events import CycleFailed, CycleStarted
from shared.domain.appliance import Appliance, ApplianceKind
from shared.domain.cycle import Consistency, Cycle, CycleKind, RecoveryPoint
from shared.domain.errors import Conflict
from shared.domain.failback import PlannedFailback
from shared.domain.inventory import MachineInventory
from shared.domain.job import JobKind, JobStatus
from shared.domain.lifecycle import ForbiddenTransition, MachineState
from shared.domain.machine import Health, Machine
from shared.domain.policy import ReplicationPolicy
from shared.domain.target import TargetSettings
from shared.health import event_texts
from shared.health.appliance_failures import record_appliance_failure, record_cycle_started
from shared.health.catalog import CATALOG
from shared.health.rules import HealthRules
from shared.platform.documents import Query
from shared.platform.repository import Repositories
from shared.platform.settings import Settings, SettingsError
from shared.replication import cycles
from tests.support.memory_store import InMemoryDocumentStore

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
SETTINGS = health.HealthSettings()
POLICY = ReplicationPolicy()
CBT = "Encountered an error while trying to fetch changed blocks"
HUNG = "An internal error occurred. [Generate snapshot hung]"


def new_machine(*, auto_repair: bool = False, state: MachineState = MachineState.REPLICATING) -> Machine:
    inventory = MachineInventory.model_validate(
        {
            "displayName": "db01",
            "osType": "linux",
            "osName": "Ubuntu",
            "osVersion": "20.04",
            "firmware": "BIOS",
            "disks": [
                {"id": "d0", "sizeBytes": 1024**3, "isOsDisk": True, "name": "[ds1] db01/db01.vmdk"},
                {"id": "d1", "sizeBytes": 1024**3},
            ],
        }
    )
    target = TargetSettings.model_validate(
        {
            "resourceGroup": "rg",
            "virtualNetwork": "vnet",
            "subnet": "app",
            "vmSize": "Standard_D2s_v3",
            "autoRepairReplication": auto_repair,
        }
    )
    machine = Machine(
        id="vm-1",
        appliance_id="appl-1",
        inventory=inventory,
        target=target,
        state=state,
        discovered_at=NOW,
        updated_at=NOW,
    )
    machine.replication.last_applied_sequence = 1
    return machine


@pytest.fixture
def repos() -> Repositories:
    repos = Repositories(InMemoryDocumentStore())
    repos.appliances.add(
        Appliance(
            id="appl-1",
            name="gw-east",
            kind=ApplianceKind.VMWARE,
            site="dc1",
            credential_hash="scrypt$x",
            registered_at=NOW,
        )
    )
    repos.machines.add(new_machine())
    return repos


def fail(
    repos: Repositories,
    message: str,
    *,
    minutes: int = 1,
    cycle: str = "c2",
    event: str = "e1",
    disk: str | None = None,
    code: str | None = None,
) -> health.FailuresRecorded:
    report = CycleFailed(
        appliance_id="appl-1",
        machine_id="vm-1",
        cycle_id=cycle,
        disk_id=disk,
        error_code=code,
        message=message,
    )
    return record_appliance_failure(
        repos, report, event_id=event, reported_at=NOW + timedelta(minutes=minutes), settings=SETTINGS
    )


def complete(
    repos: Repositories,
    sequence: int,
    kind: CycleKind = CycleKind.DELTA,
    minutes: int = 10,
    *,
    disks: tuple[str, ...] = ("d0", "d1"),
    snapshots: tuple[str, ...] = ("d0", "d1"),
    missing: tuple[str, ...] = (),
) -> None:
    at = NOW + timedelta(minutes=minutes)
    cycle = Cycle(
        id=f"c{sequence}",
        machine_id="vm-1",
        sequence=sequence,
        kind=kind,
        manifests={d: f"m-{d}" for d in disks},
        received_at=at,
    )
    point = (
        None
        if missing
        else RecoveryPoint(
            id=f"rp-{sequence}",
            cycle_id=cycle.id,
            time=at,
            consistency=Consistency.CRASH,
            disk_snapshots={d: "s" for d in snapshots},
        )
    )
    cycles.complete_cycle(
        repos,
        cycles.CycleOutcome(
            cycle=cycle, recovery_point=point, applied_at=at, bytes_applied=4096, missing_disks=missing
        ),
        POLICY,
    )


def stored(repos: Repositories) -> Machine:
    return repos.machines.require("vm-1").item


def test_an_appliance_failure_becomes_the_catalog_event_and_a_current_error(repos: Repositories) -> None:
    recorded = fail(repos, HUNG, code="0x80004005")
    event = recorded.events[0]
    entry = CATALOG["VmwareGenerateSnapshotHung"]
    assert (event.type, event.error_code, event.severity.value) == (
        entry.event_type.value,
        entry.code,
        "Warning",
    )
    assert event.message == HUNG and event.reported_code == "0x80004005"
    assert event.details["name"] == entry.name and event.details["innerMessage"] == "Generate snapshot hung"
    assert event.details["vmName"] == "db01" and event.details["applianceName"] == "gw-east"
    assert event.references == list(entry.references)
    assert "{" not in " ".join(event.recommendations) and "<vmName>" not in " ".join(event.causes)
    machine = stored(repos)
    assert machine.health is Health.WARNING
    (error,) = machine.replication.current_errors
    assert (error.code, error.title, error.causes) == (entry.code, entry.title, event.causes)
    assert [e.type for e in recorded.events] == [entry.event_type.value, event_texts.HEALTH_CHANGED]


def test_a_redelivered_failure_changes_nothing_and_rewrites_the_same_event(repos: Repositories) -> None:
    fail(repos, HUNG)
    before = stored(repos)
    repos.counter.reset()
    again = fail(repos, HUNG)
    # No machine write; the event is rewritten under the same id.
    assert repos.counter.snapshot() == {"read:machines": 2, "read:appliances": 1, "upsert:events": 1}
    assert stored(repos).replication == before.replication and not again.change.changed


def test_three_failed_cycles_are_critical_and_an_applied_cycle_heals_in_one_update(
    repos: Repositories,
) -> None:
    for n in range(3):
        fail(repos, HUNG, cycle=f"c{n + 2}", event=f"e{n}", minutes=n + 1)
    assert stored(repos).health is Health.CRITICAL
    repos.counter.reset()
    complete(repos, 2)
    # machine read + replace, the cycle, "cycle completed" and "health changed": the success costs no
    # extra round-trip on the machine.
    assert repos.counter.snapshot() == {
        "read:machines": 1,
        "replace:machines": 1,
        "upsert:cycles": 1,
        "upsert:events": 2,
    }
    machine = stored(repos)
    assert machine.health is Health.HEALTHY and machine.replication.current_errors == []
    healed = repos.events.get("c2-health", "vm-1")
    assert healed is not None and healed.item.details["previousHealth"] == "Critical"


def test_cbt_reset_without_automatic_repair_is_critical_until_a_resync(repos: Repositories) -> None:
    recorded = fail(repos, CBT)
    assert recorded.resync_disks == [] and stored(repos).health is Health.CRITICAL
    complete(repos, 2)  # a delta does not clear it
    assert [e.code for e in stored(repos).replication.current_errors] == ["MCP-1001"]
    assert stored(repos).health is Health.CRITICAL


def test_cbt_reset_with_automatic_repair_resyncs_and_keeps_recovery_points(repos: Repositories) -> None:
    repos.machines.put(new_machine(auto_repair=True))
    complete(repos, 2, minutes=0)
    recorded = fail(repos, CBT, cycle="c3", minutes=1)
    assert recorded.resync_disks == ["d0", "d1"]
    machine = stored(repos)
    assert machine.state is MachineState.RESYNCING and machine.health is Health.WARNING
    assert recorded.events[0].severity.value == "Warning"
    commands = repos.commands.query(Query(equals={"applianceId": "appl-1"}), partition_key="appl-1")
    assert sorted((c.kind.value, c.disk_id) for c in commands) == [("ResyncDisk", "d0"), ("ResyncDisk", "d1")]
    assert recorded.events[-1].type == event_texts.REPAIR_STARTED

    complete(repos, 3, kind=CycleKind.RESYNC, minutes=20)
    machine = stored(repos)
    assert machine.state is MachineState.REPLICATING and machine.health is Health.HEALTHY
    assert [p.id for p in machine.replication.recovery_points] == ["rp-2", "rp-3"]
    assert repos.events.get("c3-repaired", "vm-1") is not None


def test_operator_repair_starts_once_and_finishes_with_the_resync(repos: Repositories) -> None:
    fail(repos, CBT)
    started = health.start_repair(repos, "vm-1", job_id="job-1", now=NOW)
    assert started.job.kind is JobKind.REPAIR_REPLICATION and not started.is_retry
    assert stored(repos).state is MachineState.RESYNCING
    again = health.start_repair(repos, "vm-1", job_id="job-2", now=NOW)
    assert again.is_retry and again.job.id == "job-1"
    complete(repos, 2, kind=CycleKind.RESYNC)
    job = repos.jobs.require("job-1").item
    assert job.status is JobStatus.SUCCEEDED and stored(repos).health is Health.HEALTHY


def test_repair_refuses_a_healthy_machine_and_a_forbidding_state(repos: Repositories) -> None:
    with pytest.raises(Conflict, match="no replication error to repair"):
        health.start_repair(repos, "vm-1", job_id="job-1", now=NOW)
    repos.machines.put(new_machine(state=MachineState.DISCOVERED))
    with pytest.raises(ForbiddenTransition):
        health.start_repair(repos, "vm-1", job_id="job-1", now=NOW)


def test_the_upload_watch_is_set_once_and_ignores_an_applied_cycle(repos: Repositories) -> None:
    started = CycleStarted(
        appliance_id="appl-1",
        machine_id="vm-1",
        cycle_id="c2",
        sequence=2,
        kind=CycleKind.DELTA,
        disks=[{"diskId": "d0"}, {"diskId": "d1"}],  # type: ignore[list-item]
        expected_duration_seconds=600,
    )
    watched = record_cycle_started(repos, started, reported_at=NOW, settings=SETTINGS)
    assert watched is not None
    watch = watched.watch
    assert watch.deadline == NOW + timedelta(seconds=600) and watch.disk_ids == ["d0", "d1"]
    # The machine as the watch left it, with its current ETag (the cycle's completion may write on it).
    assert watched.machine.machine.replication.upload_watch == watch
    assert watched.machine.etag == repos.machines.require("vm-1").etag
    again = record_cycle_started(repos, started, reported_at=NOW + timedelta(minutes=1), settings=SETTINGS)
    assert again is not None and again.watch == watch
    late = started.model_copy(update={"cycle_id": "c1", "sequence": 1})
    assert record_cycle_started(repos, late, reported_at=NOW, settings=SETTINGS) is None

    machine = stored(repos)
    timed_out = health.report_upload_timeouts(
        repos, machine, watch, ["d1"], at=NOW + timedelta(minutes=11), settings=SETTINGS
    )
    event = timed_out.events[0]
    assert (event.error_code, event.disk_id, event.type) == (
        "1011",
        "d1",
        "Replication cycle failed for disk",
    )
    assert stored(repos).replication.upload_watch.timed_out_disks == ["d1"]  # type: ignore[union-attr]
    complete(repos, 2, minutes=30)
    assert stored(repos).replication.upload_watch is None and stored(repos).health is Health.HEALTHY


def test_dispose_timeouts_escalate_per_period(repos: Repositories) -> None:
    for attempt in (1, 2, 3):
        recorded = health.report_dispose_timeout(
            repos,
            "vm-1",
            blocked_cycle_id="c3",
            previous_cycle_id="c2",
            remaining=2,
            waited=timedelta(minutes=15 * attempt),
            attempt=attempt,
            at=NOW + timedelta(minutes=15 * attempt),
            settings=SETTINGS,
        )
        assert (
            recorded.events[0].error_code == "181008" and recorded.events[0].details["previousCycle"] == "c2"
        )
    assert stored(repos).health is Health.CRITICAL
    assert "WaitingForArtefactsDisposalPreCycle" in recorded.events[0].message


def test_the_monitor_flags_rpo_and_silence_and_writes_only_on_change(repos: Repositories) -> None:
    complete(repos, 2, minutes=0)
    rules = HealthRules(
        rpo_warning=timedelta(hours=1),
        rpo_critical=timedelta(hours=5),
        heartbeat_timeout=timedelta(minutes=15),
    )
    settings = health.HealthSettings(rules=rules)
    later = NOW + timedelta(hours=2)
    report = health.monitor_health(repos, now=later, settings=settings)
    assert report.machines_changed == ["vm-1"] and report.appliances_read == 1
    machine = stored(repos)
    assert machine.health is Health.CRITICAL
    assert {e.code: e.severity for e in machine.replication.current_errors} == {
        "MCP-3002": Health.WARNING,
        "MCP-3003": Health.CRITICAL,
    }

    repos.counter.reset()
    report = health.monitor_health(repos, now=later + timedelta(minutes=5), settings=settings)
    assert report.machines_changed == [] and report.events_written == 0
    assert set(repos.counter.snapshot()) == {"query:machines", "read:appliances"}  # reads only

    appliance = repos.appliances.require("appl-1").item
    repos.appliances.put(appliance.model_copy(update={"last_heartbeat": later + timedelta(minutes=6)}))
    health.monitor_health(repos, now=later + timedelta(minutes=7), settings=settings)
    assert [e.code for e in stored(repos).replication.current_errors] == ["MCP-3002"]
    assert stored(repos).health is Health.WARNING


def test_settings_come_from_the_environment_and_bad_values_name_the_setting() -> None:
    base = {
        "COSMOS_ENDPOINT": "https://127.0.0.1:1/",
        "CACHE_STORAGE_ACCOUNT_URL": "https://cache.blob.core.windows.net",
        "REPLICA_STORAGE_ACCOUNT_URL": "https://replica.blob.core.windows.net",
        "EVENTGRID_TOPIC_ENDPOINT": "https://topic/api/events",
        "APPLIANCE_CREDENTIAL_PEPPER": "pepper",
    }

    def from_environment(env: dict[str, str]) -> health.HealthSettings:
        return health.HealthSettings.from_thresholds(Settings.from_environ({**base, **env}).health)

    assert from_environment({}) == health.HealthSettings()
    tuned = from_environment(
        {
            "HEALTH_UPLOAD_TIMEOUT_SECONDS": "5",
            "HEALTH_HEARTBEAT_TIMEOUT_SECONDS": "30",
            "HEALTH_CRITICAL_AFTER_FAILURES": "4",
        }
    )
    assert tuned.upload_timeout == timedelta(seconds=5) and tuned.rules.heartbeat_timeout == timedelta(
        seconds=30
    )
    assert tuned.rules.critical_after_failures == 4
    with pytest.raises(SettingsError, match="HEALTH_DISPOSE_TIMEOUT_SECONDS"):
        from_environment({"HEALTH_DISPOSE_TIMEOUT_SECONDS": "soon"})
    with pytest.raises(SettingsError, match="HEALTH_RPO_WARNING_SECONDS"):
        from_environment({"HEALTH_RPO_WARNING_SECONDS": "-1"})


BUSY = "An internal error occurred. [Another task is already in progress.]"


def health_changes(repos: Repositories) -> list[tuple[str, str]]:
    """The "health changed" events, oldest first, as (previous health, health)."""
    found = repos.events.query(Query(equals={"machineId": "vm-1"}), partition_key="vm-1")
    return [
        (e.details["previousHealth"], e.details["health"])
        for e in sorted(found, key=lambda e: e.time)
        if e.type == event_texts.HEALTH_CHANGED
    ]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_failed_cycles_each_count_whatever_order_their_reports_arrive_in(
    repos: Repositories, order: tuple[int, ...]
) -> None:
    """Event Grid delivers in parallel: a cycle's failure reported earlier may be recorded after a later
    one's. Each failed cycle still counts once, so three make the machine Critical, and the log shows
    Healthy -> Warning, then Warning -> Critical."""
    for n in order:
        fail(repos, BUSY, minutes=1 + n, cycle=f"p{n}", event=f"e{n}")
    machine = stored(repos)
    assert machine.health is Health.CRITICAL
    assert machine.replication.health_state.consecutive_failures == 3
    assert health_changes(repos) == [("Healthy", "Warning"), ("Warning", "Critical")]
    for n in order:  # redelivered: nothing changes
        fail(repos, BUSY, minutes=1 + n, cycle=f"p{n}", event=f"e{n}")
    assert stored(repos).replication.health_state == machine.replication.health_state


@pytest.mark.parametrize("attempt", range(20))
def test_failures_arriving_at_once_each_count(repos: Repositories, attempt: int) -> None:
    """Three failures of one machine recorded concurrently (ETag conflicts and retries on the machine)."""
    start = threading.Barrier(3)

    def deliver(n: int) -> None:
        start.wait()
        fail(repos, BUSY, minutes=1 + n, cycle=f"p{n}", event=f"e{n}")

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stored(repos).health is Health.CRITICAL
    assert health_changes(repos) == [("Healthy", "Warning"), ("Warning", "Critical")]


def test_a_cycle_of_one_disk_keeps_a_point_of_every_disk(repos: Repositories) -> None:
    # The orchestration snapshots every disk of the machine, the resync's one and the unchanged one.
    complete(repos, 2, CycleKind.RESYNC, disks=("d1",), snapshots=("d0", "d1"))
    [point] = stored(repos).replication.recovery_points
    assert sorted(point.disk_snapshots) == ["d0", "d1"]


def test_a_point_that_lacks_a_disk_is_not_kept_and_the_event_says_why(repos: Repositories) -> None:
    complete(repos, 2, disks=("d1",), snapshots=("d1",))
    complete(repos, 3, disks=("d1",), missing=("d0",), minutes=11)
    machine = stored(repos)
    assert machine.replication.recovery_points == []
    assert machine.replication.last_applied_sequence == 3  # applied all the same
    texts = [
        e.message
        for e in repos.events.query(Query(equals={"machineId": "vm-1"}), partition_key="vm-1")
        if e.id in ("c2-completed", "c3-completed")
    ]
    assert len(texts) == 2 and all("no recovery point: disk(s) d0" in t for t in texts), texts


def test_a_reprotect_cycle_ends_reprotecting_and_records_what_it_sent(repos: Repositories) -> None:
    """After a committed failback the replicas hold the pre-power-on data: the appliance's reprotect cycle
    (the changes since) starts the new chain, like a whole copy, and the machine replicates again."""

    def reprotecting(machine: Machine) -> None:
        machine.state = MachineState.REPROTECTING
        machine.failback = PlannedFailback(job_id="job-pf", reprotect_job_id="job-rta")

    repos.machines.update_with_retry("vm-1", reprotecting)
    complete(repos, 9, CycleKind.REPROTECT)
    machine = stored(repos)
    assert machine.state is MachineState.REPLICATING
    assert machine.failback is not None and machine.failback.reprotect_cycle_id == "c9"
    assert machine.failback.reprotect_bytes_sent == 4096
    assert machine.failback.reprotect_disk_bytes == sum(d.size_bytes for d in machine.inventory.disks)
    assert machine.replication.last_applied_sequence == 9
    assert [p.id for p in machine.replication.recovery_points][-1] == "rp-9"
