"""ComputeRP 2025-04-01 examples: virtual machines (create, update, get, power actions) and extensions.

The examples' `{existing-nic-name}` is a NIC of the test's own network; secrets are placeholders. The
Linux examples' image placeholders (`{image_publisher}`, `{image_offer}`, `{image_sku}`) are a published
Ubuntu image: an image that is not published is refused (404 `PlatformImageNotFound`), as in Azure.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.platform.arm_clients import ArmClients
from tests.arm.conformance.conftest import Network, make_network, new_nic
from tests.arm.conformance.spec import COMPUTE_API, SUB, Outcome, Rest, assert_subset, example

pytestmark = pytest.mark.integration

WESTUS = "westus"
SSH_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCeClRAk2ipUs/l5voIsDC5q9RI+YSRd1Bvd/O+axgY4WiBzG+4FwJWZm/mLLe5Do"
)
WINDOWS_IMAGE = {
    "sku": "2016-Datacenter",
    "publisher": "MicrosoftWindowsServer",
    "version": "latest",
    "offer": "WindowsServer",
}


UBUNTU_IMAGE = {"sku": "server", "publisher": "Canonical", "version": "latest", "offer": "ubuntu-24_04-lts"}


@pytest.fixture()
def network(clients: ArmClients, resource_group: str) -> Network:
    """The examples' VMs are in westus: their NICs, and so their network, are too."""
    return make_network(clients, resource_group, WESTUS)


def _vm_body(
    nic_id: str, storage: dict[str, Any], os_profile: dict[str, Any], **props: Any
) -> dict[str, Any]:
    return {
        "location": WESTUS,
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D2_v2"},
            "storageProfile": storage,
            "osProfile": os_profile,
            "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": True}}]},
            **props,
        },
    }


def _windows_with_empty_disks(nic_id: str) -> dict[str, Any]:
    storage = {
        "imageReference": WINDOWS_IMAGE,
        "osDisk": {
            "caching": "ReadWrite",
            "managedDisk": {"storageAccountType": "Standard_LRS"},
            "name": f"myVMosdisk-{uuid.uuid4().hex[:6]}",
            "createOption": "FromImage",
        },
        "dataDisks": [
            {"diskSizeGB": 1023, "createOption": "Empty", "lun": 0},
            {"diskSizeGB": 1023, "createOption": "Empty", "lun": 1},
        ],
    }
    profile = {"adminUsername": "{your-username}", "computerName": "myVM", "adminPassword": "{your-password}"}
    return _vm_body(nic_id, storage, profile)


def _linux_with_ssh(nic_id: str, **props: Any) -> dict[str, Any]:
    storage = {
        "imageReference": UBUNTU_IMAGE,
        "osDisk": {
            "caching": "ReadWrite",
            "managedDisk": {"storageAccountType": "Standard_LRS"},
            "name": f"myVMosdisk-{uuid.uuid4().hex[:6]}",
            "createOption": "FromImage",
        },
    }
    profile = {
        "adminUsername": "{your-username}",
        "computerName": "myVM",
        "linuxConfiguration": {
            "ssh": {
                "publicKeys": [{"path": "/home/{your-username}/.ssh/authorized_keys", "keyData": SSH_KEY}]
            },
            "disablePasswordAuthentication": True,
        },
    }
    body = _vm_body(nic_id, storage, profile, **props)
    body["properties"]["hardwareProfile"]["vmSize"] = "Standard_D1_v2"
    return body


