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

from orchestrators.hydration.activities import end_migration_job, find_job_resources, plan_hydration
from orchestrators.hydration.contracts import (
    HydrationOutcome,
    HydrationPlan,
    JobInput,
    JobOutcome,
    TestResources,
)
from orchestrators.hydration.orchestrator import ACTIVITY_RETRY, HYDRATION, delete_all

TEST_MIGRATION = "test_migration_orchestrator"
TEST_MIGRATION_CLEANUP = "test_migration_cleanup_orchestrator"

Orchestration = Generator[Any, Any, Any]
bp = df.Blueprint()


def job_instance_id(job_id: str) -> str:
    return f"job-{job_id}" if not job_id.startswith("job-") else job_id


@bp.orchestration_trigger(context_name="context", orchestration=TEST_MIGRATION)
def test_migration_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    job = JobInput.model_validate(context.get_input())
    outcome = yield from plan_and_hydrate(context, job, flow="test")
    yield context.call_activity_with_retry(end_migration_job, ACTIVITY_RETRY, outcome.model_dump(mode="json"))
    return outcome.model_dump(mode="json")


def plan_and_hydrate(context: df.DurableOrchestrationContext, job: JobInput, *, flow: str) -> Orchestration:
    """The JobOutcome of planning then hydrating (the shared half of test migration and migration)."""
    planned = yield context.call_activity_with_retry(
        plan_hydration, ACTIVITY_RETRY, {"job": job.model_dump(mode="json"), "flow": flow}
    )
    if "failure" in planned:
        return JobOutcome(
            machine_id=job.machine_id,
            job_id=job.job_id,
            succeeded=False,
            error_code=planned["failure"]["code"],
            error_message=planned["failure"]["message"],
        )
    plan = HydrationPlan.model_validate(planned["plan"])
    raw = yield context.call_sub_orchestrator(
        HYDRATION, plan.model_dump(mode="json"), f"{context.instance_id}-hydration"
    )
    hydrated = HydrationOutcome.model_validate(raw)
    if hydrated.failure is not None:
        return JobOutcome(
            machine_id=job.machine_id,
            job_id=job.job_id,
            succeeded=False,
            error_code=hydrated.failure.code,
            error_message=hydrated.failure.message,
        )
    result = hydrated.result
    assert result is not None
    # Operators and the demo read these from the instance's status (the job document has no place for them).
    context.set_custom_status(
        {
            "vmId": result.vm_id,
            "armWaitsCriticalPath": result.arm_waits_critical_path,
            "hydrationSeconds": result.hydration_seconds,
            "usedFallbackNetwork": result.used_fallback_network,
            "preparedOs": result.preparation.os_description if result.preparation else None,
        }
    )
    return JobOutcome(machine_id=job.machine_id, job_id=job.job_id, succeeded=True, result=result)


@bp.orchestration_trigger(context_name="context", orchestration=TEST_MIGRATION_CLEANUP)
def test_migration_cleanup_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    job = JobInput.model_validate(context.get_input())
    assert job.test_job_id is not None, "the HTTP starter names the test migration to clean up"
    found = TestResources.model_validate(
        (
            yield context.call_activity_with_retry(
                find_job_resources, ACTIVITY_RETRY, {"machineId": job.machine_id, "jobId": job.test_job_id}
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
    return {"deleted": [r.id for r in found.resources if r.id not in leftovers], "leftovers": leftovers}
