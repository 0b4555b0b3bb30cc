"""The health monitor: a timer (every 5 minutes) that raises what only the passing of time reveals, an
RPO above its thresholds and an appliance that stopped talking (shared.services.health.monitor_health).

It reads each replicating machine once per run through paged queries, each appliance once, and writes
only machines whose health state changes. Run it now on the local stack with
`POST /admin/functions/health_monitor` and the master key.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.services import health
from shared.services.bootstrap import get_services

log = logging.getLogger(__name__)
bp = func.Blueprint()

EVERY_FIVE_MINUTES = "0 */5 * * * *"


@bp.timer_trigger(arg_name="timer", schedule=EVERY_FIVE_MINUTES, run_on_startup=False, use_monitor=True)
def health_monitor(timer: func.TimerRequest) -> None:
    services = get_services()
    report = health.monitor_health(services.repos, now=services.clock(), settings=health.health_settings())
    log.info(
        "health monitor: %d machines checked, %d changed (%s), %d appliances read, %d events%s",
        report.machines_checked,
        len(report.machines_changed),
        ", ".join(report.machines_changed[:20]),
        report.appliances_read,
        report.events_written,
        " (past due)" if timer.past_due else "",
    )
