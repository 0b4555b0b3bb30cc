"""At-least-once delivery from the local topic to the Event Grid extension's webhook.

Each (event, subscription) is a row in SQLite, so a host restart loses nothing: rows still pending
are delivered after it. Retries follow Event Grid's schedule (shortened in tests), then the event is
dead-lettered to a blob with deadLetterReason, deliveryAttempts and lastDeliveryOutcome, as Event Grid does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob.aio import BlobServiceClient

from devhost.functions_host.eventgrid.schema import PublishedEvent

log = logging.getLogger("devhost.eventgrid")

# Event Grid's documented schedule: 10 s, 30 s, 1 m, 5 m, 10 m, 30 m, 1 h, 3 h, 6 h, then every 12 h.
EVENT_GRID_RETRY_SCHEDULE = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0)
# Responses Event Grid does not retry for a webhook: the event goes straight to the dead-letter store.
NO_RETRY_STATUSES = frozenset({400, 401, 403, 413})


@dataclass(frozen=True)
class Subscription:
    name: str
    function_name: str
    event_types: frozenset[str] | None = None  # None: all types

    def wants(self, event: PublishedEvent) -> bool:
        kind = event.body.get("type") if event.schema == "cloudevents" else event.body.get("eventType")
        return self.event_types is None or kind in self.event_types


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 30
    retry_schedule: Sequence[float] = EVENT_GRID_RETRY_SCHEDULE
    response_timeout: float = 30.0
    dead_letter_connection_string: str | None = None
    dead_letter_container: str = "eventgrid-deadletter"

    def delay_after(self, attempts: int) -> float:
        schedule = list(self.retry_schedule)
        return schedule[min(attempts - 1, len(schedule) - 1)]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT NOT NULL,
    function_name TEXT NOT NULL,
    event_id TEXT NOT NULL,
    schema TEXT NOT NULL,
    body TEXT NOT NULL,
    published_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    last_outcome TEXT,
    last_status INTEGER,
    last_attempt_at TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(status, next_attempt_at);
"""


class DeliveryQueue:
    def __init__(self, db_path: Path) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def enqueue(self, events: Sequence[PublishedEvent], subscriptions: Sequence[Subscription]) -> int:
        now = _iso(datetime.now(UTC))
        rows = [
            (s.name, s.function_name, e.id, e.schema, json.dumps(e.body), now, now)
            for e in events
            for s in subscriptions
            if s.wants(e)
        ]
        with self._db:  # one transaction: a publish is accepted whole or not at all
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO deliveries(subscription, function_name, event_id, schema, body, published_at, "
                "next_attempt_at) VALUES (?,?,?,?,?,?,?)",
                rows,
            )
        return len(rows)

    def due(self, now: datetime, limit: int = 64) -> list[sqlite3.Row]:
        self._db.row_factory = sqlite3.Row
        return list(
            self._db.execute(
                "SELECT * FROM deliveries WHERE status='pending' AND next_attempt_at<=? ORDER BY next_attempt_at, seq "
                "LIMIT ?",
                (_iso(now), limit),
            )
        )

    def next_due_at(self) -> datetime | None:
        row = self._db.execute(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE status='pending'"
        ).fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def record(
        self,
        seq: int,
        *,
        status: str,
        attempts: int,
        outcome: str,
        http_status: int | None,
        next_attempt_at: datetime | None,
    ) -> None:
        now = _iso(datetime.now(UTC))
        self._db.execute(
            "UPDATE deliveries SET status=?, attempts=?, last_outcome=?, last_status=?, last_attempt_at=?, "
            "next_attempt_at=COALESCE(?, next_attempt_at) WHERE seq=?",
            (
                status,
                attempts,
                outcome,
                http_status,
                now,
                _iso(next_attempt_at) if next_attempt_at else None,
                seq,
            ),
        )

    def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall())

    def close(self) -> None:
        self._db.close()


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="microseconds")


