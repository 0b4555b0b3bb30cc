"""A small appliance-and-operator client for the health tests, over the same protocols the product uses:
HTTP with function keys (operator) and the appliance credential, blobs in the cache account written by
the real appliance uploader, and Event Grid events published with `EventGridPublisherClient`.

tests/e2e's lead is writing the general appliance client; this one carries only what the health paths
need (cycle start/failure events, faults on the cache account) and can be folded into it later.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from azure.core.credentials import AzureKeyCredential
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from azure.storage.blob import BlobServiceClient, ContainerClient

from appliance import CycleUpload, DiskCycle, upload_cycle
from devhost.stack import LocalStack
from devhost.waiting import wait_until
from shared.appliances.events import CYCLE_FAILED, CYCLE_STARTED, CYCLE_UPLOADED, HEARTBEAT
from shared.domain.cycle import CycleKind
from shared.platform.storage import CACHE_CONTAINER

MIB = 1024 * 1024
DISK_SIZE = 4 * MIB

TARGET: dict[str, Any] = {
    "resourceGroup": "rg-target",
    "virtualNetwork": "vnet-prod",
    "subnet": "app",
    "vmSize": "Standard_D4s_v3",
}


class MemoryDisk:
    """A point-in-time disk image in memory (the uploader's BlockSource)."""

    def __init__(self, size: int, seed: int) -> None:
        self.data = bytearray(size)
        self.write(0, bytes([seed % 251 + 1]) * (64 * 1024))

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.data[offset : offset + length])

    def write(self, offset: int, data: bytes) -> None:
        self.data[offset : offset + len(data)] = data


# The timeout only bounds a hung test; it asserts nothing about speed.
eventually = partial(wait_until, timeout=120.0, interval=0.25)


@dataclass
class Stack:
    """What the tests need from a running LocalStack."""

    local: LocalStack
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.local.functions_url, timeout=30)

    @property
    def keys(self) -> dict[str, str]:
        return json.loads(Path(self.local.data_dir / "host" / "keys.json").read_text())  # type: ignore[no-any-return]

    @property
    def operator_headers(self) -> dict[str, str]:
        return {
            "x-functions-key": self.keys["function_default"],
            "Authorization": f"Bearer {self.local.operator_token()}",
        }

    def cache(self) -> ContainerClient:
        service = BlobServiceClient.from_connection_string(
            self.local.settings["CACHE_STORAGE_CONNECTION_STRING"]
        )
        return service.get_container_client(CACHE_CONTAINER)

    def publisher(self) -> EventGridPublisherClient:
        settings = self.local.settings
        return EventGridPublisherClient(
            settings["EVENTGRID_TOPIC_ENDPOINT"], AzureKeyCredential(settings["EVENTGRID_TOPIC_KEY"])
        )

    # --- operator -------------------------------------------------------------------------------
    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, headers=self.operator_headers, params=params)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return self.http.post(path, headers=self.operator_headers, json=body)

    def run_timer(self, name: str) -> httpx.Response:
        return self.http.post(
            f"/admin/functions/{name}", headers={"x-functions-key": self.keys["master"]}, json={"input": ""}
        )

    def register_appliance(self, name: str) -> Appliance:
        response = self.post("/api/appliances", {"name": name, "kind": "vmware", "site": "vcenter-e2e"})
        assert response.status_code == 201, response.text
        body = response.json()
        return Appliance(stack=self, id=body["id"], credential=body["credential"])


@dataclass
class Appliance:
    stack: Stack
    id: str
    credential: str

    def _headers(self) -> dict[str, str]:
        return {**self.stack.operator_headers, "Authorization": f"Bearer {self.credential}"}

    def report_machine(self, machine_id: str, *, disks: tuple[str, ...] = ("disk0",)) -> None:
        machine = {
            "id": machine_id,
            "displayName": machine_id[:15],
            "osType": "linux",
            "osName": "Ubuntu",
            "osVersion": "20.04",
            "firmware": "BIOS",
            "disks": [{"id": d, "sizeBytes": DISK_SIZE, "isOsDisk": i == 0} for i, d in enumerate(disks)],
        }
        response = self.stack.http.post(
            f"/api/appliances/{self.id}/machines", headers=self._headers(), json={"machines": [machine]}
        )
        assert response.status_code == 200, response.text

    def commands(self) -> list[dict[str, Any]]:
        response = self.stack.http.get(f"/api/appliances/{self.id}/commands", headers=self._headers())
        assert response.status_code == 200, response.text
        return response.json()["commands"]  # type: ignore[no-any-return]

    def acknowledge(self, command_id: str) -> None:
        response = self.stack.http.post(
            f"/api/appliances/{self.id}/commands/{command_id}/ack", headers=self._headers()
        )
        assert response.status_code == 200, response.text

    def publish(self, event_type: str, machine_id: str, data: dict[str, Any]) -> None:
        subject = f"machines/{machine_id}" if machine_id else f"appliances/{self.id}"
        self.stack.publisher().send(
            EventGridEvent(
                subject=subject,
                event_type=event_type,
                data={"applianceId": self.id, **data},
                data_version="1.0",
            )
        )

    def heartbeat(self) -> None:
        self.publish(HEARTBEAT, "", {})

    def fail_cycle(
        self,
        machine_id: str,
        message: str,
        *,
        code: str | None = None,
        disk_id: str | None = None,
        cycle_id: str | None = None,
    ) -> None:
        data: dict[str, Any] = {"machineId": machine_id, "message": message}
        if code is not None:
            data["errorCode"] = code
        if disk_id is not None:
            data["diskId"] = disk_id
        if cycle_id is not None:
            data["cycleId"] = cycle_id
        self.publish(CYCLE_FAILED, machine_id, data)

    def start_cycle(
        self,
        machine_id: str,
        cycle_id: str,
        sequence: int,
        kind: CycleKind,
        disks: dict[str, int],
        expected_seconds: int | None = None,
    ) -> None:
        data: dict[str, Any] = {
            "machineId": machine_id,
            "cycleId": cycle_id,
            "sequence": sequence,
            "kind": kind.value,
            "disks": [{"diskId": d, "expectedBytes": n} for d, n in disks.items()],
        }
        if expected_seconds is not None:
            data["expectedDurationSeconds"] = expected_seconds
        self.publish(CYCLE_STARTED, machine_id, data)

    def upload(
        self,
        machine_id: str,
        cycle_id: str,
        sequence: int,
        kind: CycleKind,
        disks: dict[str, MemoryDisk],
        *,
        announce: bool = True,
    ) -> list[str]:
        """Upload every disk's changed ranges (the whole disk for initial/resync) and post CycleUploaded."""
        whole = kind in (CycleKind.INITIAL, CycleKind.RESYNC)
        upload = CycleUpload(
            machine_id=machine_id,
            cycle_id=cycle_id,
            sequence=sequence,
            kind=kind,
            disks=[
                DiskCycle(
                    disk_id=d,
                    disk_size=src.size,
                    ranges=[(0, src.size)] if whole else [(0, 64 * 1024)],
                    source=src,
                )
                for d, src in disks.items()
            ],
        )
        manifests = upload_cycle(self.stack.cache(), upload)
        if announce:
            self.announce(machine_id, cycle_id, sequence, kind, dict(zip(disks, manifests, strict=True)))
        return manifests

    def announce(
        self, machine_id: str, cycle_id: str, sequence: int, kind: CycleKind, manifests: dict[str, str]
    ) -> None:
        self.publish(
            CYCLE_UPLOADED,
            machine_id,
            {
                "machineId": machine_id,
                "cycleId": cycle_id,
                "sequence": sequence,
                "kind": kind.value,
                "appConsistent": False,
                "manifests": manifests,
            },
        )


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- scenario helpers -------------------------------------------------------------------------------------


