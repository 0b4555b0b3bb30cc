"""POST /api/jobs/{jobId}/cancel through the registered function, over the in-memory store and a fake
Durable extension: 404 for an unknown job, 409 JobAlreadyFinished naming the status, 409
JobNotCancellable with the kind's reason and what to do instead (the job left as it was), and for a
cutover still waiting for its final cycle a 202 with the cancel event raised on its orchestration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrators.names import CANCEL_REQUESTED, CANCELLABLE_STATUS, NOT_CANCELLABLE_STATUS
from shared.bootstrap import Services
from shared.domain.job import JobKind, JobStatus, new_job
from shared.jobs import lifecycle
from shared.jobs.cancellation import PAST_THE_POINT, REASONS
from tests.unit.test_api_http import FakeDurableExtension, call, durable, services

__all__ = ["durable", "services"]  # the fixtures, used by name

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def cancel(durable: FakeDurableExtension, job_id: str) -> tuple[int, Any, Any]:
    return call(
        "cancel_job",
        "POST",
        f"/api/jobs/{job_id}/cancel",
        route={"jobId": job_id},
        client=durable.client_json,
    )


def running(services: Services, kind: JobKind, job_id: str = "job-1") -> None:
    lifecycle.create(services.repos, new_job(job_id, kind, "m-1", ["Step one", "Step two"], NOW))


def raised(durable: FakeDurableExtension) -> list[str]:
    return [path for path, _ in durable.posts() if "/raiseEvent/" in path]


def test_unknown_job_is_404(services: Services, durable: FakeDurableExtension) -> None:
    status, body, _ = cancel(durable, "job-nope")
    assert status == 404, body


@pytest.mark.parametrize("kind", [JobKind.FAILOVER, JobKind.CHANGE_RECOVERY_POINT, JobKind.COMMIT])
def test_a_failover_job_cannot_be_cancelled_and_says_why_and_what_to_do(
    services: Services, durable: FakeDurableExtension, kind: JobKind
) -> None:
    running(services, kind)
    status, body, _ = cancel(durable, "job-1")
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
    assert raised(durable) == []


def test_a_failed_failover_rolls_back_by_itself_the_message_says(
    services: Services, durable: FakeDurableExtension
) -> None:
    running(services, JobKind.FAILOVER)
    _, body, _ = cancel(durable, "job-1")
    assert "if it fails it rolls back by itself" in body["error"]["message"]


@pytest.mark.parametrize("kind", [k for k in JobKind if k not in PAST_THE_POINT])
def test_every_other_kind_answers_with_its_own_reason(
    services: Services, durable: FakeDurableExtension, kind: JobKind
) -> None:
    running(services, kind)
    status, body, _ = cancel(durable, "job-1")
    assert status == 409 and body["error"]["code"] == "JobNotCancellable"
    assert "{" not in body["error"]["message"], "every placeholder is filled in"
    if kind in REASONS:
        assert "m-1" in body["error"]["message"] or "job-1" in body["error"]["message"]


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.WARNING, JobStatus.FAILED])
def test_a_finished_job_is_409_naming_its_status(
    services: Services, durable: FakeDurableExtension, status: JobStatus
) -> None:
    running(services, JobKind.MIGRATION)
    lifecycle.finish(services.repos, "job-1", status, now=NOW)
    answer, body, _ = cancel(durable, "job-1")
    assert answer == 409, body
    assert body["error"]["code"] == "JobAlreadyFinished"
    assert f"status {status.value}" in body["error"]["message"]


def test_a_cutover_waiting_for_its_final_cycle_is_asked_to_stop(
    services: Services, durable: FakeDurableExtension
) -> None:
    running(services, JobKind.MIGRATION)
    durable.running.add("job-1")
    durable.custom_status["job-1"] = CANCELLABLE_STATUS
    status, body, response = cancel(durable, "job-1")
    assert status == 202, body
    assert body["jobId"] == "job-1" and response.headers["Location"] == "/api/jobs/job-1"
    assert raised(durable) == [f"/durabletask/instances/job-1/raiseEvent/{CANCEL_REQUESTED}"]


def test_a_cutover_whose_orchestration_has_not_run_yet_gets_the_request_too(
    services: Services, durable: FakeDurableExtension
) -> None:
    running(services, JobKind.MIGRATION)
    durable.running.add("job-1")
    durable.runtime_status["job-1"] = "Pending"
    status, body, _ = cancel(durable, "job-1")
    assert status == 202, body
    assert raised(durable) == [f"/durabletask/instances/job-1/raiseEvent/{CANCEL_REQUESTED}"]


@pytest.mark.parametrize("custom_status", [NOT_CANCELLABLE_STATUS, {"vmId": "/subscriptions/x"}, None])
def test_a_cutover_past_its_wait_is_409_saying_so(
    services: Services, durable: FakeDurableExtension, custom_status: Any
) -> None:
    running(services, JobKind.MIGRATION)
    durable.running.add("job-1")
    durable.custom_status["job-1"] = custom_status
    status, body, _ = cancel(durable, "job-1")
    assert status == 409, body
    assert body["error"]["code"] == "JobNotCancellable"
    assert "the cutover is past the point where it can be cancelled" in body["error"]["message"]
    assert raised(durable) == []
