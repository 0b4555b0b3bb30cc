"""Failover to Azure: the job's step sequence, the source's shutdown, and each failing step's compensation,
through the real SDK replay.

Hydration is a sub-orchestration with its own tests; a stub registered under its name stands in for it
here, succeeding, or failing at the step the plan's VM name asks for, so these tests see only what the
failover decides around it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest

from devhost.durable import ManualClock
from orchestrators.failover import activities as failover_activities
from orchestrators.failover import orchestrator as failover
from orchestrators.failover.contracts import (
    Acknowledged,
    BaselineRequest,
    BaselineResult,
    FailoverInput,
    FailoverOutcome,
    PendingDataState,
    PointPicked,
    Polling,
    ShutdownRequested,
    ShutdownWatch,
    StartVm,
    StepRef,
    StepResult,
    baseline_snapshot_id,
)
from orchestrators.hydration import activities as hydration_activities
from orchestrators.hydration.contracts import (
    DeleteRequest,
    Done,
    HydrationFailure,
    HydrationOutcome,
    HydrationPlan,
    HydrationRequest,
    HydrationResult,
    JobProgress,
    PlanOutcome,
    Resource,
    ResourceKind,
)
from orchestrators.hydration.orchestrator import HYDRATION
from shared.domain.failover import FailoverStep as S
from tests.orchestrators.conftest import Run, run, running
from tests.orchestrators.test_migration_orchestrators import SUBSCRIPTION, plan_for

MACHINE = "vm-1"
JOB = "job-0000000000f0"

hydration_stub = df.Blueprint()


def _rg_id(provider_type: str, name: str) -> str:
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-failover/providers/{provider_type}/{name}"


VM_ID = _rg_id("Microsoft.Compute/virtualMachines", "db01")
NIC_ID = _rg_id("Microsoft.Network/networkInterfaces", "db01-nic")
OS_DISK = _rg_id("Microsoft.Compute/disks", "db01-os")
DATA_DISK = _rg_id("Microsoft.Compute/disks", "db01-data1")
FINAL = [
    Resource(kind=ResourceKind.VM, id=VM_ID),
    Resource(kind=ResourceKind.NIC, id=NIC_ID),
    Resource(kind=ResourceKind.DISK, id=OS_DISK),
    Resource(kind=ResourceKind.DISK, id=DATA_DISK),
]


@hydration_stub.orchestration_trigger(context_name="context", orchestration=HYDRATION)
def hydration_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    """Named as the real one; the plan's VM name says where it fails ('fail-<step>'), having compensated."""
    plan = HydrationPlan.model_validate(context.get_input())
    if plan.final_vm_name.startswith("fail-"):
        step = plan.final_vm_name.removeprefix("fail-")
        code = "QuotaExceeded" if step == S.CREATE_VM.value else "PreparationFailed"
        return HydrationOutcome(
            failure=HydrationFailure(code=code, message=f"{step} failed; nothing is left", step=step)
        ).model_dump(mode="json")
    return HydrationOutcome(
        result=HydrationResult(
            vm_id=VM_ID,
            nic_id=NIC_ID,
            os_disk_id=OS_DISK,
            data_disk_ids=[DATA_DISK],
            final_resources=FINAL,
            arm_waits_critical_path=6,
            hydration_seconds=42.0,
            used_fallback_network=False,
            preparation=None,
        )
    ).model_dump(mode="json")
    yield  # the SDK drives orchestrators as generators


BLUEPRINTS = [failover.bp, failover_activities.bp, hydration_activities.bp, hydration_stub]


