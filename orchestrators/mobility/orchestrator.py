"""Job InstallMobilityService, its own orchestration instance (the job id): queue the push command for
the machine's appliance, wait for its answer with durable timers (at a growing interval, orchestrators/polling.py), end the job from the report.

The appliance carries out every step (copy agent, check prerequisites, install agent, install VSS
provider, register) and answers once with each step's result; an appliance that does not answer within
the wait ends the job with PushApplianceDidNotAnswer.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from orchestrators.blueprints import durable_blueprint
from orchestrators.mobility.activities import end_push_install, queue_push_install, read_push_install
from orchestrators.mobility.contracts import PushEnd, PushInput, PushView, PushWatch
from orchestrators.polling import Wait

PUSH_INSTALL = "push_install_orchestrator"
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2_000, max_number_of_attempts=4)

Orchestration = Generator[Any, Any, Any]
bp = durable_blueprint()


def _call(context: df.DurableOrchestrationContext, activity: Any, payload: Any) -> Any:
    return context.call_activity_with_retry(activity, RETRY, payload.model_dump(mode="json"))


@bp.orchestration_trigger(context_name="context", orchestration=PUSH_INSTALL)
def push_install_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    job = PushInput.model_validate(context.get_input())
    yield _call(context, queue_push_install, job)
    wait = Wait.starting(
        context.current_utc_datetime, timeout_seconds=job.timeout_seconds, poll_seconds=job.poll_seconds
    )
    watch = PushWatch(machine_id=job.machine_id, job_id=job.job_id)
    view = PushView(acknowledged=False)
    while True:
        view = PushView.model_validate((yield _call(context, read_push_install, watch)))
        if view.acknowledged or wait.over(context.current_utc_datetime):
            break
        yield context.create_timer(wait.next_ask(context.current_utc_datetime))
    end = PushEnd(
        machine_id=job.machine_id,
        job_id=job.job_id,
        request=job.request,
        report=view.report,
        error_code=view.error_code if view.acknowledged else None,
    )
    yield _call(context, end_push_install, end)
    return None
