"""The failover story of `make demo`, after the migration story: the appliance replicates an Ubuntu 20.04
machine with a data disk and two cycles that each leave their own marker at the start of that disk; the
operator looks at the recovery points, gives the failover VM a static IP in its failover settings, fails
over to the older point (the VM's data disk holds that point's marker), changes the recovery point to
the newer one (same VM, new disks, the newer marker), commits (one recovery point left), and sees a
change of recovery point after the commit refused.

Called by devhost/demo.py as `run_failover_demo(stack, workdir, console, replication)`, with what
run_replication_demo returned (its appliance is reused when present).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from appliance.replicator import MachineReplicator
from devhost.demo_migration import demo_appliance, replicate_machine, show_job
from devhost.stack import LocalStack
from shared.platform.arm_clients import build_arm_clients
from shared.platform.settings import Settings
from tests.e2e_migration.guest_images import linux_guest, missing_requirements
from tests.e2e_migration.migration_client import TARGET_VNET, MigrationClient, ensure_operator_network
from tests.support.arm_operations import arm_group_and_name

MARK = 4096
STATIC_IP = "10.1.0.57"
# The target VNet's `default` subnet (tests/e2e_migration's operator network).
SUBNET_PREFIX = "10.1.0.0/24"


class FailoverDemoFailed(RuntimeError):
    pass


def run_failover_demo(
    stack: LocalStack, workdir: Path, console: Console, replication: dict[str, Any]
) -> dict[str, Any]:
    """Returns the machine, its two points and the VM id for the caller."""
    if reason := missing_requirements():
        console.print(f"[yellow]failover demo skipped: {reason}[/]")
        return {"skipped": reason}
    console.rule("[bold]Failover to Azure")
    started = time.perf_counter()
    with build_arm_clients(Settings.from_environ(stack.settings)) as clients:
        ensure_operator_network(clients)
        client = MigrationClient(stack, clients)
        appliance = demo_appliance(client, workdir, replication)
        guest = linux_guest(workdir / "failover-guest")
        replicator = replicate_machine(client, appliance, guest, data_disk=True, console=console)
        machine_id = replicator.machine_id
        older = _cycle_with_marker(client, replicator, b"cycle 1: before the disaster ")
        newer = _cycle_with_marker(client, replicator, b"cycle 2: minutes later ")
        markers = {older[0]: older[1], newer[0]: newer[1]}
        console.print("two cycles applied, each with its own marker at the start of the data disk")
        _show_points(client, console, machine_id, markers, "Recovery points")

        settings = _patch_settings(client, machine_id)
        _show_settings(console, settings)

        console.print(
            f"fail over to the older point {older[0]} (shutdownSource false: the source site is lost)"
        )
        job = _run(client, console, f"/machines/{machine_id}/failover", {"recoveryPoint": older[0]})
        view = client.machine(machine_id)
        vm_id = view["failoverVmId"]
        _show_vm(client, console, view, markers)
        old_disks = client.vm_disks(vm_id)

        console.print(f"change the recovery point to the newer one, {newer[0]}")
        _run(client, console, f"/machines/{machine_id}/change-recovery-point", {"recoveryPointId": newer[0]})
        view = client.machine(machine_id)
        if view["failoverVmId"] != vm_id:
            raise FailoverDemoFailed(f"the change of recovery point moved the VM to {view['failoverVmId']}")
        new_os, new_data = client.vm_disks(vm_id)
        if {new_os, *new_data} & {old_disks[0], *old_disks[1]}:
            raise FailoverDemoFailed("the VM kept disks of the older point")
        _show_vm(client, console, view, markers)

        console.print(f"commit: keep {newer[0]}, delete the other points")
        _run(client, console, f"/machines/{machine_id}/commit", None)
        view = client.machine(machine_id)
        console.print(f"machine {machine_id}: [bold]{view['state']}[/]")
        left = _show_points(client, console, machine_id, markers, "Recovery points after commit")
        if left != [newer[0]]:
            raise FailoverDemoFailed(f"after commit the points are {left}, not only {newer[0]}")

        refused = client.post(f"/machines/{machine_id}/change-recovery-point", {"recoveryPointId": older[0]})
        error = refused.json().get("error", {})
        if refused.status_code != 409:
            raise FailoverDemoFailed(f"change-recovery-point after commit answered {refused.status_code}")
        console.print(
            f"change-recovery-point after commit: [red]{refused.status_code}[/] {error.get('code')}: "
            f"{error.get('message')}"
        )
    console.print(f"failover story: {time.perf_counter() - started:.0f} s")
    return {
        "machine": machine_id,
        "points": [older[0], newer[0]],
        "vmId": vm_id,
        "failoverJob": job["id"],
        "replicator": replicator,
        "appliance": appliance,
    }


def _cycle_with_marker(
    client: MigrationClient, replicator: MachineReplicator, marker: bytes
) -> tuple[str, bytes]:
    """Write `marker` at the start of the data disk, run a cycle, wait until applied: its point's id."""
    replicator.write("data", 0, marker.ljust(MARK, b"."))
    cycle = replicator.run_cycle()
    client.wait_applied(replicator.machine_id, cycle.cycle_id)
    points = client.machine(replicator.machine_id)["recoveryPointList"]
    return str(next(p["id"] for p in points if p["cycleId"] == cycle.cycle_id)), marker


