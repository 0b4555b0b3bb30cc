"""What the appliance tells us about its cycles: a `CycleFailed` becomes the catalog's event on the machine
and moves its health (and may start an automatic repair); a `CycleStarted` starts the upload watch."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.appliances.events import CycleFailed, CycleStarted
from shared.domain.errors import Forbidden
from shared.domain.machine import Machine
from shared.health.catalog import match_appliance_error
from shared.health.settings import HealthSettings
from shared.health.timeouts import CycleWatched, watch_cycle_uploads
from shared.health.writer import Failure, FailuresRecorded, record_failures
from shared.platform.repository import Repositories


def _owned_machine(repos: Repositories, appliance_id: str, machine_id: str, what: str) -> Machine:
    machine = repos.machines.require(machine_id).item
    if machine.appliance_id != appliance_id:
        raise Forbidden(
            f"appliance {appliance_id} reported {what} for machine {machine_id}, which belongs to another appliance"
        )
    return machine


def record_appliance_failure(
    repos: Repositories,
    failure: CycleFailed,
    *,
    event_id: str,
    reported_at: datetime,
    settings: HealthSettings,
) -> FailuresRecorded:
    """Match the reported error to the catalog, apply it to the machine's health, keep the event.

    `reported_at` is the Event Grid event's time, not the time of delivery: a redelivered event is then
    the same report to the health rules (counted once) and rewrites the same event (`appliance-{id}`).
    Round-trips: 2 reads (machine, appliance) + 2 (machine update) + 1-3 events; an automatic repair adds
    2 per disk.
    """
    machine = _owned_machine(repos, failure.appliance_id, failure.machine_id, "a failure")
    appliance = repos.appliances.get(machine.appliance_id)
    match = match_appliance_error(failure.error_code, failure.message)
    values: dict[str, object] = {}
    if failure.disk_id:
        disk = next((d for d in machine.inventory.disks if d.id == failure.disk_id), None)
        values = {
            "diskId": failure.disk_id,
            "diskPath": (disk.name if disk and disk.name else failure.disk_id),
        }
    return record_failures(
        repos,
        machine.id,
        [
            Failure(
                match=match,
                at=reported_at,
                event_id=f"appliance-{event_id}",
                disk_id=failure.disk_id,
                cycle_id=failure.cycle_id,
                values=values,
            )
        ],
        settings=settings,
        appliance_name=appliance.item.name if appliance is not None else None,
    )


def record_cycle_started(
    repos: Repositories, started: CycleStarted, *, reported_at: datetime, settings: HealthSettings
) -> CycleWatched | None:
    """The appliance began a cycle: its disks' uploads are due by the appliance's estimate (or the
    HEALTH_UPLOAD_TIMEOUT_SECONDS setting); the machine's orchestration races a timer against them."""
    expected = (
        timedelta(seconds=started.expected_duration_seconds)
        if started.expected_duration_seconds is not None
        else None
    )
    return watch_cycle_uploads(
        repos,
        started.machine_id,
        appliance_id=started.appliance_id,
        cycle_id=started.cycle_id,
        sequence=started.sequence,
        kind=started.kind.value,
        disk_ids=[d.disk_id for d in started.disks],
        started_at=started.started_at or reported_at,
        expected=expected,
        settings=settings,
    )
