"""Azure's checks of a VM's settings (size offered in the VNet's region, room for the data disks,
address free in the VNet) over a small fake of the two management clients: the decisions, the
suggestions, the per-region cache and its clock, and the round trips each request costs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from types import SimpleNamespace as NS
from typing import Any, cast

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError

from shared.platform.arm_clients import ArmClients
from shared.platform.azure_placement import AzureCheckUnavailable, AzurePlacement, PlacementCheck

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def sku(name: str, vcpus: int, disks: int, *, premium: bool = True, restricted: str | None = None) -> NS:
    restrictions = []
    if restricted:
        restrictions.append(
            NS(
                type=restricted,
                values_property=["westeurope"],
                restriction_info=NS(locations=["westeurope"], zones=["3"] if restricted == "Zone" else None),
                reason_code="NotAvailableForSubscription",
            )
        )
    return NS(
        resource_type="virtualMachines",
        name=name,
        capabilities=[
            NS(name="vCPUs", value=str(vcpus)),
            NS(name="MaxDataDiskCount", value=str(disks)),
            NS(name="PremiumIO", value=str(premium)),
        ],
        restrictions=restrictions,
    )


SKUS = [
    sku("Standard_D2s_v3", 2, 4),
    sku("Standard_D4s_v3", 4, 8),
    sku("Standard_D4s_v5", 4, 8),
    sku("Standard_D4as_v5", 4, 8, restricted="Location"),
    sku("Standard_B1s", 1, 2, restricted="Zone"),
    sku("Standard_D4_v3", 4, 8, premium=False),
    sku("Standard_F4s_v2", 4, 8),
    NS(resource_type="disks", name="Premium_LRS", capabilities=[], restrictions=[]),
]


class FakeArm:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.vnet: Any = NS(
            location="westeurope",
            properties=NS(subnets=[NS(name="default", properties=NS(address_prefix="10.1.0.0/24"))]),
        )
        self.taken: dict[str, NS] = {}
        self.refused: set[str] = set()
        self.fail: Exception | None = None
        self.network = NS(
            virtual_networks=NS(get=self._get_vnet, check_ip_address_availability=self._check_ip)
        )
        self.compute = NS(resource_skus=NS(list=self._list_skus))

    def _get_vnet(self, group: str, name: str) -> Any:
        self.calls.append(f"vnet {group}/{name}")
        if self.fail is not None:
            raise self.fail
        if self.vnet is None:
            raise ResourceNotFoundError(
                response=NS(status_code=404, reason="Not Found", headers={}, text=lambda: "")
            )
        return self.vnet

    def _check_ip(self, group: str, name: str, *, ip_address: str) -> Any:
        self.calls.append(f"check {ip_address}")
        if ip_address in self.refused:
            error = HttpResponseError(
                response=NS(status_code=400, reason="Bad Request", headers={}, text=lambda: "")
            )
            error.error = NS(code="PrivateIPAddressNotInAnySubnet")  # type: ignore[assignment]
            raise error
        return self.taken.get(ip_address) or NS(
            available=True, available_ip_addresses=None, is_platform_reserved=False
        )

    def _list_skus(self, *, filter: str) -> list[Any]:
        self.calls.append(f"skus {filter}")
        return SKUS


@pytest.fixture()
def arm() -> FakeArm:
    return FakeArm()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def placement(arm: FakeArm, clock: Clock) -> AzurePlacement:
    return AzurePlacement(lambda: cast(ArmClients, arm), clock)


def check(
    vm_size: str | None = "Standard_D4s_v3",
    ip: str | None = None,
    *,
    data_disks: int = 1,
    premium: bool = False,
    subnet: str = "default",
) -> PlacementCheck:
    return PlacementCheck(
        resource_group="rg-target",
        virtual_network="vnet-target",
        subnet=subnet,
        vm_size=vm_size,
        static_ip=IPv4Address(ip) if ip else None,
        data_disks=data_disks,
        premium=premium,
    )


def test_an_offered_size_passes_and_the_list_is_asked_for_the_vnets_region(
    placement: AzurePlacement, arm: FakeArm
) -> None:
    assert placement.problems(check()) == []
    assert arm.calls == ["vnet rg-target/vnet-target", "skus location eq 'westeurope'"]


def test_nothing_to_check_asks_nothing(placement: AzurePlacement, arm: FakeArm) -> None:
    assert placement.problems(check(vm_size=None)) == []
    assert arm.calls == []


def test_a_size_not_offered_names_the_region_and_sizes_with_the_same_vcpus(placement: AzurePlacement) -> None:
    (problem,) = placement.problems(check("Standard_E4s_v5"))
    assert problem.field == "vmSize"
    assert (
        "Standard_E4s_v5 is not offered in region westeurope (the region of VNet vnet-target)"
        in problem.problem
    )
    # Same 4 vCPUs, usable: not the restricted D4as_v5; D4_v3 is fine without premium disks.
    assert "4 vCPUs" in problem.problem
    assert "Standard_D4_v3, Standard_D4s_v3, Standard_D4s_v5, Standard_F4s_v2" in problem.problem
    assert "Standard_D4as_v5" not in problem.problem


def test_a_restricted_size_is_refused_with_its_reason(placement: AzurePlacement) -> None:
    (problem,) = placement.problems(check("Standard_D4as_v5", premium=True))
    assert "not available to this subscription in region westeurope" in problem.problem
    assert "NotAvailableForSubscription" in problem.problem
    # Premium disks: only sizes with premium storage are suggested.
    assert "Standard_D4_v3" not in problem.problem and "Standard_D4s_v3" in problem.problem


def test_a_zone_restriction_alone_leaves_the_size_usable(placement: AzurePlacement) -> None:
    assert placement.problems(check("Standard_B1s", data_disks=0)) == []


def test_a_size_with_too_few_data_disks_is_refused(placement: AzurePlacement) -> None:
    (problem,) = placement.problems(check("Standard_D2s_v3", data_disks=6))
    assert "takes at most 4 data disks and the machine has 6" in problem.problem
    assert "no size with 2 vCPUs and room for 6 data disks is offered there" in problem.problem


def test_the_sku_list_is_cached_per_region_until_its_time_is_up(
    placement: AzurePlacement, arm: FakeArm, clock: Clock
) -> None:
    placement.problems(check())
    placement.problems(check("Standard_D2s_v3"))
    clock.now += timedelta(minutes=9)
    placement.problems(check())
    assert sum(c.startswith("skus") for c in arm.calls) == 1
    clock.now += timedelta(minutes=2)
    placement.problems(check())
    assert sum(c.startswith("skus") for c in arm.calls) == 2


def test_a_taken_address_lists_the_free_ones_azure_suggests(placement: AzurePlacement, arm: FakeArm) -> None:
    arm.taken["10.1.0.57"] = NS(
        available=False,
        available_ip_addresses=["10.1.0.58", "10.1.0.59", "10.1.1.4"],
        is_platform_reserved=False,
    )
    (problem,) = placement.problems(check(None, "10.1.0.57"))
    assert problem.field == "staticIpAddress"
    assert "10.1.0.57 is already in use in VNet vnet-target" in problem.problem
    # Only suggestions inside the settings' subnet.
    assert "free addresses near it: 10.1.0.58, 10.1.0.59" in problem.problem
    assert "10.1.1.4" not in problem.problem
    assert arm.calls == ["vnet rg-target/vnet-target", "check 10.1.0.57"]


def test_a_reserved_address_says_so(placement: AzurePlacement, arm: FakeArm) -> None:
    arm.taken["10.1.0.1"] = NS(
        available=False, available_ip_addresses=["10.1.0.4"], is_platform_reserved=True
    )
    (problem,) = placement.problems(check(None, "10.1.0.1"))
    assert "reserved by Azure" in problem.problem and "10.1.0.4" in problem.problem


def test_an_address_outside_the_subnet_or_a_missing_subnet_is_refused_without_asking(
    placement: AzurePlacement, arm: FakeArm
) -> None:
    (problem,) = placement.problems(check(None, "10.1.5.9"))
    assert "outside subnet default (10.1.0.0/24) of VNet vnet-target" in problem.problem
    (problem,) = placement.problems(check(None, "10.1.0.9", subnet="backend"))
    assert problem.field == "subnet" and "has no subnet backend (its subnets: default)" in problem.problem
    assert not any(c.startswith("check") for c in arm.calls)


def test_a_vnet_that_does_not_exist_yet_skips_the_checks(placement: AzurePlacement, arm: FakeArm) -> None:
    arm.vnet = None
    assert placement.problems(check("Standard_E4s_v5", "10.1.0.57")) == []
    assert arm.calls == ["vnet rg-target/vnet-target"]


@pytest.mark.parametrize(
    "error",
    [
        ServiceRequestError("connection refused"),
        HttpResponseError(response=NS(status_code=500, reason="Internal", headers={}, text=lambda: "")),
    ],
)
def test_azure_unreachable_is_a_503_with_a_retry_hint(
    placement: AzurePlacement, arm: FakeArm, error: Exception
) -> None:
    arm.fail = error
    with pytest.raises(AzureCheckUnavailable) as raised:
        placement.problems(check())
    assert raised.value.retry_after_seconds == 30
    assert "read virtual network vnet-target in resource group rg-target" in raised.value.message
    assert "nothing was changed; retry in 30 seconds" in raised.value.message


def test_an_address_azure_finds_in_no_subnet_is_a_400_not_a_503(
    placement: AzurePlacement, arm: FakeArm
) -> None:
    # A subnet whose range the VNet does not show: Azure's own answer decides.
    arm.vnet = NS(location="westeurope", properties=NS(subnets=[NS(name="default", properties=NS())]))
    arm.refused.add("10.9.0.4")
    (problem,) = placement.problems(check(None, "10.9.0.4"))
    assert (
        problem.field == "staticIpAddress" and "in none of the subnets of VNet vnet-target" in problem.problem
    )
