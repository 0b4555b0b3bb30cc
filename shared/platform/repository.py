"""Typed repositories over a DocumentStore: domain models in, domain models out, ETags carried along.

`update_with_retry` is the one way state is changed in place: read, mutate a fresh copy, replace
with If-Match; on a 412 re-read and re-apply the mutation (bounded), so two concurrent writers both
land. A mutation that changes nothing writes nothing (one round-trip instead of two).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from shared.domain.appliance import Appliance
from shared.domain.command import ApplianceCommand
from shared.domain.cycle import Cycle
from shared.domain.errors import ConcurrencyConflict, NotFound
from shared.domain.event import Event
from shared.domain.job import Job
from shared.domain.machine import Machine
from shared.domain.wire import WireModel
from shared.platform.documents import (
    APPLIANCES,
    COMMANDS,
    CYCLES,
    EVENTS,
    JOBS,
    MACHINES,
    AlreadyExists,
    ContainerSpec,
    DocumentStore,
    Guard,
    OperationCounter,
    Page,
    Query,
    StoredDocument,
    issue_continuation,
    read_continuation,
)

T = TypeVar("T", bound=WireModel)
R = TypeVar("R")

DEFAULT_UPDATE_ATTEMPTS = 5


@dataclass
class Versioned(Generic[T]):
    """An item with the ETag it was read at; saving it fails if someone else wrote in between."""

    item: T
    etag: str


@dataclass(frozen=True)
class ItemPage(Generic[T]):
    items: list[T]
    continuation: str | None


class Collection(Generic[T]):
    def __init__(self, store: DocumentStore, spec: ContainerSpec, model: type[T], noun: str) -> None:
        self._store = store
        self.spec = spec
        self._model = model
        self._noun = noun

    def _load(self, doc: StoredDocument) -> Versioned[T]:
        return Versioned(self._model.model_validate(doc.body), doc.etag)

    def _partition_of(self, doc_id: str, partition_key: str | None) -> str:
        if partition_key is not None:
            return partition_key
        if self.spec.partition_key_field != "id":
            raise TypeError(
                f"{self.spec.name} is partitioned by {self.spec.partition_key_path}: pass partition_key"
            )
        return doc_id

    def get(self, doc_id: str, partition_key: str | None = None) -> Versioned[T] | None:
        doc = self._store.read(self.spec, doc_id, self._partition_of(doc_id, partition_key))
        return None if doc is None else self._load(doc)

    def require(self, doc_id: str, partition_key: str | None = None) -> Versioned[T]:
        found = self.get(doc_id, partition_key)
        if found is None:
            raise NotFound(f"{self._noun} {doc_id} does not exist", details=[{"id": doc_id}])
        return found

    def add(self, item: T) -> Versioned[T]:
        """Create; AlreadyExists (409) if the id is taken."""
        return self._load(self._store.create(self.spec, item.to_wire()))

    def save(self, versioned: Versioned[T]) -> Versioned[T]:
        """Replace if unchanged since read; ConcurrencyConflict otherwise."""
        return self._load(self._store.replace(self.spec, versioned.item.to_wire(), versioned.etag))

    def put(self, item: T) -> Versioned[T]:
        """Unconditional upsert: for records written once under a deterministic id (idempotent retries)."""
        return self._load(self._store.upsert(self.spec, item.to_wire()))

    def delete(self, doc_id: str, partition_key: str | None = None) -> bool:
        return self._store.delete(self.spec, doc_id, self._partition_of(doc_id, partition_key))

    def patch_if(
        self, doc_id: str, fields: Mapping[str, Any], guard: Guard, *, partition_key: str | None = None
    ) -> Versioned[T] | None:
        """Set `fields` (wire names, dotted) in one round-trip if the item exists and meets `guard`;
        None otherwise (nothing written: read it to find out why)."""
        doc = self._store.patch(self.spec, doc_id, self._partition_of(doc_id, partition_key), fields, guard)
        return None if doc is None else self._load(doc)

    def update_with_retry(
        self,
        doc_id: str,
        mutate: Callable[[T], R],
        *,
        partition_key: str | None = None,
        attempts: int = DEFAULT_UPDATE_ATTEMPTS,
        current: Versioned[T] | None = None,
        snapshot: Versioned[T] | None = None,
    ) -> tuple[Versioned[T], R]:
        """Apply `mutate` to the latest version and save it, re-reading on conflict (at most `attempts`).

        `mutate` gets a private copy and may raise a DomainError to refuse (nothing is written); it must
        be a pure function of the item because it can run more than once. Pass `current` when the caller
        has just read the item, to save the first read. Pass `snapshot` for a copy read earlier, maybe
        elsewhere (carried with its ETag): it is tried first instead of a read, and since it may be
        stale, a mutation that changes nothing on it is not trusted: the item is read and mutated again.
        """
        lost: tuple[str, Versioned[T]] | None = None  # why the last try failed, and on what copy
        for _ in range(attempts):
            carried = current if current is not None else snapshot
            versioned = carried if carried is not None else self.require(doc_id, partition_key)
            if lost is not None:
                self._record_fallback(*lost, versioned)
                lost = None
            stale_possible = current is None and snapshot is not None
            current = snapshot = None
            item = versioned.item.model_copy(deep=True)
            result = mutate(item)
            if item == versioned.item:
                if stale_possible:
                    lost = ("carried copy, nothing to change", versioned)
                    continue
                return versioned, result
            try:
                return self.save(Versioned(item, versioned.etag)), result
            except ConcurrencyConflict:
                lost = ("carried copy, 412" if stale_possible else "412 after a read", versioned)
                continue
        raise ConcurrencyConflict(
            f"{self._noun} {doc_id} kept changing while being updated ({attempts} attempts); retry the request"
        )

    def _record_fallback(self, why: str, tried: Versioned[T], found: Versioned[T]) -> None:
        """Count the retry by why it was needed and by what another writer changed in between (the
        fields that differ between the copy tried and the one read after it: no extra round-trip)."""
        changed = changed_fields(tried.item.to_wire(), found.item.to_wire())
        self._store.counter.record_fallback(
            f"{self._noun} update", f"{why}; changed: {', '.join(changed) or 'nothing'}"
        )

    def query(self, query: Query, *, partition_key: str | None) -> list[T]:
        return [self._load(d).item for d in self._store.query(self.spec, query, partition_key=partition_key)]

    def query_page(
        self, query: Query, *, partition_key: str | None, page_size: int, continuation: str | None
    ) -> ItemPage[T]:
        """One page; `continuation` is a token an earlier page of the same query issued (opaque to
        callers: InvalidContinuationToken for anything else)."""
        scope = query.token_scope(self.spec, partition_key)
        page: Page = self._store.query_page(
            self.spec,
            query,
            partition_key=partition_key,
            page_size=page_size,
            continuation=read_continuation(continuation, scope),
        )
        return ItemPage(
            [self._load(d).item for d in page.documents], issue_continuation(page.continuation, scope)
        )


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any], *, depth: int = 2) -> list[str]:
    """The dotted wire names (at most `depth` levels deep) whose values differ, sorted."""
    changed: list[str] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if depth > 1 and isinstance(old, Mapping) and isinstance(new, Mapping):
            changed += [f"{name}.{inner}" for inner in changed_fields(old, new, depth=depth - 1)]
        else:
            changed.append(name)
    return changed


class Repositories:
    """All collections over one store (the unit the service layer receives)."""

    def __init__(self, store: DocumentStore) -> None:
        self.store = store
        self.appliances = Collection(store, APPLIANCES, Appliance, "appliance")
        self.machines = Collection(store, MACHINES, Machine, "machine")
        self.jobs = Collection(store, JOBS, Job, "job")
        self.events = Collection(store, EVENTS, Event, "event")
        self.commands = Collection(store, COMMANDS, ApplianceCommand, "command")
        self.cycles = Collection(store, CYCLES, Cycle, "cycle")

    @property
    def counter(self) -> OperationCounter:
        return self.store.counter


__all__ = ["AlreadyExists", "Collection", "ItemPage", "Repositories", "Versioned"]
