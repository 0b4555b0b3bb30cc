"""Failover settings as data: the merge patch, the defaults from the target settings, the machine's
disks as they are now, and machine documents written before the settings existed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.domain.errors import FieldProblem, ValidationFailed
from shared.domain.failover import FailoverDisk, FailoverSettings
from shared.domain.inventory import MachineInventory
from shared.domain.lifecycle import MachineState
from shared.domain.machine import Machine
from shared.domain.target import DiskType, TargetSettings
from shared.domain.wire import merge_patch
from shared.failover.settings import effective_settings, update_failover_settings
from shared.platform.azure_placement import AzureCheckUnavailable, AzurePlacement, PlacementCheck
from shared.platform.repository import Repositories
from shared.replication import machines
from tests.support.memory_store import InMemoryDocumentStore

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
GIB = 1024**3
TARGET = TargetSettings.model_validate(
    {
        "resourceGroup": "rg-target",
        "virtualNetwork": "vnet-prod",
        "subnet": "app",
        "subnetAddressPrefix": "10.1.2.0/24",
        "vmSize": "Standard_D4s_v3",
        "diskType": "Premium_LRS",
        "staticIpAddress": "10.1.2.10",
    }
)


def inventory(*disk_ids: str) -> MachineInventory:
    return MachineInventory.model_validate(
        {
            "displayName": "web01",
            "osType": "linux",
            "osName": "Ubuntu",
            "osVersion": "22.04",
            "firmware": "UEFI",
            "disks": [
                {"id": disk_id, "sizeBytes": 10 * GIB, "isOsDisk": i == 0}
                for i, disk_id in enumerate(disk_ids)
            ],
        }
    )


def machine(*disk_ids: str, state: MachineState = MachineState.REPLICATING) -> Machine:
    return Machine(
        id="vm-1",
        appliance_id="appl-1",
        inventory=inventory(*(disk_ids or ("sda",))),
        state=state,
        target=TARGET,
        discovered_at=NOW,
        updated_at=NOW,
    )


# RFC 7396, Appendix A: the test cases of the specification, in order.
RFC_7396_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7396_EXAMPLES)
def test_merge_patch_follows_the_rfc(target: Any, patch: Any, result: Any) -> None:
    copy = repr(target)
    assert merge_patch(target, patch) == result
    assert repr(target) == copy  # the target is not changed in place


def test_defaults_come_from_the_target_settings_with_every_disk_of_its_type() -> None:
    settings = effective_settings(machine("sda", "sdb"))
    assert settings == FailoverSettings(
        vm_name="web01",
        resource_group="rg-target",
        vm_size="Standard_D4s_v3",
        virtual_network="vnet-prod",
        subnet="app",
        subnet_address_prefix=TARGET.subnet_address_prefix,
        static_ip_address=TARGET.static_ip_address,
        disks={
            "sda": FailoverDisk(disk_type=DiskType.PREMIUM_LRS),
            "sdb": FailoverDisk(disk_type=DiskType.PREMIUM_LRS),
        },
    )


def test_stored_settings_follow_the_machines_disks() -> None:
    m = machine("sda", "sdb")
    m.failover_settings = effective_settings(m).model_copy(
        update={
            "disks": {
                "sda": FailoverDisk(disk_type=DiskType.STANDARD_LRS),
                "sdb": FailoverDisk(disk_type=DiskType.STANDARDSSD_LRS),
            }
        }
    )
    m.inventory = inventory("sda", "sdc")  # sdb removed, sdc added since the settings were stored
    assert effective_settings(m).disks == {
        "sda": FailoverDisk(disk_type=DiskType.STANDARD_LRS),
        "sdc": FailoverDisk(disk_type=DiskType.PREMIUM_LRS),
    }


def test_a_machine_document_without_failover_settings_loads() -> None:
    body = machine().to_wire()
    del body["failoverSettings"]
    loaded = Machine.model_validate(body)
    assert loaded.failover_settings is None
    assert effective_settings(loaded).vm_size == "Standard_D4s_v3"


def test_changed_settings_survive_the_store_and_a_new_target_resets_them() -> None:
    repos = Repositories(InMemoryDocumentStore())
    repos.machines.add(machine(state=MachineState.DISCOVERED).model_copy(update={"target": None}))
    command = machines.EnableReplication(machine_id="vm-1", target=TARGET, job_id="job-1")
    machines.enable_replication(repos, command, now=NOW)
    update_failover_settings(repos, "vm-1", {"vmSize": "Standard_E8s_v5"}, now=NOW)
    assert repos.machines.require("vm-1").item.failover_settings.vm_size == "Standard_E8s_v5"  # type: ignore[union-attr]

    def stopped(m: Machine) -> None:
        m.state = MachineState.REPLICATION_STOPPED

    repos.machines.update_with_retry("vm-1", stopped)
    command = machines.EnableReplication(
        machine_id="vm-1", target=TARGET.model_copy(update={"vm_size": "Standard_D8s_v3"}), job_id="job-2"
    )
    machines.enable_replication(repos, command, now=NOW)
    again = repos.machines.require("vm-1").item
    assert again.failover_settings is None
    assert effective_settings(again).vm_size == "Standard_D8s_v3"


def test_an_address_is_taken_in_the_same_vnet_whether_named_or_given_by_id() -> None:
    repos = Repositories(InMemoryDocumentStore())
    vnet_id = (
        "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/RG-Target"
        "/providers/Microsoft.Network/virtualNetworks/VNET-prod"
    )
    holder = machine().model_copy(
        update={"id": "vm-0", "target": TARGET.model_copy(update={"virtual_network": vnet_id})}
    )
    repos.machines.add(holder)
    repos.machines.add(
        machine().model_copy(update={"target": TARGET.model_copy(update={"static_ip_address": None})})
    )
    with pytest.raises(ValidationFailed) as caught:
        update_failover_settings(repos, "vm-1", {"staticIpAddress": "10.1.2.10"}, now=NOW)
    assert caught.value.details[0]["field"] == "staticIpAddress"
    assert "machine vm-0" in caught.value.details[0]["problem"]
    # A machine whose replication was stopped has no VM to hold the address.
    stopped = repos.machines.require("vm-0").item.model_copy(
        update={"state": MachineState.REPLICATION_STOPPED}
    )
    repos.machines.put(stopped)
    assert (
        str(
            update_failover_settings(
                repos, "vm-1", {"staticIpAddress": "10.1.2.10"}, now=NOW
            ).static_ip_address
        )
        == "10.1.2.10"
    )


class RecordingPlacement(AzurePlacement):
    """Azure's checks answered from a list of problems; records what it was asked."""

    def __init__(self, answer: list[FieldProblem] | Exception | None = None) -> None:
        super().__init__(lambda: None, lambda: NOW)  # type: ignore[arg-type,return-value]
        self.asked: list[PlacementCheck] = []
        self.answer = answer

    def problems(self, check: PlacementCheck) -> list[FieldProblem]:
        self.asked.append(check)
        if isinstance(self.answer, Exception):
            raise self.answer
        return list(self.answer or [])


