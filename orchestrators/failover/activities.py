"""Activities of the failover orchestration: its checks, the source's shutdown, holding replication,
picking the recovery point, starting the VM, the failback baseline and the job's end. Hydration's own
activities (the copies, the temporary VM, the VM itself) are in `orchestrators.hydration.activities`.

Each is idempotent: the shutdown command is queued under an id derived from the job, the baseline
snapshots are named after the disk and the job, starting a running VM changes nothing, and the job's
end converges.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from orchestrators.blueprints import durable_blueprint
from orchestrators.failover.contracts import (
    Acknowledged,
    BaselineRequest,
    BaselineResult,
    FailoverOutcome,
    PendingDataState,
    PointPicked,
    PointsDeleted,
    Polling,
    ShutdownRequested,
    ShutdownWatch,
    StartVm,
    StepRef,
    StepResult,
    SwapDisks,
    baseline_snapshot_name,
)
from orchestrators.hydration.activities import arm_clients, migration_settings, replica_container
from orchestrators.hydration.contracts import Done
from shared.bootstrap import get_services
from shared.domain.errors import DomainError
from shared.failover import service as failover
from shared.failover.settings import effective_settings
from shared.migration import resources as ops
from shared.migration.resource_kinds import parse_arm_id
from shared.platform.arm_clients import ArmClients
from shared.platform.arm_errors import ArmError, translate_arm_error
from shared.replication.replica_disks import replica_blob_name

bp = durable_blueprint()


@bp.activity_trigger(input_name="payload")
def check_failover_prerequisites(payload: dict[str, Any]) -> dict[str, Any]:
    """The machine is failing over under this job, with failover settings and a recovery point."""
    ref = StepRef.model_validate(payload)
    repos = get_services().repos
    try:
        failover.replication_held(repos, ref.machine_id, ref.job_id)  # failing over under this job
        machine = repos.machines.require(ref.machine_id).item
        settings = effective_settings(machine)
    except DomainError as exc:
        return StepResult(ok=False, message=str(exc), error_code=exc.code).model_dump(mode="json")
    return StepResult(
        ok=True,
        message=f"VM {settings.vm_name} ({settings.vm_size}) in {settings.resource_group}, subnet "
        f"{settings.subnet}; {len(machine.replication.recovery_points)} recovery point(s)",
    ).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def request_source_shutdown(payload: dict[str, Any]) -> dict[str, Any]:
    ref = StepRef.model_validate(payload)
    services = get_services()
    command_id = failover.queue_source_shutdown(
        services.repos, ref.machine_id, ref.job_id, now=services.clock()
    )
    settings = migration_settings()
    return ShutdownRequested(
        command_id=command_id,
        poll_seconds=settings.final_cycle_poll.total_seconds(),
        timeout_seconds=settings.failover_shutdown_timeout.total_seconds(),
    ).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def check_source_shutdown(payload: dict[str, Any]) -> dict[str, Any]:
    watch = ShutdownWatch.model_validate(payload)
    acknowledged = failover.source_shutdown_acknowledged(
        get_services().repos, watch.machine_id, watch.command_id
    )
    return Acknowledged(acknowledged=acknowledged).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def hold_replication(payload: dict[str, Any]) -> dict[str, Any]:
    """Replication is held from the moment the machine is FailingOver: say where it stopped, and how the
    pending data step waits."""
    ref = StepRef.model_validate(payload)
    message = failover.replication_held(get_services().repos, ref.machine_id, ref.job_id)
    settings = migration_settings()
    return Polling(
        poll_seconds=settings.final_cycle_poll.total_seconds(),
        timeout_seconds=settings.final_cycle_timeout.total_seconds(),
        message=message,
    ).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def check_pending_data(payload: dict[str, Any]) -> dict[str, Any]:
    ref = StepRef.model_validate(payload)
    state = failover.pending_data(get_services().repos, ref.machine_id, ref.job_id)
    return PendingDataState(done=state.done, message=state.message).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def pick_failover_point(payload: dict[str, Any]) -> dict[str, Any]:
    ref = StepRef.model_validate(payload)
    try:
        point = failover.choose_point(get_services().repos, ref.machine_id, ref.job_id)
    except DomainError as exc:
        return PointPicked(ok=False, message=str(exc), error_code=exc.code).model_dump(mode="json")
    return PointPicked(
        ok=True,
        recovery_point_id=point.id,
        message=f"recovery point {point.id} ({point.consistency.value}-consistent, {point.time:%Y-%m-%d %H:%M:%S} UTC)",
    ).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def start_failover_vm(payload: dict[str, Any]) -> dict[str, Any]:
    return _set_power(StartVm.model_validate(payload), ops.start_vm)


@bp.activity_trigger(input_name="payload")
def take_failback_baseline(payload: dict[str, Any]) -> dict[str, Any]:
    """The failback baseline: the incremental snapshots of the VM's disks that hydration took right after
    importing them (so they hold the recovery point's content), each found complete and of its disk.
    Taking them here instead would miss hydration's and the first boot's writes to the OS disk."""
    request = BaselineRequest.model_validate(payload)
    found: list[str] = []
    try:
        with arm_clients() as clients:
            for disk_id in request.disk_ids:
                found.append(_baseline_of(clients, disk_id, request.job_id))
    except ArmError as exc:
        return BaselineResult(ok=False, snapshot_ids=found, message=str(exc), error_code=exc.code).model_dump(
            mode="json"
        )
    except _NoBaseline as exc:
        return BaselineResult(
            ok=False, snapshot_ids=found, message=str(exc), error_code="FailbackBaselineMissing"
        ).model_dump(mode="json")
    return BaselineResult(ok=True, snapshot_ids=found).model_dump(mode="json")


class _NoBaseline(Exception):
    pass


def _baseline_of(clients: ArmClients, disk_id: str, job_id: str) -> str:
    parsed = parse_arm_id(disk_id)
    name = baseline_snapshot_name(parsed.name, job_id)
    try:
        snapshot = clients.compute.snapshots.get(parsed.resource_group, name)
    except ResourceNotFoundError:
        raise _NoBaseline(
            f"the failback baseline snapshot {name} of disk {parsed.name} does not exist"
        ) from None
    except HttpResponseError as exc:
        raise translate_arm_error(exc, operation=f"read snapshot {name}") from exc
    props = snapshot.properties
    state = props.provisioning_state if props else None
    source = props.creation_data.source_resource_id if props and props.creation_data else None
    if props is None or state not in (None, "Succeeded") or (source or "").lower() != disk_id.lower():
        raise _NoBaseline(
            f"the failback baseline snapshot {name} is not a complete snapshot of disk {parsed.name} "
            f"(state {state}, source {source})"
        )
    return str(snapshot.id)


@bp.activity_trigger(input_name="payload")
def end_failover_job(payload: dict[str, Any]) -> dict[str, Any]:
    outcome = FailoverOutcome.model_validate(payload)
    services = get_services()
    failover.end_failover(services.repos, outcome, now=services.clock(), health=services.health)
    return Done().model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def stop_failover_vm(payload: dict[str, Any]) -> dict[str, Any]:
    """Stop and deallocate the VM: Azure swaps an OS disk only then."""
    return _set_power(StartVm.model_validate(payload), ops.deallocate_vm)


def _set_power(request: StartVm, operation: Callable[[ArmClients, str, str], ops.VmPower]) -> dict[str, Any]:
    vm = parse_arm_id(request.vm_id)
    try:
        with arm_clients() as clients:
            power = operation(clients, vm.resource_group, vm.name)
    except ArmError as exc:
        return StepResult(ok=False, message=str(exc), error_code=exc.code).model_dump(mode="json")
    return StepResult(ok=True, message=f"VM {power.name} is {power.power_state.value}").model_dump(
        mode="json"
    )


@bp.activity_trigger(input_name="payload")
def swap_failover_vm_disks(payload: dict[str, Any]) -> dict[str, Any]:
    request = SwapDisks.model_validate(payload)
    vm = parse_arm_id(request.vm_id)
    try:
        with arm_clients() as clients:
            swapped = ops.swap_vm_disks(
                clients,
                vm.resource_group,
                vm.name,
                os_disk_id=request.os_disk_id,
                data_disk_ids=request.data_disk_ids,
            )
    except (ArmError, ValueError) as exc:
        code = exc.code if isinstance(exc, ArmError) else "SwapFailed"
        return StepResult(ok=False, message=str(exc), error_code=code).model_dump(mode="json")
    return StepResult(
        ok=True,
        message=f"VM {swapped.name} now has {1 + len(swapped.data_disk_ids)} disk(s) of the new point",
    ).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def delete_other_recovery_points(payload: dict[str, Any]) -> dict[str, Any]:
    """Every recovery point but the failover's: its blob snapshots, then its catalog entry (a point whose
    snapshots could not all be deleted stays listed, so a second commit finds it)."""
    ref = StepRef.model_validate(payload)
    services = get_services()
    replicas = replica_container()
    deleted: list[str] = []
    failed: list[str] = []
    for point in failover.points_to_delete(services.repos, ref.machine_id):
        complete = True
        for disk_id, snapshot in point.disk_snapshots.items():
            blob = replicas.get_blob_client(replica_blob_name(ref.machine_id, disk_id), snapshot=snapshot)
            try:
                blob.delete_blob()
            except ResourceNotFoundError:
                pass
            except HttpResponseError as exc:
                complete = False
                failed.append(f"{disk_id}@{snapshot}: {exc.message}")
        if complete:
            deleted.append(point.id)
    failover.forget_points(services.repos, ref.machine_id, deleted, now=services.clock())
    machine = services.repos.machines.require(ref.machine_id).item
    kept = machine.failover.recovery_point_id if machine.failover else None
    return PointsDeleted(deleted=deleted, failed=failed, kept=kept).model_dump(mode="json")
