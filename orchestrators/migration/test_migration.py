"""Test migration and its clean-up, each its own orchestration instance `job-{jobId}`.

Test migration: plan (pick the recovery point, resolve the test VNet), then the hydration
sub-orchestration builds the VM in the isolated test VNet from copies of that point; the replica is
never touched and the machine's own orchestration keeps applying cycles meanwhile. The job ends the
machine in TestMigrated, or (after hydration's compensation) back in Replicating.

Clean-up deletes every resource tagged with the test migration's job id (the test VM, its NIC and
disks, and anything a failed compensation left), in dependency order, and returns the machine to
Replicating. When something resists, the step fails with ARM's code and message for it (what it may still
use is tried once, not retried) and the machine stays TestMigrated with that test migration as its job:
the clean-up can simply be run again.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from orchestrators.blueprints import durable_blueprint
from orchestrators.hydration.activities import delete_resource, record_job_progress
from orchestrators.hydration.contracts import (
    DeleteRequest,
    HydrationOutcome,
    JobProgress,
    Resource,
    StepUpdate,
)
from orchestrators.hydration.itinerary import ACTIVITY_RETRY, DELETE_RETRY
from orchestrators.hydration.orchestrator import plan_and_hydrate
from orchestrators.migration.activities import end_migration_job, find_job_resources, try_delete_resource
from orchestrators.migration.contracts import (
    CleanupResult,
    DeleteVerdict,
    JobInput,
    JobOutcome,
    JobResourcesQuery,
    TestResources,
)
from shared.migration import service as m
from shared.migration.resource_kinds import DELETE_ORDER, ResourceKind, held_back

TEST_MIGRATION = "test_migration_orchestrator"
TEST_MIGRATION_CLEANUP = "test_migration_cleanup_orchestrator"

Orchestration = Generator[Any, Any, Any]
bp = durable_blueprint()


@bp.orchestration_trigger(context_name="context", orchestration=TEST_MIGRATION)
def test_migration_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    job = JobInput.model_validate(context.get_input())
    hydrated = yield from plan_and_hydrate(context, job.hydration(test=True))
    outcome = job_outcome(job, hydrated)
    yield context.call_activity_with_retry(end_migration_job, ACTIVITY_RETRY, outcome.model_dump(mode="json"))
    return outcome.model_dump(mode="json")


def job_outcome(job: JobInput, hydrated: HydrationOutcome) -> JobOutcome:
    failure = hydrated.failure
    return JobOutcome(
        machine_id=job.machine_id,
        job_id=job.job_id,
        succeeded=hydrated.result is not None,
        error_code=failure.code if failure else None,
        error_message=failure.message if failure else None,
        failed_step=failure.step if failure else None,
        result=hydrated.result,
    )


@bp.orchestration_trigger(context_name="context", orchestration=TEST_MIGRATION_CLEANUP)
def test_migration_cleanup_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    job = JobInput.model_validate(context.get_input())
    assert job.test_job_id is not None, "the HTTP starter names the test migration to clean up"
    yield context.call_activity_with_retry(
        record_job_progress,
        ACTIVITY_RETRY,
        JobProgress(
            job_id=job.job_id, updates=[StepUpdate(name=m.STEP_DELETE_TEST, status="InProgress")]
        ).model_dump(mode="json"),
    )
    found = TestResources.model_validate(
        (
            yield context.call_activity_with_retry(
                find_job_resources,
                ACTIVITY_RETRY,
                JobResourcesQuery(machine_id=job.machine_id, job_id=job.test_job_id).model_dump(mode="json"),
            )
        )
    )
    resisted = yield from _delete_in_order(context, found.resources)
    leftovers = [v.resource.id for v in resisted]
    outcome = JobOutcome(
        machine_id=job.machine_id,
        job_id=job.job_id,
        succeeded=not leftovers,
        error_code=(resisted[0].error_code or "DeleteFailed") if leftovers else None,
        error_message=_resisted_message(resisted) if leftovers else None,
        failed_step=m.STEP_DELETE_TEST if leftovers else None,
        test_job_id=job.test_job_id,
    )
    yield context.call_activity_with_retry(end_migration_job, ACTIVITY_RETRY, outcome.model_dump(mode="json"))
    deleted = [r.id for r in found.resources if r.id not in leftovers]
    return CleanupResult(deleted=deleted, leftovers=leftovers).model_dump(mode="json")


def _delete_in_order(context: df.DurableOrchestrationContext, resources: list[Resource]) -> Orchestration:
    """Delete in the resource kinds' order, each kind in parallel with retries; a kind that resists is
    tried once more resource by resource for ARM's verdict, and the later kinds are still tried (what does
    not depend on it goes). The kinds it may hold are tried once, for ARM's verdict, without the retries:
    ARM refuses what it still holds for as long as it stands. Returns the verdicts of what resisted
    (empty: all gone)."""
    resisted: list[DeleteVerdict] = []
    standing: set[ResourceKind] = set()
    for kind in DELETE_ORDER:
        group = [r for r in resources if r.kind is kind]
        if not group:
            continue
        if held_back(kind, standing) is None:
            try:
                yield context.task_all(
                    [
                        context.call_activity_with_retry(
                            delete_resource, DELETE_RETRY, DeleteRequest(resource=r).model_dump(mode="json")
                        )
                        for r in group
                    ]
                )
                continue
            except Exception:
                # task_all says neither which one failed nor ARM's answer: ask each once more, as a value.
                pass
        verdicts = yield context.task_all(
            [
                context.call_activity_with_retry(
                    try_delete_resource, ACTIVITY_RETRY, DeleteRequest(resource=r).model_dump(mode="json")
                )
                for r in group
            ]
        )
        left = [v for v in map(DeleteVerdict.model_validate, verdicts) if not v.deleted]
        if left:
            standing.add(kind)
        resisted += left
    return resisted


def _resisted_message(resisted: list[DeleteVerdict]) -> str:
    reasons = "; ".join(
        f"{v.resource.id}: {v.error_code or 'DeleteFailed'}: {v.error_message or 'the delete failed'}"
        for v in resisted
    )
    return (
        f"could not delete {reasons}. The test migration stays in place (TestMigrated): run the clean-up "
        "again once the cause is fixed."
    )
