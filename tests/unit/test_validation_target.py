"""Target settings: every 400 names the field and says what to fix."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.domain.errors import ValidationFailed
from shared.domain.inventory import MachineInventory
from shared.domain.target import TargetSettings, vm_size_supports_premium

VNET_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-net"
    "/providers/Microsoft.Network/virtualNetworks/vnet-prod"
)
VALID: dict[str, Any] = {
    "resourceGroup": "rg-migrated",
    "virtualNetwork": VNET_ID,
    "subnet": "app",
    "subnetAddressPrefix": "10.1.2.0/24",
    "vmSize": "Standard_D4s_v3",
    "diskType": "Premium_LRS",
    "staticIpAddress": "10.1.2.10",
    "targetVmName": "web-01",
}
GIB = 1024**3


def inventory(
    os_type: str = "windows",
    name: str = "WEB01",
    firmware: str = "UEFI",
    os_gib: int = 128,
    data_gib: int = 512,
) -> MachineInventory:
    return MachineInventory.model_validate(
        {
            "displayName": name,
            "osType": os_type,
            "osName": "Windows Server 2019",
            "osVersion": "10.0.17763",
            "firmware": firmware,
            "disks": [
                {"id": "disk0", "sizeBytes": os_gib * GIB, "isOsDisk": True},
                {"id": "disk1", "sizeBytes": data_gib * GIB},
            ],
        }
    )


def problems(**changes: Any) -> list[dict[str, Any]]:
    body = {**VALID, **changes}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(ValidationError) as caught:
        TargetSettings.model_validate(body)
    return ValidationFailed.from_pydantic(caught.value).details


def test_valid_settings_round_trip_in_camel_case() -> None:
    settings = TargetSettings.model_validate(VALID)
    assert settings.model_dump(mode="json", by_alias=True)["staticIpAddress"] == "10.1.2.10"
    assert settings.validate_for_machine(inventory()) == []


def test_vnet_by_name_is_accepted() -> None:
    assert (
        TargetSettings.model_validate({**VALID, "virtualNetwork": "vnet-prod"}).virtual_network == "vnet-prod"
    )


def test_missing_subnet() -> None:
    body = {k: v for k, v in VALID.items() if k not in {"subnet"}}
    with pytest.raises(ValidationError) as caught:
        TargetSettings.model_validate(body)
    assert ValidationFailed.from_pydantic(caught.value).details == [
        {"field": "subnet", "problem": "is required"}
    ]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("vmSize", "D4s_v3", "'D4s_v3' is not an Azure VM size name; expected e.g. Standard_D4s_v3"),
        ("vmSize", "Standard D4", "is not an Azure VM size name"),
        ("resourceGroup", "rg/bad", "must be 1-90 letters"),
        ("resourceGroup", "rg.", "cannot end with '.'"),
        ("virtualNetwork", "/subscriptions/x/resourceGroups/y", "is not a VNet resource id"),
        ("virtualNetwork", "-vnet", "must be a VNet resource id or a VNet name"),
        ("subnet", "GatewaySubnet", "is reserved for an Azure service"),
        ("subnet", "bad subnet", "must be a subnet name"),
        ("targetVmName", "web_01", "contains characters Azure VM names cannot use: '_'"),
        ("targetVmName", "web-", "cannot end with '-' or '.'"),
        ("diskType", "UltraSSD_LRS", "Input should be"),
        ("staticIpAddress", "10.1.2.300", "valid IPv4 address"),
    ],
)
def test_each_bad_field_is_named_with_a_remedy(field: str, value: str, expected: str) -> None:
    [problem] = problems(**{field: value})
    assert problem["field"] == field
    assert expected in problem["problem"]


def test_static_ip_outside_the_subnet_says_which_addresses_fit() -> None:
    [problem] = problems(staticIpAddress="10.1.3.10")
    assert problem == {
        "field": "staticIpAddress",
        "problem": "staticIpAddress 10.1.3.10 is outside subnet app (10.1.2.0/24); "
        "choose an address between 10.1.2.4 and 10.1.2.254",
    }


@pytest.mark.parametrize("ip", ["10.1.2.0", "10.1.2.3", "10.1.2.255"])
def test_static_ip_reserved_by_azure(ip: str) -> None:
    [problem] = problems(staticIpAddress=ip)
    assert problem["field"] == "staticIpAddress"
    assert "reserved by Azure" in problem["problem"]


def test_static_ip_without_a_known_prefix_is_accepted() -> None:
    body = {k: v for k, v in VALID.items() if k != "subnetAddressPrefix"}
    assert (
        str(TargetSettings.model_validate({**body, "staticIpAddress": "192.168.7.7"}).static_ip_address)
        == "192.168.7.7"
    )


def test_premium_disks_need_a_premium_capable_size() -> None:
    [problem] = problems(vmSize="Standard_D4_v3")
    assert problem["field"] == "diskType"
    assert "choose an 's' size (e.g. Standard_D4s_v3) or diskType StandardSSD_LRS" in problem["problem"]
    assert TargetSettings.model_validate({**VALID, "vmSize": "Standard_D4_v3", "diskType": "StandardSSD_LRS"})


@pytest.mark.parametrize(
    ("size", "premium"),
    [
        ("Standard_D4s_v3", True),
        ("Standard_E8-4ds_v5", True),
        ("Standard_DS2_v2", True),
        ("Standard_M128ms", True),
        ("Standard_D4_v3", False),
        ("Standard_A2_v2", False),
        ("Basic_A1", False),
        ("Standard_F4s_v2", True),
    ],
)
def test_premium_capability_from_the_size_name(size: str, premium: bool) -> None:
    assert vm_size_supports_premium(size) is premium


def test_several_problems_are_reported_together() -> None:
    found = problems(vmSize="nope", subnet=None, extraField=1)
    assert {p["field"] for p in found} == {"vmSize", "subnet", "extraField"}


def test_windows_vm_name_limit_depends_on_the_machine() -> None:
    settings = TargetSettings.model_validate({**VALID, "targetVmName": "a-very-long-vm-name"})
    assert [p.field for p in settings.validate_for_machine(inventory("windows"))] == ["targetVmName"]
    assert settings.validate_for_machine(inventory("linux")) == []


def test_defaulted_vm_name_points_at_target_vm_name() -> None:
    settings = TargetSettings.model_validate({**VALID, "targetVmName": None})
    [problem] = settings.validate_for_machine(inventory(name="SQL.PROD.CONTOSO"))
    assert problem.field == "targetVmName"
    assert "set targetVmName" in problem.problem


def test_disks_too_large_for_azure() -> None:
    settings = TargetSettings.model_validate(VALID)
    found = settings.validate_for_machine(inventory(firmware="BIOS", os_gib=3 * 1024, data_gib=40 * 1024))
    assert [p.field for p in found] == ["disks.disk0", "disks.disk1"]
    assert "at most 2,048 GiB for it (BIOS)" in found[0].problem
    assert "at most 32,768 GiB" in found[1].problem
    assert settings.validate_for_machine(inventory(firmware="UEFI", os_gib=3 * 1024)) == []
