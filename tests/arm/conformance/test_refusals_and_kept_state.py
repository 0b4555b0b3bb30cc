"""What Azure refuses is refused, and what Azure keeps is kept: the documented refusals (api-version,
resource group names, references, handlers, disk sizes) and the updates that must really happen."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from azure.core.exceptions import HttpResponseError

from shared.platform.arm_clients import ArmClients
from tests.arm.conformance.conftest import Network, new_nic
from tests.arm.conformance.spec import (
    COMPUTE_API,
    DISK_API,
    NETWORK_API,
    RESOURCES_API,
    SUB,
    Rest,
    assert_subset,
)
from tests.arm.conftest import LOCATION, LocalArmEndpoint

pytestmark = pytest.mark.integration
GIB = 1024**3


def _disk_path(rest: Rest, rg: str, name: str) -> str:
    return rest.url(rg, f"Microsoft.Compute/disks/{name}")


def _empty_disk(rest: Rest, rg: str, name: str, size_gb: int = 1, **extra: Any) -> dict[str, Any]:
    body = {
        "location": LOCATION,
        "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": size_gb},
    }
    return rest.put_and_wait(_disk_path(rest, rg, name), DISK_API, {**body, **extra}, (202,))


def _image(local_arm: LocalArmEndpoint, disk: dict[str, Any]) -> Path:
    return local_arm.data_dir / "disks" / f"{disk['properties']['uniqueId']}.raw"


# --- api-version ------------------------------------------------------------------------------------


def test_an_api_version_that_is_not_a_date_is_invalid(rest: Rest, resource_group: str) -> None:
    response = rest.request("GET", _disk_path(rest, resource_group, "d"), "banana")
    error = rest.error(response, 400, "InvalidApiVersionParameter")
    assert error["message"].startswith("The api-version 'banana' is invalid. The supported versions are '")
    assert RESOURCES_API in error["message"]


def test_an_unpublished_api_version_names_the_published_ones(rest: Rest, resource_group: str) -> None:
    response = rest.request("GET", _disk_path(rest, resource_group, "d"), "2099-01-01")
    message = rest.error(response, 400, "NoRegisteredProviderFound")["message"]
    assert "API version '2099-01-01' for type 'disks'" in message
    assert "2025-01-02" in message and "2026-03-02" in message
    vm = rest.request("GET", rest.url(resource_group, "Microsoft.Compute/virtualMachines/v"), DISK_API)
    # 2025-01-02 is a disk RP version, not one of the compute RP's.
    assert "for type 'virtualMachines'" in rest.error(vm, 400, "NoRegisteredProviderFound")["message"]


def test_resource_groups_answer_arms_own_versions(rest: Rest) -> None:
    path = f"/subscriptions/{SUB}/resourcegroups/rg-x"
    response = rest.request("GET", path, "2099-01-01")
    assert "2025-04-01" in rest.error(response, 400, "InvalidApiVersionParameter")["message"]
    assert rest.request("GET", path, RESOURCES_API).status_code == 404


# --- names and references -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bad name", "bad*name", "ends-with.", "x" * 91, "semi;colon"])
def test_resource_group_names_are_validated(rest: Rest, name: str) -> None:
    path = f"/subscriptions/{SUB}/resourcegroups/{quote(name, safe='')}"
    response = rest.request("PUT", path, RESOURCES_API, {"location": LOCATION})
    rest.error(response, 400, "InvalidResourceGroup")


def test_resource_group_names_take_what_azure_allows(rest: Rest) -> None:
    name = f"rg_(ok).{uuid.uuid4().hex[:4]}-é"
    response = rest.request(
        "PUT", f"/subscriptions/{SUB}/resourcegroups/{name}", RESOURCES_API, {"location": LOCATION}
    )
    assert response.status_code == 201, response.text


def test_a_nic_naming_a_missing_subnet_is_refused(clients: ArmClients, resource_group: str) -> None:
    missing = f"/subscriptions/{SUB}/resourceGroups/{resource_group}/providers/Microsoft.Network/virtualNetworks/nope/subnets/default"
    body = {
        "location": LOCATION,
        "properties": {"ipConfigurations": [{"name": "c", "properties": {"subnet": {"id": missing}}}]},
    }
    with pytest.raises(HttpResponseError) as raised:
        clients.network.network_interfaces.begin_create_or_update(
            resource_group, "nic", body, api_version=NETWORK_API
        )
    assert raised.value.error is not None and raised.value.error.code == "InvalidResourceReference"


def test_a_subnet_naming_a_route_table_is_refused(clients: ArmClients, resource_group: str) -> None:
    table = f"/subscriptions/{SUB}/resourceGroups/{resource_group}/providers/Microsoft.Network/routeTables/rt"
    body = {
        "location": LOCATION,
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [
                {"name": "s", "properties": {"addressPrefix": "10.0.0.0/24", "routeTable": {"id": table}}}
            ],
        },
    }
    with pytest.raises(HttpResponseError) as raised:
        clients.network.virtual_networks.begin_create_or_update(
            resource_group, "v", body, api_version=NETWORK_API
        )
    assert raised.value.error is not None and raised.value.error.code == "InvalidResourceReference"


def test_a_prefix_with_host_bits_is_invalid_cidr_notation(clients: ArmClients, resource_group: str) -> None:
    body = {"location": LOCATION, "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.1/16"]}}}
    with pytest.raises(HttpResponseError) as raised:
        clients.network.virtual_networks.begin_create_or_update(
            resource_group, "v", body, api_version=NETWORK_API
        )
    assert raised.value.error is not None and raised.value.error.code == "InvalidCIDRNotation"
    assert "should be 10.0.0.0/16" in str(raised.value.error.message)


# --- disks: what an update keeps and changes ----------------------------------------------------------


def test_a_tags_only_put_keeps_the_sku(rest: Rest, resource_group: str) -> None:
    created = _empty_disk(rest, resource_group, "d", sku={"name": "Premium_LRS"})
    body = {
        "location": LOCATION,
        "tags": {"a": "b"},
        "properties": {"creationData": {"createOption": "Empty"}},
    }
    updated = rest.put_and_wait(_disk_path(rest, resource_group, "d"), DISK_API, body, (200,))
    assert updated["sku"] == created["sku"] == {"name": "Premium_LRS", "tier": "Premium"}
    assert updated["tags"] == {"a": "b"} and updated["properties"]["diskSizeGB"] == 1


def test_a_larger_size_grows_the_disk_and_a_smaller_one_is_refused(
    rest: Rest, resource_group: str, local_arm: LocalArmEndpoint
) -> None:
    created = _empty_disk(rest, resource_group, "d", 1)
    path = _disk_path(rest, resource_group, "d")
    response = rest.request("PATCH", path, DISK_API, {"properties": {"diskSizeGB": 2}})
    assert response.status_code == 200 and rest.wait(response)["status"] == "Succeeded"
    grown = rest.request("GET", path, DISK_API).json()
    assert grown["properties"]["diskSizeGB"] == 2 and grown["properties"]["diskSizeBytes"] == 2 * GIB
    assert _image(local_arm, created).stat().st_size == 2 * GIB
    shrink = rest.request("PATCH", path, DISK_API, {"properties": {"diskSizeGB": 1}})
    assert "cannot be resized down" in rest.error(shrink, 409, "OperationNotAllowed")["message"]


# --- VMs ----------------------------------------------------------------------------------------------


def _vm_with_data_disk(clients: ArmClients, rest: Rest, rg: str, network: Network) -> dict[str, Any]:
    disk = _empty_disk(rest, rg, "data", 1, sku={"name": "StandardSSD_LRS"})
    body = {
        "location": LOCATION,
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_B2s"},
            "storageProfile": {
                "imageReference": {
                    "publisher": "Debian",
                    "offer": "debian-12",
                    "sku": "12-gen2",
                    "version": "latest",
                },
                "osDisk": {
                    "createOption": "FromImage",
                    "diskSizeGB": 32,  # above the image's 30 GB: Azure refuses an OS disk smaller than its image
                    "managedDisk": {"storageAccountType": "Premium_LRS"},
                },
                "dataDisks": [{"lun": 0, "createOption": "Attach", "managedDisk": {"id": disk["id"]}}],
            },
            "osProfile": {
                "adminUsername": "azureuser",
                "linuxConfiguration": {"disablePasswordAuthentication": True},
            },
            "networkProfile": {"networkInterfaces": [{"id": new_nic(clients, rg, network)}]},
        },
    }
    return rest.put_and_wait(rest.url(rg, "Microsoft.Compute/virtualMachines/vm"), COMPUTE_API, body, (201,))


def test_a_vm_returns_its_disks_sizes_and_storage_types(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    vm = _vm_with_data_disk(clients, rest, resource_group, network)
    storage = vm["properties"]["storageProfile"]
    assert_subset(
        storage,
        {
            "osDisk": {
                "osType": "Linux",
                "diskSizeGB": 32,
                "managedDisk": {"storageAccountType": "Premium_LRS"},
            },
            "dataDisks": [
                {"lun": 0, "diskSizeGB": 1, "managedDisk": {"storageAccountType": "StandardSSD_LRS"}}
            ],
        },
    )


def test_an_attached_disk_grows_only_while_its_vm_is_deallocated(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    _vm_with_data_disk(clients, rest, resource_group, network)
    path = _disk_path(rest, resource_group, "data")
    running = rest.request("PATCH", path, DISK_API, {"properties": {"diskSizeGB": 2}})
    assert "while it is attached to running VM" in rest.error(running, 409, "OperationNotAllowed")["message"]
    clients.compute.virtual_machines.begin_deallocate(resource_group, "vm").result()
    response = rest.request("PATCH", path, DISK_API, {"properties": {"diskSizeGB": 2}})
    assert response.status_code == 200 and rest.wait(response)["status"] == "Succeeded"
    vm = clients.compute.virtual_machines.get(resource_group, "vm").as_dict()
    assert vm["properties"]["storageProfile"]["dataDisks"][0]["diskSizeGB"] == 2


def test_a_put_of_a_deallocated_vm_with_another_os_disk_swaps_it(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    vm = _vm_with_data_disk(clients, rest, resource_group, network)
    old_os = vm["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
    new_os = _empty_disk(
        rest,
        resource_group,
        "new-os",
        4,
        properties={"creationData": {"createOption": "Empty"}, "diskSizeGB": 4, "osType": "Linux"},
    )
    clients.compute.virtual_machines.begin_deallocate(resource_group, "vm").result()
    vm["properties"]["storageProfile"]["osDisk"]["managedDisk"] = {"id": new_os["id"]}
    path = rest.url(resource_group, "Microsoft.Compute/virtualMachines/vm")
    swapped = rest.put_and_wait(path, COMPUTE_API, vm, (200,))
    assert swapped["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"] == new_os["id"]
    assert swapped["properties"]["storageProfile"]["osDisk"]["name"] == "new-os"
    old = rest.request("GET", old_os, DISK_API).json()
    assert old["properties"]["diskState"] == "Unattached" and "managedBy" not in old


def test_a_vm_patch_changes_tags_and_size(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    _vm_with_data_disk(clients, rest, resource_group, network)
    patched = clients.compute.virtual_machines.begin_update(
        resource_group,
        "vm",
        {"tags": {"k": "v"}, "properties": {"hardwareProfile": {"vmSize": "Standard_B4ms"}}},
    ).result()
    assert patched.tags == {"k": "v"} and patched.properties.hardware_profile.vm_size == "Standard_B4ms"
    assert [d.lun for d in patched.properties.storage_profile.data_disks] == [0]


# --- Custom Script: one per handler; the VM follows its latest extension ----------------------------


def _script(clients: ArmClients, rg: str, name: str, command: str, run: int) -> Any:
    body = {
        "location": LOCATION,
        "properties": {
            "publisher": "Microsoft.Azure.Extensions",
            "type": "CustomScript",
            "typeHandlerVersion": "2.1",
            "settings": {"commandToExecute": command, "timestamp": run},
        },
    }
    return clients.compute.virtual_machine_extensions.begin_create_or_update(rg, "vm", name, body)


def test_a_second_extension_of_one_handler_is_refused(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    _vm_with_data_disk(clients, rest, resource_group, network)
    _script(clients, resource_group, "first", "true", 1).result()
    with pytest.raises(HttpResponseError) as raised:
        _script(clients, resource_group, "second", "true", 1)
    assert raised.value.status_code == 400 and raised.value.error is not None
    assert raised.value.error.code == "BadRequest"
    assert "Multiple VMExtensions per handler not supported for OS type 'Linux'. VMExtension 'first'" in str(
        raised.value.error.message
    )


def test_a_successful_script_after_a_failed_one_leaves_the_vm_succeeded(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    _vm_with_data_disk(clients, rest, resource_group, network)
    with pytest.raises(HttpResponseError):
        _script(clients, resource_group, "run", "exit 3", 1).result()
    assert (
        clients.compute.virtual_machines.get(resource_group, "vm").properties.provisioning_state == "Failed"
    )
    _script(clients, resource_group, "run", "true", 2).result()
    assert (
        clients.compute.virtual_machines.get(resource_group, "vm").properties.provisioning_state
        == "Succeeded"
    )
    extension = clients.compute.virtual_machine_extensions.get(resource_group, "vm", "run")
    assert extension.properties.provisioning_state == "Succeeded"


def test_a_vnet_keeps_its_flow_timeout(clients: ArmClients, resource_group: str) -> None:
    body = {
        "location": LOCATION,
        "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}, "flowTimeoutInMinutes": 10},
    }
    vnet = clients.network.virtual_networks.begin_create_or_update(
        resource_group, "v", body, api_version=NETWORK_API
    ).result()
    assert vnet.as_dict()["properties"]["flowTimeoutInMinutes"] == 10


def test_an_extension_asking_to_suppress_failures_is_refused(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    _vm_with_data_disk(clients, rest, resource_group, network)
    body = {
        "location": LOCATION,
        "properties": {
            "publisher": "Microsoft.Azure.Extensions",
            "type": "CustomScript",
            "typeHandlerVersion": "2.1",
            "suppressFailures": True,
            "settings": {"commandToExecute": "true"},
        },
    }
    with pytest.raises(HttpResponseError) as raised:
        clients.compute.virtual_machine_extensions.begin_create_or_update(resource_group, "vm", "run", body)
    assert raised.value.error is not None and raised.value.error.code == "NotSupported"
    assert "suppressFailures" in str(raised.value.error.message)


def test_a_vm_keeps_its_computer_name_and_image(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    _vm_with_data_disk(clients, rest, resource_group, network)
    path = rest.url(resource_group, "Microsoft.Compute/virtualMachines/vm")
    renamed = rest.request(
        "PATCH", path, COMPUTE_API, {"properties": {"osProfile": {"computerName": "other"}}}
    )
    assert "'computerName'" in rest.error(renamed, 409, "PropertyChangeNotAllowed")["message"]
    image = {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}
    reimaged = rest.request(
        "PATCH", path, COMPUTE_API, {"properties": {"storageProfile": {"imageReference": image}}}
    )
    rest.error(reimaged, 409, "PropertyChangeNotAllowed")
