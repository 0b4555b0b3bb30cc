"""The migration story of `make demo`, after the replication story: the appliance replicates a machine
whose disk holds a real Ubuntu 20.04 guest (and, if the tools are there, a Windows Server 2019 OS disk);
the operator test-migrates it (a VM appears in the isolated test VNet, its OS disk carries the hydration
changes, read back from the local ARM endpoint's disk image), cleans up, and migrates it (source shut
down, final cycle, VM in the target VNet), then completes the migration. The summary shows the hydration
time under the local ARM endpoint's latency model and the number of sequential ARM waits.

Called by devhost/demo.py as `run_migration_demo(stack, workdir, console, replication)`, where
`replication` is what run_replication_demo returned (its appliance is reused when present).
"""

from __future__ import annotations

import difflib
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from appliance.control_plane import ApplianceApi, Registration
from appliance.replicator import MachineReplicator, SourceDisk
from devhost.arm import LATENCY_SCALE_ENV
from devhost.local_appliance import local_appliance, stack_storage
from devhost.stack import LocalStack
from shared.platform.arm_clients import build_arm_clients
from shared.platform.settings import Settings
from tests.e2e.conftest import Appliance, appliance_of
from tests.e2e_migration.guest_images import (
    GuestImage,
    linux_guest,
    missing_requirements,
    windows_guest,
    windows_settings,
)
from tests.e2e_migration.migration_client import (
    TARGET_VNET,
    TEST_VNET,
    MigrationClient,
    ensure_operator_network,
    wait_for,
)

MIB = 1024 * 1024


class MigrationDemoFailed(RuntimeError):
    pass


def run_migration_demo(
    stack: LocalStack, workdir: Path, console: Console, replication: dict[str, Any]
) -> dict[str, Any]:
    """Returns the figures of the summary (hydration seconds, ARM waits, VM ids) for the caller."""
    if reason := missing_requirements():
        console.print(f"[yellow]migration demo skipped: {reason}[/]")
        return {"skipped": reason}
    console.rule("[bold]Test migration and migration")
    settings = stack.settings
    scale = settings.get(LATENCY_SCALE_ENV, "?")
    with build_arm_clients(Settings.from_environ(settings)) as clients:
        ensure_operator_network(clients)
        client = MigrationClient(stack, clients)
        console.print(
            f"operator network ready: rg-target with {TARGET_VNET} (target) and {TEST_VNET} (isolated test "
            f"VNet); local ARM latency model at scale {scale}"
        )
        appliance = demo_appliance(client, workdir, replication)

        guest = linux_guest(workdir / "guests")
        linux = replicate_machine(client, appliance, guest, data_disk=True, console=console)
        figures: dict[str, Any] = {"linux": linux.machine_id}

        test = _test_migrate(client, console, linux.machine_id)
        figures["testMigration"] = test
        image = client.disk_image(_os_disk(client, test["vmId"]))
        _show_diff(console, "/etc/fstab", guest.fstab() or "", guest.fstab(image) or "")
        _cleanup(client, console, linux.machine_id)

        figures["migration"] = _migrate(client, console, linux, appliance)

        try:
            windows = windows_guest(workdir / "guests")
        except Exception as exc:  # building NTFS images needs ntfs-3g and hivex; the demo goes on without
            console.print(f"[yellow]Windows guest skipped: {exc}[/]")
            windows = None
        if windows is not None:
            machine = replicate_machine(client, appliance, windows, data_disk=False, console=console)
            result = _test_migrate(client, console, machine.machine_id)
            figures["windowsTestMigration"] = result
            before = windows_settings(windows, windows.path, workdir / "win-before")
            after = windows_settings(
                windows, client.disk_image(_os_disk(client, result["vmId"])), workdir / "win-after"
            )
            table = Table(title="Windows OS disk: source vs test VM")
            for column in ("setting", "source", "test VM"):
                table.add_column(column)
            for key in before:
                table.add_row(key, str(before[key]), str(after[key]))
            console.print(table)
            _cleanup(client, console, machine.machine_id)

    summary = Table(title="Migration summary")
    for column in ("run", "hydration (s)", "sequential ARM waits", "VM"):
        summary.add_column(column)
    for label, key in (
        ("Linux test migration", "testMigration"),
        ("Linux migration", "migration"),
        ("Windows test migration", "windowsTestMigration"),
    ):
        if key in figures:
            f = figures[key]
            summary.add_row(
                label,
                f"{f['hydrationSeconds']:.1f}",
                str(f["armWaitsCriticalPath"]),
                f["vmId"].rsplit("/", 1)[-1],
            )
    console.print(summary)
    console.print(
        f"(ARM latencies at scale {scale} of Azure's orders of magnitude; with the helper VM, the "
        "sequential waits are: import ∥ VNet ∥ NSG ∥ VM NIC, helper NIC, helper VM, script, helper "
        "delete, VM)"
    )
    return figures


def demo_appliance(client: MigrationClient, workdir: Path, replication: dict[str, Any]) -> Appliance:
    """The replication story's appliance when given (it replicates these machines too), else a new one."""
    api, appliance_id = replication.get("api"), replication.get("applianceId")
    if not isinstance(api, ApplianceApi) or not isinstance(appliance_id, str):
        created: Appliance = client.new_appliance(workdir / "appliance")
        return created
    registration = Registration(appliance_id=appliance_id, credential="")  # the api already carries it
    (workdir / "appliance").mkdir(parents=True, exist_ok=True)
    return appliance_of(
        local_appliance(client.stack, api, registration), stack_storage(client.stack), workdir / "appliance"
    )


