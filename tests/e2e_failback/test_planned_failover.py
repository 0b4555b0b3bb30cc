"""Planned failover to on-premises end to end on the local stack, one machine through every step: a real
Ubuntu guest replicated, failed over, committed and protected back (reprotect); the Azure VM's guest
writes; then a planned failover (the on-premises images equal the Azure disks at the final snapshot, the
Azure VM is stopped, the on-premises VM runs, the downtime is reported), its cancel (the images are their
pre-power-on copies again, the Azure VM runs, the next reverse cycle applies), a planned failover whose
power-on fails and whose automatic cancel fails too (PlannedFailbackCancelFailed, Critical), a manual
cancel, and a last planned failover that succeeds. The real appliance client answers every command.
The Functions host is killed (SIGKILL, seeded: tests.support.host_kills) during the reprotect, the first
two planned failovers, the cancel and the manual cancel, all run by the machine's reverse orchestration,
and restarted; each action is retried or left to the reconciler."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import models as cm

from shared.domain.command import CommandKind, PowerState
from shared.migration.resource_kinds import parse_arm_id
from shared.migration.resources import PowerState as VmPowerState
from shared.migration.resources import vm_power_state
from shared.platform import crash_points
from tests.e2e.conftest import Appliance
from tests.e2e_failback.conftest import SNAPSHOT_WINDOW_SECONDS
from tests.e2e_failback.test_reprotect import (
    CHUNK,
    DATA_DISK_BYTES,
    _answer_until_points,
    _committed,
    _image,
    _reprotect,
    _reverse_points,
    _run_action,
    _run_with_appliance,
    _scattered,
)
from tests.e2e_migration.conftest import GuestMachine, http_ok
from tests.e2e_migration.guest_images import GuestImage
from tests.e2e_migration.migration_client import MigrationClient
from tests.support.guest_disk import guest_write
from tests.support.host_kills import BEFORE_HANDOVER, DURING_JOB, HostKiller

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]

PLANNED_STEPS = [
    "Check prerequisites",
    "Pre-sync",
    "Shut down the Azure VM",
    "Final snapshot and final sync",
    "Detach the disks from the appliance",
    "Snapshot the on-premises disks",
    "Power on the on-premises VM",
    "Verify heartbeat",
]


def _images(machine: GuestMachine) -> dict[str, bytes]:
    return {d.disk_id: d.path.read_bytes() for d in machine.replicator.disks}


def _equal_to_azure(client: MigrationClient, machine: GuestMachine, azure: dict[str, str]) -> bool:
    on_premises = {d.disk_id: d.path for d in machine.replicator.disks}
    for disk_id, azure_disk in azure.items():
        size = DATA_DISK_BYTES if disk_id == "data" else on_premises[disk_id].stat().st_size
        if _image(on_premises[disk_id], size) != _image(client.disk_image(azure_disk), size):
            return False
    return True


def _vm_power(client: MigrationClient, vm_id: str) -> VmPowerState:
    vm = parse_arm_id(vm_id)
    return vm_power_state(client.arm, vm.resource_group, vm.name)


def _planned_failover(
    client: MigrationClient, machine: GuestMachine, killer: HostKiller | None = None
) -> dict[str, Any]:
    return _run_action(client, machine, f"/machines/{machine.id}/planned-failover", killer=killer)


def _cancel(
    client: MigrationClient, machine: GuestMachine, killer: HostKiller | None = None
) -> dict[str, Any]:
    return _run_action(client, machine, f"/machines/{machine.id}/cancel-planned-failover", killer=killer)


def _snapshots_until_refused(client: MigrationClient, disk_id: str) -> datetime:
    """Take incremental snapshots of the disk, as another tool may, until Azure refuses one for its limit
    of 7 in the window (the local ARM's window is 20 seconds here): the time the refusal says to retry."""
    disk = parse_arm_id(disk_id)
    location = client.arm.compute.disks.get(disk.resource_group, disk.name).location
    body = cm.Snapshot(
        location=location,
        incremental=True,
        creation_data=cm.CreationData(create_option="Copy", source_resource_id=disk_id),
    )
    for n in range(8):
        try:
            client.arm.compute.snapshots.begin_create_or_update(
                disk.resource_group, f"other-tool-{uuid.uuid4().hex[:8]}-{n}", body
            )
        except HttpResponseError as refused:
            assert refused.status_code == 409 and refused.error is not None, refused
            assert refused.error.code == "OperationNotAllowed", refused
            message = str(refused.error.message)
            assert (
                f"has reached the limit of 7 incremental snapshots in {SNAPSHOT_WINDOW_SECONDS} seconds"
                in (message)
            ), message
            return datetime.fromisoformat(message.rsplit("Retry after ", 1)[1].rstrip("."))
    raise AssertionError("Azure's limit refused none of 8 incremental snapshots taken at once")


def _pre_sync_snapshot_time(client: MigrationClient, disk_id: str, job_id: str) -> datetime:
    disk = parse_arm_id(disk_id)
    taken = [
        s
        for s in client.arm.compute.snapshots.list_by_resource_group(disk.resource_group)
        if s.name.endswith(f"{job_id[-20:]}-pre")
        and s.creation_data.source_resource_id.lower() == disk_id.lower()
    ]
    assert len(taken) == 1, [s.name for s in taken]
    created: datetime = taken[0].time_created
    return created


def _azure_writes(client: MigrationClient, azure_data: str, rng: random.Random, count: int) -> None:
    for offset in _scattered(rng, DATA_DISK_BYTES, count, 2 * CHUNK):
        guest_write(client.arm_admin, azure_data, offset, rng.randbytes(2 * CHUNK))


def test_planned_failover_cancel_automatic_cancel_and_again(
    client: MigrationClient, module_appliance: Appliance, guest: GuestImage, host_killer: HostKiller
) -> None:
    # The host is killed during each action the machine's reverse orchestration runs, each way once: the
    # reprotect before its hand-over, left to the reconciler (no reverse instance runs yet: rolled back
    # and run again); the planned failover the same way (the instance runs its cycles: the reconciler
    # delivers it again); the cancel once woken; the planned failover whose power-on fails while it runs;
    # the manual cancel before its hand-over, retried with its key. The two points before the hand-over
    # are drawn. Each action still ends as the flow asserts.
    first, second = host_killer.rng.sample(BEFORE_HANDOVER, 2)
    host_killer.add(first, retried=False)
    host_killer.add(second, retried=False)
    host_killer.add(crash_points.ORCHESTRATION_STARTED, retried=host_killer.rng.random() < 0.5)
    host_killer.add(DURING_JOB, retried=host_killer.rng.random() < 0.5)
    host_killer.add(first, retried=True)
    machine, azure_os, azure_data = _committed(client, module_appliance, guest)
    azure = {"os": azure_os, "data": azure_data}
    vm_id = client.machine(machine.id)["failoverVmId"]
    assert _reprotect(client, machine, host_killer)["status"] == "Succeeded"
    rng = random.Random(13)
    _azure_writes(client, azure_data, rng, 6)

    # --- a planned failover ----------------------------------------------------------------------
    job = _planned_failover(client, machine, host_killer)
    assert job["status"] == "Succeeded", job
    assert [s["name"] for s in job["steps"]] == PLANNED_STEPS
    view = client.machine(machine.id)
    assert view["state"] == "FailedBack" and view["activeLocation"] == "onPremises"
    assert view["allowedOperations"] == ["commit", "cancelPlannedFailover"]
    failback = view["plannedFailback"]
    assert failback["jobId"] == job["id"] and failback["downtimeSeconds"] is not None
    assert failback["downtimeSeconds"] >= 0 and failback["onPremisesUpAt"] >= failback["azureVmStoppedAt"]
    # Nothing written in Azure was lost: the images are the stopped VM's disks (= the final snapshots).
    assert _equal_to_azure(client, machine, azure)
    final = {d["azureDiskId"]: d["lastSnapshotId"] for d in view["reverseProtection"]["disks"]}
    assert failback["finalSnapshotIds"] == final
    assert _vm_power(client, vm_id) is VmPowerState.DEALLOCATED
    assert machine.replicator.power.state is PowerState.ON
    assert set(failback["prePowerOnSnapshots"]) == {"os", "data"}
    before_power_on = _images(machine)

    # The on-premises VM runs and writes.
    data = next(d.path for d in machine.replicator.disks if d.disk_id == "data")
    with data.open("r+b") as image:
        image.seek(3 * CHUNK)
        image.write(rng.randbytes(4 * CHUNK))
    assert _images(machine) != before_power_on

    # --- cancel: back as before, reverse replication resumes -------------------------------------
    cancel = _cancel(client, machine, host_killer)
    assert cancel["status"] == "Succeeded", cancel
    assert _images(machine) == before_power_on
    assert machine.replicator.power.state is PowerState.OFF
    assert _vm_power(client, vm_id) is VmPowerState.RUNNING
    view = client.machine(machine.id)
    assert view["state"] == "ReverseReplicating" and view.get("plannedFailback") is None
    assert not list(data.parent.glob(f"{data.name}.snap-*")), "the disks' copies were not deleted"
    points = len(_reverse_points(client, machine))
    _azure_writes(client, azure_data, rng, 3)
    _answer_until_points(client, machine, points + 1, timeout=180)
    assert _equal_to_azure(client, machine, azure)

    # --- power-on fails; the automatic cancel fails too; a manual cancel succeeds --------------
    machine.replicator.faults[CommandKind.POWER_ON_MACHINE] = "the host refused to power the VM on"
    machine.replicator.faults[CommandKind.REVERT_DISKS] = "the datastore is read-only"
    failed = _planned_failover(client, machine, host_killer)
    assert failed["status"] == "Failed", failed
    failed_step = next(s for s in failed["steps"] if s["status"] == "Failed")
    assert failed_step["name"] == "Power on the on-premises VM"
    auto = _run_with_appliance(client, machine, f"{failed['id']}-cancel", timeout=300)
    assert auto["status"] == "Failed" and auto["kind"] == "CancelPlannedFailover", auto
    assert "do not disable replication" in auto["error"]["message"]
    view = client.machine(machine.id)
    assert view["state"] == "PlannedFailbackCancelFailed" and view["health"] == "Critical"
    assert view["allowedOperations"] == ["cancelPlannedFailover"]
    machine.replicator.faults.clear()
    manual = _cancel(client, machine, host_killer)
    assert not host_killer.planned
    log = (host_killer.stack.data_dir / "logs" / "functions-host.log").read_text(errors="replace")
    assert f"on machine {machine.id} was not acknowledged by its Reverse orchestration" in log
    assert manual["status"] == "Succeeded", manual
    view = client.machine(machine.id)
    assert view["state"] == "ReverseReplicating" and view["health"] != "Critical"
    assert _vm_power(client, vm_id) is VmPowerState.RUNNING

    # --- another planned failover, the disk at Azure's snapshot limit: it waits, then succeeds -----
    _azure_writes(client, azure_data, rng, 2)
    retry_at = _snapshots_until_refused(client, azure_data)
    started = datetime.now(UTC)
    again = _planned_failover(client, machine)
    assert started < retry_at, "the planned failover began after the window had cleared: nothing was tested"
    assert again["status"] == "Succeeded", again
    # Its pre-sync snapshot of the data disk was refused, asked again on a durable timer, and taken only
    # once the window had let the oldest snapshot go.
    assert _pre_sync_snapshot_time(client, azure_data, again["id"]) >= retry_at
    assert _equal_to_azure(client, machine, azure)
    assert client.machine(machine.id)["state"] == "FailedBack"
    events = http_ok(client.http.get(f"/machines/{machine.id}/events"))
    assert any(e.get("errorCode") == "MCP-3508" for e in events["events"]), events
