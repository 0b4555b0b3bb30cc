"""ARM operations only the tests use (the flows import disks from blobs; they never copy or snapshot)."""

from __future__ import annotations

from azure.mgmt.compute import models as cm

from shared.migration.resource_kinds import parse_arm_id
from shared.migration.resources import DiskRef, disk_ref
from shared.migration.tags import ResourceTags
from shared.platform.arm_clients import ArmClients


def copy_disk(
    clients: ArmClients,
    resource_group: str,
    name: str,
    *,
    location: str,
    source_id: str,
    tags: ResourceTags,
    sku: str = "Standard_LRS",
) -> DiskRef:
    """A managed disk copied from a snapshot or another disk (the copy hydration works on)."""
    body = cm.Disk(
        location=location,
        tags=tags.to_arm(),
        sku=cm.DiskSku(name=sku),
        properties=cm.DiskProperties(
            creation_data=cm.CreationData(create_option="Copy", source_resource_id=source_id)
        ),
    )
    disk = clients.compute.disks.begin_create_or_update(resource_group, name, body).result()
    return disk_ref(disk, name)


def create_snapshot(
    clients: ArmClients,
    resource_group: str,
    name: str,
    *,
    location: str,
    source_disk_id: str,
    tags: ResourceTags,
    incremental: bool = True,
) -> DiskRef:
    body = cm.Snapshot(
        location=location,
        tags=tags.to_arm(),
        properties=cm.SnapshotProperties(
            incremental=incremental,
            creation_data=cm.CreationData(create_option="Copy", source_resource_id=source_disk_id),
        ),
    )
    snapshot = clients.compute.snapshots.begin_create_or_update(resource_group, name, body).result()
    return disk_ref(snapshot, name)


def arm_group_and_name(arm_id: str) -> tuple[str, str]:
    parsed = parse_arm_id(arm_id)
    return parsed.resource_group, parsed.name