def _create(clients: ArmClients, rg: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = (
        clients.compute.virtual_machines.begin_create_or_update(rg, name, body, api_version=COMPUTE_API)
        .result()
        .as_dict()
    )
    return result


def _refused(call: Any, code: str, mentions: str) -> None:
    with pytest.raises(HttpResponseError) as raised:
        call()
    assert raised.value.status_code == 400, raised.value
    assert raised.value.error is not None and raised.value.error.code == code, raised.value.error
    assert mentions in str(raised.value.error.message) + str(raised.value.error.target)


@example("ComputeRP", "VirtualMachines_CreateOrUpdate", "VirtualMachine_Create_WithEmptyDataDisks")
def test_vm_create_with_empty_data_disks(clients: ArmClients, resource_group: str, network: Network) -> None:
    body = _windows_with_empty_disks(new_nic(clients, resource_group, network))
    vm = _create(clients, resource_group, "myVM", body)
    assert_subset(
        vm,
        {
            "type": "Microsoft.Compute/virtualMachines",
            "name": "myVM",
            "location": WESTUS,
            "properties": {
                "osProfile": {
                    "adminUsername": "{your-username}",
                    "secrets": [],
                    "computerName": "myVM",
                    "windowsConfiguration": {"provisionVMAgent": True, "enableAutomaticUpdates": True},
                },
                "storageProfile": {
                    "imageReference": WINDOWS_IMAGE,
                    "osDisk": {
                        "osType": "Windows",
                        "caching": "ReadWrite",
                        "createOption": "FromImage",
                        "managedDisk": {"storageAccountType": "Standard_LRS"},
                    },
                    "dataDisks": [
                        {
                            "caching": "None",
                            "managedDisk": {"storageAccountType": "Standard_LRS"},
                            "createOption": "Empty",
                            "lun": lun,
                            "diskSizeGB": 1023,
                            "toBeDetached": False,
                        }
                        for lun in (0, 1)
                    ],
                },
                "hardwareProfile": {"vmSize": "Standard_D2_v2"},
                "provisioningState": "Succeeded",
            },
        },
    )
    assert "adminPassword" not in vm["properties"]["osProfile"]
    # The VM created its data disks as managed disks of the group.
    for disk in vm["properties"]["storageProfile"]["dataDisks"]:
        created = clients.compute.disks.get(resource_group, disk["name"]).as_dict()
        assert created["managedBy"] == vm["id"] and created["properties"]["diskSizeGB"] == 1023


@example("ComputeRP", "VirtualMachines_CreateOrUpdate", "VirtualMachine_Create_WithSshAuthentication")
def test_vm_create_with_ssh_authentication(
    clients: ArmClients, resource_group: str, network: Network
) -> None:
    body = _linux_with_ssh(new_nic(clients, resource_group, network))
    vm = _create(clients, resource_group, "myVM", body)
    assert_subset(
        vm["properties"],
        {
            "osProfile": {
                "adminUsername": "{your-username}",
                "secrets": [],
                "computerName": "myVM",
                "linuxConfiguration": body["properties"]["osProfile"]["linuxConfiguration"],
            },
            "storageProfile": {
                "osDisk": {
                    "osType": "Linux",
                    "caching": "ReadWrite",
                    "createOption": "FromImage",
                    "managedDisk": {"storageAccountType": "Standard_LRS"},
                },
                "dataDisks": [],
            },
            "hardwareProfile": {"vmSize": "Standard_D1_v2"},
        },
    )
    assert vm["properties"]["vmId"]


@example("ComputeRP", "VirtualMachines_CreateOrUpdate", "VirtualMachine_Create_WithBootDiagnostics")
def test_vm_create_with_boot_diagnostics(clients: ArmClients, resource_group: str, network: Network) -> None:
    diagnostics = {
        "bootDiagnostics": {
            "storageUri": "http://{existing-storage-account-name}.blob.core.windows.net",
            "enabled": True,
        }
    }
    body = _linux_with_ssh(new_nic(clients, resource_group, network), diagnosticsProfile=diagnostics)
    vm = _create(clients, resource_group, "myVM", body)
    assert_subset(vm["properties"], {"diagnosticsProfile": diagnostics, "provisioningState": "Succeeded"})


def _windows(nic_id: str, vm_size: str, account: str) -> dict[str, Any]:
    storage = {
        "imageReference": WINDOWS_IMAGE,
        "osDisk": {
            "caching": "ReadWrite",
            "managedDisk": {"storageAccountType": account},
            "name": f"myVMosdisk-{uuid.uuid4().hex[:6]}",
            "createOption": "FromImage",
        },
    }
    profile = {"adminUsername": "{your-username}", "computerName": "myVM", "adminPassword": "{your-password}"}
    body = _vm_body(nic_id, storage, profile)
    body["properties"]["hardwareProfile"]["vmSize"] = vm_size
    return body


@example("ComputeRP", "VirtualMachines_CreateOrUpdate", "VirtualMachine_Create_WithPasswordAuthentication")
def test_vm_create_with_password_authentication(
    clients: ArmClients, resource_group: str, network: Network
) -> None:
    nic_id = new_nic(clients, resource_group, network)
    vm = _create(clients, resource_group, "myVM", _windows(nic_id, "Standard_D1_v2", "Standard_LRS"))
    assert_subset(
        vm["properties"],
        {
            "osProfile": {"adminUsername": "{your-username}", "secrets": [], "computerName": "myVM"},
            "storageProfile": {
                "imageReference": WINDOWS_IMAGE,
                "osDisk": {
                    "osType": "Windows",
                    "createOption": "FromImage",
                    "managedDisk": {"storageAccountType": "Standard_LRS"},
                },
                "dataDisks": [],
            },
            "hardwareProfile": {"vmSize": "Standard_D1_v2"},
            "provisioningState": "Succeeded",
        },
    )
    assert "adminPassword" not in vm["properties"]["osProfile"]


@example("ComputeRP", "VirtualMachines_CreateOrUpdate", "VirtualMachine_Create_WithPremiumStorage")
def test_vm_create_with_premium_storage(clients: ArmClients, resource_group: str, network: Network) -> None:
    nic_id = new_nic(clients, resource_group, network)
    vm = _create(clients, resource_group, "myVM", _windows(nic_id, "Standard_DS1_v2", "Premium_LRS"))
    assert_subset(
        vm["properties"]["storageProfile"]["osDisk"],
        {"osType": "Windows", "managedDisk": {"storageAccountType": "Premium_LRS"}},
    )
    os_disk = clients.compute.disks.get(resource_group, vm["properties"]["storageProfile"]["osDisk"]["name"])
    assert os_disk.as_dict()["sku"] == {"name": "Premium_LRS", "tier": "Premium"}


@example("ComputeRP", "VirtualMachines_CreateOrUpdate", "VirtualMachine_Create_WithVMSizeProperties")
def test_vm_create_with_vm_size_properties(
    clients: ArmClients, resource_group: str, network: Network
) -> None:
    body = _windows(new_nic(clients, resource_group, network), "Standard_D4_v3", "Standard_LRS")
    body["properties"]["hardwareProfile"]["vmSizeProperties"] = {"vCPUsAvailable": 1, "vCPUsPerCore": 1}
    vm = _create(clients, resource_group, "myVM", body)
    assert_subset(
        vm["properties"]["hardwareProfile"],
        {"vmSize": "Standard_D4_v3", "vmSizeProperties": {"vCPUsAvailable": 1, "vCPUsPerCore": 1}},
    )
    # More vCPUs than the size has is refused, and the VM keeps what it had.
    body["properties"]["hardwareProfile"]["vmSizeProperties"] = {"vCPUsAvailable": 5}
    _refused(lambda: _create(clients, resource_group, "myVM", body), "InvalidParameter", "vCPUsAvailable")


@example(
    "ComputeRP", "VirtualMachines_Update", "VirtualMachine_Update_DetachDataDiskUsingToBeDetachedProperty"
)
def test_vm_update_detaches_a_disk_marked_to_be_detached(
    clients: ArmClients, resource_group: str, network: Network
) -> None:
    body = _windows_with_empty_disks(new_nic(clients, resource_group, network))
    created = _create(clients, resource_group, "myVM", body)
    first_disk = created["properties"]["storageProfile"]["dataDisks"][0]["name"]
    update = {"properties": dict(body["properties"])}
    update["properties"]["storageProfile"] = dict(body["properties"]["storageProfile"])
    update["properties"]["storageProfile"]["dataDisks"] = [
        {"diskSizeGB": 1023, "createOption": "Empty", "lun": 0, "toBeDetached": True},
        {"diskSizeGB": 1023, "createOption": "Empty", "lun": 1, "toBeDetached": False},
    ]
    vm = (
        clients.compute.virtual_machines.begin_update(resource_group, "myVM", update, api_version=COMPUTE_API)
        .result()
        .as_dict()
    )
    assert_subset(
        vm["properties"]["storageProfile"]["dataDisks"],
        [
            {
                "createOption": "Empty",
                "lun": 1,
                "diskSizeGB": 1023,
                "managedDisk": {"storageAccountType": "Standard_LRS"},
            }
        ],
    )
    detached = clients.compute.disks.get(resource_group, first_disk).as_dict()
    assert detached["properties"]["diskState"] == "Unattached" and "managedBy" not in detached


@example("ComputeRP", "VirtualMachines_Get", "VirtualMachine_Get")
def test_vm_get(clients: ArmClients, resource_group: str, network: Network) -> None:
    nic_id = new_nic(clients, resource_group, network)
    _create(clients, resource_group, "myVM", _linux_with_ssh(nic_id))
    vm = clients.compute.virtual_machines.get(resource_group, "myVM", api_version=COMPUTE_API).as_dict()
    assert_subset(
        vm,
        {
            "id": f"/subscriptions/{SUB}/resourceGroups/{resource_group}/providers/Microsoft.Compute/virtualMachines/myVM",
            "type": "Microsoft.Compute/virtualMachines",
            "name": "myVM",
            "location": WESTUS,
            "properties": {
                "hardwareProfile": {"vmSize": "Standard_D1_v2"},
                "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": True}}]},
                "provisioningState": "Succeeded",
            },
        },
    )
    os_disk = vm["properties"]["storageProfile"]["osDisk"]
    assert os_disk["diskSizeGB"] > 0 and os_disk["managedDisk"]["id"]


