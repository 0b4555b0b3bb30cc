"""SQLite (WAL) persistence for instances, histories, queued messages, activity work items and entities.

Every state change of one step (an episode, an activity result, an entity batch) is a single
transaction, so a process killed at any point restarts from a consistent store: messages not yet
consumed are still queued, work items not yet acknowledged are re-run (at-least-once, as on Azure).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devhost.durable.history import Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id         TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    execution_id        TEXT NOT NULL,
    status              TEXT NOT NULL,
    input               TEXT,
    output              TEXT,
    custom_status       TEXT,
    created_time        TEXT NOT NULL,
    last_updated_time   TEXT NOT NULL,
    parent_instance_id  TEXT,
    parent_execution_id TEXT,
    parent_task_id      INTEGER,
    ledger              TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_created ON instances(created_time);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    event       TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
    msg_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id  TEXT NOT NULL,
    execution_id TEXT,
    visible_at   TEXT,
    event        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_by_instance ON inbox(instance_id, msg_id);
CREATE INDEX IF NOT EXISTS inbox_by_due ON inbox(visible_at);
CREATE TABLE IF NOT EXISTS activities (
    work_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id  TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id      INTEGER NOT NULL,
    name         TEXT NOT NULL,
    input        TEXT
);
CREATE TABLE IF NOT EXISTS entities (
    entity_id         TEXT PRIMARY KEY,
    state             TEXT,
    last_updated_time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entity_ops (
    op_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    entity_id TEXT NOT NULL,
    request   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entity_ops_by_entity ON entity_ops(entity_id, op_id);
"""

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Terminated", "Canceled"})


@dataclass
class InstanceRow:
    instance_id: str
    name: str
    execution_id: str
    status: str
    input: str | None
    output: str | None
    custom_status: str | None
    created_time: str
    last_updated_time: str
    parent_instance_id: str | None
    parent_execution_id: str | None
    parent_task_id: int | None
    ledger: str

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Message:
    msg_id: int
    execution_id: str | None
    event: Event


@dataclass(frozen=True)
class ActivityWork:
    work_id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None


@dataclass(frozen=True)
class EntityOp:
    op_id: int
    entity_id: str
    request: dict[str, Any]


