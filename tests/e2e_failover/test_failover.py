"""Failover to Azure end to end on the local stack: a real Ubuntu guest with an OS and a data disk
replicated by the appliance client, failed over through the HTTP API, hydrated by the real toolkit,
the VM created with the real azure-mgmt clients from the failover settings. The change of recovery point
and the commit are each run through a host killed at a seeded point (tests.support.host_kills)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import Appliance
from tests.e2e_failover.conftest import SHUTDOWN_TIMEOUT_SECONDS
from tests.e2e_migration.conftest import GuestMachine, http_ok, machine_state, replicate_guest
from tests.e2e_migration.guest_images import GuestImage
from tests.e2e_migration.migration_client import TARGET_VNET, MigrationClient
from tests.support.arm_operations import arm_group_and_name
from tests.support.host_kills import POINTS, HostKiller, wait_job_ended

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]

COMPUTE = "Microsoft.Compute"
MARK = 4096


def _machine(appliance: Appliance, client: MigrationClient, guest: GuestImage) -> GuestMachine:
    return replicate_guest(appliance, client, guest, extra_disks={"data": 8 * 1024 * 1024})


def _settings(client: MigrationClient, machine: GuestMachine, **patch: Any) -> dict[str, Any]:
    vm_name = f"fo-{uuid.uuid4().hex[:8]}"
    response = client.http.patch(
        f"/machines/{machine.id}/failover-settings",
        json={"vmName": vm_name, **patch},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    return http_ok(response)


def _cycle_with_marker(client: MigrationClient, machine: GuestMachine, marker: bytes) -> str:
    """Write `marker` at the start of the data disk, run a cycle, wait until applied; its point's id."""
    machine.replicator.write("data", 0, marker * (MARK // len(marker)))
    cycle = machine.replicator.run_cycle()
    client.wait_applied(machine.id, cycle.cycle_id)
    points = client.machine(machine.id)["recoveryPointList"]
    return str(next(p["id"] for p in points if p["cycleId"] == cycle.cycle_id))


def _hydration_step(name: str) -> bool:
    return name == "Hydrate" or name.startswith("Prepare: ")


def _nic(client: MigrationClient, vm_id: str) -> Any:
    group, name = arm_group_and_name(vm_id)
    vm = client.arm.compute.virtual_machines.get(group, name)
    nic_group, nic_name = arm_group_and_name(vm.properties.network_profile.network_interfaces[0].id)
    return (
        client.arm.network.network_interfaces.get(nic_group, nic_name)
        .properties.ip_configurations[0]
        .properties
    )


def _resources_of_jobs(client: MigrationClient, *jobs: dict[str, Any]) -> list[str]:
    return sorted(r for job in jobs for r in client.resources_of_job(job["id"]))


def test_failover_to_a_chosen_point_builds_the_vm_from_it_in_the_failover_settings_network(
    client: MigrationClient, module_appliance: Appliance, guest: GuestImage, host_killer: HostKiller
) -> None:
    machine = _machine(module_appliance, client, guest)
    settings = _settings(client, machine, staticIpAddress="10.1.0.57", subnetAddressPrefix="10.1.0.0/24")
    _cycle_with_marker(client, machine, b"k-1:")
    point_k = _cycle_with_marker(client, machine, b"k:")
    data_at_k = machine.replicator.disks[1].path.read_bytes()
    point_k1 = _cycle_with_marker(client, machine, b"k+1:")
    data_at_k1 = machine.replicator.disks[1].path.read_bytes()

    job = client.run(f"/machines/{machine.id}/failover", {"recoveryPoint": point_k}, timeout=600)
    assert job["kind"] == "Failover"
    names = [s["name"] for s in job["steps"] if not s["name"].startswith("Prepare: ")]
    assert names == [
        "Check prerequisites",
        "Stop replication",
        "Pick recovery point",
        "Copy recovery point and import disks",
        "Hydrate",
        "Create VM",
        "Start VM",
        "Take failback baseline",
    ], names
    # The toolkit's notes on this guest (no Azure Linux agent) are a Warning on Hydrate, so on the job.
    assert job["status"] in ("Succeeded", "Warning"), job
    assert all(
        s["status"] == "Succeeded" or (s["status"] == "Warning" and _hydration_step(s["name"]))
        for s in job["steps"]
    ), job["steps"]
    assert (job["status"] == "Warning") == any(s["status"] == "Warning" for s in job["steps"])

    view = client.machine(machine.id)
    assert view["state"] == "FailedOver"
    assert view["failoverRecoveryPointId"] == point_k
    vm_id = view["failoverVmId"]
    assert vm_id.endswith(f"/virtualMachines/{settings['vmName']}")
    # In the failover settings' subnet, with its address.
    nic = _nic(client, vm_id)
    assert f"/virtualNetworks/{TARGET_VNET}/subnets/default" in str(nic.subnet.id)
    assert nic.private_ip_address == "10.1.0.57"
    # The data disk is the source at point k byte for byte; the OS disk carries the hydration's changes.
    os_disk, data_disks = client.vm_disks(vm_id)
    image = client.disk_image(data_disks[0]).read_bytes()
    assert image[: len(data_at_k)] == data_at_k
    assert image[:MARK] == b"k:" * (MARK // 2)
    prepared = guest.fstab(client.disk_image(os_disk))
    assert prepared is not None and "/dev/sda1 /" not in prepared and "UUID=" in prepared
    # The failback baseline: an incremental snapshot of each of the VM's disks.
    baseline = view["failbackBaselineSnapshotIds"]
    assert len(baseline) == 2
    for snapshot_id in baseline:
        group, name = arm_group_and_name(snapshot_id)
        snapshot = client.arm.compute.snapshots.get(group, name)
        assert snapshot.properties.incremental
        assert snapshot.properties.creation_data.source_resource_id.lower() in {
            d.lower() for d in (os_disk, *data_disks)
        }
    # Nothing temporary is left: the VM, its NIC, its two disks and their two baseline snapshots.
    kinds = sorted(r.split("/providers/")[1].split("/")[1] for r in client.resources_of_job(job["id"]))
    assert kinds == ["disks", "disks", "networkInterfaces", "snapshots", "snapshots", "virtualMachines"], (
        kinds
    )
    # Failover settings are locked; a second failover is refused.
    assert client.post(f"/machines/{machine.id}/failover", {}).status_code == 409

    # Change the recovery point to k+1, then commit, each with the host killed at one of two seeded points.
    host_killer.plan(tuple(host_killer.rng.sample(POINTS, 2)))

    def finish(job_id: str) -> dict[str, Any]:
        return wait_job_ended(client, job_id, timeout=600)

    # Change the recovery point to k+1: new disks from it in the same VM, the old ones gone.
    changed = host_killer.run_next(
        machine.id,
        f"/machines/{machine.id}/change-recovery-point",
        {"recoveryPointId": point_k1},
        finish=finish,
    )
    assert changed["kind"] == "ChangeRecoveryPoint"
    assert changed["status"] in ("Succeeded", "Warning"), changed["error"]["message"]
    assert all(
        s["status"] == "Succeeded" or (s["status"] == "Warning" and _hydration_step(s["name"]))
        for s in changed["steps"]
    ), changed["steps"]
    view = client.machine(machine.id)
    assert view["state"] == "FailedOver" and view["failoverRecoveryPointId"] == point_k1
    assert view["failoverVmId"] == vm_id
    new_os, new_data = client.vm_disks(vm_id)
    assert {new_os, *new_data}.isdisjoint({os_disk, *data_disks})
    image = client.disk_image(new_data[0]).read_bytes()
    assert image[: len(data_at_k1)] == data_at_k1
    assert image[:MARK] == b"k+1:" * (MARK // 4)
    for gone in (os_disk, *data_disks):
        group, name = arm_group_and_name(gone)
        assert name not in [d.name for d in client.arm.compute.disks.list_by_resource_group(group)]
    for gone in baseline:
        group, name = arm_group_and_name(gone)
        assert name not in [d.name for d in client.arm.compute.snapshots.list_by_resource_group(group)]
    assert len(view["failbackBaselineSnapshotIds"]) == 2 and set(
        view["failbackBaselineSnapshotIds"]
    ).isdisjoint(baseline)
    assert _nic(client, vm_id).private_ip_address == "10.1.0.57"
    # What stands: the VM and its NIC (the failover's), the new disks and their baseline (the change's).
    kinds = sorted(r.split("/providers/")[1].split("/")[1] for r in client.resources_of_job(changed["id"]))
    assert kinds == ["disks", "disks", "snapshots", "snapshots"], kinds
    kinds = sorted(r.split("/providers/")[1].split("/")[1] for r in client.resources_of_job(job["id"]))
    assert kinds == ["networkInterfaces", "virtualMachines"], kinds
    # 0 orphaned: nothing of the machine stands in ARM but those (an interrupted or rolled-back try left none).
    assert client.resources_of_machine(machine.id) == _resources_of_jobs(client, job, changed)

    # Commit: one recovery point left (k+1's); its point can no longer change.
    committed = host_killer.run_next(machine.id, f"/machines/{machine.id}/commit", finish=finish)
    assert committed["status"] == "Succeeded", committed
    assert client.resources_of_machine(machine.id) == _resources_of_jobs(client, job, changed)
    view = client.machine(machine.id)
    assert view["state"] == "FailoverCommitted"
    assert [p["id"] for p in view["recoveryPointList"]] == [point_k1]
    kept = view["recoveryPointList"][0]["diskSnapshots"]["data"]
    snapshots = [
        b.snapshot
        for b in machine.appliance.replicas.list_blobs(
            name_starts_with=f"{machine.id}/data.vhd", include=["snapshots"]
        )
        if b.snapshot
    ]
    assert kept in snapshots and len(snapshots) == 1, snapshots
    refused = client.post(f"/machines/{machine.id}/change-recovery-point", {"recoveryPointId": point_k})
    assert refused.status_code == 409 and "committed" in refused.text


def test_a_quota_fault_at_create_vm_fails_with_28031_leaves_nothing_and_replication_resumes(
    client: MigrationClient,
    module_appliance: Appliance,
    guest: GuestImage,
    arm_faults: Callable[[dict[str, Any]], None],
) -> None:
    machine = _machine(module_appliance, client, guest)
    settings = _settings(client, machine)
    arm_faults(
        {
            "match": {
                "method": "PUT",
                "resourceType": f"{COMPUTE}/virtualMachines",
                "nameRegex": f"^{settings['vmName']}$",
            },
            "fault": "quota",
            "times": 1,
        }
    )
    job = client.run(f"/machines/{machine.id}/failover", {"recoveryPoint": "latestProcessed"}, timeout=600)
    assert job["status"] == "Failed", job
    assert job["error"]["code"] == "28031", job["error"]
    assert "Recommended steps" in job["error"]["message"] and "quota" in job["error"]["message"].lower()
    create = next(s for s in job["steps"] if s["name"] == "Create VM")
    assert create["status"] == "Failed" and create["error"]["code"] == "28031", create
    assert [s["status"] for s in job["steps"] if s["name"] in ("Start VM", "Take failback baseline")] == [
        "Cancelled",
        "Cancelled",
    ]
    assert client.arm_admin.get("/_admin/faults").json()["value"] == [], "the fault was not reached"
    # 0 resources left, no recovery-point copies either.
    assert client.resources_of_job(job["id"]) == []
    copies = list(machine.appliance.replicas.list_blobs(name_starts_with=f"{machine.id}/copies/{job['id']}/"))
    assert copies == []
    view = client.machine(machine.id)
    assert view["state"] == "Replicating" and view["health"] == "Critical"
    assert [e["code"] for e in view["currentErrors"]] == ["28031"]
    # Replication resumes: the next cycle applies (and heals health).
    machine.replicator.write("data", 0, b"after-fo" * 512)
    cycle = machine.replicator.run_cycle()
    client.wait_applied(machine.id, cycle.cycle_id)
    assert machine_state(client, machine.id) == "Replicating"


def test_a_source_that_never_acknowledges_the_shutdown_leaves_the_step_and_the_job_in_warning(
    client: MigrationClient, module_appliance: Appliance, guest: GuestImage
) -> None:
    machine = _machine(module_appliance, client, guest)
    _settings(client, machine)
    # The appliance never polls its commands here: ShutDownSource is never acknowledged.
    job = client.run(
        f"/machines/{machine.id}/failover",
        {"recoveryPoint": "latestProcessed", "shutdownSource": True},
        timeout=600,
    )
    assert job["status"] == "Warning", job
    shutdown = next(s for s in job["steps"] if s["name"] == "Shut down source")
    assert shutdown["status"] == "Warning", shutdown
    assert f"within {SHUTDOWN_TIMEOUT_SECONDS} s" in shutdown["error"]["message"]
    assert all(
        s["status"] == "Succeeded" or _hydration_step(s["name"]) for s in job["steps"] if s is not shutdown
    ), job["steps"]
    assert machine_state(client, machine.id) == "FailedOver"
    assert [c["kind"] for c in machine.appliance.api.commands()] == ["ShutDownSource"]


class HeldEvents:
    """The appliance's events with CycleUploaded held back: the cycle is uploaded, but the control plane
    does not know it yet (a late event). `release` sends it."""

    def __init__(self, events: Any) -> None:
        self._events = events
        self.held: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._events, name)

    def cycle_uploaded(self, **fields: Any) -> str:
        self.held.append(fields)
        return "held"

    def release(self) -> None:
        for fields in self.held:
            self._events.cycle_uploaded(**fields)
        self.held = []


def _late_then_waiting(machine: GuestMachine) -> tuple[HeldEvents, bytes]:
    """Cycle N's event is late; cycle N+1 (received, in the inbox) waits for it. The data disk at N+1."""
    real = machine.replicator.events
    held = HeldEvents(real)
    machine.replicator.events = held
    machine.replicator.write("data", 0, b"N:" * (MARK // 2))
    machine.replicator.run_cycle()
    machine.replicator.events = real
    machine.replicator.write("data", MARK, b"N+1:" * (MARK // 4))
    machine.replicator.run_cycle()
    return held, machine.replicator.disks[1].path.read_bytes()


def test_latest_processed_leaves_out_what_waits_in_the_inbox_and_latest_applies_it(
    client: MigrationClient, module_appliance: Appliance, guest: GuestImage
) -> None:
    # latestProcessed: the newest point now; cycle N+1 waits in the inbox (N is late) and is not used.
    machine = _machine(module_appliance, client, guest)
    _settings(client, machine)
    before = machine.replicator.disks[1].path.read_bytes()
    newest = client.machine(machine.id)["recoveryPointList"][-1]["id"]
    _late_then_waiting(machine)
    job = client.run(f"/machines/{machine.id}/failover", {"recoveryPoint": "latestProcessed"}, timeout=600)
    assert job["status"] in ("Succeeded", "Warning"), job
    assert "Process pending data" not in [s["name"] for s in job["steps"]]
    view = client.machine(machine.id)
    assert view["failoverRecoveryPointId"] == newest
    _, data_disks = client.vm_disks(view["failoverVmId"])
    image = client.disk_image(data_disks[0]).read_bytes()
    assert image[: len(before)] == before  # neither N nor N+1
    assert len(view["recoveryPointList"]) == 1  # replication held: N+1 was not applied since

    # latest: N arrives, and whatever of N, N+1 has not been applied yet is applied before the point is picked.
    machine = _machine(module_appliance, client, guest)
    _settings(client, machine)
    held, at_n1 = _late_then_waiting(machine)
    late = held.held[0]["cycle_id"]
    held.release()
    client.wait_applied(machine.id, late)  # received and applied; N+1 may still be in the inbox
    job = client.run(f"/machines/{machine.id}/failover", {"recoveryPoint": "latest"}, timeout=600)
    assert job["status"] in ("Succeeded", "Warning"), job
    pending = next(s for s in job["steps"] if s["name"] == "Process pending data")
    assert pending["status"] == "Succeeded", pending
    view = client.machine(machine.id)
    points = view["recoveryPointList"]
    assert view["failoverRecoveryPointId"] == points[-1]["id"] and len(points) == 3
    _, data_disks = client.vm_disks(view["failoverVmId"])
    image = client.disk_image(data_disks[0]).read_bytes()
    assert image[: len(at_n1)] == at_n1  # N and N+1, byte for byte
