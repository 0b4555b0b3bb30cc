"""A Mobility push holds no machine state, yet its start is recorded on the machine too: an interrupted
push is ended by the reconciler instead of refusing every later push as "still running", and a keyed
retry gets the same job and installation request."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from azure.storage.blob import ContainerClient

from shared.domain.errors import Conflict
from shared.domain.job import Job, JobStatus
from shared.domain.pending_start import PendingStart, StartRunner
from shared.jobs import lifecycle as jobs
from shared.jobs import starts
from shared.mobility import push
from shared.platform.repository import Repositories
from tests.support.memory_store import InMemoryDocumentStore
from tests.unit.test_migration_service import NOW, _machine

INSTALLER = "Microsoft-ASR_UA_9.56.0.0_UBUNTU-20.04-64_GA_20230525_release.tar.gz"
GRACE = timedelta(minutes=5)


class Catalog:
    def list_blobs(self, include: Any = None) -> list[Any]:
        metadata = {"size": "10", "sha256": "ab" * 32, "uploadedat": NOW.isoformat()}
        return [SimpleNamespace(name=INSTALLER, metadata=metadata, size=10, last_modified=NOW)]


class NothingRuns:
    async def exists(self, job: Job) -> bool:
        return False

    async def alive(self, machine_id: str, runner: StartRunner) -> bool:
        return False

    async def redeliver(self, machine_id: str, pending: PendingStart) -> None:
        raise AssertionError(f"nothing runs: {pending.job.id} cannot be delivered")


BODY = push.PushInstallBody(credential_name="root-cred", server_address="10.0.0.5")


def _push(repos: Repositories, job_id: str, key: str | None) -> push.PushStarted:
    return push.start_push_install(
        repos,
        cast(ContainerClient, Catalog()),
        "web01",
        BODY,
        job_id=job_id,
        control_plane_url="https://cp/api",
        now=NOW,
        idempotency_key=key,
    )


def test_an_interrupted_push_is_retried_by_key_or_ended_by_the_reconciler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repos = Repositories(InMemoryDocumentStore())
    _machine(repos)
    with monkeypatch.context() as patch:

        def crash(job: Job) -> None:
            raise RuntimeError("host killed")

        patch.setattr(repos.jobs, "put", crash)
        with pytest.raises(RuntimeError):
            _push(repos, "job-1", "k")

    retried = _push(repos, "job-2", "k")
    assert retried.job.id == "job-1" and jobs.require(repos, "job-1").status is JobStatus.IN_PROGRESS
    assert retried.request.installer_name == INSTALLER and retried.request.server_address == "10.0.0.5"
    with pytest.raises(Conflict, match="job-1 of machine web01 is still running"):
        _push(repos, "job-3", None)

    report = asyncio.run(starts.reconcile(repos, NothingRuns(), now=NOW + GRACE, grace=GRACE))
    assert report.rolled_back == ["job-1"]
    assert jobs.require(repos, "job-1").status is JobStatus.FAILED
    # Nothing holds the machine any more: the next push starts.
    assert _push(repos, "job-4", None).job.id == "job-4"
