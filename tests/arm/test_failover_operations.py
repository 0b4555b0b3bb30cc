"""What a failover does to Azure, through the real azure-mgmt-compute client against the local endpoint:
incremental snapshots of managed disks, starting and deallocating a VM, swapping its disks, and the
faults of each of those operations."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from azure.mgmt.compute import models as cm
from azure.storage.blob import ContainerClient

from devhost.arm import LOCAL_SUBSCRIPTION_ID
from shared.migration import resource_kinds as kinds
from shared.migration import resources as ops
from shared.migration.resources import PowerState
from shared.migration.tags import Purpose, ResourceTags
from shared.platform.arm_clients import ArmClients, build_arm_clients
from shared.platform.arm_errors import ArmConflict, ArmRequestFailed, PolicyDisallowed, QuotaExceeded
from shared.replication.vhd import MIB
from tests.arm.conftest import LOCATION, STORAGE_ACCOUNT_ID, TOKEN, LocalArmEndpoint, arm_settings, make_tags
from tests.arm.test_compute import replica_with_data

pytestmark = pytest.mark.integration

VM_TYPE = "Microsoft.Compute/virtualMachines"
SNAPSHOT_TYPE = "Microsoft.Compute/snapshots"


def _image(local_arm: LocalArmEndpoint, unique_id: str | None) -> Path:
    assert unique_id
    return local_arm.data_dir / "disks" / f"{unique_id}.raw"


def disk_image(local_arm: LocalArmEndpoint, clients: ArmClients, rg: str, name: str) -> Path:
    return _image(local_arm, clients.compute.disks.get(rg, name).properties.unique_id)


def snapshot_image(local_arm: LocalArmEndpoint, clients: ArmClients, rg: str, name: str) -> Path:
    return _image(local_arm, clients.compute.snapshots.get(rg, name).properties.unique_id)


def imported(
    clients: ArmClients, container: ContainerClient, rg: str, name: str, marker: bytes, tags: ResourceTags
) -> ops.DiskRef:
    """A Linux disk imported from a replica with `marker` at 1 MiB, as a failover imports its disks."""
    url, _ = replica_with_data(container, 2 * MIB, marker, offset=MIB)
    return ops.import_disk(
        clients,
        rg,
        name,
        location=LOCATION,
        source_uri=url,
        storage_account_id=STORAGE_ACCOUNT_ID,
        os_type="Linux",
        tags=tags,
    )


@dataclass
class FailedOverVm:
    name: str
    id: str
    os_disk: ops.DiskRef
    data_disk: ops.DiskRef


@pytest.fixture()
def failed_over_vm(
    clients: ArmClients, resource_group: str, container: ContainerClient
) -> Iterator[FailedOverVm]:
    """A VM created from imported disks (OS disk + one data disk), running, as failover leaves it."""
    tags = make_tags(Purpose.FINAL)
    vnet = ops.ensure_virtual_network(
        clients,
        resource_group,
        "target",
        location=LOCATION,
        address_prefix="10.60.0.0/24",
        subnet_name="default",
        subnet_prefix="10.60.0.0/26",
        tags=tags,
    )
    nic = ops.ensure_network_interface(
        clients,
        resource_group,
        "fo-nic",
        location=LOCATION,
        subnet_id=vnet.subnet_id,
        network_security_group_id=None,
        tags=tags,
        private_ip_address="10.60.0.10",
    )
    os_disk = imported(clients, container, resource_group, "fo-os-k", b"os at point k".ljust(512), tags)
    data_disk = imported(clients, container, resource_group, "fo-data-k", b"data at point k".ljust(512), tags)
    vm = ops.ensure_vm_from_disks(
        clients,
        resource_group,
        "fo-vm",
        location=LOCATION,
        size="Standard_D2s_v3",
        nic_id=nic.id,
        os_disk_id=os_disk.id,
        os_type="Linux",
        data_disk_ids=[data_disk.id],
        tags=tags,
    )
    yield FailedOverVm("fo-vm", vm.id, os_disk, data_disk)


# --- incremental snapshots --------------------------------------------------------------------------


def test_an_incremental_snapshot_has_azures_fields_and_keeps_its_point_in_time(
    clients: ArmClients,
    resource_group: str,
    local_arm: LocalArmEndpoint,
    failed_over_vm: FailedOverVm,
) -> None:
    rg, disk = resource_group, failed_over_vm.data_disk
    tags = make_tags(Purpose.FAILBACK_BASELINE, job_id="job-failover")
    # Taken of a disk attached to a running VM, as the failback baseline is.
    first = ops.create_incremental_snapshot(
        clients, rg, "baseline-data-1", location=LOCATION, source_disk_id=disk.id, tags=tags
    )
    got = clients.compute.snapshots.get(rg, "baseline-data-1")
    props = got.properties
    assert props.incremental is True
    assert props.provisioning_state == "Succeeded"
    assert props.creation_data.create_option == "Copy"
    assert props.creation_data.source_resource_id == disk.id
    source_unique_id = clients.compute.disks.get(rg, "fo-data-k").properties.unique_id
    assert props.creation_data.source_unique_id == source_unique_id
    assert props.disk_size_bytes == 2 * MIB and props.disk_state == "Unattached"
    assert got.tags == tags.to_arm() and got.tags["migrate-purpose"] == "failback-baseline"
    assert first.incremental_snapshot_family_id == props.incremental_snapshot_family_id
    assert first.source_disk_id == disk.id and first.size_bytes == 2 * MIB

    # The VM writes to its disk; the snapshot still holds the disk as it was, byte for byte.
    before = disk_image(local_arm, clients, rg, "fo-data-k").read_bytes()
    with disk_image(local_arm, clients, rg, "fo-data-k").open("r+b") as handle:
        handle.seek(MIB)
        handle.write(b"written after the baseline".ljust(512))
    assert snapshot_image(local_arm, clients, rg, "baseline-data-1").read_bytes() == before

    # A second incremental snapshot of the same disk is in the same family; another disk's is not.
    second = ops.create_incremental_snapshot(
        clients, rg, "baseline-data-2", location=LOCATION, source_disk_id=disk.id, tags=tags
    )
    assert second.incremental_snapshot_family_id == first.incremental_snapshot_family_id
    other = ops.create_incremental_snapshot(
        clients, rg, "baseline-os-1", location=LOCATION, source_disk_id=failed_over_vm.os_disk.id, tags=tags
    )
    assert other.incremental_snapshot_family_id not in (None, first.incremental_snapshot_family_id)

    # Read back through a disk made from it, as failback (or a restore) would.
    restored = clients.compute.disks.begin_create_or_update(
        rg,
        "restored",
        cm.Disk(
            location=LOCATION,
            properties=cm.DiskProperties(
                creation_data=cm.CreationData(create_option="Copy", source_resource_id=first.id)
            ),
        ),
    ).result()
    assert restored.properties.disk_size_bytes == 2 * MIB
    assert disk_image(local_arm, clients, rg, "restored").read_bytes() == before


def test_create_incremental_snapshot_is_idempotent_by_name(
    clients: ArmClients, resource_group: str, failed_over_vm: FailedOverVm, local_arm: LocalArmEndpoint
) -> None:
    rg, disk = resource_group, failed_over_vm.os_disk
    tags = make_tags(
        Purpose.FAILBACK_BASELINE, job_id="job-1", created_at=datetime.now(UTC) - timedelta(minutes=5)
    )
    first = ops.create_incremental_snapshot(
        clients, rg, "baseline-os", location=LOCATION, source_disk_id=disk.id, tags=tags
    )
    image = snapshot_image(local_arm, clients, rg, "baseline-os").read_bytes()
    with disk_image(local_arm, clients, rg, "fo-os-k").open("r+b") as handle:
        handle.write(b"changed")
    # A retried activity builds its tags again (a later created-at): the snapshot is not retaken.
    local_arm.add_fault({"match": {"method": "PUT", "resourceType": SNAPSHOT_TYPE}, "fault": "conflict"})
    again = ops.create_incremental_snapshot(
        clients,
        rg,
        "baseline-os",
        location=LOCATION,
        source_disk_id=disk.id,
        tags=make_tags(Purpose.FAILBACK_BASELINE),
    )
    assert again == first
    assert local_arm.faults()[0]["remaining"] == 1  # no PUT was sent
    assert clients.compute.snapshots.get(rg, "baseline-os").tags == tags.to_arm()
    assert snapshot_image(local_arm, clients, rg, "baseline-os").read_bytes() == image


def test_a_snapshot_left_failed_is_taken_again(
    clients: ArmClients, resource_group: str, failed_over_vm: FailedOverVm, local_arm: LocalArmEndpoint
) -> None:
    rg, disk = resource_group, failed_over_vm.data_disk
    tags = make_tags(Purpose.FAILBACK_BASELINE)
    local_arm.add_fault(
        {"match": {"method": "PUT", "resourceType": SNAPSHOT_TYPE}, "fault": "operationFailure"}
    )
    with pytest.raises(ArmRequestFailed) as failed:
        ops.create_incremental_snapshot(
            clients, rg, "flaky", location=LOCATION, source_disk_id=disk.id, tags=tags
        )
    assert failed.value.arm_code == "InternalOperationError"
    assert clients.compute.snapshots.get(rg, "flaky").properties.provisioning_state == "Failed"

    ops.create_incremental_snapshot(
        clients, rg, "flaky", location=LOCATION, source_disk_id=disk.id, tags=tags
    )
    assert clients.compute.snapshots.get(rg, "flaky").properties.provisioning_state == "Succeeded"
    assert (
        snapshot_image(local_arm, clients, rg, "flaky").read_bytes()
        == disk_image(local_arm, clients, rg, "fo-data-k").read_bytes()
    )


def test_a_snapshot_still_being_taken_is_a_conflict_until_it_is_done(
    clients: ArmClients, resource_group: str, failed_over_vm: FailedOverVm, local_arm: LocalArmEndpoint
) -> None:
    rg, disk = resource_group, failed_over_vm.data_disk
    tags = make_tags(Purpose.FAILBACK_BASELINE)
    local_arm.set_latency({"scale": 1, "overrides": {SNAPSHOT_TYPE: {"put": 1.5}}})
    body = cm.Snapshot(
        location=LOCATION,
        tags=tags.to_arm(),
        properties=cm.SnapshotProperties(
            incremental=True, creation_data=cm.CreationData(create_option="Copy", source_resource_id=disk.id)
        ),
    )
    # An earlier run sent its PUT and died before the snapshot was done.
    poller = clients.compute.snapshots.begin_create_or_update(rg, "in-flight", body)
    # Without a retry budget the busy answer is the typed conflict...
    with (
        build_arm_clients(arm_settings(local_arm.url, ARM_RETRY_BUDGET_SECONDS="0")) as impatient,
        pytest.raises(ArmConflict) as busy,
    ):
        ops.create_incremental_snapshot(
            impatient, rg, "in-flight", location=LOCATION, source_disk_id=disk.id, tags=tags
        )
    assert busy.value.arm_code == "AnotherOperationInProgress"
    # ...with one, the client waits until the snapshot is done.
    done = ops.create_incremental_snapshot(
        clients, rg, "in-flight", location=LOCATION, source_disk_id=disk.id, tags=tags
    )
    assert done.id.endswith("/in-flight")
    poller.result()


@pytest.mark.parametrize(
    ("fault", "error"),
    [("policy", PolicyDisallowed), ("conflict", ArmConflict), ("quota", QuotaExceeded)],
)
def test_snapshot_faults_are_typed(
    clients: ArmClients,
    resource_group: str,
    failed_over_vm: FailedOverVm,
    local_arm: LocalArmEndpoint,
    fault: str,
    error: type[Exception],
) -> None:
    local_arm.add_fault({"match": {"method": "PUT", "resourceType": SNAPSHOT_TYPE}, "fault": fault})
    # A busy answer (the conflict) is typed once the retry budget is spent: none here.
    with (
        build_arm_clients(arm_settings(local_arm.url, ARM_RETRY_BUDGET_SECONDS="0")) as impatient,
        pytest.raises(error),
    ):
        ops.create_incremental_snapshot(
            impatient,
            resource_group,
            "refused",
            location=LOCATION,
            source_disk_id=failed_over_vm.data_disk.id,
            tags=make_tags(Purpose.FAILBACK_BASELINE),
        )
    assert list(clients.compute.snapshots.list_by_resource_group(resource_group)) == []


def test_a_throttled_snapshot_is_retried(
    clients: ArmClients, resource_group: str, failed_over_vm: FailedOverVm, local_arm: LocalArmEndpoint
) -> None:
    local_arm.add_fault(
        {
            "match": {"method": "PUT", "resourceType": SNAPSHOT_TYPE},
            "fault": "throttle",
            "retryAfter": 0,
            "times": 2,
        }
    )
    ops.create_incremental_snapshot(
        clients,
        resource_group,
        "throttled",
        location=LOCATION,
        source_disk_id=failed_over_vm.data_disk.id,
        tags=make_tags(Purpose.FAILBACK_BASELINE),
    )
    assert local_arm.faults() == []


def test_the_snapshot_kind_deletes_and_the_sweeper_keeps_baselines(
    clients: ArmClients, resource_group: str, failed_over_vm: FailedOverVm
) -> None:
    from shared.migration.sweeper import JobState, sweep_temporary_resources

    old = datetime.now(UTC) - timedelta(days=2)
    baseline = ops.create_incremental_snapshot(
        clients,
        resource_group,
        "kept-baseline",
        location=LOCATION,
        source_disk_id=failed_over_vm.data_disk.id,
        tags=make_tags(Purpose.FAILBACK_BASELINE, job_id="job-done", created_at=old),
    )
    leftover = ops.create_incremental_snapshot(
        clients,
        resource_group,
        "leftover",
        location=LOCATION,
        source_disk_id=failed_over_vm.data_disk.id,
        tags=make_tags(Purpose.TEMPORARY, job_id="job-done", created_at=old),
    )
    assert kinds.kind_of(baseline.id) is kinds.ResourceKind.SNAPSHOT
    assert kinds.spec_of(kinds.ResourceKind.SNAPSHOT).create is ops.create_incremental_snapshot
    assert kinds.ResourceKind.SNAPSHOT in kinds.SWEPT_KINDS
    report = sweep_temporary_resources(
        clients, now=datetime.now(UTC), min_age=timedelta(hours=1), job_state=lambda _: JobState.FINISHED
    )
    assert leftover.id in [d.id for d in report.deleted]
    assert baseline.id not in [d.id for d in report.deleted]
    # Compensation deletes by id, whatever the purpose; twice is as good as once.
    kinds.delete_resource(clients, baseline.id)
    kinds.delete_resource(clients, baseline.id)
    assert [s.name for s in clients.compute.snapshots.list_by_resource_group(resource_group)] == []


# --- power -------------------------------------------------------------------------------------------


def _statuses(clients: ArmClients, rg: str, name: str) -> list[str]:
    return [s.code for s in clients.compute.virtual_machines.instance_view(rg, name).statuses]


def test_start_and_deallocate_wait_and_are_idempotent(
    clients: ArmClients, resource_group: str, failed_over_vm: FailedOverVm
) -> None:
    rg, name = resource_group, failed_over_vm.name
    assert ops.vm_power_state(clients, rg, name) is PowerState.RUNNING
    already = ops.start_vm(clients, rg, name)
    assert already == ops.VmPower(
        id=failed_over_vm.id, name=name, power_state=PowerState.RUNNING, changed=False
    )

    stopped = ops.deallocate_vm(clients, rg, name)
    assert stopped.changed and stopped.power_state is PowerState.DEALLOCATED
    assert _statuses(clients, rg, name) == ["ProvisioningState/succeeded", "PowerState/deallocated"]
    assert clients.compute.disks.get(rg, "fo-os-k").properties.disk_state == "Reserved"
    assert ops.deallocate_vm(clients, rg, name).changed is False

    started = ops.start_vm(clients, rg, name)
    assert started.changed and _statuses(clients, rg, name)[-1] == "PowerState/running"
    assert clients.compute.disks.get(rg, "fo-os-k").properties.disk_state == "Attached"

    # Powered off (still allocated) is not deallocated: deallocate_vm finishes the job.
    clients.compute.virtual_machines.begin_power_off(rg, name).result()
    assert ops.vm_power_state(clients, rg, name) is PowerState.STOPPED
    assert ops.deallocate_vm(clients, rg, name).changed is True
    assert ops.vm_power_state(clients, rg, name) is PowerState.DEALLOCATED


def test_power_actions_are_async_operations(
    local_arm: LocalArmEndpoint, resource_group: str, failed_over_vm: FailedOverVm
) -> None:
    local_arm.set_latency({"scale": 1, "overrides": {VM_TYPE: {"post:deallocate": 1.0}}})
    http = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    base = (
        f"{local_arm.url}/subscriptions/{LOCAL_SUBSCRIPTION_ID}/resourceGroups/{resource_group}/providers/"
        f"{VM_TYPE}/{failed_over_vm.name}"
    )
    api = "api-version=2026-04-01"
    answer = http.post(f"{base}/deallocate?{api}")
    assert answer.status_code == 202 and answer.content == b""
    assert all(h in answer.headers for h in ("Azure-AsyncOperation", "Location", "Retry-After"))
    # Another write while it runs: compute's 409.
    busy = http.post(f"{base}/start?{api}")
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "AnotherOperationInProgress"
    assert http.get(answer.headers["Location"]).status_code == 202
    wait_for = datetime.now(UTC) + timedelta(seconds=10)
    while http.get(answer.headers["Azure-AsyncOperation"]).json()["status"] == "InProgress":
        assert datetime.now(UTC) < wait_for
        time.sleep(0.05)
    assert http.get(answer.headers["Location"]).status_code == 204
    view = http.get(f"{base}/instanceView?{api}").json()
    assert view["statuses"][1] == {
        "code": "PowerState/deallocated",
        "level": "Info",
        "displayStatus": "VM deallocated",
    }


def test_starting_a_deallocated_vm_needs_quota(
    clients: ArmClients, resource_group: str, failed_over_vm: FailedOverVm, local_arm: LocalArmEndpoint
) -> None:
    rg, name = resource_group, failed_over_vm.name
    ops.deallocate_vm(clients, rg, name)
    local_arm.admin.put("/_admin/quota", json={"cores": 0}).raise_for_status()
    with pytest.raises(QuotaExceeded) as refused:
        ops.start_vm(clients, rg, name)
    assert re.search(
        r"Maximum allowed: 0, Current in use: \d+, Additional requested: 2", refused.value.message
    )
    assert ops.vm_power_state(clients, rg, name) is PowerState.DEALLOCATED
    local_arm.admin.put("/_admin/quota", json={"cores": None}).raise_for_status()
    assert ops.start_vm(clients, rg, name).changed is True


@pytest.mark.parametrize(
    ("action", "operation", "fault", "error", "code"),
    [
        ("start", ops.start_vm, "quota", QuotaExceeded, "OperationNotAllowed"),
        ("start", ops.start_vm, "operationFailure", ArmRequestFailed, "InternalOperationError"),
        ("deallocate", ops.deallocate_vm, "conflict", ArmConflict, "AnotherOperationInProgress"),
        ("deallocate", ops.deallocate_vm, "operationFailure", ArmRequestFailed, "InternalOperationError"),
    ],
)
def test_power_action_faults_are_typed_and_leave_the_power_state(
    clients: ArmClients,
    impatient: ArmClients,
    resource_group: str,
    failed_over_vm: FailedOverVm,
    local_arm: LocalArmEndpoint,
    action: str,
    operation: object,
    fault: str,
    error: type[Exception],
    code: str,
) -> None:
    rg, name = resource_group, failed_over_vm.name
    if action == "start":
        ops.deallocate_vm(clients, rg, name)
    before = ops.vm_power_state(clients, rg, name)
    local_arm.add_fault(
        {
            "match": {"method": "POST", "resourceType": VM_TYPE, "action": action},
            "fault": fault,
            "quotaLimit": 2,
        }
    )
    assert callable(operation)
    with pytest.raises(error) as raised:
        operation(impatient, rg, name)  # no retry budget: a busy answer is typed at once
    assert getattr(raised.value, "arm_code", None) == code
    assert ops.vm_power_state(clients, rg, name) is before
    if fault == "quota":
        assert "Additional requested: 2" in str(raised.value)
    # The fault is spent: the retry the flow makes succeeds.
    assert operation(clients, rg, name).changed is True


@pytest.mark.parametrize("action", ["start", "deallocate"])
def test_throttled_and_failing_power_actions_are_retried(
    clients: ArmClients,
    resource_group: str,
    failed_over_vm: FailedOverVm,
    local_arm: LocalArmEndpoint,
    action: str,
) -> None:
    rg, name = resource_group, failed_over_vm.name
    if action == "start":
        ops.deallocate_vm(clients, rg, name)
    local_arm.add_fault(
        {"match": {"method": "POST", "action": action}, "fault": "throttle", "retryAfter": 0, "times": 1}
    )
    local_arm.add_fault({"match": {"method": "POST", "action": action}, "fault": "internal", "times": 1})
    result = ops.start_vm(clients, rg, name) if action == "start" else ops.deallocate_vm(clients, rg, name)
    assert result.changed is True and local_arm.faults() == []


# --- swapping disks ----------------------------------------------------------------------------------


def test_swapping_disks_needs_a_deallocated_vm(
    clients: ArmClients,
    resource_group: str,
    container: ContainerClient,
    failed_over_vm: FailedOverVm,
    local_arm: LocalArmEndpoint,
) -> None:
    rg, name = resource_group, failed_over_vm.name
    tags = make_tags(Purpose.FINAL)
    new_os = imported(clients, container, rg, "fo-os-k1", b"os at point k+1".ljust(512), tags)
    new_data = imported(clients, container, rg, "fo-data-k1", b"data at point k+1".ljust(512), tags)

    with pytest.raises(ArmConflict) as running:
        ops.swap_vm_disks(clients, rg, name, os_disk_id=new_os.id, data_disk_ids=[new_data.id])
    assert running.value.status_code == 409 and running.value.arm_code == "OperationNotAllowed"
    assert (
        "Swapping OS Disk is not allowed" in running.value.message and "deallocate" in running.value.message
    )
    vm = clients.compute.virtual_machines.get(rg, name)
    assert vm.properties.storage_profile.os_disk.managed_disk.id == failed_over_vm.os_disk.id

    ops.deallocate_vm(clients, rg, name)
    swapped = ops.swap_vm_disks(clients, rg, name, os_disk_id=new_os.id, data_disk_ids=[new_data.id])
    assert swapped.changed is True
    assert swapped.detached_disk_ids == [failed_over_vm.os_disk.id, failed_over_vm.data_disk.id]
    vm = clients.compute.virtual_machines.get(rg, name)
    storage = vm.properties.storage_profile
    assert storage.os_disk.managed_disk.id == new_os.id and storage.os_disk.name == "fo-os-k1"
    assert storage.os_disk.create_option == "Attach" and storage.os_disk.os_type == "Linux"
    assert [(d.lun, d.managed_disk.id) for d in storage.data_disks] == [(0, new_data.id)]
    assert vm.properties.network_profile.network_interfaces[0].id.endswith("/fo-nic")
    assert vm.properties.vm_id is not None and vm.properties.hardware_profile.vm_size == "Standard_D2s_v3"
    assert ops.vm_power_state(clients, rg, name) is PowerState.DEALLOCATED  # an update does not start it
    for disk in ("fo-os-k1", "fo-data-k1"):
        got = clients.compute.disks.get(rg, disk)
        assert got.managed_by == vm.id and got.properties.disk_state == "Reserved"
    for disk in ("fo-os-k", "fo-data-k"):
        got = clients.compute.disks.get(rg, disk)
        assert got.managed_by is None and got.properties.disk_state == "Unattached"

    # Retried: nothing to do, nothing written.
    local_arm.add_fault({"match": {"method": "PUT", "resourceType": VM_TYPE}, "fault": "conflict"})
    again = ops.swap_vm_disks(clients, rg, name, os_disk_id=new_os.id, data_disk_ids=[new_data.id])
    assert again.changed is False and again.detached_disk_ids == []
    assert local_arm.faults()[0]["remaining"] == 1
    local_arm.reset()

    ops.start_vm(clients, rg, name)
    # An attached disk cannot be deleted; the old ones can.
    with pytest.raises(ArmConflict) as attached:
        kinds.delete_resource(clients, new_data.id)
    assert attached.value.status_code == 409 and attached.value.arm_code == "OperationNotAllowed"
    assert f"Disk fo-data-k1 is attached to VM {vm.id}" in attached.value.message
    for old in swapped.detached_disk_ids:
        kinds.delete_resource(clients, old)
    assert {d.name for d in clients.compute.disks.list_by_resource_group(rg)} == {"fo-os-k1", "fo-data-k1"}
    raw = disk_image(local_arm, clients, rg, "fo-data-k1").read_bytes()
    assert raw[MIB : MIB + 17] == b"data at point k+1"


def test_an_os_disk_swap_keeps_what_azure_keeps(
    clients: ArmClients, resource_group: str, container: ContainerClient, failed_over_vm: FailedOverVm
) -> None:
    rg, name = resource_group, failed_over_vm.name
    ops.deallocate_vm(clients, rg, name)
    windows = clients.compute.disks.begin_create_or_update(
        rg,
        "windows-os",
        cm.Disk(
            location=LOCATION,
            properties=cm.DiskProperties(
                os_type="Windows", creation_data=cm.CreationData(create_option="Empty"), disk_size_gb=1
            ),
        ),
    ).result()
    with pytest.raises(ArmConflict) as other_os:
        ops.swap_vm_disks(
            clients, rg, name, os_disk_id=str(windows.id), data_disk_ids=[failed_over_vm.data_disk.id]
        )
    assert other_os.value.arm_code == "OperationNotAllowed" and "OS type" in other_os.value.message

    vm = clients.compute.virtual_machines.get(rg, name)
    vm.properties.storage_profile.os_disk.create_option = "FromImage"
    with pytest.raises(Exception) as changed:
        clients.compute.virtual_machines.begin_create_or_update(rg, name, vm).result()
    assert "Changing property 'osDisk.createOption' is not allowed." in str(changed.value)


def test_data_disks_change_on_a_running_vm_through_patch(
    clients: ArmClients, resource_group: str, container: ContainerClient, failed_over_vm: FailedOverVm
) -> None:
    """Azure attaches and detaches data disks on a running VM; only the OS disk needs it deallocated.
    The SDK's update is a PATCH: objects merged, the data-disk list replaced."""
    rg, name = resource_group, failed_over_vm.name
    extra = imported(clients, container, rg, "extra", b"extra".ljust(512), make_tags(Purpose.FINAL))
    updated = clients.compute.virtual_machines.begin_update(
        rg,
        name,
        cm.VirtualMachineUpdate(
            tags={"changed": "yes"},
            properties=cm.VirtualMachineProperties(
                storage_profile=cm.StorageProfile(
                    data_disks=[
                        cm.DataDisk(
                            lun=0, create_option="Attach", managed_disk=cm.ManagedDiskParameters(id=extra.id)
                        )
                    ]
                )
            ),
        ),
    ).result()
    assert updated.tags == {"changed": "yes"}
    assert [d.managed_disk.id for d in updated.properties.storage_profile.data_disks] == [extra.id]
    assert updated.properties.storage_profile.os_disk.managed_disk.id == failed_over_vm.os_disk.id
    assert updated.properties.network_profile.network_interfaces[0].id.endswith("/fo-nic")
    assert ops.vm_power_state(clients, rg, name) is PowerState.RUNNING
    assert clients.compute.disks.get(rg, "fo-data-k").properties.disk_state == "Unattached"

    # The OS disk through PATCH follows the same rule as through PUT.
    with pytest.raises(Exception) as refused:
        clients.compute.virtual_machines.begin_update(
            rg,
            name,
            cm.VirtualMachineUpdate(
                properties=cm.VirtualMachineProperties(
                    storage_profile=cm.StorageProfile(
                        os_disk=cm.OSDisk(
                            create_option="Attach",
                            managed_disk=cm.ManagedDiskParameters(id=failed_over_vm.data_disk.id),
                        )
                    )
                )
            ),
        ).result()
    assert "Swapping OS Disk is not allowed" in str(refused.value)


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("operationFailure", ArmRequestFailed, "InternalOperationError"),
        ("conflict", ArmConflict, "AnotherOperationInProgress"),
        ("policy", PolicyDisallowed, "RequestDisallowedByPolicy"),
    ],
)
def test_swap_faults_are_typed_and_the_retry_finishes_the_swap(
    clients: ArmClients,
    impatient: ArmClients,
    resource_group: str,
    container: ContainerClient,
    failed_over_vm: FailedOverVm,
    local_arm: LocalArmEndpoint,
    fault: str,
    error: type[Exception],
    code: str,
) -> None:
    rg, name = resource_group, failed_over_vm.name
    new_os = imported(clients, container, rg, "fo-os-k1", b"os k+1".ljust(512), make_tags(Purpose.FINAL))
    ops.deallocate_vm(clients, rg, name)
    local_arm.add_fault({"match": {"method": "PUT", "resourceType": VM_TYPE}, "fault": fault})
    with pytest.raises(error) as raised:  # no retry budget: a busy answer is typed at once
        ops.swap_vm_disks(
            impatient, rg, name, os_disk_id=new_os.id, data_disk_ids=[failed_over_vm.data_disk.id]
        )
    assert getattr(raised.value, "arm_code", None) == code
    if fault == "operationFailure":
        # The model was taken and its provisioning failed: the VM is Failed until it is updated again.
        assert clients.compute.virtual_machines.get(rg, name).properties.provisioning_state == "Failed"
    swapped = ops.swap_vm_disks(
        clients, rg, name, os_disk_id=new_os.id, data_disk_ids=[failed_over_vm.data_disk.id]
    )
    assert swapped.changed is True
    vm = clients.compute.virtual_machines.get(rg, name)
    assert vm.properties.storage_profile.os_disk.managed_disk.id == new_os.id
    assert vm.properties.provisioning_state == "Succeeded"
    assert ops.start_vm(clients, rg, name).changed is True
