"""POST /api/machines/{machineId}/repair: "Repair replication" (operator, function key).

Resyncs every disk from a fresh snapshot: the machine goes Resyncing, the appliance gets ResyncDisk
commands, and the RepairReplication job (202, Location /api/jobs/{id}) succeeds when the resync cycle is
applied. Recovery points taken before the repair are kept. 409 when the machine's state forbids a resync
or there is nothing to repair.
"""

from __future__ import annotations

import asyncio
import uuid

import azure.functions as func

from functions.http_errors import handle_errors, json_response, path_id
from shared.services import health
from shared.services.bootstrap import get_services
from shared.services.contracts import AcceptedJob

bp = func.Blueprint()


@bp.route(route="machines/{machineId}/repair", methods=["POST"])
@handle_errors
async def repair_replication(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    # The Cosmos SDK is synchronous: keep it off the worker's event loop.
    started = await asyncio.to_thread(
        health.start_repair,
        services.repos,
        path_id(req, "machineId"),
        job_id=f"job-{uuid.uuid4().hex}",
        now=services.clock(),
    )
    status_url = f"/api/jobs/{started.job.id}"
    body = AcceptedJob(
        job_id=started.job.id, machine_id=started.machine.id, status_url=status_url, job=started.job
    )
    return json_response(body, 202, {"Location": status_url, "Retry-After": "30"})
