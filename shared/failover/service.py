"""Failover to Azure: the use cases behind POST /api/machines/{id}/failover and its job orchestration.

The HTTP function moves the machine Replicating -> FailingOver and records the Failover job here first,
then starts the job's own orchestration `job-{jobId}`. From that moment replication is held (the
machine's orchestration applies no cycle, the inbox accepts no upload: `shared.replication.cycles`),
so no cycle can change what is being failed over; a failover to `latest` first lets the cycles already
waiting in the inbox apply. The job ends here: FailedOver with the VM, its recovery point and its
failback baseline recorded on the machine, or, after the orchestration deleted what it had created,
back to Replicating with the catalog's failover error (health Critical) naming the failing step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.appliances.commands import queue_command
from shared.domain.command import CommandKind, CommandStatus
from shared.domain.cycle import Consistency, CycleKind, CycleState, RecoveryPoint
from shared.domain.errors import Conflict, NotFound
from shared.domain.failover import ChangeRecoveryPointStep, CommitStep, FailoverStep
from shared.domain.job import Job, JobError, JobKind, JobStatus, new_job
from shared.domain.lifecycle import MachineState, transition
from shared.domain.machine import FailoverStatus, Machine
from shared.domain.wire import RequestModel
from shared.failover.settings import effective_settings
from shared.health import Failure, HealthSettings, record_failures
from shared.health.catalog import failover_error
from shared.jobs import lifecycle as jobs
from shared.jobs import starts
from shared.platform.documents import Query
from shared.platform.repository import Repositories

LATEST = "latest"
LATEST_PROCESSED = "latestProcessed"
LATEST_APP_CONSISTENT = "latestAppConsistent"
LATEST_CRASH_CONSISTENT = "latestCrashConsistent"
NAMED_CHOICES = (LATEST, LATEST_PROCESSED, LATEST_APP_CONSISTENT, LATEST_CRASH_CONSISTENT)
_CONSISTENCY = {LATEST_APP_CONSISTENT: Consistency.APP, LATEST_CRASH_CONSISTENT: Consistency.CRASH}


class FailoverRequest(RequestModel):
    """Body of POST /api/machines/{id}/failover."""

    recovery_point: str = Field(
        default=LATEST,
        min_length=1,
        max_length=200,
        description="'latest' (apply every cycle received first: lowest RPO), 'latestProcessed' (the newest "
        "point now: lowest RTO), 'latestAppConsistent', 'latestCrashConsistent', or a recovery point id",
    )
    shutdown_source: bool = Field(
        default=False,
        description="ask the appliance to shut the source VM down first; if it fails or times out the step "
        "ends in Warning and the failover goes on",
    )


class NoRecoveryPoint(Conflict):
    code = "NoRecoveryPoint"


class RecoveryPointNotFound(NotFound):
    code = "RecoveryPointNotFound"


def failover_steps(request: FailoverRequest) -> tuple[str, ...]:
    S = FailoverStep
    return tuple(
        step.value
        for step in S
        if (step is not S.SHUT_DOWN_SOURCE or request.shutdown_source)
        and (step is not S.PROCESS_PENDING_DATA or request.recovery_point == LATEST)
    )


def pick_point(machine: Machine, choice: str) -> RecoveryPoint:
    """The recovery point `choice` names among the machine's points now (`latest`: after the inbox was
    applied, that is the newest too). 409 when there is none of that kind, 404 for an unknown id."""
    points = machine.replication.recovery_points
    if not points:
        raise NoRecoveryPoint(
            f"machine {machine.id} has no recovery point yet: wait for its initial replication to complete"
        )
    if choice in (LATEST, LATEST_PROCESSED):
        point = machine.replication.latest_point()
    elif choice in _CONSISTENCY:
        consistency = _CONSISTENCY[choice]
        point = machine.replication.latest_point(consistency)
        if point is None:
            raise NoRecoveryPoint(
                f"machine {machine.id} has no {consistency.value}-consistent recovery point (it has "
                f"{len(points)} point(s), none {consistency.value}-consistent); choose '{LATEST_PROCESSED}' "
                "or a recovery point id from GET /api/machines/{id}",
                details=[{"machineId": machine.id, "consistency": consistency.value}],
            )
    else:
        point = next((p for p in points if p.id == choice), None)
        if point is None:
            raise RecoveryPointNotFound(
                f"machine {machine.id} has no recovery point {choice} (retention may have dropped it); "
                f"use one of {', '.join(NAMED_CHOICES)} or an id from the machine's recoveryPointList",
                details=[{"machineId": machine.id, "recoveryPoint": choice}],
            )
    assert point is not None
    return point


# --- starting -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailoverStarted:
    machine: Machine
    job: Job


def start_failover(
    repos: Repositories,
    machine_id: str,
    request: FailoverRequest,
    *,
    job_id: str,
    now: datetime,
    idempotency_key: starts.RetryOf | str | None = None,
) -> FailoverStarted:
    """Replicating -> FailingOver and a Failover job. 409 when the machine cannot fail over now (its
    state, no recovery point of the kind asked for), 404 for an unknown point; nothing is written then.
    `latest` marks the cycles waiting in the inbox (one query) to be applied before the point is picked.
    """
    drain: int | None = None
    if request.recovery_point == LATEST:
        waiting = repos.cycles.query(
            Query(equals={"machineId": machine_id, "state": CycleState.RECEIVED.value}),
            partition_key=machine_id,
        )
        drain = max((c.sequence for c in waiting), default=None)

    def apply(machine: Machine) -> None:
        effective_settings(machine)  # 409 without replication target: nothing to fail over to
        transition(machine, MachineState.FAILING_OVER, action="fail over")
        pick_point(machine, request.recovery_point)
        machine.failover = FailoverStatus(
            job_id=job_id, recovery_point_choice=request.recovery_point, drain_through_sequence=drain
        )
        machine.active_job_id = job_id
        machine.updated_at = now

    job = new_job(job_id, JobKind.FAILOVER, machine_id, failover_steps(request), now)
    started = starts.begin(repos, machine_id, apply, job, now=now, idempotency_key=idempotency_key)
    return FailoverStarted(started.machine, started.job)


# --- the job's steps ------------------------------------------------------------------------------------


def _failing_over(repos: Repositories, machine_id: str, job_id: str) -> Machine:
    machine = repos.machines.require(machine_id).item
    if machine.state is not MachineState.FAILING_OVER or machine.failover is None:
        raise Conflict(f"machine {machine_id} is {machine.state}, not failing over (job {job_id})")
    if machine.failover.job_id != job_id:
        raise Conflict(
            f"machine {machine_id} is failing over under job {machine.failover.job_id}, not {job_id}"
        )
    return machine


def queue_source_shutdown(repos: Repositories, machine_id: str, job_id: str, *, now: datetime) -> str:
    """ShutDownSource for the machine's appliance; idempotent by command id (returned)."""
    command_id = f"{job_id}-shutdown"
    queue_command(
        repos, command_id=command_id, machine_id=machine_id, kind=CommandKind.SHUT_DOWN_SOURCE, now=now
    )
    return command_id


