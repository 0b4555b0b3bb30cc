"""A source machine as the control plane tracks it: inventory, lifecycle, target, replication status."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

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
    """A current (unresolved) replication error; cleared when a later cycle applies."""

    code: str
    message: str
    severity: Health
    disk_id: str | None = None
    first_seen: datetime
    last_seen: datetime


class ReplicationStatus(WireModel):
    progress_percent: float = Field(default=0.0, ge=0.0, le=100.0)
    last_sync_time: datetime | None = None
    last_applied_sequence: int | None = None
    recovery_points: list[RecoveryPoint] = Field(default_factory=list, description="oldest first")
    current_errors: list[MachineError] = Field(default_factory=list)

    def latest_point(self, consistency: Consistency | None = None) -> RecoveryPoint | None:
        points = [p for p in self.recovery_points if consistency is None or p.consistency == consistency]
        return max(points, key=lambda p: p.time, default=None)


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

    def computed_health(self) -> Health:
        """The worst of the stored health and the current errors' severities."""
        worst = self.health
        for error in self.replication.current_errors:
            if error.severity.rank > worst.rank:
                worst = error.severity
        return worst
