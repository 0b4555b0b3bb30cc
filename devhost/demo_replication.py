"""The replication story of `make demo`: an appliance replicates a generated two-disk machine through
its initial copy and several delta cycles of random writes, then the replicas are checked byte for byte."""

from __future__ import annotations

import random
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from appliance.replicator import MachineReplicator, SourceDisk
from devhost.local_appliance import function_key, register_local_appliance, stack_storage
from devhost.stack import LocalStack
from devhost.waiting import wait_until
from shared.domain.cycle import CycleKind
from shared.replication.replica_disks import replica_blob_name

MIB = 1024 * 1024
DISKS = {"disk-os": 64 * MIB, "disk-data": 32 * MIB + 4096}
DELTA_CYCLES = 4


class DemoFailed(RuntimeError):
    pass


def run_replication_demo(stack: LocalStack, workdir: Path, console: Console) -> dict[str, Any]:
    operator = httpx.Client(
        base_url=f"{stack.functions_url}/api",
        headers={"x-functions-key": function_key(stack), "Authorization": f"Bearer {stack.operator_token()}"},
        timeout=30,
    )
    local = register_local_appliance(stack, name="demo-appliance", site="datacenter-1")
    api, registration, events = local.api, local.registration, local.events
    replicas = stack_storage(stack).replicas
    console.print(
        f"appliance registered: [bold]{registration.appliance_id}[/] (credential shown once, stored hashed)"
    )

    machine_id = f"web-{uuid.uuid4().hex[:6]}"
    rng = random.Random(2026)
    disks = []
    for index, (disk_id, size) in enumerate(DISKS.items()):
        path = workdir / f"{machine_id}-{disk_id}.img"
        with path.open("wb") as image:
            image.truncate(size)
            for offset in range(0, size // 2, MIB):  # half the disk holds data, the rest stays sparse
                image.seek(offset)
                image.write(rng.randbytes(MIB // 2))
        disks.append(SourceDisk(disk_id, path, is_os_disk=index == 0))
    replicator = MachineReplicator(machine_id, disks, local.uploads, events, flavour="vmware")
    api.report_machines([replicator.inventory(os_type="linux", os_name="Ubuntu", os_version="22.04")])
    events.heartbeat()
    console.print(
        f"machine reported: [bold]{machine_id}[/] with disks "
        + ", ".join(f"{d.disk_id} ({d.size / MIB:.1f} MiB)" for d in disks)
    )

    target = {
        "resourceGroup": "rg-migrated",
        "virtualNetwork": "vnet-prod",
        "subnet": "app",
        "vmSize": "Standard_D2s_v3",
        "diskType": "StandardSSD_LRS",
    }
    accepted = operator.put(f"/machines/{machine_id}/replication", json=target)
    _expect(
        accepted.status_code == 202, f"enable replication answered {accepted.status_code}: {accepted.text}"
    )
    job = _wait(
        lambda: _finished(operator.get(f"/jobs/{accepted.json()['jobId']}").json()), what="enable job"
    )
    console.print(
        f"replication enabled: job {job['id']} {job['status']} ({', '.join(s['name'] for s in job['steps'])})"
    )

    timings = []
    started = time.perf_counter()
    [initial] = replicator.handle_commands(api)
    _expect(initial.kind is CycleKind.INITIAL, "the first command should ask for the initial copy")
    machine = _wait_applied(operator, machine_id, initial.cycle_id)
    timings.append(("initial", initial.bytes_uploaded, time.perf_counter() - started))
    console.print(
        f"initial copy applied: {initial.bytes_uploaded / MIB:.1f} MiB uploaded (zeros skipped), "
        f"state {machine['state']}, progress {machine['progressPercent']:.0f}%"
    )
    for cycle in range(DELTA_CYCLES):
        for _ in range(25):
            disk = rng.choice(disks)
            length = rng.choice([4096, 65536, 512 * rng.randint(1, 512)])
            replicator.write(
                disk.disk_id, rng.randrange(0, (disk.size - length) // 512) * 512, rng.randbytes(length)
            )
        started = time.perf_counter()
        report = replicator.run_cycle(app_consistent=cycle % 2 == 1)
        _wait_applied(operator, machine_id, report.cycle_id)
        timings.append((f"delta {report.sequence}", report.bytes_uploaded, time.perf_counter() - started))

    machine = operator.get(f"/machines/{machine_id}").json()
    table = Table(title=f"Replication of {machine_id}")
    for column in ("cycle", "bytes uploaded", "event -> recovery point (s)"):
        table.add_column(column, justify="right" if column != "cycle" else "left")
    for name, size, seconds in timings:
        table.add_row(name, f"{size:,}", f"{seconds:.2f}")
    console.print(table)

    points = Table(title="Recovery points")
    for column in ("id", "time", "consistency"):
        points.add_column(column)
    for point in machine["recoveryPointList"]:
        points.add_row(point["id"], point["time"], point["consistency"])
    console.print(points)

    check = Table(title="Replica vs source")
    for column in ("disk", "source bytes", "replica blob bytes", "identical"):
        check.add_column(column)
    identical = True
    for disk in disks:
        blob = replicas.get_blob_client(replica_blob_name(machine_id, disk.disk_id))
        replica = blob.download_blob(offset=0, length=disk.size).readall()
        same = replica == disk.path.read_bytes()
        identical &= same
        check.add_row(
            disk.disk_id,
            f"{disk.size:,}",
            f"{blob.get_blob_properties().size:,}",
            "[green]yes[/]" if same else "[red]NO[/]",
        )
    console.print(check)
    console.print(
        f"machine: state [bold]{machine['state']}[/], health {machine['health']}, "
        f"last sync {machine['lastSyncTime']}, RPO {machine['rpoSeconds']} s, "
        f"{machine['recoveryPoints']['count']} recovery points"
    )
    replicator.close()
    _expect(identical, "a replica differs from its source disk")
    return {
        "machineId": machine_id,
        "applianceId": registration.appliance_id,
        "replicator": replicator,
        "api": api,
        "operator": operator,
    }


def _finished(job: dict[str, Any]) -> dict[str, Any] | None:
    return job if job["status"] not in ("NotStarted", "InProgress") else None


def _wait_applied(operator: httpx.Client, machine_id: str, cycle_id: str) -> dict[str, Any]:
    def applied() -> dict[str, Any] | None:
        machine: dict[str, Any] = operator.get(f"/machines/{machine_id}").json()
        return machine if any(p["cycleId"] == cycle_id for p in machine["recoveryPointList"]) else None

    return _wait(applied, what=f"cycle {cycle_id}")


_wait = partial(wait_until, timeout=120.0, interval=0.1, hint="see .devhost/logs/functions-host.log")


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailed(message)