def source_shutdown_acknowledged(repos: Repositories, machine_id: str, command_id: str) -> bool:
    machine = repos.machines.require(machine_id).item
    stored = repos.commands.get(command_id, machine.appliance_id)
    return stored is not None and stored.item.status is CommandStatus.ACKNOWLEDGED


def replication_held(repos: Repositories, machine_id: str, job_id: str) -> str:
    """What the hold left: the replica's watermark and the cycles waiting in the inbox (a message)."""
    machine = _failing_over(repos, machine_id, job_id)
    waiting = _waiting(repos, machine_id)
    applied = machine.replication.last_applied_sequence
    return (
        f"replication held at sequence {applied}; {len(waiting)} received cycle(s) wait in the inbox and "
        "no upload is accepted until the failover ends"
    )


def _waiting(repos: Repositories, machine_id: str) -> list[int]:
    return sorted(
        c.sequence
        for c in repos.cycles.query(
            Query(equals={"machineId": machine_id, "state": CycleState.RECEIVED.value}),
            partition_key=machine_id,
        )
    )


class PendingData(BaseModel):
    model_config = ConfigDict(frozen=True)

    done: bool
    message: str


def pending_data(repos: Repositories, machine_id: str, job_id: str) -> PendingData:
    """Have the cycles the failover asked to apply been applied (or can they never be)?"""
    machine = _failing_over(repos, machine_id, job_id)
    assert machine.failover is not None
    drain = machine.failover.drain_through_sequence
    applied = machine.replication.last_applied_sequence
    if drain is None:
        return PendingData(done=True, message="no cycle was waiting in the inbox")
    cycles = {
        c.sequence: c
        for c in repos.cycles.query(
            Query(equals={"machineId": machine_id, "state": CycleState.RECEIVED.value}),
            partition_key=machine_id,
        )
        if c.sequence <= drain
    }
    if not cycles:
        return PendingData(done=True, message=f"every received cycle through sequence {drain} is applied")
    first = min(cycles)
    can_apply = cycles[first].kind in (CycleKind.INITIAL, CycleKind.RESYNC) or (
        applied is not None and first == applied + 1
    )
    if not can_apply and first > (applied or -1) + 1:
        return PendingData(
            done=True,
            message=f"cycle {(applied or -1) + 1} never arrived: {len(cycles)} later cycle(s) cannot apply; "
            f"the newest point (sequence {applied}) is used",
        )
    return PendingData(
        done=False, message=f"applying {len(cycles)} received cycle(s) through sequence {drain}"
    )


