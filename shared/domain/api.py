"""The HTTP API's request and response bodies (camelCase JSON). functions/openapi.py builds the
OpenAPI document from these models, so the schema and the code cannot disagree.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from shared.domain.appliance import ApplianceKind
from shared.domain.command import ApplianceCommand
from shared.domain.cycle import Consistency, Cycle, RecoveryPoint
from shared.domain.event import Event
from shared.domain.failback import PlannedFailback, ReverseProtection
from shared.domain.inventory import Firmware, MachineInventory, OsType
from shared.domain.job import Job, JobKind, JobStatus
from shared.domain.lifecycle import Location, MachineState, Operation
from shared.domain.machine import Health, MachineError, MachineSnapshot, UploadWatch
from shared.domain.policy import ReplicationPolicy
from shared.domain.target import TargetSettings
from shared.domain.wire import RequestModel, ResourceId, WireModel


class RegisterApplianceRequest(RequestModel):
    name: str = Field(min_length=1, max_length=128)
    kind: ApplianceKind
    site: str = Field(min_length=1, max_length=128, description="VMware vCenter/site or Hyper-V host/cluster")


class ApplianceRegistered(WireModel):
    id: str
    credential: str = Field(
        description="shown once: send as 'Authorization: Bearer <credential>'; only a hash is stored"
    )
    name: str
    kind: ApplianceKind
    site: str
    policy: ReplicationPolicy


class ReportedMachineResult(WireModel):
    id: str
    outcome: str = Field(description="Created | Updated | Unchanged")
    state: MachineState


class DiscoveryResult(WireModel):
    machines: list[ReportedMachineResult]


class CommandList(WireModel):
    commands: list[ApplianceCommand]


MAX_UPLOAD_BLOBS_PER_REQUEST = 1000


class UploadCredentialsRequest(RequestModel):
    machine_id: ResourceId
    cycle_id: ResourceId
    blobs: list[str] = Field(
        min_length=1,
        max_length=MAX_UPLOAD_BLOBS_PER_REQUEST,
        description="full names of the cycle's blobs to write, each '{machineId}/{cycleId}/{diskId}/{file}' "
        "(data blobs and manifests); ask again in batches for more",
    )


class UploadCredentials(WireModel):
    machine_id: str
    cycle_id: str
    expires_on: datetime = Field(description="every URL stops working then: ask again a few minutes before")
    permissions: str = Field(description="'cw': create and write; never read, list or delete")
    blobs: dict[str, str] = Field(description="blob name -> its SAS URL (scoped to that one blob)")


class RecoveryPointsSummary(WireModel):
    count: int
    oldest: datetime | None = None
    latest: datetime | None = None
    latest_app_consistent: datetime | None = None


class MachineSummary(WireModel):
    id: str
    appliance_id: str
    display_name: str
    os_type: OsType
    firmware: Firmware
    state: MachineState
    active_location: Location = Field(
        description="where the machine runs now (derived from its state): replication protects it from there"
    )
    health: Health
    progress_percent: float
    last_sync_time: datetime | None = None
    last_applied_sequence: int | None = Field(
        default=None,
        description="the sequence of the newest applied cycle (the replica's watermark); null before the "
        "first. An appliance's next delta is this plus one; a lower or equal sequence is superseded",
    )
    rpo_seconds: int | None = Field(
        default=None, description="now minus the latest recovery point's time, while replication is in place"
    )
    recovery_points: RecoveryPointsSummary
    current_error_count: int
    allowed_operations: list[Operation] = Field(
        description="the operations the machine's state allows now; any other is refused with 409"
    )


class ReverseProtectionView(ReverseProtection):
    """Reverse protection as the machine view shows it: what is stored, and the reverse RPO now."""

    rpo_seconds: int | None = Field(
        default=None,
        description="now minus the newest reverse recovery point's time, while reverse replication is in "
        "place (null before the initial reverse sync lands). Above 3 x the reverse appliance's "
        "reverseCycleMinutes the health monitor raises ReverseRpoExceeded (MCP-3505, Warning), which the "
        "next reverse recovery point clears",
    )


class DiskReplicationStatistics(WireModel):
    """One disk's newest whole-disk copy (initial replication or resync)."""

    disk_id: str
    cycle_id: str = Field(description="the initial or resync cycle that copies (or copied) it")
    bytes_to_copy: int = Field(
        description="bytes the copy writes: the disk's data, and pages of an older replica it clears"
    )
    bytes_applied: int = Field(description="written so far; advances while the copy runs")
    percent: float
    started_at: datetime
    updated_at: datetime = Field(description="when bytesApplied was last recorded")


