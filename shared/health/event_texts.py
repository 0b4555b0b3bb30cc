"""What operators read about health: the control plane's event types, the "health changed" and failure
events, and the placeholders every catalog text may use."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from shared.domain.event import Event, Severity
from shared.domain.health import ActiveError, Health
from shared.domain.machine import Machine
from shared.health.catalog import CATALOG, CatalogMatch, build_event, render
from shared.health.rules import Transition

# Event types the control plane adds to the catalog's (shared.health.catalog.EventType).
CYCLE_STARTED = "Replication cycle started"
CYCLE_COMPLETED = "Replication cycle completed"
HEALTH_CHANGED = "Replication health changed"
REPAIR_STARTED = "Replication repair started"
REPAIR_COMPLETED = "Replication repair completed"

SEVERITY_OF = {
    Health.HEALTHY: Severity.INFO,
    Health.WARNING: Severity.WARNING,
    Health.CRITICAL: Severity.CRITICAL,
}


def context_values(machine: Machine, appliance_name: str | None = None) -> dict[str, object]:
    """Placeholders every entry may use that the machine document knows (the message may add more)."""
    values: dict[str, object] = {"vmName": machine.inventory.display_name, "vmId": machine.id}
    if appliance_name:
        values["applianceName"] = appliance_name
    return values


def error_texts(error: ActiveError, values: Mapping[str, object]) -> ActiveError:
    """The error with its catalog entry's title, causes and steps, filled with `values`."""
    entry = CATALOG.find(error.entry_code) or CATALOG.generic
    wanted = {k: v for k, v in values.items() if k in entry.placeholders}
    rendered = render(entry, **wanted)
    return error.model_copy(
        update={
            "title": rendered.title,
            "causes": tuple(rendered.causes),
            "recommendations": tuple(rendered.recommendations),
        }
    )


def health_event(machine_id: str, event_id: str, at: datetime, change: Transition, reason: str) -> Event:
    worst = max(change.state.errors, key=lambda e: e.severity.rank, default=None)
    because = f" Worst current error: {worst.code} {worst.message}" if worst is not None else ""
    return Event(
        id=event_id,
        machine_id=machine_id,
        time=at,
        type=HEALTH_CHANGED,
        severity=SEVERITY_OF[change.health],
        message=f"Replication health changed from {change.previous_health.value} to {change.health.value} "
        f"({reason}).{because}",
        error_code=worst.code if worst is not None else None,
        details={
            "previousHealth": change.previous_health.value,
            "health": change.health.value,
            "reason": reason,
        },
    )


def failure_event(
    match: CatalogMatch,
    *,
    event_id: str,
    machine: Machine,
    at: datetime,
    step: Transition,
    disk_id: str | None,
    cycle_id: str | None,
    values: Mapping[str, object],
) -> Event:
    """The catalog's event for one failure, at the severity the health rules gave it."""
    event = build_event(
        match,
        event_id=event_id,
        machine_id=machine.id,
        time=at,
        disk_id=disk_id,
        cycle_id=cycle_id,
        severity=step.event_severity,
        values={k: v for k, v in values.items() if k in match.entry.placeholders and k not in match.values},
    )
    details = {k: str(v) for k, v in {**values, **match.values}.items() if v is not None and str(v)}
    details["name"] = match.entry.name
    return event.model_copy(
        update={
            "details": details,
            "reported_code": match.reported_code,
            "references": list(match.entry.references),
        }
    )
