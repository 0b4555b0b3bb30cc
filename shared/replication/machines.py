"""Machine use cases for operators: enable/stop replication, read state, health, progress and RPO."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.domain.api import (
    MachineDetail,
    MachineList,
    MachineSummary,
    RecoveryPointList,
    RecoveryPointsSummary,
    RecoveryPointView,
    ReverseProtectionView,
)
from shared.domain.cycle import Consistency
from shared.domain.errors import FieldProblem, ValidationFailed
from shared.domain.job import Job, JobKind, JobStatus, finish_step, new_job
from shared.domain.lifecycle import (
    PROTECTED_STATES,
    Location,
    MachineState,
    active_location,
    allowed_operations,
    transition,
)
from shared.domain.machine import Machine, ReplicationStatus, UploadWatch
from shared.domain.target import TargetSettings
from shared.health import reset_health
from shared.jobs import lifecycle as jobs
from shared.platform.azure_placement import AzurePlacement, PlacementCheck
from shared.platform.documents import Query
from shared.platform.repository import Repositories

STEP_VALIDATE_TARGET = "Validate target settings"
STEP_CREATE_REPLICAS = "Create replica disks"
STEP_START_INITIAL = "Start initial replication"
STEP_STOP_REPLICATION = "Stop replication"
ENABLE_REPLICATION_STEPS = (STEP_VALIDATE_TARGET, STEP_CREATE_REPLICAS, STEP_START_INITIAL)
STOP_REPLICATION_STEPS = (STEP_STOP_REPLICATION, "Delete replica disks and cached data")
COMPLETE_MIGRATION_STEPS = ("Remove replica disks and cached data",)
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class EnableReplication:
    machine_id: str
    target: TargetSettings
    job_id: str


@dataclass(frozen=True)
class StopReplication:
    machine_id: str
    job_id: str


@dataclass(frozen=True)
class JobStarted:
    """What the entry point needs to start (or not restart) the machine's orchestration."""

    machine: Machine
    job: Job
    is_retry: bool


def enable_replication(
    repos: Repositories,
    command: EnableReplication,
    *,
    now: datetime,
    placement: AzurePlacement | None = None,
) -> JobStarted:
    """Validate the target against the machine, move it to EnablingReplication, record the job.

    404 unknown machine; 400 with one entry per problem; 409 when replication is already in place;
    503 when Azure could not be asked. A retry of the same request while still EnablingReplication
    returns the same job (is_retry), so a client or entry point that failed half-way can safely repeat
    it. Round-trips: 3 (read, replace, job); with `placement`, Azure is asked whether the size is
    offered in the VNet's region with room for the machine's data disks (the VNet, the region's sizes,
    cached) and, with a static IP address, whether it is free in the VNet.
    """
    azure_checked: dict[PlacementCheck, list[FieldProblem]] = {}

    def azure_problems(machine: Machine) -> list[FieldProblem]:
        if placement is None:
            return []
        target = command.target
        check = PlacementCheck(
            resource_group=target.resource_group,
            virtual_network=target.virtual_network,
            subnet=target.subnet,
            vm_size=target.vm_size,
            static_ip=target.static_ip_address,
            data_disks=sum(1 for d in machine.inventory.disks if not d.is_os_disk),
            premium=target.disk_type.is_premium,
        )
        # Asked once even if the update is retried on a concurrent change.
        if check not in azure_checked:
            azure_checked[check] = placement.problems(check)
        return azure_checked[check]

    def apply(machine: Machine) -> tuple[str, bool]:
        # Validated against the very version being written (a discovery report may change the inventory).
        problems = command.target.validate_for_machine(machine.inventory)
        problems += azure_problems(machine)
        if problems:
            raise ValidationFailed(problems)
        if (
            machine.state is MachineState.ENABLING_REPLICATION
            and machine.target == command.target
            and machine.active_job_id
        ):
            return machine.active_job_id, True
        transition(machine, MachineState.ENABLING_REPLICATION, action="enable replication")
        machine.target = command.target
        machine.failover_settings = None  # a new target: the failover starts from it again
        reset_health(machine)
        machine.replication = ReplicationStatus()
        machine.active_job_id = command.job_id
        machine.updated_at = now
        return command.job_id, False

    stored, (job_id, is_retry) = repos.machines.update_with_retry(command.machine_id, apply)
    # The validation ran above: that step is done when the job is recorded.
    job = finish_step(
        new_job(job_id, JobKind.ENABLE_REPLICATION, command.machine_id, ENABLE_REPLICATION_STEPS, now),
        STEP_VALIDATE_TARGET,
        JobStatus.SUCCEEDED,
        now=now,
    )
    if is_retry:
        existing = jobs.get(repos, job_id)
        if existing is not None:
            return JobStarted(stored.item, existing, True)
    # An upsert under the id the machine already points to: repeating it is harmless.
    jobs.create(repos, job)
    return JobStarted(stored.item, job, is_retry)