def _show_points(
    client: MigrationClient, console: Console, machine_id: str, markers: dict[str, bytes], title: str
) -> list[str]:
    response = client.http.get(f"/machines/{machine_id}/recovery-points")
    response.raise_for_status()
    points = response.json()["recoveryPoints"]
    table = Table(title=f"{title} of {machine_id} (newest first)")
    for column in ("id", "time", "consistency", "disks", "data disk starts with"):
        table.add_column(column)
    for point in points:
        marker = markers.get(point["id"])
        table.add_row(
            point["id"],
            point["time"],
            point["consistency"],
            ", ".join(point["disks"]),
            repr(marker) if marker else "[dim](initial copy: zeros)[/]",
        )
    console.print(table)
    return [str(p["id"]) for p in points]


def _patch_settings(client: MigrationClient, machine_id: str) -> dict[str, Any]:
    response = client.http.patch(
        f"/machines/{machine_id}/failover-settings",
        json={
            "vmName": f"dr-{machine_id}",
            "staticIpAddress": STATIC_IP,
            "subnetAddressPrefix": SUBNET_PREFIX,
        },
        headers={"Content-Type": "application/merge-patch+json"},
    )
    if response.status_code != 200:
        raise FailoverDemoFailed(f"PATCH failover-settings answered {response.status_code}: {response.text}")
    settings: dict[str, Any] = response.json()
    return settings


def _show_settings(console: Console, settings: dict[str, Any]) -> None:
    table = Table(title="Failover settings after PATCH (vmName, staticIpAddress, subnetAddressPrefix set)")
    table.add_column("setting")
    table.add_column("value")
    for key, value in settings.items():
        table.add_row(key, str(value))
    console.print(table)


def _run(client: MigrationClient, console: Console, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
    started = time.perf_counter()
    job = client.run(path, body, timeout=600)
    show_job(console, job, time.perf_counter() - started)
    # This guest has no Azure Linux agent: the toolkit's notes make Hydrate, so the job, a Warning.
    if job["status"] not in ("Succeeded", "Warning"):
        raise FailoverDemoFailed(f"{job['kind']} {job['id']} {job['status']}: {job.get('error')}")
    return job


def _show_vm(
    client: MigrationClient, console: Console, view: dict[str, Any], markers: dict[str, bytes]
) -> None:
    vm_id = view["failoverVmId"]
    point = view["failoverRecoveryPointId"]
    os_disk, data_disks = client.vm_disks(vm_id)
    expected = markers[point]
    found = client.disk_image(data_disks[0]).read_bytes()[: len(expected)]
    if found != expected:
        raise FailoverDemoFailed(
            f"the VM's data disk starts with {found!r}, not point {point}'s {expected!r}"
        )
    group, name = arm_group_and_name(vm_id)
    # The SDK's models make every member optional; the local ARM endpoint fills them all.
    vm: Any = client.arm.compute.virtual_machines.get(group, name)
    nic_group, nic_name = arm_group_and_name(vm.properties.network_profile.network_interfaces[0].id)
    nic: Any = client.arm.network.network_interfaces.get(nic_group, nic_name)
    ip = nic.properties.ip_configurations[0].properties
    size = vm.properties.hardware_profile.vm_size
    size = getattr(size, "value", size)  # the SDK's enum when the size is one it knows
    console.print(
        f"VM [bold]{name}[/] ({size}) in {group}, {TARGET_VNET}/"
        f"{ip.subnet.id.rsplit('/', 1)[-1]} at {ip.private_ip_address}; recovery point {point}; OS disk "
        f"{arm_group_and_name(os_disk)[1]}, data disk {arm_group_and_name(data_disks[0])[1]} starts with "
        f"[green]{found!r}[/]"
    )
