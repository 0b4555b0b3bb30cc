"""The crash-safe start of the actions a machine's long-lived orchestration runs (enable, stop and repair
replication; planned failover, its cancel and the reprotect to on-premises), and the same-request retry
recognised by its fingerprint within a window (shared/jobs/starts.py).

The decision the reconciler takes for a start nobody settled is a pure function (`starts.decide`), tested
as a table; the services and the reconciler run on the in-memory store with a crash injected between the
machine write and the job document."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import azure.functions as func
import pytest

from functions.starts import request_fingerprint
from shared import health
from shared.domain.errors import Conflict
from shared.domain.health import Health
from shared.domain.job import Job, JobKind, JobStatus, new_job
from shared.domain.lifecycle import ForbiddenTransition, MachineState
from shared.domain.machine import Machine
from shared.domain.pending_start import PendingStart, StartOutcome, StartRunner
from shared.domain.principal import Principal, PrincipalKind, acting_as
from shared.domain.target import TargetSettings
from shared.jobs import lifecycle as jobs
from shared.jobs import starts
from shared.migration import service as m
from shared.platform.documents import Query
from shared.platform.repository import Repositories
from shared.replication import machines
from tests.support.memory_store import InMemoryDocumentStore
from tests.unit.test_migration_service import NOW, _machine

GRACE = timedelta(minutes=5)
LATER = NOW + GRACE + timedelta(seconds=1)
WINDOW = timedelta(minutes=10)


class Crash(Exception):
    """The host died here."""


class Runners:
    """The Durable side as the reconciler sees it: which long-lived orchestrations are alive, and what
    was delivered to them again. A COMMANDS start is completed by the repair's own code, as in the app."""

    def __init__(self, repos: Repositories, *, alive: bool) -> None:
        self.repos = repos
        self.is_alive = alive
        self.delivered: list[tuple[str, str, StartRunner]] = []

    async def exists(self, job: Job) -> bool:
        return False

    async def alive(self, machine_id: str, runner: StartRunner) -> bool:
        return runner is StartRunner.COMMANDS or self.is_alive

    async def redeliver(self, machine_id: str, pending: PendingStart) -> None:
        self.delivered.append((machine_id, pending.job.id, pending.runner))
        if pending.runner is StartRunner.COMMANDS:
            health.complete_repair_start(self.repos, machine_id, pending.job.id, now=LATER)


@pytest.fixture
def repos() -> Repositories:
    return Repositories(InMemoryDocumentStore())


def _reconcile(repos: Repositories, runners: Runners, *, now: datetime = LATER) -> starts.ReconcileReport:
    return asyncio.run(starts.reconcile(repos, runners, now=now, grace=GRACE))


def _crash_before_the_job_document(repos: Repositories, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(job: Job) -> None:
        raise Crash(job.id)

    monkeypatch.setattr(repos.jobs, "put", crash)


def _pending(runner: StartRunner, outcome: StartOutcome = StartOutcome.OPEN) -> PendingStart:
    job = new_job("job-1", JobKind.STOP_REPLICATION, "web01", ("Stop replication",), NOW)
    return PendingStart(job=job, runner=runner, requested_at=NOW, outcome=outcome)


# --- the decision ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runner", "outcome", "job_finished", "own", "alive", "decision"),
    [
        # A job that ended ran, whoever ran it.
        (StartRunner.MACHINE, StartOutcome.OPEN, True, False, False, starts.Decision.SETTLE),
        (StartRunner.OWN, StartOutcome.OPEN, True, False, False, starts.Decision.SETTLE),
        # Its own orchestration: it exists or nothing will ever run the job.
        (StartRunner.OWN, StartOutcome.OPEN, False, True, False, starts.Decision.SETTLE),
        (StartRunner.OWN, StartOutcome.OPEN, False, False, True, starts.Decision.ROLL_BACK),
        # A long-lived orchestration alive is woken again (it reads its job from the machine) ...
        (StartRunner.MACHINE, StartOutcome.OPEN, False, False, True, starts.Decision.REDELIVER),
        (StartRunner.REVERSE, StartOutcome.OPEN, False, False, True, starts.Decision.REDELIVER),
        (StartRunner.COMMANDS, StartOutcome.OPEN, False, False, True, starts.Decision.REDELIVER),
        # ... and one that is gone will never acknowledge it: the machine gets its state back.
        (StartRunner.MACHINE, StartOutcome.OPEN, False, True, False, starts.Decision.ROLL_BACK),
        (StartRunner.REVERSE, StartOutcome.OPEN, False, False, False, starts.Decision.ROLL_BACK),
        # A roll-back interrupted half-way is finished, whatever else is true.
        (StartRunner.MACHINE, StartOutcome.ROLLED_BACK, True, True, True, starts.Decision.FINISH_ROLL_BACK),
    ],
)
def test_what_the_reconciler_decides_for_a_start_nobody_settled(
    runner: StartRunner,
    outcome: StartOutcome,
    job_finished: bool,
    own: bool,
    alive: bool,
    decision: starts.Decision,
) -> None:
    pending = _pending(runner, outcome)
    assert starts.decide(pending, job_finished=job_finished, own_orchestration=own, runner_alive=alive) is (
        decision
    )


