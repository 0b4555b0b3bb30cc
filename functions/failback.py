"""Operator routes for protecting a failed-over machine back to on-premises (function keys, authLevel
FUNCTION).

POST /api/machines/{id}/reprotect                {"applianceId": <id>} -> 202, Location /api/jobs/{jobId}
     on a FailbackCommitted machine: {"applianceId": <id>, "policy"?: {...}} -> 202: reprotect to Azure
     again, sending only what changed on-premises since the planned failover (its own job instance)
POST /api/machines/{id}/planned-failover         -> 202: fail over to on-premises (PlannedFailover job)
POST /api/machines/{id}/cancel-planned-failover  -> 202: undo it (CancelPlannedFailover job)

The request records the machine's move to ReverseReprotecting, its reverse protection and the Reprotect
job first (409 with `allowedOperations` unless the machine is FailoverCommitted, 404 for an unknown
appliance, nothing written then), then starts the machine's reverse orchestration `reverse-{machineId}`,
which runs the job and then the reverse cycles (an earlier reprotect's instance still alive, e.g. a failed
job's finishing, is ended first: the instance id is reused). A planned failover and its cancel are recorded the same
way (409 with `allowedOperations` in any other state, nothing written then) and run by that same
orchestration between two cycles: it is woken if it waits for its next cycle, started if it has ended.
"""

from __future__ import annotations

import asyncio
import logging

import azure.durable_functions as df
import azure.functions as func

from functions.auth import requires
from functions.http_errors import accepted_job, handle_errors, new_job_id, parse_body, path_id
from functions.starts import idempotency_key, launch
from orchestrators.blueprints import durable_blueprint
from orchestrators.failback.contracts import (
    REVERSE_WAKE,
    FailbackRun,
    ReprotectOutcome,
    ReverseInput,
    reverse_instance_id,
)
from orchestrators.failback.forward import REPROTECT_TO_AZURE
from orchestrators.failback.forward_activities import ForwardOutcome
from orchestrators.failback.orchestrator import REVERSE
from shared.appliances.registry import update_policy
from shared.bootstrap import get_services
from shared.domain.errors import ValidationFailed
from shared.domain.principal import Role
from shared.failback import forward, planned
from shared.failback import service as failback
from shared.platform import crash_points

bp = durable_blueprint()
log = logging.getLogger(__name__)

_ALIVE = {
    df.OrchestrationRuntimeStatus.Running,
    df.OrchestrationRuntimeStatus.Pending,
    df.OrchestrationRuntimeStatus.ContinuedAsNew,
}


