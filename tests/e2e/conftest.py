"""End-to-end fixtures: the whole local stack on free ports, an operator and appliances acting through
the HTTP API, the Event Grid topic and the cache storage account, as real users would."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.blob import ContainerClient

from appliance.control_plane import ApplianceApi, ApplianceEvents
from appliance.replicator import Flavour, MachineReplicator, SourceDisk
from appliance.upload import UploadDestination
from devhost.local_appliance import LocalAppliance, StackStorage, register_local_appliance, stack_storage
from devhost.oidc import ADMINISTRATOR_CLIENT
from devhost.stack import LocalStack, StackPorts
from devhost.waiting import wait_until
from shared.replication.replica_disks import replica_blob_name
from tests.support.telemetry import METRIC_EXPORT_ENV

pytestmark = pytest.mark.e2e


@contextmanager
def e2e_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A whole local stack on free ports, as this package's tests run it."""
    ports = StackPorts.free()
    stack = LocalStack(
        ports,
        data_dir=tmp_path_factory.mktemp("stack"),
        host_env={
            "DEVHOST_EVENTGRID_RETRY_SCHEDULE": "0.5,1,2,4",
            "DEVHOST_LOG_LEVEL": "INFO",
            # A copy of a few MiB takes about a second here: record its progress often enough to see it move.
            "COPY_PROGRESS_INTERVAL_SECONDS": "0.05",
            **METRIC_EXPORT_ENV,
        },
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="package")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with e2e_stack(tmp_path_factory) as stack:
        yield stack


@dataclass
class Operator:
    stack: LocalStack

    @property
    def function_key(self) -> str:
        keys: dict[str, Any] = json.loads((self.stack.data_dir / "host" / "keys.json").read_text())
        return str(keys["function_default"])

    def headers(self, client_id: str = ADMINISTRATOR_CLIENT) -> dict[str, str]:
        """The function key and a bearer token of the local issuer's client `client_id` (one per role)."""
        return {
            "x-functions-key": self.function_key,
            "Authorization": f"Bearer {self.stack.operator_token(client_id)}",
        }

    def call(
        self, method: str, path: str, *, as_client: str = ADMINISTRATOR_CLIENT, **kwargs: Any
    ) -> httpx.Response:
        headers = {**self.headers(as_client), **kwargs.pop("headers", {})}
        return httpx.request(
            method, f"{self.stack.functions_url}/api{path}", headers=headers, timeout=30, **kwargs
        )

    def machine(self, machine_id: str) -> dict[str, Any]:
        response = self.call("GET", f"/machines/{machine_id}")
        assert response.status_code == 200, response.text
        machine: dict[str, Any] = response.json()
        return machine

    def events(self, machine_id: str) -> list[dict[str, Any]]:
        response = self.call("GET", f"/machines/{machine_id}/events")
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    def enable_replication(self, machine_id: str) -> dict[str, Any]:
        target = {
            "resourceGroup": "rg-target",
            "virtualNetwork": "vnet-target",
            "subnet": "default",
            "vmSize": "Standard_D2s_v3",
        }
        response = self.call("PUT", f"/machines/{machine_id}/replication", json=target)
        assert response.status_code == 202, response.text
        job_id = response.json()["jobId"]
        job = wait_for(lambda: self._finished_job(job_id), what=f"job {job_id}")
        assert job["status"] == "Succeeded", job
        return job

    def _finished_job(self, job_id: str) -> dict[str, Any] | None:
        job: dict[str, Any] = self.call("GET", f"/jobs/{job_id}").json()
        return job if job["status"] not in ("NotStarted", "InProgress") else None

    def applied_cycles(self, machine_id: str) -> list[str]:
        return [p["cycleId"] for p in self.machine(machine_id)["recoveryPointList"]]

    def wait_applied(self, machine_id: str, cycle_id: str, timeout: float = 60) -> dict[str, Any]:
        def applied() -> dict[str, Any] | None:
            machine = self.machine(machine_id)
            return machine if cycle_id in [p["cycleId"] for p in machine["recoveryPointList"]] else None

        return wait_for(applied, timeout=timeout, what=f"cycle {cycle_id} applied on {machine_id}")


@pytest.fixture(scope="package")
def operator(local_stack: LocalStack) -> Operator:
    return Operator(local_stack)


@dataclass
class Appliance:
    api: ApplianceApi
    events: ApplianceEvents
    # The appliance writes only through the API's write-only SAS; `cache` and `replicas` are the test's
    # own (key-holding) view of the stack's storage, to damage uploads and check replicas.
    uploads: UploadDestination
    cache: ContainerClient
    replicas: ContainerClient
    workdir: Path
    credential: str = ""  # the appliance's own credential, as registration returned it

    def machine(
        self,
        operator: Operator,
        *,
        disks: dict[str, int],
        flavour: Flavour = "vmware",
        enable: bool = True,
        seed: int = 0,
    ) -> MachineReplicator:
        """A source machine of raw images with random data, reported and (by default) replicating."""
        machine_id = f"vm-{uuid.uuid4().hex[:10]}"
        sources = []
        rng = _Random(seed)
        for index, (disk_id, size) in enumerate(disks.items()):
            path = self.workdir / f"{machine_id}-{disk_id}.img"
            with path.open("wb") as image:
                image.truncate(size)
                # Data in the first half, zeros after: the initial copy must skip and clear zeros.
                image.write(rng.bytes(size // 2 // 512 * 512))
            sources.append(SourceDisk(disk_id=disk_id, path=path, is_os_disk=index == 0))
        replicator = MachineReplicator(machine_id, sources, self.uploads, self.events, flavour=flavour)
        self.api.report_machines(
            [replicator.inventory(os_type="linux", os_name="Ubuntu", os_version="22.04")]
        )
        if enable:
            operator.enable_replication(machine_id)
        return replicator

    def replica_bytes(self, machine_id: str, disk_id: str, size: int) -> bytes:
        blob = self.replicas.get_blob_client(replica_blob_name(machine_id, disk_id))
        return blob.download_blob(offset=0, length=size).readall()

    def replica_size(self, machine_id: str, disk_id: str) -> int:
        return int(
            self.replicas.get_blob_client(replica_blob_name(machine_id, disk_id)).get_blob_properties().size
        )


def appliance_of(local: LocalAppliance, storage: StackStorage, workdir: Path) -> Appliance:
    return Appliance(
        api=local.api,
        events=local.events,
        uploads=local.uploads,
        cache=storage.cache,
        replicas=storage.replicas,
        workdir=workdir,
        credential=local.registration.credential,
    )


class _Random:
    def __init__(self, seed: int) -> None:
        import random

        self._rng = random.Random(seed)

    def bytes(self, n: int) -> bytes:
        return self._rng.randbytes(n)


@pytest.fixture
def new_appliance(local_stack: LocalStack, operator: Operator, tmp_path: Path) -> Callable[[], Appliance]:
    def make() -> Appliance:
        local = register_local_appliance(local_stack, name=f"appliance-{uuid.uuid4().hex[:6]}")
        workdir = tmp_path / local.registration.appliance_id
        workdir.mkdir()
        return appliance_of(local, stack_storage(local_stack), workdir)

    return make


wait_for = partial(wait_until, timeout=60.0, interval=0.2)
