"""Long operations (enable replication, test migration, migration, failover...) as jobs with steps, and
the one job lifecycle as pure transitions: build a job, start and finish its steps, finish it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from shared.domain.principal import Principal, current_actor
from shared.domain.wire import ResourceId, WireModel


class JobKind(StrEnum):
    ENABLE_REPLICATION = "EnableReplication"
    STOP_REPLICATION = "StopReplication"
    REPAIR_REPLICATION = "RepairReplication"
    TEST_MIGRATION = "TestMigration"
    TEST_MIGRATION_CLEANUP = "TestMigrationCleanup"
    MIGRATION = "Migration"
    COMPLETE_MIGRATION = "CompleteMigration"
    FAILOVER = "Failover"
    CHANGE_RECOVERY_POINT = "ChangeRecoveryPoint"
    COMMIT = "Commit"
    PLANNED_FAILOVER = "PlannedFailover"
    CANCEL_PLANNED_FAILOVER = "CancelPlannedFailover"
    COMMIT_FAILBACK = "CommitFailback"
    REPROTECT = "Reprotect"
    INSTALL_MOBILITY_SERVICE = "InstallMobilityService"


class JobStatus(StrEnum):
    NOT_STARTED = "NotStarted"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    WARNING = "Warning"  # finished, with a non-fatal failure (e.g. source shutdown failed before failover)
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self not in (JobStatus.NOT_STARTED, JobStatus.IN_PROGRESS)


class JobError(WireModel):
    code: str
    message: str


class JobStep(WireModel):
    name: str
    status: JobStatus = JobStatus.NOT_STARTED
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: JobError | None = None


class Job(WireModel):
    """A long operation: its kind, the machine it acts on, its status and its steps."""

    # Stored in `jobs` (pk /id: the client polls by job id alone).

    id: ResourceId
    kind: JobKind
    machine_id: ResourceId
    status: JobStatus = JobStatus.NOT_STARTED
    steps: list[JobStep] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    error: JobError | None = None
    started_by: Principal | None = Field(
        default=None,
        description="the operator who asked for it (absent when the control plane started it on its own, "
        "e.g. an automatic repair or cancel)",
    )


# --- the job lifecycle: pure transitions (the writer is shared.jobs.lifecycle) ----------------------------


@dataclass(frozen=True)
class StepChange:
    """A step's new status; the message is kept (as the step's error) for failures and warnings."""

    name: str
    status: JobStatus
    message: str | None = None


def new_job(
    job_id: str,
    kind: JobKind,
    machine_id: str,
    steps: Sequence[str],
    now: datetime,
    *,
    started_by: Principal | None = None,
) -> Job:
    """A job as its request records it: in progress, every step still to run, started by the operator
    acting in this request (shared.domain.principal.acting_as) unless `started_by` says who."""
    return Job(
        id=job_id,
        kind=kind,
        machine_id=machine_id,
        status=JobStatus.IN_PROGRESS,
        steps=[JobStep(name=name) for name in steps],
        created_at=now,
        updated_at=now,
        started_by=started_by or current_actor(),
    )


def _changed_step(change: StepChange, existing: JobStep | None, now: datetime) -> JobStep:
    error = (
        JobError(code=change.status.value, message=change.message)
        if change.message and change.status in (JobStatus.FAILED, JobStatus.WARNING)
        else None
    )
    return JobStep(
        name=change.name,
        status=change.status,
        start_time=existing.start_time if existing is not None and existing.start_time else now,
        end_time=now if change.status.finished else None,
        error=error,
    )


def change_steps(
    job: Job,
    updates: Sequence[StepChange],
    *,
    now: datetime,
    add_after: str | None = None,
    added: Sequence[StepChange] = (),
) -> Job:
    """Set step statuses, inserting `added` steps after the step `add_after` (at the end when the job has
    no such step); steps already there are not inserted twice, a step already finished in the same
    status is left as it was, and a finished job is returned unchanged: a retried writer changes nothing.
    """
    if job.status.finished:
        return job
    steps = list(job.steps)
    names = [s.name for s in steps]
    fresh = [c for c in added if c.name not in names]
    if add_after is not None and fresh:
        at = names.index(add_after) + 1 if add_after in names else len(steps)
        steps[at:at] = [_changed_step(c, None, now) for c in fresh]
    for change in updates:
        for index, step in enumerate(steps):
            if step.name == change.name and not (step.status.finished and step.status is change.status):
                steps[index] = _changed_step(change, step, now)
    if steps == job.steps:
        return job
    return job.model_copy(update={"steps": steps, "updated_at": now})


def start_step(job: Job, name: str, *, now: datetime) -> Job:
    return change_steps(job, [StepChange(name, JobStatus.IN_PROGRESS)], now=now)


def finish_step(job: Job, name: str, status: JobStatus, *, now: datetime, message: str | None = None) -> Job:
    if not status.finished:
        raise ValueError(f"a step finishes Succeeded, Warning, Failed or Cancelled, not {status.value}")
    return change_steps(job, [StepChange(name, status, message)], now=now)


def current_step(job: Job) -> str | None:
    """The step a job that runs its steps in order is at: the first one not finished."""
    return next((s.name for s in job.steps if not s.status.finished), None)


def finish_job(
    job: Job,
    status: JobStatus,
    *,
    now: datetime,
    error: JobError | None = None,
    failed_step: str | None = None,
) -> Job:
    """The job's final status; a finished job is returned unchanged (finishing twice is harmless).

    The steps still open finish with it: on success they succeeded; on failure the failing step (the
    one named, else those in progress) is Failed with the job's error and the rest, never run, are
    Cancelled; a named step already Failed takes the job's error too. A failed job always says why (a
    generic error when none is given).
    """
    if not status.finished:
        raise ValueError(f"a job finishes Succeeded, Warning, Failed or Cancelled, not {status.value}")
    if job.status.finished:
        return job
    failed = status is JobStatus.FAILED
    if failed and error is None:
        error = JobError(code="Failed", message="the job failed")

    def closed(step: JobStep) -> JobStep:
        if failed and step.name == failed_step and step.status is JobStatus.FAILED:
            # The flow marked it Failed as it happened (with the raw message); it ends with the job's
            # error, the code and text the operator looks up.
            return step.model_copy(update={"error": error, "end_time": step.end_time or now})
        if step.status.finished:
            return step
        if not failed:
            final = JobStatus.CANCELLED if status is JobStatus.CANCELLED else JobStatus.SUCCEEDED
            step_error = None
        elif step.name == failed_step or (failed_step is None and step.status is JobStatus.IN_PROGRESS):
            final, step_error = JobStatus.FAILED, error
        else:
            final, step_error = JobStatus.CANCELLED, None
        return step.model_copy(
            update={
                "status": final,
                "start_time": step.start_time or now,
                "end_time": now,
                "error": step_error,
            }
        )

    return job.model_copy(
        update={"status": status, "steps": [closed(s) for s in job.steps], "error": error, "updated_at": now}
    )
