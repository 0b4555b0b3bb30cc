"""Health: a machine's events, "Repair replication" and the health monitor timer.

GET /api/machines/{machineId}/events pages a machine's events, newest first, with causes and
recommendations (operator, function key).

POST /api/machines/{machineId}/repair: "Repair replication" (operator, function key).

Resyncs every disk from a fresh snapshot: the machine goes Resyncing, the appliance gets ResyncDisk
commands, and the RepairReplication job (202, Location /api/jobs/{id}) succeeds when the resync cycle is
applied. Recovery points taken before the repair are kept. 409 when the machine's state forbids a resync
or there is nothing to repair.

The health monitor: a timer (every 5 minutes) that raises what only the passing of time reveals, an
RPO above its thresholds and an appliance that stopped talking (shared.health.monitor.monitor_health).

It reads each replicating machine once per run through paged queries, each appliance once, and writes
only machines whose health state changes. Run it now on the local stack with
`POST /admin/functions/health_monitor` and the master key.
"""

from __future__ import annotations

import asyncio
import logging

import azure.functions as func

from functions.auth import requires
from functions.http_errors import accepted_job, handle_errors, json_response, new_job_id, path_id, query_int
from functions.starts import idempotency_key
from orchestrators.blueprints import blueprint
from shared import health
from shared.bootstrap import get_services
from shared.domain.api import EventList
from shared.domain.principal import Role
from shared.health import events
from shared.mobility import registration

bp = blueprint()
log = logging.getLogger(__name__)


@bp.route(route="machines/{machineId}/repair", methods=["POST"])
@handle_errors
@requires(Role.OPERATOR)
async def repair_replication(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    # The Cosmos SDK is synchronous: keep it off the worker's event loop.
    started = await asyncio.to_thread(
        health.start_repair,
        services.repos,
        path_id(req, "machineId"),
        job_id=new_job_id(),
        now=services.clock(),
        idempotency_key=idempotency_key(req),
    )
    return accepted_job(started.job, retry_after_seconds=30)


EVERY_FIVE_MINUTES = "0 */5 * * * *"


@bp.timer_trigger(arg_name="timer", schedule=EVERY_FIVE_MINUTES, run_on_startup=False, use_monitor=True)
def health_monitor(timer: func.TimerRequest) -> None:
    services = get_services()
    report = health.monitor_health(
        services.repos,
        now=services.clock(),
        settings=services.health,
        agents=registration.agent_contacts(services.repos),
    )
    log.info(
        "health monitor: %d machines checked, %d changed (%s), %d appliances read, %d events%s",
        report.machines_checked,
        len(report.machines_changed),
        ", ".join(report.machines_changed[:20]),
        report.appliances_read,
        report.events_written,
        " (past due)" if timer.past_due else "",
    )


@bp.route(route="machines/{machineId}/events", methods=["GET"])
@handle_errors
@requires(Role.READER)
def list_machine_events(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    limit = query_int(req, "limit", 50)
    page = events.list_events_page(
        services.repos,
        path_id(req, "machineId"),
        limit=limit,
        continuation=req.params.get("continuationToken") or None,
    )
    return json_response(EventList(events=page.items, continuation_token=page.continuation))
