"""The health monitor: what only the passing of time reveals, an RPO above its thresholds, an appliance
that stopped talking and a Mobility agent that stopped heartbeating, raised for every replicating
machine, and a reverse RPO above its threshold for every machine protected back to on-premises (run by a
timer every 5 minutes)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from shared.domain.event import Event
from shared.domain.lifecycle import MachineState
from shared.domain.machine import Machine
from shared.domain.policy import PolicyFields
from shared.health.catalog import CATALOG, render
from shared.health.event_texts import SEVERITY_OF, context_values, health_event
from shared.health.rules import (
    AgentContact,
    HealthRules,
    Transition,
    evaluate_reverse_rpo,
    reverse_rpo_threshold,
    run_monitor_rules,
)
from shared.health.settings import HealthSettings
from shared.health.writer import record_monitor_check, record_reverse_rpo_check
from shared.platform.documents import Query
from shared.platform.repository import Repositories
from shared.platform.telemetry import get_telemetry

# Machines whose replication runs (uploads are accepted): the ones RPO and appliance silence apply to.
MONITORED_STATES = (
    MachineState.INITIAL_REPLICATION,
    MachineState.REPLICATING,
    MachineState.RESYNCING,
    MachineState.TEST_MIGRATING,
    MachineState.TEST_MIGRATED,
    MachineState.CLEANING_UP_TEST_MIGRATION,
)
MONITOR_PAGE_SIZE = 100


class MonitorReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    machines_checked: int
    machines_changed: list[str]
    appliances_read: int
    events_written: int


def monitor_health(
    repos: Repositories,
    *,
    now: datetime,
    settings: HealthSettings,
    agents: Mapping[str, AgentContact] | None = None,
) -> MonitorReport:
    """Flag machines whose RPO exceeds the thresholds (Warning, then Critical), whose appliance has gone
    silent (Critical, "appliance not responding") and whose Mobility agent has (Critical, MCP-5101); a
    heartbeat heard since clears the silence errors.

    `agents`: machine id -> its Mobility agent's last contact, read by the caller (Mobility's agents are
    not health's to read: shared.mobility sits above shared.health); a machine not in it has no agent.

    Cost, bounded and independent of history: one query page per state and 100 machines (documents read
    once), one point read per appliance that has such machines, and writes only for machines whose health
    state changes (2 round-trips + 1-2 events each). An idle, healthy fleet costs reads only.
    """
    agents = agents or {}
    rules = settings.rules
    appliances: dict[str, tuple[str | None, datetime | None]] = {}
    checked = 0
    changed: list[str] = []
    events_written = 0
    for state in MONITORED_STATES:
        continuation: str | None = None
        while True:
            page = repos.machines.query_page(
                Query(equals={"state": state.value}, order_by="id"),
                partition_key=None,
                page_size=MONITOR_PAGE_SIZE,
                continuation=continuation,
            )
            for machine in page.items:
                checked += 1
                telemetry = get_telemetry()
                if machine.appliance_id not in appliances:
                    stored = repos.appliances.get(machine.appliance_id)
                    appliances[machine.appliance_id] = (
                        (stored.item.name, stored.item.last_heartbeat) if stored is not None else (None, None)
                    )
                    # Once per appliance and check: what the "appliance silent" alert reads.
                    if stored is not None and stored.item.last_heartbeat is not None:
                        telemetry.record_appliance_heartbeat_age(
                            max(0.0, (now - stored.item.last_heartbeat).total_seconds()),
                            appliance_id=machine.appliance_id,
                        )
                name, heartbeat = appliances[machine.appliance_id]
                before = machine.replication.health_state
                telemetry.record_rpo_since(before.last_success, now=now, machine_id=machine.id)
                agent = agents.get(machine.id)
                if agent is not None:
                    # Every check, silent or not: what the "Mobility agent silent" alert reads.
                    telemetry.record_mobility_agent_heartbeat_age(
                        max(0.0, (now - agent.last_heard).total_seconds()), machine_id=machine.id
                    )
                after = run_monitor_rules(
                    before, last_heartbeat=heartbeat, now=now, rules=rules, appliance_name=name, agent=agent
                ).state
                # Every check, changed or not: the "health Critical" alert reads the newest value.
                telemetry.record_machine_health(after.health(rules).value, machine_id=machine.id)
                if after == before:
                    continue  # nothing new: no write
                events_written += _record_monitor_change(
                    repos, machine.id, heartbeat, name, now, rules, agent
                )
                changed.append(machine.id)
            continuation = page.continuation
            if continuation is None:
                break
    reverse_checked, reverse_changed, reverse_events, reverse_appliances = _monitor_reverse_rpo(
        repos, now=now, rules=rules
    )
    return MonitorReport(
        machines_checked=checked + reverse_checked,
        machines_changed=changed + reverse_changed,
        appliances_read=len(appliances) + reverse_appliances,
        events_written=events_written + reverse_events,
    )


def _record_monitor_change(
    repos: Repositories,
    machine_id: str,
    heartbeat: datetime | None,
    appliance_name: str | None,
    now: datetime,
    rules: HealthRules,
    agent: AgentContact | None,
) -> int:
    machine, change = record_monitor_check(
        repos,
        machine_id,
        heartbeat=heartbeat,
        appliance_name=appliance_name,
        now=now,
        rules=rules,
        agent=agent,
    )
    reason = "health monitor: " + (
        ", ".join(e.code for e in change.raised) or ", ".join(f"{e.code} cleared" for e in change.cleared)
    )
    return _write_monitor_events(repos, machine, change, appliance_name, now, reason)


def _monitor_reverse_rpo(
    repos: Repositories, *, now: datetime, rules: HealthRules
) -> tuple[int, list[str], int, int]:
    """ReverseRpoExceeded for every ReverseReplicating machine whose newest reverse recovery point is
    older than 3 x its reverse appliance's `reverseCycleMinutes`. The same cost shape as the forward
    pass: a query page per 100 machines, one read per reverse appliance, writes only on a change.
    Returns (machines checked, machines changed, events written, appliances read)."""
    policies: dict[str, tuple[str | None, timedelta]] = {}
    checked, events = 0, 0
    changed: list[str] = []
    continuation: str | None = None
    while True:
        page = repos.machines.query_page(
            Query(equals={"state": MachineState.REVERSE_REPLICATING.value}, order_by="id"),
            partition_key=None,
            page_size=MONITOR_PAGE_SIZE,
            continuation=continuation,
        )
        for machine in page.items:
            if machine.reverse is None:
                continue
            checked += 1
            appliance_id = machine.reverse.appliance_id
            if appliance_id not in policies:
                stored = repos.appliances.get(appliance_id)
                # An appliance gone from the registry: the policy's default interval still bounds the RPO.
                minutes = (stored.item.policy if stored is not None else PolicyFields()).reverse_cycle_minutes
                policies[appliance_id] = (
                    stored.item.name if stored is not None else None,
                    reverse_rpo_threshold(minutes),
                )
            name, threshold = policies[appliance_id]
            state = machine.replication.health_state
            verdict = evaluate_reverse_rpo(
                state, last_point_at=machine.reverse.last_point_at, now=now, threshold=threshold, rules=rules
            )
            if not verdict.raised:
                continue  # nothing new: no write
            stored_machine, change = record_reverse_rpo_check(
                repos, machine.id, now=now, threshold=threshold, appliance_name=name, rules=rules
            )
            if change.raised:
                reason = "health monitor: " + ", ".join(e.code for e in change.raised)
                events += _write_monitor_events(repos, stored_machine, change, name, now, reason)
                changed.append(machine.id)
        continuation = page.continuation
        if continuation is None:
            break
    return checked, changed, events, len(policies)


def _write_monitor_events(
    repos: Repositories,
    machine: Machine,
    change: Transition,
    appliance_name: str | None,
    now: datetime,
    reason: str,
) -> int:
    """An event per error raised, with the catalog's causes and steps, and one if health changed."""
    events: list[Event] = []
    for error in change.raised:
        entry = CATALOG[error.entry_code]
        rendered = render(
            entry,
            **{k: v for k, v in context_values(machine, appliance_name).items() if k in entry.placeholders},
        )
        events.append(
            Event(
                id=f"monitor-{error.code}-{error.severity.value}-{error.first_seen:%Y%m%dT%H%M%S}",
                machine_id=machine.id,
                time=now,
                type=entry.event_type.value,
                severity=SEVERITY_OF[error.severity],
                message=error.message,
                error_code=error.code,
                causes=list(rendered.causes),
                recommendations=list(rendered.recommendations),
                references=list(entry.references),
                details={"name": entry.name, **({"applianceName": appliance_name} if appliance_name else {})},
            )
        )
    if change.changed:
        events.append(health_event(machine.id, f"monitor-health-{now:%Y%m%dT%H%M%S}", now, change, reason))
    for event in events:
        repos.events.put(event)
    return len(events)
