"""The one crash-safe start of an operator action, and the reconciler that settles starts a crash split.

An action's start used to write the machine's new state, then its job, then start its orchestration: a
host killed between two of those left a machine in a busy state naming a job that did not exist or that
nothing ran, and every later action answered 409. Now:

1. `begin` records the machine's transition and a `PendingStart` (the job itself, the fields the start
   changed as they were before, the request's Idempotency-Key) in ONE machine write; then it writes the
   job document (an upsert of the same job); the trigger then starts the job's orchestration under an
   instance id derived from the job id (`functions/starts.py`), so starting it twice starts one.
2. A request retried with the same Idempotency-Key finds the PendingStart and gets the same job back
   (nothing is applied again); the trigger finishes what the first request could not (job document,
   orchestration), so a retry after a crash completes the start instead of answering 409.
3. `reconcile` (a timer) looks at starts still open after a grace period: when the job has ended or its
   orchestration exists, the start is settled; otherwise nothing ever ran the job (the request died
   before its orchestration started, and no retry finished it), so the machine gets back the fields the
   start changed, the job ends Failed `NotStarted`, and an event on the machine says so. Each of its writes can be repeated, so a
   reconciler killed half-way is finished by the next run.

The grace period must be longer than a start can take (the request's own timeout), so a slow request is
never rolled back under its feet.

Actions run by a machine's long-lived orchestration (enable, stop and repair replication by the machine's
replication orchestration; the reprotect to on-premises, the planned failover and its cancel by its
reverse orchestration) have no orchestration of their own to look for: their start records its `runner`,
the runner acknowledges the job (`acknowledge`, from the activity that begins the job's work), and the
reconciler decides on a start nobody acknowledged (`decide`): re-deliver it while that orchestration is
alive (it re-reads its work from the machine, so a second wake-up is harmless), roll it back otherwise.

A request sent again without an Idempotency-Key is recognised by its fingerprint (method, route,
canonical JSON body, caller: `RetryOf`) within a window: where the action would be refused with a 409
because the first request's action holds the machine and its job has not ended, it gets that job back
instead (the caller of `same_request` checks the job).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from shared.domain.errors import ConcurrencyConflict, Conflict, ValidationFailed
from shared.domain.event import Event, Severity
from shared.domain.job import Job, JobError, JobKind, JobStatus
from shared.domain.machine import Machine
from shared.domain.pending_start import PendingStart, StartOutcome, StartRunner
from shared.jobs import lifecycle as jobs
from shared.platform import crash_points
from shared.platform.documents import Query
from shared.platform.repository import Repositories

log = logging.getLogger(__name__)

R = TypeVar("R")

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY_LENGTH = 200
# Fields a start never restores: when the machine was written, and this record itself.
_NOT_RESTORED = frozenset({"updated_at", "pending_start"})
NOT_STARTED = "NotStarted"


@dataclass(frozen=True)
class Started(Generic[R]):
    """What `begin` recorded (or, for a retried request, had recorded): the machine as written, its job,
    and what the action's transition returned (for a retry: as stored, in its JSON form)."""

    machine: Machine
    job: Job
    result: R
    replayed: bool = False


def check_idempotency_key(key: str | None) -> str | None:
    """400 for a key that is empty, too long or not printable ASCII; None when the header is absent."""
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH or not all(" " < c <= "~" for c in key):
        raise ValidationFailed.single(
            IDEMPOTENCY_KEY_HEADER,
            f"must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters without spaces (a UUID is "
            "a good choice); send the same key when you retry the same request",
        )
    return key


@dataclass(frozen=True)
class RetryOf:
    """How a request sent again is recognised: its Idempotency-Key (for as long as the machine keeps the
    start), or its fingerprint within `window`, only while the action it repeats runs (where the request
    would otherwise be refused with a 409)."""

    key: str | None = None
    fingerprint: str | None = None
    window: timedelta = timedelta(0)


def retry_of(value: RetryOf | str | None) -> RetryOf:
    return value if isinstance(value, RetryOf) else RetryOf(key=value)


