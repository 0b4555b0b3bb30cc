"""What the failback jobs' orchestrations share (PlannedFailover, CancelPlannedFailover, CommitFailback,
the reprotect to Azure): the step a job is at, how a step starts and reports, and the frame that runs a
job's steps to an outcome that one activity records. A step that cannot go on raises `Stopped`; an
activity that exhausted its retries fails the step it was in, with its message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import azure.durable_functions as df

from orchestrators.failback.contracts import FailbackRun
from orchestrators.failback.orchestrator import Orchestration, ReverseStopped
from orchestrators.hydration.itinerary import call_activity, record_progress
from shared.failback.planned import FailbackOutcome

Outcome = TypeVar("Outcome", bound=FailbackOutcome)
Steps = Callable[[df.DurableOrchestrationContext, FailbackRun, "At"], Orchestration]


class Stopped(Exception):
    def __init__(self, code: str | None, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class At:
    step: Enum
    messages: list[str] = field(default_factory=list)


def run_job(
    context: df.DurableOrchestrationContext,
    run: FailbackRun,
    at: At,
    steps: Steps,
    *,
    outcome: type[Outcome],
    end: Any,
) -> Orchestration:
    """Run `steps`, then record the job's end with the `end` activity; returns whether it succeeded."""
    try:
        yield from steps(context, run, at)
        result = outcome(machine_id=run.machine_id, job_id=run.job_id, succeeded=True)
    except (Stopped, ReverseStopped) as stop:
        result = _failed(outcome, run, at, stop.code, stop.message)
    except Exception as exc:  # an activity that exhausted its retries
        result = _failed(outcome, run, at, None, str(exc))
    if not result.succeeded:
        yield progress(context, run, (at.step, "Failed", result.error_message))
    yield call_activity(context, end, result)
    return result.succeeded


def _failed(outcome: type[Outcome], run: FailbackRun, at: At, code: str | None, message: str) -> Outcome:
    return outcome(
        machine_id=run.machine_id,
        job_id=run.job_id,
        succeeded=False,
        failed_step=str(at.step.value),
        error_code=code,
        error_message=message,
    )


def begin(context: df.DurableOrchestrationContext, run: FailbackRun, at: At, step: Enum) -> Orchestration:
    at.step = step
    yield progress(context, run, (step, "InProgress", None))


def progress(
    context: df.DurableOrchestrationContext, run: FailbackRun, *updates: tuple[Enum, str, str | None]
) -> Any:
    return record_progress(context, run.job_id, *updates)