@example("ComputeRP", "VirtualMachines_Start", "VirtualMachine_Start_MaximumSet_Gen")
def test_vm_start(clients: ArmClients, resource_group: str, network: Network) -> None:
    _create(clients, resource_group, "myVM", _linux_with_ssh(new_nic(clients, resource_group, network)))
    operations = clients.compute.virtual_machines
    operations.begin_deallocate(resource_group, "myVM", api_version=COMPUTE_API).result()
    operations.begin_start(resource_group, "myVM", api_version=COMPUTE_API).result()
    view = operations.instance_view(resource_group, "myVM", api_version=COMPUTE_API).as_dict()
    assert view["statuses"][1]["code"] == "PowerState/running"


@example("ComputeRP", "VirtualMachines_PowerOff", "VirtualMachine_PowerOff_MaximumSet_Gen")
def test_vm_power_off(clients: ArmClients, resource_group: str, network: Network) -> None:
    _create(clients, resource_group, "myVM", _linux_with_ssh(new_nic(clients, resource_group, network)))
    operations = clients.compute.virtual_machines
    # skipShutdown=true: the emulated VM has no guest to shut down either way.
    operations.begin_power_off(resource_group, "myVM", skip_shutdown=True, api_version=COMPUTE_API).result()
    view = operations.instance_view(resource_group, "myVM", api_version=COMPUTE_API).as_dict()
    assert view["statuses"][1]["code"] == "PowerState/stopped"


