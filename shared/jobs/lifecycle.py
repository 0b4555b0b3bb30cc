"""The only code that writes jobs: every flow (replication, repair, test migration, migration) records its
job's creation, step changes and end here, and with them the job's events on its machine: "Job started"
(when it is recorded), "Job step failed" (each step that fails, with its error) and "Job finished" (its
status), each naming the operator who started the job (`actor`). They are written by whoever changes the
job (the request, or an activity), never by an orchestrator; each has an id derived from the job, so a
retried write records it once.

The transitions themselves are pure (`shared.domain.job`); this module applies them to the stored job
with `update_with_retry`: read, transition, replace with If-Match, and on a concurrent write (412) re-read
and transition again, so a step change and the job's end never overwrite each other. A transition that
changes nothing (a retried activity, a job already finished) writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from shared.domain import job as transitions
from shared.domain.api import JobList
from shared.domain.errors import ValidationFailed
from shared.domain.event import Event, Severity
from shared.domain.job import Job, JobError, JobKind, JobStatus, StepChange
from shared.platform.documents import Query
from shared.platform.repository import Repositories
from shared.platform.telemetry import get_telemetry

MAX_PAGE_SIZE = 100


def create(repos: Repositories, job: Job) -> Job:
    """Record a new job (see `shared.domain.job.new_job`) and its "Job started" event. An upsert: a
    request retried under the same job id records the same job (and event) again."""
    created = repos.jobs.put(job).item
    by = f" by {job.started_by.name}" if job.started_by is not None else ""
    _event(
        repos,
        created,
        "started",
        "Job started",
        Severity.INFO,
        f"{job.kind.value} job {job.id} started{by}",
        time=job.created_at,
    )
    return created


FINISHED_SEVERITY = {
    JobStatus.SUCCEEDED: Severity.INFO,
    JobStatus.CANCELLED: Severity.INFO,
    JobStatus.WARNING: Severity.WARNING,
    JobStatus.FAILED: Severity.CRITICAL,
}


def _event(
    repos: Repositories,
    job: Job,
    suffix: str,
    event_type: str,
    severity: Severity,
    message: str,
    *,
    time: datetime,
    error_code: str | None = None,
    details: dict[str, str] | None = None,
) -> None:
    repos.events.put(
        Event(
            id=f"{job.id}-{suffix}",
            machine_id=job.machine_id,
            time=time,
            type=event_type,
            severity=severity,
            message=message,
            error_code=error_code,
            details={"jobId": job.id, "kind": job.kind.value, **(details or {})},
            actor=job.started_by,
        )
    )


def _step_failed_events(repos: Repositories, before: Job, after: Job, now: datetime) -> None:
    """A "Job step failed" event for each step this change failed (one that was failed already has its
    event)."""
    was_failed = {s.name for s in before.steps if s.status is JobStatus.FAILED}
    for index, step in enumerate(after.steps):
        if step.status is not JobStatus.FAILED or step.name in was_failed:
            continue
        error = step.error.message if step.error is not None else "no error was recorded"
        _event(
            repos,
            after,
            f"step{index}-failed",
            "Job step failed",
            Severity.WARNING,
            f"step '{step.name}' of {after.kind.value} job {after.id} failed: {error}",
            time=now,
            error_code=after.error.code if after.error is not None else None,
            details={"step": step.name},
        )


def get(repos: Repositories, job_id: str) -> Job | None:
    stored = repos.jobs.get(job_id)
    return None if stored is None else stored.item


def require(repos: Repositories, job_id: str) -> Job:
    """NotFound (404) for an unknown job."""
    return repos.jobs.require(job_id).item


def list_jobs(
    repos: Repositories,
    *,
    machine_id: str | None = None,
    kind: JobKind | None = None,
    status: JobStatus | None = None,
    page_size: int = 50,
    continuation: str | None = None,
) -> JobList:
    """Operator listing, newest first: one cross-partition query per page (jobs are partitioned by id)."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationFailed.single("pageSize", f"must be between 1 and {MAX_PAGE_SIZE}; got {page_size}")
    equals: dict[str, object] = {}
    if machine_id is not None:
        equals["machineId"] = machine_id
    if kind is not None:
        equals["kind"] = kind.value
    if status is not None:
        equals["status"] = status.value
    page = repos.jobs.query_page(
        Query(equals=equals, order_by="createdAt", descending=True),
        partition_key=None,
        page_size=page_size,
        continuation=continuation,
    )
    return JobList(jobs=page.items, continuation_token=page.continuation)


def _apply(
    repos: Repositories, job_id: str, transition: Callable[[Job], Job], *, now: datetime | None = None
) -> Job:
    seen: list[Job] = []

    def mutate(job: Job) -> None:
        # update_with_retry saves the copy it hands over: the transition's result is copied into it.
        seen[:] = [job.model_copy(deep=True)]  # the last attempt's view is the one that was saved
        changed = transition(job)
        for name in Job.model_fields:
            setattr(job, name, getattr(changed, name))

    stored, _ = repos.jobs.update_with_retry(job_id, mutate)
    if seen and now is not None:
        _step_failed_events(repos, seen[0], stored.item, now)
    return stored.item


def update_steps(
    repos: Repositories,
    job_id: str,
    updates: Sequence[StepChange],
    *,
    now: datetime,
    add_after: str | None = None,
    added: Sequence[StepChange] = (),
) -> Job:
    """Set step statuses (and insert steps after `add_after`) in one read-modify-write; idempotent."""
    return _apply(
        repos,
        job_id,
        lambda job: transitions.change_steps(job, updates, now=now, add_after=add_after, added=added),
        now=now,
    )


def start_step(repos: Repositories, job_id: str, name: str, *, now: datetime) -> Job:
    return _apply(repos, job_id, lambda job: transitions.start_step(job, name, now=now))


def finish_step(
    repos: Repositories,
    job_id: str,
    name: str,
    status: JobStatus,
    *,
    now: datetime,
    message: str | None = None,
) -> Job:
    return _apply(
        repos,
        job_id,
        lambda job: transitions.finish_step(job, name, status, now=now, message=message),
        now=now,
    )


def finish(
    repos: Repositories,
    job_id: str,
    status: JobStatus,
    *,
    now: datetime,
    error: JobError | None = None,
    failed_step: str | None = None,
) -> Job:
    """End the job (open steps close with it: see `shared.domain.job.finish_job`); finishing a finished
    job changes nothing and returns it as it ended."""
    ended: list[bool] = []

    def end(job: Job) -> Job:
        ended[:] = [not job.status.finished]
        return transitions.finish_job(job, status, now=now, error=error, failed_step=failed_step)

    finished = _apply(repos, job_id, end, now=now)
    if ended == [True]:
        reason = f": {finished.error.code}: {finished.error.message}" if finished.error is not None else ""
        _event(
            repos,
            finished,
            "finished",
            "Job finished",
            FINISHED_SEVERITY.get(finished.status, Severity.INFO),
            f"{finished.kind.value} job {finished.id} ended {finished.status.value}{reason}",
            time=now,
            error_code=finished.error.code if finished.error is not None else None,
            details={"status": finished.status.value},
        )
        # Once per job (a repeat finds it finished): what the "failed job" alert and the workbook read.
        get_telemetry().record_job_finished(
            machine_id=finished.machine_id,
            job_id=finished.id,
            kind=finished.kind.value,
            status=finished.status.value,
            error_code=finished.error.code if finished.error else None,
        )
    return finished
