"""Typed payloads of the failover orchestration and its activities."""

from __future__ import annotations

from pydantic import Field

from orchestrators.hydration.contracts import Payload, baseline_snapshot_name
from shared.failover.service import FailoverOutcome
from shared.migration.resource_kinds import ResourceKind, parse_arm_id, resource_id

__all__ = ["FailoverOutcome", "baseline_snapshot_name"]


class FailoverInput(Payload):
    """The input of a failover job's orchestration (`job-{jobId}`), written by the HTTP starter."""

    machine_id: str
    job_id: str
    recovery_point: str = Field(description="the operator's choice: 'latest', ... or a point id")
    shutdown_source: bool = False


class StepRef(Payload):
    machine_id: str
    job_id: str


class StepResult(Payload):
    """A step's verdict: failures are values, so the orchestrator decides what to undo."""

    ok: bool
    message: str = ""
    error_code: str | None = None


class Polling(Payload):
    """How a step waits: every `poll_seconds`, for at most `timeout_seconds`."""

    poll_seconds: float
    timeout_seconds: float
    message: str = ""


class ShutdownWatch(Payload):
    machine_id: str
    command_id: str


class ShutdownRequested(Polling):
    command_id: str


class Acknowledged(Payload):
    acknowledged: bool


class PendingDataState(Payload):
    done: bool
    message: str


class PointPicked(Payload):
    ok: bool
    recovery_point_id: str | None = None
    message: str = ""
    error_code: str | None = None


class StartVm(Payload):
    job_id: str
    vm_id: str


class BaselineRequest(Payload):
    machine_id: str
    job_id: str
    disk_ids: list[str] = Field(description="the VM's managed disks, OS disk first")


class BaselineResult(Payload):
    ok: bool
    snapshot_ids: list[str] = Field(default_factory=list)
    message: str = ""
    error_code: str | None = None


def baseline_snapshot_id(disk_id: str, job_id: str) -> str:
    """The id the failback baseline of `disk_id` gets (known before the snapshot is taken, so a failure
    after it can delete it): next to the disk, named after it and the job."""
    disk = parse_arm_id(disk_id)
    return resource_id(
        ResourceKind.SNAPSHOT,
        disk.subscription,
        disk.resource_group,
        baseline_snapshot_name(disk.name, job_id),
    )


class ChangeInput(Payload):
    """The input of a change of recovery point's orchestration (`job-{jobId}`)."""

    machine_id: str
    job_id: str
    recovery_point_id: str
    vm_id: str
    old_disk_ids: list[str] = Field(description="the VM's disks now, OS disk first")
    old_snapshot_ids: list[str] = Field(description="their failback baseline")


class SwapDisks(Payload):
    vm_id: str
    os_disk_id: str
    data_disk_ids: list[str]


class PointsDeleted(Payload):
    deleted: list[str] = Field(description="recovery point ids deleted (snapshots and catalog entries)")
    failed: list[str] = Field(default_factory=list, description="snapshots that could not be deleted")
    kept: str | None = None