class LastCycle(WireModel):
    cycle_id: str
    sequence: int
    kind: str
    applied_at: datetime
    duration_seconds: float = Field(description="from the start of its apply (or its receipt) to applied")
    bytes_applied: int


class ReplicationStatistics(WireModel):
    """Replication figures of the machine view, from the machine and its newest cycles (one query)."""

    disks: list[DiskReplicationStatistics] = Field(
        description="per disk, its newest whole-disk copy; empty before the first one starts"
    )
    initial_copy_eta_seconds: int | None = Field(
        description="while an initial copy or resync runs: the bytes left at the rate it has copied so far "
        "(or, before it has a rate, at the recent cycles' throughput); null otherwise or when unknown"
    )
    throughput_bytes_per_second: float | None = Field(
        description="bytes applied per second of apply over the last applied cycles (throughputCycles)"
    )
    throughput_cycles: int = Field(description="how many applied cycles the throughput is over")
    backlog_cycles: int = Field(description="cycles uploaded and not applied yet")
    backlog_bytes: int | None = Field(
        description="their uploaded data bytes, as the appliance declared them (uploadedBytes of "
        "CycleUploaded); null when one of them did not say"
    )
    last_cycle: LastCycle | None = Field(description="the newest applied cycle")


class MachineDetail(MachineSummary):
    inventory: MachineInventory
    target: TargetSettings | None = None
    recovery_point_list: list[RecoveryPoint]
    current_errors: list[MachineError] = Field(description="with the error catalog's causes and steps")
    events_url: str = Field(description="the machine's recent events (newest first)")
    active_job_id: str | None = None
    failover_recovery_point_id: str | None = Field(
        default=None, description="after a failover: the recovery point the VM was built from"
    )
    failover_vm_id: str | None = Field(default=None, description="after a failover: the VM's ARM id")
    failback_baseline_snapshot_ids: list[str] = Field(
        default_factory=list,
        description="after a failover: the incremental snapshots of the VM's disks failback starts from",
    )
    cycle_in_progress: UploadWatch | None = Field(
        default=None,
        description="a cycle the appliance announced (CycleStarted) and whose uploads are not applied yet: "
        "its disks are due by `deadline`, after which each late disk raises 1011",
    )
    reverse_protection: ReverseProtectionView | None = Field(
        default=None,
        description="after a reprotect: the appliance, the disks, reverse recovery points and bytes processed, "
        "transferred and matched",
    )
    planned_failback: PlannedFailback | None = Field(
        default=None,
        description="a planned failover to on-premises until commit or cancel: its job, the final reverse "
        "snapshots, the appliance's copies of the disks taken before power-on, and the downtime (the Azure "
        "VM stopped -> the on-premises VM's first heartbeat)",
    )
    replication_statistics: ReplicationStatistics = Field(
        description="per-disk copy progress, throughput, backlog, ETA of the initial copy, last cycle"
    )
    discovered_at: datetime
    updated_at: datetime


class RecoveryPointView(WireModel):
    """One recovery point as GET /api/machines/{id}/recovery-points shows it."""

    id: str
    time: datetime
    consistency: Consistency
    cycle_id: str = Field(description="the replication cycle that left it")
    disks: list[str] = Field(description="the machine's disks it has a snapshot of: every one")


class RecoveryPointList(WireModel):
    recovery_points: list[RecoveryPointView] = Field(description="newest first")


class MachineList(WireModel):
    machines: list[MachineSummary]
    continuation_token: str | None = Field(
        default=None, description="pass back as ?continuationToken= for more"
    )


class EventList(WireModel):
    events: list[Event] = Field(description="newest first")
    continuation_token: str | None = Field(
        default=None, description="pass back as ?continuationToken= for older events"
    )


class AcceptedJob(WireModel):
    """202 body of a long operation; the Location header points at the job."""

    job_id: str
    machine_id: str
    status_url: str
    job: Job


class ErrorDetail(WireModel):
    code: str
    message: str
    details: list[dict[str, object]] = Field(default_factory=list)


class ErrorResponse(WireModel):
    error: ErrorDetail


