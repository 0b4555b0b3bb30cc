"""Replication policy served to an appliance (Hyper-V provider / VMware appliance).

Ranges are Azure Migrate's (Hyper-V replication, "control upload throughput"): upload bandwidth limit
512 Kbps to 1,023 Mbps for work and non-work hours; upload threads per VM default 4, maximum 32.
Bandwidth is in Kbps with binary prefixes (1 Mbps = 1,024 Kbps) as the Recovery Services agent's
throttling dialog uses, so 1,023 Mbps = 1,047,552 Kbps.
"""

from __future__ import annotations

from datetime import time
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from shared.domain.errors import FieldValueError
from shared.domain.ranges import IntRange
from shared.domain.wire import RequestModel, WireModel

KBPS_PER_MBPS = 1024
MIN_BANDWIDTH_KBPS = 512
MAX_BANDWIDTH_KBPS = 1023 * KBPS_PER_MBPS
MIN_UPLOAD_THREADS = 1
MAX_UPLOAD_THREADS = 32
DEFAULT_UPLOAD_THREADS = 4


def describe_kbps(kbps: int) -> str:
    if kbps >= KBPS_PER_MBPS and kbps % KBPS_PER_MBPS == 0:
        return f"{kbps // KBPS_PER_MBPS:,} Mbps ({kbps:,} Kbps)"
    return f"{kbps:,} Kbps"


BandwidthKbps = Annotated[int, IntRange(MIN_BANDWIDTH_KBPS, MAX_BANDWIDTH_KBPS, describe_kbps)]
UploadThreads = Annotated[int, IntRange(MIN_UPLOAD_THREADS, MAX_UPLOAD_THREADS)]
RetentionCount = Annotated[int, IntRange(1, 128, lambda n: f"{n} recovery points")]
RetentionHours = Annotated[int, IntRange(1, 15 * 24, lambda n: f"{n} hours")]
AppConsistentMinutes = Annotated[
    int, IntRange(60, 12 * 60, lambda n: f"{n} minutes", zero_means="no app-consistent points")
]
CycleGap = Annotated[int, IntRange(1, 64, lambda n: f"{n} cycles")]
# At least a minute apart, so a disk never gets more than 7 snapshots in 5 minutes (Azure's limit).
ReverseCycleMinutes = Annotated[int, IntRange(1, 24 * 60, lambda n: f"{n} minutes")]


def _local_time(value: time) -> time:
    # An offset (or a number, which pydantic reads as seconds since midnight UTC) makes an aware time,
    # which cannot be compared with the other end, and the agent throttles on its local clock anyway.
    if value.tzinfo is not None:
        raise ValueError("must be a local time of day without an offset, e.g. 09:00")
    return value


LocalTime = Annotated[time, AfterValidator(_local_time)]


class Weekday(StrEnum):
    MONDAY = "Monday"
    TUESDAY = "Tuesday"
    WEDNESDAY = "Wednesday"
    THURSDAY = "Thursday"
    FRIDAY = "Friday"
    SATURDAY = "Saturday"
    SUNDAY = "Sunday"


_WORK_WEEK = [Weekday.MONDAY, Weekday.TUESDAY, Weekday.WEDNESDAY, Weekday.THURSDAY, Weekday.FRIDAY]


class WorkHours(WireModel):
    """When the work-hours limit applies, in the appliance's local time (the agent throttles locally)."""

    model_config = ConfigDict(extra="forbid")  # nested in a request body: typos must be 400s too

    days: list[Weekday] = Field(default_factory=lambda: list(_WORK_WEEK))
    start: LocalTime = time(9, 0)
    end: LocalTime = time(18, 0)

    @model_validator(mode="after")
    def _start_before_end(self) -> WorkHours:
        if self.start >= self.end:
            raise FieldValueError(
                "start",
                f"workHours.start ({self.start:%H:%M}) must be before workHours.end ({self.end:%H:%M}); "
                "work hours cannot span midnight",
            )
        if len(set(self.days)) != len(self.days):
            raise FieldValueError("days", "lists a day twice")
        return self


class PolicyFields(WireModel):
    throttling_enabled: bool = Field(default=False, description="false = upload without a bandwidth limit")
    work_hours_bandwidth_kbps: BandwidthKbps = 4 * KBPS_PER_MBPS
    non_work_hours_bandwidth_kbps: BandwidthKbps = MAX_BANDWIDTH_KBPS
    work_hours: WorkHours = Field(default_factory=WorkHours)
    upload_threads_per_vm: UploadThreads = DEFAULT_UPLOAD_THREADS
    recovery_point_retention_count: RetentionCount = 24
    recovery_point_retention_hours: RetentionHours = 72
    app_consistent_frequency_minutes: AppConsistentMinutes = 240
    max_cycle_gap_before_resync: CycleGap = Field(
        default=8,
        description="later cycles buffered while waiting for a missing sequence number before the disk is resynced",
    )
    reverse_cycle_minutes: ReverseCycleMinutes = Field(
        default=15,
        description="reverse protection: minutes between the cycles that copy the Azure VM's changes back",
    )


class ReplicationPolicy(PolicyFields):
    """The stored and served policy."""


class ReplicationPolicyUpdate(PolicyFields, RequestModel):
    """PUT body: the whole policy (omitted fields take their defaults), misspelt fields refused."""

    model_config = RequestModel.model_config

    def to_policy(self) -> ReplicationPolicy:
        return ReplicationPolicy.model_validate(self.model_dump())