def stop_replication(repos: Repositories, command: StopReplication, *, now: datetime) -> JobStarted:
    """Stop replication (-> ReplicationStopped), or after a migration complete it (-> MigrationCompleted).

    The orchestration then deletes the replica data. 404/409 as for enable. Round-trips: 3.
    """

    def apply(machine: Machine) -> JobKind:
        if machine.state is MachineState.MIGRATED:
            transition(machine, MachineState.MIGRATION_COMPLETED, action="complete migration")
            kind = JobKind.COMPLETE_MIGRATION
        else:
            transition(machine, MachineState.REPLICATION_STOPPED, action="stop replication")
            kind = JobKind.STOP_REPLICATION
        machine.active_job_id = command.job_id
        reset_health(machine)
        machine.updated_at = now
        return kind

    stored, kind = repos.machines.update_with_retry(command.machine_id, apply)
    steps = COMPLETE_MIGRATION_STEPS if kind is JobKind.COMPLETE_MIGRATION else STOP_REPLICATION_STEPS
    job = new_job(command.job_id, kind, command.machine_id, steps, now)
    if kind is JobKind.STOP_REPLICATION:
        # The move to ReplicationStopped above stopped it (no cycle is accepted any more); the
        # orchestration deletes the data.
        job = finish_step(job, STEP_STOP_REPLICATION, JobStatus.SUCCEEDED, now=now)
    jobs.create(repos, job)
    return JobStarted(stored.item, job, False)


def rpo_seconds(machine: Machine, now: datetime) -> int | None:
    """Current RPO: age of the latest recovery point, while replication is in place and a point exists."""
    if machine.state not in PROTECTED_STATES:
        return None
    latest = machine.replication.latest_point()
    if latest is None:
        return None
    return max(0, int((now - latest.time).total_seconds()))


def _summary_fields(machine: Machine, now: datetime) -> dict[str, object]:
    points = machine.replication.recovery_points
    app = machine.replication.latest_point(Consistency.APP)
    latest = machine.replication.latest_point()
    return {
        "id": machine.id,
        "appliance_id": machine.appliance_id,
        "display_name": machine.inventory.display_name,
        "os_type": machine.inventory.os_type,
        "firmware": machine.inventory.firmware,
        "state": machine.state,
        "active_location": active_location(machine.state),
        "health": machine.health,
        "progress_percent": machine.replication.progress_percent,
        "last_sync_time": machine.replication.last_sync_time,
        "last_applied_sequence": machine.replication.last_applied_sequence,
        "rpo_seconds": rpo_seconds(machine, now),
        "recovery_points": RecoveryPointsSummary(
            count=len(points),
            oldest=min((p.time for p in points), default=None),
            latest=latest.time if latest else None,
            latest_app_consistent=app.time if app else None,
        ),
        "current_error_count": len(machine.replication.current_errors),
        "allowed_operations": allowed_operations(machine.state),
    }


