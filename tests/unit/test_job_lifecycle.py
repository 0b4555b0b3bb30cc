"""The one job lifecycle: its pure transitions (shared.domain.job) and its writer (shared.jobs.lifecycle)
over the in-memory store, whose ETags behave as Cosmos's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain.errors import NotFound
from shared.domain.event import Event, Severity
from shared.domain.job import (
    Job,
    JobError,
    JobKind,
    JobStatus,
    StepChange,
    change_steps,
    current_step,
    finish_job,
    finish_step,
    new_job,
    start_step,
)
from shared.domain.principal import Principal, PrincipalKind, acting_as
from shared.health.events import list_events
from shared.jobs import lifecycle as jobs
from shared.platform.documents import JOBS, ContainerSpec, StoredDocument
from shared.platform.repository import Repositories
from tests.support.memory_store import InMemoryDocumentStore

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
STEPS = ("Plan", "Copy", "Create", "Check")
QUOTA = JobError(code="QuotaExceeded", message="no cores left in westeurope")


def _job() -> Job:
    return new_job("job-1", JobKind.TEST_MIGRATION, "web01", STEPS, NOW)


def _statuses(job: Job) -> dict[str, JobStatus]:
    return {s.name: s.status for s in job.steps}


# --- pure transitions -------------------------------------------------------------------------------------


def test_a_new_job_is_in_progress_with_every_step_to_run() -> None:
    job = _job()
    assert (job.id, job.kind, job.machine_id, job.status) == (
        "job-1",
        JobKind.TEST_MIGRATION,
        "web01",
        JobStatus.IN_PROGRESS,
    )
    assert [(s.name, s.status, s.start_time) for s in job.steps] == [
        (name, JobStatus.NOT_STARTED, None) for name in STEPS
    ]
    assert job.created_at == job.updated_at == NOW and job.error is None


def test_steps_start_and_finish_with_their_times() -> None:
    started = start_step(_job(), "Plan", now=NOW)
    plan = started.steps[0]
    assert (plan.status, plan.start_time, plan.end_time) == (JobStatus.IN_PROGRESS, NOW, None)
    done = finish_step(started, "Plan", JobStatus.WARNING, now=LATER, message="used the older point")
    plan = done.steps[0]
    assert (plan.status, plan.start_time, plan.end_time) == (JobStatus.WARNING, NOW, LATER)
    assert plan.error == JobError(code="Warning", message="used the older point")
    assert done.updated_at == LATER
    # A step finished without having been seen running started when it finished.
    skipped = finish_step(done, "Copy", JobStatus.SUCCEEDED, now=LATER).steps[1]
    assert (skipped.start_time, skipped.end_time, skipped.error) == (LATER, LATER, None)
    assert current_step(done) == "Copy"
    with pytest.raises(ValueError, match="not InProgress"):
        finish_step(done, "Copy", JobStatus.IN_PROGRESS, now=LATER)


def test_repeating_a_step_change_changes_nothing() -> None:
    done = finish_step(_job(), "Plan", JobStatus.SUCCEEDED, now=NOW)
    assert finish_step(done, "Plan", JobStatus.SUCCEEDED, now=LATER) is done
    added = [StepChange("Prepare: fstab", JobStatus.SUCCEEDED)]
    once = change_steps(done, [], now=NOW, add_after="Copy", added=added)
    assert [s.name for s in once.steps] == ["Plan", "Copy", "Prepare: fstab", "Create", "Check"]
    assert change_steps(once, [], now=LATER, add_after="Copy", added=added) is once


def test_finishing_a_failed_job_fails_the_running_step_and_cancels_those_never_run() -> None:
    job = finish_step(_job(), "Plan", JobStatus.SUCCEEDED, now=NOW)
    job = start_step(job, "Copy", now=NOW)
    failed = finish_job(job, JobStatus.FAILED, now=LATER, error=QUOTA)
    assert failed.status is JobStatus.FAILED and failed.error == QUOTA and failed.updated_at == LATER
    assert _statuses(failed) == {
        "Plan": JobStatus.SUCCEEDED,
        "Copy": JobStatus.FAILED,
        "Create": JobStatus.CANCELLED,
        "Check": JobStatus.CANCELLED,
    }
    copy, create = failed.steps[1], failed.steps[2]
    assert (copy.error, copy.start_time, copy.end_time) == (QUOTA, NOW, LATER)
    assert create.error is None and create.end_time == LATER
    assert failed.steps[0] == job.steps[0]  # finished steps keep what they said


def test_the_failing_step_can_be_named_and_a_failure_always_says_why() -> None:
    job = finish_step(_job(), "Plan", JobStatus.SUCCEEDED, now=NOW)
    failed = finish_job(job, JobStatus.FAILED, now=LATER, failed_step=current_step(job))
    assert failed.error == JobError(code="Failed", message="the job failed")
    assert _statuses(failed)["Copy"] is JobStatus.FAILED and failed.steps[1].error == failed.error
    assert _statuses(failed)["Create"] is JobStatus.CANCELLED


def test_a_named_step_already_failed_ends_with_the_jobs_error() -> None:
    job = finish_step(_job(), "Plan", JobStatus.SUCCEEDED, now=NOW)
    job = finish_step(job, "Copy", JobStatus.FAILED, now=NOW, message="the raw ARM message")
    error = JobError(code="QuotaExceeded", message="creating the VM failed: quota; request more cores")
    failed = finish_job(job, JobStatus.FAILED, now=LATER, error=error, failed_step="Copy")
    copy = failed.steps[1]
    assert copy.status is JobStatus.FAILED and copy.error == error and copy.end_time == NOW
    assert _statuses(failed)["Create"] is JobStatus.CANCELLED
    # Without a name, a step a flow already failed keeps what it said.
    kept = finish_job(job, JobStatus.FAILED, now=LATER, error=error)
    assert kept.steps[1].error == JobError(code="Failed", message="the raw ARM message")


def test_a_succeeded_job_closes_its_open_steps_as_succeeded() -> None:
    job = start_step(_job(), "Plan", now=NOW)
    done = finish_job(job, JobStatus.SUCCEEDED, now=LATER)
    assert done.status is JobStatus.SUCCEEDED and done.error is None
    assert set(_statuses(done).values()) == {JobStatus.SUCCEEDED}
    assert all(s.end_time == LATER for s in done.steps) and done.steps[0].start_time == NOW
    cancelled = finish_job(job, JobStatus.CANCELLED, now=LATER)
    assert set(_statuses(cancelled).values()) == {JobStatus.CANCELLED}
    with pytest.raises(ValueError, match="not InProgress"):
        finish_job(job, JobStatus.IN_PROGRESS, now=LATER)


def test_a_finished_job_stays_as_it_ended() -> None:
    failed = finish_job(start_step(_job(), "Plan", now=NOW), JobStatus.FAILED, now=NOW, error=QUOTA)
    assert finish_job(failed, JobStatus.SUCCEEDED, now=LATER) is failed
    assert finish_job(failed, JobStatus.FAILED, now=LATER, error=JobError(code="X", message="y")) is failed
    # A late step change (a retried activity) cannot reopen it.
    assert start_step(failed, "Create", now=LATER) is failed


# --- the writer ------------------------------------------------------------------------------------------


@pytest.fixture
def repos() -> Repositories:
    return Repositories(InMemoryDocumentStore())


def test_create_get_and_require(repos: Repositories) -> None:
    created = jobs.create(repos, _job())
    assert jobs.get(repos, "job-1") == created == jobs.require(repos, "job-1")
    assert jobs.get(repos, "job-2") is None
    with pytest.raises(NotFound, match="job job-2 does not exist"):
        jobs.require(repos, "job-2")


def test_the_writer_changes_steps_and_finishes_the_stored_job(repos: Repositories) -> None:
    jobs.create(repos, _job())
    jobs.finish_step(repos, "job-1", "Plan", JobStatus.SUCCEEDED, now=NOW)
    jobs.start_step(repos, "job-1", "Copy", now=NOW)
    failed = jobs.finish(repos, "job-1", JobStatus.FAILED, now=LATER, error=QUOTA)
    assert failed == jobs.require(repos, "job-1")
    assert _statuses(failed) == {
        "Plan": JobStatus.SUCCEEDED,
        "Copy": JobStatus.FAILED,
        "Create": JobStatus.CANCELLED,
        "Check": JobStatus.CANCELLED,
    }
    assert failed.steps[1].error == failed.error == QUOTA


def test_finishing_twice_is_harmless_and_writes_nothing(repos: Repositories) -> None:
    jobs.create(repos, _job())
    done = jobs.finish(repos, "job-1", JobStatus.SUCCEEDED, now=NOW)
    repos.counter.reset()
    again = jobs.finish(repos, "job-1", JobStatus.FAILED, now=LATER, error=QUOTA)
    late = jobs.update_steps(repos, "job-1", [StepChange("Plan", JobStatus.FAILED, "late")], now=LATER)
    assert again == late == done and again.status is JobStatus.SUCCEEDED
    assert repos.counter.snapshot() == {"read:jobs": 2}


class RacingStore(InMemoryDocumentStore):
    """Another writer changes the job between the writer's read and its replace, `races` times."""

    def __init__(self, races: int, concurrent: StepChange) -> None:
        super().__init__()
        self.races = races
        self.concurrent = concurrent

    def replace(self, container: ContainerSpec, body: dict[str, Any], etag: str) -> StoredDocument:
        if container.name == JOBS.name and self.races > 0:
            self.races -= 1
            stored = self.read(container, body["id"], body["id"])
            assert stored is not None
            theirs = change_steps(Job.model_validate(stored.body), [self.concurrent], now=NOW)
            super().upsert(container, theirs.to_wire())
        return super().replace(container, body, etag)


