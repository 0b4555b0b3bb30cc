"""Operator routes for machines, their recovery points and replication (function keys, authLevel FUNCTION).

Long operations answer 202 with the job and a Location to poll, and hand the request to the
machine's orchestration (orchestrators/names.py), which owns the machine from then on.
"""

from __future__ import annotations

import asyncio

import azure.durable_functions as df
import azure.functions as func
from pydantic import ValidationError

from functions.auth import requires
from functions.http_errors import accepted_job, handle_errors, json_response, new_job_id, parse_body, path_id
from functions.orchestration_signals import wake_machine_orchestration
from functions.starts import idempotency_key
from orchestrators.blueprints import durable_blueprint
from orchestrators.names import OPERATOR_REQUEST
from shared.bootstrap import get_services
from shared.domain.api import MachineListQuery, OperatorRequest
from shared.domain.errors import ValidationFailed
from shared.domain.principal import Role
from shared.domain.target import TargetSettings
from shared.platform import crash_points
from shared.replication import machines

bp = durable_blueprint()


async def deliver_operator_request(
    client: df.DurableOrchestrationClient, started: machines.JobStarted
) -> None:
    """Wake the machine's orchestration with the request; it reads the job from Cosmos.

    A retried request (is_retry) reaches the orchestration again, which is harmless: the job is run once.
    The orchestration acknowledges the job when it begins it; if this request dies first, the start
    reconciler delivers it again or rolls it back (`shared.jobs.starts`).
    """
    request = OperatorRequest(machine_id=started.machine.id, job_id=started.job.id, kind=started.job.kind)
    await wake_machine_orchestration(
        client, started.machine.id, OPERATOR_REQUEST, request, only_if_not_running=started.is_retry
    )
    crash_points.reached(crash_points.ORCHESTRATION_STARTED)


@bp.route(route="machines", methods=["GET"])
@handle_errors
@requires(Role.READER)
def list_machines(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    try:
        # `code` is the function key when sent in the query string: authentication, not a filter.
        query = MachineListQuery.model_validate({k: v for k, v in req.params.items() if k != "code"})
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(exc) from None
    result = machines.list_machines(
        services.repos,
        now=services.clock(),
        appliance_id=query.appliance_id,
        state=query.state,
        page_size=query.page_size,
        continuation=query.continuation_token,
    )
    return json_response(result)


@bp.route(route="machines/{machineId}", methods=["GET"])
@handle_errors
@requires(Role.READER)
def get_machine(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    return json_response(
        machines.get_machine(services.repos, path_id(req, "machineId"), now=services.clock())
    )


@bp.route(route="machines/{machineId}/recovery-points", methods=["GET"])
@handle_errors
@requires(Role.READER)
def list_recovery_points(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(machines.list_recovery_points(get_services().repos, path_id(req, "machineId")))


@bp.route(route="machines/{machineId}/replication", methods=["PUT"])
@bp.durable_client_input(client_name="client")
@handle_errors
@requires(Role.OPERATOR)
async def enable_replication(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    services = get_services()
    command = machines.EnableReplication(
        machine_id=path_id(req, "machineId"), target=parse_body(req, TargetSettings), job_id=new_job_id()
    )
    # The Cosmos SDK is synchronous: keep it off the worker's event loop.
    started = await asyncio.to_thread(
        machines.enable_replication,
        services.repos,
        command,
        now=services.clock(),
        placement=services.placement,
        idempotency_key=idempotency_key(req),
    )
    await deliver_operator_request(client, started)
    return accepted_job(started.job, retry_after_seconds=5)


@bp.route(route="machines/{machineId}/replication", methods=["DELETE"])
@bp.durable_client_input(client_name="client")
@handle_errors
@requires(Role.OPERATOR)
async def stop_replication(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    services = get_services()
    command = machines.StopReplication(machine_id=path_id(req, "machineId"), job_id=new_job_id())
    started = await asyncio.to_thread(
        machines.stop_replication,
        services.repos,
        command,
        now=services.clock(),
        idempotency_key=idempotency_key(req),
    )
    await deliver_operator_request(client, started)
    return accepted_job(started.job, retry_after_seconds=5)
