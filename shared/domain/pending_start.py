"""The record an operator action's start leaves on its machine, written in the same document write as the
machine's transition (see `shared.jobs.starts`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from shared.domain.job import Job
from shared.domain.wire import WireModel


class StartOutcome(StrEnum):
    OPEN = "Open"  # recorded; its orchestration not yet seen running
    RUNNING = "Running"  # its orchestration was seen, or the job had already ended
    ROLLED_BACK = "RolledBack"  # never ran: the machine got back the fields the start changed


class PendingStart(WireModel):
    """An operator action's start, embedded in its machine so that one write records both the machine's
    new state and the job (a crash can split the machine from a separate job document, never from this)."""

    job: Job = Field(description="the job as the request created it")
    idempotency_key: str | None = Field(
        default=None, description="the request's Idempotency-Key: a retry with it gets this job back"
    )
    previous: dict[str, Any] = Field(
        default_factory=dict,
        description="the machine's top-level fields the start changed, as they were before (wire form)",
    )
    result: Any = Field(default=None, description="what the start computed, handed back to a retried request")
    requested_at: datetime
    resumed_at: datetime | None = Field(
        default=None,
        description="when a retry under the same key last took the start over: the grace period runs again",
    )
    open: bool = Field(default=True, description="true until the reconciler has settled it")
    outcome: StartOutcome = StartOutcome.OPEN

    @property
    def last_touched(self) -> datetime:
        return max(self.requested_at, self.resumed_at or self.requested_at)