class DeliveryWorker:
    def __init__(
        self, queue: DeliveryQueue, policy: DeliveryPolicy, webhook_url: str, system_key: str, topic_name: str
    ) -> None:
        self._queue = queue
        self._policy = policy
        self._webhook_url = webhook_url
        self._system_key = system_key
        self._topic_name = topic_name
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client = httpx.AsyncClient(timeout=policy.response_timeout)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="eventgrid-delivery")

    def notify(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            rows = self._queue.due(datetime.now(UTC))
            if rows:
                results = await asyncio.gather(*(self._attempt(row) for row in rows), return_exceptions=True)
                for result in results:
                    if isinstance(result, BaseException):
                        log.error("delivery attempt crashed: %r", result)
                continue
            nxt = self._queue.next_due_at()
            timeout = None if nxt is None else max(0.0, (nxt - datetime.now(UTC)).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _attempt(self, row: sqlite3.Row) -> None:
        attempts = int(row["attempts"]) + 1
        body: Any = json.loads(row["body"])
        is_ce = row["schema"] == "cloudevents"
        headers = {
            "aeg-event-type": "Notification",
            "aeg-subscription-name": row["subscription"].upper(),
            "aeg-delivery-count": str(attempts - 1),
            "content-type": "application/cloudevents+json; charset=utf-8" if is_ce else "application/json",
        }
        # Batching is off by default: one event per request (an array of one for the Event Grid schema).
        payload = body if is_ce else [body]
        status: int | None = None
        try:
            response = await self._client.post(
                self._webhook_url,
                params={"functionName": row["function_name"], "code": self._system_key},
                headers=headers,
                content=json.dumps(payload),
            )
            status = response.status_code
            outcome = "Success" if 200 <= status < 300 else f"HTTP {status}"
        except httpx.TimeoutException:
            outcome = "TimedOut"
        except httpx.HTTPError as exc:
            outcome = f"Unreachable: {exc.__class__.__name__}"
        if status is not None and 200 <= status < 300:
            self._queue.record(
                row["seq"],
                status="delivered",
                attempts=attempts,
                outcome=outcome,
                http_status=status,
                next_attempt_at=None,
            )
            return
        if (status in NO_RETRY_STATUSES) or attempts >= self._policy.max_attempts:
            reason = "MaxDeliveryAttemptsExceeded" if status not in NO_RETRY_STATUSES else "DeliveryFailed"
            await self._dead_letter(row, body, attempts, outcome, status, reason)
            return
        next_at = datetime.now(UTC) + timedelta(seconds=self._policy.delay_after(attempts))
        log.warning(
            "delivery of event %s to %s failed (%s); attempt %d, retrying at %s",
            row["event_id"],
            row["function_name"],
            outcome,
            attempts,
            next_at.isoformat(),
        )
        self._queue.record(
            row["seq"],
            status="pending",
            attempts=attempts,
            outcome=outcome,
            http_status=status,
            next_attempt_at=next_at,
        )

    async def _dead_letter(
        self,
        row: sqlite3.Row,
        body: dict[str, Any],
        attempts: int,
        outcome: str,
        status: int | None,
        reason: str,
    ) -> None:
        connection = self._policy.dead_letter_connection_string
        if connection:
            now = datetime.now(UTC)
            record = {
                **body,
                "deadLetterReason": reason,
                "deliveryAttempts": attempts,
                "lastDeliveryOutcome": outcome,
                "lastHttpStatusCode": status,
                "publishTime": row["published_at"],
                "lastDeliveryAttemptTime": _iso(now),
            }
            name = f"{self._topic_name}/{row['subscription']}/{now:%Y/%m/%d/%H}/{row['event_id']}-{row['seq']}.json"
            try:
                async with BlobServiceClient.from_connection_string(connection) as service:
                    container = service.get_container_client(self._policy.dead_letter_container)
                    with contextlib.suppress(ResourceExistsError):
                        await container.create_container()
                    await container.upload_blob(name, json.dumps([record]), overwrite=True)
            except Exception:
                # Event Grid keeps trying the dead-letter store for hours; the event stays pending meanwhile.
                log.exception("dead-lettering event %s failed; will try again", row["event_id"])
                self._queue.record(
                    row["seq"],
                    status="pending",
                    attempts=attempts,
                    outcome=outcome,
                    http_status=status,
                    next_attempt_at=datetime.now(UTC) + timedelta(seconds=60),
                )
                return
            log.error(
                "event %s dead-lettered to %s/%s (%s)",
                row["event_id"],
                self._policy.dead_letter_container,
                name,
                reason,
            )
        else:
            log.error(
                "event %s dropped after %d attempts (%s): no dead-letter store configured",
                row["event_id"],
                attempts,
                outcome,
            )
        self._queue.record(
            row["seq"],
            status="deadlettered",
            attempts=attempts,
            outcome=outcome,
            http_status=status,
            next_attempt_at=None,
        )
