"""Machine use cases for operators: enable/stop replication, read state, health, progress and RPO."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain.api import (
    DiskReplicationStatistics,
    LastCycle,
    MachineDetail,
    MachineList,
    MachineSummary,
    RecoveryPointList,
    RecoveryPointsSummary,
    RecoveryPointView,
    ReplicationStatistics,
    ReverseProtectionView,
)
from shared.domain.cycle import Consistency, Cycle, CycleState
from shared.domain.errors import ConcurrencyConflict, FieldProblem, ValidationFailed
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
from shared.domain.pending_start import StartRunner
from shared.domain.target import TargetSettings
from shared.health import reset_health
from shared.jobs import lifecycle as jobs
from shared.jobs import starts
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
    idempotency_key: starts.RetryOf | str | None = None,
) -> JobStarted:
    """Validate the target against the machine, move it to EnablingReplication, record the job.

    404 unknown machine; 400 with one entry per problem; 409 when replication is already in place;
    503 when Azure could not be asked. A retry of the same request while still EnablingReplication
    returns the same job (is_retry), so a client or entry point that failed half-way can safely repeat
    it. Crash-safe (`shared.jobs.starts`, runner MACHINE): the transition and the job are one machine
    write; the machine's replication orchestration acknowledges the job when it begins it. Round-trips: 3
    (read, replace, job); with `placement`, Azure is asked whether the size is
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

    def apply(machine: Machine) -> str:
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
            return machine.active_job_id  # the same request again: nothing changes, its job is answered
        transition(machine, MachineState.ENABLING_REPLICATION, action="enable replication")
        machine.target = command.target
        machine.failover_settings = None  # a new target: the failover starts from it again
        reset_health(machine)
        machine.replication = ReplicationStatus()
        machine.active_job_id = command.job_id
        machine.updated_at = now
        return command.job_id

    # The validation ran above: that step is done when the job is recorded.
    job = finish_step(
        new_job(
            command.job_id, JobKind.ENABLE_REPLICATION, command.machine_id, ENABLE_REPLICATION_STEPS, now
        ),
        STEP_VALIDATE_TARGET,
        JobStatus.SUCCEEDED,
        now=now,
    )
    started = starts.begin(
        repos,
        command.machine_id,
        apply,
        job,
        now=now,
        idempotency_key=idempotency_key,
        runner=StartRunner.MACHINE,
    )
    return _job_started(repos, started)


def _job_started(repos: Repositories, started: starts.Started[Any]) -> JobStarted:
    """A new start, a resend of one (same key or body), or a transition that found the same request's job
    already holding the machine (an older release's start): the job the orchestration is to run."""
    if started.replayed:
        return JobStarted(started.machine, started.job, True)
    active = str(started.result) if isinstance(started.result, str) else started.job.id
    if active == started.job.id:
        return JobStarted(started.machine, started.job, False)
    # An upsert under the id the machine already points to when its document is missing: harmless.
    pending = started.machine.pending_start
    recorded = pending.job if pending is not None and pending.job.id == active else None
    existing = jobs.get(repos, active) or jobs.create(
        repos, recorded or started.job.model_copy(update={"id": active})
    )
    return JobStarted(started.machine, existing, True)


# The states in which DELETE .../replication is (or was) a complete migration, not a stop.
_COMPLETING = frozenset({MachineState.MIGRATED, MachineState.MIGRATION_COMPLETED})


def stop_replication(
    repos: Repositories,
    command: StopReplication,
    *,
    now: datetime,
    idempotency_key: starts.RetryOf | str | None = None,
) -> JobStarted:
    """Stop replication (-> ReplicationStopped), or after a migration complete it (-> MigrationCompleted).

    The orchestration then deletes the replica data. 404/409 as for enable. Crash-safe as enable.
    Round-trips: 4 (a read to name the job, then read, replace, job).
    """
    # Which of the two jobs follows from the state read here; the write re-checks it (a machine that moved
    # between the read and the write is a ConcurrencyConflict: send the request again). A completed
    # migration is one too: the request that completed it, sent again, must be recognised as that request
    # (its job handed back), and any other is refused by the lifecycle as for a stop.
    completing = repos.machines.require(command.machine_id).item.state in _COMPLETING
    kind = JobKind.COMPLETE_MIGRATION if completing else JobKind.STOP_REPLICATION

    def apply(machine: Machine) -> str:
        if (machine.state in _COMPLETING) != completing:
            raise ConcurrencyConflict(
                f"machine {machine.id} changed state while being stopped ({machine.state.value}); retry the request"
            )
        if completing:
            transition(machine, MachineState.MIGRATION_COMPLETED, action="complete migration")
        else:
            transition(machine, MachineState.REPLICATION_STOPPED, action="stop replication")
        machine.active_job_id = command.job_id
        reset_health(machine)
        machine.updated_at = now
        return command.job_id

    steps = COMPLETE_MIGRATION_STEPS if completing else STOP_REPLICATION_STEPS
    job = new_job(command.job_id, kind, command.machine_id, steps, now)
    if not completing:
        # The move to ReplicationStopped above stopped it (no cycle is accepted any more); the
        # orchestration deletes the data.
        job = finish_step(job, STEP_STOP_REPLICATION, JobStatus.SUCCEEDED, now=now)
    started = starts.begin(
        repos,
        command.machine_id,
        apply,
        job,
        now=now,
        idempotency_key=idempotency_key,
        runner=StartRunner.MACHINE,
    )
    return _job_started(repos, started)


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