def test_azure_is_asked_only_about_what_the_patch_changes() -> None:
    repos = Repositories(InMemoryDocumentStore())
    repos.machines.add(machine("sda", "sdb", "sdc"))
    placement = RecordingPlacement()
    update_failover_settings(
        repos, "vm-1", {"disks": {"sdb": {"diskType": "StandardSSD_LRS"}}}, now=NOW, placement=placement
    )
    (asked,) = placement.asked
    assert asked.vm_size is None and asked.static_ip is None  # nothing Azure knows changed: no round trip
    update_failover_settings(repos, "vm-1", {"vmSize": "Standard_E8s_v5"}, now=NOW, placement=placement)
    assert placement.asked[-1].vm_size == "Standard_E8s_v5" and placement.asked[-1].static_ip is None
    assert placement.asked[-1].data_disks == 2 and placement.asked[-1].premium
    update_failover_settings(repos, "vm-1", {"staticIpAddress": "10.1.2.11"}, now=NOW, placement=placement)
    assert placement.asked[-1].vm_size is None and str(placement.asked[-1].static_ip) == "10.1.2.11"
    # A new VNet: the size and the address are asked about again (another region, another network).
    update_failover_settings(repos, "vm-1", {"virtualNetwork": "vnet-dr"}, now=NOW, placement=placement)
    assert (
        placement.asked[-1].vm_size == "Standard_E8s_v5" and str(placement.asked[-1].static_ip) == "10.1.2.11"
    )


def test_azures_problems_are_a_400_and_nothing_is_written() -> None:
    repos = Repositories(InMemoryDocumentStore())
    repos.machines.add(machine())
    refused = FieldProblem("vmSize", "vmSize Standard_E16s_v5 is not offered in region westeurope")
    with pytest.raises(ValidationFailed) as caught:
        update_failover_settings(
            repos, "vm-1", {"vmSize": "Standard_E16s_v5"}, now=NOW, placement=RecordingPlacement([refused])
        )
    assert caught.value.problems == [refused]
    assert repos.machines.require("vm-1").item.failover_settings is None


def test_azure_unreachable_refuses_the_change_with_503() -> None:
    repos = Repositories(InMemoryDocumentStore())
    repos.machines.add(machine())
    down = AzureCheckUnavailable("could not list the VM sizes", retry_after_seconds=30)
    with pytest.raises(AzureCheckUnavailable):
        update_failover_settings(
            repos, "vm-1", {"vmSize": "Standard_E8s_v5"}, now=NOW, placement=RecordingPlacement(down)
        )
    assert repos.machines.require("vm-1").item.failover_settings is None


def test_enable_replication_asks_azure_about_the_whole_target() -> None:
    repos = Repositories(InMemoryDocumentStore())
    repos.machines.add(
        machine("sda", "sdb", state=MachineState.DISCOVERED).model_copy(update={"target": None})
    )
    refused = FieldProblem("staticIpAddress", "staticIpAddress 10.1.2.10 is already in use in VNet vnet-prod")
    placement = RecordingPlacement([refused])
    command = machines.EnableReplication(machine_id="vm-1", target=TARGET, job_id="job-1")
    with pytest.raises(ValidationFailed) as caught:
        machines.enable_replication(repos, command, now=NOW, placement=placement)
    assert caught.value.problems == [refused]
    (asked,) = placement.asked
    assert asked.vm_size == "Standard_D4s_v3" and str(asked.static_ip) == "10.1.2.10"
    assert asked.data_disks == 1 and asked.premium
    assert repos.machines.require("vm-1").item.state is MachineState.DISCOVERED
