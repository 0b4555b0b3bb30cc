"""cosmosdb-server through devhost/cosmos_server.js: what was acknowledged survives kill -9, documents
come back as they were (ETags included), a torn last line is dropped, the journal is compacted."""

from __future__ import annotations

import http.client
import json
import ssl
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey
from azure.cosmos.exceptions import CosmosAccessConditionFailedError, CosmosResourceNotFoundError

from devhost.emulators import COSMOS_EMULATOR_KEY, EmulatorPorts, start_cosmos
from devhost.processes import ManagedProcess, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _self_signed() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
        yield


def _container(port: int) -> ContainerProxy:
    client = CosmosClient(f"https://127.0.0.1:{port}/", COSMOS_EMULATOR_KEY, connection_verify=False)
    database = client.create_database_if_not_exists("migration")
    return database.create_container_if_not_exists("machines", PartitionKey("/id"))


def _ids(container: ContainerProxy) -> dict[str, int]:
    return {
        i["id"]: i["v"] for i in container.query_items("SELECT * FROM c", enable_cross_partition_query=True)
    }


def test_acknowledged_writes_survive_a_kill_and_come_back_as_they_were(tmp_path: Path) -> None:
    port, journal = free_port(), tmp_path / "cosmos" / "journal.jsonl"

    def start() -> ManagedProcess:
        return start_cosmos(EmulatorPorts(cosmos=port), tmp_path / "logs", journal=journal)

    first = start()
    try:
        machines = _container(port)
        for n in range(3):
            machines.upsert_item({"id": f"vm-{n}", "v": n})
        machines.delete_item("vm-1", partition_key="vm-1")
        machines.replace_item("vm-2", {"id": "vm-2", "v": 20})
        kept = machines.read_item("vm-2", partition_key="vm-2")
    finally:
        first.kill()  # SIGKILL: nothing is flushed at exit
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    with journal.open("a") as torn:
        torn.write('{"op": "set", "kind": "docs", "path": ["migration", "mach')  # a kill mid-write

    again = start()
    try:
        machines = _container(port)
        assert _ids(machines) == {"vm-0": 0, "vm-2": 20}
        restored = machines.read_item("vm-2", partition_key="vm-2")
        assert {k: restored[k] for k in ("_etag", "_rid", "_ts")} == {
            k: kept[k] for k in ("_etag", "_rid", "_ts")
        }
        # An If-Match taken before the restart still holds, once; then it is stale.
        machines.replace_item(
            "vm-2", {"id": "vm-2", "v": 21}, etag=kept["_etag"], match_condition=MatchConditions.IfNotModified
        )
        with pytest.raises(CosmosAccessConditionFailedError):
            machines.replace_item(
                "vm-2",
                {"id": "vm-2", "v": 22},
                etag=kept["_etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        machines.upsert_item({"id": "vm-3", "v": 3})  # new documents get fresh ids after the replay
        assert _ids(machines) == {"vm-0": 0, "vm-2": 21, "vm-3": 3}
    finally:
        again.stop()
    log = (tmp_path / "logs" / "cosmosdb-server.log").read_text()
    assert "is torn" in log

    # Compacted at the last start: one line per live resource (database, container, two documents),
    # then what that run appended.
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [(e["op"], e["kind"]) for e in lines[:4]] == [
        ("set", "dbs"),
        ("set", "colls"),
        ("set", "docs"),
        ("set", "docs"),
    ]
    third = start()
    try:
        assert _ids(_container(port)) == {"vm-0": 0, "vm-2": 21, "vm-3": 3}
    finally:
        third.stop()


@pytest.mark.parametrize("journaled", [True, False], ids=["journal", "in-memory"])
def test_a_missing_document_is_a_404_as_in_cosmos(tmp_path: Path, journaled: bool) -> None:
    """cosmosdb-server alone answers 500 (a TypeError), which the SDK retries for about a second."""
    port = free_port()
    journal = tmp_path / "journal.jsonl" if journaled else None
    process = start_cosmos(EmulatorPorts(cosmos=port), tmp_path / "logs", journal=journal)
    try:
        machines = _container(port)
        machines.upsert_item({"id": "vm-1", "v": 1})
        for doc_id, partition in (("vm-2", "vm-2"), ("vm-1", "vm-other")):
            with pytest.raises(CosmosResourceNotFoundError) as missing:
                machines.read_item(doc_id, partition_key=partition)
            assert missing.value.status_code == 404
        assert machines.read_item("vm-1", partition_key="vm-1")["v"] == 1
    finally:
        process.kill()
    assert journal is None or journal.exists()


def test_the_emulator_keeps_connections_open_between_requests(tmp_path: Path) -> None:
    """One TLS connection serves many SDK calls, as Cosmos in Azure does: with "connection: close" every
    round-trip cost the Functions host a handshake and a CA-bundle load, its main cost at fleet scale."""
    port = free_port()
    process = start_cosmos(EmulatorPorts(cosmos=port), tmp_path / "logs", journal=tmp_path / "journal.jsonl")
    try:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=ssl._create_unverified_context())
        sockets = []
        for _ in range(3):
            connection.request("GET", "/")  # the account: no key needed
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert response.getheader("connection") == "keep-alive"
            sockets.append(connection.sock)
        assert sockets[0] is not None and all(s is sockets[0] for s in sockets)
        connection.close()
    finally:
        process.stop()
