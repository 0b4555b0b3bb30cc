"""The reprotect story of `make demo`, after the failover story: the committed Azure VM's guest writes a
few MiB at scattered offsets of its data disk (the local ARM endpoint's disk-write hook), the operator
reprotects it to the on-premises machine through the appliance, the appliance answers every command
(power off, its change record, manifests read straight from the snapshot's SAS), the on-premises data
disk equals the Azure disk byte for byte, and one reverse cycle (every minute by the policy) brings the
next writes: each with its bytes processed, transferred and matched. Then the way home: a planned
failover to on-premises (the downtime shown), its commit (nothing of the machine left in Azure), writes
on-premises, and a reprotect to Azure that sends only those writes (bytes sent against the disks' size).

Called by devhost/demo.py as `run_failback_demo(stack, console, failover)`, with what run_failover_demo
returned (its machine's replicator answers the commands).
"""

from __future__ import annotations

import random
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from appliance.replicator import MachineReplicator
from devhost.demo_migration import show_job
from devhost.stack import LocalStack
from shared.platform.arm_clients import build_arm_clients
from shared.platform.settings import Settings
from tests.e2e_migration.migration_client import MigrationClient
from tests.support.guest_disk import guest_write

KIB = 1024
WRITE = 256 * KIB


class FailbackDemoFailed(RuntimeError):
    pass


def run_failback_demo(stack: LocalStack, console: Console, failover: dict[str, Any]) -> dict[str, Any]:
    replicator: MachineReplicator | None = failover.get("replicator")
    if replicator is None:
        console.print("[yellow]reprotect demo skipped: the failover story did not run[/]")
        return {"skipped": True}
    console.rule("[bold]Reprotect to on-premises")
    started = time.perf_counter()
    machine_id = replicator.machine_id
    with build_arm_clients(Settings.from_environ(stack.settings)) as clients:
        client = MigrationClient(stack, clients)
        api = failover["appliance"].api
        events = failover["appliance"].events
        _, (azure_data,) = client.vm_disks(failover["vmId"])
        on_premises = next(d.path for d in replicator.disks if d.disk_id == "data")
        size = on_premises.stat().st_size
        rng = random.Random(3)
        written = _guest_writes(client, azure_data, size, rng, count=8)
        console.print(f"the Azure VM wrote {written // KIB} KiB at 8 scattered offsets of its data disk")

        appliance_id = events.appliance_id
        client.http.put(
            f"/appliances/{appliance_id}/policy", json={"reverseCycleMinutes": 1}
        ).raise_for_status()
        events.heartbeat()
        time.sleep(3)
        response = client.post(f"/machines/{machine_id}/reprotect", {"applianceId": appliance_id})
        if response.status_code != 202:
            raise FailbackDemoFailed(f"reprotect answered {response.status_code}: {response.text}")
        job_id = response.json()["jobId"]
        began = time.perf_counter()
        job = _answer_until(client, replicator, api, lambda: _finished(client.job(job_id)), 300)
        show_job(console, job, time.perf_counter() - began)
        if job["status"] != "Succeeded":
            raise FailbackDemoFailed(f"reprotect ended {job['status']}")
        _check_equal(client, azure_data, on_premises, size, console, "S1")

        written = _guest_writes(client, azure_data, size, rng, count=4)
        console.print(
            f"the Azure VM wrote {written // KIB} KiB more; the next reverse cycle runs within a minute"
        )
        _answer_until(client, replicator, api, lambda: len(_points(client, machine_id)) >= 2 or None, 180)
        _check_equal(client, azure_data, on_premises, size, console, "S2")
        _show_points(console, client, machine_id)
        home = _round_trip(client, replicator, api, events, machine_id, appliance_id, console, rng)
    console.print(f"reprotect story: {time.perf_counter() - started:.0f} s")
    return {"machine": machine_id, "reprotectJob": job_id, **home}


