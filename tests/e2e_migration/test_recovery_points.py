"""Every recovery point covers every disk: a resync of one disk (the appliance client answering the
ResyncDisk the control plane asked for after a damaged upload with that disk alone) leaves a point with a
snapshot of the unchanged OS disk too, and a test migration from that point builds the VM."""

from __future__ import annotations

import random
from typing import Any

import pytest

from appliance.replicator import CycleReport, MachineReplicator
from shared.domain.cycle import CycleKind
from shared.replication.delta_manifest import DeltaManifest
from tests.e2e_migration.conftest import GuestMachine, http_ok, machine_state
from tests.e2e_migration.migration_client import MigrationClient, succeeded, wait_for
from tests.support.arm_operations import arm_group_and_name

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]


def upload_without_event(replicator: MachineReplicator, disk_ids: list[str]) -> CycleReport:
    """Upload a cycle of `disk_ids` but hold its event back, so its data can be damaged before the control
    plane sees it."""
    original = replicator.events.cycle_uploaded
    replicator.events.cycle_uploaded = lambda **_: "held"  # type: ignore[method-assign]
    try:
        return replicator.run_cycle(disk_ids=disk_ids)
    finally:
        replicator.events.cycle_uploaded = original  # type: ignore[method-assign]


def resync_commands(machine: GuestMachine) -> list[dict[str, Any]] | None:
    found = [
        c
        for c in machine.appliance.api.commands()
        if c["machineId"] == machine.id and c["kind"] == "ResyncDisk"
    ]
    return found or None


def test_a_resync_of_one_disk_leaves_a_point_of_every_disk_that_a_test_migration_uses(
    client: MigrationClient, linux_machine: GuestMachine
) -> None:
    machine = linux_machine
    replicator, appliance = machine.replicator, machine.appliance
    assert "testMigrate" in client.machine(machine.id)["allowedOperations"]

    # A damaged upload of the data disk: the cycle is refused and that disk alone is to be resynced.
    replicator.write("data", 0, random.Random(11).randbytes(4096))
    # A cycle that carries the data disk only (the OS disk had no change): the refused cycle's disks are
    # what the control plane asks to resync.
    held = upload_without_event(replicator, ["data"])
    manifest = DeltaManifest.model_validate_json(
        appliance.cache.download_blob(held.manifests["data"]).readall()
    )
    blob = manifest.extents[0].blob
    content = appliance.cache.download_blob(blob).readall()
    appliance.cache.upload_blob(blob, bytes([content[0] ^ 0xFF]) + content[1:], overwrite=True)
    appliance.events.cycle_uploaded(
        machine_id=machine.id,
        cycle_id=held.cycle_id,
        sequence=held.sequence,
        kind="delta",
        app_consistent=False,
        manifests=held.manifests,
    )
    commands = wait_for(lambda: resync_commands(machine), what="the ResyncDisk command")
    assert [c["diskId"] for c in commands] == ["data"]

    # The appliance answers with a resync of that disk only (the OS disk had no change in the refused cycle).
    for command in commands:
        appliance.api.acknowledge(command["id"])
    resync = replicator.run_cycle(CycleKind.RESYNC, disk_ids=["data"])
    assert list(resync.manifests) == ["data"]
    client.wait_applied(machine.id, resync.cycle_id)

    points = http_ok(client.http.get(f"/machines/{machine.id}/recovery-points"))["recoveryPoints"]
    newest = points[0]
    assert newest["cycleId"] == resync.cycle_id, points
    assert newest["disks"] == ["os", "data"]  # the unchanged OS disk too
    assert [p["time"] for p in points] == sorted((p["time"] for p in points), reverse=True)
    assert all(p["disks"] == ["os", "data"] for p in points), points
    assert client.http.get("/machines/vm-nobody/recovery-points").status_code == 404

    job = client.run(f"/machines/{machine.id}/test-migrate", {"recoveryPoint": newest["id"]})
    assert succeeded(job), job
    assert all(s["status"] in ("Succeeded", "Warning") for s in job["steps"]), job["steps"]
    assert machine_state(client, machine.id) == "TestMigrated"
    # The test VM's data disk is the source's data disk at the point, byte for byte.
    vm_id = client.instance_status(job["id"])["customStatus"]["vmId"]
    _, [data_disk] = client.vm_disks(vm_id)
    source = replicator.disks[1].path.read_bytes()
    assert client.disk_image(data_disk).read_bytes()[: len(source)] == source
    assert arm_group_and_name(vm_id)[1].endswith(f"-test-{job['id'][-6:]}")  # its own name, never reused

    cleanup = client.run(f"/machines/{machine.id}/test-migrate/cleanup")
    assert cleanup["status"] == "Succeeded", cleanup
    assert machine_state(client, machine.id) == "Replicating"
