"""Test migration and its clean-up, each its own orchestration instance `job-{jobId}`.

Test migration: plan (pick the recovery point, resolve the test VNet), then the hydration
sub-orchestration builds the VM in the isolated test VNet from copies of that point; the replica is
never touched and the machine's own orchestration keeps applying cycles meanwhile. The job ends the
machine in TestMigrated, or (after hydration's compensation) back in Replicating.

Clean-up deletes every resource tagged with the test migration's job id (the test VM, its NIC and
disks, and anything a failed compensation left), in dependency order, and returns the machine to
Replicating.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from orchestrators.blueprints import durable_blueprint
from orchestrators.hydration.contracts import HydrationOutcome
from orchestrators.hydration.itinerary import ACTIVITY_RETRY
from orchestrators.hydration.orchestrator import delete_all, plan_and_hydrate
from orchestrators.migration.activities import end_migration_job, find_job_resources
from orchestrators.migration.contracts import (
    CleanupResult,
    JobInput,
    JobOutcome,
    JobResourcesQuery,
    TestResources,
)

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
    found = TestResources.model_validate(
        (
            yield context.call_activity_with_retry(
                find_job_resources,
                ACTIVITY_RETRY,
                JobResourcesQuery(machine_id=job.machine_id, job_id=job.test_job_id).model_dump(mode="json"),
            )
        )
    )
    leftovers = yield from delete_all(context, found.resources)
    outcome = JobOutcome(
        machine_id=job.machine_id,
        job_id=job.job_id,
        succeeded=not leftovers,
        error_code="DeleteFailed" if leftovers else None,
        error_message=(
            f"could not delete {', '.join(leftovers)}; the sweeper retries them" if leftovers else None
        ),
    )
    yield context.call_activity_with_retry(end_migration_job, ACTIVITY_RETRY, outcome.model_dump(mode="json"))
    deleted = [r.id for r in found.resources if r.id not in leftovers]
    return CleanupResult(deleted=deleted, leftovers=leftovers).model_dump(mode="json")