class World:
    """What the failover's activities answer in this test."""

    def __init__(
        self,
        *,
        acknowledge_after: int | None = 1,
        pending_polls: int = 2,
        vm_name: str = "db01",
        prerequisites_ok: bool = True,
        point_error: str | None = None,
        start_fails: bool = False,
        baseline_fails: bool = False,
    ) -> None:
        self.acknowledge_after = acknowledge_after
        self.pending_polls = pending_polls
        self.vm_name = vm_name
        self.prerequisites_ok = prerequisites_ok
        self.point_error = point_error
        self.start_fails = start_fails
        self.baseline_fails = baseline_fails
        self.shutdown_checks = 0
        self.pending_checks = 0

    def check_failover_prerequisites(self, payload: Any) -> Any:
        StepRef.model_validate(payload)
        if not self.prerequisites_ok:
            return StepResult(
                ok=False, message="no failover settings", error_code="ReplicationNotEnabled"
            ).model_dump(mode="json")
        return StepResult(ok=True).model_dump(mode="json")

    def request_source_shutdown(self, payload: Any) -> Any:
        StepRef.model_validate(payload)
        return ShutdownRequested(
            command_id=f"{JOB}-shutdown", poll_seconds=10, timeout_seconds=60
        ).model_dump(mode="json")

    def check_source_shutdown(self, payload: Any) -> Any:
        ShutdownWatch.model_validate(payload)
        self.shutdown_checks += 1
        done = self.acknowledge_after is not None and self.shutdown_checks > self.acknowledge_after
        return Acknowledged(acknowledged=done).model_dump(mode="json")

    def hold_replication(self, payload: Any) -> Any:
        StepRef.model_validate(payload)
        return Polling(poll_seconds=10, timeout_seconds=600, message="held").model_dump(mode="json")

    def check_pending_data(self, payload: Any) -> Any:
        StepRef.model_validate(payload)
        self.pending_checks += 1
        done = self.pending_checks > self.pending_polls
        return PendingDataState(done=done, message="applying").model_dump(mode="json")

    def pick_failover_point(self, payload: Any) -> Any:
        StepRef.model_validate(payload)
        if self.point_error:
            return PointPicked(ok=False, message=self.point_error, error_code="NoRecoveryPoint").model_dump(
                mode="json"
            )
        return PointPicked(ok=True, recovery_point_id="0000000007-c7").model_dump(mode="json")

    def plan_hydration(self, payload: Any) -> Any:
        request = HydrationRequest.model_validate(payload)
        assert request.failover and request.recovery_point_id == "0000000007-c7" and not request.test
        return PlanOutcome(plan=plan_for(request, self.vm_name)).model_dump(mode="json")

    def start_failover_vm(self, payload: Any) -> Any:
        assert StartVm.model_validate(payload).vm_id == VM_ID
        if self.start_fails:
            return StepResult(ok=False, message="quota", error_code="QuotaExceeded").model_dump(mode="json")
        return StepResult(ok=True, message="running").model_dump(mode="json")

    def take_failback_baseline(self, payload: Any) -> Any:
        request = BaselineRequest.model_validate(payload)
        assert request.disk_ids == [OS_DISK, DATA_DISK]
        if self.baseline_fails:
            return BaselineResult(ok=False, message="throttled", error_code="ArmRequestFailed").model_dump(
                mode="json"
            )
        ids = [baseline_snapshot_id(d, request.job_id) for d in request.disk_ids]
        return BaselineResult(ok=True, snapshot_ids=ids).model_dump(mode="json")

    def stubs(self) -> dict[str, Any]:
        def nothing(payload: Any) -> Any:
            return Done().model_dump(mode="json")

        def delete(payload: Any) -> Any:
            return DeleteRequest.model_validate(payload).resource.model_dump(mode="json")

        return {
            "check_failover_prerequisites": self.check_failover_prerequisites,
            "request_source_shutdown": self.request_source_shutdown,
            "check_source_shutdown": self.check_source_shutdown,
            "hold_replication": self.hold_replication,
            "check_pending_data": self.check_pending_data,
            "pick_failover_point": self.pick_failover_point,
            "plan_hydration": self.plan_hydration,
            "start_failover_vm": self.start_failover_vm,
            "take_failback_baseline": self.take_failback_baseline,
            "delete_resource": delete,
            "record_job_progress": nothing,
            "end_failover_job": nothing,
        }


