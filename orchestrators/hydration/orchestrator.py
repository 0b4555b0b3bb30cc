"""Hydration as a sub-orchestration: recovery point -> prepared disks -> the VM, nothing left behind.

`plan_and_hydrate` is the half test migration and migration share: plan (pick the recovery point,
resolve the network), then this sub-orchestration walks the itinerary (`orchestrators.hydration.itinerary`,
where the runbook and its ARM waits are). Any failure deletes everything the itinerary recorded, in
the order of the resource-kind table (`shared.migration.resource_kinds`), releases the recovery point
and says why in the outcome. Resources are tagged with machine and job ids for the sweeper.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime
from typing import Any, Literal

import azure.durable_functions as df

from orchestrators.blueprints import durable_blueprint
from orchestrators.hydration.activities import delete_resource, plan_hydration, record_hydration_metric
from orchestrators.hydration.contracts import (
    DeleteRequest,
    HydrationFailure,
    HydrationMetric,
    HydrationOutcome,
    HydrationPlan,
    HydrationRequest,
    HydrationResult,
    PlanOutcome,
    Resource,
)
from orchestrators.hydration.itinerary import (
    ACTIVITY_RETRY,
    DELETE_RETRY,
    HydrationFailed,
    Run,
    walk,
)
from shared.migration.resource_kinds import DELETE_ORDER, ResourceKind, deletion_rank, held_back

HYDRATION = "hydration_orchestrator"

Orchestration = Generator[Any, Any, Any]
bp = durable_blueprint()


@bp.orchestration_trigger(context_name="context", orchestration=HYDRATION)
def hydration_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    return (yield from hydrate(context))


def hydrate(context: df.DurableOrchestrationContext) -> Orchestration:
    """Walk the itinerary; on any failure, compensate. Returns a HydrationOutcome."""
    plan = HydrationPlan.model_validate(context.get_input())
    run = Run(context, plan)
    started = context.current_utc_datetime
    try:
        yield from walk(run)
    except Exception as exc:
        # Activities that exhausted their retries land here too: compensation runs on every failure path.
        failure = exc if isinstance(exc, HydrationFailed) else HydrationFailed("HydrationFailed", str(exc))
        leftovers = yield from delete_all(context, run.recorded)
        yield run.release()
        message = failure.message
        if leftovers:
            message += (
                f" Compensation could not delete {', '.join(leftovers)}; the sweeper retries them "
                "(they are tagged with this job)."
            )
        yield from _record_duration(run, started, "failed")
        return _dump(
            HydrationOutcome(failure=HydrationFailure(code=failure.code, message=message, step=failure.step))
        )
    seconds = yield from _record_duration(run, started, "succeeded")
    return _dump(HydrationOutcome(result=_result(run, seconds)))


def _result(run: Run, seconds: float) -> HydrationResult:
    plan = run.plan
    os_disk = next(d for d in plan.disks if d.is_os_disk)
    new_vm = not plan.disks_only  # a change of recovery point prepares disks for the VM that exists
    return HydrationResult(
        vm_id=run.vm_id() if new_vm else "",
        nic_id=run.final_nic_id() if new_vm else "",
        os_disk_id=run.disk_id(os_disk),
        data_disk_ids=[run.disk_id(d) for d in plan.disks if not d.is_os_disk],
        final_resources=sorted(run.final_resources(), key=lambda r: (deletion_rank(r.kind), r.id)),
        arm_waits_critical_path=run.arm_waits,
        hydration_seconds=seconds,
        used_fallback_network=run.used_fallback_network,
        preparation=run.preparation,
    )


def _record_duration(run: Run, started: datetime, outcome: Literal["succeeded", "failed"]) -> Orchestration:
    seconds: float = (run.context.current_utc_datetime - started).total_seconds()
    metric = HydrationMetric(
        seconds=seconds, machine_id=run.plan.machine_id, os_family=run.plan.os_type.lower(), outcome=outcome
    )
    yield run.call(record_hydration_metric, metric)
    return seconds


def delete_all(context: df.DurableOrchestrationContext, resources: list[Resource]) -> Orchestration:
    """Delete in the resource kinds' order, each kind's resources in parallel; returns the ids that resisted.

    Once a kind resists, the kinds it may hold (the table's `held_by`) are tried once, without retries:
    ARM refuses the ones it still holds for as long as it stands, so retrying them would only wait out the
    retries, while the ones it does not hold (a NIC of no VM yet) still go."""
    leftovers: list[str] = []
    standing: set[ResourceKind] = set()
    for kind in DELETE_ORDER:
        group = [r for r in resources if r.kind is kind]
        if not group:
            continue
        once = held_back(kind, standing) is not None
        try:
            yield context.task_all(
                [
                    context.call_activity(delete_resource, _dump(DeleteRequest(resource=r)))
                    if once
                    else context.call_activity_with_retry(
                        delete_resource, DELETE_RETRY, _dump(DeleteRequest(resource=r))
                    )
                    for r in group
                ]
            )
        except Exception:
            # Which one failed is not told by task_all: list the group; the sweeper checks each by tag.
            standing.add(kind)
            leftovers += [r.id for r in group]
    return leftovers


def plan_and_hydrate(context: df.DurableOrchestrationContext, request: HydrationRequest) -> Orchestration:
    """The HydrationOutcome of planning then hydrating (the shared half of test migration and migration)."""
    planned = PlanOutcome.model_validate(
        (yield context.call_activity_with_retry(plan_hydration, ACTIVITY_RETRY, _dump(request)))
    )
    if planned.plan is None:
        assert planned.failure is not None
        return HydrationOutcome(failure=planned.failure)
    raw = yield context.call_sub_orchestrator(
        HYDRATION, _dump(planned.plan), f"{context.instance_id}-hydration"
    )
    hydrated = HydrationOutcome.model_validate(raw)
    if hydrated.result is not None:
        result = hydrated.result
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
    return hydrated


def _dump(payload: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = payload.model_dump(mode="json")
    return dumped
