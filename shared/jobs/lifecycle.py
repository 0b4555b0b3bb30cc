"""The only code that writes jobs: every flow (replication, repair, test migration, migration) records its
job's creation, step changes and end here.

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
from shared.domain.job import Job, JobError, JobKind, JobStatus, StepChange
from shared.platform.documents import Query
from shared.platform.repository import Repositories
from shared.platform.telemetry import get_telemetry

MAX_PAGE_SIZE = 100


def create(repos: Repositories, job: Job) -> Job:
    """Record a new job (see `shared.domain.job.new_job`). An upsert: a request retried under the same
    job id records the same job again."""
    return repos.jobs.put(job).item


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


def _apply(repos: Repositories, job_id: str, transition: Callable[[Job], Job]) -> Job:
    def mutate(job: Job) -> None:
        # update_with_retry saves the copy it hands over: the transition's result is copied into it.
        changed = transition(job)
        for name in Job.model_fields:
            setattr(job, name, getattr(changed, name))

    stored, _ = repos.jobs.update_with_retry(job_id, mutate)
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
        repos, job_id, lambda job: transitions.finish_step(job, name, status, now=now, message=message)
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

    finished = _apply(repos, job_id, end)
    if ended == [True]:
        # Once per job (a repeat finds it finished): what the "failed job" alert and the workbook read.
        get_telemetry().record_job_finished(
            machine_id=finished.machine_id,
            job_id=finished.id,
            kind=finished.kind.value,
            status=finished.status.value,
            error_code=finished.error.code if finished.error else None,
        )
    return finished
