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


# --- planned failover to on-premises --------------------------------------------------------------


class PlannedFailoverStep(StrEnum):
    """The steps of a PlannedFailover job (Azure -> on-premises), in order."""

    CHECK_PREREQUISITES = "Check prerequisites"
    PRE_SYNC = "Pre-sync"
    SHUT_DOWN_AZURE_VM = "Shut down the Azure VM"
    FINAL_SYNC = "Final snapshot and final sync"
    DETACH_DISKS = "Detach the disks from the appliance"
    SNAPSHOT_ON_PREMISES = "Snapshot the on-premises disks"
    POWER_ON_ON_PREMISES = "Power on the on-premises VM"
    VERIFY_HEARTBEAT = "Verify heartbeat"


class CancelPlannedFailoverStep(StrEnum):
    """The steps of a CancelPlannedFailover job: each undoes one of the planned failover's, if it was done."""

    POWER_OFF_ON_PREMISES = "Power off the on-premises VM"
    REVERT_DISKS = "Revert the on-premises disks"
    REATTACH_DISKS = "Re-attach the disks to the appliance"
    START_AZURE_VM = "Start the Azure VM"
    RESUME_REVERSE_REPLICATION = "Resume reverse replication"


class CommitFailbackStep(StrEnum):
    """The steps of a CommitFailback job, in order. Nothing is deleted before the replicas hold the final
    snapshots' data: a failure up to there leaves the planned failover as it was (it may be cancelled)."""

    CHECK_PREREQUISITES = "Check prerequisites"
    SYNC_REPLICAS = "Bring the replicas to the final snapshots"
    DELETE_AZURE_VM = "Delete the Azure VM and its NICs"
    DELETE_AZURE_DISKS = "Delete the Azure disks"
    DELETE_REVERSE_SNAPSHOTS = "Delete the reverse snapshots"
    DELETE_ON_PREMISES_SNAPSHOT = "Delete the on-premises snapshot"


# The commit's steps after which something is gone: a failure from here on is finished by committing again.
COMMIT_DELETING_STEPS: Final = frozenset(
    {
        CommitFailbackStep.DELETE_AZURE_VM,
        CommitFailbackStep.DELETE_AZURE_DISKS,
        CommitFailbackStep.DELETE_REVERSE_SNAPSHOTS,
        CommitFailbackStep.DELETE_ON_PREMISES_SNAPSHOT,
    }
)


class ForwardReprotectStep(StrEnum):
    """The steps of a Reprotect job toward Azure (after a committed failback), in order."""

    CHECK_PREREQUISITES = "Check prerequisites"
    SEND_CHANGES = "Send the on-premises changes since the snapshot"
    START_REPLICATION = "Start replication"


class PlannedFailback(WireModel):
    """A planned failover to on-premises and what it did, so that a cancel undoes exactly that and a
    commit deletes what remains in Azure. Written by the failback flow only (shared.failback)."""

    job_id: str = Field(description="the PlannedFailover job")
    final_snapshot_ids: dict[str, str] = Field(
        default_factory=dict,
        description="Azure disk id -> its final reverse snapshot (the on-premises disk equals it); kept "
        "until commit or cancel, and also each disk's `reverse.disks[].lastSnapshotId`",
    )
    pre_power_on_snapshots: dict[str, str] = Field(
        default_factory=dict,
        description="on-premises disk id -> the appliance's copy of it taken before power-on",
    )
    azure_vm_stopped_at: datetime | None = Field(default=None, description="the Azure VM was stopped")
    on_premises_up_at: datetime | None = Field(
        default=None, description="the on-premises VM's first heartbeat after power-on"
    )
    downtime_seconds: float | None = Field(
        default=None, ge=0, description="from the Azure VM stopped to the on-premises VM's heartbeat"
    )
    disks_detached: bool = Field(
        default=False, description="the appliance writes no more reverse manifests to the on-premises disks"
    )
    powered_on: bool = Field(default=False, description="the on-premises VM was powered on by the job")
    cancel_job_id: str | None = Field(default=None, description="the latest cancel of it")
    commit_job_id: str | None = Field(default=None, description="the CommitFailback job, once asked")
    replicas_synced: dict[str, str] = Field(
        default_factory=dict,
        description="on-premises disk id -> the final snapshot its replica page blob was brought to (server "
        "side, by the commit): the replica equals the on-premises disk at its pre-power-on copy",
    )
    deletions_started: bool = Field(
        default=False,
        description="the commit began deleting in Azure: from then on it can only be committed again",
    )
    bytes_copied_in_azure: int = Field(
        default=0, ge=0, description="data bytes the commit copied from the final snapshots into the replicas"
    )
    committed_at: datetime | None = Field(default=None, description="the commit deleted everything in Azure")
    tracking_appliance_id: str | None = Field(
        default=None,
        description="the appliance that took the pre-power-on copy and tracks the disks' changes since it",
    )
    reprotect_job_id: str | None = Field(
        default=None, description="the Reprotect job toward Azure, once asked"
    )
    reprotect_cycle_id: str | None = Field(
        default=None, description="the appliance's cycle of the changes since its pre-power-on copy"
    )
    reprotect_bytes_sent: int | None = Field(
        default=None, ge=0, description="what that cycle uploaded: only the on-premises changes"
    )
    reprotect_disk_bytes: int | None = Field(
        default=None, ge=0, description="the machine's disks' total size"
    )
