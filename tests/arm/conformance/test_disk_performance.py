"""Premium SSD performance tiers and on-demand bursting: what the disk RP sets, keeps and refuses."""

from __future__ import annotations

from typing import Any

import pytest

from tests.arm.conformance.spec import DISK_API, Rest
from tests.arm.conftest import LOCATION

pytestmark = pytest.mark.integration


def _put(rest: Rest, rg: str, size_gb: int, sku: str, **props: Any) -> Any:
    body = {
        "location": LOCATION,
        "sku": {"name": sku},
        "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": size_gb, **props},
    }
    return rest.request("PUT", rest.url(rg, "Microsoft.Compute/disks/d"), DISK_API, body)


def test_a_premium_disk_gets_its_baseline_tier_and_grows_it_with_its_size(
    rest: Rest, resource_group: str
) -> None:
    path = rest.url(resource_group, "Microsoft.Compute/disks/d")
    created = rest.put_and_wait(
        path,
        DISK_API,
        {
            "location": LOCATION,
            "sku": {"name": "Premium_LRS"},
            "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 200},
        },
        (202,),
    )
    assert created["properties"]["tier"] == "P15"
    grown = rest.request("PATCH", path, DISK_API, {"properties": {"diskSizeGB": 600}})
    assert rest.wait(grown)["status"] == "Succeeded"
    assert rest.request("GET", path, DISK_API).json()["properties"]["tier"] == "P30"
    # Raised above the baseline, then back to it: both allowed; below it: refused, nothing changed.
    for tier in ("P40", "P30"):
        assert rest.wait(rest.request("PATCH", path, DISK_API, {"properties": {"tier": tier}}))["status"] == (
            "Succeeded"
        )
        assert rest.request("GET", path, DISK_API).json()["properties"]["tier"] == tier
    below = rest.request("PATCH", path, DISK_API, {"properties": {"tier": "P20"}})
    assert "below the baseline tier P30" in rest.error(below, 400, "InvalidParameter")["message"]
    assert rest.request("GET", path, DISK_API).json()["properties"]["tier"] == "P30"


def test_a_tier_on_a_disk_without_tiers_is_refused(rest: Rest, resource_group: str) -> None:
    response = _put(rest, resource_group, 128, "StandardSSD_LRS", tier="P30")
    assert "Premium SSD" in rest.error(response, 400, "InvalidParameter")["message"]
    unknown = _put(rest, resource_group, 128, "Premium_LRS", tier="P35")
    assert "is not a Premium SSD tier" in rest.error(unknown, 400, "InvalidParameter")["message"]


@pytest.mark.parametrize(("size_gb", "sku"), [(512, "Premium_LRS"), (1024, "StandardSSD_LRS")])
def test_bursting_is_for_premium_disks_larger_than_512_gib(
    rest: Rest, resource_group: str, size_gb: int, sku: str
) -> None:
    response = _put(rest, resource_group, size_gb, sku, burstingEnabled=True)
    error = rest.error(response, 400, "InvalidParameter")
    assert error["target"] == "burstingEnabled" and "larger than 512 GiB" in error["message"]
