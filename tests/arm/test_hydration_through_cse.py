"""The hydration chain end to end on the local ARM endpoint: replica -> Import -> snapshot -> copy ->
helper VM -> Custom Script Extension running the real toolkit on the copy's loop device -> report blob.

This is the shape of hydration in production, with real protocols everywhere except the VM itself (the script runs on this
host, standing in for the helper's OS). It needs root and the hydration test tools.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.storage.blob import BlobSasPermissions, ContainerClient, generate_blob_sas

from devhost.emulators import AZURITE_ACCOUNT, AZURITE_KEY
from shared.migration import resources as ops
from shared.migration.tags import ResourceTags
from shared.platform.arm_clients import ArmClients
from shared.replication.replica_disks import ReplicaDiskSpec, create_replica_disk
from tests.arm.conftest import LOCATION, STORAGE_ACCOUNT_ID, LocalArmEndpoint
from tests.hydration.conftest import NEEDED_TOOLS, REPO, SYSTEM_PYTHON, debugfs_cat
from tests.hydration.guests import GuestSpec
from tests.hydration.layouts import single_root
from tests.support import arm_operations as support

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]

CHUNK = 4 * 1024 * 1024


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the disk is attached as a loop device and mounted by the toolkit"
    missing = [tool for tool in NEEDED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing tools {missing}: run scripts/install-system-deps.sh"
    if not os.path.exists(SYSTEM_PYTHON):
        return "needs Debian's /usr/bin/python3 (the helper VM's interpreter)"
    return None


def _sas(container: ContainerClient, name: str, permission: BlobSasPermissions) -> str:
    sas = generate_blob_sas(
        AZURITE_ACCOUNT,
        container.container_name,
        name,
        account_key=AZURITE_KEY,
        permission=permission,
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"{container.get_blob_client(name).url}?{sas}"


def _toolkit_tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(
            REPO / "hydration",
            arcname="hydration",
            filter=lambda info: None if "__pycache__" in info.name else info,
        )
    return buffer.getvalue()


def _upload_as_replica(container: ContainerClient, image: Path) -> str:
    size = image.stat().st_size
    replica = create_replica_disk(
        container, ReplicaDiskSpec(machine_id="m-hyd", disk_id="os", disk_size=size)
    )
    blob = container.get_blob_client(replica.blob_name)
    with image.open("rb") as source:
        offset = 0
        while chunk := source.read(CHUNK):
            if chunk.strip(b"\0"):
                padded = chunk.ljust(-(-len(chunk) // 512) * 512, b"\0")
                blob.upload_page(padded, offset=offset, length=len(padded))
            offset += len(chunk)
    return replica.url


def _image_of(local_arm: LocalArmEndpoint, clients: ArmClients, rg: str, name: str) -> Path:
    unique_id = clients.compute.disks.get(rg, name).properties.unique_id
    return local_arm.data_dir / "disks" / f"{unique_id}.raw"


@pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))
def test_the_toolkit_prepares_a_copy_through_the_extension(
    clients: ArmClients,
    resource_group: str,
    tags: ResourceTags,
    container: ContainerClient,
    local_arm: LocalArmEndpoint,
    tmp_path: Path,
) -> None:
    layout = single_root(tmp_path, GuestSpec("ubuntu", "20.04"))
    url = _upload_as_replica(container, layout.disk)

    imported = ops.import_disk(
        clients,
        resource_group,
        "rp-os",
        location=LOCATION,
        source_uri=url,
        storage_account_id=STORAGE_ACCOUNT_ID,
        os_type="Linux",
        tags=tags,
    )
    snapshot = support.create_snapshot(
        clients, resource_group, "rp-os-snap", location=LOCATION, source_disk_id=imported.id, tags=tags
    )
    work_copy = support.copy_disk(
        clients, resource_group, "hyd-os", location=LOCATION, source_id=snapshot.id, tags=tags
    )
    vnet = ops.ensure_virtual_network(
        clients,
        resource_group,
        "hyd-vnet",
        location=LOCATION,
        address_prefix="10.60.0.0/24",
        subnet_name="s",
        subnet_prefix="10.60.0.0/26",
        tags=tags,
    )
    nsg = ops.ensure_helper_network_security_group(
        clients,
        resource_group,
        "hyd-nsg",
        location=LOCATION,
        storage=ops.StorageDestination(region=LOCATION),
        tags=tags,
    )
    nic = ops.ensure_network_interface(
        clients,
        resource_group,
        "hyd-nic",
        location=LOCATION,
        subnet_id=vnet.subnet_id,
        network_security_group_id=nsg.id,
        tags=tags,
    )
    ops.ensure_helper_vm(
        clients,
        resource_group,
        "hyd-helper",
        location=LOCATION,
        size="Standard_D2s_v5",
        nic_id=nic.id,
        data_disk_ids=[work_copy.id],
        admin_username="azureuser",
        ssh_public_key="ssh-rsa AAAAB3NzaC1yc2E test",
        tags=tags,
    )

    container.get_blob_client("toolkit/hydration.tar.gz").upload_blob(_toolkit_tarball(), overwrite=True)
    toolkit = _sas(container, "toolkit/hydration.tar.gz", BlobSasPermissions(read=True))
    report_name = f"reports/{uuid.uuid4().hex}.json"
    report_url = _sas(container, report_name, BlobSasPermissions(create=True, write=True))
    command = (
        "tar xzf hydration.tar.gz && python3 -m hydration prepare "
        f"--disk {ops.lun_device_path(0)} --report report.json --report-url '{report_url}' "
        f"--no-repos --work-root {tmp_path / 'azure_sms_root'}"
    )
    result = ops.run_custom_script(
        clients,
        resource_group,
        "hyd-helper",
        location=LOCATION,
        command=command,
        file_uris=[toolkit],
        run_id=1,
        tags=tags,
    )

    assert result.message.startswith("Enable succeeded: ")
    assert result.stdout_tail and len(result.stdout_tail.encode()) <= 4096
    report = json.loads(container.get_blob_client(report_name).download_blob().readall())
    assert report["status"] == "succeeded", json.dumps(report, indent=1)[:4000]
    assert report["os"]["distribution"] == "ubuntu"
    prepared = debugfs_cat(
        _image_of(local_arm, clients, resource_group, "hyd-os"), layout.root_mb, "/etc/fstab"
    )
    original = debugfs_cat(
        _image_of(local_arm, clients, resource_group, "rp-os"), layout.root_mb, "/etc/fstab"
    )
    assert prepared is not None and original is not None
    # The copy was prepared (sda1 names became UUIDs, network filesystems commented out); the disk
    # imported from the recovery point was never touched.
    assert "/dev/sda1 /" in original and "/dev/sda1 /" not in prepared
    assert "UUID=" in prepared
