"""The crash-safe start of operator actions (shared/jobs/starts.py): one machine write holds the
transition and the job, a retry under the same Idempotency-Key gets the same job, and the reconciler
settles or rolls back the starts a crash split."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from shared.domain.errors import Conflict, ValidationFailed
from shared.domain.job import Job, JobStatus
from shared.domain.lifecycle import ForbiddenTransition, MachineState
from shared.domain.machine import Machine
from shared.domain.pending_start import PendingStart, StartOutcome, StartRunner
from shared.jobs import lifecycle as jobs
from shared.jobs import starts
from shared.migration import service as m
from shared.platform.documents import Query
from shared.platform.repository import Repositories
from tests.support.memory_store import InMemoryDocumentStore
from tests.unit.test_migration_service import NOW, _machine

GRACE = timedelta(minutes=5)
LATER = NOW + GRACE + timedelta(seconds=1)


class Crash(Exception):
    """The host died here."""


class Orchestrations:
    """The Durable side as the reconciler sees it: which jobs' orchestrations were started."""

    def __init__(self, started: set[str] | None = None) -> None:
        self.started = started or set()
        self.asked: list[str] = []

    async def exists(self, job: Job) -> bool:
        self.asked.append(job.id)
        return job.id in self.started

    async def alive(self, machine_id: str, runner: StartRunner) -> bool:
        return False  # these tests' actions run in their own orchestrations

    async def redeliver(self, machine_id: str, pending: PendingStart) -> None:
        raise AssertionError(f"nothing to re-deliver for {pending.job.id}")


@pytest.fixture
def repos() -> Repositories:
    return Repositories(InMemoryDocumentStore())