def _power_state(clients: ArmClients, rg: str) -> str:
    view = clients.compute.virtual_machines.instance_view(rg, "myVM", api_version=COMPUTE_API).as_dict()
    return str(view["statuses"][1]["code"])


@example("ComputeRP", "VirtualMachines_PowerOff", "VirtualMachine_PowerOff_MinimumSet_Gen")
def test_vm_power_off_minimum(clients: ArmClients, resource_group: str, network: Network) -> None:
    _create(clients, resource_group, "myVM", _linux_with_ssh(new_nic(clients, resource_group, network)))
    clients.compute.virtual_machines.begin_power_off(resource_group, "myVM", api_version=COMPUTE_API).result()
    assert _power_state(clients, resource_group) == "PowerState/stopped"


@example("ComputeRP", "VirtualMachines_Deallocate", "VirtualMachine_Deallocate_MinimumSet_Gen")
def test_vm_deallocate(clients: ArmClients, resource_group: str, network: Network) -> None:
    _create(clients, resource_group, "myVM", _linux_with_ssh(new_nic(clients, resource_group, network)))
    clients.compute.virtual_machines.begin_deallocate(
        resource_group, "myVM", api_version=COMPUTE_API
    ).result()
    assert _power_state(clients, resource_group) == "PowerState/deallocated"


@example("ComputeRP", "VirtualMachines_Start", "VirtualMachine_Start_MinimumSet_Gen")
def test_vm_start_minimum(clients: ArmClients, resource_group: str, network: Network) -> None:
    _create(clients, resource_group, "myVM", _linux_with_ssh(new_nic(clients, resource_group, network)))
    operations = clients.compute.virtual_machines
    operations.begin_power_off(resource_group, "myVM", api_version=COMPUTE_API).result()
    operations.begin_start(resource_group, "myVM", api_version=COMPUTE_API).result()
    assert _power_state(clients, resource_group) == "PowerState/running"


@example("ComputeRP", "VirtualMachines_Restart", "VirtualMachine_Restart_MinimumSet_Gen")
def test_vm_restart(clients: ArmClients, resource_group: str, network: Network) -> None:
    _create(clients, resource_group, "myVM", _linux_with_ssh(new_nic(clients, resource_group, network)))
    clients.compute.virtual_machines.begin_restart(resource_group, "myVM", api_version=COMPUTE_API).result()
    assert _power_state(clients, resource_group) == "PowerState/running"


@example("ComputeRP", "VirtualMachines_InstanceView", "VirtualMachine_Get_InstanceView")
def test_vm_instance_view(clients: ArmClients, resource_group: str, network: Network) -> None:
    """The guest's own report (OS name, agent and extension handlers, patch status) comes from the
    guest agent, which is not emulated; the transcription compares what the platform reports."""
    created = _create(
        clients, resource_group, "myVM", _windows_with_empty_disks(new_nic(clients, resource_group, network))
    )
    view = clients.compute.virtual_machines.instance_view(
        resource_group, "myVM", api_version=COMPUTE_API
    ).as_dict()
    disks = created["properties"]["storageProfile"]
    succeeded = {
        "code": "ProvisioningState/succeeded",
        "level": "Info",
        "displayStatus": "Provisioning succeeded",
    }
    assert_subset(
        view,
        {
            "computerName": "myVM",
            "hyperVGeneration": "V1",
            "disks": [
                {"name": d["name"], "statuses": [succeeded]} for d in [disks["osDisk"], *disks["dataDisks"]]
            ],
            "statuses": [
                succeeded,
                {"code": "PowerState/running", "level": "Info", "displayStatus": "VM running"},
            ],
        },
    )


@example(
    "ComputeRP", "VirtualMachines_Deallocate", "VirtualMachine_Deallocate_MaximumSet_Gen", Outcome.REFUSED
)
def test_vm_deallocate_with_hibernation(
    clients: ArmClients, rest: Rest, resource_group: str, network: Network
) -> None:
    _create(clients, resource_group, "myVM", _linux_with_ssh(new_nic(clients, resource_group, network)))
    path = rest.url(resource_group, "Microsoft.Compute/virtualMachines/myVM/deallocate")
    response = rest.http.post(path, params={"api-version": COMPUTE_API, "hibernate": "true"})
    assert "hibernate" in rest.error(response, 400, "NotSupported")["message"]


def _availability_set(clients: ArmClients, rg: str, name: str, sku: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "location": WESTUS,
        "properties": {"platformFaultDomainCount": 2, "platformUpdateDomainCount": 20},
    }
    if sku:
        body["sku"] = {"name": sku}
    result: dict[str, Any] = clients.compute.availability_sets.create_or_update(
        rg, name, body, api_version=COMPUTE_API
    ).as_dict()
    return result