def choose_point(repos: Repositories, machine_id: str, job_id: str) -> RecoveryPoint:
    machine = _failing_over(repos, machine_id, job_id)
    assert machine.failover is not None
    return pick_point(machine, machine.failover.recovery_point_choice)


# --- the job's end --------------------------------------------------------------------------------------


class FailoverOutcome(BaseModel):
    """How the failover job ends."""

    model_config = ConfigDict(frozen=True)

    machine_id: str
    job_id: str
    succeeded: bool
    warning: bool = False
    failed_step: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    resource_type: str | None = None
    recovery_point_id: str | None = None
    vm_id: str | None = None
    disk_ids: list[str] = Field(default_factory=list)
    failback_baseline_snapshot_ids: list[str] = Field(default_factory=list)
    leftovers: list[str] = Field(default_factory=list)


def end_failover(
    repos: Repositories, outcome: FailoverOutcome, *, now: datetime, health: HealthSettings
) -> Job:
    """The end of a Failover job, or of a ChangeRecoveryPoint or Commit job (`end_change`, `end_commit`)."""
    kind = jobs.require(repos, outcome.job_id).kind
    if kind is JobKind.CHANGE_RECOVERY_POINT:
        return end_change(repos, outcome, now=now)
    if kind is JobKind.COMMIT:
        return end_commit(repos, outcome, now=now)
    return _end_failover(repos, outcome, now=now, health=health)


def _end_failover(
    repos: Repositories, outcome: FailoverOutcome, *, now: datetime, health: HealthSettings
) -> Job:
    """FailedOver with what was built, or back to Replicating with the catalog's error (health Critical,
    through the health writer) and the job Failed at its step. Idempotent: a retry finds the machine
    already moved and the job already finished."""
    job = jobs.require(repos, outcome.job_id)
    if job.status.finished:
        return job
    if outcome.succeeded:

        def succeed(machine: Machine) -> None:
            if machine.state is not MachineState.FAILING_OVER or machine.active_job_id != job.id:
                return
            transition(machine, MachineState.FAILED_OVER, action="finish the failover")
            previous = machine.failover or FailoverStatus(job_id=job.id, recovery_point_choice="")
            machine.failover = previous.model_copy(
                update={
                    "drain_through_sequence": None,
                    "recovery_point_id": outcome.recovery_point_id,
                    "vm_id": outcome.vm_id,
                    "disk_ids": list(outcome.disk_ids),
                    "failback_baseline_snapshot_ids": list(outcome.failback_baseline_snapshot_ids),
                }
            )
            machine.updated_at = now

        repos.machines.update_with_retry(outcome.machine_id, succeed)
        # A step that ended in Warning (the source not shut down, a hydration note) makes the job's.
        warned = outcome.warning or any(s.status is JobStatus.WARNING for s in job.steps)
        status = JobStatus.WARNING if warned else JobStatus.SUCCEEDED
        return jobs.finish(repos, job.id, status, now=now)

    step = outcome.failed_step or FailoverStep.CHECK_PREREQUISITES.value
    machine = repos.machines.require(outcome.machine_id).item
    values: dict[str, object] = {}
    try:
        settings = effective_settings(machine)
        values = {
            "vmName": settings.vm_name,
            "vmSize": settings.vm_size,
            "resourceGroup": settings.resource_group,
            "subnet": settings.subnet,
            "staticIpAddress": str(settings.static_ip_address or "") or None,
        }
    except Conflict:
        pass
    reason = outcome.error_message or "the step failed"
    if outcome.leftovers:
        reason += (
            f" Compensation could not delete {', '.join(outcome.leftovers)}; the sweeper retries them "
            "(they are tagged with this job)."
        )
    match = failover_error(
        step, outcome.error_code, reason=reason, resource_type=outcome.resource_type, **values
    )

    def resume(machine: Machine) -> None:
        if machine.state is MachineState.FAILING_OVER and machine.active_job_id == job.id:
            transition(
                machine, MachineState.REPLICATING, action="resume replication after the failed failover"
            )
            machine.failover = None
            machine.updated_at = now

    if machine.state is MachineState.FAILING_OVER and machine.active_job_id == job.id:
        record_failures(
            repos,
            outcome.machine_id,
            [Failure(match=match, at=now, event_id=f"{job.id}-failed", values=values)],
            settings=health,
            also=resume,
        )
    rendered = match.render()
    steps = " ".join(f"({i}) {r}" for i, r in enumerate(rendered.recommendations, start=1))
    error = JobError(code=match.error_code, message=f"{match.message} Recommended steps: {steps}")
    return jobs.finish(repos, job.id, JobStatus.FAILED, now=now, error=error, failed_step=step)


