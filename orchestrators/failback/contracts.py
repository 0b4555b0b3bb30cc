"""Typed payloads of the reverse orchestration (the Reprotect job, then reverse cycles) and its activities."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from orchestrators.hydration.contracts import Payload
from shared.failback.service import ReprotectOutcome

__all__ = ["ReprotectOutcome"]


def reverse_instance_id(machine_id: str) -> str:
    """The machine's reverse orchestration: the one writer of its reverse protection."""
    return f"reverse-{machine_id}"


# The sub-orchestration that runs a PlannedFailover or CancelPlannedFailover job between two reverse
# cycles (orchestrators/failback/planned.py), and the event that wakes the reverse orchestration from
# its wait for the next cycle when such a job is recorded.
FAILBACK_JOB = "failback_job_orchestrator"
REVERSE_WAKE = "ReverseWake"


class ReverseInput(Payload):
    """The reverse orchestration's input: first the Reprotect job, then one reverse cycle per episode
    (`continue_as_new` with the next sequence)."""

    machine_id: str
    job_id: str
    phase: Literal["reprotect", "cycles"] = "reprotect"
    sequence: int = Field(default=0, ge=0, description="reverse cycles done (cycles phase)")
    failures: int = Field(default=0, ge=0, description="consecutive failed cycles")


class StepRef(Payload):
    machine_id: str
    job_id: str


class StepResult(Payload):
    ok: bool
    message: str = ""
    error_code: str | None = None


class Polling(Payload):
    poll_seconds: float
    timeout_seconds: float


class Queued(Polling):
    command_ids: list[str]


class CommandWatch(Payload):
    machine_id: str
    command_id: str


class CommandView(Payload):
    acknowledged: bool
    error_code: str | None = None
    error_message: str | None = None
    complete: bool = Field(default=True, description="ApplyReverseManifest: every range verified and written")
    bytes_written: int = 0
    available: bool = Field(default=True, description="ReportChangedBlocks: a change record exists")
    reason: str | None = None


class DiskRef(Payload):
    azure_disk_id: str
    on_premises_disk_id: str


class SnapshotsRequest(Payload):
    machine_id: str
    job_id: str
    cycle_id: str


class SnapshotsTaken(Payload):
    ok: bool
    snapshot_ids: dict[str, str] = Field(default_factory=dict, description="by Azure disk id")
    disk_sizes: dict[str, int] = Field(default_factory=dict)
    message: str = ""
    error_code: str | None = None
    # Read by the activity (orchestrators read no settings): how long to wait before asking again after
    # a SnapshotLimitReached.
    limit_wait_seconds: float = 60


class ChangesRequest(Payload):
    machine_id: str
    job_id: str


class DiskSend(Payload):
    """Plan one disk's manifest and queue it for the appliance."""

    machine_id: str
    cycle_id: str
    azure_disk_id: str
    on_premises_disk_id: str
    previous_snapshot_id: str | None
    current_snapshot_id: str
    disk_size: int
    changes_command_id: str | None = None
    hashes_command_id: str | None = None


class DiskSent(Payload):
    ok: bool
    fallback_reason: str | None = Field(default=None, description="no diff: compare block hashes instead")
    refine: Queued | None = Field(
        default=None, description="the finer hash pass queued: its answer plans the disk (hashes_command_id)"
    )
    command_ids: list[str] = Field(default_factory=list)
    bytes_processed: int = 0
    bytes_transferred: int = 0
    bytes_matched: int = 0
    message: str = ""
    error_code: str | None = None


class Resend(Payload):
    machine_id: str
    command_id: str
    attempt: int


class Fallback(Payload):
    machine_id: str
    job_id: str
    azure_disk_id: str
    on_premises_disk_id: str
    reason: str


class SnapshotIds(Payload):
    snapshot_ids: list[str]


class PointRecord(Payload):
    machine_id: str
    cycle_id: str
    snapshot_ids: dict[str, str]
    bytes_processed: int
    bytes_transferred: int
    bytes_matched: int
    baseline: str | None = None


class Prune(Payload):
    """Delete each disk's snapshots older than the one kept (S_{k-1})."""

    kept: dict[str, str] = Field(description="Azure disk id -> the oldest snapshot kept")


class CycleSettings(Payload):
    active: bool
    replicating: bool = False
    interval_seconds: float = 900
    poll_seconds: float = 5
    timeout_seconds: float = 3600
    previous_snapshot_ids: dict[str, str] = Field(default_factory=dict)
    disks: list[DiskRef] = Field(default_factory=list)
    job_id: str = ""
    failback_job_id: str | None = Field(
        default=None, description="a PlannedFailover or CancelPlannedFailover job to run before any cycle"
    )
    failback_cancel: bool = Field(default=False, description="that job is a CancelPlannedFailover")


class CycleFailure(Payload):
    machine_id: str
    cycle_id: str
    error_code: str | None
    message: str


class FailbackRun(Payload):
    """The failback job sub-orchestration's input: the job the machine records as active."""

    machine_id: str
    job_id: str
    cancel: bool = False
