"""The push installation's activities: queue the appliance command, read its answer, end the job.

Each is idempotent by job: the command id is derived from the job, reading changes nothing, and a
finished job no longer changes."""

from __future__ import annotations

from typing import Any

from orchestrators.blueprints import durable_blueprint
from orchestrators.mobility.contracts import Done, PushEnd, PushInput, PushView, PushWatch
from shared.bootstrap import get_services
from shared.domain.command import CommandStatus, PushInstallReport
from shared.mobility import push
from shared.mobility.installers import installers_container
from shared.platform.storage import BlobSasSigner

bp = durable_blueprint()


def _json(payload: Any) -> dict[str, Any]:
    result: dict[str, Any] = payload.model_dump(mode="json")
    return result


@bp.activity_trigger(input_name="payload")
def queue_push_install(payload: dict[str, Any]) -> dict[str, Any]:
    job = PushInput.model_validate(payload)
    services = get_services()
    now = services.clock()
    push.mark_started(services.repos, job.job_id, now=now)
    signer = BlobSasSigner(installers_container(services.replicas))
    push.queue_push(services.repos, signer, job.machine_id, job.job_id, job.request, now=now)
    return _json(Done())


@bp.activity_trigger(input_name="payload")
def read_push_install(payload: dict[str, Any]) -> dict[str, Any]:
    watch = PushWatch.model_validate(payload)
    command = push.push_command(get_services().repos, watch.machine_id, watch.job_id)
    if command is None or command.status is CommandStatus.PENDING:
        return _json(PushView(acknowledged=False))
    report = command.result if isinstance(command.result, PushInstallReport) else None
    error = command.error
    return _json(
        PushView(
            acknowledged=True,
            report=report,
            error_code=error.code if error else None,
            error_message=error.message if error else None,
        )
    )


@bp.activity_trigger(input_name="payload")
def end_push_install(payload: dict[str, Any]) -> dict[str, Any]:
    end = PushEnd.model_validate(payload)
    services = get_services()
    outcome = push.push_outcome(end.report, end.request, end.error_code)
    push.end_push_job(services.repos, end.job_id, outcome, now=services.clock())
    return _json(Done())
