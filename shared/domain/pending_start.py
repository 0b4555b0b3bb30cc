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
    RUNNING = "Running"  # its orchestration was seen or acknowledged it, or the job had already ended
    ROLLED_BACK = "RolledBack"  # never ran: the machine got back the fields the start changed


class StartRunner(StrEnum):
    """What runs the job once the start is recorded, so the reconciler knows what to ask and what to wake."""

    OWN = "Own"  # its own orchestration instance, named after the job (`job-{jobId}`)
    MACHINE = "Machine"  # the machine's long-lived replication orchestration (`machine-{machineId}`)
    REVERSE = "Reverse"  # the machine's reverse orchestration (`reverse-{machineId}`)
    COMMANDS = "Commands"  # no orchestration: the start queues the appliance's commands itself (repair)


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
    request_fingerprint: str | None = Field(
        default=None,
        description="a hash of the request's method, route, canonical JSON body and caller: the same request "
        "sent again within the retry window gets this job back instead of a 409",
    )
    runner: StartRunner = Field(default=StartRunner.OWN, description="what runs the job (see StartRunner)")
    redelivered: int = Field(
        default=0,
        description="how many times the reconciler handed the action again to a long-lived orchestration "
        "that had not acknowledged it",
    )
    result: Any = Field(default=None, description="what the start computed, handed back to a retried request")
    requested_at: datetime
    resumed_at: datetime | None = Field(
        default=None,
        description="when a retry of the request took the start over, or the reconciler re-delivered it, last: "
        "the grace period runs again from then",
    )
    open: bool = Field(
        default=True,
        description="true until the job's runner acknowledged it or the reconciler settled it",
    )
    outcome: StartOutcome = StartOutcome.OPEN

    @property
    def last_touched(self) -> datetime:
        return max(self.requested_at, self.resumed_at or self.requested_at)
