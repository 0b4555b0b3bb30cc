"""The sweeper: a timer (hourly) deleting temporary ARM resources that a crashed flow left behind.

Hydration and clean-up compensate on every failure path; this catches what they could not: a job whose
orchestration died, a delete that kept failing. It calls shared/arm/sweeper.py, which lists resources
tagged `migrate-purpose=temporary` older than SWEEPER_MIN_AGE_MINUTES (default 120) and deletes, in
dependency order, those whose job is finished or unknown. A job counts as still running when it is
unfinished and was updated within SWEEPER_STALE_JOB_HOURS (default 24: longer than any hydration), and
a successful test migration's resources stay until its clean-up (they are the test VM).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import azure.functions as func

from shared.arm.clients import build_arm_clients
from shared.arm.sweeper import JobState, sweep_temporary_resources
from shared.services import migration
from shared.services.bootstrap import get_services
from shared.settings import get_settings
from shared.telemetry import get_telemetry

log = logging.getLogger(__name__)
bp = func.Blueprint()

HOURLY = "0 17 * * * *"


@bp.timer_trigger(arg_name="timer", schedule=HOURLY, run_on_startup=False, use_monitor=True)
def arm_sweeper(timer: func.TimerRequest) -> None:
    services = get_services()
    now = services.clock()
    min_age = timedelta(minutes=float(os.environ.get("SWEEPER_MIN_AGE_MINUTES", "120")))
    stale_after = timedelta(hours=float(os.environ.get("SWEEPER_STALE_JOB_HOURS", "24")))

    def job_state(job_id: str) -> JobState:
        stored = services.repos.jobs.get(job_id)
        if stored is None:
            return JobState.UNKNOWN
        job = stored.item
        if not job.status.finished:
            return JobState.ACTIVE if now - job.updated_at < stale_after else JobState.FINISHED
        return JobState.ACTIVE if migration.is_test_migration_live(services.repos, job) else JobState.FINISHED

    with build_arm_clients(get_settings(), telemetry=get_telemetry()) as clients:
        report = sweep_temporary_resources(clients, now=now, min_age=min_age, job_state=job_state)
    log.info(
        "sweeper: %d deleted, %d failed, %d kept%s: deleted %s; failed %s",
        len(report.deleted),
        len(report.failed),
        len(report.skipped),
        " (past due)" if timer.past_due else "",
        ", ".join(r.id for r in report.deleted[:20]) or "-",
        "; ".join(f"{f.id}: {f.error_code}" for f in report.failed[:20]) or "-",
    )
