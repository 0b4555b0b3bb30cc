"""The replication inbox: accepting uploaded cycles, choosing which are ready, and recording outcomes.

Cycles are persisted in Cosmos (`cycles`, pk /machineId) the moment their event arrives, before the
machine's orchestration is signalled. The signal is only a wake-up: whatever the orchestration misses
(a lost or duplicated signal, a restart, a continue-as-new) it finds again in the inbox, so no cycle
depends on an in-memory queue. Which cycles may be applied now is a pure function of the inbox and
the replica's watermark (`plan_ready_cycles`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from shared.appliances.events import CycleUploaded
from shared.domain.cycle import Cycle, CycleKind, CycleState, RecoveryPoint
from shared.domain.errors import Conflict, FieldProblem, Forbidden, ValidationFailed
from shared.domain.event import Event, Severity
from shared.domain.job import Job, JobKind, JobStatus
from shared.domain.lifecycle import MachineState, transition
from shared.domain.machine import DiskCopyProgress, Machine, MachineSnapshot, UploadWatch
from shared.domain.policy import ReplicationPolicy
from shared.health import (
    CYCLE_COMPLETED,
    REPAIR_COMPLETED,
    HealthRules,
    Transition,
    health_event,
    record_cycle_success,
)
from shared.jobs import lifecycle as jobs
from shared.platform.documents import AlreadyExists, Query
from shared.platform.repository import Repositories, Versioned
from shared.platform.telemetry import get_telemetry

# States in which the appliance's uploads are accepted: replication runs underneath test migration,
# and the final cycle of a cutover arrives while Migrating.
ACCEPTING_STATES = frozenset(
    {
        MachineState.INITIAL_REPLICATION,
        MachineState.REPLICATING,
        MachineState.RESYNCING,
        MachineState.TEST_MIGRATING,
        MachineState.TEST_MIGRATED,
        MachineState.CLEANING_UP_TEST_MIGRATION,
        MachineState.MIGRATING,
        # A reprotect to Azure after a committed failback waits for the appliance's reprotect cycle.
        MachineState.REPROTECTING,
    }
)
BASE_KINDS = frozenset({CycleKind.INITIAL, CycleKind.RESYNC})  # whole-disk copies: start a new chain
# Cycles that start a new chain: the whole-disk copies, and a reprotect's changes since the appliance's
# pre-power-on copy (the replicas already hold that copy's data, so nothing before it matters).
CHAIN_START_KINDS = BASE_KINDS | {CycleKind.REPROTECT}


class CycleAcceptance(BaseModel):
    model_config = ConfigDict(frozen=True)

    cycle_id: str
    machine_id: str
    duplicate: bool
    cycle: Cycle = Field(description="the inbox record (the stored one for a duplicate)")
    machine: MachineSnapshot = Field(description="the machine as read to accept the cycle")


def accept_cycle_upload(repos: Repositories, upload: CycleUploaded, *, now: datetime) -> CycleAcceptance:
    """Put the cycle in the machine's inbox (2 round-trips). Idempotent by cycle id: a redelivered
    event is a duplicate; the same id with different content is refused (409)."""
    read = repos.machines.require(upload.machine_id)
    machine = read.item
    snapshot = MachineSnapshot(machine=machine, etag=read.etag)
    if machine.appliance_id != upload.appliance_id:
        raise Forbidden(
            f"appliance {upload.appliance_id} reported a cycle for machine {upload.machine_id}, "
            "which belongs to another appliance"
        )
    if machine.state not in ACCEPTING_STATES:
        raise Conflict(
            f"machine {machine.id} is {machine.state.value}: replication is not enabled, so cycle "
            f"{upload.cycle_id} was not accepted. Enable replication first (PUT /api/machines/{machine.id}/replication)."
        )
    known = {d.id for d in machine.inventory.disks}
    unknown = sorted(set(upload.manifests) - known)
    if unknown:
        raise ValidationFailed(
            [
                FieldProblem(
                    "manifests",
                    f"unknown disk ids {', '.join(unknown)}; machine {machine.id} has {', '.join(sorted(known))}",
                )
            ]
        )
    cycle = Cycle(
        id=upload.cycle_id,
        machine_id=upload.machine_id,
        sequence=upload.sequence,
        kind=upload.kind,
        app_consistent=upload.app_consistent,
        manifests=dict(upload.manifests),
        received_at=now,
        uploaded_bytes=upload.uploaded_bytes,
    )
    try:
        repos.cycles.add(cycle)
    except AlreadyExists:
        existing = repos.cycles.require(cycle.id, partition_key=cycle.machine_id).item
        if (existing.sequence, existing.kind, existing.manifests) != (
            cycle.sequence,
            cycle.kind,
            cycle.manifests,
        ):
            raise Conflict(
                f"cycle id {cycle.id} was already used for sequence {existing.sequence} ({existing.kind.value}) "
                "with other manifests; an appliance must never reuse a cycle id"
            ) from None
        return CycleAcceptance(
            cycle_id=cycle.id, machine_id=cycle.machine_id, duplicate=True, cycle=existing, machine=snapshot
        )
    return CycleAcceptance(
        cycle_id=cycle.id, machine_id=cycle.machine_id, duplicate=False, cycle=cycle, machine=snapshot
    )


class CyclePlan(BaseModel):
    """What the orchestration may do now with the machine's inbox."""

    model_config = ConfigDict(frozen=True)

    ready: list[Cycle] = Field(description="apply these, in this order")
    superseded: list[str] = Field(
        description="cycle ids that can never apply (older than the watermark or a base)"
    )
    waiting_for: int | None = Field(description="the missing sequence number later cycles wait for")
    needs_base: bool = Field(description="deltas arrived but no initial (or resync) copy was ever applied")
    buffered: int = Field(description="cycles received beyond the gap")


