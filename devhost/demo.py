"""`make demo`: the product's main scenario on the local stack.

Each step talks to the stack through the same SDKs the product uses. Later capabilities add their
steps here (replication, health, test migration, migration, failover), so the demo always shows the
product as far as it goes.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import httpx
from azure.core import MatchConditions
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.cosmos import CosmosClient, PartitionKey
from azure.cosmos.exceptions import CosmosAccessConditionFailedError
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from azure.storage.blob import BlobServiceClient
from rich.console import Console
from rich.table import Table

from devhost.demo_failback import run_failback_demo
from devhost.demo_failover import run_failover_demo
from devhost.demo_health import demo_failure_and_repair
from devhost.demo_migration import run_migration_demo
from devhost.demo_mobility import run_mobility_demo
from devhost.demo_replication import run_replication_demo
from devhost.stack import LocalStack

console = Console()
# The local Cosmos emulator's certificate is self-signed (connection_verify=False is local-only).
warnings.filterwarnings("ignore", message="Unverified HTTPS request")


class DemoStepFailed(RuntimeError):
    pass


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DemoStepFailed(message)


def step_functions_host(stack: LocalStack, settings: dict[str, str]) -> str:
    keys = json.loads(Path(str(stack.state_file.parent / "host" / "keys.json")).read_text())
    health = httpx.get(f"{stack.functions_url}/api/health", timeout=5)
    _check(health.status_code == 200, f"health answered {health.status_code}")
    status = httpx.get(f"{stack.functions_url}/admin/host/status", params={"code": keys["master"]}, timeout=5)
    _check(status.status_code == 200, "admin status refused the master key")
    unauthorized = httpx.get(f"{stack.functions_url}/admin/host/status", timeout=5).status_code
    _check(unauthorized == 401, f"admin status without a key answered {unauthorized}")
    return f"{len(status.json()['functions'])} functions loaded; admin API refuses callers without a key"


def step_blob_storage(stack: LocalStack, settings: dict[str, str]) -> str:
    service = BlobServiceClient.from_connection_string(settings["REPLICA_STORAGE_CONNECTION_STRING"])
    container = service.get_container_client("demo-health")
    if not container.exists():
        container.create_container()
    page_blob = container.get_blob_client("probe.vhd")
    page_blob.create_page_blob(size=1024 * 1024)
    page_blob.upload_page(b"\x5a" * 512, offset=4096, length=512)
    ranges = page_blob.get_page_ranges()
    _check(ranges[0] == [{"start": 4096, "end": 4607}], f"page ranges were {ranges}")
    return "page blob created, one 512-byte page written and listed back"


def step_cosmos(stack: LocalStack, settings: dict[str, str]) -> str:
    client = CosmosClient(settings["COSMOS_ENDPOINT"], settings["COSMOS_KEY"], connection_verify=False)
    container = client.create_database_if_not_exists("demo-health").create_container_if_not_exists(
        "probes", PartitionKey("/id")
    )
    item = container.upsert_item({"id": str(uuid.uuid4()), "n": 1})
    container.replace_item(
        item["id"], {**item, "n": 2}, etag=item["_etag"], match_condition=MatchConditions.IfNotModified
    )
    try:
        container.replace_item(
            item["id"], {**item, "n": 3}, etag=item["_etag"], match_condition=MatchConditions.IfNotModified
        )
        raise DemoStepFailed("a stale ETag was accepted")
    except CosmosAccessConditionFailedError:
        pass
    return "document written; a stale ETag is refused with 412"


def step_event_grid(stack: LocalStack, settings: dict[str, str]) -> str:
    secrets = json.loads((stack.data_dir / "secrets.json").read_text())
    client = EventGridPublisherClient(
        settings["EVENTGRID_TOPIC_ENDPOINT"], AzureKeyCredential(secrets["EVENTGRID_TOPIC_KEY"])
    )
    client.send(
        EventGridEvent(
            subject="appliances/demo",
            event_type="Migrate.Appliance.Heartbeat",
            data={"applianceId": "demo"},
            data_version="1.0",
        )
    )
    try:
        EventGridPublisherClient(settings["EVENTGRID_TOPIC_ENDPOINT"], AzureKeyCredential("d3Jvbmc=")).send(
            EventGridEvent(subject="s", event_type="t", data={}, data_version="1.0")
        )
        raise DemoStepFailed("the topic accepted a wrong key")
    except ClientAuthenticationError:
        pass
    return "heartbeat published with the topic key; a wrong key is refused"


STEPS: list[tuple[str, Callable[[LocalStack, dict[str, str]], str]]] = [
    ("Functions host", step_functions_host),
    ("Blob storage (Azurite)", step_blob_storage),
    ("Cosmos DB (cosmosdb-server)", step_cosmos),
    ("Event Grid topic", step_event_grid),
]


def run_demo(stack: LocalStack) -> int:
    state = json.loads(stack.state_file.read_text())
    settings: dict[str, str] = {
        **state["settings"],
        **json.loads((stack.data_dir / "secrets.json").read_text()),
    }
    table = Table(title="Local stack")
    table.add_column("step")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    failed = False
    for name, step in STEPS:
        started = time.perf_counter()
        try:
            outcome, style = step(stack, settings), "green"
        except Exception as exc:
            outcome, style, failed = f"FAILED: {exc}", "red", True
        table.add_row(name, f"[{style}]{outcome}[/{style}]", f"{time.perf_counter() - started:.2f}")
    console.print(table)
    if failed:
        return 1
    with tempfile.TemporaryDirectory(prefix="demo-disks-") as workdir:
        try:
            replication = run_replication_demo(stack, Path(workdir), console)
        except Exception as exc:
            console.print(f"[red]replication demo failed: {exc}[/]")
            return 1
        console.rule("A failure and its repair")
        try:
            demo_failure_and_repair(stack, console)
        except Exception as exc:
            console.print(f"[red]failure-and-repair demo failed: {exc}[/]")
            return 1
        console.rule("Test migration, clean-up and migration")
        try:
            run_migration_demo(stack, Path(workdir), console, replication)
        except Exception as exc:
            console.print(f"[red]migration demo failed: {exc}[/]")
            return 1
        try:
            failover = run_failover_demo(stack, Path(workdir), console, replication)
        except Exception as exc:
            console.print(f"[red]failover demo failed: {exc}[/]")
            return 1
        try:
            run_failback_demo(stack, console, failover)
        except Exception as exc:
            console.print(f"[red]reprotect demo failed: {exc}[/]")
            return 1
        console.rule("Mobility service: push installation and the agent's first cycle")
        try:
            run_mobility_demo(stack, Path(workdir), console)
        except Exception as exc:
            console.print(f"[red]Mobility demo failed: {exc}[/]")
            return 1
    console.print("[green bold]demo complete[/]")
    return 0