@bp.route(route="machines/{machineId}/reprotect", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handle_errors
@requires(Role.OPERATOR)
async def reprotect(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    services = get_services()
    machine_id = path_id(req, "machineId")
    # The direction follows where the machine is active: home again after a committed failback, toward Azure.
    if await asyncio.to_thread(forward.reprotects_to_azure, services.repos, machine_id):
        return await _reprotect_to_azure(req, client, machine_id)
    # One documented body for both directions; `policy` belongs to the reprotect to Azure only.
    body = parse_body(req, forward.ForwardReprotectRequest)
    if body.policy is not None:
        await asyncio.to_thread(services.repos.machines.require, machine_id)  # an unknown machine: 404 first
        raise ValidationFailed.single(
            "policy",
            "only for a reprotect to Azure (a FailbackCommitted machine); a reprotect to on-premises "
            "replicates with the reverse appliance's policy: change it with PUT /api/appliances/{id}/policy",
        )
    request = failback.ReprotectRequest(appliance_id=body.appliance_id)
    started = await asyncio.to_thread(
        failback.start_reprotect,
        services.repos,
        path_id(req, "machineId"),
        request,
        job_id=new_job_id(),
        now=services.clock(),
        idempotency_key=idempotency_key(req),
    )
    job_input = ReverseInput(machine_id=started.machine.id, job_id=started.job.id)
    instance_id = reverse_instance_id(started.machine.id)
    try:
        # A resend of a recorded reprotect whose instance runs: that instance is this job's.
        if not (started.replayed and await _alive(client, instance_id)):
            await _end_earlier_instance(client, instance_id, started.job.id)
            await client.start_new(
                REVERSE, instance_id=instance_id, client_input=job_input.model_dump(mode="json")
            )
        crash_points.reached(crash_points.ORCHESTRATION_STARTED)
    except Exception:
        # Recorded but not started: end the job so the machine is FailoverCommitted again, then answer 500.
        outcome = ReprotectOutcome(
            machine_id=started.machine.id,
            job_id=started.job.id,
            succeeded=False,
            error_code="StartFailed",
            error_message="the reprotect's orchestration could not be started; reprotect again",
        )
        await asyncio.to_thread(
            failback.end_reprotect, services.repos, outcome, now=services.clock(), health=services.health
        )
        raise
    return accepted_job(started.job, retry_after_seconds=10)


# An earlier reprotect's instance that is still alive gets this long to end by itself (a failed job's
# instance returns right after the job's end is recorded), then it is terminated and waited for again.
RESTART_GRACE_SECONDS = 3.0
RESTART_POLL_SECONDS = 0.5
RESTART_TERMINATE_WAIT_SECONDS = 15.0


async def _alive(client: df.DurableOrchestrationClient, instance_id: str) -> bool:
    status = await client.get_status(instance_id)
    return status is not None and status.runtime_status in _ALIVE


async def _wait_ended(client: df.DurableOrchestrationClient, instance_id: str, seconds: float) -> bool:
    for _ in range(int(seconds / RESTART_POLL_SECONDS)):
        if not await _alive(client, instance_id):
            return True
        await asyncio.sleep(RESTART_POLL_SECONDS)
    return not await _alive(client, instance_id)


async def _end_earlier_instance(client: df.DurableOrchestrationClient, instance_id: str, job_id: str) -> None:
    """Durable refuses to start an instance id that is still running, and `reverse-{machineId}` is reused
    by every reprotect of the machine. An earlier instance alive now has nothing left to do: this request
    found the machine FailoverCommitted, so no reverse job or cycle of that instance is in progress (a
    failed Reprotect's instance is finishing after its end was recorded; a cycles episode would find the
    machine not replicating and stop). It may end by itself; else it is terminated."""
    if not await _alive(client, instance_id):
        return
    if await _wait_ended(client, instance_id, RESTART_GRACE_SECONDS):
        return
    log.info("terminating the earlier instance %s before reprotect job %s", instance_id, job_id)
    try:
        await client.terminate(instance_id, f"superseded by reprotect job {job_id}")
    except Exception as exc:  # it ended between the two calls: nothing to terminate
        log.info("instance %s ended before it could be terminated: %s", instance_id, exc)
    if not await _wait_ended(client, instance_id, RESTART_TERMINATE_WAIT_SECONDS):
        raise RuntimeError(f"instance {instance_id} did not end after it was terminated")


async def _run_in_reverse_orchestration(
    client: df.DurableOrchestrationClient, started: planned.FailbackStarted
) -> None:
    """Wake the machine's reverse orchestration (it reads the job from the machine), or start it."""
    machine_id = started.machine.id
    instance_id = reverse_instance_id(machine_id)
    status = await client.get_status(instance_id)
    if status is not None and status.runtime_status in _ALIVE:
        try:
            await client.raise_event(instance_id, REVERSE_WAKE, {"jobId": started.job.id})
            return
        except Exception as exc:  # it ended between the two calls: start it below
            log.info("instance %s ended before it could be woken: %s", instance_id, exc)
    job_input = ReverseInput(machine_id=machine_id, job_id=started.job.id, phase="cycles")
    await client.start_new(REVERSE, instance_id=instance_id, client_input=job_input.model_dump(mode="json"))


async def _failback_job(
    client: df.DurableOrchestrationClient, started: planned.FailbackStarted, *, cancel: bool
) -> func.HttpResponse:
    try:
        await _run_in_reverse_orchestration(client, started)
        crash_points.reached(crash_points.ORCHESTRATION_STARTED)
    except Exception:
        # Recorded but not run: end the job (a planned failover's end starts its cancel, which the next
        # request or reverse episode runs), then answer 500.
        services = get_services()
        outcome = planned.FailbackOutcome(
            machine_id=started.machine.id,
            job_id=started.job.id,
            succeeded=False,
            error_code="StartFailed",
            error_message="the job's orchestration could not be started; run it again",
        )
        end = planned.end_cancel if cancel else planned.end_planned_failover
        await asyncio.to_thread(end, services.repos, outcome, now=services.clock(), health=services.health)
        raise
    return accepted_job(started.job, retry_after_seconds=10)


@bp.route(route="machines/{machineId}/planned-failover", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handle_errors
@requires(Role.OPERATOR)
async def planned_failover(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    services = get_services()
    started = await asyncio.to_thread(
        planned.start_planned_failover,
        services.repos,
        path_id(req, "machineId"),
        job_id=new_job_id(),
        now=services.clock(),
        idempotency_key=idempotency_key(req),
    )
    return await _failback_job(client, started, cancel=False)


@bp.route(route="machines/{machineId}/cancel-planned-failover", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handle_errors
@requires(Role.OPERATOR)
async def cancel_planned_failover(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    services = get_services()
    started = await asyncio.to_thread(
        planned.start_cancel,
        services.repos,
        path_id(req, "machineId"),
        job_id=new_job_id(),
        now=services.clock(),
        idempotency_key=idempotency_key(req),
    )
    return await _failback_job(client, started, cancel=True)


async def _reprotect_to_azure(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, machine_id: str
) -> func.HttpResponse:
    services = get_services()
    request = parse_body(req, forward.ForwardReprotectRequest)
    started = await asyncio.to_thread(
        forward.start_reprotect_to_azure,
        services.repos,
        machine_id,
        request,
        job_id=new_job_id(),
        now=services.clock(),
        idempotency_key=idempotency_key(req),
    )
    if request.policy is not None:
        await asyncio.to_thread(update_policy, services.repos, request.appliance_id, request.policy)
    run = FailbackRun(machine_id=started.machine.id, job_id=started.job.id)
    try:
        await launch(client, REPROTECT_TO_AZURE, started.job, run)
    except Exception:
        # Recorded but not started: end the job so the machine is FailbackCommitted again, then answer 500.
        outcome = ForwardOutcome(
            machine_id=started.machine.id,
            job_id=started.job.id,
            succeeded=False,
            error_message="the reprotect's orchestration could not be started; reprotect again",
        )
        await asyncio.to_thread(
            forward.end_reprotect_to_azure,
            services.repos,
            outcome.machine_id,
            outcome.job_id,
            succeeded=False,
            failed_step=None,
            error_message=outcome.error_message,
            now=services.clock(),
            health=services.health,
        )
        raise
    return accepted_job(started.job, retry_after_seconds=10)