def plan_ready_cycles(received: Sequence[Cycle], last_applied: int | None) -> CyclePlan:
    """Deltas apply strictly in sequence after the watermark; an initial or resync cycle (a whole-disk
    copy) may apply whenever it is newer than the watermark and makes every older pending cycle moot."""
    # For one sequence number, a whole-disk copy sorts first: it wins over a delta claiming the same number.
    pending = sorted(
        (c for c in received if c.state is CycleState.RECEIVED),
        key=lambda c: (c.sequence, c.kind not in CHAIN_START_KINDS, c.id),
    )
    newest_base = max(
        (
            c
            for c in pending
            if c.kind in CHAIN_START_KINDS and (last_applied is None or c.sequence > last_applied)
        ),
        key=lambda c: c.sequence,
        default=None,
    )
    superseded: list[str] = []
    watermark = last_applied
    if newest_base is not None:
        superseded += [c.id for c in pending if c.sequence < newest_base.sequence]
        pending = [c for c in pending if c.sequence >= newest_base.sequence]
    ready: list[Cycle] = []
    seen_sequences: set[int] = set()
    for cycle in pending:
        if (watermark is not None and cycle.sequence <= watermark) or cycle.sequence in seen_sequences:
            superseded.append(cycle.id)  # stale, or a second cycle claiming an applied sequence
            continue
        if cycle is newest_base or (watermark is not None and cycle.sequence == watermark + 1):
            ready.append(cycle)
            seen_sequences.add(cycle.sequence)
            watermark = cycle.sequence
            continue
        break
    remaining = [c for c in pending if c not in ready and c.id not in superseded]
    return CyclePlan(
        ready=ready,
        superseded=superseded,
        waiting_for=watermark + 1 if remaining and watermark is not None else None,
        needs_base=bool(remaining) and watermark is None,
        buffered=len(remaining),
    )


class DiskRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    size_bytes: int
    is_os_disk: bool


class ReplicationView(BaseModel):
    """Everything one orchestration generation needs, read in 3-4 round-trips."""

    machine_id: str
    appliance_id: str
    state: MachineState
    disks: list[DiskRef]
    last_applied_sequence: int | None
    policy: ReplicationPolicy
    plan: CyclePlan
    job: Job | None = Field(
        description="the machine's unfinished job, if the replication orchestration runs it"
    )
    upload_watch: UploadWatch | None = Field(
        default=None, description="a started cycle whose uploads are due by a deadline (1011 after it)"
    )


# Jobs the replication orchestration itself carries out; other jobs (test migration, ...) have their own.
OWN_JOB_STATES = frozenset(
    {
        MachineState.ENABLING_REPLICATION,
        MachineState.REPLICATION_STOPPED,
        MachineState.MIGRATION_COMPLETED,
    }
)


