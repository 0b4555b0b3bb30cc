"""Reverse protection (the failed-over Azure VM replicated back to its on-premises machine): the steps of
the Reprotect job and what the machine records about its reverse replication."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final

from pydantic import Field

from shared.domain.wire import ResourceId, WireModel

# An appliance writes at most this many disks back at a time (Site Recovery's limit per process server).
MAX_REVERSE_DISKS_PER_APPLIANCE: Final = 60
# Reverse recovery points kept on the machine document (the newest last).
MAX_REVERSE_POINTS: Final = 24


class ReprotectStep(StrEnum):
    """The steps of a Reprotect job, in order; the error catalog names a failure by its step."""

    CHECK_PREREQUISITES = "Check prerequisites"
    POWER_OFF_ON_PREMISES = "Power off on-premises VM"
    DETERMINE_BASELINE = "Determine baseline"
    INITIAL_REVERSE_SYNC = "Initial reverse sync"
    START_REVERSE_REPLICATION = "Start reverse replication"


class BaselineMethod(StrEnum):
    CHANGE_RECORDS = "changeRecords"  # Azure's page-range diff united with the appliance's change record
    BLOCK_HASHES = (
        "blockHashes"  # the fallback: block hashes compared (the snapshot read by the control plane)
    )


class ReverseDisk(WireModel):
    """One Azure disk and the on-premises disk it is written to."""

    azure_disk_id: str
    on_premises_disk_id: str
    size_bytes: int = Field(default=0, ge=0, description="the Azure disk's size")
    last_snapshot_id: str | None = Field(
        default=None, description="the newest reverse snapshot the on-premises disk equals"
    )


class ReverseRecoveryPoint(WireModel):
    """The on-premises disks equal the Azure disks at these snapshots."""

    id: ResourceId
    cycle_id: str
    created_at: datetime
    snapshot_ids: list[str]
    bytes_processed: int = Field(ge=0)
    bytes_transferred: int = Field(ge=0)
    bytes_matched: int = Field(ge=0)


class ReverseProtection(WireModel):
    """Written by the reverse flow only (shared.failback)."""

    job_id: str = Field(description="the Reprotect job that started it")
    appliance_id: ResourceId = Field(description="the appliance that writes the on-premises disks")
    disks: list[ReverseDisk] = Field(default_factory=list)
    baseline: BaselineMethod | None = None
    cycle_sequence: int = Field(
        default=0, ge=0, description="reverse cycles completed after the initial sync"
    )
    bytes_processed: int = Field(default=0, ge=0, description="the initial sync and every cycle, summed")
    bytes_transferred: int = Field(default=0, ge=0)
    bytes_matched: int = Field(default=0, ge=0)
    last_point_at: datetime | None = None
    recovery_points: list[ReverseRecoveryPoint] = Field(default_factory=list)