# --- stop and enable replication: the machine's replication orchestration ---------------------------------


def test_a_stop_whose_request_died_is_delivered_again_while_the_orchestration_lives_and_settled_by_its_ack(
    repos: Repositories, monkeypatch: pytest.MonkeyPatch
) -> None:
    _machine(repos)
    with monkeypatch.context() as patch:
        _crash_before_the_job_document(repos, patch)
        with pytest.raises(Crash):
            machines.stop_replication(repos, machines.StopReplication("web01", "job-1"), now=NOW)
    machine = repos.machines.require("web01").item
    assert machine.state is MachineState.REPLICATION_STOPPED and machine.active_job_id == "job-1"
    assert machine.pending_start is not None and machine.pending_start.runner is StartRunner.MACHINE

    runners = Runners(repos, alive=True)
    assert _reconcile(repos, runners, now=NOW + timedelta(seconds=30)).examined == 0  # within the grace
    report = _reconcile(repos, runners)
    assert report.redelivered == ["job-1"] and report.rolled_back == []
    assert runners.delivered == [("web01", "job-1", StartRunner.MACHINE)]
    # The orchestration reads the job from its document: the reconciler wrote it before waking it.
    assert jobs.require(repos, "job-1").kind is JobKind.STOP_REPLICATION
    pending = repos.machines.require("web01").item.pending_start
    assert pending is not None and pending.open and pending.redelivered == 1 and pending.resumed_at == LATER
    # The grace runs again from the re-delivery: the next minute's run leaves it alone.
    assert _reconcile(repos, runners, now=LATER + timedelta(minutes=1)).examined == 0

    # The orchestration's first activity of the job acknowledges it: settled, never rolled back.
    assert starts.acknowledge(repos, "web01", "job-1")
    pending = repos.machines.require("web01").item.pending_start
    assert pending is not None and not pending.open and pending.outcome is StartOutcome.RUNNING
    assert _reconcile(repos, runners, now=LATER + GRACE * 3).examined == 0
    assert repos.machines.require("web01").item.state is MachineState.REPLICATION_STOPPED


def test_a_stop_whose_orchestration_is_gone_is_rolled_back_and_a_late_ack_refuses_the_job(
    repos: Repositories,
) -> None:
    _machine(repos)
    machines.stop_replication(repos, machines.StopReplication("web01", "job-1"), now=NOW)
    report = _reconcile(repos, Runners(repos, alive=False))
    assert report.rolled_back == ["job-1"]
    machine = repos.machines.require("web01").item
    assert machine.state is MachineState.REPLICATING and machine.active_job_id is None
    job = jobs.require(repos, "job-1")
    assert job.status is JobStatus.FAILED and job.error is not None and job.error.code == "NotStarted"
    events = repos.events.query(Query(), partition_key="web01")
    assert [e.type for e in events] == ["Job started", "Job finished", "Operator action rolled back"]
    # An orchestration that read the machine before the roll-back is told not to do the job's work.
    assert starts.acknowledge(repos, "web01", "job-1") is False