# States in which a failover holds replication: no cycle may change what is being failed over. Cycles
# already in the inbox wait there (a failed failover resumes replication with them); a failover to
# the latest point first lets those up to `failover.drain_through_sequence` apply. Reverse protection
# holds them too: the Azure VM is the machine then.
HELD_STATES = frozenset(
    {
        MachineState.FAILING_OVER,
        MachineState.FAILED_OVER,
        MachineState.FAILOVER_COMMITTED,
        MachineState.REVERSE_REPROTECTING,
        MachineState.REVERSE_REPLICATING,
    }
)


def held_cycles(machine: Machine, received: Sequence[Cycle]) -> list[Cycle]:
    """The inbox cycles the machine's orchestration may apply now."""
    if machine.state not in HELD_STATES:
        return list(received)
    drain = machine.failover.drain_through_sequence if machine.failover else None
    if drain is None or machine.state is not MachineState.FAILING_OVER:
        return []
    return [c for c in received if c.sequence <= drain]


def replication_view(repos: Repositories, machine_id: str) -> ReplicationView:
    machine = repos.machines.require(machine_id).item
    appliance = repos.appliances.require(machine.appliance_id).item
    received = held_cycles(
        machine,
        repos.cycles.query(
            Query(equals={"machineId": machine_id, "state": CycleState.RECEIVED.value}, order_by="sequence"),
            partition_key=machine_id,
        ),
    )
    job = None
    if machine.state in OWN_JOB_STATES and machine.active_job_id:
        job = jobs.get(repos, machine.active_job_id)
        job = job if job is not None and not job.status.finished else None
    return ReplicationView(
        machine_id=machine.id,
        appliance_id=machine.appliance_id,
        state=machine.state,
        disks=[
            DiskRef(id=d.id, size_bytes=d.size_bytes, is_os_disk=d.is_os_disk)
            for d in machine.inventory.disks
        ],
        last_applied_sequence=machine.replication.last_applied_sequence,
        policy=appliance.policy,
        # Reprotecting: nothing applies before the reprotect cycle starts the new chain.
        plan=plan_ready_cycles(
            received,
            None if machine.state is MachineState.REPROTECTING else machine.replication.last_applied_sequence,
        ),
        job=job,
        # A held machine accepts no upload: a started cycle's deadline means nothing then.
        upload_watch=None if machine.state in HELD_STATES else machine.replication.upload_watch,
    )


class MachineAfterCycle(BaseModel):
    """What the machine looks like right after a cycle was recorded, from the update that recorded it:
    enough for the orchestration to apply the next signalled delta without reading the machine again."""

    model_config = ConfigDict(frozen=True)

    state: MachineState
    last_applied_sequence: int | None
    disks: list[DiskRef]
    upload_watch: UploadWatch | None = None

    @classmethod
    def of(cls, machine: Machine) -> MachineAfterCycle:
        return cls(
            state=machine.state,
            last_applied_sequence=machine.replication.last_applied_sequence,
            disks=[
                DiskRef(id=d.id, size_bytes=d.size_bytes, is_os_disk=d.is_os_disk)
                for d in machine.inventory.disks
            ],
            upload_watch=machine.replication.upload_watch,
        )


@dataclass(frozen=True)
class CycleRecorded:
    dropped: list[RecoveryPoint]  # the points retention dropped: their snapshots are to be deleted
    machine: MachineAfterCycle


@dataclass(frozen=True)
class CycleOutcome:
    cycle: Cycle
    recovery_point: RecoveryPoint | None  # None: a disk of the machine had no replica to snapshot
    applied_at: datetime
    bytes_applied: int
    started_at: datetime | None = None  # when applying began; the upload's arrival when not known
    missing_disks: tuple[str, ...] = ()  # the disks without a replica, when there is no point


