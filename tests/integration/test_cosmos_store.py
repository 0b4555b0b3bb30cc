"""The Cosmos adapter through the real azure-cosmos SDK against the local emulator (cosmosdb-server),
and the same store contract against the in-memory store used by the unit tests."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.cosmos import CosmosClient, DatabaseProxy

from devhost.emulators import EmulatorEndpoints
from shared.domain.cycle import Consistency, RecoveryPoint
from shared.domain.errors import ConcurrencyConflict
from shared.domain.event import Event, Severity
from shared.domain.inventory import MachineInventory
from shared.domain.machine import Health, Machine
from shared.platform.cosmos_store import CosmosDocumentStore, build_query, ensure_containers
from shared.platform.documents import (
    ALL_CONTAINERS,
    EVENTS,
    MACHINES,
    AlreadyExists,
    DocumentStore,
    Guard,
    Query,
)
from shared.platform.repository import Repositories
from tests.support.memory_store import InMemoryDocumentStore

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:Unverified HTTPS request")]

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def cosmos_client(emulators: EmulatorEndpoints) -> CosmosClient:
    return CosmosClient(emulators.cosmos_endpoint, credential=emulators.cosmos_key, connection_verify=False)


@pytest.fixture(scope="module")
def database(cosmos_client: CosmosClient) -> DatabaseProxy:
    return ensure_containers(cosmos_client, f"store-{uuid.uuid4().hex[:8]}")


@pytest.fixture(params=["cosmos", "memory"])
def store(request: pytest.FixtureRequest, database: DatabaseProxy) -> DocumentStore:
    if request.param == "cosmos":
        return CosmosDocumentStore(database)
    return InMemoryDocumentStore()


def machine(machine_id: str) -> Machine:
    inventory = MachineInventory.model_validate(
        {
            "displayName": machine_id,
            "osType": "linux",
            "osName": "Ubuntu",
            "osVersion": "20.04",
            "firmware": "UEFI",
            "disks": [{"id": "sda", "sizeBytes": 1024**3, "isOsDisk": True}],
        }
    )
    return Machine(
        id=machine_id, appliance_id="appl-1", inventory=inventory, discovered_at=NOW, updated_at=NOW
    )


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- database and containers ------------------------------------------------------------------------------


def test_ensure_containers_is_idempotent_and_sets_keys_and_ttl(cosmos_client: CosmosClient) -> None:
    name = uid("ensure")
    first = ensure_containers(cosmos_client, name)
    CosmosDocumentStore(first).upsert(MACHINES, {"id": "keep-me", "state": "Discovered"})
    second = ensure_containers(cosmos_client, name)
    assert CosmosDocumentStore(second).read(MACHINES, "keep-me", "keep-me") is not None  # nothing recreated
    for spec in ALL_CONTAINERS:
        properties = second.get_container_client(spec.name).read()
        assert properties["partitionKey"]["paths"] == [spec.partition_key_path]
        assert properties.get("defaultTtl") == spec.default_ttl
    cosmos_client.delete_database(name)


# -- the store contract, on both stores -------------------------------------------------------------------


def test_create_read_replace_with_etags(store: DocumentStore) -> None:
    doc_id = uid("m")
    created = store.create(MACHINES, {"id": doc_id, "state": "Discovered"})
    read = store.read(MACHINES, doc_id, doc_id)
    assert (
        read is not None and read.body == {"id": doc_id, "state": "Discovered"} and read.etag == created.etag
    )
    replaced = store.replace(MACHINES, {"id": doc_id, "state": "EnablingReplication"}, read.etag)
    assert replaced.etag != read.etag
    # A writer holding the old ETag gets a 412, surfaced as ConcurrencyConflict, and changes nothing.
    with pytest.raises(ConcurrencyConflict):
        store.replace(MACHINES, {"id": doc_id, "state": "Migrating"}, read.etag)
    after = store.read(MACHINES, doc_id, doc_id)
    assert after is not None and after.body["state"] == "EnablingReplication"


def test_a_guarded_patch_writes_only_what_meets_its_guard_in_one_round_trip(store: DocumentStore) -> None:
    doc_id = uid("m")
    created = store.create(
        MACHINES,
        {
            "id": doc_id,
            "applianceId": "Appl-Mixed-Case",
            "replication": {"lastAppliedSequence": 3, "uploadWatch": None},
            "inventory": {"disks": [{"id": "sda", "sizeBytes": 1}, {"id": "sdb", "sizeBytes": 2}]},
        },
    )
    watch = {"cycleId": "c5", "sequence": 5}

    def patch(**guard: Any) -> Any:
        return store.patch(MACHINES, doc_id, doc_id, {"replication.uploadWatch": watch}, Guard(**guard))

    refused = [
        {"equals": {"applianceId": "appl-mixed-case"}},  # compared as written, case included
        {"below": {"replication.lastAppliedSequence": 3}},
        {"contains": {"inventory.disks": [{"id": "sda"}, {"id": "sdc"}]}},
    ]
    for guard in refused:
        assert patch(**guard) is None, guard
    unchanged = store.read(MACHINES, doc_id, doc_id)
    assert unchanged is not None and unchanged.etag == created.etag

    store.counter.reset()
    patched = patch(
        equals={"applianceId": "Appl-Mixed-Case"},
        below={"replication.lastAppliedSequence": 5, "replication.uploadWatch.sequence": 5},
        contains={"inventory.disks": [{"id": "sda"}, {"id": "sdb"}]},
    )
    assert store.counter.snapshot() == {"patch:machines": 1}
    assert patched is not None and patched.body["replication"] == {
        "lastAppliedSequence": 3,
        "uploadWatch": watch,
    }
    assert patched.body["inventory"] == created.body["inventory"]
    # The patch changed the ETag: a writer that read before it gets a 412, as after a replace.
    with pytest.raises(ConcurrencyConflict):
        store.replace(MACHINES, {**created.body, "state": "Replicating"}, created.etag)
    # `below` holds for an absent or null field only while the guard's own field is below the limit.
    assert patch(below={"replication.uploadWatch.sequence": 5}) is None
    assert store.patch(MACHINES, uid("missing"), "x", {"state": "Replicating"}, Guard()) is None


def test_create_twice_is_already_exists(store: DocumentStore) -> None:
    doc_id = uid("m")
    store.create(MACHINES, {"id": doc_id})
    with pytest.raises(AlreadyExists):
        store.create(MACHINES, {"id": doc_id})


def test_missing_documents(store: DocumentStore) -> None:
    assert store.read(MACHINES, "does-not-exist", "does-not-exist") is None
    with pytest.raises(ConcurrencyConflict):
        store.replace(MACHINES, {"id": "does-not-exist"}, "etag")
    assert store.delete(MACHINES, "does-not-exist", "does-not-exist") is False


def test_reads_are_scoped_to_the_partition(store: DocumentStore) -> None:
    machine_id = uid("m")
    store.upsert(EVENTS, {"id": "e1", "machineId": machine_id, "time": "2026-11-22T03:00:00Z"})
    assert store.read(EVENTS, "e1", machine_id) is not None
    assert store.read(EVENTS, "e1", "another-machine") is None


def test_single_partition_query_filters_orders_and_limits(store: DocumentStore) -> None:
    machine_id, other = uid("m"), uid("m")
    for i in range(5):
        store.upsert(
            EVENTS,
            {
                "id": f"e{i}",
                "machineId": machine_id,
                "time": f"2026-11-22T03:0{i}:00Z",
                "severity": "Warning" if i % 2 else "Info",
            },
        )
    store.upsert(
        EVENTS, {"id": "e9", "machineId": other, "time": "2026-11-22T04:00:00Z", "severity": "Warning"}
    )
    newest = store.query(EVENTS, Query(order_by="time", descending=True, limit=3), partition_key=machine_id)
    assert [d.body["id"] for d in newest] == ["e4", "e3", "e2"]
    warnings = store.query(
        EVENTS, Query(equals={"severity": "Warning"}, order_by="time"), partition_key=machine_id
    )
    assert [d.body["id"] for d in warnings] == ["e1", "e3"]


def test_cross_partition_pages_with_continuation(store: DocumentStore) -> None:
    tag = uid("tag")
    for i in range(5):
        store.upsert(MACHINES, {"id": f"{tag}-{i}", "tag": tag})
    seen, token, pages = [], None, 0
    while True:
        page = store.query_page(
            MACHINES,
            Query(equals={"tag": tag}, order_by="id"),
            partition_key=None,
            page_size=2,
            continuation=token,
        )
        seen += [d.body["id"] for d in page.documents]
        pages += 1
        token = page.continuation
        if token is None:
            break
    assert seen == [f"{tag}-{i}" for i in range(5)]
    assert pages == 3


def test_query_text_is_parameterised() -> None:
    sql, params = build_query(
        Query(equals={"status": "x' OR 1=1 --"}, order_by="createdAt", limit=5), "applianceId", "a1"
    )
    assert (
        sql == "SELECT TOP 5 * FROM c WHERE c.status = @p0 AND c.applianceId = @p1 ORDER BY c.createdAt ASC"
    )
    assert params == [{"name": "@p0", "value": "x' OR 1=1 --"}, {"name": "@p1", "value": "a1"}]
    with pytest.raises(ValueError, match="not a queryable field"):
        Query(equals={"a = 1 OR c.b": 1})


def test_every_call_is_counted(store: DocumentStore) -> None:
    store.counter.reset()
    heard: list[tuple[str, str]] = []
    store.counter.add_listener(lambda operation, container, _units: heard.append((operation, container)))
    doc_id = uid("m")
    store.create(MACHINES, {"id": doc_id})
    store.read(MACHINES, doc_id, doc_id)
    store.read(MACHINES, "missing", "missing")
    store.query(MACHINES, Query(equals={"id": doc_id}), partition_key=doc_id)
    assert store.counter.snapshot() == {"create:machines": 1, "read:machines": 2, "query:machines": 1}
    assert heard == [
        ("create", "machines"),
        ("read", "machines"),
        ("read", "machines"),
        ("query", "machines"),
    ]
    if isinstance(store, CosmosDocumentStore):
        assert store.counter.request_units >= 0


# -- repositories over Cosmos -----------------------------------------------------------------------------


@pytest.fixture
def repos(database: DatabaseProxy) -> Repositories:
    return Repositories(CosmosDocumentStore(database))


def test_typed_round_trip_and_stale_save(repos: Repositories) -> None:
    stored = repos.machines.add(machine(uid("vm")))
    first = repos.machines.require(stored.item.id)
    second = repos.machines.require(stored.item.id)
    first.item.health = Health.WARNING
    repos.machines.save(first)
    second.item.health = Health.CRITICAL
    with pytest.raises(ConcurrencyConflict):
        repos.machines.save(second)
    assert repos.machines.require(stored.item.id).item.health is Health.WARNING


def test_update_with_retry_under_two_concurrent_writers_keeps_both(repos: Repositories) -> None:
    machine_id = repos.machines.add(machine(uid("vm"))).item.id
    per_writer = 4
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            start.wait()
            for i in range(per_writer):

                def add_point(m: Machine, point_id: str = f"{name}-{i}", offset: int = i) -> None:
                    m.replication.recovery_points.append(
                        RecoveryPoint(
                            id=point_id,
                            cycle_id=point_id,
                            time=NOW + timedelta(seconds=offset),
                            consistency=Consistency.CRASH,
                            disk_snapshots={"sda": point_id},
                        )
                    )

                repos.machines.update_with_retry(machine_id, add_point, attempts=20)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    repos.counter.reset()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ops = repos.counter.snapshot()
    # Every lost race (a 412) cost one extra read and one extra replace, and nothing else.
    assert ops["read:machines"] == ops["replace:machines"] >= 2 * per_writer
    points = {p.id for p in repos.machines.require(machine_id).item.replication.recovery_points}
    assert points == {f"{name}-{i}" for name in ("a", "b") for i in range(per_writer)}


def test_update_with_retry_reapplies_after_a_412(repos: Repositories) -> None:
    """Deterministic interleaving: another writer saves between our read and our replace."""
    machine_id = repos.machines.add(machine(uid("vm"))).item.id
    attempts: list[int] = []

    def ours(m: Machine) -> None:
        attempts.append(1)
        if len(attempts) == 1:

            def theirs(other: Machine) -> None:
                other.replication.progress_percent = 42.0

            repos.machines.update_with_retry(machine_id, theirs)
        m.health = Health.WARNING

    repos.counter.reset()
    stored, _ = repos.machines.update_with_retry(machine_id, ours)
    assert len(attempts) == 2
    assert stored.item.health is Health.WARNING and stored.item.replication.progress_percent == 42.0
    assert repos.counter.snapshot() == {"read:machines": 3, "replace:machines": 3}


def test_events_newest_first_in_one_query(repos: Repositories) -> None:
    machine_id = uid("vm")
    for minutes in (5, 1, 3):
        repos.events.put(
            Event(
                id=f"ev-{minutes}",
                machine_id=machine_id,
                time=NOW + timedelta(minutes=minutes),
                type="Replication cycle failed",
                severity=Severity.WARNING,
                message="x",
            )
        )
    repos.counter.reset()
    events = repos.events.query(Query(order_by="time", descending=True), partition_key=machine_id)
    assert [e.id for e in events] == ["ev-5", "ev-3", "ev-1"]
    assert repos.counter.total == 1


@pytest.fixture(scope="module", autouse=True)
def _drop_database(cosmos_client: CosmosClient, database: DatabaseProxy) -> Iterator[None]:
    yield
    cosmos_client.delete_database(database.id)


def test_a_membership_filter_matches_any_of_its_values(store: DocumentStore) -> None:
    """`within` (SQL `IN`): one query for many ids, on the emulator as in memory; an empty list matches
    nothing."""
    tag = uid("in")
    for n in range(4):
        store.create(MACHINES, {"id": f"{tag}-{n}", "tag": tag, "n": n})
    wanted = [f"{tag}-1", f"{tag}-3", f"{tag}-absent"]
    found = store.query(MACHINES, Query(equals={"tag": tag}, within={"id": wanted}), partition_key=None)
    assert sorted(d.body["id"] for d in found) == [f"{tag}-1", f"{tag}-3"]
    assert store.query(MACHINES, Query(equals={"tag": tag}, within={"id": []}), partition_key=None) == []


def test_membership_values_are_parameters() -> None:
    sql, params = build_query(
        Query(equals={"kind": "agent"}, within={"machineId": ["m-1", "x') OR 1=1 --"]}), None, None
    )
    assert sql == "SELECT * FROM c WHERE c.kind = @p0 AND c.machineId IN (@p1, @p2)"
    assert [p["value"] for p in params] == ["agent", "m-1", "x') OR 1=1 --"]
    with pytest.raises(ValueError, match="not a queryable field"):
        Query(within={"id) OR (1": ["a"]})
