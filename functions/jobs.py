"""GET /api/jobs/{jobId}: a long operation's status and steps; POST .../cancel: a cancel request
(operator, function key).

Every operator action that answers 202 names its job here in `Location`.
"""

from __future__ import annotations

import azure.functions as func

from functions.http_errors import handle_errors, json_response, path_id
from orchestrators.blueprints import blueprint
from shared.bootstrap import get_services
from shared.jobs import cancellation
from shared.jobs import lifecycle as jobs

bp = blueprint()


@bp.route(route="jobs/{jobId}", methods=["GET"])
@handle_errors
def get_job(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    return json_response(jobs.require(services.repos, path_id(req, "jobId")))


@bp.route(route="jobs/{jobId}/cancel", methods=["POST"])
@handle_errors
def cancel_job(req: func.HttpRequest) -> func.HttpResponse:
    """404 unknown job; 409 JobAlreadyFinished or JobNotCancellable (the reason and what to do instead)."""
    cancellation.cancel(get_services().repos, path_id(req, "jobId"))
