"""Guests other than the supported Linux of test_flow: an OS version hydration does not prepare (the job
stops with "manual preparation required" and the list of changes, and succeeds without hydration once
the operator confirms), and Windows (only the OS disk goes to the helper; the hive edits land on the
test VM's OS disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Appliance
from tests.e2e_migration.conftest import machine_state, replicate_guest
from tests.e2e_migration.guest_images import linux_guest, windows_guest, windows_settings
from tests.e2e_migration.migration_client import MigrationClient, succeeded
from tests.support.arm_operations import arm_group_and_name

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]


def os_disk_image(client: MigrationClient, job_id: str) -> Path:
    vm_id = client.instance_status(job_id)["customStatus"]["vmId"]
    group, name = arm_group_and_name(vm_id)
    vm = client.arm.compute.virtual_machines.get(group, name)
    return client.disk_image(vm.properties.storage_profile.os_disk.managed_disk.id)


def test_an_unsupported_os_needs_manual_preparation_unless_confirmed(
    client: MigrationClient, module_appliance: Appliance, tmp_path: Path
) -> None:
    guest = linux_guest(tmp_path, "centos", "7.2")  # CentOS 7.0-7.3 are not in the supported list
    machine = replicate_guest(module_appliance, client, guest)

    job = client.run(f"/machines/{machine.id}/test-migrate", {})
    assert job["status"] == "Failed", job
    assert job["error"]["code"] == "ManualPreparationRequired"
    message = job["error"]["message"]
    assert "manual preparation required" in message and "preparedManually" in message
    assert "fstab" in message  # the list of changes the operator has to make
    prepare = next(s for s in job["steps"] if s["name"] == "Run preparation script")
    assert prepare["status"] == "Failed"
    assert client.resources_of_job(job["id"]) == []
    assert machine_state(client, machine.id) == "Replicating"

    confirmed = client.run(f"/machines/{machine.id}/test-migrate", {"preparedManually": True})
    assert succeeded(confirmed), confirmed
    skipped = {s["name"]: s for s in confirmed["steps"]}
    assert skipped["Create temporary VM"]["status"] == "Cancelled"
    assert "manual" in skipped["Run preparation script"]["error"]["message"]
    # Without hydration the disk is the recovery point's, unchanged.
    assert guest.fstab(os_disk_image(client, confirmed["id"])) == guest.fstab()
    assert client.run(f"/machines/{machine.id}/test-migrate/cleanup")["status"] == "Succeeded"
    assert client.resources_of_machine(machine.id) == []


def test_windows_os_disk_is_hydrated(
    client: MigrationClient, module_appliance: Appliance, tmp_path: Path
) -> None:
    guest = windows_guest(tmp_path)
    machine = replicate_guest(module_appliance, client, guest, extra_disks={"data": 4 * 1024 * 1024})
    before = windows_settings(guest, guest.path, tmp_path / "before")
    assert before["vmbusStart"] != 0 and before["firstBootStaged"] is False

    job = client.run(f"/machines/{machine.id}/test-migrate", {})
    assert job["status"] in ("Succeeded", "Warning"), job
    after = windows_settings(guest, os_disk_image(client, job["id"]), tmp_path / "after")
    assert after == {
        "vmbusStart": 0,
        "storvscStart": 0,
        "sanPolicy": 1,
        "dhcpStart": 2,
        "firstBootStaged": True,
    }
    assert windows_settings(guest, guest.path, tmp_path / "source") == before  # the source is untouched
    assert client.run(f"/machines/{machine.id}/test-migrate/cleanup")["status"] == "Succeeded"
    assert client.resources_of_machine(machine.id) == []
