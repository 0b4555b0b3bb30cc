"""The failback commit and the reprotect to Azure start through the crash-safe path too: a start whose
orchestration never ran is rolled back to FailedBack / FailbackCommitted by the reconciler."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from shared.bootstrap import Services
from shared.domain.job import Job, JobStatus
from shared.domain.lifecycle import MachineState
from shared.domain.pending_start import PendingStart, StartRunner
from shared.failback import commit, forward
from shared.jobs import lifecycle as jobs
from shared.jobs import starts
from tests.unit.test_api_http import FakeDurableExtension, durable, services
from tests.unit.test_commit_failback import failed_back
from tests.unit.test_reprotect import NOW
from tests.unit.test_reprotect_to_azure import failback_committed

__all__ = ["durable", "services"]  # the fixtures, used by name

GRACE = timedelta(minutes=5)


class NothingRuns:
    async def exists(self, job: Job) -> bool:
        return False

    async def alive(self, machine_id: str, runner: StartRunner) -> bool:
        return False

    async def redeliver(self, machine_id: str, pending: PendingStart) -> None:
        raise AssertionError(f"nothing runs: {pending.job.id} cannot be delivered")


def _reconcile(services: Services) -> starts.ReconcileReport:
    later = NOW + timedelta(days=1)
    return asyncio.run(starts.reconcile(services.repos, NothingRuns(), now=later, grace=GRACE))


def test_a_failback_commit_nothing_ran_is_rolled_back_to_failed_back(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = failed_back(services, durable)
    started = commit.start_commit_failback(
        services.repos, machine_id, job_id="job-cf1", now=NOW, idempotency_key="c"
    )
    again = commit.start_commit_failback(
        services.repos, machine_id, job_id="job-cf2", now=NOW, idempotency_key="c"
    )
    assert again.job.id == started.job.id == "job-cf1"
    assert _reconcile(services).rolled_back == ["job-cf1"]
    assert services.repos.machines.require(machine_id).item.state is MachineState.FAILED_BACK
    assert jobs.require(services.repos, "job-cf1").status is JobStatus.FAILED


def test_a_reprotect_to_azure_nothing_ran_is_rolled_back_to_failback_committed(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id, appliance_id = failback_committed(services, durable)
    request = forward.ForwardReprotectRequest(appliance_id=appliance_id)
    forward.start_reprotect_to_azure(services.repos, machine_id, request, job_id="job-rta", now=NOW)
    assert _reconcile(services).rolled_back == ["job-rta"]
    machine = services.repos.machines.require(machine_id).item
    assert machine.state is MachineState.FAILBACK_COMMITTED
    assert jobs.require(services.repos, "job-rta").error is not None