def steps(r: Run) -> list[tuple[str, str]]:
    return [
        (u.name, u.status)
        for p in r.calls.of("record_job_progress")
        for u in JobProgress.model_validate(p).updates
    ]


def ended(r: Run) -> FailoverOutcome:
    (outcome,) = r.calls.of("end_failover_job")
    return FailoverOutcome.model_validate(outcome)


def deleted(r: Run) -> list[str]:
    return [DeleteRequest.model_validate(p).resource.id for p in r.calls.of("delete_resource")]


def fail_over(world: World, tmp_path: Path, **fields: Any) -> tuple[dict[str, Any], Run]:
    async def scenario() -> tuple[dict[str, Any], Run]:
        async with running(BLUEPRINTS, world.stubs(), tmp_path, ManualClock()) as r:
            payload = FailoverInput(machine_id=MACHINE, job_id=JOB, **fields).model_dump(mode="json")
            instance = await r.start(failover.FAILOVER, JOB, payload)
            return await r.finish(instance, step=10), r

    result: tuple[dict[str, Any], Run] = run(scenario())
    return result


def test_latest_with_shutdown_runs_every_step_in_order_and_records_the_vm_and_baseline(
    tmp_path: Path,
) -> None:
    world = World(acknowledge_after=1, pending_polls=2)
    status, r = fail_over(world, tmp_path, recovery_point="latest", shutdown_source=True)

    assert status["runtimeStatus"] == "Completed"
    finished = [name for name, state in steps(r) if state == "Succeeded"]
    assert finished == [
        S.CHECK_PREREQUISITES,
        S.SHUT_DOWN_SOURCE,
        S.STOP_REPLICATION,
        S.PROCESS_PENDING_DATA,
        S.START_VM,
        S.TAKE_FAILBACK_BASELINE,
    ]  # pick, copy, hydrate and create VM are marked by hydration's activities
    names = r.calls.names()
    assert (
        names.index("hold_replication")
        < names.index("check_pending_data")
        < names.index("pick_failover_point")
    )
    assert (
        names.index("pick_failover_point") < names.index("plan_hydration") < names.index("start_failover_vm")
    )
    assert names.index("start_failover_vm") < names.index("take_failback_baseline")
    assert world.pending_checks == 3 and world.shutdown_checks == 2
    outcome = ended(r)
    assert outcome.succeeded and not outcome.warning
    assert outcome.recovery_point_id == "0000000007-c7" and outcome.vm_id == VM_ID
    assert outcome.disk_ids == [OS_DISK, DATA_DISK]
    assert outcome.failback_baseline_snapshot_ids == [
        baseline_snapshot_id(d, JOB) for d in (OS_DISK, DATA_DISK)
    ]
    assert deleted(r) == []


def test_latest_processed_neither_shuts_down_nor_waits_for_pending_data(tmp_path: Path) -> None:
    world = World()
    status, r = fail_over(world, tmp_path, recovery_point="latestProcessed")

    assert status["runtimeStatus"] == "Completed"
    names = r.calls.names()
    assert "check_pending_data" not in names and "request_source_shutdown" not in names
    assert S.PROCESS_PENDING_DATA not in {n for n, _ in steps(r)}
    assert ended(r).succeeded


def test_a_source_that_never_shuts_down_leaves_the_step_in_warning_and_the_failover_goes_on(
    tmp_path: Path,
) -> None:
    world = World(acknowledge_after=None)
    status, r = fail_over(world, tmp_path, recovery_point="latestProcessed", shutdown_source=True)

    assert status["runtimeStatus"] == "Completed"
    assert (S.SHUT_DOWN_SOURCE, "Warning") in steps(r)
    assert (S.SHUT_DOWN_SOURCE, "Succeeded") not in steps(r)
    assert world.shutdown_checks >= 6  # polled every 10 s for the 60 s the appliance was given
    outcome = ended(r)
    assert outcome.succeeded  # the job's end turns the step's Warning into the job's
    assert "start_failover_vm" in r.calls.names()


