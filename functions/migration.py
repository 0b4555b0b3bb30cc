"""Operator routes for test migration and migration (function keys, authLevel FUNCTION).

POST /api/machines/{id}/test-migrate          {"recoveryPoint": "latest"|<id>, "preparedManually": bool}
POST /api/machines/{id}/test-migrate/cleanup
POST /api/machines/{id}/migrate               {"shutdownSource": bool, "preparedManually": bool}

Each records the machine's transition and the job through the crash-safe start path (409 naming the
running job when the state forbids it, e.g. a second test migration), then starts the job's own
orchestration `job-{jobId}` and answers 202 with Location /api/jobs/{jobId}. A retry with the same
`Idempotency-Key` header answers the same job.

The sweeper: a timer (hourly) deleting temporary ARM resources that a crashed flow left behind.

Hydration and clean-up compensate on every failure path; this catches what they could not: a job whose
orchestration died, a delete that kept failing. It calls shared/migration/sweeper.py, which lists resources
tagged `migrate-purpose=temporary` older than SWEEPER_MIN_AGE_MINUTES (default 120) and deletes, in
dependency order, those whose job is finished or unknown. A job counts as still running when it is
unfinished and was updated within SWEEPER_STALE_JOB_HOURS (default 24: longer than any hydration), and
a successful test migration's resources stay until its clean-up (they are the test VM).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

import azure.durable_functions as df
import azure.functions as func

from functions.auth import requires
from functions.http_errors import accepted_job, handle_errors, new_job_id, parse_body, path_id
from functions.starts import idempotency_key, launch
from orchestrators.blueprints import durable_blueprint
from orchestrators.migration.contracts import JobInput
from orchestrators.migration.cutover import MIGRATION
from orchestrators.migration.test_migration import TEST_MIGRATION, TEST_MIGRATION_CLEANUP
from shared.bootstrap import Services, get_services
from shared.domain.lifecycle import MachineState
from shared.domain.principal import Role
from shared.domain.wire import RequestModel
from shared.jobs import lifecycle as jobs
from shared.migration import service as migration
from shared.migration.sweeper import JobState, sweep_temporary_resources, temporary_resources_of

bp = durable_blueprint()
log = logging.getLogger(__name__)
M = TypeVar("M", bound=RequestModel)


def _optional_body(req: func.HttpRequest, model: type[M]) -> M:
    """The body is optional: an empty POST takes every default."""
    return parse_body(req, model) if req.get_body().strip() else model()


async def _start(
    client: df.DurableOrchestrationClient,
    orchestrator: str,
    started: migration.MigrationJobStarted,
    job_input: JobInput,
) -> func.HttpResponse:
    try:
        await launch(client, orchestrator, started.job, job_input)
    except Exception:
        # Recorded but not started: nothing runs the job, so end it (the machine goes back) before answering 500.
        services = get_services()
        await asyncio.to_thread(
            migration.end_job,
            services.repos,
            started.job.id,
            succeeded=False,
            now=services.clock(),
            error_code="StartFailed",
            error_message="the job's orchestration could not be started; run it again",
        )
        raise
    return accepted_job(started.job, retry_after_seconds=10)


def _refuse_over_leftovers(services: Services, machine_id: str) -> None:
    # Only a machine the lifecycle would let start: a retried request of a running one sees its own VM.
    stored = services.repos.machines.get(machine_id)
    if stored is None or stored.item.state is not MachineState.REPLICATING:
        return
    if services.settings.azure_subscription_id is None:  # nothing is ever built in Azure
        return
    migration.refuse_over_leftovers(machine_id, temporary_resources_of(services.arm, machine_id))


@bp.route(route="machines/{machineId}/test-migrate", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handle_errors
@requires(Role.OPERATOR)
async def test_migrate(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    services = get_services()
    request = _optional_body(req, migration.TestMigrationRequest)
    # The Cosmos SDK is synchronous: keep it off the worker's event loop.
    await asyncio.to_thread(_refuse_over_leftovers, services, path_id(req, "machineId"))
    started = await asyncio.to_thread(
        migration.start_test_migration,
        services.repos,
        path_id(req, "machineId"),
        request,
        job_id=new_job_id(),
        now=services.clock(),
        idempotency_key=idempotency_key(req),
    )
    point = None if request.recovery_point == "latest" else request.recovery_point
    return await _start(
        client,
        TEST_MIGRATION,
        started,
        JobInput(
            machine_id=started.machine.id,
            job_id=started.job.id,
            prepared_manually=request.prepared_manually,
            recovery_point_id=point,
            test_virtual_network=request.test_virtual_network,
        ),
    )


@bp.route(route="machines/{machineId}/test-migrate/cleanup", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handle_errors
@requires(Role.OPERATOR)
async def test_migrate_cleanup(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    services = get_services()
    started = await asyncio.to_thread(
        migration.start_test_migration_cleanup,
        services.repos,
        path_id(req, "machineId"),
        job_id=new_job_id(),
        now=services.clock(),
        idempotency_key=idempotency_key(req),
    )
    return await _start(
        client,
        TEST_MIGRATION_CLEANUP,
        started,
        JobInput(machine_id=started.machine.id, job_id=started.job.id, test_job_id=started.test_job_id),
    )


@bp.route(route="machines/{machineId}/migrate", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handle_errors
@requires(Role.OPERATOR)
async def migrate(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    services = get_services()
    request = _optional_body(req, migration.MigrationRequest)
    started = await asyncio.to_thread(
        migration.start_migration,
        services.repos,
        path_id(req, "machineId"),
        request,
        job_id=new_job_id(),
        now=services.clock(),
        idempotency_key=idempotency_key(req),
    )
    return await _start(
        client,
        MIGRATION,
        started,
        JobInput(
            machine_id=started.machine.id,
            job_id=started.job.id,
            shutdown_source=request.shutdown_source,
            continue_without_shutdown=request.continue_without_shutdown,
            prepared_manually=request.prepared_manually,
        ),
    )


HOURLY = "0 17 * * * *"


@bp.timer_trigger(arg_name="timer", schedule=HOURLY, run_on_startup=False, use_monitor=True)
def arm_sweeper(timer: func.TimerRequest) -> None:
    services = get_services()
    now = services.clock()
    min_age = services.settings.sweeper.min_age
    stale_after = services.settings.sweeper.stale_job_after

    def job_state(job_id: str) -> JobState:
        job = jobs.get(services.repos, job_id)
        if job is None:
            return JobState.UNKNOWN
        if not job.status.finished:
            return JobState.ACTIVE if now - job.updated_at < stale_after else JobState.FINISHED
        return JobState.ACTIVE if migration.is_test_migration_live(services.repos, job) else JobState.FINISHED

    report = sweep_temporary_resources(services.arm, now=now, min_age=min_age, job_state=job_state)
    log.info(
        "sweeper: %d deleted, %d failed, %d kept%s: deleted %s; failed %s",
        len(report.deleted),
        len(report.failed),
        len(report.skipped),
        " (past due)" if timer.past_due else "",
        ", ".join(r.id for r in report.deleted[:20]) or "-",
        "; ".join(f"{f.id}: {f.error_code}" for f in report.failed[:20]) or "-",
    )
