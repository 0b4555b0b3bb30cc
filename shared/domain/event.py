"""Machine events shown to operators (newest first), with causes and recommended steps for errors."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from shared.domain.principal import Principal
from shared.domain.wire import ResourceId, WireModel


class Severity(StrEnum):
    INFO = "Info"
    WARNING = "Warning"
    CRITICAL = "Critical"


class Event(WireModel):
    """Something that happened to a machine; a failure with the error catalog's causes and steps."""

    # Stored in `events` (pk /machineId, expires after the container's TTL).

    id: ResourceId
    machine_id: ResourceId
    time: datetime
    type: str = Field(description="e.g. 'Replication cycle failed', 'Replication cycle failed for disk'")
    severity: Severity
    message: str
    error_code: str | None = None
    disk_id: str | None = None
    cycle_id: str | None = None
    causes: list[str] = Field(default_factory=list)
    recommendations: list[str] = Field(default_factory=list)
    details: dict[str, str] = Field(
        default_factory=dict, description="what the error's message said (placeholders), and event facts"
    )
    reported_code: str | None = Field(
        default=None, description="the code as the appliance (or the exception) reported it, verbatim"
    )
    references: list[str] = Field(default_factory=list, description="VMware KB / Microsoft links")
    actor: Principal | None = Field(
        default=None,
        description="the operator on whose behalf it happened (a job's events name who started the job)",
    )
