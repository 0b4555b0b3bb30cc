"""DiskRP 2025-01-02 examples: managed disks and snapshots (create, get, list, update, delete)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient

from shared.platform.arm_clients import ArmClients
from shared.replication.replica_disks import ReplicaDiskSpec, create_replica_disk
from shared.replication.vhd import MIB
from tests.arm.conformance.spec import DISK_API, SUB, Outcome, assert_subset, example
from tests.arm.conftest import STORAGE_ACCOUNT_ID, LocalArmEndpoint

pytestmark = pytest.mark.integration

WEST_US = "West US"


def _id(rg: str, path: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/{path}"


def _disk(clients: ArmClients, rg: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = (
        clients.compute.disks.begin_create_or_update(rg, name, body, api_version=DISK_API).result().as_dict()
    )
    return result


def _empty(size_gb: int = 200, **extra: Any) -> dict[str, Any]:
    return {
        "location": WEST_US,
        "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": size_gb},
        **extra,
    }


def _refused(call: Any, code: str, mentions: str) -> None:
    with pytest.raises(HttpResponseError) as raised:
        call()
    assert raised.value.status_code == 400, raised.value
    assert raised.value.error is not None and raised.value.error.code == code, raised.value.error
    assert mentions in str(raised.value.error.message) + str(raised.value.error.target)


@example("DiskRP", "Disks_CreateOrUpdate", "Disk_Create_Empty")
def test_disk_create_empty(clients: ArmClients, resource_group: str) -> None:
    disk = _disk(clients, resource_group, "myDisk", _empty())
    assert_subset(
        disk,
        {
            "id": _id(resource_group, "disks/myDisk"),
            "name": "myDisk",
            "location": WEST_US,
            "properties": {
                "creationData": {"createOption": "Empty"},
                "diskSizeGB": 200,
                "provisioningState": "Succeeded",
                "diskState": "Unattached",
            },
        },
    )


@example("DiskRP", "Disks_CreateOrUpdate", "Disk_Create_WithSSDZRSAccountType")
def test_disk_create_with_zone_redundant_sku(clients: ArmClients, resource_group: str) -> None:
    disk = _disk(clients, resource_group, "myDisk", _empty(sku={"name": "Premium_ZRS"}))
    assert_subset(
        disk, {"sku": {"name": "Premium_ZRS", "tier": "Premium"}, "properties": {"diskSizeGB": 200}}
    )


@example("DiskRP", "Disks_CreateOrUpdate", "Disk_Create_FromAnExistingManagedDisk")
def test_disk_create_by_copying_a_disk(clients: ArmClients, resource_group: str) -> None:
    _disk(clients, resource_group, "myDisk1", _empty(1))
    # The example's sourceResourceId has no leading slash; it is echoed as given.
    source = _id(resource_group, "disks/myDisk1").lstrip("/")
    body = {
        "location": WEST_US,
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": source}},
    }
    disk = _disk(clients, resource_group, "myDisk2", body)
    assert_subset(
        disk,
        {
            "name": "myDisk2",
            "location": WEST_US,
            "properties": {
                "creationData": {"createOption": "Copy", "sourceResourceId": source},
                "provisioningState": "Succeeded",
                "diskSizeGB": 1,
            },
        },
    )


@example("DiskRP", "Disks_CreateOrUpdate", "Disk_Create_ByCopyingASnapshot")
def test_disk_create_by_copying_a_snapshot(clients: ArmClients, resource_group: str) -> None:
    _disk(clients, resource_group, "myDisk1", _empty(1))
    snapshot = clients.compute.snapshots.begin_create_or_update(
        resource_group,
        "mySnapshot",
        {
            "location": WEST_US,
            "properties": {
                "creationData": {
                    "createOption": "Copy",
                    "sourceResourceId": _id(resource_group, "disks/myDisk1"),
                }
            },
        },
        api_version=DISK_API,
    ).result()
    body = {
        "location": WEST_US,
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": snapshot.id}},
    }
    disk = _disk(clients, resource_group, "myDisk", body)
    assert_subset(
        disk["properties"],
        {
            "creationData": {"createOption": "Copy", "sourceResourceId": snapshot.id},
            "provisioningState": "Succeeded",
        },
    )


@example("DiskRP", "Disks_CreateOrUpdate", "Disk_Create_ByImportingBlobFromTheSameSubscription")
def test_disk_create_by_importing_a_blob(
    clients: ArmClients, resource_group: str, container: ContainerClient
) -> None:
    """The example omits `storageAccountId`, which the swagger's CreationData requires for Import (and
    the endpoint too); the transcription adds it."""
    replica = create_replica_disk(container, ReplicaDiskSpec(machine_id="m", disk_id="d", disk_size=2 * MIB))
    body = {
        "location": WEST_US,
        "properties": {
            "creationData": {
                "createOption": "Import",
                "sourceUri": replica.url,
                "storageAccountId": STORAGE_ACCOUNT_ID,
            }
        },
    }
    disk = _disk(clients, resource_group, "myDisk", body)
    assert_subset(
        disk,
        {
            "name": "myDisk",
            "properties": {
                "creationData": {
                    "createOption": "Import",
                    "sourceUri": replica.url,
                    "storageAccountId": STORAGE_ACCOUNT_ID,
                },
                "provisioningState": "Succeeded",
            },
        },
    )


@example("DiskRP", "Disks_Get", "Disk_Get")
def test_disk_get(clients: ArmClients, resource_group: str) -> None:
    _disk(clients, resource_group, "myManagedDisk", _empty(10, tags={"department": "Development"}))
    disk = clients.compute.disks.get(resource_group, "myManagedDisk", api_version=DISK_API).as_dict()
    assert_subset(
        disk,
        {
            "name": "myManagedDisk",
            "type": "Microsoft.Compute/disks",
            "location": WEST_US,
            "tags": {"department": "Development"},
            "sku": {"name": "Standard_LRS", "tier": "Standard"},
            "properties": {
                "creationData": {"createOption": "Empty"},
                "diskSizeGB": 10,
                "provisioningState": "Succeeded",
                "diskState": "Unattached",
                "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
            },
        },
    )
    assert disk["properties"]["uniqueId"] and disk["properties"]["timeCreated"]


@example("DiskRP", "Disks_ListByResourceGroup", "Disk_ListByResourceGroup")
def test_disk_list_by_resource_group(clients: ArmClients, resource_group: str) -> None:
    for name in ("myManagedDisk1", "myManagedDisk2"):
        _disk(clients, resource_group, name, _empty(1))
    names = sorted(
        d.name for d in clients.compute.disks.list_by_resource_group(resource_group, api_version=DISK_API)
    )
    assert names == ["myManagedDisk1", "myManagedDisk2"]


@example("DiskRP", "Disks_Delete", "Disk_Delete")
def test_disk_delete(clients: ArmClients, resource_group: str) -> None:
    _disk(clients, resource_group, "myDisk", _empty(1))
    clients.compute.disks.begin_delete(resource_group, "myDisk", api_version=DISK_API).result()
    with pytest.raises(ResourceNotFoundError):
        clients.compute.disks.get(resource_group, "myDisk", api_version=DISK_API)


@example("DiskRP", "Disks_CreateOrUpdate", "Disk_Create_FromAPlatformImage")
def test_disk_create_from_a_platform_image(clients: ArmClients, resource_group: str) -> None:
    """The example's image is placeholders (`{publisher}`, `{offer}`, `{sku}`, with a purchase plan);
    the transcription names a published platform image, which has no plan."""
    image = (
        f"/Subscriptions/{SUB}/Providers/Microsoft.Compute/Locations/westus/Publishers/MicrosoftWindowsServer/"
        "ArtifactTypes/VMImage/Offers/WindowsServer/Skus/2019-Datacenter/Versions/17763.6893.250210"
    )
    body = {
        "location": WEST_US,
        "properties": {
            "osType": "Windows",
            "creationData": {"createOption": "FromImage", "imageReference": {"id": image}},
        },
    }
    disk = _disk(clients, resource_group, "myDisk", body)
    assert_subset(
        disk,
        {
            "id": _id(resource_group, "disks/myDisk"),
            "name": "myDisk",
            "location": WEST_US,
            "properties": {
                "provisioningState": "Succeeded",
                "osType": "Windows",
                "hyperVGeneration": "V1",
                "supportedCapabilities": {"acceleratedNetwork": True},
                "creationData": {"createOption": "FromImage", "imageReference": {"id": image}},
                "diskSizeGB": 127,
            },
        },
    )
    # An image that is not published is refused, not created empty.
    body["properties"]["creationData"]["imageReference"]["id"] = image.replace(
        "2019-Datacenter", "1999-Nothing"
    )
    with pytest.raises(HttpResponseError) as missing:
        _disk(clients, resource_group, "other", body)
    assert missing.value.status_code == 404 and missing.value.error is not None
    assert missing.value.error.code == "PlatformImageNotFound"


@example("DiskRP", "Disks_CreateOrUpdate", "Disk_Create_UploadDisk")
def test_disk_create_for_upload(clients: ArmClients, resource_group: str) -> None:
    body = {
        "location": WEST_US,
        "properties": {"creationData": {"createOption": "Upload", "uploadSizeBytes": 10737418752}},
    }
    disk = _disk(clients, resource_group, "myDisk", body)
    assert_subset(
        disk,
        {
            "id": _id(resource_group, "disks/myDisk"),
            "name": "myDisk",
            "location": WEST_US,
            "properties": {
                "creationData": {"createOption": "Upload", "uploadSizeBytes": 10737418752},
                "provisioningState": "Succeeded",
                "diskState": "ReadyToUpload",
                "diskSizeGB": 10,
            },
        },
    )
    disks = clients.compute.disks
    # Nothing reads a disk before its upload, and Write goes only to a disk made for upload.
    with pytest.raises(HttpResponseError) as read_first:
        disks.begin_grant_access(
            resource_group, "myDisk", {"access": "Read", "durationInSeconds": 300}, api_version=DISK_API
        )
    assert read_first.value.status_code == 409
    _disk(clients, resource_group, "plain", _empty(1))
    with pytest.raises(HttpResponseError) as write_plain:
        disks.begin_grant_access(
            resource_group, "plain", {"access": "Write", "durationInSeconds": 300}, api_version=DISK_API
        )
    assert write_plain.value.status_code == 409

    granted = disks.begin_grant_access(
        resource_group, "myDisk", {"access": "Write", "durationInSeconds": 300}, api_version=DISK_API
    ).result()
    assert disks.get(resource_group, "myDisk", api_version=DISK_API).as_dict()["properties"]["diskState"] == (
        "ActiveUpload"
    )
    blob = BlobClient.from_blob_url(str(granted.access_sas))
    marker = bytes(range(256)) * 16
    blob.upload_page(marker, offset=8 * MIB, length=len(marker))
    blob.upload_page(b"conectix" + bytes(504), offset=10737418752 - 512, length=512)  # the footer page
    unaligned = httpx.put(
        f"{granted.access_sas}&comp=page",
        content=bytes(512),
        headers={"x-ms-version": "2021-08-06", "x-ms-page-write": "update", "x-ms-range": "bytes=100-611"},
    )
    assert unaligned.status_code == 416 and unaligned.headers["x-ms-error-code"] == "InvalidPageRange"
    with pytest.raises(HttpResponseError) as read_with_write:
        blob.download_blob(offset=0, length=512).readall()
    assert read_with_write.value.status_code == 403

    disks.begin_revoke_access(resource_group, "myDisk", api_version=DISK_API).result()
    done = disks.get(resource_group, "myDisk", api_version=DISK_API).as_dict()["properties"]
    assert done["diskState"] == "Unattached" and done["diskSizeBytes"] == 10 * 1024**3
    readable = disks.begin_grant_access(
        resource_group, "myDisk", {"access": "Read", "durationInSeconds": 300}, api_version=DISK_API
    ).result()
    reader = BlobClient.from_blob_url(str(readable.access_sas))
    assert reader.download_blob(offset=8 * MIB, length=len(marker)).readall() == marker
    assert reader.get_blob_properties().size == 10 * 1024**3


@example("DiskRP", "Disks_CreateOrUpdate", "Disk_Create_WithDiskEncryptionSet", Outcome.REFUSED)
def test_disk_create_with_a_disk_encryption_set(clients: ArmClients, resource_group: str) -> None:
    des = _id(resource_group, "diskEncryptionSets/myDiskEncryptionSet")
    body = _empty()
    body["properties"]["encryption"] = {"diskEncryptionSetId": des}
    _refused(lambda: _disk(clients, resource_group, "myDisk", body), "NotSupported", "encryption")


@example("DiskRP", "Disks_CreateOrUpdate", "Disk_Create_WithDiskAccess", Outcome.REFUSED)
def test_disk_create_with_a_disk_access(clients: ArmClients, resource_group: str) -> None:
    body = _empty()
    body["properties"]["diskAccessId"] = _id(resource_group, "diskAccesses/{existing-diskAccess-name}")
    body["properties"]["networkAccessPolicy"] = "AllowPrivate"
    _refused(lambda: _disk(clients, resource_group, "myDisk", body), "NotSupported", "diskAccessId")


@example("DiskRP", "Disks_CreateOrUpdate", "Disk_Create_InExtendedLocation", Outcome.REFUSED)
def test_disk_create_in_an_extended_location(clients: ArmClients, resource_group: str) -> None:
    body = _empty(extendedLocation={"type": "EdgeZone", "name": "{edge-zone-id}"})
    _refused(lambda: _disk(clients, resource_group, "myDisk", body), "NotSupported", "extendedLocation")


@example("DiskRP", "Disks_CreateOrUpdate", "Disk_CreateOrUpdate_BurstingEnabled")
def test_disk_create_with_bursting(clients: ArmClients, resource_group: str) -> None:
    # The example gives no sku; on-demand bursting is for Premium SSDs, so the transcription names one.
    body = _empty(1024, sku={"name": "Premium_LRS"})
    body["properties"]["burstingEnabled"] = True
    disk = _disk(clients, resource_group, "myDisk", body)
    assert_subset(
        disk,
        {
            "id": _id(resource_group, "disks/myDisk"),
            "name": "myDisk",
            "properties": {
                "creationData": {"createOption": "Empty"},
                "diskSizeGB": 1024,
                "burstingEnabled": True,
                "provisioningState": "Succeeded",
            },
        },
    )


@example("DiskRP", "Disks_Update", "Disk_Update_DisableBursting")
def test_disk_update_disable_bursting(clients: ArmClients, resource_group: str) -> None:
    body = _empty(1024, sku={"name": "Premium_LRS"})
    body["properties"]["burstingEnabled"] = True
    _disk(clients, resource_group, "myDisk", body)
    clients.compute.disks.begin_update(
        resource_group, "myDisk", {"properties": {"burstingEnabled": False}}, api_version=DISK_API
    ).result()
    disk = clients.compute.disks.get(resource_group, "myDisk", api_version=DISK_API).as_dict()
    assert_subset(
        disk,
        {"properties": {"creationData": {"createOption": "Empty"}, "provisioningState": "Succeeded"}},
    )
    assert disk["properties"].get("burstingEnabled") in (False, None)


@example("DiskRP", "Disks_Update", "Disk_Update_ChangeTier")
def test_disk_update_change_tier(clients: ArmClients, resource_group: str) -> None:
    # The example's disk is a P10 (up to 128 GiB) Premium SSD raised to P30.
    _disk(clients, resource_group, "myDisk", _empty(128, sku={"name": "Premium_LRS"}))
    assert clients.compute.disks.get(resource_group, "myDisk", api_version=DISK_API).tier == "P10"
    clients.compute.disks.begin_update(
        resource_group, "myDisk", {"properties": {"tier": "P30"}}, api_version=DISK_API
    ).result()
    disk = clients.compute.disks.get(resource_group, "myDisk", api_version=DISK_API).as_dict()
    assert_subset(
        disk,
        {
            "name": "myDisk",
            "properties": {
                "creationData": {"createOption": "Empty"},
                "provisioningState": "Succeeded",
                "tier": "P30",
            },
        },
    )


@example("DiskRP", "Snapshots_CreateOrUpdate", "Snapshot_Create_FromAnExistingSnapshot")
def test_snapshot_create_from_a_snapshot(clients: ArmClients, resource_group: str) -> None:
    _disk(clients, resource_group, "myDisk", _empty(1))
    first = _id(resource_group, "snapshots/mySnapshot1")
    for name, source in (("mySnapshot1", _id(resource_group, "disks/myDisk")), ("mySnapshot2", first)):
        body = {
            "location": WEST_US,
            "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": source}},
        }
        snapshot = clients.compute.snapshots.begin_create_or_update(
            resource_group, name, body, api_version=DISK_API
        ).result()
    assert_subset(
        snapshot.as_dict(),
        {
            "name": "mySnapshot2",
            "location": WEST_US,
            "properties": {
                "creationData": {"createOption": "Copy", "sourceResourceId": first},
                "provisioningState": "Succeeded",
            },
        },
    )


@example("DiskRP", "Snapshots_Get", "Snapshot_Get")
def test_snapshot_get(clients: ArmClients, resource_group: str) -> None:
    _disk(clients, resource_group, "myDisk", _empty(1))
    source = _id(resource_group, "disks/myDisk")
    body = {
        "location": WEST_US,
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": source}},
    }
    clients.compute.snapshots.begin_create_or_update(
        resource_group, "mySnapshot", body, api_version=DISK_API
    ).result()
    snapshot = clients.compute.snapshots.get(resource_group, "mySnapshot", api_version=DISK_API).as_dict()
    assert_subset(
        snapshot,
        {
            "name": "mySnapshot",
            "type": "Microsoft.Compute/snapshots",
            "location": WEST_US,
            "sku": {"name": "Standard_LRS", "tier": "Standard"},
            "properties": {
                "creationData": {"createOption": "Copy", "sourceResourceId": source},
                "diskSizeGB": 1,
                "incremental": False,
                "provisioningState": "Succeeded",
                "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
            },
        },
    )


@example("DiskRP", "Snapshots_Update", "Snapshot_Update")
def test_snapshot_update(clients: ArmClients, resource_group: str) -> None:
    _disk(clients, resource_group, "myDisk", _empty(1))
    source = _id(resource_group, "disks/myDisk")
    body = {
        "location": WEST_US,
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": source}},
    }
    clients.compute.snapshots.begin_create_or_update(
        resource_group, "mySnapshot", body, api_version=DISK_API
    ).result()
    updated = clients.compute.snapshots.begin_update(
        resource_group,
        "mySnapshot",
        {
            "properties": {"diskSizeGB": 20},
            "tags": {"department": "Development", "project": "UpdateSnapshots"},
        },
        api_version=DISK_API,
    ).result()
    assert_subset(
        updated.as_dict(),
        {
            "tags": {"department": "Development", "project": "UpdateSnapshots"},
            "properties": {"diskSizeGB": 20, "provisioningState": "Succeeded"},
        },
    )


@example("DiskRP", "Snapshots_Delete", "Snapshot_Delete")
def test_snapshot_delete(clients: ArmClients, resource_group: str) -> None:
    _disk(clients, resource_group, "myDisk", _empty(1))
    body = {
        "location": WEST_US,
        "properties": {
            "creationData": {"createOption": "Copy", "sourceResourceId": _id(resource_group, "disks/myDisk")}
        },
    }
    clients.compute.snapshots.begin_create_or_update(
        resource_group, "mySnapshot", body, api_version=DISK_API
    ).result()
    clients.compute.snapshots.begin_delete(resource_group, "mySnapshot", api_version=DISK_API).result()
    with pytest.raises(ResourceNotFoundError):
        clients.compute.snapshots.get(resource_group, "mySnapshot", api_version=DISK_API)


def _snapshot_of(clients: ArmClients, rg: str, disk: str, name: str) -> None:
    body = {
        "location": WEST_US,
        "properties": {
            "creationData": {"createOption": "Copy", "sourceResourceId": _id(rg, f"disks/{disk}")}
        },
    }
    clients.compute.snapshots.begin_create_or_update(rg, name, body, api_version=DISK_API).result()


@example("DiskRP", "Disks_List", "Disk_ListBySubscription")
def test_disk_list_by_subscription(clients: ArmClients, resource_group: str) -> None:
    _disk(clients, resource_group, "myManagedDisk1", _empty(1))
    ids = {d.id for d in clients.compute.disks.list(api_version=DISK_API)}
    assert _id(resource_group, "disks/myManagedDisk1") in ids


@example("DiskRP", "Snapshots_ListByResourceGroup", "Snapshot_ListByResourceGroup")
def test_snapshot_list_by_resource_group(clients: ArmClients, resource_group: str) -> None:
    _disk(clients, resource_group, "myDisk", _empty(1))
    _snapshot_of(clients, resource_group, "myDisk", "mySnapshot")
    listed = clients.compute.snapshots.list_by_resource_group(resource_group, api_version=DISK_API)
    assert [s.name for s in listed] == ["mySnapshot"]


@example("DiskRP", "Snapshots_List", "Snapshot_ListBySubscription")
def test_snapshot_list_by_subscription(clients: ArmClients, resource_group: str) -> None:
    _disk(clients, resource_group, "myDisk", _empty(1))
    _snapshot_of(clients, resource_group, "myDisk", "mySnapshot")
    assert _id(resource_group, "snapshots/mySnapshot") in {
        s.id for s in clients.compute.snapshots.list(api_version=DISK_API)
    }


# --- updates: the examples update a disk made from a Windows image; here an Empty disk of that OS ----


def _patched(clients: ArmClients, rg: str, update: dict[str, Any]) -> dict[str, Any]:
    body = {
        "location": "westus",
        "properties": {
            "creationData": {"createOption": "Empty"},
            "diskSizeGB": 127,
            "osType": "Windows",
            "hyperVGeneration": "V1",
        },
    }
    _disk(clients, rg, "myDisk", body)
    result: dict[str, Any] = (
        clients.compute.disks.begin_update(rg, "myDisk", update, api_version=DISK_API).result().as_dict()
    )
    assert_subset(
        result,
        {
            "name": "myDisk",
            "location": "westus",
            "sku": {"name": "Standard_LRS", "tier": "Standard"},
            "properties": {
                "osType": "Windows",
                "hyperVGeneration": "V1",
                "diskSizeGB": 127,
                "provisioningState": "Succeeded",
            },
        },
    )
    return result


@example("DiskRP", "Disks_Update", "Disk_Update_AddPurchasePlan")
def test_disk_update_add_purchase_plan(clients: ArmClients, resource_group: str) -> None:
    plan = {
        "name": "myPurchasePlanName",
        "publisher": "myPurchasePlanPublisher",
        "product": "myPurchasePlanProduct",
        "promotionCode": "myPurchasePlanPromotionCode",
    }
    disk = _patched(clients, resource_group, {"properties": {"purchasePlan": plan}})
    assert disk["properties"]["purchasePlan"] == plan


@example("DiskRP", "Disks_Update", "Disk_Update_ToAddArchitecture")
def test_disk_update_add_architecture(clients: ArmClients, resource_group: str) -> None:
    disk = _patched(
        clients, resource_group, {"properties": {"supportedCapabilities": {"architecture": "Arm64"}}}
    )
    assert disk["properties"]["supportedCapabilities"] == {"architecture": "Arm64"}


@example("DiskRP", "Disks_Update", "Disk_Update_AddDiskControllerTypes")
def test_disk_update_add_disk_controller_types(clients: ArmClients, resource_group: str) -> None:
    disk = _patched(
        clients, resource_group, {"properties": {"supportedCapabilities": {"diskControllerTypes": "SCSI"}}}
    )
    assert disk["properties"]["supportedCapabilities"] == {"diskControllerTypes": "SCSI"}


@example("DiskRP", "Disks_Update", "Disk_Update_AddAcceleratedNetworking")
def test_disk_update_add_accelerated_networking(clients: ArmClients, resource_group: str) -> None:
    disk = _patched(
        clients, resource_group, {"properties": {"supportedCapabilities": {"acceleratedNetwork": False}}}
    )
    assert disk["properties"]["supportedCapabilities"] == {"acceleratedNetwork": False}


@example("DiskRP", "Disks_Update", "Disk_Update_AddSupportsHibernation")
def test_disk_update_add_supports_hibernation(clients: ArmClients, resource_group: str) -> None:
    disk = _patched(clients, resource_group, {"properties": {"supportsHibernation": True}})
    assert disk["properties"]["supportsHibernation"] is True


@example("DiskRP", "Disks_CreateOrUpdate", "Disk_Create_WithOptimizedForFrequentAttach")
def test_disk_create_optimized_for_frequent_attach(clients: ArmClients, resource_group: str) -> None:
    body = _empty()
    body["properties"]["optimizedForFrequentAttach"] = True
    disk = _disk(clients, resource_group, "myDisk", body)
    assert_subset(
        disk,
        {
            "name": "myDisk",
            "location": WEST_US,
            "properties": {
                "creationData": {"createOption": "Empty"},
                "diskSizeGB": 200,
                "provisioningState": "Succeeded",
                "optimizedForFrequentAttach": True,
            },
        },
    )


@example("DiskRP", "Disks_Update", "Disk_Update_DisableOptimizedForFrequentAttach")
def test_disk_update_disable_optimized_for_frequent_attach(clients: ArmClients, resource_group: str) -> None:
    disk = _patched(clients, resource_group, {"properties": {"optimizedForFrequentAttach": False}})
    assert disk["properties"]["optimizedForFrequentAttach"] is False


@example(
    "DiskRP", "Snapshots_CreateOrUpdate", "Snapshot_Create_ByImportingAnUnmanagedBlobFromTheSameSubscription"
)
def test_snapshot_create_by_importing_a_blob(
    clients: ArmClients, resource_group: str, container: ContainerClient, local_arm: LocalArmEndpoint
) -> None:
    """The example omits `storageAccountId`, which the swagger's CreationData requires for Import (and
    the endpoint too); the transcription adds it."""
    replica = create_replica_disk(container, ReplicaDiskSpec(machine_id="m", disk_id="s", disk_size=2 * MIB))
    container.get_blob_client(replica.blob_name).upload_page(
        b"SNAPSHOT".ljust(512, b"\0"), offset=MIB, length=512
    )
    body = {
        "location": WEST_US,
        "properties": {
            "creationData": {
                "createOption": "Import",
                "sourceUri": replica.url,
                "storageAccountId": STORAGE_ACCOUNT_ID,
            }
        },
    }
    snapshot = clients.compute.snapshots.begin_create_or_update(
        resource_group, "mySnapshot1", body, api_version=DISK_API
    ).result()
    assert_subset(
        snapshot.as_dict(),
        {
            "name": "mySnapshot1",
            "location": WEST_US,
            "properties": {
                "creationData": {"createOption": "Import", "sourceUri": replica.url},
                "provisioningState": "Succeeded",
            },
        },
    )
    image = local_arm.data_dir / "disks" / f"{snapshot.properties.unique_id}.raw"
    with image.open("rb") as handle:
        handle.seek(MIB)
        assert handle.read(8) == b"SNAPSHOT"