def test_a_finish_that_loses_the_etag_race_is_retried_and_keeps_the_other_write() -> None:
    store = RacingStore(races=1, concurrent=StepChange("Copy", JobStatus.SUCCEEDED))
    repos = Repositories(store)
    jobs.create(repos, start_step(_job(), "Copy", now=NOW))
    failed = jobs.finish(repos, "job-1", JobStatus.FAILED, now=LATER, error=QUOTA)
    assert store.counter.snapshot()["replace:jobs"] == 2  # the first replace got a 412
    # Re-applied to the version the other writer left: its step is kept, nothing was running to fail.
    assert _statuses(failed) == {
        "Plan": JobStatus.CANCELLED,
        "Copy": JobStatus.SUCCEEDED,
        "Create": JobStatus.CANCELLED,
        "Check": JobStatus.CANCELLED,
    }
    assert failed.error == QUOTA and jobs.require(repos, "job-1") == failed


def test_step_changes_racing_each_other_both_land() -> None:
    store = RacingStore(races=2, concurrent=StepChange("Plan", JobStatus.SUCCEEDED))
    repos = Repositories(store)
    jobs.create(repos, _job())
    job = jobs.update_steps(repos, "job-1", [StepChange("Copy", JobStatus.IN_PROGRESS)], now=LATER)
    assert _statuses(job)["Plan"] is JobStatus.SUCCEEDED and _statuses(job)["Copy"] is JobStatus.IN_PROGRESS
    assert store.counter.snapshot()["replace:jobs"] == 3


