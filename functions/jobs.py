"""GET /api/jobs/{jobId}: a long operation's status and steps; GET /api/jobs: the jobs, newest first,
filtered by machine, kind and status; POST /api/jobs/{jobId}/cancel: a cancel request (operator,
function key).

Every operator action that answers 202 names its job here in `Location`.
"""

from __future__ import annotations

import asyncio

import azure.durable_functions as df
import azure.functions as func

from functions.auth import requires
from functions.http_errors import accepted_job, handle_errors, json_response, path_id, query_model
from orchestrators.blueprints import durable_blueprint
from orchestrators.names import CANCEL_REQUESTED, is_cancellable, job_instance_id
from shared.bootstrap import get_services
from shared.domain.api import JobListQuery
from shared.domain.principal import Role
from shared.jobs import cancellation
from shared.jobs import lifecycle as jobs
from shared.platform import crash_points

bp = durable_blueprint()


@bp.route(route="jobs/{jobId}", methods=["GET"])
@handle_errors
@requires(Role.READER)
def get_job(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    return json_response(jobs.require(services.repos, path_id(req, "jobId")))


@bp.route(route="jobs/{jobId}/cancel", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handle_errors
@requires(Role.OPERATOR)
async def cancel_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """202 + Location: the job's orchestration was asked to stop (the job ends Cancelled); 404 unknown
    job; 409 JobAlreadyFinished, or JobNotCancellable with the reason and what to do instead."""
    services = get_services()
    job = await asyncio.to_thread(cancellation.cancellable_job, services.repos, path_id(req, "jobId"))
    instance = job_instance_id(job.id)
    # The orchestration alone knows whether it is still where it can stop: it says so in its status. One
    # that has not run yet (Pending) waits for the request from its first step, where Durable keeps it.
    status = await client.get_status(instance)
    pending = status.runtime_status == df.OrchestrationRuntimeStatus.Pending
    if not (pending or is_cancellable(status.custom_status)):
        cancellation.past_the_point(job)
    crash_points.reached(crash_points.CANCEL_CHECKED)
    await client.raise_event(instance, CANCEL_REQUESTED, {"jobId": job.id})
    crash_points.reached(crash_points.ORCHESTRATION_STARTED)
    return accepted_job(job, retry_after_seconds=5)


@bp.route(route="jobs", methods=["GET"])
@handle_errors
@requires(Role.READER)
def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    query = query_model(req, JobListQuery)
    return json_response(
        jobs.list_jobs(
            get_services().repos,
            machine_id=query.machine_id,
            kind=query.kind,
            status=query.status,
            page_size=query.page_size,
            continuation=query.continuation_token,
        )
    )