def replicate_machine(
    client: MigrationClient, appliance: Appliance, guest: GuestImage, *, data_disk: bool, console: Console
) -> MachineReplicator:
    machine_id = f"{guest.os_type}-{uuid.uuid4().hex[:6]}"
    disks = [SourceDisk(disk_id="os", path=guest.path, is_os_disk=True)]
    if data_disk:
        path = guest.path.with_name(f"{machine_id}-data.img")
        with path.open("wb") as image:
            image.truncate(8 * MIB)
        disks.append(SourceDisk(disk_id="data", path=path))
    replicator = MachineReplicator(machine_id, disks, appliance.uploads, appliance.events)
    appliance.api.report_machines(
        [replicator.inventory(os_type=guest.os_type, os_name=guest.os_name, os_version=guest.os_version)]
    )
    client.enable_replication(machine_id)
    [initial] = replicator.handle_commands(appliance.api)
    client.wait_applied(machine_id, initial.cycle_id)
    console.print(
        f"[bold]{machine_id}[/] ({guest.os_name} {guest.os_version}, {len(disks)} disk(s)) replicated: "
        f"initial copy applied"
    )
    return replicator


def _test_migrate(client: MigrationClient, console: Console, machine_id: str) -> dict[str, Any]:
    started = time.perf_counter()
    job = client.run(f"/machines/{machine_id}/test-migrate", {}, timeout=900)
    show_job(console, job, time.perf_counter() - started)
    _require_done(console, job, f"test migration of {machine_id}")
    status: dict[str, Any] = client.instance_status(job["id"])["customStatus"]
    console.print(
        f"test VM [bold]{status['vmId'].rsplit('/', 1)[-1]}[/] is in {TEST_VNET}; temporary resources "
        f"left: {len([r for r in client.resources_of_job(job['id']) if '/hyd-' in r])}"
    )
    return status


def _require_done(console: Console, job: dict[str, Any], what: str) -> None:
    """A job that warned did its work (a Windows guest without a bundled Azure VM agent boots, but its
    preparation step says the agent must be installed): the demo says so and goes on."""
    if job["status"] == "Warning":
        warned = [s["name"] for s in job.get("steps", []) if s.get("status") == "Warning"]
        console.print(f"{what}: [yellow]Warning[/] (see the step(s) {', '.join(warned)} above)")
        return
    if job["status"] != "Succeeded":
        raise MigrationDemoFailed(f"{what} ended {job['status']}: {job.get('error')}")


def _cleanup(client: MigrationClient, console: Console, machine_id: str) -> None:
    job = client.run(f"/machines/{machine_id}/test-migrate/cleanup", timeout=600)
    left = client.resources_of_machine(machine_id)
    if job["status"] != "Succeeded" or left:
        raise MigrationDemoFailed(f"clean-up of {machine_id}: {job['status']}, left {left}")
    console.print(f"clean up test migration: [green]{job['status']}[/], nothing of {machine_id} left in ARM")


def _migrate(
    client: MigrationClient, console: Console, replicator: MachineReplicator, appliance: Appliance
) -> dict[str, Any]:
    machine_id = replicator.machine_id
    replicator.write("data", 0, b"written just before the cutover".ljust(4096, b"."))
    started = time.perf_counter()
    job_id = client.start(f"/machines/{machine_id}/migrate", {"shutdownSource": True})
    # The appliance polls: it shuts the source down and runs the final cycle.
    reports = wait_for(
        lambda: replicator.handle_commands(appliance.api),
        timeout=120,
        interval=1,
        what="the final cycle's command",
    )
    console.print(f"appliance: source shut down, final cycle {reports[-1].cycle_id} uploaded")
    job = client.wait_job(job_id, timeout=900)
    show_job(console, job, time.perf_counter() - started)
    _require_done(console, job, f"migration of {machine_id}")
    status: dict[str, Any] = client.instance_status(job_id)["customStatus"]
    name = status["vmId"].rsplit("/", 1)[-1]
    data = client.disk_image(client.vm_disks(status["vmId"])[1][0]).read_bytes()[:31]
    console.print(f"VM [bold]{name}[/] in {TARGET_VNET}; its data disk starts with {data!r}")
    response = client.http.delete(f"/machines/{machine_id}/replication")
    done = client.wait_job(response.json()["jobId"])
    console.print(
        f"complete migration: [green]{done['status']}[/]; machine "
        f"{client.machine(machine_id)['state']}, replica data removed"
    )
    return status


def _os_disk(client: MigrationClient, vm_id: str) -> str:
    return client.vm_disks(vm_id)[0]


def show_job(console: Console, job: dict[str, Any], seconds: float) -> None:
    table = Table(title=f"{job['kind']} {job['id']}: {job['status']} in {seconds:.1f} s")
    table.add_column("step")
    table.add_column("status")
    table.add_column("note")
    for step in job["steps"]:
        note = (step.get("error") or {}).get("message") or ""
        table.add_row(step["name"], step["status"], note[:100])
    console.print(table)


def _show_diff(console: Console, path: str, before: str, after: str) -> None:
    lines = list(
        difflib.unified_diff(
            before.splitlines(), after.splitlines(), f"source {path}", f"test VM {path}", lineterm="", n=0
        )
    )
    console.print(f"[bold]{path}[/] on the test VM's OS disk (read from the local ARM disk image):")
    for line in lines:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
        console.print(f"[{style}]{line}[/{style}]", highlight=False)