@pytest.mark.parametrize(
    ("world", "step", "code"),
    [
        (World(prerequisites_ok=False), S.CHECK_PREREQUISITES, "ReplicationNotEnabled"),
        (World(point_error="no app-consistent point"), S.PICK_RECOVERY_POINT, "NoRecoveryPoint"),
        (World(vm_name=f"fail-{S.HYDRATE.value}"), S.HYDRATE, "PreparationFailed"),
        (World(vm_name=f"fail-{S.CREATE_VM.value}"), S.CREATE_VM, "QuotaExceeded"),
    ],
    ids=["prerequisites", "pick", "hydrate", "create-vm"],
)
def test_a_failure_before_the_vm_exists_leaves_nothing_to_delete(
    world: World, step: S, code: str, tmp_path: Path
) -> None:
    status, r = fail_over(world, tmp_path, recovery_point="latestProcessed")

    assert status["runtimeStatus"] == "Completed"
    outcome = ended(r)
    assert not outcome.succeeded
    assert (outcome.failed_step, outcome.error_code) == (step.value, code)
    assert deleted(r) == []  # hydration compensated its own resources
    assert "start_failover_vm" not in r.calls.names()


def test_a_vm_that_cannot_start_is_deleted_with_its_nic_and_disks(tmp_path: Path) -> None:
    _, r = fail_over(World(start_fails=True), tmp_path, recovery_point="latestProcessed")

    outcome = ended(r)
    assert (outcome.failed_step, outcome.error_code) == (S.START_VM.value, "QuotaExceeded")
    assert deleted(r)[0] == VM_ID  # the VM before what it uses
    assert sorted(deleted(r)) == sorted(r.id for r in FINAL)
    assert "take_failback_baseline" not in r.calls.names()
    assert outcome.leftovers == []


def test_a_failed_baseline_deletes_the_vm_its_disks_and_any_snapshot_taken(tmp_path: Path) -> None:
    _, r = fail_over(World(baseline_fails=True), tmp_path, recovery_point="latestProcessed")

    outcome = ended(r)
    assert outcome.failed_step == S.TAKE_FAILBACK_BASELINE.value
    snapshots = [baseline_snapshot_id(d, JOB) for d in (OS_DISK, DATA_DISK)]
    assert sorted(deleted(r)) == sorted([*(r.id for r in FINAL), *snapshots])
    assert not outcome.succeeded


class Crashing(World):
    """Activities that raise (their retries exhausted) rather than answer a failure."""

    def __init__(self, crash: str, **fields: Any) -> None:
        super().__init__(**fields)
        self.crash = crash

    def stubs(self) -> dict[str, Any]:
        stubs = super().stubs()

        def crash(payload: Any) -> Any:
            raise RuntimeError(f"{self.crash} is down")

        stubs[self.crash] = crash
        return stubs


def test_an_activity_that_keeps_failing_after_the_vm_exists_still_deletes_it(tmp_path: Path) -> None:
    _, r = fail_over(Crashing("start_failover_vm"), tmp_path, recovery_point="latestProcessed")

    outcome = ended(r)
    assert (outcome.failed_step, outcome.error_code) == (S.START_VM.value, "ActivityFailed")
    assert "start_failover_vm is down" in (outcome.error_message or "")
    assert sorted(deleted(r)) == sorted(res.id for res in FINAL)


def test_a_shutdown_check_that_keeps_failing_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    _, r = fail_over(
        Crashing("check_source_shutdown"), tmp_path, recovery_point="latestProcessed", shutdown_source=True
    )

    assert (S.SHUT_DOWN_SOURCE, "Warning") in steps(r)
    assert ended(r).succeeded
