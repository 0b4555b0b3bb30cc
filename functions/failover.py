"""Operator routes for failover to Azure (function keys, authLevel FUNCTION).

GET   /api/machines/{id}/failover-settings   what the failover will create: VM name, resource group,
                                              size, disk type per disk, VNet/subnet, static IP
PATCH /api/machines/{id}/failover-settings   a JSON merge patch (RFC 7396) of the same document
POST  /api/machines/{id}/failover            {"recoveryPoint": "latest"|"latestProcessed"|
                                              "latestAppConsistent"|"latestCrashConsistent"|<id>,
                                              "shutdownSource": bool} -> 202, Location /api/jobs/{jobId}
POST  /api/machines/{id}/change-recovery-point  {"recoveryPointId": <id>} -> 202 (until commit)
POST  /api/machines/{id}/commit              -> 202: keep the failover's point, delete the others; on a
                                              machine that failed back to on-premises, commit that
                                              instead (a CommitFailback job)

A failover records the machine's move to FailingOver and its job first (409 when the state or the
recovery points forbid it, nothing written), then starts the job's orchestration `job-{jobId}`. It
cannot be cancelled: there is no cancel route, and the job's orchestration never stops half-way.
"""

from __future__ import annotations

import asyncio
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from functions.auth import requires
from functions.http_errors import (
    accepted_job,
    handle_errors,
    json_object_body,
    json_response,
    new_job_id,
    parse_body,
    path_id,
)
from functions.orchestration_signals import wake_machine_orchestration
from functions.starts import idempotency_key, launch
from orchestrators.blueprints import durable_blueprint
from orchestrators.failback.commit import COMMIT_FAILBACK
from orchestrators.failback.contracts import FailbackRun
from orchestrators.failover.after import CHANGE_RECOVERY_POINT, COMMIT
from orchestrators.failover.contracts import ChangeInput, FailoverInput, FailoverOutcome, StepRef
from orchestrators.failover.orchestrator import FAILOVER
from orchestrators.names import CYCLE_UPLOADED_SIGNAL
from shared.bootstrap import get_services
from shared.domain.api import CycleSignal
from shared.domain.errors import ValidationFailed
from shared.domain.principal import Role
from shared.failback import commit as failback_commit
from shared.failover import service as failover
from shared.failover import settings as failover_settings
from shared.jobs.starts import RetryOf

bp = durable_blueprint()

MERGE_PATCH = "application/merge-patch+json"


def _merge_patch_body(req: func.HttpRequest) -> dict[str, Any]:
    media_type = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if media_type not in ("", MERGE_PATCH, "application/json"):
        # A JSON Patch (RFC 6902) is a list of operations; applied as a merge patch it would be refused
        # anyway, but this says why.
        raise ValidationFailed.single(
            "Content-Type",
            f"{media_type} is not accepted: send the changed members as a JSON merge patch "
            f'({MERGE_PATCH}), e.g. {{"vmSize": "Standard_D8s_v3"}}',
        )
    # A merge patch that is not an object would replace the whole settings document.
    return json_object_body(req, what="a JSON object holding the members to change (a JSON merge patch)")


