"""Fixtures of the conformance suite: the raw REST client and a network a VM example can use."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from shared.platform.arm_clients import ArmClients
from tests.arm.conformance.spec import NETWORK_API, Rest
from tests.arm.conftest import LOCATION, LocalArmEndpoint


@pytest.fixture()
def rest(local_arm: LocalArmEndpoint) -> Rest:
    return Rest(local_arm.url)


@dataclass(frozen=True)
class Network:
    vnet: str
    subnet_id: str
    location: str = LOCATION


@pytest.fixture()
def network(clients: ArmClients, resource_group: str) -> Network:
    return make_network(clients, resource_group, LOCATION)


def make_network(clients: ArmClients, resource_group: str, location: str) -> Network:
    """A VNet with a default subnet in `location`: a VM's NIC must be in the VM's region."""
    name = f"vnet-{uuid.uuid4().hex[:6]}"
    body = {
        "location": location,
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/24"}}],
        },
    }
    vnet = clients.network.virtual_networks.begin_create_or_update(
        resource_group, name, body, api_version=NETWORK_API
    ).result()
    return Network(vnet=name, subnet_id=f"{vnet.id}/subnets/default", location=location)


def new_nic(clients: ArmClients, resource_group: str, network: Network) -> str:
    name = f"nic-{uuid.uuid4().hex[:6]}"
    body = {
        "location": network.location,
        "properties": {
            "ipConfigurations": [{"name": "ipconfig1", "properties": {"subnet": {"id": network.subnet_id}}}]
        },
    }
    nic = clients.network.network_interfaces.begin_create_or_update(
        resource_group, name, body, api_version=NETWORK_API
    ).result()
    return str(nic.id)
