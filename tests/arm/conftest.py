"""The local ARM endpoint as a subprocess (latency scale 0), and real azure-mgmt clients pointed at it."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient, ContainerClient

from devhost.arm import LOCAL_SUBSCRIPTION_ID, start_local_arm
from devhost.emulators import AZURITE_ACCOUNT, EmulatorEndpoints
from devhost.processes import ManagedProcess, free_port
from shared.migration.tags import Purpose, ResourceTags
from shared.platform.arm_clients import ArmClients, build_arm_clients
from shared.platform.settings import Settings

TOKEN = "local-arm-test-token"
# Import names the storage account of its sourceUri; Azurite's account stands in for it.
STORAGE_ACCOUNT_ID = (
    "/subscriptions/00000000-0000-0000-0000-00000000a2a2/resourceGroups/rg-storage/providers/"
    f"Microsoft.Storage/storageAccounts/{AZURITE_ACCOUNT}"
)
LOCATION = "westeurope"
IS_ROOT = os.geteuid() == 0


class RecordingTransport(RequestsTransport):
    """Records every wait the SDK asks for (Retry-After or polling interval) and really waits."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sleeps: list[float] = []

    def sleep(self, duration: float) -> None:
        self.sleeps.append(duration)
        time.sleep(duration)


class LocalArmEndpoint:
    def __init__(self, process: ManagedProcess, port: int, data_dir: Path, log_dir: Path) -> None:
        self.process = process
        self.port = port
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.url = f"http://127.0.0.1:{port}"
        self.admin = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    def add_fault(self, rule: dict[str, Any]) -> None:
        self.admin.post("/_admin/faults", json=rule).raise_for_status()

    def faults(self) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = self.admin.get("/_admin/faults").json()["value"]
        return value

    def set_latency(self, config: dict[str, Any]) -> None:
        self.admin.put("/_admin/latency", json=config).raise_for_status()

    def reset(self) -> None:
        self.admin.delete("/_admin/faults").raise_for_status()
        self.set_latency({"scale": 0})
        self.admin.put("/_admin/quota", json={"cores": None}).raise_for_status()


@pytest.fixture(scope="session")
def local_arm(
    emulators: EmulatorEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalArmEndpoint]:
    root = tmp_path_factory.mktemp("local-arm")
    port = free_port()
    process = start_local_arm(
        root / "data",
        port,
        emulators.storage_connection_string,
        root / "logs",
        token=TOKEN,
        latency_scale=0,
        disk_exposure="loop" if IS_ROOT else "file",
    )
    endpoint = LocalArmEndpoint(process, port, root / "data", root / "logs")
    try:
        yield endpoint
    finally:
        process.stop()


@pytest.fixture(autouse=True)
def _clean_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "local_arm" in request.fixturenames:
        request.getfixturevalue("local_arm").reset()


def arm_settings(endpoint_url: str, *, polling_interval: str = "0", **extra: str) -> Settings:
    return Settings.from_environ(
        {
            "COSMOS_ENDPOINT": "https://127.0.0.1:1/",
            "EVENTGRID_TOPIC_ENDPOINT": "http://127.0.0.1:1/api/events",
            "APPLIANCE_CREDENTIAL_PEPPER": "test",
            "CACHE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
            "REPLICA_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
            "AZURE_SUBSCRIPTION_ID": LOCAL_SUBSCRIPTION_ID,
            "ARM_ENDPOINT": endpoint_url,
            "ARM_STATIC_TOKEN": TOKEN,
            "ARM_POLLING_INTERVAL_SECONDS": polling_interval,
            **extra,
        }
    )


@pytest.fixture()
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture()
def clients(local_arm: LocalArmEndpoint, transport: RecordingTransport) -> Iterator[ArmClients]:
    with build_arm_clients(arm_settings(local_arm.url), transport=transport) as built:
        yield built


@pytest.fixture()
def impatient(local_arm: LocalArmEndpoint) -> Iterator[ArmClients]:
    """Clients with no retry budget: a busy or throttled answer comes back as the typed error at once."""
    with build_arm_clients(arm_settings(local_arm.url, ARM_RETRY_BUDGET_SECONDS="0")) as built:
        yield built


@pytest.fixture()
def resource_group(clients: ArmClients) -> str:
    name = f"rg-{uuid.uuid4().hex[:8]}"
    clients.resources.resource_groups.create_or_update(name, {"location": LOCATION})
    return name


def make_tags(
    purpose: Purpose = Purpose.TEMPORARY,
    *,
    job_id: str | None = None,
    created_at: datetime | None = None,
    machine_id: str = "machine-1",
) -> ResourceTags:
    return ResourceTags(
        machine_id=machine_id,
        job_id=job_id or f"job-{uuid.uuid4().hex[:8]}",
        purpose=purpose,
        created_at=created_at or datetime.now(UTC),
    )


@pytest.fixture()
def tags() -> ResourceTags:
    return make_tags()


@pytest.fixture()
def container(emulators: EmulatorEndpoints) -> ContainerClient:
    service = BlobServiceClient.from_connection_string(emulators.storage_connection_string)
    client = service.get_container_client(f"arm-{uuid.uuid4().hex[:8]}")
    client.create_container()
    return client
