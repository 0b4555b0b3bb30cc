"""Refusals Azure documents that were quiet successes here: the incremental snapshot limits of a disk,
ARM preconditions (`If-Match` / `If-None-Match`), an ephemeral OS disk that does not fit its size's local
storage, and VM images that are not published or not platform images.

Written from the documentation and the specification: the managed-disk incremental snapshot page (7 per
disk in 5 minutes, 500 per disk), ComputeRP's `If-Match`/`If-None-Match` parameters on
VirtualMachines_CreateOrUpdate and VirtualMachines_Update (no other operation served here declares them),
the ephemeral OS disk page ("OS disk of Ephemeral VM with size greater than ... when the DiffDiskPlacement
is ..."), and the compute RP's image refusals.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import models as cm

from devhost.arm import snapshot_limits
from shared.migration import resources as ops
from shared.platform.arm_clients import ArmClients
from shared.platform.arm_errors import ArmConflict
from tests.arm.conformance.conftest import Network, new_nic
from tests.arm.conformance.spec import COMPUTE_API, DISK_API, NETWORK_API, Rest
from tests.arm.conftest import LOCATION, make_tags

pytestmark = pytest.mark.integration

DEBIAN = {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest"}


def _disk(rest: Rest, rg: str, name: str) -> dict[str, Any]:
    body = {"location": LOCATION, "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 1}}
    return rest.put_and_wait(rest.url(rg, f"Microsoft.Compute/disks/{name}"), DISK_API, body, (202,))


def _vm_body(nic_id: str, image: dict[str, Any], **os_disk: Any) -> dict[str, Any]:
    return {
        "location": LOCATION,
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_B2s"},
            "storageProfile": {
                "imageReference": image,
                "osDisk": {"createOption": "FromImage", "deleteOption": "Delete", **os_disk},
            },
            "osProfile": {
                "adminUsername": "azureuser",
                "linuxConfiguration": {"disablePasswordAuthentication": True},
            },
            "networkProfile": {"networkInterfaces": [{"id": nic_id}]},
        },
    }


# --- incremental snapshots ----------------------------------------------------------------------------


def test_a_disk_takes_at_most_seven_incremental_snapshots_in_five_minutes(
    clients: ArmClients, rest: Rest, resource_group: str
) -> None:
    rg = resource_group
    disk = _disk(rest, rg, "data")
    tags = make_tags()
    for n in range(7):
        ops.create_incremental_snapshot(
            clients, rg, f"s{n}", location=LOCATION, source_disk_id=disk["id"], tags=tags
        )
    # A deleted snapshot was still taken: it counts in its five minutes.
    clients.compute.snapshots.begin_delete(rg, "s0").result()
    with pytest.raises(ArmConflict) as refused:
        ops.create_incremental_snapshot(
            clients, rg, "s7", location=LOCATION, source_disk_id=disk["id"], tags=tags
        )
    assert refused.value.arm_code == "OperationNotAllowed"
    assert "limit of 7 incremental snapshots in 5 minutes" in str(refused.value)
    # The reverse-replication activity reports it as the catalog's SnapshotLimitReached ("limit" in it).
    assert "limit" in str(refused.value).lower()
    assert [s.name for s in clients.compute.snapshots.list_by_resource_group(rg)].count("s7") == 0
    # The limit is the disk's: another disk, and a full snapshot of this one, are taken.
    other = _disk(rest, rg, "other")
    ops.create_incremental_snapshot(
        clients, rg, "o0", location=LOCATION, source_disk_id=other["id"], tags=tags
    )
    full = {
        "location": LOCATION,
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": disk["id"]}},
    }
    rest.put_and_wait(rest.url(rg, "Microsoft.Compute/snapshots/full"), DISK_API, full, (202,))
    # Updating a snapshot already taken takes nothing.
    clients.compute.snapshots.begin_update(rg, "s1", {"tags": {"k": "v"}}).result()


def test_the_snapshot_limits_count_the_window_and_the_disks_snapshots() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    six = [now - timedelta(seconds=10 * n) for n in range(6)]
    assert snapshot_limits.refusal("d", six, 6, now) is None
    seven = [*six, now - timedelta(minutes=4, seconds=59)]
    error = snapshot_limits.refusal("d", seven, 7, now)
    assert error is not None and (error.status, error.code) == (409, "OperationNotAllowed")
    # The oldest of the seven leaves the window at 12:00:01: that is when the next one may be taken.
    assert "Retry after 2026-01-01T12:00:01Z" in error.message
    # Five minutes later the oldest no longer counts.
    assert snapshot_limits.refusal("d", seven, 7, now + timedelta(seconds=2)) is None
    full = snapshot_limits.refusal("d", [], 500, now)
    assert full is not None and "limit of 500 incremental snapshots per disk" in full.message
    assert snapshot_limits.refusal("d", [], 499, now) is None


def test_a_shortened_window_refuses_the_eighth_in_its_seconds_and_says_so() -> None:
    """DEVHOST_ARM_SNAPSHOT_WINDOW_SECONDS (tests): the same limit over fewer seconds, in the message too."""
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    window = snapshot_limits.window_from("20")
    assert window == timedelta(seconds=20)
    seven = [now - timedelta(seconds=n) for n in range(7)]
    error = snapshot_limits.refusal("d", seven, 7, now, window)
    assert error is not None and (error.status, error.code) == (409, "OperationNotAllowed")
    assert (
        "limit of 7 incremental snapshots in 20 seconds. Retry after 2026-01-01T12:00:14Z." in error.message
    )
    assert snapshot_limits.refusal("d", seven, 7, now + timedelta(seconds=14), window) is None
    # Unset or empty is Azure's 5 minutes; a window longer than Azure's, none or not a number is refused.
    assert snapshot_limits.window_from(None) == snapshot_limits.window_from(" ") == timedelta(minutes=5)
    for bad in ("0", "-5", "301", "nan", "five"):
        with pytest.raises(ValueError, match=snapshot_limits.WINDOW_ENV):
            snapshot_limits.window_from(bad)


# --- If-Match / If-None-Match ---------------------------------------------------------------------------


def test_a_vm_honours_if_match_and_if_none_match(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    rg = resource_group
    path = rest.url(rg, "Microsoft.Compute/virtualMachines/vm")
    body = _vm_body(new_nic(clients, rg, network), DEBIAN)

    def put(headers: dict[str, str], payload: dict[str, Any] = body) -> Any:
        return rest.http.put(path, params={"api-version": COMPUTE_API}, json=payload, headers=headers)

    # If-Match on a VM that does not exist: nothing to match, nothing created.
    rest.error(put({"If-Match": '"1"'}), 412, "PreconditionFailed")
    assert rest.request("GET", path, COMPUTE_API).status_code == 404
    created = put({"If-None-Match": "*"})
    assert created.status_code == 201, created.text
    rest.wait(created)
    vm = rest.request("GET", path, COMPUTE_API).json()
    assert vm["etag"] == '"1"'
    # If-None-Match: * allows creation only.
    again = rest.error(put({"If-None-Match": "*"}), 412, "PreconditionFailed")
    assert "already exists" in again["message"]
    rest.error(put({"If-None-Match": '"1"'}), 400, "InvalidParameter")
    # The etag read is the one a write may name; a stale one is refused and changes nothing.
    tagged = dict(body, tags={"step": "2"})
    rest.wait(put({"If-Match": '"1"'}, tagged))
    assert rest.request("GET", path, COMPUTE_API).json()["etag"] == '"2"'
    stale = rest.error(put({"If-Match": '"1"'}, dict(body, tags={"step": "3"})), 412, "PreconditionFailed")
    assert stale["message"] == 'Etag provided in if-match header "1" does not match etag "2" of resource.'
    assert rest.request("GET", path, COMPUTE_API).json()["tags"] == {"step": "2"}
    # The SDK's update (PATCH) with a match condition, as azure-mgmt-compute sends it.
    current = clients.compute.virtual_machines.get(rg, "vm", api_version=COMPUTE_API)
    updated = clients.compute.virtual_machines.begin_update(
        rg,
        "vm",
        cm.VirtualMachineUpdate(tags={"step": "4"}),
        etag=current.etag,
        match_condition=MatchConditions.IfNotModified,
        api_version=COMPUTE_API,
    ).result()
    assert updated.tags == {"step": "4"} and updated.etag == '"3"'
    with pytest.raises(HttpResponseError) as raised:
        clients.compute.virtual_machines.begin_update(
            rg,
            "vm",
            cm.VirtualMachineUpdate(tags={"step": "5"}),
            etag=current.etag,
            match_condition=MatchConditions.IfNotModified,
            api_version=COMPUTE_API,
        ).result()
    assert raised.value.status_code == 412
    any_version = put({"If-Match": "*"}, dict(body, tags={"step": "6"}))
    assert any_version.status_code == 200, any_version.text
    rest.wait(any_version)


def test_a_precondition_no_specification_declares_is_refused(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    rg = resource_group
    disk = _disk(rest, rg, "d")
    disk_path = rest.url(rg, "Microsoft.Compute/disks/d")
    tagged = {
        "location": LOCATION,
        "tags": {"k": "v"},
        "properties": {"creationData": {"createOption": "Empty"}},
    }
    refused = rest.http.put(
        disk_path, params={"api-version": DISK_API}, json=tagged, headers={"If-Match": '"whatever"'}
    )
    error = rest.error(refused, 400, "NotSupported")
    assert error["target"] == "If-Match" and "Microsoft.Compute/disks" in error["message"]
    assert rest.request("GET", disk_path, DISK_API).json().get("tags") in (None, {})
    # Neither the network RP's resources nor a VM's DELETE and actions declare one.
    nic_id = new_nic(clients, rg, network)
    gone = rest.http.delete(nic_id, params={"api-version": NETWORK_API}, headers={"If-None-Match": "*"})
    assert rest.error(gone, 400, "NotSupported")["target"] == "If-None-Match"
    grant = rest.http.post(
        f"{disk_path}/beginGetAccess",
        params={"api-version": DISK_API},
        json={"access": "Read", "durationInSeconds": 60},
        headers={"If-Match": "*"},
    )
    rest.error(grant, 400, "NotSupported")
    assert disk["properties"]["diskState"] == "Unattached"
    assert rest.request("GET", disk_path, DISK_API).json()["properties"]["diskState"] == "Unattached"


# --- images and ephemeral OS disks -----------------------------------------------------------------------


def test_a_vm_image_must_be_published_and_its_os_disk_at_least_its_size(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    rg = resource_group
    nic_id = new_nic(clients, rg, network)
    path = rest.url(rg, "Microsoft.Compute/virtualMachines/vm")
    missing = dict(DEBIAN, sku="11-gen9")
    error = rest.error(
        rest.request("PUT", path, COMPUTE_API, _vm_body(nic_id, missing)), 404, "PlatformImageNotFound"
    )
    assert "'Debian:debian-12:11-gen9:latest' is not available" in error["message"]
    custom = {
        "id": f"/subscriptions/{uuid.uuid4()}/resourceGroups/g/providers/Microsoft.Compute/images/golden"
    }
    rest.error(rest.request("PUT", path, COMPUTE_API, _vm_body(nic_id, custom)), 400, "NotSupported")
    small = rest.request("PUT", path, COMPUTE_API, _vm_body(nic_id, DEBIAN, diskSizeGB=20))
    assert rest.error(small, 409, "OperationNotAllowed")["message"].startswith(
        "The specified disk size 20 GB is smaller than the size of the corresponding disk in the VM image: 30 GB."
    )
    # None of the refused requests created an OS disk.
    assert list(clients.compute.disks.list_by_resource_group(rg)) == []
    vm = rest.put_and_wait(path, COMPUTE_API, _vm_body(nic_id, DEBIAN), (201,))
    os_disk = vm["properties"]["storageProfile"]["osDisk"]
    assert (os_disk["osType"], os_disk["diskSizeGB"]) == ("Linux", 30)
    disk = clients.compute.disks.get(rg, os_disk["name"])
    assert disk.properties is not None and disk.properties.hyper_v_generation == "V2"
    view = clients.compute.virtual_machines.instance_view(rg, "vm")
    assert view.hyper_v_generation == "V2"


def test_the_sku_list_gives_each_sizes_local_storage_for_ephemeral_os_disks(rest: Rest) -> None:
    listed = rest.http.get(
        "/subscriptions/00000000-0000-0000-0000-00000000a2a2/providers/Microsoft.Compute/skus",
        params={"api-version": "2021-07-01", "$filter": "location eq 'westeurope'"},
    ).json()["value"]
    capabilities = {
        sku["name"]: {c["name"]: c["value"] for c in sku["capabilities"]}
        for sku in listed
        if sku["resourceType"] == "virtualMachines"
    }
    ds1 = capabilities["Standard_DS1_v2"]
    assert ds1["CachedDiskBytes"] == str(43 * 2**30) and ds1["MaxResourceVolumeMB"] == "7168"
    assert ds1["EphemeralOSDiskSupported"] == "True"
    assert ds1["SupportedEphemeralOSDiskPlacements"] == "CacheDisk,ResourceDisk"
    # v5 sizes have no local disk: no ephemeral OS disk.
    d2s5 = capabilities["Standard_D2s_v5"]
    assert d2s5["EphemeralOSDiskSupported"] == "False" and d2s5["MaxResourceVolumeMB"] == "0"
    assert "CachedDiskBytes" not in d2s5
    # Sizes without premium storage hold no ephemeral OS disk, whatever their temp disk.
    assert capabilities["Standard_D2_v2"]["EphemeralOSDiskSupported"] == "False"


def test_a_size_holds_its_data_disk_count_and_premium_disks_only_with_premium_storage(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    rg = resource_group
    nic_id = new_nic(clients, rg, network)
    path = rest.url(rg, "Microsoft.Compute/virtualMachines/vm")
    body = _vm_body(nic_id, DEBIAN)
    body["properties"]["hardwareProfile"]["vmSize"] = "Standard_B1s"  # MaxDataDiskCount 2
    storage = body["properties"]["storageProfile"]
    storage["dataDisks"] = [{"lun": n, "createOption": "Empty", "diskSizeGB": 1} for n in range(3)]
    too_many = rest.error(rest.request("PUT", path, COMPUTE_API, body), 409, "OperationNotAllowed")
    assert (
        too_many["message"]
        == "The maximum number of data disks allowed to be attached to a VM of this size is 2."
    )
    body["properties"]["hardwareProfile"]["vmSize"] = "Standard_D2_v2"  # no premium storage
    storage["dataDisks"] = [
        {
            "lun": 0,
            "createOption": "Empty",
            "diskSizeGB": 1,
            "name": "fast",
            "managedDisk": {"storageAccountType": "Premium_LRS"},
        }
    ]
    premium = rest.error(rest.request("PUT", path, COMPUTE_API, body), 400, "InvalidParameter")
    assert premium["message"].startswith(
        "Requested operation cannot be performed because the VM size Standard_D2_v2 does not support the storage "
        "account type Premium_LRS of disk 'fast'."
    )
    assert premium["target"] == "dataDisk.managedDisk.storageAccountType"
    assert list(clients.compute.disks.list_by_resource_group(rg)) == []
    # On a premium size it is made; resizing the VM to a size without premium storage is refused.
    body["properties"]["hardwareProfile"]["vmSize"] = "Standard_DS1_v2"
    rest.put_and_wait(path, COMPUTE_API, body, (201,))
    resize = rest.request(
        "PATCH", path, COMPUTE_API, {"properties": {"hardwareProfile": {"vmSize": "Standard_D2_v2"}}}
    )
    rest.error(resize, 400, "InvalidParameter")


def test_a_custom_script_version_the_repository_does_not_publish_is_not_found(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    rg = resource_group
    vm = rest.put_and_wait(
        rest.url(rg, "Microsoft.Compute/virtualMachines/vm"),
        COMPUTE_API,
        _vm_body(new_nic(clients, rg, network), DEBIAN),
        (201,),
    )
    path = f"{vm['id']}/extensions/script"
    body = {
        "location": LOCATION,
        "properties": {
            "publisher": "Microsoft.Azure.Extensions",
            "type": "CustomScript",
            "typeHandlerVersion": "3.0",
            "settings": {"commandToExecute": "true"},
        },
    }
    missing = rest.error(rest.request("PUT", path, COMPUTE_API, body), 404, "ArtifactNotFound")
    assert missing["message"] == (
        "Extension with publisher 'Microsoft.Azure.Extensions', type 'CustomScript', and type handler version "
        "'3.0' could not be found in the extension repository."
    )
    assert rest.request("GET", path, COMPUTE_API).status_code == 404
    body["properties"]["typeHandlerVersion"] = "2.0"
    rest.put_and_wait(path, COMPUTE_API, body, (201,))


def test_a_vm_from_an_attached_os_disk_takes_no_os_profile(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    rg = resource_group
    disk = _disk(rest, rg, "os")
    path = rest.url(rg, "Microsoft.Compute/virtualMachines/vm")
    body: dict[str, Any] = {
        "location": LOCATION,
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_B2s"},
            "storageProfile": {
                "osDisk": {"createOption": "Attach", "osType": "Linux", "managedDisk": {"id": disk["id"]}}
            },
            "osProfile": {"computerName": "vm", "adminUsername": "azureuser"},
            "networkProfile": {"networkInterfaces": [{"id": new_nic(clients, rg, network)}]},
        },
    }
    refused = rest.error(rest.request("PUT", path, COMPUTE_API, body), 400, "InvalidParameter")
    assert (refused["message"], refused["target"]) == ("Parameter 'osProfile' is not allowed.", "osProfile")
    profile = body["properties"].pop("osProfile")
    rest.put_and_wait(path, COMPUTE_API, body, (201,))
    # Nor can an update add one afterwards.
    added = rest.request("PATCH", path, COMPUTE_API, {"properties": {"osProfile": profile}})
    assert (
        rest.error(added, 409, "PropertyChangeNotAllowed")["message"]
        == "Changing property 'osProfile' is not allowed."
    )
    assert "osProfile" not in rest.request("GET", path, COMPUTE_API).json()["properties"]


def test_a_reference_to_another_region_is_one_to_a_missing_resource(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    rg = resource_group
    nic_id = new_nic(clients, rg, network)  # in the network's region, westeurope
    path = rest.url(rg, "Microsoft.Compute/virtualMachines/vm")
    body = _vm_body(nic_id, DEBIAN)
    body["location"] = "northeurope"
    elsewhere = rest.error(rest.request("PUT", path, COMPUTE_API, body), 400, "InvalidResourceReference")
    assert elsewhere["message"] == (
        f"Resource {nic_id} referenced by resource {path} was not found. Please make sure that the referenced "
        "resource exists, and that both resources are in the same region."
    )
    assert list(clients.compute.disks.list_by_resource_group(rg)) == []
    # A NIC in another region than its subnet's VNet, likewise.
    nic_path = rest.url(rg, "Microsoft.Network/networkInterfaces/far")
    far = {
        "location": "northeurope",
        "properties": {
            "ipConfigurations": [{"name": "ip", "properties": {"subnet": {"id": network.subnet_id}}}]
        },
    }
    rest.error(rest.request("PUT", nic_path, NETWORK_API, far), 400, "InvalidResourceReference")


@pytest.mark.parametrize(
    ("where", "value", "target"),
    [
        ("storageProfile", {"diskControllerType": "NVMe"}, "properties.storageProfile.diskControllerType"),
        (
            "osDisk",
            {"writeAcceleratorEnabled": True},
            "properties.storageProfile.osDisk.writeAcceleratorEnabled",
        ),
    ],
)
def test_a_vm_storage_feature_not_emulated_is_refused_not_dropped(
    clients: ArmClients,
    rest: Rest,
    resource_group: str,
    network: Network,
    where: str,
    value: Any,
    target: str,
) -> None:
    body = _vm_body(new_nic(clients, resource_group, network), DEBIAN)
    storage = body["properties"]["storageProfile"]
    (storage if where == "storageProfile" else storage["osDisk"]).update(value)
    path = rest.url(resource_group, "Microsoft.Compute/virtualMachines/vm")
    assert rest.error(rest.request("PUT", path, COMPUTE_API, body), 400, "NotSupported")["target"] == target
    # Their defaults ask for nothing and pass.
    (storage if where == "storageProfile" else storage["osDisk"]).update(
        {k: ("SCSI" if isinstance(v, str) else False) for k, v in value.items()}
    )
    rest.put_and_wait(path, COMPUTE_API, body, (201,))


def test_a_vm_update_that_resizes_a_disk_is_refused_not_dropped(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    rg = resource_group
    path = rest.url(rg, "Microsoft.Compute/virtualMachines/vm")
    body = _vm_body(new_nic(clients, rg, network), DEBIAN)
    body["properties"]["storageProfile"]["dataDisks"] = [{"lun": 0, "createOption": "Empty", "diskSizeGB": 1}]
    vm = rest.put_and_wait(path, COMPUTE_API, body, (201,))
    # Sent back as read, the sizes pass.
    rest.put_and_wait(path, COMPUTE_API, {"location": LOCATION, "properties": vm["properties"]}, (200,))
    grown = {"storageProfile": {"osDisk": {"diskSizeGB": 64}}}
    refused = rest.error(rest.request("PATCH", path, COMPUTE_API, {"properties": grown}), 400, "NotSupported")
    assert refused["target"] == "osDisk.diskSizeGB"
    data = dict(vm["properties"]["storageProfile"]["dataDisks"][0], diskSizeGB=2)
    patch = {"properties": {"storageProfile": {"dataDisks": [data]}}}
    rest.error(rest.request("PATCH", path, COMPUTE_API, patch), 400, "NotSupported")
    assert clients.compute.disks.get(rg, data["name"]).properties.disk_size_gb == 1  # type: ignore[union-attr]
