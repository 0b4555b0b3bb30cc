"""Activities of the PlannedFailover and CancelPlannedFailover jobs (orchestrators/failback/planned.py):
the checks, the Azure VM's power, the appliance's commands (disk copies, revert, power) and what they
answered, what the jobs record on the machine, and the jobs' ends.

Each is idempotent: commands are queued under ids derived from the job, the VM's power is set only if it
is not already what is asked, and a record keeps what an earlier attempt wrote where that matters (the
moment the Azure VM stopped).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from orchestrators.blueprints import durable_blueprint
from orchestrators.failback.contracts import CommandWatch, Queued, StepRef, StepResult
from orchestrators.hydration.activities import arm_clients, migration_settings
from orchestrators.hydration.contracts import Done, Payload
from shared.bootstrap import get_services
from shared.domain.command import (
    DeleteDiskSnapshots,
    DisksSnapshotted,
    PowerChanged,
    PowerOffMachine,
    PowerOnMachine,
    ReverseRequest,
    RevertDisks,
    SnapshotDisks,
)
from shared.domain.errors import DomainError
from shared.failback import planned
from shared.failback import service as reverse
from shared.platform.arm_errors import ArmError

bp = durable_blueprint()

CommandName = Literal["powerOn", "powerOff", "snapshotDisks", "revertDisks", "deleteDiskSnapshots"]


class FailbackCommand(Payload):
    machine_id: str
    job_id: str
    command: CommandName
    attempt: int = 0


class Recorded(Payload):
    """What a record activity found: `done` false when there was nothing to record (or undo)."""

    done: bool
    message: str = ""
    values: dict[str, str] = Field(default_factory=dict)
    seconds: float | None = None


def _json(payload: Payload) -> dict[str, Any]:
    result: dict[str, Any] = payload.model_dump(mode="json")
    return result


def _polling() -> tuple[float, float]:
    settings = migration_settings()
    return settings.final_cycle_poll.total_seconds(), settings.final_cycle_timeout.total_seconds()


@bp.activity_trigger(input_name="payload")
def check_planned_failover_prerequisites(payload: dict[str, Any]) -> dict[str, Any]:
    ref = StepRef.model_validate(payload)
    services = get_services()
    try:
        machine = planned.running(services.repos, ref.machine_id, ref.job_id)
    except DomainError as exc:
        return _json(StepResult(ok=False, message=str(exc), error_code=exc.code))
    assert machine.reverse is not None
    appliance = services.repos.appliances.get(machine.reverse.appliance_id)
    problem = planned.prerequisite_problem(
        machine,
        appliance.item if appliance else None,
        now=services.clock(),
        heartbeat_timeout=services.health.rules.heartbeat_timeout,
    )
    if problem is not None:
        return _json(StepResult(ok=False, message=problem.message, error_code=problem.code))
    points = len(machine.reverse.recovery_points)
    return _json(
        StepResult(
            ok=True, message=f"appliance healthy; {points} reverse recovery point(s); health {machine.health}"
        )
    )


def _vm_power(ref: StepRef, *, running: bool) -> StepResult:
    machine = get_services().repos.machines.require(ref.machine_id).item
    if machine.failover is None or machine.failover.vm_id is None:
        return StepResult(
            ok=False, message="the machine has no Azure VM recorded", error_code="PlannedFailoverFailed"
        )
    try:
        with arm_clients() as clients:
            power = planned.set_azure_vm_power(clients, machine.failover.vm_id, running=running)
    except ArmError as exc:
        return StepResult(ok=False, message=str(exc), error_code=exc.code)
    if running:
        return StepResult(
            ok=True, message=f"VM {power.name} " + ("started" if power.changed else "was running")
        )
    return StepResult(ok=True, message=f"VM {power.name} is {power.power_state.value}")


@bp.activity_trigger(input_name="payload")
def stop_azure_vm(payload: dict[str, Any]) -> dict[str, Any]:
    """Stop (deallocate) the Azure VM: nothing is written to its disks after this; the moment is recorded
    once, as the start of the downtime."""
    ref = StepRef.model_validate(payload)
    stopped = _vm_power(ref, running=False)
    if stopped.ok:
        services = get_services()
        planned.record_azure_vm_stopped(services.repos, ref.machine_id, ref.job_id, at=services.clock())
    return _json(stopped)


@bp.activity_trigger(input_name="payload")
def start_azure_vm(payload: dict[str, Any]) -> dict[str, Any]:
    return _json(_vm_power(StepRef.model_validate(payload), running=True))


@bp.activity_trigger(input_name="payload")
def keep_final_snapshots(payload: dict[str, Any]) -> dict[str, Any]:
    ref = StepRef.model_validate(payload)
    services = get_services()
    final = planned.record_final_snapshots(services.repos, ref.machine_id, ref.job_id, now=services.clock())
    return _json(Recorded(done=bool(final), values=final))


class Attachment(Payload):
    machine_id: str
    job_id: str
    detached: bool


@bp.activity_trigger(input_name="payload")
def set_disks_detached(payload: dict[str, Any]) -> dict[str, Any]:
    """Detached: the appliance writes no more reverse manifests to the on-premises disks (reverse cycles
    run only in ReverseReplicating, and the VM about to run on them must not change under it);
    re-attached by a cancel."""
    request = Attachment.model_validate(payload)
    services = get_services()
    planned.record_detached(
        services.repos, request.machine_id, request.job_id, detached=request.detached, now=services.clock()
    )
    return _json(Done())


def _request(command: CommandName, snapshot_name: str) -> ReverseRequest:
    match command:
        case "powerOn":
            return PowerOnMachine()
        case "powerOff":
            return PowerOffMachine()
        case "snapshotDisks":
            return SnapshotDisks(snapshot_name=snapshot_name)
        case "revertDisks":
            return RevertDisks(snapshot_name=snapshot_name)
        case "deleteDiskSnapshots":
            return DeleteDiskSnapshots(snapshot_name=snapshot_name)


def command_id_of(request: FailbackCommand) -> str:
    suffix = f"-{request.attempt}" if request.attempt else ""
    return f"{request.job_id}-{request.command}{suffix}"[-128:]


@bp.activity_trigger(input_name="payload")
def queue_failback_command(payload: dict[str, Any]) -> dict[str, Any]:
    """Queue one of the jobs' appliance commands (idempotent by id). The disks' copies are named after the
    planned failover's job, which a cancel reads from the machine."""
    request = FailbackCommand.model_validate(payload)
    services = get_services()
    machine = services.repos.machines.require(request.machine_id).item
    name = machine.failback.job_id if machine.failback is not None else request.job_id
    command_id = command_id_of(request)
    reverse.queue_for_reverse_appliance(
        services.repos, request.machine_id, command_id, _request(request.command, name), now=services.clock()
    )
    poll, timeout = _polling()
    return _json(Queued(command_ids=[command_id], poll_seconds=poll, timeout_seconds=timeout))


