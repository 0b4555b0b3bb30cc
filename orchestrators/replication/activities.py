"""Activities of the machine replication orchestration: all of its I/O, each one idempotent.

Activities take and return JSON (pydantic `model_dump` in, `model_validate` out). Transient failures
(storage or Cosmos unavailable) raise and are retried by the orchestrator; a permanent verdict about
the data (a corrupt or truncated upload) is returned as a value, because retrying cannot change it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from orchestrators.blueprints import durable_blueprint
from orchestrators.replication.contracts import (
    CycleCompleted,
    CycleCompletion,
    CycleRejection,
    DiskApplied,
    DiskApply,
    DiskUnitPlan,
    DisposalRequest,
    DisposalResult,
    DisposeTimeout,
    GenerationView,
    HealthTimings,
    JobFailure,
    JobRef,
    MachineRef,
    ProgressUpdate,
    RestoreRequest,
    RestoreState,
    ResyncRequest,
    SnapshotRequest,
    SnapshotTaken,
    SupersededCycles,
    UnitApply,
    UploadDeadline,
)
from shared import health
from shared.appliances.commands import queue_command
from shared.bootstrap import get_services
from shared.domain.command import CommandKind
from shared.domain.cycle import CycleState, RecoveryPoint
from shared.domain.errors import DomainError, NotFound
from shared.domain.job import JobError, JobStatus, current_step
from shared.domain.lifecycle import MachineState, transition
from shared.domain.machine import DiskCopyProgress, Machine
from shared.health.catalog import CATALOG, control_plane_error, match_domain_error
from shared.jobs import lifecycle as jobs
from shared.jobs import starts
from shared.platform.documents import Query
from shared.platform.storage import ensure_containers_exist
from shared.platform.telemetry import get_telemetry
from shared.replication import cycles
from shared.replication.apply_engine import (
    ApplyOptions,
    CycleRejected,
    ProgressReport,
    apply_extents,
    load_manifest,
)
from shared.replication.delta_manifest import cycle_prefix, manifest_blob_name
from shared.replication.machines import STEP_CREATE_REPLICAS
from shared.replication.manifest_stream import StreamedManifest
from shared.replication.recovery_points import pinned_snapshots, pins_container_of
from shared.replication.replica_disks import (
    ReplicaDiskSpec,
    ReplicaNotFound,
    create_recovery_point,
    create_replica_disk,
    delete_replica_disk,
    replica_blob_name,
    restore_replica,
)
from shared.replication.units import apply_unit, plan_units

log = logging.getLogger(__name__)
bp = durable_blueprint()


def cache_container() -> ContainerClient:
    return get_services().cache


def replica_container() -> ContainerClient:
    return get_services().replicas


class ReportedDomainError(DomainError):
    """A DomainError rebuilt from an activity's result (code, message, details) for the catalog."""

    def __init__(self, code: str, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message, details=details)
        self.code = code