@example("ComputeRP", "AvailabilitySets_CreateOrUpdate", "AvailabilitySet_Create")
def test_availability_set_create(clients: ArmClients, resource_group: str) -> None:
    created = _availability_set(clients, resource_group, "myAvailabilitySet")
    assert_subset(
        created,
        {
            "sku": {"name": "Classic"},
            "name": "myAvailabilitySet",
            "properties": {"platformFaultDomainCount": 2, "platformUpdateDomainCount": 20},
            "location": WESTUS,
            "type": "Microsoft.Compute/availabilitySets",
            "id": f"/subscriptions/{SUB}/resourceGroups/{resource_group}/providers/Microsoft.Compute/availabilitySets/myAvailabilitySet",
        },
    )
    # Its domain counts are fixed once made.
    with pytest.raises(HttpResponseError) as changed:
        clients.compute.availability_sets.create_or_update(
            resource_group,
            "myAvailabilitySet",
            {"location": WESTUS, "properties": {"platformFaultDomainCount": 3}},
            api_version=COMPUTE_API,
        )
    assert changed.value.status_code == 409 and changed.value.error is not None
    assert changed.value.error.code == "PropertyChangeNotAllowed"


@example("ComputeRP", "VirtualMachines_CreateOrUpdate", "VirtualMachine_Create_InAnAvailabilitySet")
def test_vm_create_in_an_availability_set(clients: ArmClients, resource_group: str, network: Network) -> None:
    """The example names an existing set; a VM with managed disks joins an Aligned one, so the
    transcription makes it Aligned (a Classic set is refused, below)."""
    classic = _availability_set(clients, resource_group, "classicSet")
    body = _windows_with_empty_disks(new_nic(clients, resource_group, network))
    body["properties"]["availabilitySet"] = {"id": classic["id"]}
    with pytest.raises(HttpResponseError) as refused:
        _create(clients, resource_group, "myVM", body)
    assert refused.value.status_code == 409 and "'Aligned' SKU" in str(refused.value)

    aligned = _availability_set(clients, resource_group, "myAvailabilitySet", "Aligned")
    body["properties"]["availabilitySet"] = {"id": aligned["id"]}
    vm = _create(clients, resource_group, "myVM", body)
    assert_subset(vm["properties"]["availabilitySet"], {"id": aligned["id"]})
    listed = clients.compute.availability_sets.get(
        resource_group, "myAvailabilitySet", api_version=COMPUTE_API
    ).as_dict()
    assert [m["id"].lower() for m in listed["properties"]["virtualMachines"]] == [vm["id"].lower()]
    # A set with a VM in it stays; a VM does not change sets.
    with pytest.raises(HttpResponseError) as busy:
        clients.compute.availability_sets.delete(resource_group, "myAvailabilitySet", api_version=COMPUTE_API)
    assert busy.value.status_code == 409
    body["properties"]["availabilitySet"] = {"id": classic["id"]}
    with pytest.raises(HttpResponseError) as moved:
        _create(clients, resource_group, "myVM", body)
    assert moved.value.error is not None and moved.value.error.code == "PropertyChangeNotAllowed"


@example("ComputeRP", "VirtualMachines_CreateOrUpdate", "VirtualMachine_Create_WithUserData")
def test_vm_create_with_user_data(clients: ArmClients, resource_group: str, network: Network) -> None:
    body = _windows_with_empty_disks(new_nic(clients, resource_group, network))
    body["properties"]["userData"] = "RXhhbXBsZSBVc2VyRGF0YQ=="
    vm = _create(clients, resource_group, "myVM", body)
    assert vm["properties"].get("userData") is None  # returned only when asked for
    read = clients.compute.virtual_machines.get(
        resource_group, "myVM", expand="userData", api_version=COMPUTE_API
    ).as_dict()
    assert read["properties"]["userData"] == "RXhhbXBsZSBVc2VyRGF0YQ=="
    body["properties"]["userData"] = "not base64!"
    _refused(lambda: _create(clients, resource_group, "myVM", body), "InvalidParameter", "userData")


