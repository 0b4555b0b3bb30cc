"""Persistent state of the local ARM endpoint: resources and async operations in one SQLite file.

Everything is also held in memory (the data is small: tens of resources); SQLite makes a restart keep
what was created, and operations still InProgress are resumed by the app on start-up. Keys are
lower-cased ARM ids; documents keep the spelling of the request that created them. Fields starting
with `_` are the endpoint's own bookkeeping and never leave it.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Doc = dict[str, Any]


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS resources (key TEXT PRIMARY KEY, doc TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS operations (id TEXT PRIMARY KEY, doc TEXT NOT NULL)")
        self._resources: dict[str, Doc] = {
            key: json.loads(doc) for key, doc in self._db.execute("SELECT key, doc FROM resources")
        }
        self._operations: dict[str, Doc] = {
            op_id: json.loads(doc) for op_id, doc in self._db.execute("SELECT id, doc FROM operations")
        }

    @property
    def lock(self) -> threading.RLock:
        """Held across a read-check-write sequence so that two requests cannot both pass a check."""
        return self._lock

    def get(self, key: str) -> Doc | None:
        with self._lock:
            doc = self._resources.get(key.lower())
            return copy.deepcopy(doc) if doc is not None else None

    def put(self, key: str, doc: Doc) -> None:
        with self._lock:
            self._resources[key.lower()] = copy.deepcopy(doc)
            self._db.execute(
                "INSERT INTO resources (key, doc) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET doc = excluded.doc",
                (key.lower(), json.dumps(doc)),
            )

    def delete(self, key: str) -> None:
        with self._lock:
            self._resources.pop(key.lower(), None)
            self._db.execute("DELETE FROM resources WHERE key = ?", (key.lower(),))

    def items(self) -> Iterator[tuple[str, Doc]]:
        with self._lock:
            snapshot = [(k, copy.deepcopy(v)) for k, v in self._resources.items()]
        yield from snapshot

    def get_operation(self, op_id: str) -> Doc | None:
        with self._lock:
            op = self._operations.get(op_id.lower())
            return copy.deepcopy(op) if op is not None else None

    def put_operation(self, op: Doc) -> None:
        with self._lock:
            op_id = str(op["name"]).lower()
            self._operations[op_id] = copy.deepcopy(op)
            self._db.execute(
                "INSERT INTO operations (id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
                (op_id, json.dumps(op)),
            )

    def delete_operation(self, op_id: str) -> None:
        with self._lock:
            self._operations.pop(op_id.lower(), None)
            self._db.execute("DELETE FROM operations WHERE id = ?", (op_id.lower(),))

    def operations(self) -> list[Doc]:
        with self._lock:
            return [copy.deepcopy(op) for op in self._operations.values()]

    def close(self) -> None:
        with self._lock:
            self._db.close()