def machine(stack: Stack, machine_id: str) -> dict[str, Any]:
    response = stack.get(f"/api/machines/{machine_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def events(stack: Stack, machine_id: str) -> list[dict[str, Any]]:
    """Every event of the machine, newest first, following the continuation token."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if token:
            params["continuationToken"] = token
        response = stack.get(f"/api/machines/{machine_id}/events", **params)
        assert response.status_code == 200, response.text
        body = response.json()
        found += body["events"]
        token = body.get("continuationToken")
        if not token:
            return found


def wait_machine(
    stack: Stack, machine_id: str, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 120.0
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        body = machine(stack, machine_id)
        return body if check(body) else None

    return eventually(probe, what=f"{machine_id}: {what}", timeout=timeout)


def wait_event(
    stack: Stack, machine_id: str, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 120.0
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        return next((e for e in events(stack, machine_id) if check(e)), None)

    return eventually(probe, what=f"{machine_id}: event {what}", timeout=timeout)


def wait_cycle_in_progress(stack: Stack, machine_id: str, cycle_id: str) -> dict[str, Any]:
    """Until the machine shows the announced cycle (CycleStarted recorded its upload deadline)."""

    def probe() -> dict[str, Any] | None:
        current = machine(stack, machine_id).get("cycleInProgress")
        return current if current is not None and current["cycleId"] == cycle_id else None

    return eventually(probe, what=f"{machine_id}: cycle {cycle_id} in progress")


@dataclass
class Replicated:
    id: str
    disks: dict[str, MemoryDisk]
    next_sequence: int = 2

    def cycle_id(self, sequence: int) -> str:
        return f"{self.id}-c{sequence}"


def replicating_machine(
    stack: Stack,
    appliance: Appliance,
    *,
    disks: tuple[str, ...] = ("disk0",),
    auto_repair: bool = False,
    prefix: str = "vm",
) -> Replicated:
    """A machine reported, enabled and through its initial copy (Replicating, one recovery point)."""
    machine_id = new_id(prefix)
    appliance.report_machine(machine_id, disks=disks)
    response = stack.http.put(
        f"/api/machines/{machine_id}/replication",
        headers=stack.operator_headers,
        json={**TARGET, "autoRepairReplication": auto_repair},
    )
    assert response.status_code == 202, response.text
    wait_machine(stack, machine_id, "InitialReplication", lambda m: m["state"] == "InitialReplication")
    sources = {d: MemoryDisk(DISK_SIZE, i + 1) for i, d in enumerate(disks)}
    replicated = Replicated(machine_id, sources)
    appliance.upload(machine_id, replicated.cycle_id(1), 1, CycleKind.INITIAL, sources)
    wait_machine(
        stack,
        machine_id,
        "Replicating after the initial copy",
        lambda m: m["state"] == "Replicating" and m["recoveryPoints"]["count"] == 1,
    )
    return replicated


def apply_delta(
    stack: Stack, appliance: Appliance, replicated: Replicated, *, kind: CycleKind = CycleKind.DELTA
) -> int:
    """Upload the next cycle and wait until it is in the replica; returns its sequence."""
    sequence = replicated.next_sequence
    replicated.next_sequence += 1
    for source in replicated.disks.values():
        source.write(0, bytes([sequence % 251]) * 4096)
    appliance.upload(replicated.id, replicated.cycle_id(sequence), sequence, kind, replicated.disks)
    wait_machine(
        stack,
        replicated.id,
        f"cycle {sequence} applied",
        lambda m: any(p["cycleId"] == replicated.cycle_id(sequence) for p in m["recoveryPointList"]),
    )
    return sequence
