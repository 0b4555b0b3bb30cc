"""Replication cycles and the recovery points they leave behind."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from shared.domain.wire import ResourceId, WireModel


class CycleKind(StrEnum):
    INITIAL = "initial"
    DELTA = "delta"
    FINAL = "final"
    RESYNC = "resync"
    # After a committed failback: the changes since the appliance's pre-power-on copy of the disks, sent
    # to replicas that already equal that copy. It starts a new chain of cycles, as a whole-disk copy
    # does, without being one.
    REPROTECT = "reprotect"


class CycleState(StrEnum):
    RECEIVED = "Received"  # event accepted, waiting for its turn (sequence order)
    APPLYING = "Applying"
    APPLIED = "Applied"
    REJECTED = "Rejected"  # corrupt or truncated upload: the replica was left unchanged


class Cycle(WireModel):
    """One upload from the appliance. Stored in `cycles` (pk /machineId), id = the appliance's cycle id."""

    id: ResourceId
    machine_id: ResourceId
    sequence: int = Field(ge=0)
    kind: CycleKind
    app_consistent: bool = False
    manifests: dict[str, str] = Field(description="disk id -> manifest blob name in the cache account")
    state: CycleState = CycleState.RECEIVED
    received_at: datetime
    applied_at: datetime | None = None
    bytes_applied: int = Field(default=0, ge=0)
    error: str | None = None


class Consistency(StrEnum):
    CRASH = "crash"
    APP = "app"


class RecoveryPoint(WireModel):
    """The machine as it was after one cycle: a snapshot of every one of its disks, changed or not.

    A point that lacks a disk cannot bring the machine back, so it is not a recovery point: the cycle
    that leaves one snapshots the unchanged disks too, and `complete_cycle` refuses to keep a partial one.
    """

    id: str
    cycle_id: str
    time: datetime
    consistency: Consistency
    disk_snapshots: dict[str, str] = Field(description="disk id -> replica blob snapshot id (timestamp)")

    def missing_disks(self, disk_ids: Iterable[str]) -> list[str]:
        """The machine's disks this point has no snapshot of (empty: the point covers the machine)."""
        return [d for d in disk_ids if d not in self.disk_snapshots]
