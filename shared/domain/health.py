"""A machine's replication health as stored on its document: the current errors and the counters the
health rules (shared.health.rules) decide from.

One record holds everything: the rules read it, the health writer (shared.health.writer) stores it, and
the API's `currentErrors` are read from it. The vocabulary that the error catalog shares with it
(`Health`, `ClearedBy`) lives here, because the catalog imports the domain and never the other way round.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import ConfigDict, Field

from shared.domain.wire import WireModel


class Health(StrEnum):
    HEALTHY = "Healthy"
    WARNING = "Warning"
    CRITICAL = "Critical"

    @property
    def rank(self) -> int:
        return [Health.HEALTHY, Health.WARNING, Health.CRITICAL].index(self)


class ClearedBy(StrEnum):
    """What resolves a current error of this kind."""

    NEXT_CYCLE = "nextCycle"  # any later applied cycle (the failure was transient or has been fixed)
    RESYNC = "resync"  # only an applied resync cycle: the replica can no longer follow deltas
    HEARTBEAT = "heartbeat"  # the appliance is heard from again (a heartbeat or an uploaded cycle)
    # The machine's Mobility agent heartbeats again. Not the appliance's heartbeat, nor an applied cycle:
    # neither says the agent on the server is running.
    AGENT_HEARTBEAT = "agentHeartbeat"


class MachineError(WireModel):
    """A current (unresolved) replication error, as the API shows it."""

    code: str
    message: str
    severity: Health
    disk_id: str | None = None
    first_seen: datetime
    last_seen: datetime
    # A failed cycle is resolved by the next applied one; some conditions (source disks changed, CBT
    # reset without auto-repair) persist until a resync.
    clears_on_next_cycle: bool = True
    # What the operator needs to act without opening the catalog (filled from the error catalog).
    title: str | None = None
    causes: list[str] = Field(default_factory=list)
    recommendations: list[str] = Field(default_factory=list)


class FailureThresholds(Protocol):
    """The part of the health rules' settings that turns a failure count into a health."""

    @property
    def warning_after_failures(self) -> int: ...

    @property
    def critical_after_failures(self) -> int: ...


class ActiveError(WireModel):
    """A current error with what the rules need to heal it (so a stored state outlives catalog edits)
    and the texts operators read (rendered once, when the error was raised)."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(description="as in events: the catalog code, or the appliance's for unknown errors")
    entry_code: str = Field(description="the catalog entry's code (the code itself for conditions)")
    message: str
    severity: Health = Field(description="effective: Warning while an automatic repair is under way")
    disk_id: str | None = None
    cleared_by: ClearedBy
    retryable: bool
    first_seen: datetime
    last_seen: datetime
    occurrences: int = Field(default=1, ge=1)
    repair_attempts: int = Field(default=0, ge=0, description="resyncs requested for it so far")
    title: str | None = None
    causes: tuple[str, ...] = ()
    recommendations: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str | None]:
        return self.code, self.disk_id

    def to_machine_error(self) -> MachineError:
        """The API's record of this error."""
        return MachineError(
            code=self.code,
            message=self.message,
            severity=self.severity,
            disk_id=self.disk_id,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            clears_on_next_cycle=self.cleared_by is not ClearedBy.RESYNC,
            title=self.title,
            causes=list(self.causes),
            recommendations=list(self.recommendations),
        )


class HealthState(WireModel):
    """Everything health depends on, stored as the machine's `replication.healthState`."""

    model_config = ConfigDict(frozen=True)

    errors: tuple[ActiveError, ...] = ()
    consecutive_failures: int = Field(default=0, ge=0)
    failed_cycle_ids: tuple[str, ...] = Field(
        default=(), description="the failed cycles counted in consecutive_failures, oldest first"
    )
    last_failure: datetime | None = None
    last_success: datetime | None = Field(default=None, description="the last applied cycle (last sync time)")
    last_heard: datetime | None = Field(
        default=None, description="the appliance's last heartbeat or upload; set it when replication starts"
    )

    def health(self, rules: FailureThresholds) -> Health:
        worst = Health.HEALTHY
        if self.consecutive_failures >= rules.critical_after_failures:
            worst = Health.CRITICAL
        elif self.consecutive_failures >= rules.warning_after_failures:
            worst = Health.WARNING
        for error in self.errors:
            if error.severity.rank > worst.rank:
                worst = error.severity
        return worst

    def find(self, code: str, disk_id: str | None = None) -> ActiveError | None:
        return next((e for e in self.errors if e.key == (code, disk_id)), None)


def _field(record: dict[str, Any], camel: str, snake: str) -> Any:
    return record[camel] if camel in record else record.get(snake)


def upgrade_stored_health(replication: dict[str, Any]) -> tuple[dict[str, Any], Health | None]:
    """A `replication` record written before the typed health state, in the current shape.

    Those documents kept the rules' state as a snake_case `healthState` (null until the first failure)
    and, beside it, `currentErrors`: the same errors with their texts, plus errors raised outside the
    rules (a source disk layout change) that only `currentErrors` held. Both become one `HealthState`.
    Returns the record and the worst severity among the errors only `currentErrors` held (the machine's
    health counted them, although its stored `health` did not).
    """
    listed = _field(replication, "currentErrors", "current_errors")
    raw_state = _field(replication, "healthState", "health_state")
    if isinstance(raw_state, HealthState):
        raw_state = raw_state.to_wire()
    upgraded = {
        k: v for k, v in replication.items() if k not in {"currentErrors", "current_errors", "health_state"}
    }
    state = dict(raw_state or {})
    last_failed = state.pop("last_failed_cycle_id", None)
    state["failed_cycle_ids"] = [last_failed] if last_failed else []
    errors = [dict(e) for e in state.get("errors") or ()]
    by_key = {(e.get("code"), _field(e, "diskId", "disk_id")): e for e in errors}
    worst: Health | None = None
    for listed_error in listed or ():
        code, disk_id = listed_error.get("code"), _field(listed_error, "diskId", "disk_id")
        texts = {
            "title": listed_error.get("title"),
            "causes": listed_error.get("causes") or [],
            "recommendations": listed_error.get("recommendations") or [],
        }
        held = by_key.get((code, disk_id))
        if held is not None:
            held.update(texts)
            continue
        clears = _field(listed_error, "clearsOnNextCycle", "clears_on_next_cycle")
        clears = True if clears is None else bool(clears)
        severity = Health(listed_error["severity"])
        worst = severity if worst is None or severity.rank > worst.rank else worst
        errors.append(
            {
                "code": code,
                "entryCode": code,
                "message": listed_error.get("message", ""),
                "severity": severity.value,
                "diskId": disk_id,
                "clearedBy": (ClearedBy.NEXT_CYCLE if clears else ClearedBy.RESYNC).value,
                "retryable": clears,
                "firstSeen": _field(listed_error, "firstSeen", "first_seen"),
                "lastSeen": _field(listed_error, "lastSeen", "last_seen"),
                **texts,
            }
        )
    state["errors"] = errors
    upgraded["healthState"] = state
    return upgraded, worst