@example("ComputeRP", "VirtualMachines_CreateOrUpdate", "VirtualMachine_Create_WithADiffOsDisk")
def test_vm_create_with_an_ephemeral_os_disk(
    clients: ArmClients, resource_group: str, network: Network, rest: Rest
) -> None:
    """The example's marketplace `plan` (a data-science image) is refused as not emulated, so the
    transcription uses a plain Windows image on the example's size: the 30 GB `smalldisk` one, since the
    OS disk must fit the size's cache (43 GB on Standard_DS1_v2; the 127 GB image does not)."""
    body = _windows_with_empty_disks(new_nic(clients, resource_group, network))
    body["properties"]["hardwareProfile"]["vmSize"] = "Standard_DS1_v2"
    storage = body["properties"]["storageProfile"]
    storage["imageReference"] = dict(WINDOWS_IMAGE, sku="2016-Datacenter-smalldisk")
    storage["dataDisks"] = []
    storage["osDisk"] = {
        "caching": "ReadOnly",
        "diffDiskSettings": {"option": "Local"},
        "managedDisk": {"storageAccountType": "Standard_LRS"},
        "createOption": "FromImage",
        "name": "myVMosdisk",
    }
    vm = _create(clients, resource_group, "myVM", body)
    assert_subset(
        vm["properties"]["storageProfile"]["osDisk"],
        {
            "osType": "Windows",
            "caching": "ReadOnly",
            "diffDiskSettings": {"option": "Local", "placement": "CacheDisk"},
            "managedDisk": {"storageAccountType": "Standard_LRS"},
            "createOption": "FromImage",
            "name": "myVMosdisk",
        },
    )
    # It lives on the host: no managed disk resource, and the VM is stopped, never deallocated.
    assert "id" not in vm["properties"]["storageProfile"]["osDisk"]["managedDisk"]
    assert [d.name for d in clients.compute.disks.list_by_resource_group(resource_group)] == []
    path = rest.url(resource_group, "Microsoft.Compute/virtualMachines/myVM/deallocate")
    refused = rest.http.post(path, params={"api-version": COMPUTE_API})
    assert "ephemeral OS disk" in rest.error(refused, 409, "OperationNotAllowed")["message"]
    # The OS disk must fit the placement's local storage: 43 GB of cache, 7 GB of resource disk.
    storage["osDisk"]["diskSizeGB"] = 44
    too_big = rest.request(
        "PUT", rest.url(resource_group, "Microsoft.Compute/virtualMachines/vm2"), COMPUTE_API, body
    )
    assert rest.error(too_big, 400, "NotSupported")["message"] == (
        "OS disk of Ephemeral VM with size greater than 43 GB is not allowed for VM size Standard_DS1_v2 when "
        "the DiffDiskPlacement is CacheDisk."
    )
    del storage["osDisk"]["diskSizeGB"]
    storage["osDisk"]["diffDiskSettings"] = {"option": "Local", "placement": "ResourceDisk"}
    on_temp = rest.request(
        "PUT", rest.url(resource_group, "Microsoft.Compute/virtualMachines/vm2"), COMPUTE_API, body
    )
    assert "greater than 7 GB" in rest.error(on_temp, 400, "NotSupported")["message"]
    storage["osDisk"]["diffDiskSettings"] = {"option": "Local"}
    # Read-write caching is refused.
    storage["osDisk"]["caching"] = "ReadWrite"
    _refused(lambda: _create(clients, resource_group, "otherVM", body), "InvalidParameter", "ReadOnly")


def _ephemeral(nic_id: str, vm_size: str, placement: str) -> dict[str, Any]:
    body = _windows(nic_id, vm_size, "Standard_LRS")
    storage = body["properties"]["storageProfile"]
    storage["imageReference"] = dict(WINDOWS_IMAGE, sku="2016-Datacenter-smalldisk")
    storage["osDisk"] = {
        "caching": "ReadOnly",
        "diffDiskSettings": {"option": "Local", "placement": placement},
        "managedDisk": {"storageAccountType": "Standard_LRS"},
        "createOption": "FromImage",
        "name": "myVMosdisk",
    }
    return body


@example(
    "ComputeRP",
    "VirtualMachines_CreateOrUpdate",
    "VirtualMachine_Create_WithADiffOsDiskUsingDiffDiskPlacementAsCacheDisk",
)
def test_vm_create_with_an_ephemeral_os_disk_on_the_cache_disk(
    clients: ArmClients, resource_group: str, network: Network
) -> None:
    """As the ephemeral OS disk example: no marketplace `plan`, and the 30 GB smalldisk Windows image
    the example's size's 43 GB cache holds."""
    body = _ephemeral(new_nic(clients, resource_group, network), "Standard_DS1_v2", "CacheDisk")
    vm = _create(clients, resource_group, "myVM", body)
    assert_subset(
        vm["properties"],
        {
            "osProfile": {"adminUsername": "{your-username}", "secrets": [], "computerName": "myVM"},
            "storageProfile": {
                "osDisk": {
                    "osType": "Windows",
                    "caching": "ReadOnly",
                    "diffDiskSettings": {"option": "Local", "placement": "CacheDisk"},
                    "managedDisk": {"storageAccountType": "Standard_LRS"},
                    "createOption": "FromImage",
                    "name": "myVMosdisk",
                },
                "dataDisks": [],
            },
            "hardwareProfile": {"vmSize": "Standard_DS1_v2"},
            "provisioningState": "Succeeded",
        },
    )


