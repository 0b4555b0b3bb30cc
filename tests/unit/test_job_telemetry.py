"""A job's end is counted once, with its kind, status and error code: what the "failed job" alert and
the workbook's jobs tiles read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.domain.job import JobError, JobKind, JobStatus, new_job
from shared.jobs import lifecycle as jobs
from shared.platform.repository import Repositories
from tests.support.memory_store import InMemoryDocumentStore

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


class Recorder:
    def __init__(self) -> None:
        self.finished: list[dict[str, Any]] = []

    def record_job_finished(self, **attributes: Any) -> None:
        self.finished.append(attributes)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(jobs, "get_telemetry", lambda: recorder)
    return recorder


def test_a_failed_job_is_counted_once_with_its_error_code(recorder: Recorder) -> None:
    repos = Repositories(InMemoryDocumentStore())
    jobs.create(repos, new_job("job-1", JobKind.PLANNED_FAILOVER, "vm-1", ["Check prerequisites"], NOW))
    error = JobError(code="NoReverseRecoveryPoint", message="no reverse recovery point yet")
    jobs.finish(repos, "job-1", JobStatus.FAILED, now=NOW, error=error)
    # Finishing a finished job changes nothing and counts nothing.
    jobs.finish(repos, "job-1", JobStatus.SUCCEEDED, now=NOW)
    assert recorder.finished == [
        {
            "machine_id": "vm-1",
            "job_id": "job-1",
            "kind": "PlannedFailover",
            "status": "Failed",
            "error_code": "NoReverseRecoveryPoint",
        }
    ]


def test_a_succeeded_job_has_no_error_code(recorder: Recorder) -> None:
    repos = Repositories(InMemoryDocumentStore())
    jobs.create(repos, new_job("job-2", JobKind.REPROTECT, "vm-2", ["Check prerequisites"], NOW))
    jobs.finish(repos, "job-2", JobStatus.SUCCEEDED, now=NOW)
    assert [(f["kind"], f["status"], f["error_code"]) for f in recorder.finished] == [
        ("Reprotect", "Succeeded", None)
    ]