@bp.activity_trigger(input_name="payload")
def load_replication_view(payload: dict[str, Any]) -> dict[str, Any]:
    ref = MachineRef.model_validate(payload)
    settings = get_services().health
    return GenerationView(
        view=cycles.replication_view(get_services().repos, ref.machine_id),
        timings=HealthTimings(
            dispose_timeout_seconds=settings.dispose_timeout.total_seconds(),
            dispose_retry_seconds=settings.dispose_retry.total_seconds(),
        ),
    ).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def create_replica_disks(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Step 'Create replica disks': one fixed-VHD page blob per source disk (idempotent)."""
    ref = JobRef.model_validate(payload)
    services = get_services()
    if not starts.acknowledge(services.repos, ref.machine_id, ref.job_id):
        log.warning("job %s was rolled back before it began: replica disks not created", ref.job_id)
        return []
    machine = services.repos.machines.require(ref.machine_id).item
    ensure_containers_exist(services.cache, services.replicas)
    created = [
        create_replica_disk(
            replica_container(), ReplicaDiskSpec(machine_id=machine.id, disk_id=d.id, disk_size=d.size_bytes)
        )
        for d in machine.inventory.disks
    ]
    jobs.finish_step(
        services.repos, ref.job_id, STEP_CREATE_REPLICAS, JobStatus.SUCCEEDED, now=services.clock()
    )
    return [c.model_dump(mode="json") for c in created]


@bp.activity_trigger(input_name="payload")
def start_initial_replication(payload: dict[str, Any]) -> None:
    """Step 'Start initial replication': the machine waits for its initial copy; the appliance is told."""
    ref = JobRef.model_validate(payload)
    services = get_services()
    now = services.clock()
    if not starts.acknowledge(services.repos, ref.machine_id, ref.job_id):
        return  # rolled back (see create_replica_disks): the job ended NotStarted

    def begin(machine: Machine) -> None:
        if machine.state is MachineState.ENABLING_REPLICATION:
            transition(machine, MachineState.INITIAL_REPLICATION, action="start initial replication")
            machine.replication.progress_percent = 0.0
            machine.updated_at = now

    services.repos.machines.update_with_retry(ref.machine_id, begin)
    queue_command(
        services.repos,
        command_id=f"{ref.job_id}-initial",
        machine_id=ref.machine_id,
        kind=CommandKind.RUN_CYCLE,
        cycle_kind="initial",
        now=now,
    )
    jobs.finish(services.repos, ref.job_id, JobStatus.SUCCEEDED, now=now)


@bp.activity_trigger(input_name="payload")
def fail_job(payload: dict[str, Any]) -> None:
    """The job's step that was running failed (retries exhausted); the steps after it never ran."""
    failure = JobFailure.model_validate(payload)
    services = get_services()
    job = jobs.require(services.repos, failure.job_id)
    jobs.finish(
        services.repos,
        failure.job_id,
        JobStatus.FAILED,
        now=services.clock(),
        error=JobError(code="Failed", message=failure.message or "the job failed"),
        # Replication jobs run their steps in order: the first one not finished is the one that failed.
        failed_step=current_step(job),
    )


@bp.activity_trigger(input_name="payload")
def remove_replication_data(payload: dict[str, Any]) -> None:
    """Stop replication / complete migration: replicas (with every recovery point) and cached uploads go."""
    ref = JobRef.model_validate(payload)
    services = get_services()
    # The job's first step: its start is settled here, or, rolled back meanwhile, the data is kept.
    if not starts.acknowledge(services.repos, ref.machine_id, ref.job_id):
        log.warning("job %s was rolled back before it began: the replication data is kept", ref.job_id)
        return
    machine = services.repos.machines.require(ref.machine_id).item
    for disk in machine.inventory.disks:
        delete_replica_disk(replica_container(), replica_blob_name(machine.id, disk.id))
    leftovers = _dispose(f"{machine.id}/")
    if leftovers:
        raise RuntimeError(
            f"{len(leftovers)} cached upload(s) of {machine.id} could not be deleted; retrying"
        )
    pending = services.repos.cycles.query(
        Query(equals={"machineId": machine.id, "state": CycleState.RECEIVED.value}), partition_key=machine.id
    )
    cycles.mark_cycles(
        services.repos,
        machine.id,
        [c.id for c in pending],
        CycleState.REJECTED,
        error="replication stopped before this cycle was applied",
    )

    def forget_points(m: Machine) -> None:
        m.replication.recovery_points = []
        m.replication.progress_percent = 0.0

    services.repos.machines.update_with_retry(machine.id, forget_points)
    jobs.finish(services.repos, ref.job_id, JobStatus.SUCCEEDED, now=services.clock())


@contextlib.contextmanager
def _disk_manifest(request: DiskApply, span: str) -> Iterator[StreamedManifest]:
    """The disk's manifest of the cycle, streamed (a manifest of another disk, machine or cycle is
    ManifestMismatch), inside the telemetry span of the work done with it."""
    with (
        get_telemetry().span(
            span,
            machine_id=request.machine_id,
            cycle_id=request.cycle_id,
            attributes={"migrate.disk_id": request.disk_id},
        ),
        load_manifest(
            cache_container(),
            request.manifest_blob,
            machine_id=request.machine_id,
            cycle_id=request.cycle_id,
            disk_id=request.disk_id,
        ) as manifest,
    ):
        yield manifest


@bp.activity_trigger(input_name="payload")
def apply_cycle_disk(payload: dict[str, Any]) -> dict[str, Any]:
    """Apply one disk's delta in one pass (verified while written; a damaged upload found after a write
    answers `replica_changed`, and the orchestration restores the previous recovery point)."""
    return _process_disk(DiskApply.model_validate(payload)).model_dump(mode="json")


def _process_disk(request: DiskApply) -> DiskApplied:
    if request.base:
        # A whole-disk copy may (re)create its replica; a delta never does: applying a delta to an empty
        # replica would silently produce a disk that never existed.
        create_replica_disk(
            replica_container(),
            ReplicaDiskSpec(
                machine_id=request.machine_id, disk_id=request.disk_id, disk_size=request.disk_size
            ),
        )
    try:
        with _disk_manifest(request, "replication.apply_disk") as manifest:
            replica = replica_container().get_blob_client(
                replica_blob_name(request.machine_id, request.disk_id)
            )
            result = apply_extents(
                manifest, cache=cache_container(), replica=replica, options=ApplyOptions(one_pass=True)
            )
            data_blobs = manifest.referenced_blob_sizes()
    except CycleRejected as rejected:
        return DiskApplied(
            disk_id=request.disk_id,
            ok=False,
            error_code=rejected.code,
            error_message=rejected.message,
            error_details=rejected.details,
            replica_changed=rejected.replica_changed,
        )
    except NotFound as missing:  # the replica of a delta is gone: only a resync can rebuild it
        return DiskApplied(
            disk_id=request.disk_id, ok=False, error_code="ReplicaNotFound", error_message=missing.message
        )
    blobs = sorted(set(data_blobs) | {request.manifest_blob})
    return DiskApplied(disk_id=request.disk_id, ok=True, bytes_applied=result.bytes_applied, data_blobs=blobs)


@bp.activity_trigger(input_name="payload")
def plan_cycle_disk_units(payload: dict[str, Any]) -> dict[str, Any]:
    """Cut one disk's whole-disk copy (initial or resync) into units, each applied by `apply_disk_unit`."""
    request = DiskApply.model_validate(payload)
    services = get_services()
    create_replica_disk(
        replica_container(),
        ReplicaDiskSpec(machine_id=request.machine_id, disk_id=request.disk_id, disk_size=request.disk_size),
    )
    try:
        with _disk_manifest(request, "replication.plan_units") as manifest:
            units = plan_units(manifest, cache_container())
            blobs = sorted(set(manifest.referenced_blob_sizes()) | {request.manifest_blob})
    except CycleRejected as rejected:
        return DiskUnitPlan(
            disk_id=request.disk_id,
            ok=False,
            error_code=rejected.code,
            error_message=rejected.message,
            error_details=rejected.details,
        ).model_dump(mode="json")
    return DiskUnitPlan(
        disk_id=request.disk_id,
        ok=True,
        units=units,
        parallelism=services.settings.replication.unit_parallelism,
        data_blobs=blobs + [u.shard_blob for u in units],
    ).model_dump(mode="json")


def _unit_progress(request: UnitApply) -> ProgressReport:
    """Records a whole-disk copy's bytes on the machine while one of its units is written, so the machine
    view's bytesApplied moves inside a unit too (at most once an interval: one machine write each)."""
    services = get_services()
    started_at = services.clock()

    def report(written: int) -> None:
        progress = DiskCopyProgress(
            disk_id=request.disk_id,
            cycle_id=request.cycle_id,
            bytes_to_copy=request.disk_bytes,
            bytes_applied=request.bytes_before + min(written, request.unit.bytes),
            started_at=started_at,
            updated_at=services.clock(),
        )
        cycles.record_copy_progress(services.repos, request.machine_id, progress)

    return report


@bp.activity_trigger(input_name="payload")
def apply_disk_unit(payload: dict[str, Any]) -> dict[str, Any]:
    """Verify and write one unit of a whole-disk copy (idempotent: a retry after a crash re-applies it)."""
    request = UnitApply.model_validate(payload)
    replica = replica_container().get_blob_client(replica_blob_name(request.machine_id, request.disk_id))
    try:
        with get_telemetry().span(
            "replication.apply_unit",
            machine_id=request.machine_id,
            cycle_id=request.cycle_id,
            attributes={"migrate.disk_id": request.disk_id, "migrate.unit": request.unit.index},
        ):
            result = apply_unit(
                request.unit,
                cache=cache_container(),
                replica=replica,
                options=ApplyOptions(
                    one_pass=True,
                    progress_interval_seconds=get_services().settings.copy_progress_interval_seconds,
                ),
                progress=_unit_progress(request) if request.disk_bytes else None,
            )
    except CycleRejected as rejected:
        return DiskApplied(
            disk_id=request.disk_id,
            ok=False,
            error_code=rejected.code,
            error_message=rejected.message,
            error_details=rejected.details,
        ).model_dump(mode="json")
    except NotFound as missing:
        return DiskApplied(
            disk_id=request.disk_id, ok=False, error_code="ReplicaNotFound", error_message=missing.message
        ).model_dump(mode="json")
    return DiskApplied(disk_id=request.disk_id, ok=True, bytes_applied=result.bytes_applied).model_dump(
        mode="json"
    )


@bp.activity_trigger(input_name="payload")
def restore_replicas(payload: dict[str, Any]) -> dict[str, Any]:
    """Start (or look at) putting each replica back to the machine's latest recovery point; never waits.
    Called again after a durable timer until done."""
    request = RestoreRequest.model_validate(payload)
    machine = get_services().repos.machines.require(request.machine_id).item
    point = machine.replication.latest_point()
    restored, without_point, done = [], [], True
    for disk_id in request.disk_ids:
        snapshot = None if point is None else point.disk_snapshots.get(disk_id)
        if snapshot is None:
            without_point.append(disk_id)
            continue
        state = restore_replica(
            replica_container(),
            replica_blob_name(request.machine_id, disk_id),
            snapshot,
            reason=request.cycle_id,
        )
        restored.append(disk_id)
        done = done and state.done
    return RestoreState(done=done, restored=restored, without_point=without_point).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def snapshot_recovery_point(payload: dict[str, Any]) -> dict[str, Any]:
    """One blob snapshot of every disk of the machine, the cycle's and the unchanged ones alike, tagged
    with the cycle: idempotent by cycle id. No point when a disk has no replica yet."""
    request = SnapshotRequest.model_validate(payload)
    snapshots = {}
    missing = []
    for disk_id in request.disk_ids:
        try:
            snapshots[disk_id] = create_recovery_point(
                replica_container(),
                replica_blob_name(request.machine_id, disk_id),
                cycle_id=request.cycle_id,
                sequence=request.sequence,
                consistency=request.consistency,
            )
        except ReplicaNotFound:
            missing.append(disk_id)
    if missing or not snapshots:
        # The snapshots already taken stay with their blobs; retention never sees them (no point names
        # them) and they go with the replica. A partial point would fail whoever picks it.
        return SnapshotTaken(recovery_point=None, missing_disks=missing).model_dump(mode="json")
    newest = max(s.created_at for s in snapshots.values())
    point = RecoveryPoint(
        id=f"{request.sequence:010d}-{request.cycle_id}",
        cycle_id=request.cycle_id,
        time=newest,
        consistency=request.consistency,
        disk_snapshots={disk_id: s.snapshot for disk_id, s in snapshots.items()},
    )
    return SnapshotTaken(recovery_point=point).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def complete_cycle(payload: dict[str, Any]) -> dict[str, Any]:
    """Record the cycle (watermark, recovery point, retention, health healed), then delete what retention
    dropped and the cycle's cached uploads. Deleting last means a crash in between only leaves garbage,
    never a gap; artefacts that cannot be deleted are returned, and the next cycle waits for them."""
    completion = CycleCompletion.model_validate(payload)
    services = get_services()
    now = services.clock()
    outcome = cycles.CycleOutcome(
        cycle=completion.cycle,
        recovery_point=completion.recovery_point,
        missing_disks=tuple(completion.missing_disks),
        applied_at=now,
        bytes_applied=completion.bytes_applied,
        started_at=completion.started_at,
    )
    recorded = cycles.complete_cycle(
        services.repos, outcome, completion.policy, services.health.rules, seen=completion.machine_seen
    )
    dropped = recorded.dropped
    # A test migration or migration copying a recovery point pins its snapshots: retention keeps those
    # blobs until the job releases them (release_recovery_point deletes what retention dropped meanwhile).
    pinned = (
        pinned_snapshots(pins_container_of(replica_container()), completion.cycle.machine_id)
        if dropped
        else frozenset()
    )
    for point in dropped:
        for disk_id, snapshot in point.disk_snapshots.items():
            if snapshot in pinned:
                continue
            with contextlib.suppress(ResourceNotFoundError):
                replica_container().get_blob_client(
                    replica_blob_name(completion.cycle.machine_id, disk_id), snapshot=snapshot
                ).delete_blob()
    undisposed = _dispose(
        cycle_prefix(completion.cycle.machine_id, completion.cycle.id), also=completion.artefacts
    )
    return CycleCompleted(
        dropped_recovery_points=[p.id for p in dropped], undisposed=undisposed, machine=recorded.machine
    ).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def dispose_artefacts(payload: dict[str, Any]) -> dict[str, Any]:
    """Another attempt at deleting an applied cycle's cache artefacts; returns what is still there."""
    request = DisposalRequest.model_validate(payload)
    remaining = _dispose(cycle_prefix(request.machine_id, request.cycle_id), also=request.blobs)
    return DisposalResult(remaining=remaining).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def report_dispose_timeout(payload: dict[str, Any]) -> None:
    """181008: the next cycle waited longer than the timeout for the previous cycle's disposal."""
    request = DisposeTimeout.model_validate(payload)
    services = get_services()
    health.report_dispose_timeout(
        services.repos,
        request.machine_id,
        blocked_cycle_id=request.blocked_cycle_id,
        previous_cycle_id=request.previous_cycle_id,
        remaining=request.remaining,
        waited=timedelta(seconds=request.waited_seconds),
        attempt=request.attempt,
        at=services.clock(),
        settings=services.health,
    )


@bp.activity_trigger(input_name="payload")
def time_out_uploads(payload: dict[str, Any]) -> list[str]:
    """The upload deadline of a started cycle passed: raise 1011 for each disk whose upload did not
    finish (its manifest, written last by the appliance, is not in the cache). A cycle that arrived in
    the meantime, or whose uploads all finished, is not a timeout. Returns the disks reported."""
    request = UploadDeadline.model_validate(payload)
    services = get_services()
    machine = services.repos.machines.require(request.machine_id).item
    watch = machine.replication.upload_watch
    if watch is None or watch.cycle_id != request.cycle_id:
        return []
    arrived = services.repos.cycles.get(request.cycle_id, partition_key=request.machine_id) is not None
    pending = [d for d in watch.disk_ids if d not in watch.timed_out_disks]
    late = (
        []
        if arrived
        else [
            d
            for d in pending
            if not cache_container()
            .get_blob_client(manifest_blob_name(machine.id, watch.cycle_id, d))
            .exists()
        ]
    )
    if not late:
        health.clear_upload_watch(services.repos, machine.id, watch.cycle_id)
        return []
    health.report_upload_timeouts(
        services.repos, machine, watch, late, at=services.clock(), settings=services.health
    )
    get_telemetry().cycle_failed(
        machine_id=machine.id,
        cycle_id=watch.cycle_id,
        error_code=CATALOG["DiskUploadTimedOut"].code,
        message=f"the upload of {', '.join(late)} did not finish in time",
        job_id=machine.active_job_id,
    )
    return late


@bp.activity_trigger(input_name="payload")
def reject_cycle(payload: dict[str, Any]) -> None:
    """A cycle whose upload is corrupt, truncated or missing: nothing was written. Keep the verdict, raise
    the catalog's error for each damaged disk, and ask the appliance to resync every disk the cycle carried:
    the rejected sequence number would otherwise leave a hole no later delta can fill."""
    rejection = CycleRejection.model_validate(payload)
    services = get_services()
    now = services.clock()
    summary = "; ".join(f"{d.disk_id}: {d.error_message}" for d in rejection.rejected_disks)
    cycles.mark_cycles(
        services.repos, rejection.machine_id, [rejection.cycle_id], CycleState.REJECTED, error=summary
    )
    machine = services.repos.machines.require(rejection.machine_id).item
    appliance = services.repos.appliances.get(machine.appliance_id)
    names = {d.id: d.name or d.id for d in machine.inventory.disks}
    failures = [
        health.Failure(
            match=match_domain_error(
                ReportedDomainError(
                    disk.error_code or "CycleRejected", disk.error_message or "rejected", disk.error_details
                ),
                cycle_id=rejection.cycle_id,
                disk_id=disk.disk_id,
            ),
            at=now,
            event_id=f"{rejection.cycle_id}-{disk.disk_id}-rejected",
            disk_id=disk.disk_id,
            cycle_id=rejection.cycle_id,
            values={"diskPath": names.get(disk.disk_id, disk.disk_id)},
        )
        for disk in rejection.rejected_disks
    ]
    recorded = health.record_failures(
        services.repos,
        machine.id,
        failures,
        settings=services.health,
        appliance_name=appliance.item.name if appliance is not None else None,
    )
    get_telemetry().cycle_failed(
        machine_id=machine.id,
        cycle_id=rejection.cycle_id,
        error_code=failures[0].match.error_code,
        message=summary,
        job_id=machine.active_job_id,
    )
    # The whole cycle is discarded, the healthy disks' changes too: every disk it carried is resynced,
    # or an appliance that resyncs only the disks it is told about would lose those changes.
    carried = set(rejection.carried_disk_ids) | {d.disk_id for d in rejection.rejected_disks}
    for disk_id in sorted(carried):
        if disk_id in recorded.resync_disks:
            continue  # the health rules' automatic repair already asked for it
        queue_command(
            services.repos,
            command_id=f"{rejection.cycle_id}-{disk_id}-resync",
            machine_id=rejection.machine_id,
            kind=CommandKind.RESYNC_DISK,
            disk_id=disk_id,
            cycle_kind="resync",
            now=now,
        )
    _dispose(cycle_prefix(rejection.machine_id, rejection.cycle_id))


@bp.activity_trigger(input_name="payload")
def request_resync(payload: dict[str, Any]) -> None:
    """A sequence number stayed missing too long: the catalog's CycleSequenceGap, whose automatic repair
    resyncs every disk (the next cycle is a whole copy)."""
    request = ResyncRequest.model_validate(payload)
    services = get_services()
    machine = services.repos.machines.require(request.machine_id).item
    match = control_plane_error(
        "CycleSequenceGap",
        expectedSequence=request.missing_sequence,
        buffered=request.buffered,
        maxGap=request.max_gap,
        latestSequence=None,
    )
    recorded = health.record_failures(
        services.repos,
        machine.id,
        [
            health.Failure(
                match=match,
                at=services.clock(),
                event_id=request.request_id,
                values={"reason": request.reason},
            )
        ],
        settings=services.health,
    )
    get_telemetry().cycle_failed(
        machine_id=machine.id,
        error_code=match.error_code,
        message=request.reason,
        job_id=machine.active_job_id,
    )
    if not recorded.resync_disks:
        log.warning(
            "machine %s: sequence gap at %s, automatic repairs exhausted; waiting for the operator",
            machine.id,
            request.missing_sequence,
        )


@bp.activity_trigger(input_name="payload")
def supersede_cycles(payload: dict[str, Any]) -> None:
    request = SupersededCycles.model_validate(payload)
    services = get_services()
    cycles.mark_cycles(
        services.repos,
        request.machine_id,
        request.cycle_ids,
        CycleState.REJECTED,
        error="superseded: older than the replica's watermark or a newer whole-disk copy",
    )
    for cycle_id in request.cycle_ids:
        _dispose(cycle_prefix(request.machine_id, cycle_id))


@bp.activity_trigger(input_name="payload")
def report_progress(payload: dict[str, Any]) -> None:
    update = ProgressUpdate.model_validate(payload)
    cycles.record_progress(get_services().repos, update.machine_id, update.percent)


def _dispose(prefix: str, also: list[str] | None = None) -> list[str]:
    """Delete the cache blobs under `prefix` (and `also`); return those that could not be deleted (a lease
    held on them, storage refusing or unreachable). Missing blobs count as deleted: disposal is idempotent."""
    container = cache_container()
    try:
        names = {b.name for b in container.list_blobs(name_starts_with=prefix)} | set(also or [])
    except AzureError as exc:
        log.warning("listing %s for disposal failed: %s", prefix, exc)
        return sorted(set(also or [])) or [prefix]
    remaining = []
    for name in sorted(names):
        try:
            container.delete_blob(name)
        except ResourceNotFoundError:
            continue
        except AzureError as exc:
            log.warning("could not dispose of %s: %s", name, exc)
            remaining.append(name)
    return remaining
