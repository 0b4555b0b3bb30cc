"""The document-store port: the few primitives the repositories need, and the containers they live in.

Kept deliberately small (point read, create, conditional replace, upsert, delete, equality queries)
so that every call is one Cosmos round-trip and can be counted, and so that an in-memory store with
the same ETag semantics can back fast unit tests (the same contract tests run against both).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.domain.errors import Conflict, FieldProblem, ValidationFailed


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    partition_key_path: str
    # None: documents never expire; -1: TTL enabled but only per-document "ttl" expires; >0: seconds.
    default_ttl: int | None = None
    purpose: str = ""

    @property
    def partition_key_field(self) -> str:
        return self.partition_key_path.lstrip("/")


APPLIANCES = ContainerSpec("appliances", "/id", purpose="appliance, credential hash, replication policy")
MACHINES = ContainerSpec("machines", "/id", purpose="inventory, lifecycle state, target, replication status")
JOBS = ContainerSpec("jobs", "/id", purpose="long operations and their steps")
EVENTS = ContainerSpec("events", "/machineId", default_ttl=90 * 24 * 3600, purpose="machine events, 90 days")
COMMANDS = ContainerSpec(
    "commands", "/applianceId", default_ttl=-1, purpose="appliance commands; acknowledged ones expire"
)
CYCLES = ContainerSpec("cycles", "/machineId", purpose="replication cycles (idempotency by cycle id)")
MOBILITY = ContainerSpec(
    "mobility", "/id", purpose="the agents' registration passphrase (hash), Mobility agents"
)

ALL_CONTAINERS: tuple[ContainerSpec, ...] = (APPLIANCES, MACHINES, JOBS, EVENTS, COMMANDS, CYCLES, MOBILITY)


class AlreadyExists(Conflict):
    code = "AlreadyExists"


@dataclass(frozen=True)
class StoredDocument:
    body: dict[str, Any]
    etag: str


@dataclass(frozen=True)
class Page:
    documents: list[StoredDocument]
    continuation: str | None


class InvalidContinuationToken(ValidationFailed):
    code = "InvalidContinuationToken"


# A Cosmos token for a cross-partition query can run to a few KiB; anything far longer is not ours.
MAX_CONTINUATION_CHARS = 16 * 1024
_TOKEN_VERSION = b"\x01"
_CHECK_BYTES = 12
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")


def _token_check(scope: bytes, store_token: bytes) -> bytes:
    return hashlib.sha256(scope + b"\x00" + store_token).digest()[:_CHECK_BYTES]


def issue_continuation(store_token: str | None, scope: bytes) -> str | None:
    """The token a client sees: base64url of the store's own token behind a check of it and of the list
    it continues (`scope`), so a mangled token, or one from another list, is recognised before the
    store is asked."""
    if store_token is None:
        return None
    raw = store_token.encode("utf-8")
    return (
        base64.urlsafe_b64encode(_TOKEN_VERSION + _token_check(scope, raw) + raw).rstrip(b"=").decode("ascii")
    )


def read_continuation(token: str | None, scope: bytes) -> str | None:
    """The store's token inside `token` (None for no token), or InvalidContinuationToken saying what to do."""
    if not token:
        return None
    if len(token) > MAX_CONTINUATION_CHARS or not _BASE64URL.fullmatch(token):
        raise _invalid_token()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise _invalid_token() from None
    version, check, store_token = raw[:1], raw[1 : 1 + _CHECK_BYTES], raw[1 + _CHECK_BYTES :]
    if version != _TOKEN_VERSION or not hmac.compare_digest(check, _token_check(scope, store_token)):
        raise _invalid_token()
    try:
        return store_token.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid_token() from None


def _invalid_token() -> InvalidContinuationToken:
    return InvalidContinuationToken(
        [
            FieldProblem(
                "continuationToken",
                "is not a token this list issued (changed, truncated, or from another list or query); "
                "start again without continuationToken to read from the first page",
            )
        ]
    )


_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def check_field(name: str) -> str:
    """Query field names are interpolated into SQL (values never are): allow plain dotted paths only."""
    if not _FIELD.fullmatch(name):
        raise ValueError(f"not a queryable field path: {name!r}")
    return name


@dataclass(frozen=True)
class Query:
    """Equality filters, membership filters (`within`: the field's value is one of these), optional
    ordering and a limit: all the repositories need, portable to memory."""

    equals: Mapping[str, Any] = field(default_factory=dict)
    order_by: str | None = None
    descending: bool = False
    limit: int | None = None
    within: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in [*self.equals, *self.within]:
            check_field(name)
        if self.order_by is not None:
            check_field(self.order_by)

    def token_scope(self, container: ContainerSpec, partition_key: str | None) -> bytes:
        """What a continuation token of this query is bound to: the container, partition and filters."""
        filters = sorted((name, repr(value)) for name, value in self.equals.items())
        filters += sorted((f"{name} in", repr(list(values))) for name, values in self.within.items())
        return repr((container.name, partition_key, filters, self.order_by, self.descending)).encode("utf-8")