def _run_job(
    client: MigrationClient,
    replicator: MachineReplicator,
    api: Any,
    console: Console,
    path: str,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    response = client.post(path, body)
    if response.status_code != 202:
        raise FailbackDemoFailed(f"{path} answered {response.status_code}: {response.text}")
    job_id = response.json()["jobId"]
    began = time.perf_counter()
    job: dict[str, Any] = _answer_until(client, replicator, api, lambda: _finished(client.job(job_id)), 300)
    show_job(console, job, time.perf_counter() - began)
    if job["status"] != "Succeeded":
        raise FailbackDemoFailed(f"{path}: job {job_id} ended {job['status']}")
    return job


def _round_trip(
    client: MigrationClient,
    replicator: MachineReplicator,
    api: Any,
    events: Any,
    machine_id: str,
    appliance_id: str,
    console: Console,
    rng: random.Random,
) -> dict[str, Any]:
    console.rule("[bold]Planned failover to on-premises, commit, reprotect to Azure")
    # Both the planned failover and the reprotect check the appliance's heartbeat first.
    events.heartbeat()
    time.sleep(3)
    planned = _run_job(client, replicator, api, console, f"/machines/{machine_id}/planned-failover")
    failback = client.machine(machine_id)["plannedFailback"]
    console.print(
        f"the on-premises VM runs; downtime {failback['downtimeSeconds']:.0f} s (Azure VM stopped -> "
        "on-premises heartbeat)"
    )
    committed = _run_job(client, replicator, api, console, f"/machines/{machine_id}/commit")
    left = client.resources_of_machine(machine_id)
    if left:
        raise FailbackDemoFailed(f"the commit left {len(left)} resource(s) of the machine in Azure: {left}")
    console.print("committed: 0 Azure resources of the machine left; it runs on-premises, not protected")

    data = next(d for d in replicator.disks if d.disk_id == "data")
    slots = rng.sample(range(data.size // WRITE), 4)
    for slot in slots:
        replicator.write("data", slot * WRITE, rng.randbytes(WRITE))
    written = len(slots) * WRITE
    console.print(f"the on-premises VM wrote {written // KIB} KiB at 4 scattered offsets of its data disk")
    events.heartbeat()
    time.sleep(3)
    reprotected = _run_job(
        client, replicator, api, console, f"/machines/{machine_id}/reprotect", {"applianceId": appliance_id}
    )
    view = client.machine(machine_id)
    sent, disks = view["plannedFailback"]["reprotectBytesSent"], view["plannedFailback"]["reprotectDiskBytes"]
    console.print(
        f"reprotect to Azure sent {sent // KIB:,} KiB for {written // KIB:,} KiB written on-premises "
        f"({sent / max(disks, 1):.2%} of the disks' {disks // KIB:,} KiB); the machine is {view['state']}"
    )
    return {
        "plannedFailoverJob": planned["id"],
        "commitJob": committed["id"],
        "reprotectToAzureJob": reprotected["id"],
        "reprotectBytesSent": sent,
    }


def _guest_writes(client: MigrationClient, disk_id: str, size: int, rng: random.Random, *, count: int) -> int:
    for slot in rng.sample(range(size // WRITE), count):
        guest_write(client.arm_admin, disk_id, slot * WRITE, rng.randbytes(WRITE))
    return count * WRITE


def _finished(job: dict[str, Any]) -> dict[str, Any] | None:
    return job if job["status"] not in ("NotStarted", "InProgress") else None


def _answer_until(
    client: MigrationClient, replicator: MachineReplicator, api: Any, done: Any, timeout: float
) -> Any:
    """The appliance's poll loop: answer the commands until `done()` gives something."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replicator.handle_commands(api)
        result = done()
        if result:
            return result
        time.sleep(2)
    raise FailbackDemoFailed(f"nothing came of the reverse protection within {timeout:.0f} s")


def _points(client: MigrationClient, machine_id: str) -> list[dict[str, Any]]:
    reverse = client.machine(machine_id).get("reverseProtection") or {}
    points: list[dict[str, Any]] = reverse.get("recoveryPoints", [])
    return points


def _check_equal(
    client: MigrationClient, disk_id: str, on_premises: Any, size: int, console: Console, at: str
) -> None:
    azure = client.disk_image(disk_id).read_bytes()[:size]
    local = on_premises.read_bytes()[:size]
    if azure + bytes(size - len(azure)) != local + bytes(size - len(local)):
        raise FailbackDemoFailed(f"the on-premises data disk differs from the Azure disk at {at}")
    console.print(f"on-premises data disk == Azure data disk at {at}, byte for byte")


def _show_points(console: Console, client: MigrationClient, machine_id: str) -> None:
    table = Table(title=f"Reverse recovery points of {machine_id}")
    for column in ("cycle", "processed", "transferred", "matched", "transferred / disk"):
        table.add_column(column)
    for point in _points(client, machine_id):
        processed = point["bytesProcessed"] or 1
        table.add_row(
            point["cycleId"],
            f"{point['bytesProcessed'] // KIB:,} KiB",
            f"{point['bytesTransferred'] // KIB:,} KiB",
            f"{point['bytesMatched'] // KIB:,} KiB",
            f"{point['bytesTransferred'] / processed:.2%}",
        )
    console.print(table)
