"""The trigger side of the crash-safe start (`shared.jobs.starts`): the Idempotency-Key header, starting a
job's own orchestration exactly once, and the reconciler's timer with its Durable adapter.

An operator route adopts it in two lines: pass `idempotency_key(req)` to its service's start, then
`await launch(client, ORCHESTRATOR, started.job, job_input)` instead of `client.start_new`.
"""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func
from pydantic import BaseModel

from orchestrators.blueprints import durable_blueprint
from orchestrators.names import job_instance_id
from shared.bootstrap import get_services
from shared.domain.job import Job
from shared.jobs import starts
from shared.platform import crash_points

bp = durable_blueprint()
log = logging.getLogger(__name__)


def idempotency_key(req: func.HttpRequest) -> str | None:
    """The request's Idempotency-Key (400 when malformed), or None."""
    return starts.check_idempotency_key(req.headers.get(starts.IDEMPOTENCY_KEY_HEADER))


async def launch(
    client: df.DurableOrchestrationClient, orchestrator: str, job: Job, job_input: BaseModel
) -> bool:
    """Start the job's own orchestration (instance `job_instance_id(job.id)`) unless it exists: a retried
    request, or two racing ones, start it once. True when this call started it."""
    instance_id = job_instance_id(job.id)
    if await _exists(client, instance_id):
        log.info("job %s: its orchestration %s exists; not started again", job.id, instance_id)
        return False
    try:
        await client.start_new(
            orchestrator, instance_id=instance_id, client_input=job_input.model_dump(mode="json")
        )
    except Exception:
        if await _exists(client, instance_id):  # the racing request won
            return False
        raise
    crash_points.reached(crash_points.ORCHESTRATION_STARTED)
    return True


async def _exists(client: df.DurableOrchestrationClient, instance_id: str) -> bool:
    status = await client.get_status(instance_id)
    # The SDK answers an unknown instance with an empty status rather than None.
    return status is not None and status.runtime_status is not None


class DurableOrchestrations:
    """`shared.jobs.starts.Orchestrations` over the Durable client."""

    def __init__(self, client: df.DurableOrchestrationClient) -> None:
        self._client = client

    async def exists(self, job: Job) -> bool:
        return await _exists(self._client, job_instance_id(job.id))


EVERY_MINUTE = "0 * * * * *"


# Not on start-up: in Azure every new instance would run it; the next minute comes soon enough.
@bp.timer_trigger(arg_name="timer", schedule=EVERY_MINUTE, run_on_startup=False, use_monitor=True)
@bp.durable_client_input(client_name="client")
async def start_reconciler(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    services = get_services()
    report = await starts.reconcile(
        services.repos,
        DurableOrchestrations(client),
        now=services.clock(),
        grace=services.settings.sweeper.start_grace,
    )
    if report.examined:
        log.info(
            "start reconciler: %d examined; settled %s; rolled back %s; left for later %s",
            report.examined,
            ", ".join(report.settled) or "-",
            ", ".join(report.rolled_back) or "-",
            ", ".join(report.failed) or "-",
        )
