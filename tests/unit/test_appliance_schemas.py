"""The committed schemas in docs/schemas/ are the appliance contract: generated from the models the
control plane validates with, accepted by what the code really sends, and as strict as the models."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema_rs
import pytest
from azure.core.credentials import AzureKeyCredential

from appliance.control_plane import ApplianceEvents
from shared.appliances.commands import pending_commands, queue_command
from shared.appliances.events import ENVELOPES, parse_appliance_event
from shared.domain.api import CommandList
from shared.domain.command import ApplianceCommand, CommandKind
from shared.domain.errors import DomainError
from shared.domain.inventory import DiscoveryReport
from shared.domain.machine import Machine
from shared.platform.repository import Repositories
from tests.support.memory_store import InMemoryDocumentStore

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "schemas"
NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("schema_generator", SCHEMAS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def committed(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return loaded


def validator(name: str) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(committed(name), validate_formats=True)


EVENT_SCHEMAS = {
    "Migrate.Appliance.Heartbeat": "event-heartbeat.schema.json",
    "Migrate.Replication.CycleStarted": "event-cycle-started.schema.json",
    "Migrate.Replication.CycleUploaded": "event-cycle-uploaded.schema.json",
    "Migrate.Replication.CycleFailed": "event-cycle-failed.schema.json",
}


# --- generated, committed, complete --------------------------------------------------------------


def test_every_committed_schema_is_generated_and_none_is_stale() -> None:
    generator = _generator()
    on_disk = {p.name for p in SCHEMAS.glob("*.json")}
    assert on_disk == set(generator.SCHEMAS), "a schema file without a generator entry, or one not written"
    for name, build in generator.SCHEMAS.items():
        assert (SCHEMAS / name).read_text() == generator.render(build), (
            f"{name} is stale; run: .venv/bin/python docs/schemas/generate.py"
        )


def test_the_check_names_the_stale_file_and_the_command(tmp_path: Path) -> None:
    copy_dir = tmp_path / "schemas"
    copy_dir.mkdir()
    (copy_dir / "generate.py").write_text(
        (SCHEMAS / "generate.py")
        .read_text()
        .replace("ROOT = Path(__file__).resolve().parents[2]", f"ROOT = Path({str(ROOT)!r})")
    )
    for path in SCHEMAS.glob("*.json"):
        (copy_dir / path.name).write_text(path.read_text())
    stale = copy_dir / "event-cycle-uploaded.schema.json"
    stale.write_text(stale.read_text().replace('"manifests"', '"manifest"'))
    result = subprocess.run(
        [sys.executable, str(copy_dir / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "event-cycle-uploaded.schema.json" in result.stderr
    assert ".venv/bin/python docs/schemas/generate.py" in result.stderr


def test_every_event_type_the_trigger_accepts_has_a_schema() -> None:
    assert set(ENVELOPES) == set(EVENT_SCHEMAS)
    for event_type, name in EVENT_SCHEMAS.items():
        schema = committed(name)
        assert schema["properties"]["eventType"]["const"] == event_type
        assert set(schema["required"]) >= {"id", "subject", "eventType", "eventTime", "data"}
        # The envelope's type literal is the key the trigger dispatches on.
        assert ENVELOPES[event_type].model_fields["event_type"].annotation.__args__ == (event_type,)  # type: ignore[union-attr]


# --- what the code really sends validates, a wrong one does not ----------------------------------


class _Topic(BaseHTTPRequestHandler):
    received: list[Any]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.extend(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def sent() -> Iterator[dict[str, dict[str, Any]]]:
    """Each event type as the appliance client's HTTP body carried it to a stand-in topic."""
    received: list[dict[str, Any]] = []
    handler = type("Topic", (_Topic,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield published(f"http://127.0.0.1:{server.server_address[1]}/api/events", received)
    finally:
        server.shutdown()
        server.server_close()


def published(endpoint: str, received: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    events = ApplianceEvents(endpoint, AzureKeyCredential("key"), "appliance-1")
    events.heartbeat(agent_version="2.1")
    events.cycle_started(
        machine_id="vm-1",
        cycle_id="c-7",
        sequence=7,
        kind="delta",
        disks={"disk-0": 4096, "disk-1": 0},
        expected_duration_seconds=600,
    )
    events.cycle_uploaded(
        machine_id="vm-1",
        cycle_id="c-7",
        sequence=7,
        kind="delta",
        app_consistent=True,
        manifests={"disk-0": "vm-1/c-7/disk-0/manifest.json", "disk-1": "vm-1/c-7/disk-1/manifest.json"},
    )
    events.cycle_failed(machine_id="vm-1", message="CBT was reset", error_code="MCP-1001", cycle_id="c-8")
    return {event["eventType"]: event for event in received}


def test_the_events_the_appliance_client_publishes_validate(sent: dict[str, dict[str, Any]]) -> None:
    assert set(sent) == set(EVENT_SCHEMAS)
    for event_type, event in sent.items():
        errors = [e.message for e in validator(EVENT_SCHEMAS[event_type]).iter_errors(event)]
        assert errors == [], (event_type, errors)
        parse_appliance_event(event_type, event["data"])  # and the trigger accepts the same data


# Each mutation of a valid event's data: the schema and the model must agree on whether it is valid.
MUTATIONS: dict[str, list[tuple[str, Callable[[dict[str, Any]], None]]]] = {
    "Migrate.Appliance.Heartbeat": [
        ("no appliance id", lambda d: d.pop("applianceId")),
        ("bad appliance id", lambda d: d.update(applianceId="a/b")),
        ("unknown field", lambda d: d.update(version="2")),
        ("time not a date", lambda d: d.update(time="yesterday")),
    ],
    "Migrate.Replication.CycleStarted": [
        ("no disks", lambda d: d.update(disks=[])),
        ("negative bytes", lambda d: d["disks"][0].update(expectedBytes=-1)),
        ("duration zero", lambda d: d.update(expectedDurationSeconds=0)),
        ("duration over a week", lambda d: d.update(expectedDurationSeconds=7 * 24 * 3600 + 1)),
        ("unknown kind", lambda d: d.update(kind="incremental")),
        ("unknown disk field", lambda d: d["disks"][0].update(size=1)),
    ],
    "Migrate.Replication.CycleUploaded": [
        ("manifest, not manifests", lambda d: d.update(manifest=d.pop("manifests"))),
        ("no manifests", lambda d: d.update(manifests={})),
        ("negative sequence", lambda d: d.update(sequence=-1)),
        ("sequence as text", lambda d: d.update(sequence="7")),
        ("no kind", lambda d: d.pop("kind")),
        ("no cycle id", lambda d: d.pop("cycleId")),
        ("app consistency as text", lambda d: d.update(appConsistent="yes")),
    ],
    "Migrate.Replication.CycleFailed": [
        ("no message", lambda d: d.pop("message")),
        ("empty message", lambda d: d.update(message="")),
        ("too long a message", lambda d: d.update(message="x" * 8193)),
        ("no machine id", lambda d: d.pop("machineId")),
    ],
}


@pytest.mark.parametrize(
    ("event_type", "what", "mutate"),
    [(t, what, mutate) for t, cases in MUTATIONS.items() for what, mutate in cases],
    ids=[f"{t.rsplit('.', 1)[1]}-{what}" for t, cases in MUTATIONS.items() for what, _ in cases],
)
def test_a_wrong_event_is_refused_by_the_schema_and_the_trigger_alike(
    sent: dict[str, dict[str, Any]],
    event_type: str,
    what: str,
    mutate: Callable[[dict[str, Any]], None],
) -> None:
    event = copy.deepcopy(sent[event_type])
    mutate(event["data"])
    assert not validator(EVENT_SCHEMAS[event_type]).is_valid(event), what
    # The trigger reads JSON with its own types only ("7" is not 7, "yes" is not true), as the schema.
    with pytest.raises(DomainError):
        parse_appliance_event(event_type, event["data"])


def test_the_envelope_is_checked_too(sent: dict[str, dict[str, Any]]) -> None:
    event = sent["Migrate.Replication.CycleUploaded"]
    check = validator(EVENT_SCHEMAS["Migrate.Replication.CycleUploaded"])
    assert not check.is_valid({**event, "eventType": "Migrate.Replication.CycleFailed"})
    assert not check.is_valid({k: v for k, v in event.items() if k != "eventTime"})
    assert not check.is_valid({**event, "subject": "appliances/appliance-1"})
    # What Event Grid stamps on delivery is allowed.
    assert check.is_valid(
        {**event, "topic": "/subscriptions/x/topics/appliance-events", "metadataVersion": "1"}
    )


# --- commands ------------------------------------------------------------------------------------


@pytest.fixture
def repos() -> Repositories:
    repos = Repositories(InMemoryDocumentStore())
    repos.machines.add(
        Machine.model_validate(
            {
                "id": "vm-1",
                "applianceId": "appliance-1",
                "inventory": {
                    "displayName": "web01",
                    "osType": "linux",
                    "osName": "Ubuntu",
                    "osVersion": "22.04",
                    "firmware": "BIOS",
                    "disks": [{"id": "disk-0", "sizeBytes": 1 << 30, "isOsDisk": True}],
                },
                "discoveredAt": NOW.isoformat(),
                "updatedAt": NOW.isoformat(),
            }
        )
    )
    return repos


def test_the_commands_the_control_plane_queues_validate(repos: Repositories) -> None:
    for command_id, kind, disk_id, cycle_kind in (
        ("job-1-initial", CommandKind.RUN_CYCLE, None, "initial"),
        ("c-7-disk-0-resync", CommandKind.RESYNC_DISK, "disk-0", "resync"),
        ("job-2-shutdown", CommandKind.SHUT_DOWN_SOURCE, None, None),
    ):
        queue_command(
            repos,
            command_id=command_id,
            machine_id="vm-1",
            kind=kind,
            disk_id=disk_id,
            cycle_kind=cycle_kind,
            now=NOW,
        )
    body = CommandList(commands=pending_commands(repos, "appliance-1")).to_wire()
    assert [c["kind"] for c in body["commands"]] == ["RunCycle", "ResyncDisk", "ShutDownSource"]
    assert list(validator("command-list.schema.json").iter_errors(body)) == []
    one = validator("appliance-command.schema.json")
    for command in body["commands"]:
        assert list(one.iter_errors(command)) == []

    resync = next(c for c in body["commands"] if c["kind"] == "ResyncDisk")
    for wrong in ({**resync, "diskId": None}, {**resync, "cycleKind": "full"}, {**resync, "extra": 1}):
        assert not one.is_valid(wrong)
        with pytest.raises(ValueError):
            ApplianceCommand.model_validate(wrong)


# --- the discovery report ------------------------------------------------------------------------


def test_a_discovery_report_validates_and_a_wrong_one_does_not() -> None:
    report = {
        "machines": [
            {
                "id": "vm-1",
                "displayName": "web01",
                "osType": "linux",
                "osName": "Ubuntu",
                "osVersion": "22.04",
                "firmware": "UEFI",
                "disks": [{"id": "disk-0", "sizeBytes": 1 << 30, "isOsDisk": True}],
            }
        ]
    }
    check = validator("discovery-report.schema.json")
    DiscoveryReport.model_validate(report)
    assert list(check.iter_errors(report)) == []
    wrong = copy.deepcopy(report)
    wrong["machines"][0]["disks"][0]["sizeBytes"] = "big"
    assert not check.is_valid(wrong)
    with pytest.raises(ValueError):
        DiscoveryReport.model_validate(wrong)


# --- the OpenAPI document carries the same models ------------------------------------------------


def test_openapi_lists_every_event_as_a_webhook_with_the_committed_schema() -> None:
    from functions.openapi import build_document

    document = build_document()
    # The same $defs, only referenced from components instead of from the standalone document.
    components = json.loads(
        json.dumps(document["components"]["schemas"]).replace("#/components/schemas/", "#/$defs/")
    )
    assert set(document["webhooks"]) == set(EVENT_SCHEMAS)
    for event_type, name in EVENT_SCHEMAS.items():
        body = document["webhooks"][event_type]["post"]["requestBody"]["content"]["application/json"]
        ref = body["schema"]["items"]["$ref"].rsplit("/", 1)[1]
        schema = committed(name)
        data = schema["properties"]["data"]["$ref"].rsplit("/", 1)[1]
        # Same model, same schema: the envelope's properties and the data's, here and in docs/schemas/.
        assert components[ref]["properties"]["eventType"] == schema["properties"]["eventType"]
        assert components[data]["properties"] == schema["$defs"][data]["properties"]
        assert components[data]["required"] == schema["$defs"][data]["required"]
    poll = document["paths"]["/api/appliances/{applianceId}/commands"]["get"]
    assert poll["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/CommandList")
    command = committed("appliance-command.schema.json")
    assert components["ApplianceCommand"]["then"] == command["then"]
    assert components["DeltaManifest"]["properties"] == committed("delta-manifest.schema.json")["properties"]
