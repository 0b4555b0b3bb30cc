"""Migration (the cutover), its own orchestration instance `job-{jobId}`.

Runbook: optionally shut the source down (ShutDownSource to the appliance), then a final on-demand
cycle (RunCycle final) so nothing written before the cutover is lost; wait (a durable timer loop at a
growing interval, orchestrators/polling.py) until the machine's orchestration has applied it (until
then the operator may cancel: POST /api/jobs/{jobId}/cancel raises CANCEL_REQUESTED, and the cutover
rolls back as a failure does, the job ending Cancelled); hydrate from the recovery point it left and
create the VM in the target VNet/subnet/size; mark the machine Migrated (replication stops: no more cycles are
accepted). A failure at any point leaves the replica and its recovery points as they were and returns
the machine to Replicating, so replication resumes without a resync. "Complete migration" (DELETE
/api/machines/{id}/replication on a Migrated machine) then removes the replica data.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime
from typing import Any

import azure.durable_functions as df

from orchestrators.blueprints import durable_blueprint
from orchestrators.hydration.activities import record_job_progress
from orchestrators.hydration.contracts import JobProgress, StepUpdate
from orchestrators.hydration.itinerary import ACTIVITY_RETRY
from orchestrators.hydration.orchestrator import plan_and_hydrate
from orchestrators.migration.activities import (
    check_final_cycle,
    check_migration_shutdown,
    end_migration_job,
    request_final_cycle,
)
from orchestrators.migration.contracts import (
    FinalCycleRequest,
    FinalCycleStarted,
    FinalCycleState,
    FinalCycleWatch,
    JobInput,
    JobOutcome,
    ShutdownState,
)
from orchestrators.migration.test_migration import job_outcome
from orchestrators.names import CANCEL_REQUESTED, CANCELLABLE_STATUS, NOT_CANCELLABLE_STATUS
from orchestrators.polling import Wait
from shared.migration import service as m

MIGRATION = "migration_orchestrator"

Orchestration = Generator[Any, Any, Any]
bp = durable_blueprint()


@bp.orchestration_trigger(context_name="context", orchestration=MIGRATION)
def migration_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    job = JobInput.model_validate(context.get_input())
    final = yield from _final_cycle(context, job)
    if final.cancelled:
        outcome = JobOutcome(
            machine_id=job.machine_id,
            job_id=job.job_id,
            succeeded=False,
            cancelled=True,
            error_code="Cancelled",
            error_message=final.message,
        )
    elif final.recovery_point_id is None:
        outcome = JobOutcome(
            machine_id=job.machine_id,
            job_id=job.job_id,
            succeeded=False,
            error_code=final.error_code or "FinalCycleFailed",
            error_message=final.message,
            failed_step=final.failed_step or m.STEP_FINAL_CYCLE,
        )
    else:
        job = job.model_copy(update={"recovery_point_id": final.recovery_point_id})
        hydrated = yield from plan_and_hydrate(context, job.hydration(test=False))
        outcome = job_outcome(job, hydrated)
    if outcome.succeeded:
        yield _progress(context, job, (m.STEP_FINISH_MIGRATION, "Succeeded", None))
    yield context.call_activity_with_retry(end_migration_job, ACTIVITY_RETRY, outcome.model_dump(mode="json"))
    return outcome.model_dump(mode="json")


def _final_cycle(context: df.DurableOrchestrationContext, job: JobInput) -> Orchestration:
    # Until the final cycle is applied nothing exists in Azure: a cancel request is honoured; it is
    # buffered by Durable until the wait below looks at it.
    cancel = context.wait_for_external_event(CANCEL_REQUESTED)
    context.set_custom_status(CANCELLABLE_STATUS)
    started = FinalCycleStarted.model_validate(
        (
            yield context.call_activity_with_retry(
                request_final_cycle,
                ACTIVITY_RETRY,
                FinalCycleRequest(
                    machine_id=job.machine_id, job_id=job.job_id, shutdown_source=job.shutdown_source
                ).model_dump(mode="json"),
            )
        )
    )
    if job.shutdown_source:
        shutdown = yield from _shutdown(context, job, started, cancel)
        if shutdown is not None:
            context.set_custom_status(NOT_CANCELLABLE_STATUS)
            return shutdown
    yield _progress(context, job, (m.STEP_FINAL_CYCLE, "InProgress", None))
    wait = Wait.starting(
        context.current_utc_datetime,
        timeout_seconds=started.timeout_seconds,
        poll_seconds=started.poll_seconds,
    )
    while True:
        state = FinalCycleState.model_validate(
            (
                yield context.call_activity_with_retry(
                    check_final_cycle,
                    ACTIVITY_RETRY,
                    FinalCycleWatch(machine_id=job.machine_id, job_id=job.job_id).model_dump(mode="json"),
                )
            )
        )
        if state.applied or state.rejected:
            break
        if wait.over(context.current_utc_datetime):
            state = FinalCycleState(
                applied=False,
                message=(
                    f"the final cycle was not applied within {started.timeout_seconds / 60:.0f} minutes; is the "
                    "appliance connected? The replica is unchanged: migrate again when it is"
                ),
            )
            break
        if (yield from _cancelled_before(context, cancel, wait.next_ask(context.current_utc_datetime))):
            break
    # A request that arrived while the last check ran counts too: the cutover has not gone further.
    # Durable hands an event only to a wait that is yielded: look once more, with a timer already due.
    if cancel.is_completed or (yield from _cancelled_before(context, cancel, context.current_utc_datetime)):
        state = FinalCycleState(applied=False, cancelled=True, message=_CANCELLED)
    context.set_custom_status(NOT_CANCELLABLE_STATUS)
    if state.cancelled:
        yield _progress(context, job, (m.STEP_FINAL_CYCLE, "Cancelled", None))
        return state
    if not state.applied:
        yield _progress(context, job, (m.STEP_FINAL_CYCLE, "Failed", state.message))
        return state
    yield _progress(context, job, (m.STEP_FINAL_CYCLE, "Succeeded", None))
    return state


def _shutdown(
    context: df.DurableOrchestrationContext, job: JobInput, started: FinalCycleStarted, cancel: Any
) -> Orchestration:
    """Wait (bounded) until the appliance confirms the source is off. None: go on to the final cycle
    (confirmed, or not but the operator asked to continue: the step warns); else the state that ends the
    cutover here, before anything exists in Azure (not confirmed, or cancelled meanwhile)."""
    yield _progress(context, job, (m.STEP_SHUTDOWN, "InProgress", None))
    wait = Wait.starting(
        context.current_utc_datetime,
        timeout_seconds=started.shutdown_timeout_seconds,
        poll_seconds=started.poll_seconds,
    )
    watch = FinalCycleWatch(machine_id=job.machine_id, job_id=job.job_id).model_dump(mode="json")
    while True:
        state = ShutdownState.model_validate(
            (yield context.call_activity_with_retry(check_migration_shutdown, ACTIVITY_RETRY, watch))
        )
        if state.confirmed:
            yield _progress(context, job, (m.STEP_SHUTDOWN, "Succeeded", None))
            return None
        if state.answered or wait.over(context.current_utc_datetime):
            break
        if (yield from _cancelled_before(context, cancel, wait.next_ask(context.current_utc_datetime))):
            yield _progress(context, job, (m.STEP_SHUTDOWN, "Cancelled", None))
            return FinalCycleState(applied=False, cancelled=True, message=_CANCELLED)
    why = (
        state.message
        if state.answered
        else f"the appliance did not confirm within {started.shutdown_timeout_seconds:.0f} s that the source is off"
    )
    if job.continue_without_shutdown:
        warning = (
            f"{why}; the cutover goes on as asked (continueWithoutShutdown): the source may still be running"
        )
        yield _progress(context, job, (m.STEP_SHUTDOWN, "Warning", warning))
        return None
    message = (
        f"{why}. Nothing was created in Azure and the machine is back to Replicating. Check that the "
        "appliance is connected and can power the machine off (or shut it down yourself), then migrate "
        'again; to cut over without the confirmation, migrate with "continueWithoutShutdown": true'
    )
    yield _progress(context, job, (m.STEP_SHUTDOWN, "Failed", message))
    return FinalCycleState(
        applied=False, message=message, error_code=m.SHUTDOWN_NOT_CONFIRMED, failed_step=m.STEP_SHUTDOWN
    )


def _cancelled_before(context: df.DurableOrchestrationContext, cancel: Any, until: datetime) -> Orchestration:
    """Wait until `until` (a durable timer) unless the cancel request comes first; True if it did."""
    timer = context.create_timer(until)
    winner = yield context.task_any([timer, cancel])
    if winner is cancel:
        timer.cancel()
        return True
    return False


_CANCELLED = (
    "cancelled by the operator while the cutover waited for the final cycle, before anything was created "
    "in Azure; the machine is back to Replicating and replication resumes. A source already shut down "
    "stays down: start it again if it should keep serving"
)


def _progress(
    context: df.DurableOrchestrationContext, job: JobInput, *updates: tuple[str, str, str | None]
) -> Any:
    return context.call_activity_with_retry(
        record_job_progress,
        ACTIVITY_RETRY,
        JobProgress(
            job_id=job.job_id,
            updates=[StepUpdate(name=n, status=s, message=msg) for n, s, msg in updates],
        ).model_dump(mode="json"),
    )