@bp.route(route="machines/{machineId}/failover-settings", methods=["GET"])
@handle_errors
@requires(Role.READER)
def get_failover_settings(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    return json_response(failover_settings.get_failover_settings(services.repos, path_id(req, "machineId")))


@bp.route(route="machines/{machineId}/failover-settings", methods=["PATCH"])
@handle_errors
@requires(Role.OPERATOR)
async def update_failover_settings(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    machine_id = path_id(req, "machineId")
    patch = _merge_patch_body(req)
    # The Cosmos SDK is synchronous: keep it off the worker's event loop.
    updated = await asyncio.to_thread(
        failover_settings.update_failover_settings,
        services.repos,
        machine_id,
        patch,
        now=services.clock(),
        placement=services.placement,
    )
    return json_response(updated)


@bp.route(route="machines/{machineId}/failover", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handle_errors
@requires(Role.OPERATOR)
async def fail_over(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    services = get_services()
    body = req.get_body().strip()
    request = parse_body(req, failover.FailoverRequest) if body else failover.FailoverRequest()
    started = await asyncio.to_thread(
        failover.start_failover,
        services.repos,
        path_id(req, "machineId"),
        request,
        job_id=new_job_id(),
        now=services.clock(),
        idempotency_key=idempotency_key(req),
    )
    job_input = FailoverInput(
        machine_id=started.machine.id,
        job_id=started.job.id,
        recovery_point=request.recovery_point,
        shutdown_source=request.shutdown_source,
    )
    try:
        await launch(client, FAILOVER, started.job, job_input)
    except Exception:
        # Recorded but not started: nothing runs the job, so end it (the machine goes back) before answering 500.
        outcome = FailoverOutcome(
            machine_id=started.machine.id,
            job_id=started.job.id,
            succeeded=False,
            error_code="StartFailed",
            error_message="the failover's orchestration could not be started; run the failover again",
        )
        await asyncio.to_thread(
            failover.end_failover, services.repos, outcome, now=services.clock(), health=services.health
        )
        raise
    failing = started.machine.failover
    if failing is not None and failing.drain_through_sequence is not None:
        # 'latest': the machine's orchestration applies the waiting cycles now rather than at its next wake-up.
        await wake_machine_orchestration(
            client,
            started.machine.id,
            CYCLE_UPLOADED_SIGNAL,
            CycleSignal(cycle_id="failover", sequence=failing.drain_through_sequence),
        )
    return accepted_job(started.job, retry_after_seconds=10)


async def _run(
    client: df.DurableOrchestrationClient,
    orchestrator: str,
    started: failover.FailoverStarted,
    job_input: Any,
) -> func.HttpResponse:
    try:
        await launch(client, orchestrator, started.job, job_input)
    except Exception:
        # Recorded but not started: end the job so the machine is free again, then answer 500.
        services = get_services()
        outcome = FailoverOutcome(
            machine_id=started.machine.id,
            job_id=started.job.id,
            succeeded=False,
            error_code="StartFailed",
            error_message="the job's orchestration could not be started; run it again",
        )
        await asyncio.to_thread(
            failover.end_failover, services.repos, outcome, now=services.clock(), health=services.health
        )
        raise
    return accepted_job(started.job, retry_after_seconds=10)


@bp.route(route="machines/{machineId}/change-recovery-point", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handle_errors
@requires(Role.OPERATOR)
async def change_recovery_point(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    services = get_services()
    request = parse_body(req, failover.ChangeRecoveryPointRequest)
    started = await asyncio.to_thread(
        failover.start_change_recovery_point,
        services.repos,
        path_id(req, "machineId"),
        request,
        job_id=new_job_id(),
        now=services.clock(),
        idempotency_key=idempotency_key(req),
    )
    current = started.machine.failover
    assert current is not None and current.vm_id is not None
    job_input = ChangeInput(
        machine_id=started.machine.id,
        job_id=started.job.id,
        recovery_point_id=request.recovery_point_id,
        vm_id=current.vm_id,
        old_disk_ids=current.disk_ids,
        old_snapshot_ids=current.failback_baseline_snapshot_ids,
    )
    return await _run(client, CHANGE_RECOVERY_POINT, started, job_input)


@bp.route(route="machines/{machineId}/commit", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handle_errors
@requires(Role.OPERATOR)
async def commit_failover(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    services = get_services()
    machine_id = path_id(req, "machineId")
    # The direction follows where the machine is active: a planned failover to on-premises is committed
    # by its own job.
    if await asyncio.to_thread(failback_commit.commits_failback, services.repos, machine_id):
        return await commit_failback(client, machine_id, idempotency_key(req))
    started = await asyncio.to_thread(
        failover.start_commit,
        services.repos,
        machine_id,
        job_id=new_job_id(),
        now=services.clock(),
        idempotency_key=idempotency_key(req),
    )
    return await _run(client, COMMIT, started, StepRef(machine_id=started.machine.id, job_id=started.job.id))


async def commit_failback(
    client: df.DurableOrchestrationClient, machine_id: str, key: RetryOf | None = None
) -> func.HttpResponse:
    """The CommitFailback job, in its own orchestration instance (the job id)."""
    services = get_services()
    started = await asyncio.to_thread(
        failback_commit.start_commit_failback,
        services.repos,
        machine_id,
        job_id=new_job_id(),
        now=services.clock(),
        idempotency_key=key,
    )
    run = FailbackRun(machine_id=started.machine.id, job_id=started.job.id)
    try:
        await launch(client, COMMIT_FAILBACK, started.job, run)
    except Exception:
        # Recorded but not started: end the job (nothing was deleted: the machine is FailedBack again).
        outcome = failback_commit.CommitOutcome(
            machine_id=started.machine.id,
            job_id=started.job.id,
            succeeded=False,
            error_message="the commit's orchestration could not be started; commit again",
        )
        await asyncio.to_thread(
            failback_commit.end_commit_failback,
            services.repos,
            outcome,
            now=services.clock(),
            health=services.health,
        )
        raise
    return accepted_job(started.job, retry_after_seconds=10)