def test_an_ack_before_the_roll_back_wins_it(repos: Repositories) -> None:
    _machine(repos)
    machines.stop_replication(repos, machines.StopReplication("web01", "job-1"), now=NOW)
    assert starts.acknowledge(repos, "web01", "job-1")
    assert _reconcile(repos, Runners(repos, alive=False)).examined == 0
    assert repos.machines.require("web01").item.state is MachineState.REPLICATION_STOPPED


def test_a_complete_migration_sent_again_gets_its_job_back_once_the_machine_is_completed(
    repos: Repositories,
) -> None:
    # The first request moved the machine to MigrationCompleted: the same DELETE sent again (its answer lost
    # to a crash) is still a complete migration, handed its job, not a stop refused as another action.
    _machine(repos, state=MachineState.MIGRATED)
    keyed = starts.RetryOf(key="k", fingerprint="f1", window=WINDOW)
    first = machines.stop_replication(
        repos, machines.StopReplication("web01", "job-1"), now=NOW, idempotency_key=keyed
    )
    assert first.job.kind is JobKind.COMPLETE_MIGRATION
    assert repos.machines.require("web01").item.state is MachineState.MIGRATION_COMPLETED
    again = machines.stop_replication(
        repos, machines.StopReplication("web01", "job-2"), now=NOW, idempotency_key=keyed
    )
    assert again.job.id == "job-1" and jobs.get(repos, "job-2") is None
    # Without the key, the same request within the window too, while its job runs.
    unkeyed = starts.RetryOf(fingerprint="f1", window=WINDOW)
    resent = machines.stop_replication(
        repos, machines.StopReplication("web01", "job-3"), now=NOW, idempotency_key=unkeyed
    )
    assert resent.job.id == "job-1" and jobs.get(repos, "job-3") is None
    # A machine whose migration is complete, no request of it running: a DELETE is refused.
    done = Repositories(InMemoryDocumentStore())
    _machine(done, state=MachineState.MIGRATION_COMPLETED)
    with pytest.raises(ForbiddenTransition):
        machines.stop_replication(done, machines.StopReplication("web01", "job-4"), now=NOW)


def test_enable_replication_is_recorded_with_its_job_in_one_machine_write(repos: Repositories) -> None:
    _machine(repos, state=MachineState.DISCOVERED)
    target = repos.machines.require("web01").item.target
    assert target is not None
    repos.counter.reset()
    started = machines.enable_replication(
        repos, machines.EnableReplication("web01", target, "job-1"), now=NOW, idempotency_key="k"
    )
    # The job's "Job started" event is its own write, after the job.
    assert repos.counter.snapshot() == {
        "read:machines": 1,
        "replace:machines": 1,
        "upsert:jobs": 1,
        "upsert:events": 1,
    }
    pending = started.machine.pending_start
    assert pending is not None and pending.runner is StartRunner.MACHINE and pending.idempotency_key == "k"
    assert pending.previous["state"] == "Discovered"
    # The same request again (same target) is the same job, however it is sent.
    again = machines.enable_replication(repos, machines.EnableReplication("web01", target, "job-2"), now=NOW)
    assert again.is_retry and again.job.id == "job-1"
    keyed = machines.enable_replication(
        repos,
        machines.EnableReplication("web01", TargetSettings.model_validate(target.model_dump()), "job-3"),
        now=NOW,
        idempotency_key="k",
    )
    assert keyed.is_retry and keyed.job.id == "job-1"
    assert jobs.get(repos, "job-2") is None and jobs.get(repos, "job-3") is None


# --- repair: no orchestration, the start completes itself ------------------------------------------------


def _unhealthy(repos: Repositories) -> None:
    _machine(repos)

    def critical(machine: Machine) -> None:
        machine.health = Health.CRITICAL

    repos.machines.update_with_retry("web01", critical)