def complete_cycle(
    repos: Repositories,
    outcome: CycleOutcome,
    policy: ReplicationPolicy,
    rules: HealthRules | None = None,
    *,
    seen: MachineSnapshot | None = None,
) -> CycleRecorded:
    """One machine update (watermark, recovery point + retention, progress, lifecycle, health healed by
    the success), the cycle marked Applied and its "cycle completed" event: 4 round-trips, 3 when `seen`
    (the machine as the upload's acceptance read it) is still current, 3 on a retry; one more event when
    health changed, and a job update when the cycle completed a repair. Returns the points retention
    dropped and the machine as recorded.

    A resync cycle is applied like an initial copy, but retention alone decides which recovery points
    go: the points taken before the resync stay usable (their snapshots are of the same replica blob).

    Only a point with a snapshot of every disk of the machine is kept: a partial one (no replica for a
    disk yet, or the inventory gained a disk meanwhile) is not a recovery point, and the cycle is
    recorded as applied without one.
    """
    cycle = outcome.cycle
    health_rules = rules or HealthRules()
    missing: list[str] = list(outcome.missing_disks)
    started_on_appliance: list[datetime] = []

    def apply(machine: Machine) -> tuple[list[RecoveryPoint], Transition, str | None]:
        point = outcome.recovery_point
        dropped: list[RecoveryPoint] = []
        missing[:] = list(outcome.missing_disks)
        watch = machine.replication.upload_watch
        started_on_appliance[:] = [watch.started_at] if watch and watch.cycle_id == cycle.id else []
        if point is not None:
            missing[:] = point.missing_disks(d.id for d in machine.inventory.disks)
        if point is not None and not missing:
            dropped = machine.replication.add_recovery_point(
                point,
                keep_count=policy.recovery_point_retention_count,
                keep_for=timedelta(hours=policy.recovery_point_retention_hours),
                now=outcome.applied_at,
            )
        machine.record_cycle_applied(cycle.sequence, outcome.applied_at)
        repaired_job: str | None = None
        if cycle.kind in BASE_KINDS:
            machine.replication.progress_percent = 100.0
            if machine.state is MachineState.RESYNCING:
                repaired_job = machine.active_job_id or ""
            if machine.state in (MachineState.INITIAL_REPLICATION, MachineState.RESYNCING):
                transition(machine, MachineState.REPLICATING, action=f"{cycle.kind.value} cycle applied")
        if machine.state is MachineState.REPROTECTING and cycle.kind in CHAIN_START_KINDS:
            # The replicas equal the on-premises disks again: replication runs, from this point on.
            machine.replication.progress_percent = 100.0
            transition(machine, MachineState.REPLICATING, action=f"{cycle.kind.value} cycle applied")
            if machine.failback is not None:
                machine.failback = machine.failback.model_copy(
                    update={
                        "reprotect_cycle_id": cycle.id,
                        "reprotect_bytes_sent": outcome.bytes_applied,
                        "reprotect_disk_bytes": sum(d.size_bytes for d in machine.inventory.disks),
                    }
                )
        healed = record_cycle_success(
            machine, at=outcome.applied_at, resync=cycle.kind in BASE_KINDS, rules=health_rules
        )
        return dropped, healed, repaired_job

    snapshot = (
        Versioned(seen.machine, seen.etag)
        if seen is not None and seen.machine.id == cycle.machine_id
        else None
    )
    if snapshot is None:
        # The orchestration had no copy to hand on (a generation that planned from the view): one read.
        repos.counter.record_fallback("cycle completion", "no carried copy")
    stored, (dropped, healed, repaired_job) = repos.machines.update_with_retry(
        cycle.machine_id, apply, snapshot=snapshot
    )
    repos.cycles.put(
        cycle.model_copy(
            update={
                "state": CycleState.APPLIED,
                "applied_at": outcome.applied_at,
                "bytes_applied": outcome.bytes_applied,
                "apply_started_at": outcome.started_at,
            }
        )
    )
    point = outcome.recovery_point if not missing else None
    if point is not None:
        kept = f"recovery point {point.id} ({point.consistency.value}-consistent)."
    else:
        kept = (
            f"no recovery point: disk(s) {', '.join(missing)} of the machine have no replica yet; run "
            "Repair replication so every disk is replicated."
        )
    details = {
        "sequence": str(cycle.sequence),
        "kind": cycle.kind.value,
        "bytesApplied": str(outcome.bytes_applied),
    }
    if point is not None:
        details["recoveryPoint"] = point.id
    if started_on_appliance:
        # A delta's start is recorded here rather than in an event of its own: one write per cycle fewer.
        details["startedOnApplianceAt"] = started_on_appliance[0].isoformat()
    events = [
        Event(
            id=f"{cycle.id}-completed",
            machine_id=cycle.machine_id,
            time=outcome.applied_at,
            type=CYCLE_COMPLETED,
            severity=Severity.INFO if point is not None else Severity.WARNING,
            message=f"Replication cycle {cycle.id} (sequence {cycle.sequence}, {cycle.kind.value}) was applied: "
            f"{outcome.bytes_applied} bytes on {len(cycle.manifests)} disk(s); {kept}",
            cycle_id=cycle.id,
            details=details,
        )
    ]
    if healed.changed:
        events.append(
            health_event(
                cycle.machine_id,
                f"{cycle.id}-health",
                outcome.applied_at,
                healed,
                f"cycle {cycle.id} applied",
            )
        )
    if repaired_job is not None:
        events.append(
            Event(
                id=f"{cycle.id}-repaired",
                machine_id=cycle.machine_id,
                time=outcome.applied_at,
                type=REPAIR_COMPLETED,
                severity=Severity.INFO,
                cycle_id=cycle.id,
                message=f"Repair replication completed: {cycle.kind.value} cycle {cycle.id} copied "
                f"{', '.join(sorted(cycle.manifests))} in full; the machine is {stored.item.state.value} "
                f"with {len(stored.item.replication.recovery_points)} recovery point(s) kept.",
            )
        )
    for event in events:
        repos.events.put(event)
    get_telemetry().cycle_applied(
        machine_id=cycle.machine_id,
        cycle_id=cycle.id,
        kind=cycle.kind.value,
        started_at=outcome.started_at or cycle.received_at,
        received_at=cycle.received_at,
        applied_at=outcome.applied_at,
        bytes_applied=outcome.bytes_applied,
        job_id=stored.item.active_job_id,
    )
    if repaired_job is not None:
        # Last: when the job says Succeeded, everything the repair did is recorded.
        finish_repair_job(repos, repaired_job or None, now=outcome.applied_at)
    return CycleRecorded(dropped=dropped, machine=MachineAfterCycle.of(stored.item))


