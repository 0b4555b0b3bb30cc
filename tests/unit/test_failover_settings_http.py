"""GET and PATCH /api/machines/{id}/failover-settings through the registered functions, over the
in-memory store: defaults from the target settings, a JSON merge patch validated whole before any
write, 409 while a failover runs or after it."""

from __future__ import annotations

from typing import Any

import pytest

from shared.bootstrap import Services
from shared.domain.errors import FieldProblem
from shared.domain.lifecycle import MachineState
from shared.domain.machine import Machine
from shared.platform.azure_placement import AzureCheckUnavailable
from tests.unit.test_api_http import (
    GIB,
    TARGET,
    FakeDurableExtension,
    call,
    durable,
    enable,
    machine_json,
    register,
    report,
    services,
)
from tests.unit.test_failover_settings import RecordingPlacement

__all__ = ["durable", "services"]  # the fixtures, used by name

TWO_DISKS = {
    **machine_json("vm-1"),
    "disks": [
        {"id": "sda", "sizeBytes": 20 * GIB, "isOsDisk": True},
        {"id": "sdb", "sizeBytes": 100 * GIB},
    ],
}


def replicating(
    services: Services, durable: FakeDurableExtension, machine: dict[str, Any] = TWO_DISKS
) -> str:
    appliance_id, credential = register()
    report(appliance_id, credential, machine)
    assert enable(durable, machine["id"], TARGET)[0] == 202
    set_state(services, machine["id"], MachineState.REPLICATING)
    return str(machine["id"])


def set_state(services: Services, machine_id: str, state: MachineState) -> None:
    def move(machine: Machine) -> None:
        machine.state = state

    services.repos.machines.update_with_retry(machine_id, move)


def get(machine_id: str) -> tuple[int, Any]:
    status, body, _ = call("get_failover_settings", "GET", "/", route={"machineId": machine_id})
    return status, body


def patch(machine_id: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    kwargs.setdefault("content_type", "application/merge-patch+json")
    status, payload, _ = call(
        "update_failover_settings", "PATCH", "/", route={"machineId": machine_id}, body=body, **kwargs
    )
    return status, payload


def stored(services: Services, machine_id: str) -> Machine:
    return services.repos.machines.require(machine_id).item


def test_defaults_are_the_target_settings(services: Services, durable: FakeDurableExtension) -> None:
    machine_id = replicating(services, durable)
    status, body = get(machine_id)
    assert status == 200
    assert body == {
        "vmName": "web01",
        "resourceGroup": "rg-target",
        "vmSize": "Standard_D4s_v3",
        "virtualNetwork": "vnet-prod",
        "subnet": "app",
        "subnetAddressPrefix": "10.1.2.0/24",
        "staticIpAddress": "10.1.2.10",
        "disks": {"sda": {"diskType": "StandardSSD_LRS"}, "sdb": {"diskType": "StandardSSD_LRS"}},
    }
    assert stored(services, machine_id).failover_settings is None


def test_a_merge_patch_changes_only_what_it_names(services: Services, durable: FakeDurableExtension) -> None:
    machine_id = replicating(services, durable)
    status, body = patch(
        machine_id,
        {
            "vmName": "web01-dr",
            "vmSize": "Standard_E4s_v5",
            "disks": {"sdb": {"diskType": "Premium_LRS"}},
            "staticIpAddress": None,
        },
    )
    assert status == 200, body
    assert body["vmName"] == "web01-dr" and body["vmSize"] == "Standard_E4s_v5"
    assert body["disks"] == {"sda": {"diskType": "StandardSSD_LRS"}, "sdb": {"diskType": "Premium_LRS"}}
    assert body["staticIpAddress"] is None  # a null removes it: Azure assigns the address
    assert body["resourceGroup"] == "rg-target" and body["subnet"] == "app"
    assert get(machine_id) == (200, body)
    assert stored(services, machine_id).failover_settings is not None
    # The target settings replication uses stay as they were.
    assert str(stored(services, machine_id).target.static_ip_address) == "10.1.2.10"  # type: ignore[union-attr]


def test_plain_json_is_accepted_and_an_empty_patch_writes_nothing(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = replicating(services, durable)
    before = services.repos.machines.require(machine_id).etag
    status, body = patch(machine_id, {}, content_type="application/json")
    assert status == 200 and body == get(machine_id)[1]
    assert services.repos.machines.require(machine_id).etag == before


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"vmSize": "huge"}, "vmSize", "not an Azure VM size name"),
        ({"vmName": "bad_name"}, "vmName", "cannot use: '_'"),
        ({"vmName": "x" * 65}, "vmName", "must be 1-64 characters for a Linux VM"),
        ({"resourceGroup": "rg."}, "resourceGroup", "cannot end with '.'"),
        ({"subnet": "GatewaySubnet"}, "subnet", "reserved for an Azure service"),
        ({"virtualNetwork": "/subscriptions/x/vnet"}, "virtualNetwork", "is not a VNet resource id"),
        ({"staticIpAddress": "10.9.9.9"}, "staticIpAddress", "outside subnet app (10.1.2.0/24)"),
        ({"staticIpAddress": "10.1.2.1"}, "staticIpAddress", "reserved by Azure in 10.1.2.0/24"),
        ({"staticIpAddress": "not-an-ip"}, "staticIpAddress", "IPv4"),
        (
            {"disks": {"sda": {"diskType": "Premium_LRS"}}, "vmSize": "Standard_D4_v3"},
            "disks.sda.diskType",
            "choose an 's' size",
        ),
        ({"disks": {"sda": {"diskType": "Ultra"}}}, "disks.sda.diskType", "Standard_LRS"),
        ({"disks": {"sdz": {"diskType": "Premium_LRS"}}}, "disks.sdz", "its disks are sda, sdb"),
        ({"disks": {"sdb": None}}, "disks.sdb", "needs a diskType"),
        ({"disks": {"sdb": {"diskType": None}}}, "disks.sdb.diskType", "is required"),
        ({"vmSize": None}, "vmSize", "cannot be removed"),
        ({"vmSzie": "Standard_D8s_v3"}, "vmSzie", "not a known field"),
    ],
)
def test_a_bad_patch_is_a_400_naming_the_field_and_changes_nothing(
    services: Services, durable: FakeDurableExtension, change: dict[str, Any], field: str, text: str
) -> None:
    machine_id = replicating(services, durable)
    before = stored(services, machine_id)
    status, body = patch(machine_id, change)
    assert status == 400
    assert body["error"]["code"] == "ValidationFailed"
    assert any(d["field"] == field and text in d["problem"] for d in body["error"]["details"]), body
    assert stored(services, machine_id) == before


