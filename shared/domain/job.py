"""Long operations (enable replication, test migration, migration, failover...) as jobs with steps."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from shared.domain.wire import ResourceId, WireModel


class JobKind(StrEnum):
    ENABLE_REPLICATION = "EnableReplication"
    STOP_REPLICATION = "StopReplication"
    REPAIR_REPLICATION = "RepairReplication"
    TEST_MIGRATION = "TestMigration"
    TEST_MIGRATION_CLEANUP = "TestMigrationCleanup"
    MIGRATION = "Migration"
    COMPLETE_MIGRATION = "CompleteMigration"
    FAILOVER = "Failover"
    CHANGE_RECOVERY_POINT = "ChangeRecoveryPoint"
    COMMIT = "Commit"
    PLANNED_FAILOVER = "PlannedFailover"
    CANCEL_PLANNED_FAILOVER = "CancelPlannedFailover"
    REPROTECT = "Reprotect"


class JobStatus(StrEnum):
    NOT_STARTED = "NotStarted"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    WARNING = "Warning"  # finished, with a non-fatal failure (e.g. source shutdown failed before failover)
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self not in (JobStatus.NOT_STARTED, JobStatus.IN_PROGRESS)


class JobError(WireModel):
    code: str
    message: str


class JobStep(WireModel):
    name: str
    status: JobStatus = JobStatus.NOT_STARTED
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: JobError | None = None


class Job(WireModel):
    """Stored in `jobs` (pk /id: the client polls by job id alone)."""

    id: ResourceId
    kind: JobKind
    machine_id: ResourceId
    status: JobStatus = JobStatus.NOT_STARTED
    steps: list[JobStep] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    error: JobError | None = None