def finish_repair_job(repos: Repositories, job_id: str | None, *, now: datetime) -> None:
    """The resync cycle was applied: the operator's RepairReplication job (if any) succeeded."""
    if job_id is None:
        return
    job = jobs.get(repos, job_id)
    if job is not None and job.kind is JobKind.REPAIR_REPLICATION:
        jobs.finish(repos, job_id, JobStatus.SUCCEEDED, now=now)


def mark_cycles(
    repos: Repositories,
    machine_id: str,
    cycle_ids: Sequence[str],
    state: CycleState,
    error: str | None = None,
) -> None:
    """Superseded or rejected cycles leave the inbox (one read-modify-write each, idempotent)."""
    for cycle_id in cycle_ids:
        stored = repos.cycles.get(cycle_id, partition_key=machine_id)
        if stored is None or stored.item.state is state:
            continue
        repos.cycles.put(stored.item.model_copy(update={"state": state, "error": error}))


def record_progress(repos: Repositories, machine_id: str, percent: float) -> None:
    def apply(machine: Machine) -> None:
        machine.replication.progress_percent = max(machine.replication.progress_percent, min(100.0, percent))

    repos.machines.update_with_retry(machine_id, apply)


def record_copy_progress(repos: Repositories, machine_id: str, progress: DiskCopyProgress) -> None:
    """A disk's whole-disk copy advanced: its bytes applied, and the machine's percentage from every disk's.

    One machine write. Figures only go forward (a retried apply that starts over does not move them
    back), and a newer copy of the disk (another cycle) replaces the older one's. The percentage stays
    below 100 until the cycle is recorded as applied.
    """

    def apply(machine: Machine) -> None:
        status = machine.replication
        previous = next((c for c in status.disk_copies if c.disk_id == progress.disk_id), None)
        if previous is not None and previous.cycle_id == progress.cycle_id:
            if previous.bytes_applied >= progress.bytes_applied:
                return
            entry = progress.model_copy(update={"started_at": previous.started_at})
        else:
            entry = progress
        others = [c for c in status.disk_copies if c.disk_id != progress.disk_id]
        status.disk_copies = sorted([*others, entry], key=lambda c: c.disk_id)
        ours = [c for c in status.disk_copies if c.cycle_id == progress.cycle_id]
        # A disk the copy has not reached yet counts with its size: what it writes is not known before.
        started = {c.disk_id for c in ours}
        total = sum(c.bytes_to_copy for c in ours) + sum(
            d.size_bytes for d in machine.inventory.disks if d.id not in started
        )
        applied = sum(c.bytes_applied for c in ours)
        if total <= 0:
            return
        status.progress_percent = max(status.progress_percent, min(99.0, round(100.0 * applied / total, 1)))

    repos.machines.update_with_retry(machine_id, apply)
