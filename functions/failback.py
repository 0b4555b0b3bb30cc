"""Operator routes for protecting a failed-over machine back to on-premises (function keys, authLevel
FUNCTION).

POST /api/machines/{id}/reprotect   {"applianceId": <id>} -> 202, Location /api/jobs/{jobId}

The request records the machine's move to ReverseReprotecting, its reverse protection and the Reprotect
job first (409 with `allowedOperations` unless the machine is FailoverCommitted, 404 for an unknown
appliance, nothing written then), then starts the machine's reverse orchestration `reverse-{machineId}`,
which runs the job and then the reverse cycles.
"""

from __future__ import annotations

import asyncio

import azure.durable_functions as df
import azure.functions as func

from functions.http_errors import accepted_job, handle_errors, new_job_id, parse_body, path_id
from orchestrators.blueprints import durable_blueprint
from orchestrators.failback.contracts import ReprotectOutcome, ReverseInput, reverse_instance_id
from orchestrators.failback.orchestrator import REVERSE
from shared.bootstrap import get_services
from shared.failback import service as failback

bp = durable_blueprint()


@bp.route(route="machines/{machineId}/reprotect", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handle_errors
async def reprotect(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    services = get_services()
    request = parse_body(req, failback.ReprotectRequest)
    started = await asyncio.to_thread(
        failback.start_reprotect,
        services.repos,
        path_id(req, "machineId"),
        request,
        job_id=new_job_id(),
        now=services.clock(),
    )
    job_input = ReverseInput(machine_id=started.machine.id, job_id=started.job.id)
    try:
        await client.start_new(
            REVERSE,
            instance_id=reverse_instance_id(started.machine.id),
            client_input=job_input.model_dump(mode="json"),
        )
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