# --- after the failover: change the recovery point, commit -----------------------------------------------


class ChangeRecoveryPointRequest(RequestModel):
    """Body of POST /api/machines/{id}/change-recovery-point."""

    recovery_point_id: str = Field(
        min_length=1,
        max_length=200,
        description="another recovery point id from the machine's recoveryPointList",
    )


class FailoverCommitted(Conflict):
    code = "FailoverCommitted"


def _failed_over(machine: Machine, action: str) -> FailoverStatus:
    if machine.state is MachineState.FAILOVER_COMMITTED:
        raise FailoverCommitted(
            f"cannot {action}: the failover of machine {machine.id} is committed, so its recovery point is final "
            "and the other points are deleted",
            details=[{"machineId": machine.id, "state": machine.state}],
        )
    failover = machine.failover
    if machine.state is not MachineState.FAILED_OVER or failover is None or failover.vm_id is None:
        raise Conflict(
            f"cannot {action}: machine {machine.id} is {machine.state}; only a failed-over machine (FailedOver) can",
            details=[{"machineId": machine.id, "state": machine.state}],
        )
    if failover.changing_job_id is not None:
        raise Conflict(
            f"cannot {action}: the recovery point of machine {machine.id} is being changed (job "
            f"{failover.changing_job_id}); wait until that job has finished",
            details=[{"machineId": machine.id, "jobId": failover.changing_job_id}],
        )
    return failover


def start_change_recovery_point(
    repos: Repositories,
    machine_id: str,
    request: ChangeRecoveryPointRequest,
    *,
    job_id: str,
    now: datetime,
    idempotency_key: starts.RetryOf | str | None = None,
) -> FailoverStarted:
    """A ChangeRecoveryPoint job for a FailedOver machine (the state does not change: the VM stays the
    failover's). 409 once committed or while another change runs; 404 for an unknown point."""

    def apply(machine: Machine) -> None:
        failover = _failed_over(machine, "change the recovery point")
        point = pick_point(machine, request.recovery_point_id)
        if point.id == failover.recovery_point_id:
            raise Conflict(
                f"machine {machine.id}'s VM is already built from recovery point {point.id}; choose another one",
                details=[{"machineId": machine.id, "recoveryPoint": point.id}],
            )
        machine.failover = failover.model_copy(update={"changing_job_id": job_id})
        machine.active_job_id = job_id
        machine.updated_at = now

    steps = [s.value for s in ChangeRecoveryPointStep]
    job = new_job(job_id, JobKind.CHANGE_RECOVERY_POINT, machine_id, steps, now)
    started = starts.begin(repos, machine_id, apply, job, now=now, idempotency_key=idempotency_key)
    return FailoverStarted(started.machine, started.job)


