"""A `CycleFailed` from the appliance becomes an event on the machine and a current error."""

from __future__ import annotations

from datetime import datetime

from shared.adapters.repository import Repositories
from shared.appliance_events import CycleFailed
from shared.domain.errors import Forbidden
from shared.domain.event import Event, Severity
from shared.services.replication import record_cycle_failed

CYCLE_FAILED = "Replication cycle failed"
CYCLE_FAILED_FOR_DISK = "Replication cycle failed for disk"


def record_appliance_failure(repos: Repositories, failure: CycleFailed, *, event_id: str, now: datetime) -> Event:
    """Idempotent by the Event Grid event id (a redelivery rewrites the same event). 4 round-trips."""
    machine = repos.machines.require(failure.machine_id).item
    if machine.appliance_id != failure.appliance_id:
        raise Forbidden(
            f"appliance {failure.appliance_id} reported a failure for machine {failure.machine_id}, "
            "which belongs to another appliance"
        )
    event = Event(
        id=f"appliance-{event_id}",
        machine_id=failure.machine_id,
        time=now,
        type=CYCLE_FAILED_FOR_DISK if failure.disk_id else CYCLE_FAILED,
        severity=Severity.WARNING,
        message=failure.message,
        error_code=failure.error_code,
        disk_id=failure.disk_id,
        cycle_id=failure.cycle_id,
    )
    record_cycle_failed(repos, event)
    return event