@dataclass(frozen=True)
class Guard:
    """What a conditional patch requires of the document, all of it: the store checks it atomically with
    the write (Cosmos's patch filter predicate), so a guarded patch of a field is as safe as an ETag'd
    replace for that field, without reading the document first.

    `equals`: the field has this value. `below`: the field is absent, null or less than this number.
    `contains`: the array field has, for each of these objects, an element with all of its fields."""

    equals: Mapping[str, str | int | bool] = field(default_factory=dict)
    below: Mapping[str, int] = field(default_factory=dict)
    contains: Mapping[str, Sequence[Mapping[str, str | int | bool]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in [*self.equals, *self.below, *self.contains]:
            check_field(name)


class DocumentStore(Protocol):
    counter: OperationCounter

    def read(self, container: ContainerSpec, doc_id: str, partition_key: str) -> StoredDocument | None: ...

    def create(self, container: ContainerSpec, body: dict[str, Any]) -> StoredDocument:
        """Insert; AlreadyExists if the id is taken in that partition."""
        ...

    def replace(self, container: ContainerSpec, body: dict[str, Any], etag: str) -> StoredDocument:
        """Replace only if unchanged since `etag` was read; ConcurrencyConflict otherwise (Cosmos 412)."""
        ...

    def upsert(self, container: ContainerSpec, body: dict[str, Any]) -> StoredDocument: ...

    def patch(
        self,
        container: ContainerSpec,
        doc_id: str,
        partition_key: str,
        fields: Mapping[str, Any],
        guard: Guard,
    ) -> StoredDocument | None:
        """Set these fields (dotted paths whose parent exists) in one round-trip if the document exists
        and meets `guard`; None (nothing written) if it does not exist or does not meet it."""
        ...

    def delete(self, container: ContainerSpec, doc_id: str, partition_key: str) -> bool: ...

    def query(
        self, container: ContainerSpec, query: Query, *, partition_key: str | None
    ) -> list[StoredDocument]:
        """partition_key=None means a cross-partition query: never on a hot path."""
        ...

    def query_page(
        self,
        container: ContainerSpec,
        query: Query,
        *,
        partition_key: str | None,
        page_size: int,
        continuation: str | None,
    ) -> Page: ...


OperationListener = Callable[[str, str, float], None]
# (path, reason): a write that took its fallback (a read, and maybe another write) instead of the one
# round-trip it was built for.
FallbackListener = Callable[[str, str], None]


class OperationCounter:
    """Counts store round-trips (and request units where the store reports them), thread-safe.

    Every DocumentStore call is one round-trip except multi-page queries, which count one per page.
    Fallbacks are counted apart, by path and reason: the round-trips they cost are already in the
    operations; the reasons say which writes raced which.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: Counter[str] = Counter()
        self._fallbacks: Counter[str] = Counter()
        self._request_units = 0.0
        self._listeners: list[OperationListener] = []
        self._fallback_listeners: list[FallbackListener] = []

    def add_listener(self, listener: OperationListener) -> None:
        """Also tell `listener(operation, container, request_units)` about every call (e.g. a telemetry metric)."""
        with self._lock:
            self._listeners.append(listener)

    def record(self, operation: str, container: str, request_units: float = 0.0) -> None:
        with self._lock:
            self._ops[f"{operation}:{container}"] += 1
            self._request_units += request_units
            listeners = list(self._listeners)
        for listener in listeners:
            listener(operation, container, request_units)

    def add_fallback_listener(self, listener: FallbackListener) -> None:
        """Also tell `listener(path, reason)` about every fallback (e.g. a telemetry metric)."""
        with self._lock:
            self._fallback_listeners.append(listener)

    def record_fallback(self, path: str, reason: str) -> None:
        with self._lock:
            self._fallbacks[f"{path}: {reason}"] += 1
            listeners = list(self._fallback_listeners)
        for listener in listeners:
            listener(path, reason)

    def fallbacks(self) -> dict[str, int]:
        with self._lock:
            return dict(self._fallbacks)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._ops.values())

    @property
    def request_units(self) -> float:
        with self._lock:
            return self._request_units

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._ops)

    def reset(self) -> None:
        with self._lock:
            self._ops.clear()
            self._fallbacks.clear()
            self._request_units = 0.0


# `ttl` is not here: a model that wants per-document expiry declares it as a field.
SYSTEM_PROPERTIES: Sequence[str] = ("_rid", "_self", "_etag", "_attachments", "_ts", "_lsn")


def strip_system_properties(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in SYSTEM_PROPERTIES}
