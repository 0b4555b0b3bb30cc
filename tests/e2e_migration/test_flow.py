"""Test migration, clean-up, migration and complete migration end to end on the local stack: a real
Ubuntu guest replicated by the appliance client, hydrated by the real toolkit through the local ARM
endpoint's Custom Script Extension, VMs created with the real azure-mgmt clients. The completion runs
through a host killed at a seeded point (tests.support.host_kills)."""

from __future__ import annotations

import hashlib
import random

import pytest

from shared.domain.command import PowerState
from tests.e2e_migration.conftest import GuestMachine, machine_state
from tests.e2e_migration.migration_client import TARGET_VNET, TEST_VNET, MigrationClient, succeeded, wait_for
from tests.support.arm_operations import arm_group_and_name
from tests.support.host_kills import POINTS, HostKiller, wait_job_ended

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]


def replica_digests(machine: GuestMachine) -> dict[str, str]:
    replicas = machine.appliance.replicas
    return {
        d.disk_id: hashlib.sha256(
            replicas.get_blob_client(f"{machine.id}/{d.disk_id}.vhd").download_blob().readall()
        ).hexdigest()
        for d in machine.replicator.disks
    }


def vm_subnet(client: MigrationClient, vm_id: str) -> str:
    group, name = arm_group_and_name(vm_id)
    vm = client.arm.compute.virtual_machines.get(group, name)
    nic_id = vm.properties.network_profile.network_interfaces[0].id
    nic_group, nic_name = arm_group_and_name(nic_id)
    nic = client.arm.network.network_interfaces.get(nic_group, nic_name)
    return str(nic.properties.ip_configurations[0].properties.subnet.id)


def test_test_migration_cleanup_migration_and_completion(
    client: MigrationClient, linux_machine: GuestMachine, host_killer: HostKiller
) -> None:
    machine = linux_machine
    before = replica_digests(machine)

    job = client.run(f"/machines/{machine.id}/test-migrate", {})
    assert succeeded(job), job
    assert machine_state(client, machine.id) == "TestMigrated"
    names = [s["name"] for s in job["steps"]]
    assert any(n.startswith("Prepare: validate_fstab") for n in names), names
    assert all(s["status"] in ("Succeeded", "Warning") for s in job["steps"]), job["steps"]
    status = client.instance_status(job["id"])["customStatus"]
    assert status["armWaitsCriticalPath"] == 6
    # The test VM is in the isolated test VNet; nothing temporary is left.
    assert f"/virtualNetworks/{TEST_VNET}/" in vm_subnet(client, status["vmId"])
    kinds = sorted(r.split("/providers/")[1].split("/")[1] for r in client.resources_of_job(job["id"]))
    assert kinds == ["disks", "disks", "networkInterfaces", "virtualMachines"], kinds
    # Its OS disk carries the hydration changes; the replica is byte for byte what it was.
    group, vm_name = arm_group_and_name(status["vmId"])
    os_disk = client.arm.compute.virtual_machines.get(
        group, vm_name
    ).properties.storage_profile.os_disk.managed_disk.id
    prepared = machine.guest.fstab(client.disk_image(os_disk))
    source = machine.guest.fstab()
    assert source is not None and "/dev/sda1 /" in source
    assert prepared is not None and "/dev/sda1 /" not in prepared and "UUID=" in prepared
    assert "#nas01:/export/home" in prepared.replace("# ", "#")
    assert replica_digests(machine) == before

    # A second test migration is refused while this one stands; replication carries on underneath.
    assert client.post(f"/machines/{machine.id}/test-migrate", {}).status_code == 409
    rng = random.Random(5)
    machine.replicator.write("data", 0, rng.randbytes(4096))
    cycle = machine.replicator.run_cycle()
    client.wait_applied(machine.id, cycle.cycle_id)

    cleanup = client.run(f"/machines/{machine.id}/test-migrate/cleanup")
    assert cleanup["status"] == "Succeeded", cleanup
    assert machine_state(client, machine.id) == "Replicating"
    assert client.resources_of_job(job["id"]) == []

    # Migration: the source is shut down, a final cycle carries the last writes, then the VM is created.
    machine.replicator.write("data", 8192, rng.randbytes(4096))
    job_id = client.start(f"/machines/{machine.id}/migrate", {"shutdownSource": True})
    commands = wait_for(
        lambda: (c := machine.appliance.api.commands()) and len(c) >= 2 and c, what="commands"
    )
    assert [c["kind"] for c in commands] == ["ShutDownSource", "RunCycle"]
    reports = machine.replicator.handle_commands(machine.appliance.api)
    assert [r.kind.value for r in reports] == ["final"]
    migrated = client.wait_job(job_id)
    assert succeeded(migrated), migrated
    # The step says the source is off because the appliance answered so, not because it was asked.
    shutdown = next(s for s in migrated["steps"] if s["name"] == "Shut down source VM")
    assert shutdown["status"] == "Succeeded", shutdown
    assert machine.replicator.power.state is PowerState.OFF
    assert machine_state(client, machine.id) == "Migrated"
    final_status = client.instance_status(job_id)["customStatus"]
    assert f"/virtualNetworks/{TARGET_VNET}/" in vm_subnet(client, final_status["vmId"])
    # The final cycle's data is on the migrated VM's data disk.
    group, vm_name = arm_group_and_name(final_status["vmId"])
    data_disk = client.arm.compute.virtual_machines.get(group, vm_name).properties.storage_profile.data_disks[
        0
    ]
    image = client.disk_image(data_disk.managed_disk.id).read_bytes()
    assert image[: 8192 + 4096] == machine.replicator.disks[1].path.read_bytes()[: 8192 + 4096]
    assert {r.split("/")[-2] for r in client.resources_of_job(job_id)} == {
        "virtualMachines",
        "networkInterfaces",
        "disks",
    }

    # Complete migration, the host killed at a seeded point: the replica data goes; the VM stays.
    host_killer.plan((host_killer.rng.choice(POINTS),))
    done = host_killer.run_next(
        machine.id,
        f"/machines/{machine.id}/replication",
        method="DELETE",
        finish=lambda job: wait_job_ended(client, job),
    )
    assert done["status"] == "Succeeded", done
    assert machine_state(client, machine.id) == "MigrationCompleted"
    assert not list(machine.appliance.replicas.list_blobs(name_starts_with=f"{machine.id}/"))
    assert client.arm.compute.virtual_machines.get(group, vm_name).name == vm_name
    # 0 orphaned: what stands of the machine in ARM is the migration's VM, its NIC and disks, nothing else.
    assert client.resources_of_machine(machine.id) == client.resources_of_job(job_id)
