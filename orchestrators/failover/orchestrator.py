"""Failover to Azure, its own orchestration instance `job-{jobId}`.

Runbook, one job step each: check prerequisites; shut the source down (optional: the appliance's
ShutDownSource, a bounded wait, Warning and on if it fails or times out); stop replication (held since
the request: the machine is FailingOver); process pending data (`latest` only: the cycles already in
the inbox apply); pick the recovery point; copy it and import the disks, hydrate on the temporary VM,
create the VM (the hydration sub-orchestration, from the failover settings, never on the replica);
start the VM; take the failback baseline: record the incremental snapshot of each new disk that
hydration took right after importing it, before the temporary VM or the first boot wrote to it, so the
baseline is the recovery point's content and replicating back sends hydration's changes too.

Any failure deletes what the job created (hydration compensates its own, the baseline snapshots with
them; after it, the VM, its NIC and disks and the baseline snapshots are deleted here, in the resource
kinds' order), and the job's end
returns the machine to Replicating with the catalog's error naming the failing step. Nothing cancels
a failover: it has no cancel route and this orchestration raises no cancel event.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import azure.durable_functions as df

from orchestrators.blueprints import durable_blueprint
from orchestrators.failover.activities import (
    check_failover_prerequisites,
    check_pending_data,
    check_source_shutdown,
    end_failover_job,
    hold_replication,
    pick_failover_point,
    request_source_shutdown,
    start_failover_vm,
    take_failback_baseline,
)
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
from orchestrators.hydration.contracts import (
    HydrationRequest,
    HydrationResult,
    Payload,
    Resource,
    ResourceKind,
)
from orchestrators.hydration.itinerary import call_activity, record_progress
from orchestrators.hydration.orchestrator import delete_all, plan_and_hydrate
from orchestrators.polling import Wait
from shared.domain.failover import FailoverStep as Step
from shared.failover.service import LATEST

FAILOVER = "failover_orchestrator"

Orchestration = Generator[Any, Any, Any]
bp = durable_blueprint()


class FailoverStopped(Exception):
    """A step failed: the job ends Failed at `step` (what it created is already deleted)."""

    def __init__(
        self, step: Step, code: str | None, message: str, leftovers: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.step = step
        self.code = code
        self.message = message
        self.leftovers = leftovers or []


@dataclass
class Where:
    """The step the failover is at and what it has created so far (the VM, its NIC, disks, snapshots)."""

    step: Step = Step.CHECK_PREREQUISITES
    made: list[Resource] = field(default_factory=list)


@bp.orchestration_trigger(context_name="context", orchestration=FAILOVER)
def failover_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    job = FailoverInput.model_validate(context.get_input())
    where = Where()
    try:
        outcome = yield from _fail_over(context, job, where)
    except FailoverStopped as stop:
        outcome = FailoverOutcome(
            machine_id=job.machine_id,
            job_id=job.job_id,
            succeeded=False,
            failed_step=stop.step.value,
            error_code=stop.code,
            error_message=stop.message,
            leftovers=stop.leftovers,
        )
    except Exception as exc:
        # An activity that exhausted its retries: undo what exists, fail at the step it was in.
        leftovers = yield from delete_all(context, where.made)
        outcome = FailoverOutcome(
            machine_id=job.machine_id,
            job_id=job.job_id,
            succeeded=False,
            failed_step=where.step.value,
            error_code="ActivityFailed",
            error_message=str(exc),
            leftovers=leftovers,
        )
    yield _call(context, end_failover_job, outcome)
    return outcome.model_dump(mode="json")


def _fail_over(context: df.DurableOrchestrationContext, job: FailoverInput, where: Where) -> Orchestration:
    ref = StepRef(machine_id=job.machine_id, job_id=job.job_id)

    yield _progress(context, job, (Step.CHECK_PREREQUISITES, "InProgress", None))
    checked = StepResult.model_validate((yield _call(context, check_failover_prerequisites, ref)))
    if not checked.ok:
        raise FailoverStopped(Step.CHECK_PREREQUISITES, checked.error_code, checked.message)
    yield _progress(context, job, (Step.CHECK_PREREQUISITES, "Succeeded", None))

    if job.shutdown_source:
        where.step = Step.SHUT_DOWN_SOURCE
        yield from _shut_down_source(context, job, ref)

    where.step = Step.STOP_REPLICATION
    held = Polling.model_validate((yield _call(context, hold_replication, ref)))
    yield _progress(context, job, (Step.STOP_REPLICATION, "Succeeded", None))

    if job.recovery_point == LATEST:
        where.step = Step.PROCESS_PENDING_DATA
        yield from _process_pending_data(context, job, ref, held)

    where.step = Step.PICK_RECOVERY_POINT
    yield _progress(context, job, (Step.PICK_RECOVERY_POINT, "InProgress", None))
    picked = PointPicked.model_validate((yield _call(context, pick_failover_point, ref)))
    if not picked.ok or picked.recovery_point_id is None:
        raise FailoverStopped(Step.PICK_RECOVERY_POINT, picked.error_code, picked.message)

    where.step = Step.HYDRATE
    hydrated = yield from plan_and_hydrate(
        context,
        HydrationRequest(
            machine_id=job.machine_id,
            job_id=job.job_id,
            test=False,
            recovery_point_id=picked.recovery_point_id,
            failover=True,
        ),
    )
    if hydrated.result is None:
        failure = hydrated.failure
        assert failure is not None
        # Hydration names the failing step, but for the VM's network interface (created with the disks).
        step = _step_named(failure.step) or Step.CREATE_VM
        raise FailoverStopped(step, failure.code, failure.message)
    result: HydrationResult = hydrated.result

    where.made += result.final_resources
    where.step = Step.START_VM
    yield _progress(context, job, (Step.START_VM, "InProgress", None))
    started = StepResult.model_validate(
        (yield _call(context, start_failover_vm, StartVm(job_id=job.job_id, vm_id=result.vm_id)))
    )
    if not started.ok:
        yield from _undo(context, where, Step.START_VM, started.error_code, started.message)
    yield _progress(context, job, (Step.START_VM, "Succeeded", started.message))

    disks = [result.os_disk_id, *result.data_disk_ids]
    # Hydration took them before preparing the disks and lists them with its final resources.
    baseline_ids = [
        Resource(kind=ResourceKind.SNAPSHOT, id=baseline_snapshot_id(d, job.job_id)) for d in disks
    ]
    where.made += [r for r in baseline_ids if r not in where.made]
    where.step = Step.TAKE_FAILBACK_BASELINE
    yield _progress(context, job, (Step.TAKE_FAILBACK_BASELINE, "InProgress", None))
    baseline = BaselineResult.model_validate(
        (
            yield _call(
                context,
                take_failback_baseline,
                BaselineRequest(machine_id=job.machine_id, job_id=job.job_id, disk_ids=disks),
            )
        )
    )
    if not baseline.ok:
        yield from _undo(context, where, Step.TAKE_FAILBACK_BASELINE, baseline.error_code, baseline.message)
    yield _progress(context, job, (Step.TAKE_FAILBACK_BASELINE, "Succeeded", None))
    return FailoverOutcome(
        machine_id=job.machine_id,
        job_id=job.job_id,
        succeeded=True,
        recovery_point_id=picked.recovery_point_id,
        vm_id=result.vm_id,
        disk_ids=disks,
        failback_baseline_snapshot_ids=baseline.snapshot_ids,
    )


def _shut_down_source(
    context: df.DurableOrchestrationContext, job: FailoverInput, ref: StepRef
) -> Orchestration:
    """Ask, then wait a bounded time: as in Site Recovery, the failover goes on whatever the answer."""
    yield _progress(context, job, (Step.SHUT_DOWN_SOURCE, "InProgress", None))
    try:
        requested = ShutdownRequested.model_validate((yield _call(context, request_source_shutdown, ref)))
    except Exception as exc:
        yield _progress(
            context, job, (Step.SHUT_DOWN_SOURCE, "Warning", f"the shutdown command could not be sent: {exc}")
        )
        return
    wait = Wait.starting(
        context.current_utc_datetime,
        timeout_seconds=requested.timeout_seconds,
        poll_seconds=requested.poll_seconds,
    )
    watch = ShutdownWatch(machine_id=job.machine_id, command_id=requested.command_id)
    while True:
        try:
            state = Acknowledged.model_validate((yield _call(context, check_source_shutdown, watch)))
        except Exception:
            state = Acknowledged(acknowledged=False)  # unknown counts as not shut down: keep waiting
        if state.acknowledged:
            yield _progress(
                context, job, (Step.SHUT_DOWN_SOURCE, "Succeeded", "the appliance shut the source down")
            )
            return
        if wait.over(context.current_utc_datetime):
            break
        yield context.create_timer(wait.next_ask(context.current_utc_datetime))
    yield _progress(
        context,
        job,
        (
            Step.SHUT_DOWN_SOURCE,
            "Warning",
            f"the appliance did not confirm the shutdown within {requested.timeout_seconds:.0f} s; the failover "
            "goes on, and the source may still be running: shut it down yourself before users reach the "
            "failed-over VM",
        ),
    )


def _process_pending_data(
    context: df.DurableOrchestrationContext, job: FailoverInput, ref: StepRef, polling: Polling
) -> Orchestration:
    yield _progress(context, job, (Step.PROCESS_PENDING_DATA, "InProgress", None))
    wait = Wait.starting(
        context.current_utc_datetime,
        timeout_seconds=polling.timeout_seconds,
        poll_seconds=polling.poll_seconds,
    )
    while True:
        state = PendingDataState.model_validate((yield _call(context, check_pending_data, ref)))
        if state.done:
            yield _progress(context, job, (Step.PROCESS_PENDING_DATA, "Succeeded", None))
            return
        if wait.over(context.current_utc_datetime):
            raise FailoverStopped(
                Step.PROCESS_PENDING_DATA,
                "PendingDataTimedOut",
                f"the received cycles were not applied within {polling.timeout_seconds / 60:.0f} minutes "
                f"({state.message}); fail over to 'latestProcessed' to use the newest point now",
            )
        yield context.create_timer(wait.next_ask(context.current_utc_datetime))


def _undo(
    context: df.DurableOrchestrationContext, where: Where, step: Step, code: str | None, message: str
) -> Orchestration:
    leftovers = yield from delete_all(context, where.made)
    where.made = []
    raise FailoverStopped(step, code, message, leftovers)


def _step_named(name: str | None) -> Step | None:
    return next((s for s in Step if s.value == name), None)


def _call(context: df.DurableOrchestrationContext, activity: Any, payload: Payload | FailoverOutcome) -> Any:
    return call_activity(context, activity, payload)


def _progress(
    context: df.DurableOrchestrationContext, job: FailoverInput, *updates: tuple[Step, str, str | None]
) -> Any:
    return record_progress(context, job.job_id, *updates)