@bp.activity_trigger(input_name="payload")
def keep_disk_copies(payload: dict[str, Any]) -> dict[str, Any]:
    """Record the appliance's copies of the disks (SnapshotDisks' answer) for the cancel to revert to."""
    watch = CommandWatch.model_validate(payload)
    services = get_services()
    state = reverse.command_state(services.repos, watch.machine_id, watch.command_id)
    result = state.result
    if not isinstance(result, DisksSnapshotted):
        return _json(Recorded(done=False, message="the appliance's answer lists no copies"))
    machine = services.repos.machines.require(watch.machine_id).item
    copies = {d.disk_id: d.snapshot for d in result.disks}
    job_id = machine.active_job_id or ""
    planned.record_pre_power_on_snapshots(
        services.repos, watch.machine_id, job_id, copies, now=services.clock()
    )
    methods = sorted({d.method.value for d in result.disks})
    return _json(
        Recorded(done=True, values=copies, message=f"{len(copies)} disk(s) copied ({', '.join(methods)})")
    )


@bp.activity_trigger(input_name="payload")
def read_failback_record(payload: dict[str, Any]) -> dict[str, Any]:
    """What the planned failover did, for the cancel to undo only that: its disks' copies."""
    ref = StepRef.model_validate(payload)
    machine = get_services().repos.machines.require(ref.machine_id).item
    failback = machine.failback
    copies = failback.pre_power_on_snapshots if failback is not None else {}
    return _json(Recorded(done=bool(copies), values=copies))


@bp.activity_trigger(input_name="payload")
def record_power_on(payload: dict[str, Any]) -> dict[str, Any]:
    """The on-premises VM is on; its guest's heartbeat, when the answer has one, ends the downtime."""
    watch = CommandWatch.model_validate(payload)
    services = get_services()
    state = reverse.command_state(services.repos, watch.machine_id, watch.command_id)
    machine = services.repos.machines.require(watch.machine_id).item
    job_id = machine.active_job_id or ""
    planned.record_powered_on(services.repos, watch.machine_id, job_id, powered_on=True, now=services.clock())
    result = state.result
    if not isinstance(result, PowerChanged) or result.guest_heartbeat_at is None:
        return _json(Recorded(done=False, message="no heartbeat from the guest yet"))
    downtime = planned.record_heartbeat(
        services.repos, watch.machine_id, job_id, at=result.guest_heartbeat_at, now=services.clock()
    )
    return _json(
        Recorded(
            done=True,
            seconds=downtime,
            message=f"heartbeat at {result.guest_heartbeat_at.isoformat()}"
            + (
                f"; downtime {downtime:.0f} s (Azure VM stopped -> on-premises heartbeat)"
                if downtime is not None
                else ""
            ),
        )
    )


@bp.activity_trigger(input_name="payload")
def end_planned_failover_job(payload: dict[str, Any]) -> dict[str, Any]:
    outcome = planned.FailbackOutcome.model_validate(payload)
    services = get_services()
    cancel = planned.end_planned_failover(
        services.repos, outcome, now=services.clock(), health=services.health
    )
    return _json(Recorded(done=cancel is not None, message=cancel or ""))


@bp.activity_trigger(input_name="payload")
def end_cancel_job(payload: dict[str, Any]) -> dict[str, Any]:
    outcome = planned.FailbackOutcome.model_validate(payload)
    services = get_services()
    planned.end_cancel(services.repos, outcome, now=services.clock(), health=services.health)
    return _json(Done())
