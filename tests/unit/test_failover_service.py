"""Failover use cases over the in-memory store: starting (the lifecycle move, the job's steps, the clear
409/404s), replication held while failing over, the pending data of 'latest', and the job's end (the
machine FailedOver with its VM and baseline, or back to Replicating with the catalog's error)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.cycle import Consistency, Cycle, CycleKind, CycleState, RecoveryPoint
from shared.domain.errors import Conflict, NotFound
from shared.domain.failover import FailoverStep as S
from shared.domain.health import Health
from shared.domain.inventory import MachineInventory
from shared.domain.job import JobKind, JobStatus, StepChange
from shared.domain.lifecycle import ForbiddenTransition, MachineState
from shared.domain.machine import Machine
from shared.domain.target import TargetSettings
from shared.failover import service as f
from shared.health import HealthSettings
from shared.jobs import lifecycle as jobs
from shared.platform.documents import Query
from shared.platform.repository import Repositories
from shared.replication.cycles import held_cycles
from shared.replication.machines import machine_detail
from tests.support.memory_store import InMemoryDocumentStore

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
MIB = 1024 * 1024


def _machine(repos: Repositories, *, app_points: int = 0, points: int = 3) -> Machine:
    inventory = MachineInventory.model_validate(
        {
            "displayName": "web01",
            "osType": "linux",
            "osName": "Ubuntu",
            "osVersion": "20.04",
            "firmware": "BIOS",
            "disks": [
                {"id": "os", "sizeBytes": 64 * MIB, "isOsDisk": True},
                {"id": "data", "sizeBytes": 64 * MIB, "isOsDisk": False},
            ],
        }
    )
    machine = Machine(
        id="web01",
        appliance_id="app1",
        inventory=inventory,
        state=MachineState.REPLICATING,
        discovered_at=NOW,
        updated_at=NOW,
        target=TargetSettings.model_validate(
            {
                "resourceGroup": "rg",
                "virtualNetwork": "vnet",
                "subnet": "default",
                "vmSize": "Standard_D2s_v3",
            }
        ),
    )
    machine.replication.recovery_points = [
        RecoveryPoint(
            id=f"p{i}",
            cycle_id=f"c{i}",
            time=NOW - timedelta(hours=points - i),
            consistency=Consistency.APP if i < app_points else Consistency.CRASH,
            disk_snapshots={"os": f"s{i}", "data": f"t{i}"},
        )
        for i in range(points)
    ]
    machine.replication.last_applied_sequence = points - 1
    repos.machines.add(machine)
    return machine


def _received(repos: Repositories, *sequences: int) -> None:
    for sequence in sequences:
        repos.cycles.add(
            Cycle(
                id=f"c{sequence}",
                machine_id="web01",
                sequence=sequence,
                kind=CycleKind.DELTA,
                manifests={"os": "m"},
                received_at=NOW,
            )
        )


@pytest.fixture
def repos() -> Repositories:
    return Repositories(InMemoryDocumentStore())


def _start(repos: Repositories, **body: object) -> f.FailoverStarted:
    return f.start_failover(repos, "web01", f.FailoverRequest.model_validate(body), job_id="job-1", now=NOW)


def test_latest_holds_replication_and_marks_the_inbox_to_apply_first(repos: Repositories) -> None:
    _machine(repos)
    _received(repos, 3, 4)
    started = _start(repos, recoveryPoint="latest", shutdownSource=True)

    assert started.machine.state is MachineState.FAILING_OVER
    assert started.machine.failover is not None
    assert started.machine.failover.drain_through_sequence == 4
    assert started.job.kind is JobKind.FAILOVER
    assert [s.name for s in started.job.steps] == [s.value for s in S]
    cycles = repos.cycles.query(Query(), partition_key="web01")
    # While failing over, the machine's orchestration may apply exactly the cycles asked for.
    assert [c.sequence for c in held_cycles(started.machine, cycles)] == [3, 4]
    _received(repos, 5)  # arrived after the request (it could not have been accepted; here it is anyway)
    cycles = repos.cycles.query(Query(), partition_key="web01")
    assert [c.sequence for c in held_cycles(started.machine, cycles)] == [3, 4]


def test_latest_processed_skips_shutdown_and_pending_data_and_holds_every_cycle(repos: Repositories) -> None:
    _machine(repos)
    _received(repos, 3)
    started = _start(repos, recoveryPoint="latestProcessed")

    names = [s.name for s in started.job.steps]
    assert S.PROCESS_PENDING_DATA.value not in names and S.SHUT_DOWN_SOURCE.value not in names
    assert started.machine.failover is not None and started.machine.failover.drain_through_sequence is None
    cycles = repos.cycles.query(Query(), partition_key="web01")
    assert held_cycles(started.machine, cycles) == []


def test_no_point_of_the_consistency_asked_for_is_a_409_and_nothing_is_written(repos: Repositories) -> None:
    _machine(repos, app_points=0)
    with pytest.raises(Conflict, match="no app-consistent recovery point"):
        _start(repos, recoveryPoint="latestAppConsistent")
    assert repos.machines.require("web01").item.state is MachineState.REPLICATING
    assert jobs.get(repos, "job-1") is None


def test_an_unknown_point_is_a_404_and_a_second_failover_a_409(repos: Repositories) -> None:
    _machine(repos, app_points=2)
    with pytest.raises(NotFound, match="no recovery point nope"):
        _start(repos, recoveryPoint="nope")
    _start(repos, recoveryPoint="latestAppConsistent")
    with pytest.raises(ForbiddenTransition, match="cannot fail over"):
        f.start_failover(repos, "web01", f.FailoverRequest(), job_id="job-2", now=NOW)


def test_pick_point_resolves_each_choice(repos: Repositories) -> None:
    machine = _machine(repos, app_points=2, points=4)
    assert f.pick_point(machine, "latest").id == "p3"
    assert f.pick_point(machine, "latestProcessed").id == "p3"
    assert f.pick_point(machine, "latestAppConsistent").id == "p1"
    assert f.pick_point(machine, "latestCrashConsistent").id == "p3"
    assert f.pick_point(machine, "p2").id == "p2"


def test_pending_data_is_done_when_applied_or_when_a_gap_means_it_never_will(repos: Repositories) -> None:
    _machine(repos, points=3)  # watermark 2
    _received(repos, 3)
    _start(repos)
    assert not f.pending_data(repos, "web01", "job-1").done
    cycle = repos.cycles.require("c3", partition_key="web01").item
    repos.cycles.put(cycle.model_copy(update={"state": CycleState.APPLIED}))
    assert f.pending_data(repos, "web01", "job-1").done

    other = Repositories(InMemoryDocumentStore())
    _machine(other, points=3)
    _received(other, 5)  # 3 and 4 never arrived
    _start(other)
    state = f.pending_data(other, "web01", "job-1")
    assert state.done and "never arrived" in state.message


def test_success_records_the_vm_point_and_baseline_and_a_warning_step_makes_the_job_warning(
    repos: Repositories,
) -> None:
    _machine(repos)
    _start(repos, recoveryPoint="latestProcessed", shutdownSource=True)
    jobs.update_steps(
        repos, "job-1", [StepChange(S.SHUT_DOWN_SOURCE.value, JobStatus.WARNING, "no answer")], now=NOW
    )
    outcome = f.FailoverOutcome(
        machine_id="web01",
        job_id="job-1",
        succeeded=True,
        recovery_point_id="p2",
        vm_id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web01",
        disk_ids=["d-os", "d-data"],
        failback_baseline_snapshot_ids=["snap-os", "snap-data"],
    )
    job = f.end_failover(repos, outcome, now=NOW, health=HealthSettings())

    assert job.status is JobStatus.WARNING
    machine = repos.machines.require("web01").item
    assert machine.state is MachineState.FAILED_OVER
    view = machine_detail(machine, NOW).to_wire()
    assert view["failoverRecoveryPointId"] == "p2"
    assert view["failoverVmId"].endswith("/virtualMachines/web01")
    assert view["failbackBaselineSnapshotIds"] == ["snap-os", "snap-data"]
    cycles = repos.cycles.query(Query(), partition_key="web01")
    assert held_cycles(machine, cycles) == []  # failed over: replication stays held


def test_failure_resumes_replication_with_the_catalog_error_on_the_failing_step(repos: Repositories) -> None:
    _machine(repos)
    _start(repos, recoveryPoint="latestProcessed")
    jobs.update_steps(
        repos,
        "job-1",
        [StepChange(S.CREATE_VM.value, JobStatus.FAILED, "Operation results in exceeding quota")],
        now=NOW,
    )
    outcome = f.FailoverOutcome(
        machine_id="web01",
        job_id="job-1",
        succeeded=False,
        failed_step=S.CREATE_VM.value,
        error_code="QuotaExceeded",
        error_message="creating VM web01 failed: Operation results in exceeding quota limits of Core",
    )
    job = f.end_failover(repos, outcome, now=NOW, health=HealthSettings())

    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error.code == "28031"
    assert "Recommended steps: (1)" in job.error.message
    step = next(s for s in job.steps if s.name == S.CREATE_VM.value)
    assert step.status is JobStatus.FAILED and step.error == job.error
    assert {s.status for s in job.steps if s.name in (S.START_VM.value, S.TAKE_FAILBACK_BASELINE.value)} == {
        JobStatus.CANCELLED
    }
    machine = repos.machines.require("web01").item
    assert machine.state is MachineState.REPLICATING and machine.failover is None
    assert machine.health is Health.CRITICAL
    assert [e.code for e in machine.replication.current_errors] == ["28031"]
    # Idempotent: a retried end changes nothing.
    assert f.end_failover(repos, outcome, now=NOW + timedelta(minutes=1), health=HealthSettings()) == job


def _failed_over(repos: Repositories) -> None:
    _machine(repos, points=3)
    _start(repos, recoveryPoint="p1")
    outcome = f.FailoverOutcome(
        machine_id="web01",
        job_id="job-1",
        succeeded=True,
        recovery_point_id="p1",
        vm_id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web01",
        disk_ids=["d-os", "d-data"],
        failback_baseline_snapshot_ids=["b-os", "b-data"],
    )
    f.end_failover(repos, outcome, now=NOW, health=HealthSettings())


def _change(repos: Repositories, point: str, job_id: str = "job-2") -> f.FailoverStarted:
    request = f.ChangeRecoveryPointRequest.model_validate({"recoveryPointId": point})
    return f.start_change_recovery_point(repos, "web01", request, job_id=job_id, now=NOW)


def test_a_change_of_recovery_point_runs_one_at_a_time_and_records_the_new_disks(repos: Repositories) -> None:
    _failed_over(repos)
    with pytest.raises(NotFound):
        _change(repos, "nope")
    with pytest.raises(Conflict, match="already built from recovery point p1"):
        _change(repos, "p1")
    started = _change(repos, "p2")
    assert started.job.kind is JobKind.CHANGE_RECOVERY_POINT
    assert [s.name for s in started.job.steps][3:6] == ["Stop VM", "Swap disks", "Start VM"]
    with pytest.raises(Conflict, match="being changed"):
        _change(repos, "p0", job_id="job-3")
    with pytest.raises(Conflict, match="being changed"):
        f.start_commit(repos, "web01", job_id="job-3", now=NOW)
    outcome = f.FailoverOutcome(
        machine_id="web01",
        job_id="job-2",
        succeeded=True,
        recovery_point_id="p2",
        disk_ids=["n-os", "n-data"],
        failback_baseline_snapshot_ids=["nb-os", "nb-data"],
    )
    assert f.end_failover(repos, outcome, now=NOW, health=HealthSettings()).status is JobStatus.SUCCEEDED
    failover = repos.machines.require("web01").item.failover
    assert failover is not None and failover.changing_job_id is None
    assert (failover.recovery_point_id, failover.disk_ids) == ("p2", ["n-os", "n-data"])
    assert failover.vm_id is not None and failover.vm_id.endswith("/web01")


def test_a_failed_change_keeps_the_old_point_and_frees_the_machine(repos: Repositories) -> None:
    _failed_over(repos)
    _change(repos, "p2")
    outcome = f.FailoverOutcome(
        machine_id="web01",
        job_id="job-2",
        succeeded=False,
        failed_step="Swap disks",
        error_code="OperationNotAllowed",
        error_message="the VM is running",
    )
    job = f.end_failover(repos, outcome, now=NOW, health=HealthSettings())
    assert job.status is JobStatus.FAILED and job.error is not None
    assert "still runs on recovery point p1" in job.error.message
    machine = repos.machines.require("web01").item
    assert machine.state is MachineState.FAILED_OVER and machine.health is Health.HEALTHY
    assert machine.failover is not None and machine.failover.recovery_point_id == "p1"
    _change(repos, "p2", job_id="job-3")  # free for another try


def test_commit_keeps_the_failover_point_and_then_refuses_a_change(repos: Repositories) -> None:
    _failed_over(repos)
    started = f.start_commit(repos, "web01", job_id="job-2", now=NOW)
    assert started.machine.state is MachineState.FAILOVER_COMMITTED and started.job.kind is JobKind.COMMIT
    assert [p.id for p in f.points_to_delete(repos, "web01")] == ["p0", "p2"]
    f.forget_points(repos, "web01", ["p0", "p2"], now=NOW)
    assert [p.id for p in repos.machines.require("web01").item.replication.recovery_points] == ["p1"]
    outcome = f.FailoverOutcome(machine_id="web01", job_id="job-2", succeeded=True)
    assert f.end_failover(repos, outcome, now=NOW, health=HealthSettings()).status is JobStatus.SUCCEEDED
    with pytest.raises(f.FailoverCommitted, match="committed"):
        _change(repos, "p1", job_id="job-3")
    with pytest.raises(f.FailoverCommitted):
        f.start_commit(repos, "web01", job_id="job-4", now=NOW)


def test_change_and_commit_need_a_failed_over_machine(repos: Repositories) -> None:
    _machine(repos)
    with pytest.raises(Conflict, match="only a failed-over machine"):
        _change(repos, "p1")
    with pytest.raises(Conflict, match="only a failed-over machine"):
        f.start_commit(repos, "web01", job_id="job-2", now=NOW)