def same_request(
    machine: Machine, retry: RetryOf | str | None, kind: JobKind, now: datetime
) -> PendingStart | None:
    """The machine's recorded start, when this request is a resend of the one that recorded it: the same
    Idempotency-Key, or (without one) the same fingerprint within the window (the caller then checks that
    its job has not ended). A rolled-back start never matches: that attempt never ran, so the resend
    starts the action afresh."""
    retry = retry_of(retry)
    pending = machine.pending_start
    if pending is None or pending.outcome is StartOutcome.ROLLED_BACK or pending.job.kind is not kind:
        return None
    if retry.key is not None:
        return pending if pending.idempotency_key == retry.key else None
    if retry.fingerprint is None or pending.request_fingerprint != retry.fingerprint:
        return None
    return pending if now - pending.requested_at <= retry.window else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _replay_of(machine: Machine, key: str | None, job: Job) -> PendingStart | None:
    """The start recorded under this Idempotency-Key (409 when the key was used for another action)."""
    pending = machine.pending_start
    if key is None or pending is None or pending.idempotency_key != key:
        return None
    if pending.outcome is StartOutcome.ROLLED_BACK:
        return None  # that attempt never ran: the retry starts the action afresh
    if pending.job.kind is not job.kind:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for a {pending.job.kind.value} request (job "
            f"{pending.job.id}) on machine {machine.id}; use a new key for a different request",
            details=[{"jobId": pending.job.id, "kind": pending.job.kind.value}],
        )
    return pending


class _Replayed(Exception):
    """`refusal`: the 409 a resend recognised by its fingerprint would have had (it stands once the job
    has ended: the window recognises a resend only while its action runs)."""

    def __init__(self, machine: Machine, pending: PendingStart, refusal: Conflict | None = None) -> None:
        super().__init__(pending.job.id)
        self.machine = machine
        self.pending = pending
        self.refusal = refusal


def begin(
    repos: Repositories,
    machine_id: str,
    apply: Callable[[Machine], R],
    job: Job,
    *,
    now: datetime,
    idempotency_key: RetryOf | str | None = None,
    record_unchanged: bool = False,
    runner: StartRunner = StartRunner.OWN,
) -> Started[R]:
    """Apply the action's transition (`apply`, which may refuse with a DomainError) and record the job with
    it in one machine write, then write the job document. A retry under the same Idempotency-Key gets the
    recorded job back and writes nothing but a missing job document. A transition that changes nothing
    (an action that finds itself already running) records no start: its result says what runs. A 409
    names the machine's current job, unless the request is a resend of the one whose start the machine
    holds (its fingerprint, within the retry window): that one gets its job back as with a key.
    `record_unchanged`: an action that holds no machine state (a Mobility push) records its start all the
    same, so that an interrupted one is still found and ended. `runner`: what runs the job (the reconciler
    asks it, or re-delivers to it)."""
    retry = retry_of(idempotency_key)
    before: list[Machine] = []

    def record(machine: Machine) -> R:
        if (pending := _replay_of(machine, retry.key, job)) is not None:
            raise _Replayed(machine, pending)
        before[:] = [machine.model_copy(deep=True)]
        try:
            result = apply(machine)
        except ConcurrencyConflict:
            raise
        except Conflict as refusal:
            # Refused because an action holds the machine: if it is this very request's, sent again, the
            # caller gets that job back rather than a 409 for its own action.
            if (pending := same_request(before[0], retry, job.kind, now)) is not None:
                raise _Replayed(before[0], pending, None if retry.key else refusal) from None
            raise
        previous = {
            name: _jsonable(getattr(before[0], name))
            for name in Machine.model_fields
            if name not in _NOT_RESTORED and getattr(before[0], name) != getattr(machine, name)
        }
        if previous or record_unchanged:
            machine.pending_start = PendingStart(
                job=job,
                idempotency_key=retry.key,
                request_fingerprint=retry.fingerprint,
                runner=runner,
                previous=previous,
                result=_jsonable(result),
                requested_at=now,
            )
        return result

    try:
        stored, result = repos.machines.update_with_retry(machine_id, record)
    except _Replayed as replay:
        machine, pending = replay.machine, replay.pending
        if replay.refusal is not None:
            current = jobs.get(repos, pending.job.id)
            if current is not None and current.status.finished:
                # The action this request repeats has ended: it is a new request, refused as the
                # machine's state says (an Idempotency-Key would get the ended job back).
                _name_current_job(repos, replay.refusal, replay.machine)
                raise replay.refusal from None
        if pending.open:
            # Take the start over (an ETag'd write), so the reconciler cannot roll it back under this retry;
            # if it already has, this request starts the action afresh.
            machine, claimed = _claim(repos, machine_id, pending.job.id, now)
            if not claimed:
                return begin(
                    repos,
                    machine_id,
                    apply,
                    job,
                    now=now,
                    idempotency_key=retry,
                    record_unchanged=record_unchanged,
                    runner=runner,
                )
        existing = jobs.get(repos, pending.job.id) or jobs.create(repos, pending.job)
        return Started(machine, existing, pending.result, replayed=True)
    except ConcurrencyConflict:
        raise
    except Conflict as error:
        if before:
            _name_current_job(repos, error, before[0])
        raise
    if stored.item.pending_start is None or stored.item.pending_start.job.id != job.id:
        return Started(stored.item, job, result)
    crash_points.reached(crash_points.START_RECORDED)
    created = jobs.create(repos, job)
    crash_points.reached(crash_points.JOB_RECORDED)
    return Started(stored.item, created, result)