_INSTANCE_COLUMNS = (
    "instance_id, name, execution_id, status, input, output, custom_status, created_time, "
    "last_updated_time, parent_instance_id, parent_execution_id, parent_task_id, ledger"
)


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection used from the event loop thread only; autocommit mode with explicit
        # BEGIN IMMEDIATE so each step is one durable transaction.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL loses nothing when the process is killed (only on power loss), which is the failure we model.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._depth = 0

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        # Nested use joins the outer transaction, so helpers can be composed into one atomic step.
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._db.execute("ROLLBACK")
            raise
        self._depth = 0
        self._db.execute("COMMIT")

    # -- instances -----------------------------------------------------------------------------
    def get_instance(self, instance_id: str) -> InstanceRow | None:
        row = self._db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        return InstanceRow(*row) if row else None

    def put_instance(self, row: InstanceRow) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO instances ({_INSTANCE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                row.instance_id,
                row.name,
                row.execution_id,
                row.status,
                row.input,
                row.output,
                row.custom_status,
                row.created_time,
                row.last_updated_time,
                row.parent_instance_id,
                row.parent_execution_id,
                row.parent_task_id,
                row.ledger,
            ),
        )

    def query_instances(
        self,
        *,
        created_from: str | None = None,
        created_to: str | None = None,
        statuses: Sequence[str] = (),
        prefix: str | None = None,
    ) -> list[InstanceRow]:
        clauses: list[str] = []
        args: list[Any] = []
        if created_from:
            clauses.append("created_time >= ?")
            args.append(created_from)
        if created_to:
            clauses.append("created_time <= ?")
            args.append(created_to)
        if statuses:
            clauses.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        if prefix:
            # Prefix match without LIKE so ids containing % or _ are not wildcards.
            clauses.append("substr(instance_id, 1, ?) = ?")
            args.extend([len(prefix), prefix])
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances {where} ORDER BY created_time", args
        )
        return [InstanceRow(*row) for row in rows]

    def unfinished_instance_ids(self) -> list[str]:
        rows = self._db.execute(
            "SELECT instance_id FROM instances WHERE status NOT IN ('Completed','Failed','Terminated','Canceled')"
        )
        return [r[0] for r in rows]

    def delete_instance(self, instance_id: str) -> None:
        for table in ("instances", "history", "inbox", "activities"):
            self._db.execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance_id,))

    # -- history -------------------------------------------------------------------------------
    def load_history(self, instance_id: str) -> list[Event]:
        rows = self._db.execute(
            "SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,)
        )
        return [json.loads(r[0]) for r in rows]

    def append_history(self, instance_id: str, first_seq: int, events: Sequence[Event]) -> None:
        self._db.executemany(
            "INSERT INTO history (instance_id, seq, event) VALUES (?,?,?)",
            [(instance_id, first_seq + i, json.dumps(e)) for i, e in enumerate(events)],
        )

    def clear_history(self, instance_id: str) -> None:
        self._db.execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))

    # -- inbox -----------------------------------------------------------------------------------
    def enqueue(
        self, instance_id: str, event: Event, *, execution_id: str | None, visible_at: str | None = None
    ) -> None:
        self._db.execute(
            "INSERT INTO inbox (instance_id, execution_id, visible_at, event) VALUES (?,?,?,?)",
            (instance_id, execution_id, visible_at, json.dumps(event)),
        )

    def visible_messages(self, instance_id: str, now: str) -> list[Message]:
        rows = self._db.execute(
            "SELECT msg_id, execution_id, event FROM inbox "
            "WHERE instance_id = ? AND (visible_at IS NULL OR visible_at <= ?) ORDER BY msg_id",
            (instance_id, now),
        )
        return [Message(r[0], r[1], json.loads(r[2])) for r in rows]

    def delete_messages(self, msg_ids: Sequence[int]) -> None:
        self._db.executemany("DELETE FROM inbox WHERE msg_id = ?", [(m,) for m in msg_ids])

    def cancel_timers(self, instance_id: str, execution_id: str, timer_ids: Sequence[int]) -> None:
        """Drop pending TimerFired messages of cancelled timers so they never wake the instance."""
        for timer_id in timer_ids:
            self._db.execute(
                "DELETE FROM inbox WHERE instance_id = ? AND execution_id = ? AND visible_at IS NOT NULL "
                "AND json_extract(event, '$.EventType') = 11 AND json_extract(event, '$.TimerId') = ?",
                (instance_id, execution_id, timer_id),
            )

    def delete_timers(self, instance_id: str) -> None:
        self._db.execute("DELETE FROM inbox WHERE instance_id = ? AND visible_at IS NOT NULL", (instance_id,))

    def instances_with_visible_messages(self, now: str) -> list[str]:
        rows = self._db.execute(
            "SELECT DISTINCT instance_id FROM inbox WHERE visible_at IS NULL OR visible_at <= ?", (now,)
        )
        return [r[0] for r in rows]

    def next_due(self, now: str) -> str | None:
        row = self._db.execute("SELECT MIN(visible_at) FROM inbox WHERE visible_at > ?", (now,)).fetchone()
        return row[0] if row else None

    # -- activities ------------------------------------------------------------------------------
    def add_activity(
        self, instance_id: str, execution_id: str, task_id: int, name: str, input_json: str | None
    ) -> int:
        cur = self._db.execute(
            "INSERT INTO activities (instance_id, execution_id, task_id, name, input) VALUES (?,?,?,?,?)",
            (instance_id, execution_id, task_id, name, input_json),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def get_activity(self, work_id: int) -> ActivityWork | None:
        row = self._db.execute(
            "SELECT work_id, instance_id, execution_id, task_id, name, input FROM activities WHERE work_id = ?",
            (work_id,),
        ).fetchone()
        return ActivityWork(*row) if row else None

    def pending_activities(self) -> list[ActivityWork]:
        rows = self._db.execute(
            "SELECT work_id, instance_id, execution_id, task_id, name, input FROM activities ORDER BY work_id"
        )
        return [ActivityWork(*r) for r in rows]

    def delete_activity(self, work_id: int) -> None:
        self._db.execute("DELETE FROM activities WHERE work_id = ?", (work_id,))

    # -- entities --------------------------------------------------------------------------------
    def get_entity_state(self, entity_id: str) -> str | None:
        row = self._db.execute("SELECT state FROM entities WHERE entity_id = ?", (entity_id,)).fetchone()
        return row[0] if row else None

    def put_entity_state(self, entity_id: str, state: str | None, now: str) -> None:
        if state is None:
            self._db.execute("DELETE FROM entities WHERE entity_id = ?", (entity_id,))
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO entities (entity_id, state, last_updated_time) VALUES (?,?,?)",
                (entity_id, state, now),
            )

    def enqueue_entity_op(self, entity_id: str, request: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO entity_ops (entity_id, request) VALUES (?,?)", (entity_id, json.dumps(request))
        )

    def entity_ops(self, entity_id: str, limit: int) -> list[EntityOp]:
        rows = self._db.execute(
            "SELECT op_id, entity_id, request FROM entity_ops WHERE entity_id = ? ORDER BY op_id LIMIT ?",
            (entity_id, limit),
        )
        return [EntityOp(r[0], r[1], json.loads(r[2])) for r in rows]

    def entities_with_ops(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT entity_id FROM entity_ops")]

    def delete_entity_ops(self, op_ids: Sequence[int]) -> None:
        self._db.executemany("DELETE FROM entity_ops WHERE op_id = ?", [(o,) for o in op_ids])

    def has_runnable_work(self, now: str) -> bool:
        row = self._db.execute(
            "SELECT EXISTS(SELECT 1 FROM inbox WHERE visible_at IS NULL OR visible_at <= ?)"
            " OR EXISTS(SELECT 1 FROM activities) OR EXISTS(SELECT 1 FROM entity_ops)",
            (now,),
        ).fetchone()
        return bool(row[0])