@pytest.mark.parametrize(
    ("raw", "content_type", "field", "text"),
    [
        (b'[{"op": "replace", "path": "/vmSize"}]', "application/json-patch+json", "Content-Type", "merge"),
        (b'[{"op": "replace", "path": "/vmSize"}]', "application/merge-patch+json", "(body)", "JSON object"),
        (b"{nope", "application/merge-patch+json", "(body)", "is not valid JSON"),
    ],
)
def test_a_body_that_is_no_merge_patch_is_a_400(
    services: Services, durable: FakeDurableExtension, raw: bytes, content_type: str, field: str, text: str
) -> None:
    machine_id = replicating(services, durable)
    status, body = patch(machine_id, raw=raw, content_type=content_type)
    assert status == 400
    [detail] = body["error"]["details"]
    assert detail["field"] == field and text in detail["problem"]


def test_a_windows_vm_name_follows_the_windows_rules(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = replicating(services, durable, {**TWO_DISKS, "osType": "windows", "displayName": "WEB01"})
    status, body = patch(machine_id, {"vmName": "web01-disaster-recovery"})
    assert status == 400
    assert body["error"]["details"] == [
        {
            "field": "vmName",
            "problem": "must be 1-15 characters for a Windows VM; 'web01-disaster-recovery' has 23",
        }
    ]


def test_a_static_ip_another_machine_uses_in_the_vnet_is_refused(
    services: Services, durable: FakeDurableExtension
) -> None:
    first = replicating(services, durable)
    appliance_id, credential = register("site-b")
    report(appliance_id, credential, machine_json("vm-2", name="db01"))
    assert enable(durable, "vm-2", {**TARGET, "staticIpAddress": "10.1.2.20"})[0] == 202
    set_state(services, "vm-2", MachineState.REPLICATING)

    status, body = patch("vm-2", {"staticIpAddress": "10.1.2.10"})
    assert status == 400
    [detail] = body["error"]["details"]
    assert detail["field"] == "staticIpAddress"
    assert "already the address of machine vm-1" in detail["problem"]

    # The first machine moves to another address: its old one is free again.
    assert patch(first, {"staticIpAddress": "10.1.2.11"})[0] == 200
    assert patch("vm-2", {"staticIpAddress": "10.1.2.10"})[0] == 200
    # The same address in another VNet is another address.
    assert patch(first, {"virtualNetwork": "vnet-dr", "staticIpAddress": "10.1.2.10"})[0] == 200


@pytest.mark.parametrize(
    "state", [MachineState.FAILING_OVER, MachineState.FAILED_OVER, MachineState.FAILOVER_COMMITTED]
)
def test_a_patch_while_failing_over_or_after_is_a_409(
    services: Services, durable: FakeDurableExtension, state: MachineState
) -> None:
    machine_id = replicating(services, durable)
    set_state(services, machine_id, state)
    before = stored(services, machine_id)
    status, body = patch(machine_id, {"vmSize": "Standard_D8s_v3"})
    assert status == 409
    assert body["error"]["code"] == "FailoverSettingsLocked"
    assert f"it is {state}" in body["error"]["message"]
    assert stored(services, machine_id) == before
    assert get(machine_id)[0] == 200  # still readable: what the VM was created with


def test_before_replication_is_enabled_there_are_no_settings(services: Services) -> None:
    appliance_id, credential = register()
    report(appliance_id, credential, machine_json("vm-1"))
    status, body = get("vm-1")
    assert status == 409 and body["error"]["code"] == "ReplicationNotEnabled"
    assert "enable replication first" in body["error"]["message"]
    assert patch("vm-1", {"vmSize": "Standard_D8s_v3"})[0] == 409
    assert get("ghost")[0] == 404
    assert patch("ghost", {})[0] == 404


def test_azures_answer_is_a_400_naming_the_field_and_an_unreachable_azure_a_503_with_retry_after(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = replicating(services, durable)
    refused = FieldProblem("vmSize", "vmSize Standard_E16s_v5 is not offered in region westeurope")
    services.placement = RecordingPlacement([refused])
    status, body = patch(machine_id, {"vmSize": "Standard_E16s_v5"})
    assert status == 400, body
    assert body["error"]["details"] == [{"field": "vmSize", "problem": refused.problem}]

    services.placement = RecordingPlacement(AzureCheckUnavailable("could not ask", retry_after_seconds=30))
    status, payload, response = call(
        "update_failover_settings",
        "PATCH",
        "/",
        route={"machineId": machine_id},
        body={"vmSize": "Standard_E8s_v5"},
        content_type="application/merge-patch+json",
    )
    assert status == 503, payload
    assert payload["error"]["code"] == "AzureCheckUnavailable"
    assert response.headers["Retry-After"] == "30"
    assert stored(services, machine_id).failover_settings is None
