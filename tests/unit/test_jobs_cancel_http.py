"""POST /api/jobs/{jobId}/cancel through the registered function, over the in-memory store: 404 for an
unknown job, 409 JobAlreadyFinished naming the status, 409 JobNotCancellable with the kind's reason and
what to do instead; the job is left as it was."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.bootstrap import Services
from shared.domain.job import JobKind, JobStatus, new_job
from shared.jobs import lifecycle
from shared.jobs.cancellation import REASONS
from tests.unit.test_api_http import call, services

__all__ = ["services"]  # the fixture, used by name

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def cancel(job_id: str) -> tuple[int, Any]:
    status, body, _ = call("cancel_job", "POST", f"/api/jobs/{job_id}/cancel", route={"jobId": job_id})
    return status, body


def running(services: Services, kind: JobKind, job_id: str = "job-1") -> None:
    lifecycle.create(services.repos, new_job(job_id, kind, "m-1", ["Step one", "Step two"], NOW))


def test_unknown_job_is_404(services: Services) -> None:
    status, body = cancel("job-nope")
    assert status == 404, body


@pytest.mark.parametrize("kind", [JobKind.FAILOVER, JobKind.CHANGE_RECOVERY_POINT, JobKind.COMMIT])
def test_a_failover_job_cannot_be_cancelled_and_says_why_and_what_to_do(
    services: Services, kind: JobKind
) -> None:
    running(services, kind)
    status, body = cancel("job-1")
    assert status == 409, body
    error = body["error"]
    assert error["code"] == "JobNotCancellable"
    message = error["message"]
    assert "a failover to Azure cannot be cancelled" in message
    assert "half-built VM" in message and "worse than a finished one or none" in message
    assert "wait for it" in message
    assert error["details"] == [{"jobId": "job-1", "kind": kind.value, "status": "InProgress"}]
    stored = lifecycle.require(services.repos, "job-1")
    assert stored.status is JobStatus.IN_PROGRESS
    assert [s.status for s in stored.steps] == [JobStatus.NOT_STARTED] * 2


def test_a_failed_failover_rolls_back_by_itself_the_message_says(services: Services) -> None:
    running(services, JobKind.FAILOVER)
    _, body = cancel("job-1")
    assert "if it fails it rolls back by itself" in body["error"]["message"]


@pytest.mark.parametrize("kind", list(JobKind))
def test_every_kind_answers_with_its_own_reason(services: Services, kind: JobKind) -> None:
    running(services, kind)
    status, body = cancel("job-1")
    assert status == 409 and body["error"]["code"] == "JobNotCancellable"
    assert "{" not in body["error"]["message"], "every placeholder is filled in"
    if kind in REASONS:
        assert "m-1" in body["error"]["message"] or "job-1" in body["error"]["message"]


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.WARNING, JobStatus.FAILED])
def test_a_finished_job_is_409_naming_its_status(services: Services, status: JobStatus) -> None:
    running(services, JobKind.MIGRATION)
    lifecycle.finish(services.repos, "job-1", status, now=NOW)
    answer, body = cancel("job-1")
    assert answer == 409, body
    assert body["error"]["code"] == "JobAlreadyFinished"
    assert f"status {status.value}" in body["error"]["message"]
