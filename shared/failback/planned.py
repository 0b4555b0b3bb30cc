"""Planned failover to on-premises and its cancel: the use cases behind
POST /api/machines/{id}/planned-failover and POST /api/machines/{id}/cancel-planned-failover, what their
jobs record on the machine (`Machine.failback`) and how each job ends.

The HTTP function moves the machine ReverseReplicating -> PlannedFailingBack and records the
PlannedFailover job here, then wakes the machine's reverse orchestration, the one writer of its reverse
replication, which runs the job between two reverse cycles. The job ends here: FailedBack (the
on-premises VM runs, waiting for commit or cancel), or, when a step failed, the job Failed with the
catalog's error and the machine CancellingPlannedFailback with a CancelPlannedFailover job that the
same orchestration runs at once. A cancel ends ReverseReplicating (the Azure VM runs again, the next
reverse cycle applies from the final snapshot), or PlannedFailbackCancelFailed with a Critical error
that tells the operator to run cancel again, which is allowed from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from shared.domain.appliance import Appliance
from shared.domain.errors import Conflict
from shared.domain.failback import CancelPlannedFailoverStep, PlannedFailback, PlannedFailoverStep
from shared.domain.health import Health
from shared.domain.job import Job, JobError, JobKind, JobStatus, new_job
from shared.domain.lifecycle import (
    OPERATIONS,
    ForbiddenTransition,
    MachineState,
    Operation,
    transition,
)
from shared.domain.machine import Machine
from shared.domain.pending_start import StartRunner
from shared.health import Failure, HealthSettings, record_failures, reset_health
from shared.health.catalog import planned_failover_error
from shared.jobs import lifecycle as jobs
from shared.jobs import starts
from shared.migration import resources
from shared.migration.resource_kinds import parse_arm_id
from shared.migration.resources import VmPower
from shared.platform.arm_clients import ArmClients
from shared.platform.repository import Repositories

S = MachineState
# The states in which the reverse orchestration runs a failback job instead of a reverse cycle.
FAILBACK_JOB_STATES = frozenset({S.PLANNED_FAILING_BACK, S.CANCELLING_PLANNED_FAILBACK})


class NoReverseRecoveryPoint(Conflict):
    code = "NoReverseRecoveryPoint"


class ReverseHealthCritical(Conflict):
    code = "ReverseHealthCritical"


@dataclass(frozen=True)
class FailbackStarted:
    machine: Machine
    job: Job


def planned_failover_steps() -> tuple[str, ...]:
    return tuple(step.value for step in PlannedFailoverStep)


def cancel_steps() -> tuple[str, ...]:
    return tuple(step.value for step in CancelPlannedFailoverStep)


def cancel_job_id(planned_job_id: str) -> str:
    """The automatic cancel of a failed planned failover: one per job, so a retried end starts it once."""
    return f"{planned_job_id}-cancel"[-200:]


def _allowed(machine: Machine, operation: Operation, target: MachineState, action: str) -> None:
    if not OPERATIONS[operation].allows(machine.state):
        raise ForbiddenTransition(machine.id, machine.state, target, action)


def start_planned_failover(
    repos: Repositories,
    machine_id: str,
    *,
    job_id: str,
    now: datetime,
    idempotency_key: starts.RetryOf | str | None = None,
) -> FailbackStarted:
    """ReverseReplicating -> PlannedFailingBack and a PlannedFailover job. 409 in another state, without
    a reverse recovery point, or with the machine's health Critical; nothing is written then. Crash-safe
    (`shared.jobs.starts`, runner REVERSE): the machine's reverse orchestration acknowledges the job when
    it picks it up between two cycles."""

    def apply(machine: Machine) -> None:
        action = "fail over to on-premises"
        _allowed(machine, Operation.PLANNED_FAILOVER, S.PLANNED_FAILING_BACK, action)
        reverse = machine.reverse
        if reverse is None or not reverse.recovery_points:
            raise NoReverseRecoveryPoint(
                f"machine {machine.id} has no reverse recovery point yet: wait for the initial reverse sync "
                "and a reverse cycle to finish, then fail over to on-premises",
                details=[{"machineId": machine.id}],
            )
        if machine.health is Health.CRITICAL:
            raise ReverseHealthCritical(
                f"machine {machine.id}'s reverse replication is Critical: resolve its errors (GET "
                f"/api/machines/{machine.id}/events) before failing over to on-premises",
                details=[{"machineId": machine.id, "health": machine.health.value}],
            )
        transition(machine, S.PLANNED_FAILING_BACK, action=action)
        machine.failback = PlannedFailback(job_id=job_id)
        machine.active_job_id = job_id
        machine.updated_at = now

    job = new_job(job_id, JobKind.PLANNED_FAILOVER, machine_id, planned_failover_steps(), now)
    started = starts.begin(
        repos, machine_id, apply, job, now=now, idempotency_key=idempotency_key, runner=StartRunner.REVERSE
    )
    return FailbackStarted(started.machine, started.job)


def start_cancel(
    repos: Repositories,
    machine_id: str,
    *,
    job_id: str,
    now: datetime,
    idempotency_key: starts.RetryOf | str | None = None,
) -> FailbackStarted:
    """FailedBack or PlannedFailbackCancelFailed -> CancellingPlannedFailback and a CancelPlannedFailover
    job. 409 in any other state (a running planned failover cancels itself if it fails)."""

    def apply(machine: Machine) -> None:
        action = "cancel the planned failover"
        _allowed(machine, Operation.CANCEL_PLANNED_FAILOVER, S.CANCELLING_PLANNED_FAILBACK, action)
        _to_cancelling(machine, job_id, now)

    job = new_job(job_id, JobKind.CANCEL_PLANNED_FAILOVER, machine_id, cancel_steps(), now)
    started = starts.begin(
        repos, machine_id, apply, job, now=now, idempotency_key=idempotency_key, runner=StartRunner.REVERSE
    )
    return FailbackStarted(started.machine, started.job)


def _to_cancelling(machine: Machine, job_id: str, now: datetime) -> None:
    transition(machine, S.CANCELLING_PLANNED_FAILBACK, action="cancel the planned failover")
    failback = machine.failback or PlannedFailback(job_id=machine.active_job_id or job_id)
    machine.failback = failback.model_copy(update={"cancel_job_id": job_id})
    machine.active_job_id = job_id
    machine.updated_at = now


# --- what the jobs record -------------------------------------------------------------------------


class Problem(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str


def running(repos: Repositories, machine_id: str, job_id: str) -> Machine:
    """The machine while `job_id` (a PlannedFailover or its cancel) is its active failback job."""
    machine = repos.machines.require(machine_id).item
    if (
        machine.state not in FAILBACK_JOB_STATES
        or machine.failback is None
        or machine.active_job_id != job_id
    ):
        raise Conflict(
            f"machine {machine_id} is {machine.state}; job {job_id} is not its running failback job"
        )
    return machine


def prerequisite_problem(
    machine: Machine, appliance: Appliance | None, *, now: datetime, heartbeat_timeout: timedelta
) -> Problem | None:
    """The first reason the planned failover cannot start, or None. Pure."""
    if machine.reverse is None or not machine.reverse.disks:
        return Problem(code="PlannedFailoverFailed", message="the machine has no reverse protection")
    if machine.failover is None or machine.failover.vm_id is None:
        return Problem(code="PlannedFailoverFailed", message="the machine has no Azure VM recorded")
    if appliance is None:
        return Problem(
            code="ApplianceUnreachable", message=f"appliance {machine.reverse.appliance_id} is not registered"
        )
    if appliance.last_heartbeat is None or now - appliance.last_heartbeat > heartbeat_timeout:
        heard = appliance.last_heartbeat.isoformat() if appliance.last_heartbeat else "never"
        return Problem(
            code="ApplianceUnreachable",
            message=f"appliance {appliance.name} is not healthy: its last heartbeat was {heard}",
        )
    return None


def _record(
    repos: Repositories, machine_id: str, job_id: str, change: dict[str, object], now: datetime
) -> None:
    def apply(machine: Machine) -> None:
        if machine.failback is None or machine.active_job_id != job_id:
            return
        machine.failback = machine.failback.model_copy(update=change)
        machine.updated_at = now

    repos.machines.update_with_retry(machine_id, apply)


def record_azure_vm_stopped(repos: Repositories, machine_id: str, job_id: str, *, at: datetime) -> None:
    """The first time only: a retried step keeps the moment the VM really stopped."""
    machine = repos.machines.require(machine_id).item
    if machine.failback is not None and machine.failback.azure_vm_stopped_at is None:
        _record(repos, machine_id, job_id, {"azure_vm_stopped_at": at}, at)


def record_final_snapshots(
    repos: Repositories, machine_id: str, job_id: str, *, now: datetime
) -> dict[str, str]:
    """The final sync's snapshots (each disk's last reverse snapshot) are kept until commit or cancel."""
    machine = repos.machines.require(machine_id).item
    assert machine.reverse is not None
    final = {d.azure_disk_id: d.last_snapshot_id for d in machine.reverse.disks if d.last_snapshot_id}
    _record(repos, machine_id, job_id, {"final_snapshot_ids": final}, now)
    return final


def record_detached(
    repos: Repositories, machine_id: str, job_id: str, *, detached: bool, now: datetime
) -> None:
    _record(repos, machine_id, job_id, {"disks_detached": detached}, now)


def record_pre_power_on_snapshots(
    repos: Repositories, machine_id: str, job_id: str, snapshots: dict[str, str], *, now: datetime
) -> None:
    _record(repos, machine_id, job_id, {"pre_power_on_snapshots": snapshots}, now)


def record_powered_on(
    repos: Repositories, machine_id: str, job_id: str, *, powered_on: bool, now: datetime
) -> None:
    _record(repos, machine_id, job_id, {"powered_on": powered_on}, now)


def record_heartbeat(
    repos: Repositories, machine_id: str, job_id: str, *, at: datetime, now: datetime
) -> float | None:
    """The on-premises VM is up: the downtime is from the Azure VM stopped to this heartbeat."""
    machine = repos.machines.require(machine_id).item
    stopped = machine.failback.azure_vm_stopped_at if machine.failback else None
    downtime = max(0.0, (at - stopped).total_seconds()) if stopped is not None else None
    _record(repos, machine_id, job_id, {"on_premises_up_at": at, "downtime_seconds": downtime}, now)
    return downtime


# --- the jobs' ends -------------------------------------------------------------------------------


class FailbackOutcome(BaseModel):
    """How a failback job ends (PlannedFailover, CancelPlannedFailover; CommitFailback and the reprotect to
    Azure extend it): what its orchestration hands the activity that records the end."""

    model_config = ConfigDict(frozen=True)

    machine_id: str
    job_id: str
    succeeded: bool
    failed_step: str | None = None
    error_code: str | None = None
    error_message: str | None = None


def _job_error(
    job_id: str, step: str, reason: str, *, cancel: bool, now: datetime
) -> tuple[JobError, Failure]:
    match = planned_failover_error(step, reason=reason, cancel=cancel)
    rendered = match.render()
    steps = " ".join(f"({i}) {r}" for i, r in enumerate(rendered.recommendations, start=1))
    error = JobError(code=match.error_code, message=f"{match.message} Recommended steps: {steps}")
    failure = Failure(match=match, at=now, event_id=f"{job_id}-failed"[-200:], values=dict(match.values))
    return error, failure


def end_planned_failover(
    repos: Repositories, outcome: FailbackOutcome, *, now: datetime, health: HealthSettings
) -> str | None:
    """FailedBack; or the job Failed at its step and the machine CancellingPlannedFailback with its
    cancel job (whose id is returned). Idempotent: a retried end starts the same cancel once."""
    job = jobs.require(repos, outcome.job_id)
    machine = repos.machines.require(outcome.machine_id).item
    if outcome.succeeded:

        def succeed(m: Machine) -> None:
            if m.state is S.PLANNED_FAILING_BACK and m.active_job_id == job.id:
                transition(m, S.FAILED_BACK, action="end the planned failover")
                m.updated_at = now

        repos.machines.update_with_retry(outcome.machine_id, succeed)
        if not job.status.finished:
            jobs.finish(repos, job.id, JobStatus.SUCCEEDED, now=now)
        return None

    step = outcome.failed_step or PlannedFailoverStep.CHECK_PREREQUISITES.value
    error, failure = _job_error(
        job.id, step, outcome.error_message or "the step failed", cancel=False, now=now
    )
    cancel_id = cancel_job_id(job.id)
    if machine.state is S.PLANNED_FAILING_BACK and machine.active_job_id == job.id:

        def cancelling(m: Machine) -> None:
            if m.state is S.PLANNED_FAILING_BACK and m.active_job_id == job.id:
                _to_cancelling(m, cancel_id, now)

        record_failures(
            repos,
            outcome.machine_id,
            [failure],
            settings=health,
            also=cancelling,
        )
    if jobs.get(repos, cancel_id) is None:
        jobs.create(
            repos,
            new_job(cancel_id, JobKind.CANCEL_PLANNED_FAILOVER, outcome.machine_id, cancel_steps(), now),
        )
    if not job.status.finished:
        jobs.finish(repos, job.id, JobStatus.FAILED, now=now, error=error, failed_step=step)
    return cancel_id


def end_cancel(
    repos: Repositories, outcome: FailbackOutcome, *, now: datetime, health: HealthSettings
) -> Job:
    """ReverseReplicating (the planned failover's record cleared: the machine is as before it); or
    PlannedFailbackCancelFailed, health Critical with the catalog's error. Idempotent."""
    job = jobs.require(repos, outcome.job_id)
    if job.status.finished:
        return job
    if outcome.succeeded:

        def resume(m: Machine) -> None:
            if m.state is S.CANCELLING_PLANNED_FAILBACK and m.active_job_id == job.id:
                transition(m, S.REVERSE_REPLICATING, action="resume reverse replication")
                m.failback = None
                # The Critical a failed cancel raised is about this machine's return, which is done.
                if m.health is Health.CRITICAL:
                    reset_health(m)
                m.updated_at = now

        repos.machines.update_with_retry(outcome.machine_id, resume)
        return jobs.finish(repos, job.id, JobStatus.SUCCEEDED, now=now)

    step = outcome.failed_step or CancelPlannedFailoverStep.POWER_OFF_ON_PREMISES.value
    error, failure = _job_error(
        job.id, step, outcome.error_message or "the step failed", cancel=True, now=now
    )

    def failed(m: Machine) -> None:
        if m.state is S.CANCELLING_PLANNED_FAILBACK and m.active_job_id == job.id:
            transition(m, S.PLANNED_FAILBACK_CANCEL_FAILED, action="end the failed cancel")
            m.updated_at = now

    machine = repos.machines.require(outcome.machine_id).item
    if machine.state is S.CANCELLING_PLANNED_FAILBACK and machine.active_job_id == job.id:
        record_failures(
            repos,
            outcome.machine_id,
            [failure],
            settings=health,
            also=failed,
        )
    return jobs.finish(repos, job.id, JobStatus.FAILED, now=now, error=error, failed_step=step)


# --- the Azure VM ---------------------------------------------------------------------------------


def set_azure_vm_power(clients: ArmClients, vm_id: str, *, running: bool) -> VmPower:
    """Start the failed-over VM, or stop and deallocate it (nothing is written to its disks then, and
    its cores are released); a VM already in that state is left as it is. ArmError on a refusal."""
    vm = parse_arm_id(vm_id)
    operation = resources.start_vm if running else resources.deallocate_vm
    return operation(clients, vm.resource_group, vm.name)
