"""A source machine as the control plane tracks it: inventory, lifecycle, target, replication status."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import Field, model_validator

from shared.domain.cycle import Consistency, RecoveryPoint
from shared.domain.failback import PlannedFailback, ReverseProtection
from shared.domain.failover import FailoverSettings
from shared.domain.health import Health, HealthState, MachineError, upgrade_stored_health
from shared.domain.inventory import MachineInventory
from shared.domain.lifecycle import MachineState
from shared.domain.pending_start import PendingStart
from shared.domain.target import TargetSettings
from shared.domain.wire import ResourceId, WireModel


class UploadWatch(WireModel):
    """A cycle the appliance announced (CycleStarted) whose disks must be uploaded by `deadline`."""

    cycle_id: str
    sequence: int = Field(ge=0)
    kind: str
    disk_ids: list[str]
    started_at: datetime
    deadline: datetime
    timed_out_disks: list[str] = Field(
        default_factory=list, description="disks already reported as DiskUploadTimedOut (reported once)"
    )


class DiskCopyProgress(WireModel):
    """One disk's whole-disk copy (initial replication or a resync), as its apply reports it."""

    disk_id: str
    cycle_id: str = Field(description="the initial or resync cycle being applied")
    bytes_to_copy: int = Field(
        ge=0, description="bytes the copy writes: its data, and pages of an older replica it clears"
    )
    bytes_applied: int = Field(ge=0, description="bytes of them written so far")
    started_at: datetime
    updated_at: datetime


class ReplicationStatus(WireModel):
    progress_percent: float = Field(default=0.0, ge=0.0, le=100.0)
    last_sync_time: datetime | None = None
    last_applied_sequence: int | None = None
    recovery_points: list[RecoveryPoint] = Field(default_factory=list, description="oldest first")
    health_state: HealthState = Field(
        default_factory=HealthState, description="written only by shared.health.writer"
    )
    upload_watch: UploadWatch | None = None
    disk_copies: list[DiskCopyProgress] = Field(
        default_factory=list, description="the newest whole-disk copy of each disk, by disk id"
    )

    @property
    def current_errors(self) -> list[MachineError]:
        return [e.to_machine_error() for e in self.health_state.errors]

    def latest_point(self, consistency: Consistency | None = None) -> RecoveryPoint | None:
        points = [p for p in self.recovery_points if consistency is None or p.consistency == consistency]
        return max(points, key=lambda p: p.time, default=None)

    def add_recovery_point(
        self, point: RecoveryPoint, *, keep_count: int, keep_for: timedelta, now: datetime
    ) -> list[RecoveryPoint]:
        """Keep `point` and apply retention; return the points dropped, whose snapshots the caller deletes.

        Idempotent by point id (a retried activity adds nothing and prunes nothing new). Retention keeps at
        most `keep_count` points, none older than `keep_for`, but never drops the newest point: a machine
        that stopped syncing must still have something to fail over to.
        """
        if any(p.id == point.id for p in self.recovery_points):
            return []
        points = sorted([*self.recovery_points, point], key=lambda p: p.time)
        newest = points[-1]
        kept = [p for p in points if now - p.time <= keep_for or p is newest][-keep_count:]
        kept_ids = {p.id for p in kept}
        self.recovery_points = kept
        return [p for p in points if p.id not in kept_ids]


class FailoverStatus(WireModel):
    """The machine's current (or last successful) failover to Azure."""

    job_id: str = Field(description="the Failover job that made (or is making) the VM")
    recovery_point_choice: str = Field(description="what the operator asked for: 'latest', ... or a point id")
    drain_through_sequence: int | None = Field(
        default=None,
        description="'latest': cycles waiting in the inbox up to this sequence are applied before the point "
        "is picked; every other choice holds the inbox as it is",
    )
    recovery_point_id: str | None = Field(default=None, description="the point the VM was built from")
    vm_id: str | None = Field(default=None, description="the failed-over VM's ARM id")
    disk_ids: list[str] = Field(default_factory=list, description="its managed disks, OS disk first")
    failback_baseline_snapshot_ids: list[str] = Field(
        default_factory=list,
        description="incremental snapshots of those disks taken when the VM started: failback replicates "
        "what changed since them",
    )
    changing_job_id: str | None = Field(
        default=None,
        description="the ChangeRecoveryPoint job running now (one at a time; no commit meanwhile)",
    )


class Machine(WireModel):
    """A source machine: inventory, target, state and replication."""

    # Stored in `machines` (pk /id). The per-machine orchestration is its only writer once replicating.

    id: ResourceId
    appliance_id: ResourceId
    inventory: MachineInventory
    state: MachineState = MachineState.DISCOVERED
    health: Health = Field(
        default=Health.HEALTHY, description="the health rules' verdict; written only by shared.health.writer"
    )
    target: TargetSettings | None = None
    failover_settings: FailoverSettings | None = Field(
        default=None,
        description="what the operator changed for failover; absent: the target settings apply",
    )
    replication: ReplicationStatus = Field(default_factory=ReplicationStatus)
    failover: FailoverStatus | None = Field(
        default=None, description="written by the failover flow only (shared.failover)"
    )
    reverse: ReverseProtection | None = Field(
        default=None, description="reverse protection to on-premises; written by the failback flow only"
    )
    failback: PlannedFailback | None = Field(
        default=None,
        description="the planned failover to on-premises, until it is committed or cancelled; written by "
        "the failback flow only",
    )
    active_job_id: str | None = Field(default=None, description="the latest long operation on this machine")
    pending_start: PendingStart | None = Field(
        default=None,
        description="the latest operator action's start, written with the transition; settled by the reconciler",
    )
    discovered_at: datetime
    updated_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _upgrade_stored_health(cls, data: Any) -> Any:
        # Documents written before the typed health state carry `replication.currentErrors`.
        if not isinstance(data, dict):
            return data
        replication = data.get("replication")
        if not isinstance(replication, dict):
            return data
        legacy = {"currentErrors", "current_errors"} & replication.keys() or (
            "healthState" in replication and replication["healthState"] is None
        )
        if not legacy:
            return data
        upgraded, worst = upgrade_stored_health(replication)
        data = {**data, "replication": upgraded}
        stored = Health(data.get("health", Health.HEALTHY))
        if worst is not None and worst.rank > stored.rank:
            data["health"] = worst.value
        return data

    def record_cycle_applied(self, sequence: int, applied_at: datetime) -> None:
        """A cycle reached the replica: advance the watermark (health is the health writer's)."""
        status = self.replication
        if status.last_applied_sequence is None or sequence > status.last_applied_sequence:
            status.last_applied_sequence = sequence
        if status.last_sync_time is None or applied_at > status.last_sync_time:
            status.last_sync_time = applied_at
        self.updated_at = max(self.updated_at, applied_at)


class MachineSnapshot(WireModel):
    """A machine document as one step read it, with the ETag it was read at, handed to a later step (the
    upload's acceptance to the cycle's completion) so that step can write without reading first. The
    write is conditional on the ETag: a stale snapshot costs a re-read, never a lost update."""

    machine: Machine
    etag: str


# Health and MachineError are part of the machine's vocabulary; they are defined with the health state.
__all__ = [
    "FailoverStatus",
    "Health",
    "Machine",
    "MachineError",
    "MachineSnapshot",
    "ReplicationStatus",
    "UploadWatch",
]
