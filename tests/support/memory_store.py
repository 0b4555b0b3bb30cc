"""An in-memory DocumentStore with Cosmos's ETag semantics, for unit tests of the service layer.

tests/integration/test_cosmos_store_contract.py runs the same contract against this store and the real
Cosmos store through the azure-cosmos SDK, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from shared.domain.errors import ConcurrencyConflict
from shared.platform.documents import (
    AlreadyExists,
    ContainerSpec,
    Guard,
    OperationCounter,
    Page,
    Query,
    StoredDocument,
    check_field,
    strip_system_properties,
)


def _get_path(body: dict[str, Any], path: str) -> Any:
    value: Any = body
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _meets(body: dict[str, Any], guard: Guard) -> bool:
    def has(array: Any, wanted: Mapping[str, Any]) -> bool:
        return isinstance(array, list) and any(
            isinstance(element, dict) and all(element.get(k) == v for k, v in wanted.items())
            for element in array
        )

    return (
        all(_get_path(body, name) == value for name, value in guard.equals.items())
        and all(
            (found := _get_path(body, name)) is None or found < limit for name, limit in guard.below.items()
        )
        and all(
            has(_get_path(body, name), wanted)
            for name, elements in guard.contains.items()
            for wanted in elements
        )
    )


class InMemoryDocumentStore:
    def __init__(self) -> None:
        self.counter = OperationCounter()
        self._lock = threading.Lock()
        self._docs: dict[tuple[str, str, str], StoredDocument] = {}

    def _key(self, container: ContainerSpec, body: dict[str, Any]) -> tuple[str, str, str]:
        return (container.name, str(body[container.partition_key_field]), str(body["id"]))

    def _stored(self, body: dict[str, Any]) -> StoredDocument:
        return StoredDocument(copy.deepcopy(strip_system_properties(body)), uuid.uuid4().hex)

    def read(self, container: ContainerSpec, doc_id: str, partition_key: str) -> StoredDocument | None:
        self.counter.record("read", container.name)
        with self._lock:
            doc = self._docs.get((container.name, partition_key, doc_id))
            return copy.deepcopy(doc)

    def create(self, container: ContainerSpec, body: dict[str, Any]) -> StoredDocument:
        self.counter.record("create", container.name)
        with self._lock:
            key = self._key(container, body)
            if key in self._docs:
                raise AlreadyExists(f"{container.name}/{body['id']} already exists")
            self._docs[key] = doc = self._stored(body)
            return copy.deepcopy(doc)

    def replace(self, container: ContainerSpec, body: dict[str, Any], etag: str) -> StoredDocument:
        self.counter.record("replace", container.name)
        with self._lock:
            key = self._key(container, body)
            current = self._docs.get(key)
            if current is None or current.etag != etag:
                raise ConcurrencyConflict(f"{container.name}/{body['id']} changed since it was read")
            self._docs[key] = doc = self._stored(body)
            return copy.deepcopy(doc)

    def upsert(self, container: ContainerSpec, body: dict[str, Any]) -> StoredDocument:
        self.counter.record("upsert", container.name)
        with self._lock:
            self._docs[self._key(container, body)] = doc = self._stored(body)
            return copy.deepcopy(doc)

    def patch(
        self,
        container: ContainerSpec,
        doc_id: str,
        partition_key: str,
        fields: Mapping[str, Any],
        guard: Guard,
    ) -> StoredDocument | None:
        self.counter.record("patch", container.name)
        with self._lock:
            key = (container.name, partition_key, doc_id)
            current = self._docs.get(key)
            if current is None or not _meets(current.body, guard):
                return None
            body = copy.deepcopy(current.body)
            for name, value in fields.items():
                *parents, last = check_field(name).split(".")
                target = body
                for part in parents:
                    target = target[part]  # Cosmos refuses a patch under a missing parent (400)
                target[last] = copy.deepcopy(value)
            self._docs[key] = doc = self._stored(body)
            return copy.deepcopy(doc)

    def delete(self, container: ContainerSpec, doc_id: str, partition_key: str) -> bool:
        self.counter.record("delete", container.name)
        with self._lock:
            return self._docs.pop((container.name, partition_key, doc_id), None) is not None

    def _matching(
        self, container: ContainerSpec, query: Query, partition_key: str | None
    ) -> list[StoredDocument]:
        with self._lock:
            docs = [
                copy.deepcopy(doc)
                for (name, pk, _), doc in self._docs.items()
                if name == container.name
                and (partition_key is None or pk == partition_key)
                and all(_get_path(doc.body, f) == v for f, v in query.equals.items())
                and all(_get_path(doc.body, f) in vs for f, vs in query.within.items())
            ]
        if query.order_by is not None:
            order_by = query.order_by
            docs.sort(
                # Missing values first; a present 0 is a value (not "missing", as `or` would make it).
                key=lambda d: (
                    _get_path(d.body, order_by) is not None,
                    _get_path(d.body, order_by) if _get_path(d.body, order_by) is not None else 0,
                ),
                reverse=query.descending,
            )
        return docs[: query.limit] if query.limit is not None else docs

    def query(
        self, container: ContainerSpec, query: Query, *, partition_key: str | None
    ) -> list[StoredDocument]:
        self.counter.record("query", container.name)
        return self._matching(container, query, partition_key)

    def query_page(
        self,
        container: ContainerSpec,
        query: Query,
        *,
        partition_key: str | None,
        page_size: int,
        continuation: str | None,
    ) -> Page:
        self.counter.record("query", container.name)
        docs = self._matching(container, query, partition_key)
        start = int(continuation or 0)
        end = start + page_size
        return Page(docs[start:end], str(end) if end < len(docs) else None)