# The cycles the machine view reads (newest first): enough for a throughput and the backlog of a machine
# that keeps up; a deeper backlog is counted up to this many.
RECENT_CYCLES = 20
THROUGHPUT_CYCLES = 5
COPYING_STATES = (MachineState.INITIAL_REPLICATION, MachineState.RESYNCING)


def recent_cycles(repos: Repositories, machine_id: str) -> list[Cycle]:
    """The machine's newest cycles: one single-partition query."""
    return repos.cycles.query(
        Query(equals={"machineId": machine_id}, order_by="sequence", descending=True, limit=RECENT_CYCLES),
        partition_key=machine_id,
    )


def replication_statistics(machine: Machine, cycles: Sequence[Cycle]) -> ReplicationStatistics:
    """Copy progress per disk, throughput, backlog and ETA from the machine and its newest cycles."""
    copies = machine.replication.disk_copies
    applied = sorted(
        (c for c in cycles if c.state is CycleState.APPLIED and c.applied_at is not None),
        key=lambda c: c.sequence,
        reverse=True,
    )
    timed = [(c, _apply_seconds(c)) for c in applied[:THROUGHPUT_CYCLES]]
    seconds = sum(s for _, s in timed)
    throughput = sum(c.bytes_applied for c, _ in timed) / seconds if timed and seconds > 0 else None
    waiting = [c for c in cycles if c.state in (CycleState.RECEIVED, CycleState.APPLYING)]
    declared = [c.uploaded_bytes for c in waiting]
    last = applied[0] if applied else None
    return ReplicationStatistics(
        disks=[
            DiskReplicationStatistics(
                disk_id=c.disk_id,
                cycle_id=c.cycle_id,
                bytes_to_copy=c.bytes_to_copy,
                bytes_applied=c.bytes_applied,
                percent=round(100.0 * c.bytes_applied / c.bytes_to_copy, 1) if c.bytes_to_copy else 100.0,
                started_at=c.started_at,
                updated_at=c.updated_at,
            )
            for c in copies
        ],
        initial_copy_eta_seconds=_copy_eta(machine, throughput),
        throughput_bytes_per_second=round(throughput, 1) if throughput is not None else None,
        throughput_cycles=len(timed),
        backlog_cycles=len(waiting),
        backlog_bytes=None if any(b is None for b in declared) else sum(b or 0 for b in declared),
        last_cycle=LastCycle(
            cycle_id=last.id,
            sequence=last.sequence,
            kind=last.kind.value,
            applied_at=last.applied_at,
            duration_seconds=round(_apply_seconds(last), 3),
            bytes_applied=last.bytes_applied,
        )
        if last is not None and last.applied_at is not None
        else None,
    )


def _apply_seconds(cycle: Cycle) -> float:
    assert cycle.applied_at is not None
    return max(0.0, (cycle.applied_at - (cycle.apply_started_at or cycle.received_at)).total_seconds())


def _copy_eta(machine: Machine, throughput: float | None) -> int | None:
    """Seconds left of a running initial copy or resync: bytes left over its own rate so far."""
    if machine.state not in COPYING_STATES:
        return None
    copies = machine.replication.disk_copies
    if not copies:
        return None
    # The running copy is the newest one recorded; a disk's entry from an older copy is not part of it.
    current = max(copies, key=lambda c: c.updated_at).cycle_id
    ours = [c for c in copies if c.cycle_id == current]
    sizes = {d.id: d.size_bytes for d in machine.inventory.disks}
    # A disk the copy has not reached yet counts with its size.
    to_copy = sum(c.bytes_to_copy for c in ours) + sum(
        size for disk_id, size in sizes.items() if disk_id not in {c.disk_id for c in ours}
    )
    done = sum(c.bytes_applied for c in ours)
    elapsed = (max(c.updated_at for c in ours) - min(c.started_at for c in ours)).total_seconds()
    rate = done / elapsed if done > 0 and elapsed > 0 else throughput
    if not rate:
        return None
    return int(max(0, to_copy - done) / rate + 0.5)


def machine_detail(machine: Machine, now: datetime, cycles: Sequence[Cycle] = ()) -> MachineDetail:
    return MachineDetail.model_validate(
        {
            "replication_statistics": replication_statistics(machine, cycles),
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
    """One point read and one single-partition query (its newest cycles, for the statistics)."""
    machine = repos.machines.require(machine_id).item
    return machine_detail(machine, now, recent_cycles(repos, machine_id))


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
