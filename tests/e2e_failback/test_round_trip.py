"""The whole way there and back, end to end on the local stack, one real Ubuntu guest: replicated, failed
over and committed; the Azure VM's guest writes; protected back to on-premises; a planned failover (the
on-premises images equal the Azure disks at the final snapshot); its commit, refused half-way by a policy on
disk deletion (it stays committing) and committed again (0 Azure resources of the machine left in the
resource group, the replicas equal the final snapshots, the appliance's copy gone);
writes on-premises; a reprotect to Azure that sends only those writes (within 10 %, not the disk size);
and a test migration from the recovery point the reprotect made. The real appliance client answers every
command, uploads the reprotect cycle, and the control plane applies it. The Functions host is killed
(SIGKILL, seeded: tests.support.host_kills) once at each kill point during four of those actions (the
failover and the commit of the failback by their own orchestration, the reprotect by the machine's reverse
orchestration, the reprotect to Azure) and restarted; each action is retried or left to the reconciler,
and ends as the flow asserts."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from shared.migration.resource_kinds import parse_arm_id
from shared.migration.tags import TAG_MACHINE_ID
from tests.e2e.conftest import Appliance
from tests.e2e_failback.test_planned_failover import (
    _azure_writes,
    _equal_to_azure,
    _images,
    _planned_failover,
)
from tests.e2e_failback.test_reprotect import (
    CHUNK,
    DATA_DISK_BYTES,
    _committed,
    _image,
    _reprotect,
    _run_action,
    _scattered,
)
from tests.e2e_migration.conftest import GuestMachine, http_ok
from tests.e2e_migration.guest_images import GuestImage
from tests.e2e_migration.migration_client import MigrationClient
from tests.support.host_kills import HostKiller

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]

COMMIT_STEPS = [
    "Check prerequisites",
    "Bring the replicas to the final snapshots",
    "Delete the Azure VM and its NICs",
    "Delete the Azure disks",
    "Delete the reverse snapshots",
    "Delete the on-premises snapshot",
]


def _replica(machine: GuestMachine, disk_id: str, size: int) -> bytes:
    blob = machine.appliance.replicas.get_blob_client(f"{machine.id}/{disk_id}.vhd")
    return blob.download_blob(offset=0, length=size).readall()


def _commit(
    client: MigrationClient, machine: GuestMachine, killer: HostKiller | None = None
) -> dict[str, Any]:
    return _run_action(client, machine, f"/machines/{machine.id}/commit", killer=killer)


def _reprotect_to_azure(
    client: MigrationClient, machine: GuestMachine, killer: HostKiller | None = None
) -> dict[str, Any]:
    appliance_id = machine.appliance.events.appliance_id
    machine.appliance.events.heartbeat()
    body = {"applianceId": appliance_id, "policy": {"uploadThreadsPerVm": 4}}
    return _run_action(client, machine, f"/machines/{machine.id}/reprotect", body, killer)


def test_fail_over_fail_back_commit_and_reprotect_to_azure_sending_only_the_changes(
    client: MigrationClient,
    module_appliance: Appliance,
    guest: GuestImage,
    arm_faults: Callable[[dict[str, Any]], None],
    host_killer: HostKiller,
) -> None:
    # The host is killed once at each kill point (seeded order) during the failover, the reprotect, the
    # failback's commit and the reprotect to Azure; each action still ends as the flow asserts.
    host_killer.plan()
    machine, azure_os, azure_data = _committed(client, module_appliance, guest, host_killer)
    azure = {"os": azure_os, "data": azure_data}
    vm_id = client.machine(machine.id)["failoverVmId"]
    group = parse_arm_id(vm_id).resource_group
    assert _reprotect(client, machine, host_killer)["status"] == "Succeeded"
    rng = random.Random(1313)
    _azure_writes(client, azure_data, rng, 5)

    # --- planned failover: on-premises equals the final snapshot -------------------------------
    planned = _planned_failover(client, machine)
    assert planned["status"] == "Succeeded", planned
    assert _equal_to_azure(client, machine, azure)
    view = client.machine(machine.id)
    final = view["plannedFailback"]["finalSnapshotIds"]
    downtime = view["plannedFailback"]["downtimeSeconds"]
    assert downtime is not None and downtime >= 0
    assert set(final) == set(azure.values())
    before_power_on = _images(machine)
    assert client.resources_of_machine(machine.id), "the machine has nothing in Azure before the commit"

    # --- a commit refused by Azure half-way stays committing, and is committed again --------
    arm_faults(
        {
            "match": {"method": "DELETE", "resourceType": "Microsoft.Compute/disks"},
            "fault": "policy",
            "times": 50,
        }
    )
    refused = _commit(client, machine)
    assert refused["status"] == "Failed" and refused["error"]["code"] == "MCP-3509", refused
    failed_step = next(s for s in refused["steps"] if s["status"] == "Failed")
    assert failed_step["name"] == "Delete the Azure disks"
    assert "commit again" in refused["error"]["message"]
    view = client.machine(machine.id)
    assert view["state"] == "CommittingFailback" and view["allowedOperations"] == ["commit"]
    assert vm_id.lower() not in {r.lower() for r in client.resources_of_machine(machine.id)}
    client.clear_faults()

    # --- commit: nothing of the machine is left in Azure ---------------------------------------
    committed = _commit(client, machine, host_killer)
    assert committed["status"] == "Succeeded", committed
    assert committed["kind"] == "CommitFailback"
    assert [s["name"] for s in committed["steps"]] == COMMIT_STEPS
    assert all(s["status"] == "Succeeded" for s in committed["steps"]), committed["steps"]
    view = client.machine(machine.id)
    assert view["state"] == "FailbackCommitted" and view["activeLocation"] == "onPremises"
    assert view["allowedOperations"] == ["stopReplication", "reprotect"]
    assert view.get("failoverVmId") is None and view.get("reverseProtection") is None
    in_group = list(client.arm.resources.resources.list_by_resource_group(group))
    gone = {vm_id.lower(), *(d.lower() for d in azure.values()), *(s.lower() for s in final.values())}
    assert not [r.id for r in in_group if str(r.id).lower() in gone], in_group
    assert not [r.id for r in in_group if (r.tags or {}).get(TAG_MACHINE_ID) == machine.id], in_group
    assert client.resources_of_machine(machine.id) == []
    for disk in machine.replicator.disks:
        assert not list(disk.path.parent.glob(f"{disk.path.name}.snap-*")), "the appliance kept its copy"
    # The replicas hold what the on-premises disks held before power-on: the final snapshots' data.
    for disk_id, image in before_power_on.items():
        assert _replica(machine, disk_id, len(image)) == image, disk_id

    # --- the on-premises machine runs and writes --------------------------------------------------
    writes = _scattered(rng, DATA_DISK_BYTES, 6, 2 * CHUNK)
    for offset in writes:
        machine.replicator.write("data", offset, rng.randbytes(2 * CHUNK))
    changed = len(writes) * 2 * CHUNK

    # --- reprotect to Azure: only those writes travel ------------------------------------------
    job = _reprotect_to_azure(client, machine, host_killer)
    assert not host_killer.planned
    assert job["status"] == "Succeeded", job
    assert job["kind"] == "Reprotect"
    view = client.machine(machine.id)
    assert view["state"] == "Replicating" and view["activeLocation"] == "onPremises"
    sent = view["plannedFailback"]["reprotectBytesSent"]
    disks = view["plannedFailback"]["reprotectDiskBytes"]
    assert changed <= sent <= changed * 1.1, (sent, changed, disks)
    assert sent < disks / 10, (sent, disks)
    on_premises = {d.disk_id: d.path for d in machine.replicator.disks}
    assert _replica(machine, "data", DATA_DISK_BYTES) == _image(on_premises["data"], DATA_DISK_BYTES)
    os_size = on_premises["os"].stat().st_size
    assert _replica(machine, "os", os_size) == _image(on_premises["os"], os_size)
    print(
        f"local stack: planned failover downtime {downtime:.1f} s; reprotect to Azure sent {sent} bytes for "
        f"{changed} bytes written; disks {disks} bytes"
    )

    # --- a test migration from the new recovery point ------------------------------------------
    cycle_id = view["plannedFailback"]["reprotectCycleId"]
    points = http_ok(client.http.get(f"/machines/{machine.id}/recovery-points"))["recoveryPoints"]
    newest = next(p for p in points if p["cycleId"] == cycle_id)
    test = client.run(f"/machines/{machine.id}/test-migrate", {"recoveryPoint": newest["id"]}, timeout=600)
    assert test["status"] in ("Succeeded", "Warning"), test
    cleanup = client.run(f"/machines/{machine.id}/test-migrate/cleanup", timeout=300)
    assert cleanup["status"] == "Succeeded", cleanup
    assert client.machine(machine.id)["state"] == "Replicating"