def test_a_repair_whose_request_died_is_completed_by_the_reconciler(
    repos: Repositories, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unhealthy(repos)
    with monkeypatch.context() as patch:
        _crash_before_the_job_document(repos, patch)
        with pytest.raises(Crash):
            health.start_repair(repos, "web01", job_id="job-1", now=NOW)
    assert repos.machines.require("web01").item.state is MachineState.RESYNCING
    assert repos.commands.query(Query(), partition_key="app1") == []

    report = _reconcile(repos, Runners(repos, alive=False))
    assert report.redelivered == ["job-1"] and report.rolled_back == []
    commands = repos.commands.query(Query(), partition_key="app1")
    assert [(c.kind.value, c.disk_id) for c in commands] == [("ResyncDisk", "os")]
    job = jobs.require(repos, "job-1")
    assert job.status is JobStatus.IN_PROGRESS and job.steps[0].status is JobStatus.SUCCEEDED
    pending = repos.machines.require("web01").item.pending_start
    assert pending is not None and not pending.open and pending.outcome is StartOutcome.RUNNING


def test_a_repair_retried_after_a_crash_completes_the_first_one(
    repos: Repositories, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unhealthy(repos)
    with monkeypatch.context() as patch:
        _crash_before_the_job_document(repos, patch)
        with pytest.raises(Crash):
            health.start_repair(repos, "web01", job_id="job-1", now=NOW)
    again = health.start_repair(repos, "web01", job_id="job-2", now=NOW)
    assert again.is_retry and again.job.id == "job-1"
    assert [c.kind.value for c in repos.commands.query(Query(), partition_key="app1")] == ["ResyncDisk"]
    assert jobs.get(repos, "job-2") is None
    assert _reconcile(repos, Runners(repos, alive=False)).examined == 0


# --- the same request sent again within the window --------------------------------------------------------


def _test_migrate(
    repos: Repositories, job_id: str, fingerprint: str, *, now: datetime = NOW
) -> m.MigrationJobStarted:
    retry = starts.RetryOf(fingerprint=fingerprint, window=WINDOW)
    return m.start_test_migration(
        repos, "web01", m.TestMigrationRequest(), job_id=job_id, now=now, idempotency_key=retry
    )


def test_the_same_request_within_the_window_gets_the_running_job_back(repos: Repositories) -> None:
    _machine(repos)
    first = _test_migrate(repos, "job-1", "f1")
    again = _test_migrate(repos, "job-2", "f1", now=NOW + timedelta(minutes=9))
    assert again.job.id == first.job.id == "job-1"
    assert jobs.get(repos, "job-2") is None
    # Another body (another fingerprint) while it runs: a 409 naming the job.
    with pytest.raises(ForbiddenTransition) as refused:
        _test_migrate(repos, "job-3", "f2", now=NOW + timedelta(minutes=1))
    assert {"activeJobId": "job-1", "kind": "TestMigration", "status": "InProgress"} in refused.value.details
    # The same body after the window: the 409 too (a resend is recognised for so long only).
    with pytest.raises(ForbiddenTransition):
        _test_migrate(repos, "job-4", "f1", now=NOW + WINDOW + timedelta(seconds=1))


def test_the_same_request_after_its_job_ended_is_refused_as_a_new_one(repos: Repositories) -> None:
    _machine(repos)
    _test_migrate(repos, "job-1", "f1")
    m.end_job(repos, "job-1", succeeded=True, now=NOW)
    assert repos.machines.require("web01").item.state is MachineState.TEST_MIGRATED
    # Within the window, but the test migration stands: another one is refused, as without a resend.
    with pytest.raises(ForbiddenTransition):
        _test_migrate(repos, "job-2", "f1", now=NOW + timedelta(minutes=1))
    assert jobs.get(repos, "job-2") is None
    # Under an Idempotency-Key the ended job is handed back: a key names one action for good.
    keyed = starts.RetryOf(key="k", fingerprint="f1", window=WINDOW)
    other = Repositories(InMemoryDocumentStore())
    _machine(other)
    first = m.start_test_migration(
        other, "web01", m.TestMigrationRequest(), job_id="job-3", now=NOW, idempotency_key=keyed
    )
    m.end_job(other, "job-3", succeeded=True, now=NOW)
    again = m.start_test_migration(
        other, "web01", m.TestMigrationRequest(), job_id="job-4", now=NOW, idempotency_key=keyed
    )
    assert again.job.id == first.job.id == "job-3"


def test_a_resend_after_a_crash_completes_the_start(
    repos: Repositories, monkeypatch: pytest.MonkeyPatch
) -> None:
    _machine(repos)
    with monkeypatch.context() as patch:
        _crash_before_the_job_document(repos, patch)
        with pytest.raises(Crash):
            _test_migrate(repos, "job-1", "f1")
    again = _test_migrate(repos, "job-2", "f1", now=NOW + timedelta(seconds=5))
    assert again.job.id == "job-1" and jobs.require(repos, "job-1").status is JobStatus.IN_PROGRESS
    pending = repos.machines.require("web01").item.pending_start
    # Taken over: the reconciler's grace runs again from the resend.
    assert pending is not None and pending.resumed_at == NOW + timedelta(seconds=5)


def test_the_same_request_once_the_machine_is_free_again_starts_a_new_action(repos: Repositories) -> None:
    _machine(repos)
    _test_migrate(repos, "job-1", "f1")
    m.end_job(repos, "job-1", succeeded=False, now=NOW)
    assert repos.machines.require("web01").item.state is MachineState.REPLICATING
    # Not refused, so not a resend: a failed test migration is tried again with the same body.
    again = _test_migrate(repos, "job-2", "f1", now=NOW + timedelta(minutes=1))
    assert again.job.id == "job-2"


def test_a_rolled_back_start_is_never_handed_back_to_a_resend(repos: Repositories) -> None:
    _machine(repos)
    _test_migrate(repos, "job-1", "f1")
    asyncio.run(starts.reconcile(repos, Runners(repos, alive=False), now=LATER, grace=GRACE))
    assert repos.machines.require("web01").item.state is MachineState.REPLICATING
    again = _test_migrate(repos, "job-2", "f1", now=LATER)
    assert again.job.id == "job-2"


def test_a_resend_of_another_action_is_not_taken_for_it(repos: Repositories) -> None:
    _machine(repos)
    _test_migrate(repos, "job-1", "f1")
    # Same fingerprint, another kind (cannot happen with real routes, whose path differs): refused.
    with pytest.raises(Conflict):
        m.start_migration(
            repos,
            "web01",
            m.MigrationRequest(),
            job_id="job-2",
            now=NOW,
            idempotency_key=starts.RetryOf(fingerprint="f1", window=WINDOW),
        )


def _request(
    body: bytes, *, method: str = "POST", url: str = "/api/machines/web01/test-migrate", **headers: str
) -> func.HttpRequest:
    return func.HttpRequest(method, url, headers={"Content-Type": "application/json", **headers}, body=body)


def test_a_request_fingerprint_is_its_method_path_canonical_body_and_caller() -> None:
    base = request_fingerprint(_request(b'{"preparedManually": true, "recoveryPoint": "latest"}'))
    # Key order and spacing do not make another request.
    assert request_fingerprint(_request(b'{ "recoveryPoint":"latest",\n "preparedManually":true }')) == base
    # Anything else does.
    others = [
        _request(b'{"preparedManually": false, "recoveryPoint": "latest"}'),
        _request(
            b'{"preparedManually": true, "recoveryPoint": "latest"}', url="/api/machines/web02/test-migrate"
        ),
        _request(b'{"preparedManually": true, "recoveryPoint": "latest"}', method="PUT"),
    ]
    same_body = _request(b'{"preparedManually": true, "recoveryPoint": "latest"}')
    with acting_as(Principal(object_id="u1", name="ops-1", kind=PrincipalKind.USER)):
        as_u1 = request_fingerprint(same_body)
        # The function key is shared by many callers: it does not tell them apart, the token's principal does.
        assert request_fingerprint(_request(same_body.get_body(), **{"x-functions-key": "k2"})) == as_u1
    with acting_as(Principal(object_id="u2", name="ops-2", kind=PrincipalKind.USER)):
        as_u2 = request_fingerprint(same_body)
    assert len({base, as_u1, as_u2, *(request_fingerprint(r) for r in others)}) == 3 + len(others)
    # A body that is not JSON (the route refuses it) still has a fingerprint.
    assert request_fingerprint(_request(b"{not json")) != request_fingerprint(_request(b"{not json!"))
