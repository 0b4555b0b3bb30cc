"""Disks, snapshots and VMs through the real azure-mgmt-compute client against the local ARM endpoint."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.migration import resource_kinds as kinds
from shared.migration import resources as ops
from shared.migration.tags import ResourceTags
from shared.platform.arm_clients import ArmClients
from shared.platform.arm_errors import ArmConflict, ArmRequestFailed
from shared.replication.replica_disks import ReplicaDiskSpec, create_replica_disk
from shared.replication.vhd import MIB
from tests.arm.conftest import LOCATION, STORAGE_ACCOUNT_ID, LocalArmEndpoint
from tests.support import arm_operations as support

pytestmark = pytest.mark.integration


def replica_with_data(container: ContainerClient, size: int, pattern: bytes, offset: int) -> tuple[str, str]:
    """A fixed-VHD page blob (the product's replica writer) with `pattern` written at `offset`."""
    spec = ReplicaDiskSpec(machine_id="m-1", disk_id=f"d-{uuid.uuid4().hex[:6]}", disk_size=size)
    replica = create_replica_disk(container, spec)
    container.get_blob_client(replica.blob_name).upload_page(pattern, offset=offset, length=len(pattern))
    return replica.url, replica.blob_name


def raw_image(local_arm: LocalArmEndpoint, clients: ArmClients, resource_group: str, name: str) -> Path:
    unique_id = clients.compute.disks.get(resource_group, name).properties.unique_id
    return local_arm.data_dir / "disks" / f"{unique_id}.raw"


def test_import_copy_snapshot_and_delete(
    clients: ArmClients,
    resource_group: str,
    tags: ResourceTags,
    container: ContainerClient,
    local_arm: LocalArmEndpoint,
) -> None:
    pattern = bytes(range(256)) * 8
    url, _ = replica_with_data(container, 3 * MIB, pattern, offset=MIB)

    disk = ops.import_disk(
        clients,
        resource_group,
        "os-copy",
        location=LOCATION,
        source_uri=url,
        storage_account_id=STORAGE_ACCOUNT_ID,
        os_type="Linux",
        tags=tags,
    )
    assert disk.size_bytes == 3 * MIB
    got = clients.compute.disks.get(resource_group, "os-copy")
    assert got.properties.disk_state == "Unattached"
    assert got.properties.creation_data.source_uri == url
    assert got.tags == tags.to_arm()
    image = raw_image(local_arm, clients, resource_group, "os-copy")
    with image.open("rb") as handle:
        assert handle.read(MIB) == bytes(MIB)
        assert handle.read(len(pattern)) == pattern
    assert image.stat().st_size == 3 * MIB  # the footer is not disk data
    # Sparse: only the written pages take space.
    assert image.stat().st_blocks * 512 < MIB

    snapshot = support.create_snapshot(
        clients, resource_group, "os-snap", location=LOCATION, source_disk_id=disk.id, tags=tags
    )
    assert clients.compute.snapshots.get(resource_group, "os-snap").properties.incremental is True
    copy = support.copy_disk(
        clients, resource_group, "os-hydrate", location=LOCATION, source_id=snapshot.id, tags=tags
    )
    assert copy.size_bytes == 3 * MIB
    copied = clients.compute.disks.get(resource_group, "os-hydrate")
    assert copied.properties.creation_data.source_resource_id == snapshot.id
    assert copied.properties.os_type == "Linux"
    copy_image = raw_image(local_arm, clients, resource_group, "os-hydrate")
    assert copy_image.read_bytes() == image.read_bytes()

    names = {d.name for d in clients.compute.disks.list_by_resource_group(resource_group)}
    assert names == {"os-copy", "os-hydrate"}
    for arm_id in (copy.id, snapshot.id, disk.id):
        kinds.delete_resource(clients, arm_id)
    assert not image.exists() and not copy_image.exists()
    with pytest.raises(ResourceNotFoundError):
        clients.compute.disks.get(resource_group, "os-copy")


@pytest.mark.parametrize(
    ("damage", "code"),
    [("cookie", "BadRequest"), ("checksum", "BadRequest"), ("size", "InvalidParameter")],
)
def test_import_rejects_a_blob_that_is_not_an_importable_fixed_vhd(
    clients: ArmClients,
    resource_group: str,
    tags: ResourceTags,
    container: ContainerClient,
    damage: str,
    code: str,
) -> None:
    blob = container.get_blob_client(f"bad-{damage}.vhd")
    if damage == "size":
        # A valid-looking footer on a data area that is not a whole number of MiB.
        from shared.replication.vhd import VhdFooter

        size = MIB + 512 * 3
        footer = VhdFooter(
            timestamp=0,
            original_size=size,
            current_size=size,
            geometry={"cylinders": 1, "heads": 1, "sectors_per_track": 1},
            unique_id=uuid.uuid4(),
        ).to_bytes()
        blob.create_page_blob(size + 512)
        blob.upload_page(footer, offset=size, length=512)
    else:
        _, blob_name = replica_with_data(container, MIB, b"\x01" * 512, 0)
        blob = container.get_blob_client(blob_name)
        footer = bytearray(blob.download_blob(offset=MIB, length=512).readall())
        if damage == "cookie":
            footer[0:8] = b"notavhd!"
        else:
            footer[64] ^= 0xFF
        blob.upload_page(bytes(footer), offset=MIB, length=512)
    with pytest.raises(ArmRequestFailed) as error:
        ops.import_disk(
            clients,
            resource_group,
            f"bad-{damage}",
            location=LOCATION,
            source_uri=blob.url,
            storage_account_id=STORAGE_ACCOUNT_ID,
            tags=tags,
        )
    assert error.value.status_code == 400
    assert error.value.arm_code == code
    assert error.value.target == "sourceUri"
    assert list(clients.compute.disks.list_by_resource_group(resource_group)) == []


def _vm_network(clients: ArmClients, rg: str, tags: ResourceTags, suffix: str) -> ops.NetworkInterfaceRef:
    vnet = ops.ensure_virtual_network(
        clients,
        rg,
        "vnet",
        location=LOCATION,
        address_prefix="10.20.0.0/24",
        subnet_name="default",
        subnet_prefix="10.20.0.0/26",
        tags=tags,
    )
    return ops.ensure_network_interface(
        clients,
        rg,
        f"nic-{suffix}",
        location=LOCATION,
        subnet_id=vnet.subnet_id,
        network_security_group_id=None,
        tags=tags,
    )


def _empty_disk(clients: ArmClients, rg: str, name: str) -> str:
    from azure.mgmt.compute import models as cm

    disk = clients.compute.disks.begin_create_or_update(
        rg,
        name,
        cm.Disk(
            location=LOCATION,
            properties=cm.DiskProperties(
                creation_data=cm.CreationData(create_option="Empty"), disk_size_gb=1
            ),
        ),
    ).result()
    return str(disk.id)


def test_vm_from_attached_disks_and_what_attachment_forbids(
    clients: ArmClients, resource_group: str, tags: ResourceTags
) -> None:
    nic = _vm_network(clients, resource_group, tags, "a")
    os_disk = _empty_disk(clients, resource_group, "vm-os")
    data_disk = _empty_disk(clients, resource_group, "vm-data")

    vm = ops.ensure_vm_from_disks(
        clients,
        resource_group,
        "vm-a",
        location=LOCATION,
        size="Standard_B2s",
        nic_id=nic.id,
        os_disk_id=os_disk,
        os_type="Linux",
        data_disk_ids=[data_disk],
        tags=tags,
    )
    got = clients.compute.virtual_machines.get(resource_group, "vm-a")
    assert got.properties.vm_id == vm.vm_id
    assert got.properties.storage_profile.data_disks[0].lun == 0
    os_view = clients.compute.disks.get(resource_group, "vm-os")
    assert os_view.managed_by == vm.id and os_view.properties.disk_state == "Attached"
    nic_view = clients.network.network_interfaces.get(resource_group, "nic-a")
    assert nic_view.properties.virtual_machine.id == vm.id

    with pytest.raises(ArmConflict) as attached:
        kinds.delete_resource(clients, data_disk)
    assert attached.value.status_code == 409 and attached.value.arm_code == "OperationNotAllowed"
    with pytest.raises(ArmConflict) as nic_in_use:
        kinds.delete_resource(clients, nic.id)
    assert nic_in_use.value.arm_code == "NicInUse" and nic_in_use.value.status_code == 400

    other_nic = _vm_network(clients, resource_group, tags, "b")
    spare = _empty_disk(clients, resource_group, "spare-os")
    with pytest.raises(ArmConflict) as twice:
        ops.ensure_vm_from_disks(
            clients,
            resource_group,
            "vm-b",
            location=LOCATION,
            size="Standard_B2s",
            nic_id=other_nic.id,
            os_disk_id=spare,
            os_type="Linux",
            data_disk_ids=[data_disk],
            tags=tags,
        )
    assert "already attached" in twice.value.message

    clients.compute.virtual_machines.begin_deallocate(resource_group, "vm-a").result()
    statuses = clients.compute.virtual_machines.instance_view(resource_group, "vm-a").statuses
    assert [s.code for s in statuses] == ["ProvisioningState/succeeded", "PowerState/deallocated"]
    assert clients.compute.disks.get(resource_group, "vm-os").properties.disk_state == "Reserved"

    kinds.delete_resource(clients, vm.id)
    # Detach is the default: the disks and the NIC stay, now free.
    assert clients.compute.disks.get(resource_group, "vm-data").properties.disk_state == "Unattached"
    for arm_id in (nic.id, data_disk, os_disk):
        kinds.delete_resource(clients, arm_id)


def test_helper_vm_takes_its_os_disk_and_nic_with_it(
    clients: ArmClients, resource_group: str, tags: ResourceTags
) -> None:
    nic = _vm_network(clients, resource_group, tags, "helper")
    data_disk = _empty_disk(clients, resource_group, "to-prepare")
    helper = ops.ensure_helper_vm(
        clients,
        resource_group,
        "helper",
        location=LOCATION,
        size="Standard_B2s",
        nic_id=nic.id,
        data_disk_ids=[data_disk],
        admin_username="azureuser",
        ssh_public_key="ssh-rsa AAAAB3NzaC1yc2E test",
        tags=tags,
    )
    os_disk_id = clients.compute.virtual_machines.get(
        resource_group, "helper"
    ).properties.storage_profile.os_disk.managed_disk.id
    assert os_disk_id.lower().startswith(
        f"{helper.id.rsplit('/providers/', 1)[0]}/providers/microsoft.compute/disks/helper_osdisk".lower()
    )
    kinds.delete_resource(clients, helper.id)
    names = {d.name for d in clients.compute.disks.list_by_resource_group(resource_group)}
    assert names == {"to-prepare"}
    assert [n.name for n in clients.network.network_interfaces.list(resource_group)] == []
