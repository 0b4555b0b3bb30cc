"""The trigger side of the crash-safe start (`shared.jobs.starts`): the Idempotency-Key header, starting a
job's own orchestration exactly once, and the reconciler's timer with its Durable adapter.

An operator route adopts it in two lines: pass `idempotency_key(req)` to its service's start, then
`await launch(client, ORCHESTRATOR, started.job, job_input)` instead of `client.start_new`. An action run
by the machine's long-lived orchestration passes `runner=` to the start instead and wakes that
orchestration as before; the orchestration's first activity of the job acknowledges it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from urllib.parse import urlsplit

import azure.durable_functions as df
import azure.functions as func
from pydantic import BaseModel

from functions.http_errors import MAX_BODY_BYTES, MAX_JSON_DEPTH, json_nesting_depth
from functions.orchestration_signals import wake_machine_orchestration
from orchestrators.blueprints import durable_blueprint
from orchestrators.failback.contracts import REVERSE_WAKE, reverse_instance_id
from orchestrators.names import OPERATOR_REQUEST, job_instance_id, machine_instance_id
from shared import health
from shared.bootstrap import get_services
from shared.domain.api import OperatorRequest
from shared.domain.job import Job
from shared.domain.pending_start import PendingStart, StartRunner
from shared.domain.principal import current_actor
from shared.jobs import starts
from shared.platform import crash_points

bp = durable_blueprint()
log = logging.getLogger(__name__)


def idempotency_key(req: func.HttpRequest) -> starts.RetryOf:
    """How a resend of this request is recognised: its Idempotency-Key (400 when malformed), and its
    fingerprint within OPERATOR_RETRY_WINDOW_SECONDS for a request sent without one."""
    services = get_services()
    return starts.RetryOf(
        key=starts.check_idempotency_key(req.headers.get(starts.IDEMPOTENCY_KEY_HEADER)),
        fingerprint=request_fingerprint(req),
        window=services.settings.sweeper.retry_window,
    )


# Who sent the request: the Entra ID principal when App Service authentication vouches for it, else the
# function key (hashed with the rest, never stored as such). Two callers sending the same body start two
# actions (the second is refused with a 409 naming the first's job), never one answered with the other's.
def request_fingerprint(req: func.HttpRequest) -> str:
    """SHA-256 of the method, the route, the body as canonical JSON (keys sorted, no spaces: the same
    object however it was spelled) and the caller."""
    raw = req.get_body() or b""
    body = raw.decode("utf-8", "replace")
    # A body no route would accept (too large, too deep) is not parsed: its text is its fingerprint.
    if raw.strip() and len(raw) <= MAX_BODY_BYTES and json_nesting_depth(raw) <= MAX_JSON_DEPTH:
        # Not JSON: the route refuses it; the raw text is as good a fingerprint.
        with contextlib.suppress(ValueError, UnicodeDecodeError, RecursionError):
            body = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # The operator routes' check has validated the token: its principal is the caller (a function key
    # is shared by many callers and says nothing about who sent the request).
    actor = current_actor()
    caller = f"oid:{actor.object_id}" if actor is not None else ""
    text = "\n".join([req.method.upper(), urlsplit(req.url).path.rstrip("/").lower(), body, caller])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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

    async def alive(self, machine_id: str, runner: StartRunner) -> bool:
        if runner is StartRunner.COMMANDS:
            return True  # no orchestration: the reconciler completes the start itself
        instance_id = (
            machine_instance_id(machine_id)
            if runner is StartRunner.MACHINE
            else reverse_instance_id(machine_id)
        )
        status = await self._client.get_status(instance_id)
        return status is not None and status.runtime_status in _ALIVE

    async def redeliver(self, machine_id: str, pending: PendingStart) -> None:
        if pending.runner is StartRunner.MACHINE:
            request = OperatorRequest(machine_id=machine_id, job_id=pending.job.id, kind=pending.job.kind)
            await wake_machine_orchestration(self._client, machine_id, OPERATOR_REQUEST, request)
        elif pending.runner is StartRunner.REVERSE:
            await self._client.raise_event(
                reverse_instance_id(machine_id), REVERSE_WAKE, {"jobId": pending.job.id}
            )
        elif pending.runner is StartRunner.COMMANDS:
            services = get_services()
            await asyncio.to_thread(
                health.complete_repair_start, services.repos, machine_id, pending.job.id, now=services.clock()
            )


_ALIVE = {
    df.OrchestrationRuntimeStatus.Running,
    df.OrchestrationRuntimeStatus.Pending,
    df.OrchestrationRuntimeStatus.ContinuedAsNew,
}


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
            "start reconciler: %d examined; settled %s; rolled back %s; re-delivered %s; left for later %s",
            report.examined,
            ", ".join(report.settled) or "-",
            ", ".join(report.rolled_back) or "-",
            ", ".join(report.redelivered) or "-",
            ", ".join(report.failed) or "-",
        )
