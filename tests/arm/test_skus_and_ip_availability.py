"""The Resource SKUs list and CheckIPAddressAvailability through the real azure-mgmt clients against the
local ARM endpoint, and the settings checks (`AzurePlacement`) over them."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import IPv4Address

import pytest
from azure.core.exceptions import HttpResponseError

from shared.migration import resources as ops
from shared.migration.tags import ResourceTags
from shared.platform.arm_clients import ArmClients
from shared.platform.azure_placement import AzurePlacement, PlacementCheck
from tests.arm.conftest import LOCATION

pytestmark = pytest.mark.integration


def test_the_sku_list_has_azures_shape_and_filters_by_location(clients: ArmClients) -> None:
    listed = list(clients.compute.resource_skus.list(filter=f"location eq '{LOCATION}'"))
    assert listed and all(s.locations == [LOCATION] for s in listed)
    vms = {s.name: s for s in listed if s.resource_type == "virtualMachines"}
    assert {
        "Standard_D2s_v3",
        "Standard_D4s_v5",
        "Standard_E4s_v5",
        "Standard_F2s_v2",
        "Standard_B2s",
    } <= set(vms)
    assert "Standard_E16s_v5" not in vms  # not offered in this region
    d4 = vms["Standard_D4s_v3"]
    assert (d4.tier, d4.size, d4.family) == ("Standard", "D4s_v3", "standardDSv3Family")
    capabilities = {c.name: c.value for c in d4.capabilities}
    assert capabilities["vCPUs"] == "4" and capabilities["MaxDataDiskCount"] == "8"
    assert capabilities["MemoryGB"] == "16" and capabilities["PremiumIO"] == "True"
    assert d4.location_info[0].location == LOCATION and d4.location_info[0].zones == ["1", "2", "3"]
    assert d4.restrictions == []
    (restriction,) = vms["Standard_D4as_v5"].restrictions
    assert restriction.type == "Location" and restriction.reason_code == "NotAvailableForSubscription"
    assert restriction.values_property == [LOCATION] and restriction.restriction_info.locations == [LOCATION]
    assert any(s.resource_type == "disks" for s in listed)
    everywhere = list(clients.compute.resource_skus.list())
    assert {loc for s in everywhere for loc in s.locations} > {LOCATION}
    assert any(s.name == "Standard_E16s_v5" for s in everywhere)


def _vnet(clients: ArmClients, rg: str, tags: ResourceTags) -> ops.VirtualNetworkRef:
    return ops.ensure_virtual_network(
        clients,
        rg,
        "vnet-dr",
        location=LOCATION,
        address_prefix="10.20.0.0/16",
        subnet_name="default",
        subnet_prefix="10.20.0.0/24",
        tags=tags,
    )


def test_check_ip_address_availability_answers_as_azure(
    clients: ArmClients, resource_group: str, tags: ResourceTags
) -> None:
    vnet = _vnet(clients, resource_group, tags)
    check = clients.network.virtual_networks.check_ip_address_availability
    free = check(resource_group, "vnet-dr", ip_address="10.20.0.10")
    assert free.available and not free.is_platform_reserved and not free.available_ip_addresses
    ops.ensure_network_interface(
        clients,
        resource_group,
        "nic-a",
        location=LOCATION,
        subnet_id=vnet.subnet_id,
        network_security_group_id=None,
        private_ip_address="10.20.0.10",
        tags=tags,
    )
    taken = check(resource_group, "vnet-dr", ip_address="10.20.0.10")
    assert not taken.available and not taken.is_platform_reserved
    assert taken.available_ip_addresses == [
        "10.20.0.7",
        "10.20.0.8",
        "10.20.0.9",
        "10.20.0.11",
        "10.20.0.12",
    ]
    reserved = check(resource_group, "vnet-dr", ip_address="10.20.0.1")
    assert not reserved.available and reserved.is_platform_reserved
    assert reserved.available_ip_addresses[0] == "10.20.0.4"
    with pytest.raises(HttpResponseError) as outside:
        check(resource_group, "vnet-dr", ip_address="10.99.0.4")
    assert outside.value.status_code == 400 and outside.value.error.code == "PrivateIPAddressNotInAnySubnet"


def test_the_settings_checks_over_the_local_arm(
    clients: ArmClients, resource_group: str, tags: ResourceTags
) -> None:
    vnet = _vnet(clients, resource_group, tags)
    ops.ensure_network_interface(
        clients,
        resource_group,
        "nic-b",
        location=LOCATION,
        subnet_id=vnet.subnet_id,
        network_security_group_id=None,
        private_ip_address="10.20.0.20",
        tags=tags,
    )
    placement = AzurePlacement(lambda: clients, lambda: datetime.now(UTC))

    def problems(vm_size: str | None, ip: str | None = None, data_disks: int = 1) -> list[str]:
        check = PlacementCheck(
            resource_group=resource_group,
            virtual_network="vnet-dr",
            subnet="default",
            vm_size=vm_size,
            static_ip=IPv4Address(ip) if ip else None,
            data_disks=data_disks,
            premium=False,
        )
        return [f"{p.field}: {p.problem}" for p in placement.problems(check)]

    assert problems("Standard_D4s_v3", "10.20.0.21") == []
    (restricted,) = problems("Standard_D4as_v5")
    assert "not available to this subscription in region westeurope" in restricted
    assert "Standard_D4s_v3" in restricted
    (missing,) = problems("Standard_E16s_v5")
    assert "not offered in region westeurope" in missing and "Standard_D16s_v5" in missing
    (disks,) = problems("Standard_B1s", data_disks=3)
    assert "takes at most 2 data disks" in disks
    (taken,) = problems(None, "10.20.0.20")
    assert taken.startswith("staticIpAddress: staticIpAddress 10.20.0.20 is already in use in VNet vnet-dr")
    assert "10.20.0.21" in taken
    # A VNet that does not exist yet: nothing to check against.
    assert (
        placement.problems(
            PlacementCheck(
                resource_group=resource_group,
                virtual_network="vnet-later",
                subnet="default",
                vm_size="Standard_E16s_v5",
                static_ip=None,
                data_disks=0,
                premium=False,
            )
        )
        == []
    )
