"""Activities of the Reprotect job toward Azure after a committed failback (orchestrators/failback/
forward.py): the checks, the appliance's reprotect cycle asked for, what it sent, and the job's end. Each is
idempotent: the command is queued under an id derived from the job, the reads change nothing."""

from __future__ import annotations

from typing import Any

from orchestrators.blueprints import durable_blueprint
from orchestrators.failback.contracts import Queued, StepRef, StepResult
from orchestrators.failback.planned_activities import Recorded
from orchestrators.hydration.activities import migration_settings
from orchestrators.hydration.contracts import Done, Payload
from shared.bootstrap import get_services
from shared.domain.errors import DomainError
from shared.domain.lifecycle import MachineState
from shared.failback import forward
from shared.failback.planned import FailbackOutcome

bp = durable_blueprint()


class ForwardOutcome(FailbackOutcome):
    """How a reprotect to Azure ends."""


def _json(payload: Payload) -> dict[str, Any]:
    result: dict[str, Any] = payload.model_dump(mode="json")
    return result


@bp.activity_trigger(input_name="payload")
def check_forward_reprotect(payload: dict[str, Any]) -> dict[str, Any]:
    ref = StepRef.model_validate(payload)
    services = get_services()
    try:
        machine = forward.reprotecting(services.repos, ref.machine_id, ref.job_id)
    except DomainError as exc:
        return _json(StepResult(ok=False, message=str(exc), error_code=exc.code))
    appliance = services.repos.appliances.get(machine.appliance_id)
    problem = forward.prerequisite_problem(
        machine,
        appliance.item if appliance else None,
        now=services.clock(),
        heartbeat_timeout=services.health.rules.heartbeat_timeout,
    )
    if problem is not None:
        return _json(StepResult(ok=False, message=problem.message, error_code=problem.code))
    return _json(
        StepResult(ok=True, message=f"appliance healthy; {len(machine.inventory.disks)} replica(s) ready")
    )


@bp.activity_trigger(input_name="payload")
def request_reprotect_cycle(payload: dict[str, Any]) -> dict[str, Any]:
    ref = StepRef.model_validate(payload)
    services = get_services()
    command_id = forward.request_reprotect_cycle(
        services.repos, ref.machine_id, ref.job_id, now=services.clock()
    )
    settings = migration_settings()
    return _json(
        Queued(
            command_ids=[command_id],
            poll_seconds=settings.final_cycle_poll.total_seconds(),
            timeout_seconds=settings.final_cycle_timeout.total_seconds(),
        )
    )


@bp.activity_trigger(input_name="payload")
def read_reprotect_cycle(payload: dict[str, Any]) -> dict[str, Any]:
    """Done once the machine's replication orchestration applied the reprotect cycle (Replicating, with
    what it sent recorded); not done while it waits."""
    ref = StepRef.model_validate(payload)
    machine = get_services().repos.machines.require(ref.machine_id).item
    failback = machine.failback
    applied = (
        machine.state is not MachineState.REPROTECTING
        and failback is not None
        and failback.reprotect_job_id == ref.job_id
        and failback.reprotect_bytes_sent is not None
    )
    if not applied or failback is None:
        return _json(Recorded(done=False, message=f"the machine is {machine.state}"))
    sent, size = failback.reprotect_bytes_sent or 0, failback.reprotect_disk_bytes or 0
    share = f" ({100 * sent / size:.2f} % of the disks' {size} bytes)" if size else ""
    return _json(
        Recorded(
            done=True,
            values={"cycleId": failback.reprotect_cycle_id or ""},
            message=f"cycle {failback.reprotect_cycle_id} sent {sent} bytes{share}",
        )
    )


@bp.activity_trigger(input_name="payload")
def end_forward_reprotect_job(payload: dict[str, Any]) -> dict[str, Any]:
    outcome = ForwardOutcome.model_validate(payload)
    services = get_services()
    forward.end_reprotect_to_azure(
        services.repos,
        outcome.machine_id,
        outcome.job_id,
        succeeded=outcome.succeeded,
        failed_step=outcome.failed_step,
        error_message=outcome.error_message,
        now=services.clock(),
        health=services.health,
    )
    return _json(Done())