# --- who started the job, and its events ------------------------------------------------------------------

ADA = Principal(object_id="oid-ada", name="Ada", kind=PrincipalKind.USER)


def _events(repos: Repositories) -> dict[str, Event]:
    return {e.id: e for e in list_events(repos, "web01")}


def test_a_job_records_the_acting_operator_and_its_events_name_them(repos: Repositories) -> None:
    with acting_as(ADA):
        job = _job()
    assert job.started_by == ADA
    assert _job().started_by is None  # outside a request: the control plane on its own
    jobs.create(repos, job)
    jobs.finish_step(repos, "job-1", "Plan", JobStatus.SUCCEEDED, now=NOW)
    jobs.start_step(repos, "job-1", "Copy", now=NOW)
    jobs.finish(repos, "job-1", JobStatus.FAILED, now=LATER, error=QUOTA)
    events = _events(repos)
    assert set(events) == {"job-1-started", "job-1-step1-failed", "job-1-finished"}
    assert all(e.actor == ADA and e.details["jobId"] == "job-1" for e in events.values())
    assert events["job-1-started"].message == "TestMigration job job-1 started by Ada"
    failed = events["job-1-step1-failed"]
    assert (failed.type, failed.details["step"], failed.error_code) == (
        "Job step failed",
        "Copy",
        "QuotaExceeded",
    )
    assert "no cores left" in failed.message
    finished = events["job-1-finished"]
    assert (finished.severity, finished.details["status"]) == (Severity.CRITICAL, "Failed")
    # The stored job keeps its starter.
    assert jobs.require(repos, "job-1").started_by == ADA


def test_a_step_failed_by_itself_and_a_succeeded_job_write_one_event_each(repos: Repositories) -> None:
    jobs.create(repos, _job())
    jobs.finish_step(repos, "job-1", "Plan", JobStatus.FAILED, now=NOW, message="the plan failed")
    jobs.finish_step(repos, "job-1", "Plan", JobStatus.FAILED, now=NOW, message="the plan failed")
    jobs.finish(repos, "job-1", JobStatus.WARNING, now=LATER)
    jobs.finish(repos, "job-1", JobStatus.WARNING, now=LATER)
    events = _events(repos)
    assert set(events) == {"job-1-started", "job-1-step0-failed", "job-1-finished"}
    assert events["job-1-finished"].severity is Severity.WARNING
    assert events["job-1-started"].actor is None