@example(
    "ComputeRP",
    "VirtualMachines_CreateOrUpdate",
    "VirtualMachine_Create_WithADiffOsDiskUsingDiffDiskPlacementAsResourceDisk",
)
def test_vm_create_with_an_ephemeral_os_disk_on_the_resource_disk(
    clients: ArmClients, resource_group: str, network: Network, rest: Rest
) -> None:
    """The example's Standard_DS1_v2 has a 7 GB resource disk, smaller than any published image: Azure
    refuses it (checked here with its text), so the transcription places the 30 GB smalldisk image on
    Standard_D4s_v3, whose resource disk holds 32 GB. No marketplace `plan`, as above."""
    nic_id = new_nic(clients, resource_group, network)
    example_size = rest.request(
        "PUT",
        rest.url(resource_group, "Microsoft.Compute/virtualMachines/myVM"),
        COMPUTE_API,
        _ephemeral(nic_id, "Standard_DS1_v2", "ResourceDisk"),
    )
    assert rest.error(example_size, 400, "NotSupported")["message"] == (
        "OS disk of Ephemeral VM with size greater than 7 GB is not allowed for VM size Standard_DS1_v2 when the "
        "DiffDiskPlacement is ResourceDisk."
    )
    vm = _create(clients, resource_group, "myVM", _ephemeral(nic_id, "Standard_D4s_v3", "ResourceDisk"))
    assert_subset(
        vm["properties"]["storageProfile"]["osDisk"],
        {
            "osType": "Windows",
            "caching": "ReadOnly",
            "diffDiskSettings": {"option": "Local", "placement": "ResourceDisk"},
            "managedDisk": {"storageAccountType": "Standard_LRS"},
            "createOption": "FromImage",
            "name": "myVMosdisk",
        },
    )
    assert vm["properties"]["provisioningState"] == "Succeeded"


@example("ComputeRP", "VirtualMachines_CreateOrUpdate", "VirtualMachine_Create_WithManagedBootDiagnostics")
def test_vm_create_with_managed_boot_diagnostics(
    clients: ArmClients, resource_group: str, network: Network
) -> None:
    body = _windows(new_nic(clients, resource_group, network), "Standard_D1_v2", "Standard_LRS")
    body["properties"]["diagnosticsProfile"] = {"bootDiagnostics": {"enabled": True}}
    vm = _create(clients, resource_group, "myVM", body)
    assert_subset(
        vm["properties"],
        {
            "osProfile": {
                "adminUsername": "{your-username}",
                "secrets": [],
                "computerName": "myVM",
                "windowsConfiguration": {"provisionVMAgent": True, "enableAutomaticUpdates": True},
            },
            "storageProfile": {
                "imageReference": WINDOWS_IMAGE,
                "osDisk": {
                    "osType": "Windows",
                    "caching": "ReadWrite",
                    "createOption": "FromImage",
                    "managedDisk": {"storageAccountType": "Standard_LRS"},
                },
                "dataDisks": [],
            },
            "diagnosticsProfile": {"bootDiagnostics": {"enabled": True}},
            "hardwareProfile": {"vmSize": "Standard_D1_v2"},
            "provisioningState": "Succeeded",
        },
    )


@example(
    "ComputeRP",
    "VirtualMachines_CreateOrUpdate",
    "VirtualMachine_Create_WithNetworkInterfaceConfiguration",
    Outcome.REFUSED,
)
def test_vm_create_with_a_network_interface_configuration(clients: ArmClients, resource_group: str) -> None:
    body = _linux_with_ssh("unused")
    body["properties"]["networkProfile"] = {
        "networkApiVersion": "2020-11-01",
        "networkInterfaceConfigurations": [{"name": "{nic-config-name}", "properties": {"primary": True}}],
    }
    _refused(
        lambda: _create(clients, resource_group, "myVM", body),
        "NotSupported",
        "networkInterfaceConfigurations",
    )


@example(
    "ComputeRP",
    "VirtualMachines_CreateOrUpdate",
    "VirtualMachine_Create_WithDataDisksFromSourceResource",
    Outcome.REFUSED,
)
def test_vm_create_with_data_disks_copied_from_a_source(
    clients: ArmClients, resource_group: str, network: Network
) -> None:
    body = _windows_with_empty_disks(new_nic(clients, resource_group, network))
    source = f"/subscriptions/{SUB}/resourceGroups/{resource_group}/providers/Microsoft.Compute/snapshots/{{existing-snapshot-name}}"
    body["properties"]["storageProfile"]["dataDisks"] = [
        {"createOption": "Copy", "lun": 0, "sourceResource": {"id": source}}
    ]
    _refused(lambda: _create(clients, resource_group, "myVM", body), "InvalidParameter", "createOption")


# --- extensions ----------------------------------------------------------------------------------


def _custom_script(clients: ArmClients, rg: str, vm: str, name: str, command: str) -> dict[str, Any]:
    body = {
        "location": WESTUS,
        "properties": {
            "publisher": "Microsoft.Azure.Extensions",
            "type": "CustomScript",
            "typeHandlerVersion": "2.1",
            "autoUpgradeMinorVersion": True,
            "settings": {"commandToExecute": command},
        },
    }
    result: dict[str, Any] = (
        clients.compute.virtual_machine_extensions.begin_create_or_update(
            rg, vm, name, body, api_version=COMPUTE_API
        )
        .result()
        .as_dict()
    )
    return result


