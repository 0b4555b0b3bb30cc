"""Recovery points in use by a job are pinned against retention (shared/replication/recovery_points.py), against
the local stack's storage: a pinned snapshot is reported to retention, and releasing the pin deletes it
only if retention dropped it meanwhile and no other job still pins it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from azure.storage.blob import BlobServiceClient

from devhost.stack import LocalStack
from shared.domain.cycle import Consistency, RecoveryPoint
from shared.domain.inventory import MachineInventory
from shared.domain.machine import Machine, ReplicationStatus
from shared.platform.storage import REPLICA_CONTAINER
from shared.replication import recovery_points
from shared.replication.replica_disks import (
    ReplicaDiskSpec,
    create_recovery_point,
    create_replica_disk,
    replica_blob_name,
)

pytestmark = [pytest.mark.e2e]


def test_a_pinned_snapshot_survives_retention_until_released(local_stack: LocalStack) -> None:
    service = BlobServiceClient.from_connection_string(
        local_stack.settings["REPLICA_STORAGE_CONNECTION_STRING"]
    )
    replicas, pins = (
        service.get_container_client(REPLICA_CONTAINER),
        service.get_container_client(recovery_points.PINS_CONTAINER),
    )
    if not replicas.exists():
        replicas.create_container()
    machine_id = f"vm-{uuid.uuid4().hex[:8]}"
    create_replica_disk(replicas, ReplicaDiskSpec(machine_id=machine_id, disk_id="os", disk_size=1024 * 1024))
    old = create_recovery_point(
        replicas,
        replica_blob_name(machine_id, "os"),
        cycle_id="c1",
        sequence=1,
        consistency=Consistency.CRASH,
    )
    now = datetime.now(UTC)
    point = RecoveryPoint(
        id="p1", cycle_id="c1", time=now, consistency=Consistency.CRASH, disk_snapshots={"os": old.snapshot}
    )
    recovery_points.pin_recovery_point(pins, machine_id, "job-a", point.id, point.disk_snapshots)
    recovery_points.pin_recovery_point(pins, machine_id, "job-b", point.id, point.disk_snapshots)
    assert recovery_points.pinned_snapshots(pins, machine_id) == {old.snapshot}

    inventory = MachineInventory(
        display_name=machine_id,
        os_type="linux",
        os_name="Ubuntu",
        os_version="20.04",
        firmware="BIOS",
        disks=[{"id": "os", "sizeBytes": 1024 * 1024, "isOsDisk": True}],
    )
    # Retention dropped the point while both jobs were copying it: the first release keeps it (job-b).
    dropped = Machine(
        id=machine_id,
        appliance_id="a1",
        inventory=inventory,
        discovered_at=now,
        updated_at=now,
        replication=ReplicationStatus(recovery_points=[]),
    )
    assert recovery_points.release_recovery_point(pins, replicas, dropped, "job-a", replica_blob_name) == []
    assert recovery_points.pinned_snapshots(pins, machine_id) == {old.snapshot}
    assert recovery_points.release_recovery_point(pins, replicas, dropped, "job-b", replica_blob_name) == [
        old.snapshot
    ]
    assert recovery_points.pinned_snapshots(pins, machine_id) == frozenset()
    snapshots = [
        b.snapshot
        for b in replicas.list_blobs(name_starts_with=f"{machine_id}/", include=["snapshots"])
        if b.snapshot
    ]
    assert snapshots == []
    # Released twice: nothing more happens.
    assert recovery_points.release_recovery_point(pins, replicas, dropped, "job-b", replica_blob_name) == []