class ForbiddenTransitionDetail(WireModel):
    """The one entry of `details` in a 409 ForbiddenTransition."""

    machine_id: str
    from_state: MachineState = Field(alias="from", description="the machine's state")
    to: MachineState = Field(description="the state the request needed")
    allowed: list[MachineState] = Field(description="the states the machine can go to from here")
    allowed_operations: list[Operation] = Field(description="what the operator may ask now")


class OperatorRequest(WireModel):
    """What an HTTP starter hands the per-machine orchestration (its input, or an OperatorRequest event)."""

    machine_id: str
    job_id: str
    kind: JobKind


class CycleSignal(WireModel):
    """What the Event Grid trigger tells the machine's orchestration when it wakes it about a cycle.

    Cosmos stays the truth (the inbox and the upload watch): a generation that starts re-reads them, so
    a lost signal costs a wake-up, never a cycle. The copies carried here let a running generation apply
    the next delta, or arm the upload deadline, without reading them back.
    """

    cycle_id: str
    sequence: int | None = Field(default=None, description="set when the cycle was uploaded")
    started: bool = Field(default=False, description="the appliance started the cycle (upload deadline set)")
    cycle: Cycle | None = Field(default=None, description="the inbox record the upload created")
    upload_watch: UploadWatch | None = Field(
        default=None, description="the started cycle's upload deadline, as recorded on the machine"
    )
    machine: MachineSnapshot | None = Field(
        default=None,
        description="the machine as the upload's acceptance read it, or as the start's watch left it: the "
        "cycle's completion writes on the newer of the two",
    )


class MachineListQuery(RequestModel):
    """Query string of GET /api/machines."""

    appliance_id: ResourceId | None = None
    state: MachineState | None = None
    page_size: int = Field(default=50, ge=1, le=100)
    continuation_token: str | None = Field(
        default=None, description="from the previous page; anything else is a 400 InvalidContinuationToken"
    )


class EventListQuery(RequestModel):
    """Query string of GET /api/machines/{id}/events (documentation: the trigger reads it itself)."""

    limit: int = Field(default=50, ge=1, le=200)
    continuation_token: str | None = Field(
        default=None, description="from the previous page; anything else is a 400 InvalidContinuationToken"
    )


class JobListQuery(RequestModel):
    """Query string of GET /api/jobs: every filter optional, newest first."""

    machine_id: ResourceId | None = Field(default=None, description="only this machine's jobs")
    kind: JobKind | None = None
    status: JobStatus | None = None
    page_size: int = Field(default=50, ge=1, le=100)
    continuation_token: str | None = Field(
        default=None, description="from the previous page; anything else is a 400 InvalidContinuationToken"
    )


class JobList(WireModel):
    jobs: list[Job] = Field(description="newest first (by createdAt)")
    continuation_token: str | None = Field(
        default=None, description="pass back as ?continuationToken= for older jobs"
    )


class ApplianceListQuery(RequestModel):
    """Query string of GET /api/appliances."""

    page_size: int = Field(default=50, ge=1, le=100)
    continuation_token: str | None = Field(
        default=None, description="from the previous page; anything else is a 400 InvalidContinuationToken"
    )


class ApplianceHealth(StrEnum):
    HEALTHY = "Healthy"
    NOT_RESPONDING = "NotResponding"
    NEVER_HEARD = "NeverHeard"


class ApplianceView(WireModel):
    """An appliance as operators see it; never its credential hash."""

    id: str
    name: str
    kind: ApplianceKind
    site: str
    registered_at: datetime
    last_heartbeat: datetime | None = None
    agent_version: str | None = Field(default=None, description="from its newest heartbeat, when it sent one")
    health: ApplianceHealth = Field(
        description="Healthy: heard from within the health monitor's heartbeat timeout; NotResponding: "
        "silent for longer (its machines turn Critical); NeverHeard: no heartbeat since registration"
    )
    heartbeat_timeout_seconds: int = Field(
        description="the health monitor's threshold the health is judged by"
    )
    machine_count: int | None = Field(
        default=None,
        description="machines the appliance reported: counted by one query on GET /api/appliances/{id}; "
        "null in the list, which stays one round trip per page",
    )
    policy: ReplicationPolicy


class ApplianceList(WireModel):
    appliances: list[ApplianceView]
    continuation_token: str | None = Field(
        default=None, description="pass back as ?continuationToken= for more"
    )


class StatusPageQuery(RequestModel):
    """The query of GET /api/status (besides `code`, the function key)."""

    refresh: int | None = Field(
        default=None, ge=2, le=3600, description="seconds between the page's refreshes (default 10)"
    )