@pytest.fixture()
def vm(clients: ArmClients, resource_group: str, network: Network) -> str:
    _create(clients, resource_group, "myVM", _linux_with_ssh(new_nic(clients, resource_group, network)))
    return "myVM"


@example(
    "ComputeRP",
    "VirtualMachineExtensions_CreateOrUpdate",
    "VirtualMachineExtension_CreateOrUpdate_MaximumSet_Gen",
    Outcome.REFUSED,
)
def test_extension_of_another_handler(clients: ArmClients, resource_group: str, vm: str) -> None:
    body = {
        "location": WESTUS,
        "properties": {
            "autoUpgradeMinorVersion": True,
            "publisher": "extPublisher",
            "type": "extType",
            "typeHandlerVersion": "1.2",
            "settings": {},
        },
    }
    _refused(
        lambda: clients.compute.virtual_machine_extensions.begin_create_or_update(
            resource_group, vm, "myVMExtension", body, api_version=COMPUTE_API
        ),
        "NotSupported",
        "extPublisher/extType",
    )


@example("ComputeRP", "VirtualMachineExtensions_Update", "VirtualMachineExtension_Update", Outcome.REFUSED)
def test_extension_update_to_another_handler(clients: ArmClients, resource_group: str, vm: str) -> None:
    _custom_script(clients, resource_group, vm, "myVMExtension", "true")
    update = {
        "properties": {
            "autoUpgradeMinorVersion": True,
            "publisher": "extPublisher",
            "type": "extType",
            "typeHandlerVersion": "1.2",
            "settings": {"UserName": "xyz@microsoft.com"},
            "suppressFailures": True,
        }
    }
    _refused(
        lambda: clients.compute.virtual_machine_extensions.begin_update(
            resource_group, vm, "myVMExtension", update, api_version=COMPUTE_API
        ),
        "NotSupported",
        "suppressFailures",  # the first of its two unemulated asks (the other: another handler)
    )


@example("ComputeRP", "VirtualMachineExtensions_Get", "VirtualMachineExtension_Get_MinimumSet_Gen")
def test_extension_get(clients: ArmClients, resource_group: str, vm: str) -> None:
    _custom_script(clients, resource_group, vm, "myVMExtension", "true")
    extension = clients.compute.virtual_machine_extensions.get(
        resource_group, vm, "myVMExtension", api_version=COMPUTE_API
    ).as_dict()
    assert_subset(
        extension,
        {
            "name": "myVMExtension",
            "type": "Microsoft.Compute/virtualMachines/extensions",
            "properties": {
                "publisher": "Microsoft.Azure.Extensions",
                "type": "CustomScript",
                "typeHandlerVersion": "2.1",
                "provisioningState": "Succeeded",
            },
        },
    )


@example("ComputeRP", "VirtualMachineExtensions_List", "VirtualMachineExtension_List_MinimumSet_Gen")
def test_extension_list(clients: ArmClients, resource_group: str, vm: str) -> None:
    _custom_script(clients, resource_group, vm, "myVMExtension", "true")
    listed = clients.compute.virtual_machine_extensions.list(
        resource_group, vm, api_version=COMPUTE_API
    ).as_dict()
    assert [e["name"] for e in listed["value"]] == ["myVMExtension"]


@example("ComputeRP", "VirtualMachineExtensions_Delete", "VirtualMachineExtension_Delete_MinimumSet_Gen")
def test_extension_delete(clients: ArmClients, resource_group: str, vm: str) -> None:
    _custom_script(clients, resource_group, vm, "myVMExtension", "true")
    operations = clients.compute.virtual_machine_extensions
    operations.begin_delete(resource_group, vm, "myVMExtension", api_version=COMPUTE_API).result()
    with pytest.raises(ResourceNotFoundError):
        operations.get(resource_group, vm, "myVMExtension", api_version=COMPUTE_API)


@pytest.mark.parametrize(
    ("size", "status", "code"),
    [
        ("Standard_D4as_v5", 409, "SkuNotAvailable"),  # listed with a Location restriction
        ("Standard_E16s_v5", 409, "SkuNotAvailable"),  # not offered in the region
        ("Standard_Q99_v9", 400, "NotSupported"),  # no such size here
    ],
)
def test_a_vm_is_made_only_in_a_size_the_region_offers(
    clients: ArmClients, resource_group: str, size: str, status: int, code: str
) -> None:
    westeurope = make_network(clients, resource_group, "westeurope")
    body = _windows(new_nic(clients, resource_group, westeurope), size, "Standard_LRS")
    body["location"] = "westeurope"
    with pytest.raises(HttpResponseError) as refused:
        _create(clients, resource_group, "myVM", body)
    assert refused.value.status_code == status and refused.value.error is not None
    assert refused.value.error.code == code
    assert [d.name for d in clients.compute.disks.list_by_resource_group(resource_group)] == []
