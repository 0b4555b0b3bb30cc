"""The CommitFailback job: its own orchestration `job-{jobId}`, started by POST /api/machines/{id}/commit
on a machine that failed back to on-premises (FailedBack).

Runbook, one job step each: check prerequisites (a final snapshot recorded for every disk); bring the
replicas to the final snapshots (copied inside Azure, so that a reprotect to Azure later sends only what
changes on-premises from here); delete the Azure VM and its NICs; delete the Azure disks; delete the
reverse snapshots (every snapshot tagged with the machine: the failback baselines, each reverse cycle's,
the final ones); tell the appliance to delete its copy of the disks taken before power-on. A failure ends
the job Failed with the catalog's error: before the first deletion the machine is FailedBack again, after
it CommittingFailback, committed again by the operator.
"""

from __future__ import annotations

import azure.durable_functions as df

from orchestrators.blueprints import durable_blueprint
from orchestrators.failback.commit_activities import (
    DeleteStep,
    check_commit_prerequisites,
    delete_commit_resources,
    end_commit_failback_job,
    sync_replicas,
)
from orchestrators.failback.contracts import FailbackRun, StepRef, StepResult
from orchestrators.failback.job_steps import At, Stopped, begin, progress, run_job
from orchestrators.failback.orchestrator import Orchestration
from orchestrators.failback.planned import command
from orchestrators.failback.planned_activities import Recorded
from orchestrators.hydration.itinerary import call_activity
from shared.domain.failback import CommitFailbackStep as Step
from shared.failback.commit import STEP_KINDS, CommitOutcome

COMMIT_FAILBACK = "commit_failback_orchestrator"
bp = durable_blueprint()


@bp.orchestration_trigger(context_name="context", orchestration=COMMIT_FAILBACK)
def commit_failback_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    run = FailbackRun.model_validate(context.get_input())
    succeeded: bool = yield from run_job(
        context,
        run,
        At(step=Step.CHECK_PREREQUISITES),
        _commit,
        outcome=CommitOutcome,
        end=end_commit_failback_job,
    )
    return succeeded


def _commit(context: df.DurableOrchestrationContext, run: FailbackRun, at: At) -> Orchestration:
    ref = StepRef(machine_id=run.machine_id, job_id=run.job_id)

    yield from begin(context, run, at, Step.CHECK_PREREQUISITES)
    checked = StepResult.model_validate((yield call_activity(context, check_commit_prerequisites, ref)))
    if not checked.ok:
        raise Stopped(checked.error_code, checked.message)
    yield progress(context, run, (Step.CHECK_PREREQUISITES, "Succeeded", checked.message))

    yield from begin(context, run, at, Step.SYNC_REPLICAS)
    synced = Recorded.model_validate((yield call_activity(context, sync_replicas, ref)))
    yield progress(context, run, (Step.SYNC_REPLICAS, "Succeeded", synced.message))

    for step in STEP_KINDS:
        yield from begin(context, run, at, step)
        deleted = Recorded.model_validate(
            (
                yield call_activity(
                    context,
                    delete_commit_resources,
                    DeleteStep(machine_id=run.machine_id, job_id=run.job_id, step=step),
                )
            )
        )
        yield progress(context, run, (step, "Succeeded", deleted.message))

    yield from begin(context, run, at, Step.DELETE_ON_PREMISES_SNAPSHOT)
    yield from command(context, run, "deleteDiskSnapshots")
    yield progress(
        context,
        run,
        (Step.DELETE_ON_PREMISES_SNAPSHOT, "Succeeded", "the appliance deleted its copy of the disks"),
    )
