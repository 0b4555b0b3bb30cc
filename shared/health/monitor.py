"""The health monitor: what only the passing of time reveals, an RPO above its thresholds and an appliance
that stopped talking, raised for every replicating machine (run by a timer every 5 minutes)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from shared.domain.event import Event
from shared.domain.lifecycle import MachineState
from shared.health.catalog import CATALOG, render
from shared.health.event_texts import SEVERITY_OF, context_values, health_event
from shared.health.rules import HealthRules, run_monitor_rules
from shared.health.settings import HealthSettings
from shared.health.writer import record_monitor_check
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


def monitor_health(repos: Repositories, *, now: datetime, settings: HealthSettings) -> MonitorReport:
    """Flag machines whose RPO exceeds the thresholds (Warning, then Critical) and whose appliance has
    gone silent (Critical, "appliance not responding"); a heartbeat heard since clears the latter.

    Cost, bounded and independent of history: one query page per state and 100 machines (documents read
    once), one point read per appliance that has such machines, and writes only for machines whose health
    state changes (2 round-trips + 1-2 events each). An idle, healthy fleet costs reads only.
    """
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
                after = run_monitor_rules(
                    before, last_heartbeat=heartbeat, now=now, rules=rules, appliance_name=name
                ).state
                # Every check, changed or not: the "health Critical" alert reads the newest value.
                telemetry.record_machine_health(after.health(rules).value, machine_id=machine.id)
                if after == before:
                    continue  # nothing new: no write
                events_written += _record_monitor_change(repos, machine.id, heartbeat, name, now, rules)
                changed.append(machine.id)
            continuation = page.continuation
            if continuation is None:
                break
    return MonitorReport(
        machines_checked=checked,
        machines_changed=changed,
        appliances_read=len(appliances),
        events_written=events_written,
    )


def _record_monitor_change(
    repos: Repositories,
    machine_id: str,
    heartbeat: datetime | None,
    appliance_name: str | None,
    now: datetime,
    rules: HealthRules,
) -> int:
    machine, change = record_monitor_check(
        repos, machine_id, heartbeat=heartbeat, appliance_name=appliance_name, now=now, rules=rules
    )
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
        reason = "health monitor: " + (
            ", ".join(e.code for e in change.raised) or "appliance heard from again"
        )
        events.append(health_event(machine.id, f"monitor-health-{now:%Y%m%dT%H%M%S}", now, change, reason))
    for event in events:
        repos.events.put(event)
    return len(events)
