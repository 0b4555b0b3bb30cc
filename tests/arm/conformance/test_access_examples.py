"""DiskRP 2025-01-02 examples: read access to disks and snapshots (beginGetAccess/endGetAccess) and
incremental snapshots, as the failback flow uses them."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient

from shared.platform.arm_clients import ArmClients
from tests.arm.conformance.spec import DISK_API, SUB, Outcome, assert_subset, example

pytestmark = pytest.mark.integration

WEST_US = "West US"
GIB = 1024**3


def _empty_disk(clients: ArmClients, rg: str, name: str, size_gb: int = 1) -> dict[str, Any]:
    body = {
        "location": WEST_US,
        "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": size_gb},
    }
    disk: dict[str, Any] = (
        clients.compute.disks.begin_create_or_update(rg, name, body, api_version=DISK_API).result().as_dict()
    )
    return disk


def _incremental(
    clients: ArmClients, rg: str, name: str, disk: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    body = {
        "location": WEST_US,
        "properties": {
            "incremental": True,
            "creationData": {"createOption": "Copy", "sourceResourceId": disk["id"]},
        },
        **extra,
    }
    snapshot: dict[str, Any] = (
        clients.compute.snapshots.begin_create_or_update(rg, name, body, api_version=DISK_API)
        .result()
        .as_dict()
    )
    return snapshot


def _denied(sas: str) -> int:
    with pytest.raises(HttpResponseError) as raised:
        BlobClient.from_blob_url(sas).download_blob(offset=0, length=512).readall()
    return int(raised.value.status_code or 0)


@example("DiskRP", "Disks_GrantAccess", "Disk_BeginGetAccess")
def test_disk_begin_get_access(clients: ArmClients, resource_group: str) -> None:
    _empty_disk(clients, resource_group, "myDisk")
    granted = clients.compute.disks.begin_grant_access(
        resource_group,
        "myDisk",
        {"access": "Read", "durationInSeconds": 300, "fileFormat": "VHD"},
        api_version=DISK_API,
    ).result()
    sas = str(granted.access_sas)
    assert "sr=b" in sas and "sig=" in sas
    blob = BlobClient.from_blob_url(sas)
    assert blob.get_blob_properties().size == GIB
    assert blob.download_blob(offset=0, length=512).readall() == bytes(512)
    disk = clients.compute.disks.get(resource_group, "myDisk", api_version=DISK_API).as_dict()
    assert disk["properties"]["diskState"] == "ActiveSAS"


@example("DiskRP", "Disks_RevokeAccess", "Disk_EndGetAccess")
def test_disk_end_get_access(clients: ArmClients, resource_group: str) -> None:
    _empty_disk(clients, resource_group, "myDisk")
    granted = clients.compute.disks.begin_grant_access(
        resource_group, "myDisk", {"access": "Read", "durationInSeconds": 300}, api_version=DISK_API
    ).result()
    clients.compute.disks.begin_revoke_access(resource_group, "myDisk", api_version=DISK_API).result()
    assert _denied(str(granted.access_sas)) == 403
    disk = clients.compute.disks.get(resource_group, "myDisk", api_version=DISK_API).as_dict()
    assert disk["properties"]["diskState"] == "Unattached"


@example("DiskRP", "Snapshots_GrantAccess", "Snapshot_BeginGetAccess", Outcome.REFUSED)
def test_snapshot_begin_get_access_as_vhdx(clients: ArmClients, resource_group: str) -> None:
    """The example asks for the VHDX format, which the local data plane does not serve (VHD only)."""
    _incremental(clients, resource_group, "mySnapshot", _empty_disk(clients, resource_group, "myDisk"))
    with pytest.raises(HttpResponseError) as raised:
        clients.compute.snapshots.begin_grant_access(
            resource_group,
            "mySnapshot",
            {"access": "Read", "durationInSeconds": 300, "fileFormat": "VHDX"},
            api_version=DISK_API,
        )
    assert raised.value.status_code == 400 and "VHDX" in str(raised.value)


@example("DiskRP", "Snapshots_RevokeAccess", "Snapshot_EndGetAccess")
def test_snapshot_end_get_access(clients: ArmClients, resource_group: str) -> None:
    _incremental(clients, resource_group, "mySnapshot", _empty_disk(clients, resource_group, "myDisk"))
    granted = clients.compute.snapshots.begin_grant_access(
        resource_group, "mySnapshot", {"access": "Read", "durationInSeconds": 300}, api_version=DISK_API
    ).result()
    assert BlobClient.from_blob_url(str(granted.access_sas)).get_blob_properties().size == GIB
    clients.compute.snapshots.begin_revoke_access(resource_group, "mySnapshot", api_version=DISK_API).result()
    assert _denied(str(granted.access_sas)) == 403


@example("DiskRP", "Snapshots_Get", "Snapshot_GetIncrementalSnapshot")
def test_snapshot_get_an_incremental_snapshot(clients: ArmClients, resource_group: str) -> None:
    """The example's snapshot also carries Azure Disk Encryption settings, which the local endpoint
    refuses (documented); the transcription makes the same incremental snapshot without them."""
    disk = _empty_disk(clients, resource_group, "myDisk", 10)
    tags = {"department": "Development", "project": "Snapshots"}
    _incremental(clients, resource_group, "myIncrementalSnapshot", disk, tags=tags)
    snapshot = clients.compute.snapshots.get(
        resource_group, "myIncrementalSnapshot", api_version=DISK_API
    ).as_dict()
    assert_subset(
        snapshot,
        {
            "id": f"/subscriptions/{SUB}/resourceGroups/{resource_group}/providers/Microsoft.Compute/snapshots/myIncrementalSnapshot",
            "name": "myIncrementalSnapshot",
            "type": "Microsoft.Compute/snapshots",
            "tags": tags,
            "properties": {
                "creationData": {
                    "createOption": "Copy",
                    "sourceResourceId": disk["id"],
                    "sourceUniqueId": disk["properties"]["uniqueId"],
                },
                "diskSizeGB": 10,
                "diskSizeBytes": 10 * GIB,
                "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
                "incremental": True,
                "diskState": "Unattached",
                "provisioningState": "Succeeded",
            },
        },
    )
    props = snapshot["properties"]
    assert props["incrementalSnapshotFamilyId"] and props["uniqueId"] and props["timeCreated"]
