"""Machine events: written by the orchestration's activities and triggers, read newest first by operators."""

from __future__ import annotations

from shared.domain.errors import NotFound, ValidationFailed
from shared.domain.event import Event
from shared.platform.documents import Query
from shared.platform.repository import ItemPage, Repositories

MAX_EVENTS = 200


def record_event(repos: Repositories, event: Event) -> None:
    """One upsert under the event's id: a retried activity records the event once."""
    repos.events.put(event)


def list_events_page(
    repos: Repositories, machine_id: str, *, limit: int = 50, continuation: str | None = None
) -> ItemPage[Event]:
    """Newest first, one page of a single-partition query (one round-trip); pass the page's continuation
    back for older events. An empty first page is checked against the machine (404)."""
    if not 1 <= limit <= MAX_EVENTS:
        raise ValidationFailed.single("limit", f"must be between 1 and {MAX_EVENTS}; got {limit}")
    page = repos.events.query_page(
        Query(equals={"machineId": machine_id}, order_by="time", descending=True),
        partition_key=machine_id,
        page_size=limit,
        continuation=continuation,
    )
    if not page.items and continuation is None and repos.machines.get(machine_id) is None:
        raise NotFound(f"machine {machine_id} does not exist", details=[{"id": machine_id}])
    return page


def list_events(repos: Repositories, machine_id: str, *, limit: int = 50) -> list[Event]:
    """The newest `limit` events (the first page)."""
    return list_events_page(repos, machine_id, limit=limit).items
