"""A source machine as the control plane tracks it: inventory, lifecycle, target, replication status."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import Field

from shared.domain.cycle import Consistency, RecoveryPoint
from shared.domain.inventory import MachineInventory
from shared.domain.lifecycle import MachineState
from shared.domain.target import TargetSettings
from shared.domain.wire import ResourceId, WireModel


class Health(StrEnum):
    HEALTHY = "Healthy"
    WARNING = "Warning"
    CRITICAL = "Critical"

    @property
    def rank(self) -> int:
        return [Health.HEALTHY, Health.WARNING, Health.CRITICAL].index(self)


class MachineError(WireModel):
    """A current (unresolved) replication error."""

    code: str
    message: str
    severity: Health
    disk_id: str | None = None
    first_seen: datetime
    last_seen: datetime
    # A failed cycle is resolved by the next applied one; some conditions (source disks changed, CBT
    # reset without auto-repair) persist until a resync.
    clears_on_next_cycle: bool = True
    # What the operator needs to act without opening the catalog (filled from the error catalog).
    title: str | None = None
    causes: list[str] = Field(default_factory=list)
    recommendations: list[str] = Field(default_factory=list)


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


class ReplicationStatus(WireModel):
    progress_percent: float = Field(default=0.0, ge=0.0, le=100.0)
    last_sync_time: datetime | None = None
    last_applied_sequence: int | None = None
    recovery_points: list[RecoveryPoint] = Field(default_factory=list, description="oldest first")
    current_errors: list[MachineError] = Field(default_factory=list)
    # The health rules' state (shared.health.rules.HealthState, serialised). Opaque here: the
    # domain must not import the catalog, which imports the domain.
    health_state: dict[str, Any] | None = None
    upload_watch: UploadWatch | None = None

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


class Machine(WireModel):
    """Stored in `machines` (pk /id). The per-machine orchestration is its only writer once replicating."""

    id: ResourceId
    appliance_id: ResourceId
    inventory: MachineInventory
    state: MachineState = MachineState.DISCOVERED
    health: Health = Health.HEALTHY
    target: TargetSettings | None = None
    replication: ReplicationStatus = Field(default_factory=ReplicationStatus)
    active_job_id: str | None = Field(default=None, description="the latest long operation on this machine")
    discovered_at: datetime
    updated_at: datetime

    def record_cycle_applied(self, sequence: int, applied_at: datetime) -> None:
        """A cycle reached the replica: advance the watermark and resolve transient cycle errors."""
        status = self.replication
        if status.last_applied_sequence is None or sequence > status.last_applied_sequence:
            status.last_applied_sequence = sequence
        if status.last_sync_time is None or applied_at > status.last_sync_time:
            status.last_sync_time = applied_at
        status.current_errors = [e for e in status.current_errors if not e.clears_on_next_cycle]
        self.updated_at = max(self.updated_at, applied_at)

    def record_error(
        self,
        *,
        code: str,
        message: str,
        severity: Health,
        at: datetime,
        disk_id: str | None = None,
        clears_on_next_cycle: bool = True,
    ) -> None:
        """Raise or refresh a current error (one per code and disk); the machine's health follows it."""
        for error in self.replication.current_errors:
            if error.code == code and error.disk_id == disk_id:
                error.message, error.severity = message, severity
                error.last_seen = max(error.last_seen, at)
                error.clears_on_next_cycle = clears_on_next_cycle
                return
        self.replication.current_errors.append(
            MachineError(
                code=code,
                message=message,
                severity=severity,
                disk_id=disk_id,
                first_seen=at,
                last_seen=at,
                clears_on_next_cycle=clears_on_next_cycle,
            )
        )

    def computed_health(self) -> Health:
        """The worst of the stored health and the current errors' severities."""
        worst = self.health
        for error in self.replication.current_errors:
            if error.severity.rank > worst.rank:
                worst = error.severity
        return worst