def _claim(repos: Repositories, machine_id: str, job_id: str, now: datetime) -> tuple[Machine, bool]:
    def claim(machine: Machine) -> bool:
        pending = machine.pending_start
        if pending is None or pending.job.id != job_id or pending.outcome is StartOutcome.ROLLED_BACK:
            return False
        if pending.open:
            pending.resumed_at = now
        return True

    stored, claimed = repos.machines.update_with_retry(machine_id, claim)
    return stored.item, claimed


def _name_current_job(repos: Repositories, error: Conflict, machine: Machine) -> None:
    """Say which job holds the machine, so the operator can poll it instead of guessing."""
    job_id = machine.active_job_id
    if not job_id or any("activeJobId" in d for d in error.details):
        return
    current = jobs.get(repos, job_id)
    if current is not None and not current.status.finished:
        error.message += (
            f" (job {job_id}, {current.kind.value}, is running on this machine: GET /api/jobs/{job_id})"
        )
        error.details.append(
            {"activeJobId": job_id, "kind": current.kind.value, "status": current.status.value}
        )
    elif current is None and machine.pending_start is not None and machine.pending_start.job.id == job_id:
        error.message += (
            f" (job {job_id} is being started; if its request was interrupted, retry it with the same "
            "Idempotency-Key, or wait for the reconciler to finish or roll back that start)"
        )
        error.details.append({"activeJobId": job_id, "kind": machine.pending_start.job.kind.value})


# --- the reconciler ---------------------------------------------------------------------------------------


def acknowledge(repos: Repositories, machine_id: str, job_id: str) -> bool:
    """The job's runner has taken the job (called by the activity that begins its work): its start is
    settled. False when the reconciler rolled that start back: the job ended NotStarted and the machine
    has its state back, so the runner must not do the job's work. One read, and a write only the first
    time."""

    def ack(machine: Machine) -> bool:
        pending = machine.pending_start
        if pending is None or pending.job.id != job_id:
            return True  # an older start, or one recorded before starts were: nothing to settle
        if pending.outcome is StartOutcome.ROLLED_BACK:
            return False
        if pending.open:
            pending.open = False
            pending.outcome = StartOutcome.RUNNING
        return True

    _, taken = repos.machines.update_with_retry(machine_id, ack)
    return taken


class Orchestrations(Protocol):
    """What the reconciler asks of Durable Functions (the adapter lives with the triggers)."""

    async def exists(self, job: Job) -> bool:
        """The job's own orchestration was started (whatever its status now)."""
        ...

    async def alive(self, machine_id: str, runner: StartRunner) -> bool:
        """The long-lived orchestration that runs this runner's jobs is running (or pending) for the
        machine; for COMMANDS (no orchestration), whether the start can be completed at all."""
        ...

    async def redeliver(self, machine_id: str, pending: PendingStart) -> None:
        """Hand the action to its runner again: wake the orchestration (which re-reads its job from the
        machine), or for COMMANDS finish the start's own idempotent work and acknowledge it."""
        ...