def _crash_before_the_job_document(repos: Repositories, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(job: Job) -> None:
        raise Crash(job.id)

    monkeypatch.setattr(repos.jobs, "put", crash)


def _reconcile(
    repos: Repositories, orchestrations: Orchestrations, *, now: datetime = LATER
) -> starts.ReconcileReport:
    return asyncio.run(starts.reconcile(repos, orchestrations, now=now, grace=GRACE))


def test_the_transition_and_the_job_are_recorded_in_one_machine_write(repos: Repositories) -> None:
    _machine(repos)
    repos.counter.reset()
    started = m.start_test_migration(
        repos, "web01", m.TestMigrationRequest(), job_id="job-1", now=NOW, idempotency_key="k-1"
    )
    # One read and one replace of the machine, one upsert of the job: nothing between them to split. Then
    # the job's "Job started" event, after the job (an event of a job that was never recorded is worse
    # than a job without its first event).
    assert repos.counter.snapshot() == {
        "read:machines": 1,
        "replace:machines": 1,
        "upsert:jobs": 1,
        "upsert:events": 1,
    }
    machine = repos.machines.require("web01").item
    pending = machine.pending_start
    assert pending is not None and pending.open and pending.outcome is StartOutcome.OPEN
    assert pending.job == started.job == jobs.require(repos, "job-1")
    assert pending.idempotency_key == "k-1"
    # Only what the start changed is kept, as it was: what a roll-back restores.
    assert pending.previous == {"state": "Replicating", "active_job_id": None}


def test_a_retry_with_the_same_key_after_a_crash_gets_the_same_job_and_completes_it(
    repos: Repositories, monkeypatch: pytest.MonkeyPatch
) -> None:
    _machine(repos)
    with monkeypatch.context() as patch:
        _crash_before_the_job_document(repos, patch)
        with pytest.raises(Crash):
            m.start_test_migration(
                repos, "web01", m.TestMigrationRequest(), job_id="job-1", now=NOW, idempotency_key="k"
            )
    assert repos.machines.require("web01").item.state is MachineState.TEST_MIGRATING
    assert jobs.get(repos, "job-1") is None

    retried = m.start_test_migration(
        repos, "web01", m.TestMigrationRequest(), job_id="job-2", now=NOW, idempotency_key="k"
    )
    assert retried.job.id == "job-1"
    assert jobs.require(repos, "job-1").status is JobStatus.IN_PROGRESS
    assert jobs.get(repos, "job-2") is None
    assert repos.machines.require("web01").item.active_job_id == "job-1"


def test_without_the_key_the_409_names_the_job_being_started(
    repos: Repositories, monkeypatch: pytest.MonkeyPatch
) -> None:
    _machine(repos)
    with monkeypatch.context() as patch:
        _crash_before_the_job_document(repos, patch)
        with pytest.raises(Crash):
            m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-1", now=NOW)
    with pytest.raises(ForbiddenTransition) as refused:
        m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-2", now=NOW)
    assert "job job-1 is being started" in refused.value.message
    assert {"activeJobId": "job-1", "kind": "TestMigration"} in refused.value.details


def test_a_409_names_the_running_job(repos: Repositories) -> None:
    _machine(repos)
    m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-1", now=NOW)
    with pytest.raises(ForbiddenTransition) as refused:
        m.start_migration(repos, "web01", m.MigrationRequest(), job_id="job-2", now=NOW)
    assert (
        "job job-1, TestMigration, is running on this machine: GET /api/jobs/job-1" in refused.value.message
    )
    assert {"activeJobId": "job-1", "kind": "TestMigration", "status": "InProgress"} in refused.value.details


def test_a_key_used_for_another_action_is_refused(repos: Repositories) -> None:
    _machine(repos)
    m.start_test_migration(
        repos, "web01", m.TestMigrationRequest(), job_id="job-1", now=NOW, idempotency_key="k"
    )
    with pytest.raises(Conflict, match="already used for a TestMigration request"):
        m.start_migration(repos, "web01", m.MigrationRequest(), job_id="job-2", now=NOW, idempotency_key="k")
    assert jobs.get(repos, "job-2") is None


def test_a_retried_cleanup_gets_the_test_migration_it_undoes(repos: Repositories) -> None:
    _machine(repos)
    m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-1", now=NOW)
    m.end_job(repos, "job-1", succeeded=True, now=NOW)
    first = m.start_test_migration_cleanup(repos, "web01", job_id="job-2", now=NOW, idempotency_key="c")
    again = m.start_test_migration_cleanup(repos, "web01", job_id="job-3", now=NOW, idempotency_key="c")
    assert first.test_job_id == again.test_job_id == "job-1"
    assert again.job.id == "job-2"


@pytest.mark.parametrize("key", ["", " ", "a b", "x" * 201, "caf\u00e9", "tab\there"])
def test_a_malformed_key_is_a_400(key: str) -> None:
    with pytest.raises(ValidationFailed, match="Idempotency-Key"):
        starts.check_idempotency_key(key)


def test_a_well_formed_key_is_taken() -> None:
    assert starts.check_idempotency_key("2b9e5c1e-7d7c-4bd2-9a8f-5c7f0c6a1d2e") is not None
    assert starts.check_idempotency_key(None) is None


def test_the_reconciler_rolls_back_a_start_nothing_ran(
    repos: Repositories, monkeypatch: pytest.MonkeyPatch
) -> None:
    _machine(repos)
    with monkeypatch.context() as patch:
        _crash_before_the_job_document(repos, patch)
        with pytest.raises(Crash):
            m.start_test_migration(
                repos, "web01", m.TestMigrationRequest(), job_id="job-1", now=NOW, idempotency_key="k"
            )

    # Within the grace period the start may still be on its way: left alone.
    assert _reconcile(repos, Orchestrations(), now=NOW + timedelta(seconds=30)).examined == 0
    assert repos.machines.require("web01").item.state is MachineState.TEST_MIGRATING

    report = _reconcile(repos, Orchestrations())
    assert report.rolled_back == ["job-1"]
    machine = repos.machines.require("web01").item
    assert machine.state is MachineState.REPLICATING and machine.active_job_id is None
    assert machine.pending_start is not None and not machine.pending_start.open
    assert machine.pending_start.outcome is StartOutcome.ROLLED_BACK
    job = jobs.require(repos, "job-1")
    assert job.status is JobStatus.FAILED and job.error is not None and job.error.code == "NotStarted"
    # Besides the job's own events (started, finished Failed): the rollback, said to the operator.
    [event] = [
        e for e in repos.events.query(Query(), partition_key="web01") if e.type.startswith("Operator action")
    ]
    assert event.type == "Operator action rolled back" and "back in Replicating" in event.message

    # A second run finds nothing to do; the action can be run again, even under the old key.
    assert _reconcile(repos, Orchestrations()).examined == 0
    again = m.start_test_migration(
        repos, "web01", m.TestMigrationRequest(), job_id="job-2", now=LATER, idempotency_key="k"
    )
    assert again.job.id == "job-2" and again.machine.state is MachineState.TEST_MIGRATING


def test_a_start_whose_orchestration_exists_is_settled_and_left_running(repos: Repositories) -> None:
    _machine(repos)
    m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-1", now=NOW)
    report = _reconcile(repos, Orchestrations({"job-1"}))
    assert report.settled == ["job-1"] and report.rolled_back == []
    machine = repos.machines.require("web01").item
    assert machine.state is MachineState.TEST_MIGRATING and machine.active_job_id == "job-1"
    assert machine.pending_start is not None and machine.pending_start.outcome is StartOutcome.RUNNING
    assert jobs.require(repos, "job-1").status is JobStatus.IN_PROGRESS
    # Settled starts are not looked at again.
    orchestrations = Orchestrations({"job-1"})
    assert _reconcile(repos, orchestrations).examined == 0 and orchestrations.asked == []


def test_a_start_whose_job_ended_is_settled_without_asking_durable(repos: Repositories) -> None:
    _machine(repos)
    m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-1", now=NOW)
    m.end_job(repos, "job-1", succeeded=True, now=NOW)
    orchestrations = Orchestrations()
    assert _reconcile(repos, orchestrations).settled == ["job-1"]
    assert orchestrations.asked == []
    assert repos.machines.require("web01").item.state is MachineState.TEST_MIGRATED


def test_a_roll_back_keeps_what_other_writers_changed_meanwhile(repos: Repositories) -> None:
    _machine(repos)
    m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-1", now=NOW)

    def cycle_applied(machine: Machine) -> None:
        machine.record_cycle_applied(7, NOW + timedelta(minutes=1))

    repos.machines.update_with_retry("web01", cycle_applied)
    assert _reconcile(repos, Orchestrations()).rolled_back == ["job-1"]
    machine = repos.machines.require("web01").item
    assert machine.state is MachineState.REPLICATING
    assert machine.replication.last_applied_sequence == 7


def test_a_reconciler_stopped_after_the_roll_back_ends_the_job_next_time(
    repos: Repositories, monkeypatch: pytest.MonkeyPatch
) -> None:
    _machine(repos)
    m.start_migration(repos, "web01", m.MigrationRequest(), job_id="job-1", now=NOW)
    with monkeypatch.context() as patch:
        patch.setattr(jobs, "finish", lambda *a, **k: (_ for _ in ()).throw(Crash("finish")))
        report = _reconcile(repos, Orchestrations())
    assert report.failed == ["job-1"]
    assert repos.machines.require("web01").item.state is MachineState.REPLICATING
    assert jobs.require(repos, "job-1").status is JobStatus.IN_PROGRESS

    assert _reconcile(repos, Orchestrations()).rolled_back == ["job-1"]
    assert jobs.require(repos, "job-1").status is JobStatus.FAILED
    assert not repos.machines.require("web01").item.pending_start.open  # type: ignore[union-attr]


def test_a_start_the_machine_has_moved_past_is_settled_not_rolled_back(repos: Repositories) -> None:
    _machine(repos)
    m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-1", now=NOW)

    def moved_on(machine: Machine) -> None:
        machine.active_job_id = "job-other"

    repos.machines.update_with_retry("web01", moved_on)
    assert _reconcile(repos, Orchestrations()).settled == ["job-1"]
    machine = repos.machines.require("web01").item
    assert machine.state is MachineState.TEST_MIGRATING and machine.active_job_id == "job-other"


def test_a_retry_that_takes_the_start_over_is_not_rolled_back_under_it(
    repos: Repositories, monkeypatch: pytest.MonkeyPatch
) -> None:
    _machine(repos)
    with monkeypatch.context() as patch:
        _crash_before_the_job_document(repos, patch)
        with pytest.raises(Crash):
            m.start_test_migration(
                repos, "web01", m.TestMigrationRequest(), job_id="job-1", now=NOW, idempotency_key="k"
            )
    # Past the grace period the retry arrives: it claims the start (the grace runs again from now) ...
    retried = m.start_test_migration(
        repos, "web01", m.TestMigrationRequest(), job_id="job-2", now=LATER, idempotency_key="k"
    )
    assert retried.job.id == "job-1"
    # ... so a reconciler that looked before the claim and decides after it leaves the start alone,
    assert starts._roll_back(repos, "web01", "job-1", LATER, GRACE).name == "DEFERRED"
    assert _reconcile(repos, Orchestrations(), now=LATER + timedelta(seconds=1)).examined == 0
    assert repos.machines.require("web01").item.state is MachineState.TEST_MIGRATING
    # and rolls it back only if, a whole grace period after the claim, still nothing runs it.
    assert _reconcile(repos, Orchestrations(), now=LATER + GRACE).rolled_back == ["job-1"]
