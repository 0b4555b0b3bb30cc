"""The Reprotect job toward Azure after a committed failback: its own orchestration `job-{jobId}`.

Runbook, one job step each: check prerequisites (every disk's replica was brought to the final snapshot
by the commit, the appliance is healthy); send the on-premises changes since the snapshot (the appliance
is asked for one `reprotect` cycle, which the machine's replication orchestration applies to the replicas
like a delta; this job waits for it, bounded, with durable timers); start replication (the cycle moved the
machine to Replicating with a new recovery point). A failure or a cycle that does not come in time ends
the job Failed with MCP-3510 and the machine FailbackCommitted again.
"""

from __future__ import annotations

import azure.durable_functions as df

from orchestrators.blueprints import durable_blueprint
from orchestrators.failback.contracts import FailbackRun, Queued, StepRef, StepResult
from orchestrators.failback.forward_activities import (
    ForwardOutcome,
    check_forward_reprotect,
    end_forward_reprotect_job,
    read_reprotect_cycle,
    request_reprotect_cycle,
)
from orchestrators.failback.job_steps import At, Stopped, begin, progress, run_job
from orchestrators.failback.orchestrator import Orchestration
from orchestrators.failback.planned_activities import Recorded
from orchestrators.hydration.itinerary import call_activity
from orchestrators.polling import Wait
from shared.domain.failback import ForwardReprotectStep as Step

REPROTECT_TO_AZURE = "reprotect_to_azure_orchestrator"
bp = durable_blueprint()


@bp.orchestration_trigger(context_name="context", orchestration=REPROTECT_TO_AZURE)
def reprotect_to_azure_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    run = FailbackRun.model_validate(context.get_input())
    succeeded: bool = yield from run_job(
        context,
        run,
        At(step=Step.CHECK_PREREQUISITES),
        _reprotect,
        outcome=ForwardOutcome,
        end=end_forward_reprotect_job,
    )
    return succeeded


def _reprotect(context: df.DurableOrchestrationContext, run: FailbackRun, at: At) -> Orchestration:
    ref = StepRef(machine_id=run.machine_id, job_id=run.job_id)

    yield from begin(context, run, at, Step.CHECK_PREREQUISITES)
    checked = StepResult.model_validate((yield call_activity(context, check_forward_reprotect, ref)))
    if not checked.ok:
        raise Stopped(checked.error_code, checked.message)
    yield progress(context, run, (Step.CHECK_PREREQUISITES, "Succeeded", checked.message))

    yield from begin(context, run, at, Step.SEND_CHANGES)
    queued = Queued.model_validate((yield call_activity(context, request_reprotect_cycle, ref)))
    wait = Wait.starting(
        context.current_utc_datetime, timeout_seconds=queued.timeout_seconds, poll_seconds=queued.poll_seconds
    )
    while True:
        sent = Recorded.model_validate((yield call_activity(context, read_reprotect_cycle, ref)))
        if sent.done:
            break
        if wait.over(context.current_utc_datetime):
            raise Stopped(
                None,
                f"the appliance sent no reprotect cycle within {queued.timeout_seconds / 60:.0f} minutes "
                f"(command {queued.command_ids[0]}; {sent.message})",
            )
        yield context.create_timer(wait.next_ask(context.current_utc_datetime))
    yield progress(
        context,
        run,
        (Step.SEND_CHANGES, "Succeeded", sent.message),
        (Step.START_REPLICATION, "Succeeded", "replication runs; new recovery points are kept"),
    )
