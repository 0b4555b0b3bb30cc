"""GET /api/jobs/{jobId}: a long operation's status and steps; GET /api/jobs: the jobs, newest first,
filtered by machine, kind and status (operator, function key).

Every operator action that answers 202 names its job here in `Location`.
"""

from __future__ import annotations

import azure.functions as func

from functions.http_errors import handle_errors, json_response, path_id, query_model
from orchestrators.blueprints import blueprint
from shared.bootstrap import get_services
from shared.domain.api import JobListQuery
from shared.jobs import lifecycle as jobs

bp = blueprint()


@bp.route(route="jobs/{jobId}", methods=["GET"])
@handle_errors
def get_job(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    return json_response(jobs.require(services.repos, path_id(req, "jobId")))


@bp.route(route="jobs", methods=["GET"])
@handle_errors
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
