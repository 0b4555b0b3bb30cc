"""Activities of the machine replication orchestration: all of its I/O, each one idempotent.

Activities take and return JSON (pydantic `model_dump` in, `model_validate` out). Transient failures
(storage or Cosmos unavailable) raise and are retried by the orchestrator; a permanent verdict about
the data (a corrupt or truncated upload) is returned as a value, because retrying cannot change it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import azure.durable_functions as df
from azure.core.exceptions import ResourceNotFoundError

from orchestrators.replication_contracts import (
    CycleCompletion,
    CycleRejection,
    DiskApplied,
    DiskApply,
    JobRef,
    MachineRef,
    ProgressUpdate,
    ResyncRequest,
    SnapshotRequest,
    SupersededCycles,
)
from shared.adapters.documents import Query
from shared.apply_engine import CycleRejected, ManifestMismatch, apply_extents, load_manifest
from shared.delta_manifest import cycle_prefix
from shared.domain.command import CommandKind
from shared.domain.cycle import CycleState, RecoveryPoint
from shared.domain.errors import NotFound
from shared.domain.event import Event, Severity
from shared.domain.job import JobStatus
from shared.domain.lifecycle import MachineState, transition
from shared.domain.machine import Machine
from shared.replica_disks import (
    ReplicaDiskSpec,
    create_recovery_point,
    create_replica_disk,
    delete_replica_disk,
    replica_blob_name,
)
from shared.replication_storage import cache_container, ensure_containers_exist, replica_container
from shared.services import cycles
from shared.services.bootstrap import get_services
from shared.services.commands import queue_command
from shared.services.events import record_event
from shared.services.replication import record_cycle_failed
from shared.telemetry import get_telemetry

log = logging.getLogger(__name__)
bp = df.Blueprint()

CYCLE_FAILED_FOR_DISK = "Replication cycle failed for disk"


@bp.activity_trigger(input_name="payload")
def load_replication_view(payload: dict[str, Any]) -> dict[str, Any]:
    ref = MachineRef.model_validate(payload)
    return cycles.replication_view(get_services().repos, ref.machine_id).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def create_replica_disks(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Step 'Create replica disks': one fixed-VHD page blob per source disk (idempotent)."""
    ref = JobRef.model_validate(payload)
    services = get_services()
    machine = services.repos.machines.require(ref.machine_id).item
    ensure_containers_exist()
    created = [
        create_replica_disk(replica_container(), ReplicaDiskSpec(machine_id=machine.id, disk_id=d.id,
                                                                 disk_size=d.size_bytes))
        for d in machine.inventory.disks
    ]
    _mark_step(ref, "Create replica disks", JobStatus.SUCCEEDED)
    return [c.model_dump(mode="json") for c in created]


@bp.activity_trigger(input_name="payload")
def start_initial_replication(payload: dict[str, Any]) -> None:
    """Step 'Start initial replication': the machine waits for its initial copy; the appliance is told."""
    ref = JobRef.model_validate(payload)
    services = get_services()
    now = services.clock()

    def begin(machine: Machine) -> None:
        if machine.state is MachineState.ENABLING_REPLICATION:
            transition(machine, MachineState.INITIAL_REPLICATION, action="start initial replication")
            machine.replication.progress_percent = 0.0
            machine.updated_at = now

    services.repos.machines.update_with_retry(ref.machine_id, begin)
    queue_command(services.repos, command_id=f"{ref.job_id}-initial", machine_id=ref.machine_id,
                  kind=CommandKind.RUN_CYCLE, cycle_kind="initial", now=now)
    job = services.repos.jobs.require(ref.job_id).item
    cycles.finish_job(services.repos, job, JobStatus.SUCCEEDED, now=now)


@bp.activity_trigger(input_name="payload")
def fail_job(payload: dict[str, Any]) -> None:
    ref = JobRef.model_validate(payload)
    services = get_services()
    job = services.repos.jobs.require(ref.job_id).item
    if not job.status.finished:
        cycles.finish_job(services.repos, job, JobStatus.FAILED, now=services.clock(),
                          error_message=str(payload.get("message") or "the job failed"))


@bp.activity_trigger(input_name="payload")
def remove_replication_data(payload: dict[str, Any]) -> None:
    """Stop replication / complete migration: replicas (with every recovery point) and cached uploads go."""
    ref = JobRef.model_validate(payload)
    services = get_services()
    machine = services.repos.machines.require(ref.machine_id).item
    for disk in machine.inventory.disks:
        delete_replica_disk(replica_container(), replica_blob_name(machine.id, disk.id))
    _delete_prefix(f"{machine.id}/")
    pending = services.repos.cycles.query(
        Query(equals={"machineId": machine.id, "state": CycleState.RECEIVED.value}), partition_key=machine.id
    )
    cycles.mark_cycles(services.repos, machine.id, [c.id for c in pending], CycleState.REJECTED,
                       error="replication stopped before this cycle was applied")

    def forget_points(m: Machine) -> None:
        m.replication.recovery_points = []
        m.replication.progress_percent = 0.0

    services.repos.machines.update_with_retry(machine.id, forget_points)
    job = services.repos.jobs.require(ref.job_id).item
    cycles.finish_job(services.repos, job, JobStatus.SUCCEEDED, now=services.clock())


