"""A minimal appliance, written from docs/appliance-guide.md alone: it replicates one raw disk image.

Needs only httpx, azure-storage-blob and azure-eventgrid. tests/e2e/test_minimal_appliance.py runs it
against the local stack and checks the replica equals the image byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from azure.storage.blob import BlobClient

EXTENT = 4 * 1024 * 1024  # extents are at most 4 MiB


class Appliance:
    def __init__(self, api_url: str, function_key: str, appliance_id: str, credential: str) -> None:
        self.id = appliance_id
        self.http = httpx.Client(
            base_url=f"{api_url}/api",
            timeout=30,
            headers={"x-functions-key": function_key, "Authorization": f"Bearer {credential}"},
        )

    def call(self, method: str, path: str, body: Any = None) -> Any:
        for _ in range(6):  # 408, 429 and 5xx are worth retrying, after the Retry-After the API names
            response = self.http.request(method, path, json=body)
            if response.status_code in (408, 429) or response.status_code >= 500:
                time.sleep(min(float(response.headers.get("Retry-After", "2")), 60))
                continue
            response.raise_for_status()  # any other 4xx: the body's error.message says what to fix
            return response.json() if response.content else None
        response.raise_for_status()

    def report(self, machine_id: str, image: Path) -> None:
        disk = {"id": "disk0", "sizeBytes": image.stat().st_size, "isOsDisk": True}
        machine = {"id": machine_id, "displayName": machine_id, "osType": "linux", "osName": "Ubuntu",
                   "osVersion": "22.04", "firmware": "BIOS", "disks": [disk]}  # fmt: skip
        self.call("POST", f"/appliances/{self.id}/machines", {"machines": [machine]})

    def upload_full_cycle(
        self, machine_id: str, cycle_id: str, sequence: int, kind: str, image: Path
    ) -> dict[str, str]:
        data, extents, blob_bytes = image.read_bytes(), [], bytearray()
        prefix = f"{machine_id}/{cycle_id}/disk0/"
        for offset in range(0, len(data), EXTENT):
            chunk = data[offset : offset + EXTENT]
            if chunk.count(0) == len(chunk):
                continue  # a full copy skips zeros: bytes outside every extent are zero
            extents.append({"offset": offset, "length": len(chunk), "blob": prefix + "data-00000.bin",
                            "blobOffset": len(blob_bytes), "sha256": hashlib.sha256(chunk).hexdigest()})  # fmt: skip
            blob_bytes += chunk
        manifest = {"formatVersion": 1, "machineId": machine_id, "diskId": "disk0", "cycleId": cycle_id,
                    "sequence": sequence, "kind": kind, "diskSize": len(data), "sectorSize": 512,
                    "extents": extents}  # fmt: skip
        names = [prefix + "data-00000.bin", prefix + "manifest.json"]
        sas = self.call("POST", f"/appliances/{self.id}/upload-credentials",
                        {"machineId": machine_id, "cycleId": cycle_id, "blobs": names})["blobs"]  # fmt: skip
        BlobClient.from_blob_url(sas[names[0]]).upload_blob(bytes(blob_bytes), overwrite=True)
        BlobClient.from_blob_url(sas[names[1]]).upload_blob(json.dumps(manifest), overwrite=True)  # last
        return {"disk0": names[1]}

    def run_commands(self, topic: EventGridPublisherClient, machine_id: str, image: Path) -> list[str]:
        """Carry out this machine's pending commands; returns the cycle ids uploaded."""
        cycles = []
        for command in self.call("GET", f"/appliances/{self.id}/commands")["commands"]:
            if command["machineId"] == machine_id and command["kind"] in ("RunCycle", "ResyncDisk"):
                # No change tracking here: every cycle is a whole-disk copy ("initial", else "resync"),
                # which applies whatever the last sequence was; deltas would need consecutive numbers.
                kind = "initial" if command.get("cycleKind") == "initial" else "resync"
                sequence = int(time.time())  # increasing, even across restarts
                cycle_id = f"{machine_id}-{sequence}"
                manifests = self.upload_full_cycle(machine_id, cycle_id, sequence, kind, image)
                data = {"applianceId": self.id, "machineId": machine_id, "cycleId": cycle_id,
                        "sequence": sequence, "kind": kind, "appConsistent": False, "manifests": manifests}  # fmt: skip
                topic.send(EventGridEvent(subject=f"machines/{machine_id}", data=data, data_version="1.0",
                                          event_type="Migrate.Replication.CycleUploaded"))  # fmt: skip
                cycles.append(cycle_id)
            self.call("POST", f"/appliances/{self.id}/commands/{command['id']}/ack")
        return cycles


def register(api_url: str, function_key: str, operator_token: str, name: str) -> tuple[str, str]:
    """An administrator registers the appliance once (`operator_token`: an Entra ID access token with the
    Migration.Administrator role); the credential is shown only in this answer."""
    response = httpx.post(f"{api_url}/api/appliances", json={"name": name, "kind": "vmware", "site": "site-1"},
                          headers={"x-functions-key": function_key, "Authorization": f"Bearer {operator_token}"},
                          timeout=30)  # fmt: skip
    response.raise_for_status()
    return response.json()["id"], response.json()["credential"]


def topic_client(endpoint: str, credential: AzureKeyCredential | TokenCredential) -> EventGridPublisherClient:
    """In Azure: the appliance's own service principal (e.g. a CertificateCredential); locally: the key."""
    return EventGridPublisherClient(endpoint, credential)
