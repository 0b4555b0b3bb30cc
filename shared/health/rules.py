"""A replicating machine's health as pure functions of a small state record.

The per-machine orchestration's activities feed it what happened (a failed cycle, an applied cycle, a
heartbeat, the passing of time) and get back the new state, the health, the errors to raise events for
and, when the control plane can repair by itself, a resync to request. Nothing here reads a clock, an
environment or a store, so the same inputs always give the same answer, in an activity or a test.

This lives next to the catalog rather than in shared.domain because every rule reads catalog data
(severity, how an error clears, whether it is auto-repairable); the domain keeps the state the rules
read and return (`shared.domain.health.HealthState`), which the health writer stores on the machine.

The rules (`HealthRules` holds the numbers):
- Each current error contributes its severity: a Warning-severity error makes the machine Warning at its
  first failure, a Critical one makes it Critical.
- `critical_after_failures` consecutive failed cycles make it Critical whatever the errors' severities:
  by then no recovery point has been added for several cycles.
- An error the control plane can repair (entry `auto_repairable`; for a CBT reset only if the machine
  opted into "Automatically repair replication") requests a resync and counts as Warning while the repair
  is under way, up to `max_auto_repairs` requests; after that it takes its full severity and waits for
  the operator.
- `evaluate(now)`: an RPO above `rpo_warning` raises a Warning (Critical above `rpo_critical`); no word
  from the appliance for `heartbeat_timeout` raises Critical "appliance not responding".
- A failure report does not clear "appliance not responding", although it shows the appliance is up:
  health never improves without a success, and a live appliance's next heartbeat clears it anyway.
- An applied cycle heals: it clears every error that clears with the next cycle (all retryable ones) and
  every heartbeat error (an upload proves the appliance is alive); a resync cycle also clears those that
  need a resync. It resets the failure count. A heartbeat clears "appliance not responding".
- `evaluate_agent_silence`: a machine whose Mobility agent has not heartbeated for
  `agent_heartbeat_timeout` gets Critical MCP-5101 "Mobility agent not responding"; the first check that
  finds a heartbeat within the timeout clears it (the heartbeat is then necessarily newer than the one the
  error was raised on, so this is a heartbeat healing, not waiting). Only the agent's heartbeat clears it:
  neither an appliance heartbeat nor an applied cycle says the agent is running.
- Reports arrive at least once and out of order: a repeated failure changes nothing, each failed cycle
  counts once whatever the order its reports arrive in, a failure older than the last applied cycle is
  ignored, and a success never clears an error seen after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain.event import Severity
from shared.domain.health import ActiveError, ClearedBy, Health, HealthState
from shared.health.catalog.matching import CATALOG, CatalogMatch, render
from shared.health.catalog.models import CatalogEntry, EventType, Scope

_HEALTH_OF = {Severity.WARNING: Health.WARNING, Severity.CRITICAL: Health.CRITICAL}
RPO_CODE = CATALOG["RpoThresholdExceeded"].code
APPLIANCE_CODE = CATALOG["ApplianceNotResponding"].code
REVERSE_RPO_CODE = CATALOG["ReverseRpoExceeded"].code
AGENT_CODE = CATALOG["MobilityAgentNotResponding"].code
# A reverse recovery point older than this many reverse cycle intervals raises ReverseRpoExceeded: one
# late or failed cycle is routine (the next one starts again from the last snapshot), a third missed one
# means the on-premises copy is falling behind for good.
REVERSE_RPO_CYCLES = 3
# Failed cycles remembered so that each counts once however its reports are ordered; beyond this many
# consecutive failures the machine is long Critical, and a lost count changes nothing.
MAX_FAILED_CYCLE_IDS = 32


class HealthRules(BaseModel):
    """Thresholds, as data: per deployment or per policy, not in code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    warning_after_failures: int = Field(default=1, ge=1, description="consecutive failed cycles -> Warning")
    # Agentless VMware cycles run about hourly once initial replication is done: three failed cycles
    # in a row is three hours without a new recovery point.
    critical_after_failures: int = Field(default=3, ge=1, description="consecutive failed cycles -> Critical")
    rpo_warning: timedelta | None = Field(default=timedelta(hours=2), description="RPO above this -> Warning")
    # The appliance spaces delta cycles at most 12 hours apart; a day without one is beyond any schedule.
    rpo_critical: timedelta | None = Field(
        default=timedelta(hours=24), description="RPO above this -> Critical"
    )
    heartbeat_timeout: timedelta = Field(
        default=timedelta(minutes=15), description="no heartbeat or upload for this long -> Critical"
    )
    # The agent heartbeats every minute (ASR_HEARTBEAT_SECONDS): fifteen missed beats is no network blip.
    agent_heartbeat_timeout: timedelta = Field(
        default=timedelta(minutes=15), description="no Mobility agent heartbeat for this long -> Critical"
    )
    max_auto_repairs: int = Field(
        default=3,
        ge=0,
        description="resyncs requested for one unresolved error before it waits for the operator",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.warning_after_failures > self.critical_after_failures:
            raise ValueError("warning_after_failures cannot exceed critical_after_failures")
        if self.rpo_warning and self.rpo_critical and self.rpo_warning >= self.rpo_critical:
            raise ValueError("rpo_warning must be below rpo_critical")
        if self.heartbeat_timeout <= timedelta(0):
            raise ValueError("heartbeat_timeout must be positive")
        if self.agent_heartbeat_timeout <= timedelta(0):
            raise ValueError("agent_heartbeat_timeout must be positive")
        return self


class ResyncRequest(BaseModel):
    """The control plane should resync by itself: the whole machine, or one disk."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason_code: str
    disk_id: str | None = Field(default=None, description="None: every disk of the machine")
    attempt: int = Field(ge=1)


class Transition(BaseModel):
    """What one input did. Raise an event for each of `raised` (with its severity); persist `state`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: HealthState
    previous_health: Health
    health: Health
    raised: tuple[ActiveError, ...] = Field(default=(), description="new errors, and errors that got worse")
    cleared: tuple[ActiveError, ...] = ()
    resync: ResyncRequest | None = None
    error: ActiveError | None = Field(
        default=None, description="record_failure: the current error the report is about (None if stale)"
    )

    @property
    def changed(self) -> bool:
        return self.health is not self.previous_health

    @property
    def event_severity(self) -> Severity | None:
        """The severity for this failure's event: the error's effective one (a CBT reset under automatic
        repair is a Warning although its entry says Critical)."""
        return None if self.error is None else Severity(self.error.severity.value)


def _transition(
    before: HealthState,
    after: HealthState,
    rules: HealthRules,
    *,
    raised: tuple[ActiveError, ...] = (),
    cleared: tuple[ActiveError, ...] = (),
    resync: ResyncRequest | None = None,
    error: ActiveError | None = None,
) -> Transition:
    return Transition(
        state=after,
        previous_health=before.health(rules),
        health=after.health(rules),
        raised=raised,
        cleared=cleared,
        resync=resync,
        error=error,
    )


def _upsert(errors: tuple[ActiveError, ...], error: ActiveError) -> tuple[ActiveError, ...]:
    kept = tuple(e for e in errors if e.key != error.key)
    return (*kept, error)


def record_failure(
    state: HealthState,
    match: CatalogMatch,
    *,
    at: datetime,
    rules: HealthRules,
    disk_id: str | None = None,
    cycle_id: str | None = None,
    auto_repair_enabled: bool = False,
) -> Transition:
    """A cycle (or one disk of it) failed with `match`'s error, reported at `at`.

    `auto_repair_enabled`: the machine opted into "Automatically repair replication" (TargetSettings).
    Failures of one cycle (several disks, or redelivered events) count once toward the consecutive
    failures; the same report twice changes nothing.
    """
    entry = match.entry
    if state.last_success is not None and at <= state.last_success:
        return _transition(state, state, rules)  # a late report of a failure a later cycle already healed
    disk = disk_id if entry.scope is Scope.DISK else None
    existing = state.find(match.error_code, disk)
    counted = cycle_id is not None and cycle_id in state.failed_cycle_ids
    if existing is not None and (counted or (cycle_id is None and existing.last_seen >= at)):
        # A redelivered report, or another report of a cycle already counted: nothing new. (Without a
        # cycle id, an older report of an error already held cannot be told from a redelivery.)
        return _transition(state, state, rules, error=existing)
    if existing is not None and existing.last_seen >= at:
        # A distinct failed cycle whose report arrived after a later one's (deliveries race): it counts,
        # but the error it reports is already held, and already being repaired if it can be.
        held = existing.model_copy(
            update={"first_seen": min(existing.first_seen, at), "occurrences": existing.occurrences + 1}
        )
        after = _count_failure(state.model_copy(update={"errors": _upsert(state.errors, held)}), cycle_id, at)
        return _transition(state, after, rules, error=held)

    resync: ResyncRequest | None = None
    attempts = existing.repair_attempts if existing is not None else 0
    repairing = entry.auto_repairable and (auto_repair_enabled or not entry.repair_requires_opt_in)
    if repairing and attempts < rules.max_auto_repairs:
        attempts += 1
        resync = ResyncRequest(reason_code=entry.code, disk_id=disk, attempt=attempts)
        # The machine is being repaired without anyone's help: a Warning, not a call to action.
        severity = Health.WARNING
    else:
        severity = _HEALTH_OF[entry.severity]
    if existing is not None and existing.severity.rank > severity.rank:
        severity = existing.severity  # an unresolved error never gets milder by recurring

    error = ActiveError(
        code=match.error_code,
        entry_code=entry.code,
        message=match.message,
        severity=severity,
        disk_id=disk,
        cleared_by=entry.cleared_by,
        retryable=entry.retryable,
        first_seen=existing.first_seen if existing is not None else at,
        last_seen=max(existing.last_seen, at) if existing is not None else at,
        occurrences=existing.occurrences + 1 if existing is not None else 1,
        repair_attempts=attempts,
    )
    after = _count_failure(state.model_copy(update={"errors": _upsert(state.errors, error)}), cycle_id, at)
    worse = existing is None or severity.rank > existing.severity.rank
    return _transition(state, after, rules, raised=(error,) if worse else (), resync=resync, error=error)


def _count_failure(state: HealthState, cycle_id: str | None, at: datetime) -> HealthState:
    """One more consecutive failure, unless the cycle was counted already (one count per cycle)."""
    if cycle_id is not None and cycle_id in state.failed_cycle_ids:
        counted, cycles = 0, state.failed_cycle_ids
    else:
        counted = 1
        cycles = state.failed_cycle_ids if cycle_id is None else (*state.failed_cycle_ids, cycle_id)
    return state.model_copy(
        update={
            "consecutive_failures": state.consecutive_failures + counted,
            "failed_cycle_ids": cycles[-MAX_FAILED_CYCLE_IDS:],
            "last_failure": max(state.last_failure, at) if state.last_failure is not None else at,
        }
    )


def record_condition(
    state: HealthState,
    *,
    code: str,
    message: str,
    severity: Health,
    at: datetime,
    rules: HealthRules,
    cleared_by: ClearedBy,
    disk_id: str | None = None,
) -> Transition:
    """A condition found outside a cycle (e.g. the source disk layout changed): raised or refreshed as a
    current error without counting as a failed cycle. It heals as `cleared_by` says."""
    existing = state.find(code, disk_id)
    error = ActiveError(
        code=code,
        entry_code=code,
        message=message,
        severity=severity,
        disk_id=disk_id,
        cleared_by=cleared_by,
        retryable=cleared_by is not ClearedBy.RESYNC,
        first_seen=existing.first_seen if existing is not None else at,
        last_seen=max(existing.last_seen, at) if existing is not None else at,
        occurrences=existing.occurrences + 1 if existing is not None else 1,
        title=existing.title if existing is not None else None,
        causes=existing.causes if existing is not None else (),
        recommendations=existing.recommendations if existing is not None else (),
    )
    after = state.model_copy(update={"errors": _upsert(state.errors, error)})
    worse = existing is None or severity.rank > existing.severity.rank
    return _transition(state, after, rules, raised=(error,) if worse else (), error=error)


def record_success(
    state: HealthState, *, at: datetime, rules: HealthRules, resync: bool = False
) -> Transition:
    """A cycle was applied at `at` (`resync`: it was a resync or initial copy of every disk).

    Clears what such a cycle resolves, among the errors last seen before it: a late success never clears
    a failure reported after it.
    """
    resolved = {ClearedBy.NEXT_CYCLE, ClearedBy.HEARTBEAT} | ({ClearedBy.RESYNC} if resync else set())
    cleared = tuple(e for e in state.errors if e.cleared_by in resolved and e.last_seen <= at)
    newer_failure = state.last_failure is not None and state.last_failure > at
    after = state.model_copy(
        update={
            "errors": tuple(e for e in state.errors if e not in cleared),
            "consecutive_failures": state.consecutive_failures if newer_failure else 0,
            "failed_cycle_ids": state.failed_cycle_ids if newer_failure else (),
            "last_success": _latest(state.last_success, at),
            "last_heard": _latest(state.last_heard, at),
        }
    )
    return _transition(state, after, rules, cleared=cleared)


def record_heartbeat(state: HealthState, *, at: datetime, rules: HealthRules) -> Transition:
    """The appliance was heard from: clears "appliance not responding" raised before `at`."""
    cleared = tuple(e for e in state.errors if e.cleared_by is ClearedBy.HEARTBEAT and e.last_seen <= at)
    after = state.model_copy(
        update={
            "errors": tuple(e for e in state.errors if e not in cleared),
            "last_heard": _latest(state.last_heard, at),
        }
    )
    return _transition(state, after, rules, cleared=cleared)


def evaluate(
    state: HealthState, *, now: datetime, rules: HealthRules, appliance_name: str | None = None
) -> Transition:
    """The passing of time: raise (or escalate) the RPO and appliance-silence errors that `now` implies.

    Call it from the monitor's timer with the orchestration's current time. Nothing is cleared here: only
    a cycle or a heartbeat heals, so health never improves by waiting.
    """
    errors = state.errors
    raised: list[ActiveError] = []
    checks = (
        (RPO_CODE, _rpo_severity(state, now, rules), _rpo_message),
        (APPLIANCE_CODE, _silence_severity(state, now, rules), _silence_message),
    )
    for code, severity, message in checks:
        if severity is None:
            continue
        existing = state.find(code)
        if existing is not None and existing.severity.rank >= severity.rank:
            continue
        entry = CATALOG[code]
        error = ActiveError(
            code=code,
            entry_code=code,
            message=message(entry, state, now, rules, appliance_name),
            severity=severity,
            cleared_by=entry.cleared_by,
            retryable=entry.retryable,
            first_seen=existing.first_seen if existing is not None else now,
            last_seen=now,
            occurrences=existing.occurrences + 1 if existing is not None else 1,
        )
        errors = _upsert(errors, error)
        raised.append(error)
    after = state.model_copy(update={"errors": errors})
    return _transition(state, after, rules, raised=tuple(raised))


def combine(before: HealthState, steps: Sequence[Transition], rules: HealthRules) -> Transition:
    """Several inputs applied in turn (e.g. one failure per disk) as one transition."""
    after = steps[-1].state if steps else before
    return Transition(
        state=after,
        previous_health=before.health(rules),
        health=after.health(rules),
        raised=tuple(e for t in steps for e in t.raised),
        cleared=tuple(e for t in steps for e in t.cleared),
        resync=next((t.resync for t in steps if t.resync is not None), None),
    )


def run_monitor_rules(
    state: HealthState,
    *,
    last_heartbeat: datetime | None,
    now: datetime,
    rules: HealthRules,
    appliance_name: str | None,
    agent: AgentContact | None = None,
) -> Transition:
    """The monitor's decision for one machine: the appliance's last heartbeat, then the passing of time,
    then its Mobility agent's silence (`agent` None: the machine has no agent)."""
    heard = record_heartbeat(state, at=last_heartbeat, rules=rules) if last_heartbeat is not None else None
    after = evaluate(
        heard.state if heard is not None else state, now=now, rules=rules, appliance_name=appliance_name
    )
    agent_step = evaluate_agent_silence(after.state, agent=agent, now=now, rules=rules)
    steps = [t for t in (heard, after, agent_step) if t is not None]
    return combine(state, steps, rules)


# --- a machine's Mobility agent ---------------------------------------------------------------------------


class AgentContact(BaseModel):
    """A machine's Mobility agent as the monitor sees it (from the mobility container's agent document)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent_id: str
    last_heard: datetime = Field(description="its last heartbeat, or its registration when it sent none")


def evaluate_agent_silence(
    state: HealthState, *, agent: AgentContact | None, now: datetime, rules: HealthRules
) -> Transition:
    """Raise MCP-5101 once the agent has been silent past `agent_heartbeat_timeout`; clear it once a check
    finds a heartbeat within the timeout, or finds no agent any more (nothing left to be silent)."""
    existing = state.find(AGENT_CODE)
    silent = agent is not None and now - agent.last_heard > rules.agent_heartbeat_timeout
    if not silent:
        if existing is None:
            return _transition(state, state, rules)
        after = state.model_copy(update={"errors": tuple(e for e in state.errors if e.key != existing.key)})
        return _transition(state, after, rules, cleared=(existing,))
    if existing is not None:
        return _transition(state, state, rules)  # raised once, already Critical: nothing new
    assert agent is not None  # silent implies an agent
    entry = CATALOG[AGENT_CODE]
    error = ActiveError(
        code=AGENT_CODE,
        entry_code=AGENT_CODE,
        message=render(
            entry,
            agentId=agent.agent_id,
            lastHeartbeat=agent.last_heard.isoformat(),
            timeoutMinutes=_minutes(rules.agent_heartbeat_timeout),
        ).message,
        severity=_HEALTH_OF[entry.severity],
        cleared_by=entry.cleared_by,
        retryable=entry.retryable,
        first_seen=now,
        last_seen=now,
    )
    after = state.model_copy(update={"errors": _upsert(state.errors, error)})
    return _transition(state, after, rules, raised=(error,))


# --- the reverse direction (an Azure VM protected back to on-premises) --------------------------------


def reverse_rpo_threshold(reverse_cycle_minutes: int) -> timedelta:
    """How old the newest reverse recovery point may get: `REVERSE_RPO_CYCLES` reverse cycle intervals."""
    return timedelta(minutes=REVERSE_RPO_CYCLES * reverse_cycle_minutes)


def evaluate_reverse_rpo(
    state: HealthState,
    *,
    last_point_at: datetime | None,
    now: datetime,
    threshold: timedelta,
    rules: HealthRules,
) -> Transition:
    """The passing of time for reverse replication: ReverseRpoExceeded once the newest reverse recovery
    point is older than `threshold` (none yet: the initial reverse sync runs, which the Reprotect job
    bounds). Raised once; only a reverse point clears it (`record_reverse_success`)."""
    if last_point_at is None or now - last_point_at <= threshold or state.find(REVERSE_RPO_CODE) is not None:
        return _transition(state, state, rules)
    entry = CATALOG[REVERSE_RPO_CODE]
    rpo = now - last_point_at
    error = ActiveError(
        code=REVERSE_RPO_CODE,
        entry_code=REVERSE_RPO_CODE,
        message=render(
            entry,
            step="Reverse replication",
            reason=f"the newest reverse recovery point ({last_point_at.isoformat()}) is {_minutes(rpo)} "
            f"minutes old, above the {_minutes(threshold)} minutes allowed ({REVERSE_RPO_CYCLES} x "
            "reverseCycleMinutes)",
        ).message,
        severity=_HEALTH_OF[entry.severity],
        cleared_by=entry.cleared_by,
        retryable=entry.retryable,
        first_seen=now,
        last_seen=now,
    )
    after = state.model_copy(update={"errors": _upsert(state.errors, error)})
    return _transition(state, after, rules, raised=(error,))


def _reverse_error(error: ActiveError) -> bool:
    entry = CATALOG.find(error.entry_code)
    return entry is not None and entry.event_type is EventType.REPROTECT_FAILED


def record_reverse_success(state: HealthState, *, at: datetime, rules: HealthRules) -> Transition:
    """A reverse recovery point landed at `at`: it clears the reverse direction's errors that the next
    cycle clears (ReverseRpoExceeded, a failed reverse cycle's), last seen before it, and resets the
    failure count. The forward direction's last sync and errors are left as they are."""
    cleared = tuple(
        e
        for e in state.errors
        if _reverse_error(e) and e.cleared_by is ClearedBy.NEXT_CYCLE and e.last_seen <= at
    )
    newer_failure = state.last_failure is not None and state.last_failure > at
    after = state.model_copy(
        update={
            "errors": tuple(e for e in state.errors if e not in cleared),
            "consecutive_failures": state.consecutive_failures if newer_failure else 0,
            "failed_cycle_ids": state.failed_cycle_ids if newer_failure else (),
        }
    )
    return _transition(state, after, rules, cleared=cleared)


def _latest(current: datetime | None, at: datetime) -> datetime:
    return at if current is None or at > current else current


def _rpo_severity(state: HealthState, now: datetime, rules: HealthRules) -> Health | None:
    if state.last_success is None:
        return None  # no RPO before the initial copy completes: there is no recovery point yet
    rpo = now - state.last_success
    if rules.rpo_critical is not None and rpo > rules.rpo_critical:
        return Health.CRITICAL
    if rules.rpo_warning is not None and rpo > rules.rpo_warning:
        return Health.WARNING
    return None


def _silence_severity(state: HealthState, now: datetime, rules: HealthRules) -> Health | None:
    if state.last_heard is None or now - state.last_heard <= rules.heartbeat_timeout:
        return None
    return _HEALTH_OF[CATALOG[APPLIANCE_CODE].severity]


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def _rpo_message(
    entry: CatalogEntry, state: HealthState, now: datetime, rules: HealthRules, _appliance: str | None
) -> str:
    assert state.last_success is not None  # _rpo_severity returned a severity
    rpo = now - state.last_success
    exceeded = (
        rules.rpo_critical
        if rules.rpo_critical is not None and rpo > rules.rpo_critical
        else rules.rpo_warning
    )
    return render(
        entry,
        rpoMinutes=_minutes(rpo),
        lastSyncTime=state.last_success.isoformat(),
        thresholdMinutes=_minutes(exceeded) if exceeded is not None else None,
    ).message


def _silence_message(
    entry: CatalogEntry, state: HealthState, _now: datetime, rules: HealthRules, appliance: str | None
) -> str:
    return render(
        entry,
        applianceName=appliance,
        lastHeartbeat=state.last_heard.isoformat() if state.last_heard is not None else "never",
        timeoutMinutes=_minutes(rules.heartbeat_timeout),
    ).message