@bp.activity_trigger(input_name="payload")
def apply_cycle_disk(payload: dict[str, Any]) -> dict[str, Any]:
    request = DiskApply.model_validate(payload)
    if request.base:
        # A whole-disk copy may (re)create its replica; a delta never does: applying a delta to an empty
        # replica would silently produce a disk that never existed.
        create_replica_disk(replica_container(), ReplicaDiskSpec(
            machine_id=request.machine_id, disk_id=request.disk_id, disk_size=request.disk_size))
    telemetry = get_telemetry()
    try:
        with telemetry.span("replication.apply_disk", machine_id=request.machine_id, cycle_id=request.cycle_id,
                            attributes={"migrate.disk_id": request.disk_id}):
            manifest = load_manifest(cache_container(), request.manifest_blob, machine_id=request.machine_id,
                                     cycle_id=request.cycle_id)
            if manifest.disk_id != request.disk_id:
                raise ManifestMismatch(
                    f"the event lists {request.manifest_blob} for disk {request.disk_id}, but that manifest "
                    f"describes disk {manifest.disk_id}"
                )
            replica = replica_container().get_blob_client(replica_blob_name(request.machine_id, request.disk_id))
            result = apply_extents(manifest, cache=cache_container(), replica=replica)
    except CycleRejected as rejected:
        return DiskApplied(disk_id=request.disk_id, ok=False, error_code=rejected.code,
                           error_message=rejected.message).model_dump(mode="json")
    except NotFound as missing:  # the replica of a delta is gone: only a resync can rebuild it
        return DiskApplied(disk_id=request.disk_id, ok=False, error_code="ReplicaMissing",
                           error_message=missing.message).model_dump(mode="json")
    telemetry.record_bytes_applied(result.bytes_applied, machine_id=request.machine_id)
    blobs = sorted({e.blob for e in manifest.extents} | {request.manifest_blob})
    return DiskApplied(disk_id=request.disk_id, ok=True, bytes_applied=result.bytes_applied,
                       data_blobs=blobs).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def snapshot_recovery_point(payload: dict[str, Any]) -> dict[str, Any]:
    """One blob snapshot per disk, tagged with the cycle: idempotent by cycle id."""
    request = SnapshotRequest.model_validate(payload)
    snapshots = {
        disk_id: create_recovery_point(replica_container(), replica_blob_name(request.machine_id, disk_id),
                                       cycle_id=request.cycle_id, sequence=request.sequence,
                                       consistency=request.consistency)
        for disk_id in request.disk_ids
    }
    newest = max(s.created_at for s in snapshots.values())
    point = RecoveryPoint(
        id=f"{request.sequence:010d}-{request.cycle_id}",
        cycle_id=request.cycle_id,
        time=newest,
        consistency=request.consistency,
        disk_snapshots={disk_id: s.snapshot for disk_id, s in snapshots.items()},
    )
    return point.model_dump(mode="json", by_alias=True)


@bp.activity_trigger(input_name="payload")
def complete_cycle(payload: dict[str, Any]) -> dict[str, Any]:
    """Record the cycle (watermark, recovery point, retention), then delete what retention dropped and
    the cycle's cached uploads. Deleting last means a crash in between only leaves garbage, never a gap."""
    completion = CycleCompletion.model_validate(payload)
    services = get_services()
    now = services.clock()
    outcome = cycles.CycleOutcome(cycle=completion.cycle, recovery_point=completion.recovery_point,
                                  applied_at=now, bytes_applied=completion.bytes_applied)
    dropped = cycles.complete_cycle(services.repos, outcome, completion.policy)
    for point in dropped:
        for disk_id, snapshot in point.disk_snapshots.items():
            with contextlib.suppress(ResourceNotFoundError):
                replica_container().get_blob_client(replica_blob_name(completion.cycle.machine_id, disk_id),
                                                    snapshot=snapshot).delete_blob()
    _delete_prefix(cycle_prefix(completion.cycle.machine_id, completion.cycle.id), also=completion.artefacts)
    received_at = completion.cycle.received_at
    get_telemetry().record_cycle_duration((now - received_at).total_seconds(),
                                          machine_id=completion.cycle.machine_id,
                                          cycle_kind=completion.cycle.kind.value, outcome="succeeded")
    return {"droppedRecoveryPoints": [p.id for p in dropped]}