class Decision(Enum):
    SETTLE = "settle"  # it ran (or runs): close the start, touch nothing else
    REDELIVER = "re-deliver"  # its runner is alive but never acknowledged it: wake it again
    ROLL_BACK = "roll back"  # nothing ran it and nothing will: give the machine back its fields
    FINISH_ROLL_BACK = "finish the roll-back"  # rolled back by a run that stopped before ending the job


def decide(
    pending: PendingStart, *, job_finished: bool, own_orchestration: bool, runner_alive: bool
) -> Decision:
    """What the reconciler does with a start still open past the grace period. `own_orchestration`: the
    job's own instance exists (runner OWN); `runner_alive`: the machine's long-lived orchestration that
    runs it is alive (the other runners)."""
    if pending.outcome is StartOutcome.ROLLED_BACK:
        return Decision.FINISH_ROLL_BACK
    if job_finished:
        return Decision.SETTLE
    if pending.runner is StartRunner.OWN:
        return Decision.SETTLE if own_orchestration else Decision.ROLL_BACK
    return Decision.REDELIVER if runner_alive else Decision.ROLL_BACK


@dataclass
class ReconcileReport:
    examined: int = 0
    settled: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def open_starts(repos: Repositories) -> list[Machine]:
    return repos.machines.query(Query(equals={"pendingStart.open": True}), partition_key=None)


async def reconcile(
    repos: Repositories, orchestrations: Orchestrations, *, now: datetime, grace: timedelta
) -> ReconcileReport:
    """Settle every start open for longer than `grace`: see the module docstring. One machine's failure
    is logged and left for the next run; the others go on."""
    report = ReconcileReport()
    for machine in await asyncio.to_thread(open_starts, repos):
        pending = machine.pending_start
        if pending is None or now - pending.last_touched < grace:
            continue
        report.examined += 1
        try:
            await _reconcile_one(
                repos, orchestrations, machine.id, pending, now=now, grace=grace, report=report
            )
        except Exception:
            log.exception(
                "reconciler: the start of job %s on machine %s is left for the next run",
                pending.job.id,
                machine.id,
            )
            report.failed.append(pending.job.id)
    return report


async def _reconcile_one(
    repos: Repositories,
    orchestrations: Orchestrations,
    machine_id: str,
    pending: PendingStart,
    *,
    now: datetime,
    grace: timedelta,
    report: ReconcileReport,
) -> None:
    job_id = pending.job.id
    job = None
    own = alive = False
    if pending.outcome is not StartOutcome.ROLLED_BACK:
        job = await asyncio.to_thread(jobs.get, repos, job_id)
        if job is None or not job.status.finished:
            if pending.runner is StartRunner.OWN:
                own = await orchestrations.exists(pending.job)
            else:
                alive = await orchestrations.alive(machine_id, pending.runner)
    decision = decide(
        pending,
        job_finished=job is not None and job.status.finished,
        own_orchestration=own,
        runner_alive=alive,
    )
    if decision is Decision.FINISH_ROLL_BACK:
        await asyncio.to_thread(_end_not_started, repos, machine_id, pending, now)
        report.rolled_back.append(job_id)
        return
    if decision is Decision.SETTLE:
        if job is None:
            await asyncio.to_thread(jobs.create, repos, pending.job)
        await asyncio.to_thread(_settle, repos, machine_id, job_id, StartOutcome.RUNNING)
        report.settled.append(job_id)
        return
    if decision is Decision.REDELIVER:
        # The runner reads the job from its document: write it first if the crash came before it.
        if job is None:
            await asyncio.to_thread(jobs.create, repos, pending.job)
        if await asyncio.to_thread(_touch, repos, machine_id, job_id, now):
            log.warning(
                "reconciler: job %s (%s) on machine %s was not acknowledged by its %s orchestration after "
                "%s; delivering it again",
                job_id,
                pending.job.kind.value,
                machine_id,
                pending.runner.value,
                now - pending.last_touched,
            )
            await orchestrations.redeliver(machine_id, pending)
            report.redelivered.append(job_id)
        return
    log.warning(
        "reconciler: job %s (%s) on machine %s: no orchestration %s after %s; rolling its start back",
        job_id,
        pending.job.kind.value,
        machine_id,
        "and no job document" if job is None else "though its job document exists",
        now - pending.requested_at,
    )
    verdict = await asyncio.to_thread(_roll_back, repos, machine_id, job_id, now, grace)
    if verdict is _Verdict.ROLLED_BACK:
        await asyncio.to_thread(_end_not_started, repos, machine_id, pending, now)
        report.rolled_back.append(job_id)
    elif verdict is _Verdict.MOVED_ON:
        report.settled.append(job_id)


