"""Machine events: written by the orchestration's activities, read newest first by operators."""

from __future__ import annotations

from shared.adapters.documents import Query
from shared.adapters.repository import Repositories
from shared.domain.errors import NotFound, ValidationFailed
from shared.domain.event import Event

MAX_EVENTS = 200


def record_event(repos: Repositories, event: Event) -> None:
    """One upsert under the event's id: a retried activity records the event once."""
    repos.events.put(event)


def list_events(repos: Repositories, machine_id: str, *, limit: int = 50) -> list[Event]:
    """Newest first, one single-partition query; an empty answer is checked against the machine (404)."""
    if not 1 <= limit <= MAX_EVENTS:
        raise ValidationFailed.single("limit", f"must be between 1 and {MAX_EVENTS}; got {limit}")
    events = repos.events.query(
        Query(order_by="time", descending=True, limit=limit), partition_key=machine_id
    )
    if not events and repos.machines.get(machine_id) is None:
        raise NotFound(f"machine {machine_id} does not exist", details=[{"id": machine_id}])
    return events
