"""Change of recovery point and commit after a failover, through the real SDK replay: the step order,
and that a failure after the swap puts the old disks back and deletes the new ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest

from devhost.durable import ManualClock
from orchestrators.failover import activities as failover_activities
from orchestrators.failover import after
from orchestrators.failover.contracts import (
    BaselineRequest,
    BaselineResult,
    ChangeInput,
    FailoverOutcome,
    PointsDeleted,
    StartVm,
    StepRef,
    StepResult,
    SwapDisks,
    baseline_snapshot_id,
)
from orchestrators.hydration import activities as hydration_activities
from orchestrators.hydration.contracts import (
    DeleteRequest,
    Done,
    HydrationOutcome,
    HydrationPlan,
    HydrationRequest,
    HydrationResult,
    PlanOutcome,
    Resource,
    ResourceKind,
)
from orchestrators.hydration.orchestrator import HYDRATION
from tests.orchestrators.conftest import Run, run, running
from tests.orchestrators.test_migration_orchestrators import SUBSCRIPTION, plan_for

MACHINE = "vm-1"
JOB = "job-0000000000c1"
RG = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-failover/providers"
VM_ID = f"{RG}/Microsoft.Compute/virtualMachines/db01"
OLD = [f"{RG}/Microsoft.Compute/disks/db01-os-old", f"{RG}/Microsoft.Compute/disks/db01-data-old"]
OLD_SNAPSHOTS = [f"{RG}/Microsoft.Compute/snapshots/b-os", f"{RG}/Microsoft.Compute/snapshots/b-data"]
NEW = [f"{RG}/Microsoft.Compute/disks/db01-os-new", f"{RG}/Microsoft.Compute/disks/db01-data-new"]

disks_stub = df.Blueprint()


@disks_stub.orchestration_trigger(context_name="context", orchestration=HYDRATION)
def hydration_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    """Named as the real one: prepares the new disks (no VM, no NIC)."""
    plan = HydrationPlan.model_validate(context.get_input())
    assert plan.disks_only
    return HydrationOutcome(
        result=HydrationResult(
            vm_id="",
            nic_id="",
            os_disk_id=NEW[0],
            data_disk_ids=NEW[1:],
            final_resources=[Resource(kind=ResourceKind.DISK, id=d) for d in NEW],
            arm_waits_critical_path=6,
            hydration_seconds=40.0,
            used_fallback_network=False,
            preparation=None,
        )
    ).model_dump(mode="json")
    yield  # the SDK drives orchestrators as generators


BLUEPRINTS = [after.bp, failover_activities.bp, hydration_activities.bp, disks_stub]


class Cloud:
    def __init__(self, *, fail: str | None = None) -> None:
        self.fail = fail
        self.swaps: list[list[str]] = []

    def plan_hydration(self, payload: Any) -> Any:
        request = HydrationRequest.model_validate(payload)
        assert request.disks_only and request.failover and request.recovery_point_id == "p2"
        plan = plan_for(request).model_copy(update={"disks_only": True})
        return PlanOutcome(plan=plan).model_dump(mode="json")

    def _vm(self, name: str, payload: Any) -> Any:
        StartVm.model_validate(payload)
        if self.fail == name:
            return StepResult(ok=False, message=f"{name} failed", error_code="Conflict").model_dump(
                mode="json"
            )
        return StepResult(ok=True).model_dump(mode="json")

    def swap(self, payload: Any) -> Any:
        request = SwapDisks.model_validate(payload)
        self.swaps.append([request.os_disk_id, *request.data_disk_ids])
        if self.fail == "swap" and len(self.swaps) == 1:
            return StepResult(ok=False, message="swap failed", error_code="OperationNotAllowed").model_dump(
                mode="json"
            )
        return StepResult(ok=True).model_dump(mode="json")

    def baseline(self, payload: Any) -> Any:
        request = BaselineRequest.model_validate(payload)
        ids = [baseline_snapshot_id(d, request.job_id) for d in request.disk_ids]
        return BaselineResult(ok=True, snapshot_ids=ids).model_dump(mode="json")

    def stubs(self) -> dict[str, Any]:
        def nothing(payload: Any) -> Any:
            return Done().model_dump(mode="json")

        def delete(payload: Any) -> Any:
            return DeleteRequest.model_validate(payload).resource.model_dump(mode="json")

        return {
            "plan_hydration": self.plan_hydration,
            "stop_failover_vm": lambda p: self._vm("stop", p),
            "start_failover_vm": lambda p: self._vm("start", p),
            "swap_failover_vm_disks": self.swap,
            "take_failback_baseline": self.baseline,
            "delete_resource": delete,
            "record_job_progress": nothing,
            "end_failover_job": nothing,
            "delete_other_recovery_points": lambda p: PointsDeleted(
                deleted=["p0", "p1"], kept=StepRef.model_validate(p).machine_id and "p2"
            ).model_dump(mode="json"),
        }


def _run(cloud: Cloud, tmp_path: Path, orchestrator: str, payload: dict[str, Any]) -> Run:
    async def scenario() -> Run:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            instance = await r.start(orchestrator, JOB, payload)
            status = await r.finish(instance, step=10)
            assert status["runtimeStatus"] == "Completed", status
            return r

    result: Run = run(scenario())
    return result


def _change(cloud: Cloud, tmp_path: Path) -> Run:
    payload = ChangeInput(
        machine_id=MACHINE,
        job_id=JOB,
        recovery_point_id="p2",
        vm_id=VM_ID,
        old_disk_ids=OLD,
        old_snapshot_ids=OLD_SNAPSHOTS,
    ).model_dump(mode="json")
    return _run(cloud, tmp_path, after.CHANGE_RECOVERY_POINT, payload)


def _ended(r: Run) -> FailoverOutcome:
    (outcome,) = r.calls.of("end_failover_job")
    return FailoverOutcome.model_validate(outcome)


def _deleted(r: Run) -> list[str]:
    return [DeleteRequest.model_validate(p).resource.id for p in r.calls.of("delete_resource")]


def test_a_change_stops_swaps_starts_then_deletes_the_old_disks_and_takes_a_new_baseline(
    tmp_path: Path,
) -> None:
    cloud = Cloud()
    r = _change(cloud, tmp_path)

    names = [n for n in r.calls.names() if n not in ("record_job_progress", "delete_resource")]
    assert names == [
        "plan_hydration",
        "stop_failover_vm",
        "swap_failover_vm_disks",
        "start_failover_vm",
        "take_failback_baseline",
        "end_failover_job",
    ]
    assert cloud.swaps == [NEW]
    assert sorted(_deleted(r)) == sorted([*OLD, *OLD_SNAPSHOTS])
    outcome = _ended(r)
    assert outcome.succeeded and outcome.disk_ids == NEW and outcome.recovery_point_id == "p2"
    assert outcome.failback_baseline_snapshot_ids == [baseline_snapshot_id(d, JOB) for d in NEW]


@pytest.mark.parametrize(("fail", "step"), [("swap", "Swap disks"), ("start", "Start VM")])
def test_a_failure_after_the_stop_puts_the_old_disks_back_and_deletes_the_new(
    fail: str, step: str, tmp_path: Path
) -> None:
    cloud = Cloud(fail=fail)
    r = _change(cloud, tmp_path)

    assert cloud.swaps[-1] == OLD  # the VM is given its own disks back
    assert sorted(_deleted(r)) == sorted(NEW)
    assert "take_failback_baseline" not in r.calls.names()
    outcome = _ended(r)
    assert not outcome.succeeded and outcome.failed_step == step


def test_a_vm_that_cannot_stop_keeps_its_disks(tmp_path: Path) -> None:
    cloud = Cloud(fail="stop")
    r = _change(cloud, tmp_path)

    assert cloud.swaps == []
    assert sorted(_deleted(r)) == sorted(NEW)
    assert _ended(r).failed_step == "Stop VM"


def test_commit_deletes_the_other_points_and_ends_the_job(tmp_path: Path) -> None:
    r = _run(Cloud(), tmp_path, after.COMMIT, StepRef(machine_id=MACHINE, job_id=JOB).model_dump(mode="json"))

    assert r.calls.names().count("delete_other_recovery_points") == 1
    outcome = _ended(r)
    assert outcome.succeeded and outcome.recovery_point_id == "p2"
