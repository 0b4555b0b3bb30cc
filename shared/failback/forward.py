"""Reprotect to Azure after a committed failback: the use case behind POST /api/machines/{id}/reprotect on
a FailbackCommitted machine, its Reprotect job's checks, and how the job ends.

The commit brought each replica page blob to the final reverse snapshot, which is what the on-premises
disks held when the appliance copied them before power-on; the appliance has tracked the disks' changes
since that copy. So the reprotect needs no initial copy: the request moves the machine FailbackCommitted ->
Reprotecting (the chosen appliance, and its policy if one is given), the job asks the appliance for one
`reprotect` cycle (the changes since the copy), and the machine's replication orchestration applies it
like a delta that starts a new chain of cycles: Reprotecting -> Replicating with a new recovery point,
the bytes sent recorded against the disks' size. The job fails (back to FailbackCommitted, the catalog's
MCP-3510) if the checks fail or the cycle does not come in time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from shared.appliances.commands import queue_command
from shared.domain.appliance import Appliance
from shared.domain.command import CommandKind
from shared.domain.cycle import CycleKind
from shared.domain.errors import Conflict, NotFound
from shared.domain.failback import ForwardReprotectStep
from shared.domain.job import Job, JobError, JobKind, JobStatus, new_job
from shared.domain.lifecycle import OPERATIONS, ForbiddenTransition, MachineState, Operation, transition
from shared.domain.machine import Machine
from shared.domain.policy import ReplicationPolicyUpdate
from shared.domain.wire import RequestModel
from shared.failback.planned import FailbackStarted, Problem
from shared.health import Failure, HealthSettings, record_failures
from shared.health.catalog import forward_reprotect_error
from shared.jobs import lifecycle as jobs
from shared.jobs import starts
from shared.platform.repository import Repositories

S = MachineState


class ForwardReprotectRequest(RequestModel):
    """Body of POST /api/machines/{id}/reprotect. `policy` only for a reprotect to Azure (a FailbackCommitted
    machine); a reprotect to on-premises takes `applianceId` alone (ReprotectRequest)."""

    appliance_id: str = Field(
        min_length=1,
        max_length=200,
        description="the appliance that replicates the machine to Azure again: the one that took the disks' "
        "copy before power-on (it tracks their changes since)",
    )
    policy: ReplicationPolicyUpdate | None = Field(
        default=None,
        description="reprotect to Azure only: the appliance's replication policy to set first (as PUT "
        "/api/appliances/{id}/policy); refused (400) for a reprotect to on-premises",
    )


class ApplianceNotFound(NotFound):
    code = "ApplianceNotFound"


class NoChangeTracking(Conflict):
    code = "NoChangeTracking"


def reprotects_to_azure(repos: Repositories, machine_id: str) -> bool:
    """Whether POST /reprotect on this machine protects it to Azure again (it failed back and the failback
    is committed) rather than back to on-premises."""
    machine = repos.machines.get(machine_id)
    return machine is not None and machine.item.state is S.FAILBACK_COMMITTED


def steps() -> tuple[str, ...]:
    return tuple(step.value for step in ForwardReprotectStep)


def reprotect_cycle_command_id(job_id: str) -> str:
    return f"{job_id}-reprotect-cycle"[-128:]


def start_reprotect_to_azure(
    repos: Repositories,
    machine_id: str,
    request: ForwardReprotectRequest,
    *,
    job_id: str,
    now: datetime,
    idempotency_key: starts.RetryOf | str | None = None,
) -> FailbackStarted:
    """FailbackCommitted -> Reprotecting with the chosen appliance and a Reprotect job. 404 for an unknown
    appliance; 409 in another state, or for an appliance that did not take the pre-power-on copy (it has
    no change record to send from). Nothing is written then. The policy, if any, is the caller's to set
    (through the appliances' registry) once this has succeeded."""
    if repos.appliances.get(request.appliance_id) is None:
        raise ApplianceNotFound(
            f"appliance {request.appliance_id} is not registered; use the id of the appliance that protected "
            "the machine back to on-premises",
            details=[{"applianceId": request.appliance_id}],
        )

    def apply(machine: Machine) -> None:
        action = "reprotect to Azure"
        if (
            not OPERATIONS[Operation.REPROTECT].allows(machine.state)
            or machine.state is not S.FAILBACK_COMMITTED
        ):
            raise ForbiddenTransition(machine.id, machine.state, S.REPROTECTING, action)
        failback = machine.failback
        if failback is None or not failback.replicas_synced:
            raise NoChangeTracking(
                f"machine {machine.id} has no replicas brought to a final snapshot: nothing to send only the "
                "changes to; stop replication and enable it again for a full copy",
                details=[{"machineId": machine.id}],
            )
        tracking = failback.tracking_appliance_id
        if tracking is not None and tracking != request.appliance_id:
            raise NoChangeTracking(
                f"appliance {request.appliance_id} did not copy machine {machine.id}'s disks before power-on, "
                f"so it has no record of what changed since: reprotect with appliance {tracking}",
                details=[{"machineId": machine.id, "applianceId": tracking}],
            )
        transition(machine, S.REPROTECTING, action=action)
        machine.appliance_id = request.appliance_id
        machine.failback = failback.model_copy(
            update={
                "reprotect_job_id": job_id,
                "reprotect_cycle_id": None,
                "reprotect_bytes_sent": None,
                "reprotect_disk_bytes": None,
            }
        )
        machine.active_job_id = job_id
        machine.updated_at = now

    job = new_job(job_id, JobKind.REPROTECT, machine_id, steps(), now)
    started = starts.begin(repos, machine_id, apply, job, now=now, idempotency_key=idempotency_key)
    return FailbackStarted(started.machine, started.job)


def reprotecting(repos: Repositories, machine_id: str, job_id: str) -> Machine:
    machine = repos.machines.require(machine_id).item
    failback = machine.failback
    if machine.state is not S.REPROTECTING or failback is None or failback.reprotect_job_id != job_id:
        raise Conflict(f"machine {machine_id} is {machine.state}; job {job_id} is not its running reprotect")
    return machine


def prerequisite_problem(
    machine: Machine, appliance: Appliance | None, *, now: datetime, heartbeat_timeout: timedelta
) -> Problem | None:
    """The first reason the reprotect cannot go on, or None. Pure."""
    failback = machine.failback
    disks = {d.id for d in machine.inventory.disks}
    synced = set(failback.replicas_synced) if failback is not None else set()
    if disks - synced:
        return Problem(
            code="ForwardReprotectFailed",
            message=f"disk(s) {', '.join(sorted(disks - synced))} have no replica brought to the final snapshot",
        )
    if appliance is None:
        return Problem(
            code="ForwardReprotectFailed", message=f"appliance {machine.appliance_id} is not registered"
        )
    if appliance.last_heartbeat is None or now - appliance.last_heartbeat > heartbeat_timeout:
        heard = appliance.last_heartbeat.isoformat() if appliance.last_heartbeat else "never"
        return Problem(
            code="ForwardReprotectFailed",
            message=f"appliance {appliance.name} is not healthy: its last heartbeat was {heard}",
        )
    return None


def request_reprotect_cycle(repos: Repositories, machine_id: str, job_id: str, *, now: datetime) -> str:
    """Ask the appliance for the changes since its pre-power-on copy (idempotent by command id)."""
    command_id = reprotect_cycle_command_id(job_id)
    queue_command(
        repos,
        command_id=command_id,
        machine_id=machine_id,
        kind=CommandKind.RUN_CYCLE,
        cycle_kind=CycleKind.REPROTECT.value,
        now=now,
    )
    return command_id


def end_reprotect_to_azure(
    repos: Repositories,
    machine_id: str,
    job_id: str,
    *,
    succeeded: bool,
    failed_step: str | None,
    error_message: str | None,
    now: datetime,
    health: HealthSettings,
) -> Job:
    """Succeeded once the reprotect cycle moved the machine to Replicating (its bytes on the last step); or
    Failed with MCP-3510 and the machine FailbackCommitted again. Idempotent."""
    job = jobs.require(repos, job_id)
    if job.status.finished:
        return job
    machine = repos.machines.require(machine_id).item
    failback = machine.failback
    if succeeded and failback is not None and failback.reprotect_bytes_sent is not None:
        # What the cycle sent stays on the machine (`plannedFailback.reprotectBytesSent`, against
        # `reprotectDiskBytes`): a job step keeps a message only when it fails.
        return jobs.finish(repos, job_id, JobStatus.SUCCEEDED, now=now)
    step = failed_step or ForwardReprotectStep.CHECK_PREREQUISITES.value
    match = forward_reprotect_error(step, reason=error_message or "the step failed")

    def back(m: Machine) -> None:
        if m.state is S.REPROTECTING and m.active_job_id == job_id:
            transition(m, S.FAILBACK_COMMITTED, action="end the failed reprotect")
            m.updated_at = now

    if machine.state is S.REPROTECTING and machine.active_job_id == job_id:
        record_failures(
            repos,
            machine_id,
            [Failure(match=match, at=now, event_id=f"{job_id}-failed"[-200:], values=dict(match.values))],
            settings=health,
            also=back,
        )
    rendered = match.render()
    recommended = " ".join(f"({i}) {r}" for i, r in enumerate(rendered.recommendations, start=1))
    error = JobError(code=match.error_code, message=f"{match.message} Recommended steps: {recommended}")
    return jobs.finish(repos, job_id, JobStatus.FAILED, now=now, error=error, failed_step=step)
