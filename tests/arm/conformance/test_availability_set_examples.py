"""ComputeRP 2025-04-01 availability set examples: get, update, list, delete (synchronous, as in Azure)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.platform.arm_clients import ArmClients
from tests.arm.conformance.spec import COMPUTE_API, SUB, assert_subset, example

pytestmark = pytest.mark.integration

WESTUS = "westus"


def _set(clients: ArmClients, rg: str, name: str, **extra: Any) -> dict[str, Any]:
    body = {"location": WESTUS, "properties": {"platformFaultDomainCount": 3, "platformUpdateDomainCount": 5}}
    result: dict[str, Any] = clients.compute.availability_sets.create_or_update(
        rg, name, {**body, **extra}, api_version=COMPUTE_API
    ).as_dict()
    return result


def _id(rg: str, name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/availabilitySets/{name}"


@example("ComputeRP", "AvailabilitySets_Get", "AvailabilitySet_Get_MinimumSet_Gen")
def test_availability_set_get(clients: ArmClients, resource_group: str) -> None:
    _set(clients, resource_group, "aaaaaaaaaaaa")
    got = clients.compute.availability_sets.get(
        resource_group, "aaaaaaaaaaaa", api_version=COMPUTE_API
    ).as_dict()
    assert_subset(
        got,
        {
            "id": _id(resource_group, "aaaaaaaaaaaa"),
            "location": WESTUS,
            "sku": {"name": "Classic"},
            "properties": {
                "platformFaultDomainCount": 3,
                "platformUpdateDomainCount": 5,
                "virtualMachines": [],
            },
        },
    )


@example("ComputeRP", "AvailabilitySets_Update", "AvailabilitySet_Update_MinimumSet_Gen")
def test_availability_set_update(clients: ArmClients, resource_group: str) -> None:
    _set(clients, resource_group, "aaaaaaaaaaaaaaaaaaaa")
    updated = clients.compute.availability_sets.update(
        resource_group, "aaaaaaaaaaaaaaaaaaaa", {}, api_version=COMPUTE_API
    ).as_dict()
    assert_subset(updated, {"location": WESTUS, "properties": {"platformFaultDomainCount": 3}})
    tagged = clients.compute.availability_sets.update(
        resource_group, "aaaaaaaaaaaaaaaaaaaa", {"tags": {"key": "value"}}, api_version=COMPUTE_API
    ).as_dict()
    assert tagged["tags"] == {"key": "value"}


@example("ComputeRP", "AvailabilitySets_List", "AvailabilitySet_List_MinimumSet_Gen")
def test_availability_set_list(clients: ArmClients, resource_group: str) -> None:
    _set(clients, resource_group, "first")
    _set(clients, resource_group, "second")
    listed = clients.compute.availability_sets.list(resource_group, api_version=COMPUTE_API)
    assert sorted(s.id for s in listed) == [_id(resource_group, "first"), _id(resource_group, "second")]


@example("ComputeRP", "AvailabilitySets_ListBySubscription", "AvailabilitySet_ListBySubscription")
def test_availability_set_list_by_subscription(clients: ArmClients, resource_group: str) -> None:
    _set(clients, resource_group, "mine", tags={"{tagName}": "{tagValue}"})
    listed = [
        s.as_dict()
        for s in clients.compute.availability_sets.list_by_subscription(
            expand="virtualMachines/$ref", api_version=COMPUTE_API
        )
    ]
    mine = next(s for s in listed if s["id"] == _id(resource_group, "mine"))
    assert_subset(
        mine,
        {
            "type": "Microsoft.Compute/availabilitySets",
            "location": WESTUS,
            "tags": {"{tagName}": "{tagValue}"},
            "properties": {
                "platformUpdateDomainCount": 5,
                "platformFaultDomainCount": 3,
                "virtualMachines": [],
            },
            "sku": {"name": "Classic"},
        },
    )


@example("ComputeRP", "AvailabilitySets_Delete", "AvailabilitySet_Delete_MinimumSet_Gen")
def test_availability_set_delete(clients: ArmClients, resource_group: str) -> None:
    _set(clients, resource_group, "aaaaaaaaaaaaaaaaaaaa")
    clients.compute.availability_sets.delete(resource_group, "aaaaaaaaaaaaaaaaaaaa", api_version=COMPUTE_API)
    with pytest.raises(ResourceNotFoundError):
        clients.compute.availability_sets.get(resource_group, "aaaaaaaaaaaaaaaaaaaa", api_version=COMPUTE_API)
    # Deleting what is gone is harmless, as in Azure.
    clients.compute.availability_sets.delete(resource_group, "aaaaaaaaaaaaaaaaaaaa", api_version=COMPUTE_API)
