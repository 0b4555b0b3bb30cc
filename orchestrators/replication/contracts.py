"""Typed payloads between the machine replication orchestrator and its activities (JSON on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.domain.cycle import Consistency, Cycle, RecoveryPoint
from shared.domain.machine import MachineSnapshot, UploadWatch
from shared.domain.policy import ReplicationPolicy
from shared.replication.cycles import MachineAfterCycle, ReplicationView
from shared.replication.units import DiskUnit


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True)


class PendingDisposal(BaseModel):
    """An applied cycle whose cache artefacts could not all be deleted: the next cycle waits for them
    (Azure Migrate's WaitingForArtefactsDisposalPreCycle) and 181008 is raised after each timeout period."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    cycle_id: str
    blobs: list[str]
    since: datetime
    reports: int = Field(default=0, description="181008 raised so far for this wait")


class FollowState(BaseModel):
    """Steady replication carried from one generation to the next instead of re-reading it: the machine
    as the last cycle's update recorded it, the policy and when the view was last read, the started
    cycle's upload deadline, and the next delta when its upload signal carried it."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    machine: MachineAfterCycle
    policy: ReplicationPolicy
    view_read_at: datetime
    upload_watch: UploadWatch | None = None
    next_cycle: Cycle | None = None
    next_machine: MachineSnapshot | None = None  # the machine copy the next cycle's completion writes on


class OrchestrationState(BaseModel):
    """What one generation hands the next through continue-as-new. Everything else is re-read from
    Cosmos (at least every few minutes, and whenever anything but a steady delta happens), so the
    state stays small and a lost wake-up signal loses nothing."""

    model_config = ConfigDict(extra="ignore")  # the first generation's input is the operator request

    machine_id: str = Field(alias="machineId")
    gap_since: datetime | None = Field(default=None, alias="gapSince")
    resync_requested_for: int | None = Field(
        default=None, alias="resyncRequestedFor", description="the missing sequence a resync was asked for"
    )
    pending_disposal: PendingDisposal | None = Field(default=None, alias="pendingDisposal")
    follow: FollowState | None = Field(default=None, description="set while replication runs steadily")
    generation: int = 0

    def to_input(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)


class MachineRef(Payload):
    machine_id: str


class JobRef(Payload):
    machine_id: str
    job_id: str


class JobFailure(JobRef):
    """The job's retries ran out: it ends Failed with this message."""

    message: str


class DiskApply(Payload):
    machine_id: str
    cycle_id: str
    disk_id: str
    disk_size: int
    manifest_blob: str
    base: bool = Field(description="an initial/resync cycle: the replica is created if missing")


class DiskApplied(Payload):
    disk_id: str
    ok: bool
    bytes_applied: int = 0
    data_blobs: list[str] = Field(default_factory=list)
    error_code: str | None = None
    error_message: str | None = None
    error_details: list[dict[str, Any]] = Field(default_factory=list, description="the exception's details")
    replica_changed: bool = Field(
        default=False,
        description="rejected after part of it was written: restore the previous recovery point",
    )


class DiskUnitPlan(Payload):
    """A whole-disk copy of one disk cut into units (or why its upload is rejected: `ok` false)."""

    disk_id: str
    ok: bool
    units: list[DiskUnit] = Field(default_factory=list)
    parallelism: int = Field(
        default=1, ge=1, description="units to apply at once (REPLICATION_UNIT_PARALLELISM)"
    )
    data_blobs: list[str] = Field(default_factory=list, description="the upload's blobs, for disposal")
    error_code: str | None = None
    error_message: str | None = None
    error_details: list[dict[str, Any]] = Field(default_factory=list)


class UnitApply(Payload):
    machine_id: str
    cycle_id: str
    disk_id: str
    unit: DiskUnit
    # Where the unit stands in its disk's copy, for the progress it records while it writes (zero: none).
    bytes_before: int = Field(default=0, ge=0, description="extent bytes of the disk's earlier units")
    disk_bytes: int = Field(default=0, ge=0, description="extent bytes of all the disk's units")


class RestoreRequest(Payload):
    """Put these replicas back to the machine's latest recovery point (a rejected cycle changed them)."""

    machine_id: str
    cycle_id: str = Field(description="the rejected cycle: makes the restore idempotent")
    disk_ids: list[str]


class RestoreState(Payload):
    done: bool
    restored: list[str] = Field(default_factory=list, description="disks put back (or being put back)")
    without_point: list[str] = Field(
        default_factory=list,
        description="disks with no recovery point to go back to: only a resync repairs them",
    )
    retry_after_seconds: float = 5.0


class SnapshotRequest(Payload):
    machine_id: str
    cycle_id: str
    sequence: int
    consistency: Consistency
    disk_ids: list[str] = Field(description="every disk of the machine, not only the cycle's")


class SnapshotTaken(Payload):
    """The cycle's recovery point, or none when a disk of the machine has no replica to snapshot yet
    (a disk added since replication was enabled, until Repair replication creates its replica)."""

    recovery_point: RecoveryPoint | None
    missing_disks: list[str] = Field(default_factory=list)


class CycleCompletion(Payload):
    cycle: Cycle
    recovery_point: RecoveryPoint | None = Field(
        description="None: a disk of the machine had no replica, so the cycle left no recovery point"
    )
    missing_disks: list[str] = Field(default_factory=list, description="why there is no recovery point")
    bytes_applied: int
    policy: ReplicationPolicy
    artefacts: list[str] = Field(description="cache blobs of this cycle (manifests and data) to dispose of")
    started_at: datetime | None = Field(default=None, description="when the orchestration began applying it")
    machine_seen: MachineSnapshot | None = Field(
        default=None,
        description="a copy of the machine the cycle's signals carried, with its ETag (saves the completion a read)",
    )


class CycleRejection(Payload):
    machine_id: str
    cycle_id: str
    rejected_disks: list[DiskApplied]
    # Every disk the cycle carried: a rejected cycle is discarded whole, so each needs a resync. Empty in
    # payloads recorded before this field existed (then the rejected disks are all that is known).
    carried_disk_ids: list[str] = []


class ResyncRequest(Payload):
    machine_id: str
    reason: str
    missing_sequence: int | None = None
    buffered: int = 0
    max_gap: int | None = None
    request_id: str = Field(
        description="deterministic id from the orchestration: a retried activity queues once"
    )


class SupersededCycles(Payload):
    machine_id: str
    cycle_ids: list[str]


class ProgressUpdate(Payload):
    machine_id: str
    percent: float


class HealthTimings(Payload):
    """Health settings the orchestrator needs, read by an activity (orchestrators read no environment)."""

    dispose_timeout_seconds: float
    dispose_retry_seconds: float


class GenerationView(Payload):
    view: ReplicationView
    timings: HealthTimings


class CycleCompleted(Payload):
    dropped_recovery_points: list[str]
    undisposed: list[str] = Field(description="artefacts that could not be deleted (disposal is retried)")
    machine: MachineAfterCycle | None = Field(
        default=None, description="the machine as the cycle was recorded: the generation goes on from it"
    )


class DisposalRequest(Payload):
    machine_id: str
    cycle_id: str
    blobs: list[str]


class DisposalResult(Payload):
    remaining: list[str]


class DisposeTimeout(Payload):
    machine_id: str
    blocked_cycle_id: str
    previous_cycle_id: str
    remaining: int
    waited_seconds: float
    attempt: int = Field(ge=1)


class UploadDeadline(Payload):
    machine_id: str
    cycle_id: str
