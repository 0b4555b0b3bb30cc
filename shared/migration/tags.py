"""The tags on every resource the control plane creates, so a sweeper can find what was left behind."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

TAG_MACHINE_ID: Final = "migrate-machine-id"
TAG_JOB_ID: Final = "migrate-job-id"
TAG_PURPOSE: Final = "migrate-purpose"
TAG_CREATED_AT: Final = "migrate-created-at"


class Purpose(StrEnum):
    TEMPORARY = "temporary"  # hydration helpers and test-migration resources: always deleted afterwards
    FINAL = "final"  # the migrated VM and its disks: the customer's from then on
    # The incremental snapshots of a failed-over VM's disks that failback replicates from: they outlive
    # the failover job, so the sweeper (which takes only TEMPORARY) leaves them; a failed failover's
    # compensation deletes its own by id.
    FAILBACK_BASELINE = "failback-baseline"


class ResourceTags(BaseModel):
    model_config = ConfigDict(frozen=True)

    machine_id: str = Field(min_length=1, max_length=256)
    job_id: str = Field(min_length=1, max_length=256)
    purpose: Purpose
    created_at: datetime

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        return value.astimezone(UTC)

    def to_arm(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """ARM tags: ours win over `extra` (the operator's own tags) so the sweeper can rely on them."""
        return {
            **(extra or {}),
            TAG_MACHINE_ID: self.machine_id,
            TAG_JOB_ID: self.job_id,
            TAG_PURPOSE: self.purpose.value,
            TAG_CREATED_AT: self.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    @classmethod
    def from_arm(cls, tags: dict[str, str] | None) -> ResourceTags | None:
        """Our tags read back from a resource; None when they are missing or unreadable."""
        tags = tags or {}
        lowered = {k.lower(): v for k, v in tags.items()}
        try:
            return cls(
                machine_id=lowered[TAG_MACHINE_ID],
                job_id=lowered[TAG_JOB_ID],
                purpose=Purpose(lowered[TAG_PURPOSE]),
                created_at=datetime.fromisoformat(lowered[TAG_CREATED_AT].replace("Z", "+00:00")),
            )
        except (KeyError, ValueError, ValidationError):
            return None