def end_change(repos: Repositories, outcome: FailoverOutcome, *, now: datetime) -> Job:
    """The VM runs on the new point's disks (recorded), or on its old ones (the job failed: nothing else
    changed). Either way the next change or the commit may start."""
    job = jobs.require(repos, outcome.job_id)
    if job.status.finished:
        return job

    def record(machine: Machine) -> None:
        failover = machine.failover
        if failover is None or failover.changing_job_id != job.id:
            return
        update: dict[str, object] = {"changing_job_id": None}
        if outcome.succeeded:
            update |= {
                "recovery_point_id": outcome.recovery_point_id,
                "disk_ids": list(outcome.disk_ids),
                "failback_baseline_snapshot_ids": list(outcome.failback_baseline_snapshot_ids),
            }
        machine.failover = failover.model_copy(update=update)
        machine.updated_at = now

    repos.machines.update_with_retry(outcome.machine_id, record)
    if outcome.succeeded:
        warned = any(s.status is JobStatus.WARNING for s in job.steps)
        return jobs.finish(repos, job.id, JobStatus.WARNING if warned else JobStatus.SUCCEEDED, now=now)
    step = outcome.failed_step or ChangeRecoveryPointStep.PICK_RECOVERY_POINT.value
    match = failover_error(step, outcome.error_code, reason=outcome.error_message or "the step failed")
    steps = " ".join(f"({i}) {r}" for i, r in enumerate(match.render().recommendations, start=1))
    error = JobError(
        code=match.error_code,
        message=f"{match.message} The VM still runs on recovery point {_current_point(repos, outcome.machine_id)}. "
        f"Recommended steps: {steps}",
    )
    return jobs.finish(repos, job.id, JobStatus.FAILED, now=now, error=error, failed_step=step)


def _current_point(repos: Repositories, machine_id: str) -> str | None:
    failover = repos.machines.require(machine_id).item.failover
    return failover.recovery_point_id if failover else None


def start_commit(
    repos: Repositories,
    machine_id: str,
    *,
    job_id: str,
    now: datetime,
    idempotency_key: starts.RetryOf | str | None = None,
) -> FailoverStarted:
    """FailedOver -> FailoverCommitted and a Commit job that deletes every other recovery point. 409 while
    a change of recovery point runs, or when the machine is not failed over (or already committed)."""

    def apply(machine: Machine) -> None:
        retry = (
            machine.state is MachineState.FAILOVER_COMMITTED and len(machine.replication.recovery_points) > 1
        )
        if not retry:  # a commit whose deletions failed may run again
            _failed_over(machine, "commit the failover")
            transition(machine, MachineState.FAILOVER_COMMITTED, action="commit the failover")
        machine.active_job_id = job_id
        machine.updated_at = now

    steps = [s.value for s in CommitStep]
    job = new_job(job_id, JobKind.COMMIT, machine_id, steps, now)
    started = starts.begin(repos, machine_id, apply, job, now=now, idempotency_key=idempotency_key)
    return FailoverStarted(started.machine, started.job)


def points_to_delete(repos: Repositories, machine_id: str) -> list[RecoveryPoint]:
    """A committed machine's recovery points other than the one its VM was built from."""
    machine = repos.machines.require(machine_id).item
    kept = machine.failover.recovery_point_id if machine.failover else None
    return [p for p in machine.replication.recovery_points if p.id != kept]


def forget_points(repos: Repositories, machine_id: str, point_ids: list[str], *, now: datetime) -> None:
    """Drop these points from the machine's catalog (their snapshots are deleted already)."""

    def drop(machine: Machine) -> None:
        points = machine.replication.recovery_points
        if any(p.id in point_ids for p in points):
            machine.replication.recovery_points = [p for p in points if p.id not in point_ids]
            machine.updated_at = now

    repos.machines.update_with_retry(machine_id, drop)


def end_commit(repos: Repositories, outcome: FailoverOutcome, *, now: datetime) -> Job:
    """The commit stays (the state is FailoverCommitted either way); a failure says which snapshots are left."""
    if outcome.succeeded:
        return jobs.finish(repos, outcome.job_id, JobStatus.SUCCEEDED, now=now)
    error = JobError(
        code=outcome.error_code or "DeleteFailed",
        message=outcome.error_message or "the other recovery points could not all be deleted; commit again",
    )
    return jobs.finish(
        repos,
        outcome.job_id,
        JobStatus.FAILED,
        now=now,
        error=error,
        failed_step=CommitStep.DELETE_OTHER_POINTS.value,
    )