@bp.activity_trigger(input_name="payload")
def reject_cycle(payload: dict[str, Any]) -> None:
    """A cycle whose upload is corrupt, truncated or missing: nothing was written. Keep the verdict,
    tell the operator why, and ask the appliance to resync the affected disks."""
    rejection = CycleRejection.model_validate(payload)
    services = get_services()
    now = services.clock()
    summary = "; ".join(f"{d.disk_id}: {d.error_message}" for d in rejection.rejected_disks)
    cycles.mark_cycles(services.repos, rejection.machine_id, [rejection.cycle_id], CycleState.REJECTED, error=summary)
    for disk in rejection.rejected_disks:
        event = Event(
            id=f"{rejection.cycle_id}-{disk.disk_id}-rejected",
            machine_id=rejection.machine_id,
            time=now,
            type=CYCLE_FAILED_FOR_DISK,
            severity=Severity.WARNING,
            message=f"Replication cycle {rejection.cycle_id} was rejected for disk {disk.disk_id}: "
                    f"{disk.error_message} The replica was left unchanged; the disk will be resynchronized.",
            error_code=disk.error_code,
            disk_id=disk.disk_id,
            cycle_id=rejection.cycle_id,
            causes=["The upload from the appliance is incomplete or was corrupted in transit or at rest."],
            recommendations=["No action is needed: the control plane asked the appliance to resynchronize "
                             "the disk. If it keeps happening, check the appliance's storage and network."],
        )
        record_cycle_failed(services.repos, event, needs_resync=True)
        queue_command(services.repos, command_id=f"{rejection.cycle_id}-{disk.disk_id}-resync",
                      machine_id=rejection.machine_id, kind=CommandKind.RESYNC_DISK, disk_id=disk.disk_id,
                      cycle_kind="resync", now=now)
    _delete_prefix(cycle_prefix(rejection.machine_id, rejection.cycle_id))


@bp.activity_trigger(input_name="payload")
def request_resync(payload: dict[str, Any]) -> None:
    """A sequence number stayed missing too long: resync every disk (the next cycle is a whole copy)."""
    request = ResyncRequest.model_validate(payload)
    services = get_services()
    now = services.clock()
    machine = services.repos.machines.require(request.machine_id).item
    for disk in machine.inventory.disks:
        queue_command(services.repos, command_id=f"{request.request_id}-{disk.id}", machine_id=machine.id,
                      kind=CommandKind.RESYNC_DISK, disk_id=disk.id, cycle_kind="resync", now=now)
    record_event(services.repos, Event(
        id=f"{request.request_id}-resync",
        machine_id=machine.id,
        time=now,
        type="Resynchronization requested",
        severity=Severity.WARNING,
        message=request.reason,
        error_code="CycleSequenceGap" if request.missing_sequence is not None else None,
        causes=["A replication cycle never arrived (lost upload or appliance restart), so later cycles "
                "cannot be applied without leaving a hole in the replica."],
        recommendations=["No action is needed: every disk is resynchronized and replication resumes. "
                         "Check the appliance's connectivity if this repeats."],
    ))


@bp.activity_trigger(input_name="payload")
def supersede_cycles(payload: dict[str, Any]) -> None:
    request = SupersededCycles.model_validate(payload)
    services = get_services()
    cycles.mark_cycles(services.repos, request.machine_id, request.cycle_ids, CycleState.REJECTED,
                       error="superseded: older than the replica's watermark or a newer whole-disk copy")
    for cycle_id in request.cycle_ids:
        _delete_prefix(cycle_prefix(request.machine_id, cycle_id))


@bp.activity_trigger(input_name="payload")
def report_progress(payload: dict[str, Any]) -> None:
    update = ProgressUpdate.model_validate(payload)
    cycles.record_progress(get_services().repos, update.machine_id, update.percent)


def _delete_prefix(prefix: str, also: list[str] | None = None) -> None:
    container = cache_container()
    names = {b.name for b in container.list_blobs(name_starts_with=prefix)} | set(also or [])
    for name in sorted(names):
        with contextlib.suppress(ResourceNotFoundError):
            container.delete_blob(name)


def _mark_step(ref: JobRef, step_name: str, status: JobStatus) -> None:
    services = get_services()
    now = services.clock()

    def mark(job: Any) -> None:
        for index, step in enumerate(job.steps):
            if step.name == step_name and step.status is not status:
                job.steps[index] = step.model_copy(update={"status": status, "start_time": step.start_time or now,
                                                           "end_time": now})
        job.updated_at = now

    services.repos.jobs.update_with_retry(ref.job_id, mark)

