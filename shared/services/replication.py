"""What the per-machine orchestration's activities record after each cycle, in one machine update.

Both functions are one `update_with_retry` on the machine (2 round-trips without contention) and are
idempotent: a retried activity or a duplicate event changes nothing the second time (1 round-trip).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.adapters.repository import Repositories
from shared.domain.cycle import RecoveryPoint
from shared.domain.event import Event, Severity
from shared.domain.machine import Health, Machine
from shared.domain.policy import ReplicationPolicy


@dataclass(frozen=True)
class CycleApplied:
    machine_id: str
    sequence: int
    applied_at: datetime
    recovery_point: RecoveryPoint
    progress_percent: float | None = None  # initial replication reports progress; deltas leave it alone


def record_cycle_applied(
    repos: Repositories, applied: CycleApplied, retention: ReplicationPolicy
) -> list[RecoveryPoint]:
    """Advance the watermark, keep the recovery point under the policy's retention, clear transient
    errors. Returns the recovery points that fell out of retention: the caller deletes their snapshots.
    """

    def apply(machine: Machine) -> list[RecoveryPoint]:
        dropped = machine.replication.add_recovery_point(
            applied.recovery_point,
            keep_count=retention.recovery_point_retention_count,
            keep_for=timedelta(hours=retention.recovery_point_retention_hours),
            now=applied.applied_at,
        )
        machine.record_cycle_applied(applied.sequence, applied.applied_at)
        if applied.progress_percent is not None:
            machine.replication.progress_percent = max(
                machine.replication.progress_percent, min(100.0, applied.progress_percent)
            )
        return dropped

    _, dropped = repos.machines.update_with_retry(applied.machine_id, apply)
    return dropped


_HEALTH_OF = {
    Severity.INFO: Health.HEALTHY,
    Severity.WARNING: Health.WARNING,
    Severity.CRITICAL: Health.CRITICAL,
}


def record_cycle_failed(repos: Repositories, event: Event, *, needs_resync: bool = False) -> None:
    """Raise the machine's current error from a failure event and keep the event (3 round-trips).

    `needs_resync`: the error stays until a resync (e.g. changed block tracking reset without
    automatic repair) instead of clearing with the next applied cycle.
    """

    def apply(machine: Machine) -> None:
        machine.record_error(
            code=event.error_code or event.type,
            message=event.message,
            severity=_HEALTH_OF[event.severity],
            at=event.time,
            disk_id=event.disk_id,
            clears_on_next_cycle=not needs_resync,
        )
        machine.updated_at = max(machine.updated_at, event.time)

    repos.machines.update_with_retry(event.machine_id, apply)
    repos.events.put(event)