def _settle(repos: Repositories, machine_id: str, job_id: str, outcome: StartOutcome) -> None:
    def settle(machine: Machine) -> None:
        pending = machine.pending_start
        if pending is not None and pending.job.id == job_id and pending.open:
            pending.open = False
            pending.outcome = outcome

    repos.machines.update_with_retry(machine_id, settle)


def _touch(repos: Repositories, machine_id: str, job_id: str, now: datetime) -> bool:
    """Count a re-delivery and restart the grace period, so the runner gets that long to acknowledge
    before the next one. False when the start was settled meanwhile (nothing to deliver)."""

    def touch(machine: Machine) -> bool:
        pending = machine.pending_start
        if pending is None or pending.job.id != job_id or not pending.open:
            return False
        pending.redelivered += 1
        pending.resumed_at = now
        return True

    _, touched = repos.machines.update_with_retry(machine_id, touch)
    return touched


class _Verdict(Enum):
    ROLLED_BACK = "rolled back"
    MOVED_ON = "the machine moved on: settled"
    DEFERRED = "a retry took the start over: left for a later run"


def _roll_back(
    repos: Repositories, machine_id: str, job_id: str, now: datetime, grace: timedelta
) -> _Verdict:
    """Give the machine back the fields the start changed, if nothing has moved it on and no retry took
    the start over since the reconciler looked (checked in the ETag'd write itself, so a retry racing the
    reconciler either wins its claim first or finds the start rolled back and starts afresh)."""

    def roll_back(machine: Machine) -> _Verdict:
        pending = machine.pending_start
        if pending is None or pending.job.id != job_id or not pending.open:
            return _Verdict.MOVED_ON
        if now - pending.last_touched < grace:
            return _Verdict.DEFERRED
        if "active_job_id" in pending.previous and machine.active_job_id != job_id:
            pending.open = False
            pending.outcome = StartOutcome.RUNNING
            return _Verdict.MOVED_ON
        data = machine.model_dump(mode="json", by_alias=False)
        data.update(pending.previous)
        restored = Machine.model_validate(data)
        for name in pending.previous:
            setattr(machine, name, getattr(restored, name))
        pending.outcome = StartOutcome.ROLLED_BACK
        machine.updated_at = max(machine.updated_at, now)
        return _Verdict.ROLLED_BACK

    _, verdict = repos.machines.update_with_retry(machine_id, roll_back)
    return verdict


def _end_not_started(repos: Repositories, machine_id: str, pending: PendingStart, now: datetime) -> None:
    """End the never-run job (creating its document if the crash came first), say so on the machine, and
    close the start: in this order, so a run stopped half-way is finished by the next one."""
    job_id = pending.job.id
    if jobs.get(repos, job_id) is None:
        jobs.create(repos, pending.job)
    state = pending.previous.get("state")
    back_to = f" and the machine is back in {state}" if state else ""
    message = (
        f"the {pending.job.kind.value} job {job_id} never started: the control plane stopped while starting it"
        f"{back_to}; nothing was done. Run the action again."
    )
    jobs.finish(repos, job_id, JobStatus.FAILED, now=now, error=JobError(code=NOT_STARTED, message=message))
    _event(repos, machine_id, pending, now, kind="rolled back", message=message)

    def close(machine: Machine) -> None:
        if machine.pending_start is not None and machine.pending_start.job.id == job_id:
            machine.pending_start.open = False

    repos.machines.update_with_retry(machine_id, close)


def _event(
    repos: Repositories, machine_id: str, pending: PendingStart, now: datetime, *, kind: str, message: str
) -> None:
    repos.events.put(
        Event(
            id=f"{pending.job.id}-start-{kind.replace(' ', '-')}",
            machine_id=machine_id,
            time=now,
            type=f"Operator action {kind}",
            severity=Severity.WARNING if kind == "rolled back" else Severity.INFO,
            message=message,
            details={"jobId": pending.job.id, "kind": pending.job.kind.value},
        )
    )