def machine_summary(machine: Machine, now: datetime) -> MachineSummary:
    return MachineSummary.model_validate(_summary_fields(machine, now))


def machine_detail(machine: Machine, now: datetime) -> MachineDetail:
    return MachineDetail.model_validate(
        {
            **_summary_fields(machine, now),
            "inventory": machine.inventory,
            "target": machine.target,
            "recovery_point_list": sorted(machine.replication.recovery_points, key=lambda p: p.time),
            "current_errors": machine.replication.current_errors,
            "events_url": f"/api/machines/{machine.id}/events",
            "active_job_id": machine.active_job_id,
            **_failover_fields(machine),
            "cycle_in_progress": _cycle_in_progress(machine),
            "reverse_protection": _reverse_view(machine, now),
            "planned_failback": machine.failback,
            "discovered_at": machine.discovered_at,
            "updated_at": machine.updated_at,
        }
    )


def _reverse_view(machine: Machine, now: datetime) -> ReverseProtectionView | None:
    reverse = machine.reverse
    if reverse is None:
        return None
    # Only while reverse replication is in place: once failed back the on-premises copy is the machine.
    rpo = (
        max(0, int((now - reverse.last_point_at).total_seconds()))
        if reverse.last_point_at is not None and active_location(machine.state) is Location.AZURE
        else None
    )
    return ReverseProtectionView.model_validate({**reverse.model_dump(), "rpo_seconds": rpo})


def _cycle_in_progress(machine: Machine) -> UploadWatch | None:
    watch = machine.replication.upload_watch
    applied = machine.replication.last_applied_sequence
    if watch is None or (applied is not None and watch.sequence <= applied):
        return None
    return watch


def _failover_fields(machine: Machine) -> dict[str, object]:
    failover = machine.failover
    if failover is None or failover.vm_id is None:
        return {}
    return {
        "failover_recovery_point_id": failover.recovery_point_id,
        "failover_vm_id": failover.vm_id,
        "failback_baseline_snapshot_ids": failover.failback_baseline_snapshot_ids,
    }


def get_machine(repos: Repositories, machine_id: str, *, now: datetime) -> MachineDetail:
    """One point read."""
    return machine_detail(repos.machines.require(machine_id).item, now)


def list_recovery_points(repos: Repositories, machine_id: str) -> RecoveryPointList:
    """The machine's recovery points, newest first (one point read; 404 for an unknown machine).

    Only points with a snapshot of every disk the machine has now: one that lacks a disk (the machine
    gained a disk since it was taken) cannot bring the machine back, so it is not offered.
    """
    machine = repos.machines.require(machine_id).item
    disk_ids = [d.id for d in machine.inventory.disks]
    points = sorted(machine.replication.recovery_points, key=lambda p: (p.time, p.id), reverse=True)
    return RecoveryPointList(
        recovery_points=[
            RecoveryPointView(
                id=p.id,
                time=p.time,
                consistency=p.consistency,
                cycle_id=p.cycle_id,
                disks=[d for d in disk_ids if d in p.disk_snapshots],
            )
            for p in points
            if not p.missing_disks(disk_ids)
        ]
    )


def list_machines(
    repos: Repositories,
    *,
    now: datetime,
    appliance_id: str | None = None,
    state: MachineState | None = None,
    page_size: int = 50,
    continuation: str | None = None,
) -> MachineList:
    """Operator listing: a cross-partition query (one round-trip per page), never used on a hot path."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationFailed.single("pageSize", f"must be between 1 and {MAX_PAGE_SIZE}; got {page_size}")
    equals: dict[str, object] = {}
    if appliance_id is not None:
        equals["applianceId"] = appliance_id
    if state is not None:
        equals["state"] = state.value
    page = repos.machines.query_page(
        Query(equals=equals, order_by="id"),
        partition_key=None,
        page_size=page_size,
        continuation=continuation,
    )
    return MachineList(
        machines=[machine_summary(m, now) for m in page.items], continuation_token=page.continuation
    )
