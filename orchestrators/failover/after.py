"""After a failover: change the recovery point, and commit; each its own orchestration `job-{jobId}`.

Change of recovery point: disks are built from the other point exactly as the failover built its own
(copies of the point, imported, prepared on the temporary VM, never the replica), but no VM: the VM
is stopped (deallocated), given the new OS and data disks in one update, and started; the old disks
and their failback baseline are deleted and the new baseline is recorded: the snapshots hydration took of
the new disks right after importing them, before they were prepared (deleted with the new disks when
the change fails). A failure before the swap deletes
the new disks; a failure after it puts the old disks back and starts the VM again, so the VM always
runs on one point's disks.

Commit: every recovery point but the failover's is deleted (its blob snapshots, then its catalog
entry); the machine is FailoverCommitted from the request on, so the point can no longer change.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from orchestrators.blueprints import durable_blueprint
from orchestrators.failover.activities import (
    delete_other_recovery_points,
    end_failover_job,
    start_failover_vm,
    stop_failover_vm,
    swap_failover_vm_disks,
    take_failback_baseline,
)
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
from orchestrators.hydration.contracts import (
    HydrationRequest,
    HydrationResult,
    Payload,
    Resource,
    ResourceKind,
)
from orchestrators.hydration.itinerary import call_activity, record_progress
from orchestrators.hydration.orchestrator import delete_all, plan_and_hydrate
from shared.domain.failover import ChangeRecoveryPointStep as Step
from shared.domain.failover import CommitStep

CHANGE_RECOVERY_POINT = "change_recovery_point_orchestrator"
COMMIT = "commit_failover_orchestrator"

Orchestration = Generator[Any, Any, Any]
bp = durable_blueprint()


class ChangeStopped(Exception):
    def __init__(self, step: Step, code: str | None, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.code = code
        self.message = message


@bp.orchestration_trigger(context_name="context", orchestration=CHANGE_RECOVERY_POINT)
def change_recovery_point_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    job = ChangeInput.model_validate(context.get_input())
    try:
        outcome = yield from _change(context, job)
    except ChangeStopped as stop:
        outcome = FailoverOutcome(
            machine_id=job.machine_id,
            job_id=job.job_id,
            succeeded=False,
            failed_step=stop.step.value,
            error_code=stop.code,
            error_message=stop.message,
        )
    yield _call(context, end_failover_job, outcome)
    return outcome.model_dump(mode="json")


def _change(context: df.DurableOrchestrationContext, job: ChangeInput) -> Orchestration:
    hydrated = yield from plan_and_hydrate(
        context,
        HydrationRequest(
            machine_id=job.machine_id,
            job_id=job.job_id,
            test=False,
            recovery_point_id=job.recovery_point_id,
            failover=True,
            disks_only=True,
        ),
    )
    if hydrated.result is None:
        failure = hydrated.failure
        assert failure is not None
        step = next((s for s in Step if s.value == failure.step), Step.HYDRATE)
        raise ChangeStopped(step, failure.code, failure.message)
    result: HydrationResult = hydrated.result
    new_disks = [result.os_disk_id, *result.data_disk_ids]
    created = list(result.final_resources)
    vm = StartVm(job_id=job.job_id, vm_id=job.vm_id)

    yield _progress(context, job, (Step.STOP_VM, "InProgress", None))
    stopped = StepResult.model_validate((yield _call(context, stop_failover_vm, vm)))
    if not stopped.ok:
        yield from delete_all(context, created)
        yield from _restart(context, vm)
        raise ChangeStopped(Step.STOP_VM, stopped.error_code, stopped.message)
    yield _progress(context, job, (Step.STOP_VM, "Succeeded", stopped.message))

    swap = SwapDisks(vm_id=job.vm_id, os_disk_id=new_disks[0], data_disk_ids=new_disks[1:])
    for step, activity, payload in (
        (Step.SWAP_DISKS, swap_failover_vm_disks, swap),
        (Step.START_VM, start_failover_vm, vm),
    ):
        yield _progress(context, job, (step, "InProgress", None))
        done = StepResult.model_validate((yield _call(context, activity, payload)))
        if not done.ok:
            # Back to the old disks, running, before the new ones go: the VM keeps its point.
            back = SwapDisks(
                vm_id=job.vm_id, os_disk_id=job.old_disk_ids[0], data_disk_ids=job.old_disk_ids[1:]
            )
            yield _call(context, swap_failover_vm_disks, back)
            yield from _restart(context, vm)
            yield from delete_all(context, created)
            raise ChangeStopped(step, done.error_code, done.message)
        yield _progress(context, job, (step, "Succeeded", done.message))

    yield _progress(context, job, (Step.DELETE_OLD_DISKS, "InProgress", None))
    old = [Resource(kind=ResourceKind.SNAPSHOT, id=i) for i in job.old_snapshot_ids]
    old += [Resource(kind=ResourceKind.DISK, id=i) for i in job.old_disk_ids]
    leftovers = yield from delete_all(context, old)
    if leftovers:
        note = f"could not delete {', '.join(leftovers)}: delete them yourself (they are no longer attached)"
        yield _progress(context, job, (Step.DELETE_OLD_DISKS, "Warning", note))
    else:
        yield _progress(context, job, (Step.DELETE_OLD_DISKS, "Succeeded", None))

    yield _progress(context, job, (Step.TAKE_FAILBACK_BASELINE, "InProgress", None))
    baseline = BaselineResult.model_validate(
        (
            yield _call(
                context,
                take_failback_baseline,
                BaselineRequest(machine_id=job.machine_id, job_id=job.job_id, disk_ids=new_disks),
            )
        )
    )
    snapshots = baseline.snapshot_ids if baseline.ok else []
    if baseline.ok:
        yield _progress(context, job, (Step.TAKE_FAILBACK_BASELINE, "Succeeded", None))
    else:
        # The VM already runs on the new point: the change stands, without a baseline to fail back from.
        taken = [
            Resource(kind=ResourceKind.SNAPSHOT, id=baseline_snapshot_id(d, job.job_id)) for d in new_disks
        ]
        yield from delete_all(context, taken)
        note = f"no failback baseline was taken ({baseline.message}); change the recovery point again to take one"
        yield _progress(context, job, (Step.TAKE_FAILBACK_BASELINE, "Warning", note))
    return FailoverOutcome(
        machine_id=job.machine_id,
        job_id=job.job_id,
        succeeded=True,
        recovery_point_id=job.recovery_point_id,
        vm_id=job.vm_id,
        disk_ids=new_disks,
        failback_baseline_snapshot_ids=snapshots,
    )


def _restart(context: df.DurableOrchestrationContext, vm: StartVm) -> Orchestration:
    # Best effort: the job's error says what failed; a VM that stays stopped is the operator's to start.
    yield _call(context, start_failover_vm, vm)


@bp.orchestration_trigger(context_name="context", orchestration=COMMIT)
def commit_failover_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    ref = StepRef.model_validate(context.get_input())
    yield _progress(context, ref, (CommitStep.DELETE_OTHER_POINTS, "InProgress", None))
    result = PointsDeleted.model_validate((yield _call(context, delete_other_recovery_points, ref)))
    outcome = FailoverOutcome(
        machine_id=ref.machine_id,
        job_id=ref.job_id,
        succeeded=not result.failed,
        recovery_point_id=result.kept,
        error_code="DeleteFailed" if result.failed else None,
        error_message=(
            f"could not delete {'; '.join(result.failed)}; commit again to retry" if result.failed else None
        ),
    )
    if not result.failed:
        message = f"deleted {len(result.deleted)} recovery point(s); kept {result.kept}"
        yield _progress(context, ref, (CommitStep.DELETE_OTHER_POINTS, "Succeeded", message))
    yield _call(context, end_failover_job, outcome)
    return outcome.model_dump(mode="json")


def _call(context: df.DurableOrchestrationContext, activity: Any, payload: Payload | FailoverOutcome) -> Any:
    return call_activity(context, activity, payload)


def _progress(
    context: df.DurableOrchestrationContext, job: ChangeInput | StepRef, *updates: tuple[Any, str, str | None]
) -> Any:
    return record_progress(context, job.job_id, *updates)
