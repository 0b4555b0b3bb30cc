"""Network 2025-12-01 examples: virtual networks, subnets, security groups and rules, NICs.

The examples of a VNet and an NSG give no `location` in the body (it is a URL parameter of the
example file only); the network RP requires one, so the transcriptions add it.
"""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.platform.arm_clients import ArmClients
from tests.arm.conformance.conftest import Network
from tests.arm.conformance.spec import NETWORK_API, SUB, assert_subset, example
from tests.arm.conftest import LOCATION

pytestmark = pytest.mark.integration

DEFAULT_RULES = [
    ("AllowVnetInBound", "Allow inbound traffic from all VMs in VNET", "VirtualNetwork", "VirtualNetwork", "Allow", 65000, "Inbound"),
    ("AllowAzureLoadBalancerInBound", "Allow inbound traffic from azure load balancer", "AzureLoadBalancer", "*", "Allow", 65001, "Inbound"),
    ("DenyAllInBound", "Deny all inbound traffic", "*", "*", "Deny", 65500, "Inbound"),
    ("AllowVnetOutBound", "Allow outbound traffic from all VMs to all VMs in VNET", "VirtualNetwork", "VirtualNetwork", "Allow", 65000, "Outbound"),
    ("AllowInternetOutBound", "Allow outbound traffic from all VMs to Internet", "*", "Internet", "Allow", 65001, "Outbound"),
    ("DenyAllOutBound", "Deny all outbound traffic", "*", "*", "Deny", 65500, "Outbound"),
]  # fmt: skip


def _id(rg: str, path: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/{path}"


@example("Network", "VirtualNetworks_CreateOrUpdate", "VirtualNetworkCreate")
def test_virtual_network_create(clients: ArmClients, resource_group: str) -> None:
    body = {"location": LOCATION, "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}}}
    vnet = clients.network.virtual_networks.begin_create_or_update(
        resource_group, "test-vnet", body, api_version=NETWORK_API
    ).result()
    assert_subset(
        vnet.as_dict(),
        {
            "name": "test-vnet",
            "id": _id(resource_group, "virtualNetworks/test-vnet"),
            "type": "Microsoft.Network/virtualNetworks",
            "location": LOCATION,
            "properties": {
                "provisioningState": "Succeeded",
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [],
                "virtualNetworkPeerings": [],
            },
        },
    )


@example("Network", "VirtualNetworks_CreateOrUpdate", "VirtualNetworkCreateSubnet")
def test_virtual_network_create_with_subnet(clients: ArmClients, resource_group: str) -> None:
    body = {
        "location": LOCATION,
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "test-1", "properties": {"addressPrefix": "10.0.0.0/24"}}],
        },
    }
    vnet = clients.network.virtual_networks.begin_create_or_update(
        resource_group, "test-vnet", body, api_version=NETWORK_API
    ).result()
    assert_subset(
        vnet.as_dict()["properties"],
        {
            "provisioningState": "Succeeded",
            "subnets": [
                {
                    "id": _id(resource_group, "virtualNetworks/test-vnet/subnets/test-1"),
                    "name": "test-1",
                    "properties": {"addressPrefix": "10.0.0.0/24", "provisioningState": "Succeeded"},
                }
            ],
        },
    )


@example("Network", "VirtualNetworks_CreateOrUpdate", "VirtualNetworkCreateSubnetWithAddressPrefixes")
def test_virtual_network_create_subnet_with_address_prefixes(
    clients: ArmClients, resource_group: str
) -> None:
    body = {
        "location": LOCATION,
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [
                {"name": "test-2", "properties": {"addressPrefixes": ["10.0.0.0/28", "10.0.1.0/28"]}}
            ],
        },
    }
    vnet = clients.network.virtual_networks.begin_create_or_update(
        resource_group, "test-vnet", body, api_version=NETWORK_API
    ).result()
    # The 201 body of the example (its 200 body lists 10.1.0.0/28, outside the address space: a typo).
    assert_subset(
        vnet.as_dict()["properties"]["subnets"],
        [{"name": "test-2", "properties": {"addressPrefixes": ["10.0.0.0/28", "10.0.1.0/28"]}}],
    )


@example("Network", "Subnets_CreateOrUpdate", "SubnetCreate")
def test_subnet_create(clients: ArmClients, resource_group: str) -> None:
    clients.network.virtual_networks.begin_create_or_update(
        resource_group,
        "vnetname",
        {"location": LOCATION, "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/8"]}}},
        api_version=NETWORK_API,
    ).result()
    subnet = clients.network.subnets.begin_create_or_update(
        resource_group,
        "vnetname",
        "subnet1",
        {"properties": {"addressPrefix": "10.0.0.0/16"}},
        api_version=NETWORK_API,
    ).result()
    assert_subset(
        subnet.as_dict(),
        {
            "id": _id(resource_group, "virtualNetworks/vnetname/subnets/subnet1"),
            "name": "subnet1",
            "properties": {"addressPrefix": "10.0.0.0/16", "provisioningState": "Succeeded"},
        },
    )


def _nsg_rules(nsg: dict[str, object], rg: str) -> None:
    assert_subset(
        nsg,
        {
            "properties": {
                "provisioningState": "Succeeded",
                "defaultSecurityRules": [
                    {
                        "name": name,
                        "id": _id(rg, f"networkSecurityGroups/testnsg/defaultSecurityRules/{name}"),
                        "properties": {
                            "provisioningState": "Succeeded",
                            "description": description,
                            "protocol": "*",
                            "sourcePortRange": "*",
                            "destinationPortRange": "*",
                            "sourceAddressPrefix": source,
                            "destinationAddressPrefix": destination,
                            "access": access,
                            "priority": priority,
                            "direction": direction,
                        },
                    }
                    for name, description, source, destination, access, priority, direction in DEFAULT_RULES
                ],
            }
        },
    )


@example("Network", "NetworkSecurityGroups_CreateOrUpdate", "NetworkSecurityGroupCreate")
def test_network_security_group_create(clients: ArmClients, resource_group: str) -> None:
    nsg = clients.network.network_security_groups.begin_create_or_update(
        resource_group, "testnsg", {"location": LOCATION}, api_version=NETWORK_API
    ).result()
    assert nsg.as_dict()["properties"]["securityRules"] == []
    _nsg_rules(nsg.as_dict(), resource_group)


@example("Network", "NetworkSecurityGroups_CreateOrUpdate", "NetworkSecurityGroupCreateWithRule")
def test_network_security_group_create_with_rule(clients: ArmClients, resource_group: str) -> None:
    rule = {
        "protocol": "*",
        "sourceAddressPrefix": "*",
        "destinationAddressPrefix": "*",
        "access": "Allow",
        "destinationPortRange": "80",
        "sourcePortRange": "*",
        "priority": 130,
        "direction": "Inbound",
    }
    body = {"location": LOCATION, "properties": {"securityRules": [{"name": "rule1", "properties": rule}]}}
    nsg = clients.network.network_security_groups.begin_create_or_update(
        resource_group, "testnsg", body, api_version=NETWORK_API
    ).result()
    assert_subset(
        nsg.as_dict()["properties"]["securityRules"],
        [
            {
                "name": "rule1",
                "id": _id(resource_group, "networkSecurityGroups/testnsg/securityRules/rule1"),
                "properties": {"provisioningState": "Succeeded", **rule},
            }
        ],
    )
    _nsg_rules(nsg.as_dict(), resource_group)


@example("Network", "SecurityRules_CreateOrUpdate", "NetworkSecurityGroupRuleCreate")
def test_security_rule_create(clients: ArmClients, resource_group: str) -> None:
    clients.network.network_security_groups.begin_create_or_update(
        resource_group, "testnsg", {"location": LOCATION}, api_version=NETWORK_API
    ).result()
    rule = {
        "protocol": "*",
        "sourceAddressPrefix": "10.0.0.0/8",
        "destinationAddressPrefix": "11.0.0.0/8",
        "access": "Deny",
        "destinationPortRange": "8080",
        "sourcePortRange": "*",
        "priority": 100,
        "direction": "Outbound",
    }
    created = clients.network.security_rules.begin_create_or_update(
        resource_group, "testnsg", "rule1", {"properties": rule}, api_version=NETWORK_API
    ).result()
    assert_subset(
        created.as_dict(),
        {
            "name": "rule1",
            "id": _id(resource_group, "networkSecurityGroups/testnsg/securityRules/rule1"),
            "properties": {"provisioningState": "Succeeded", **rule},
        },
    )


@example("Network", "NetworkInterfaces_CreateOrUpdate", "NetworkInterfaceCreate")
def test_network_interface_create_with_public_ip(
    clients: ArmClients, resource_group: str, network: Network
) -> None:
    """The example's public IP exists beforehand; the transcription creates it (Standard, static)."""
    public_ip = (
        clients.network.public_ip_addresses.begin_create_or_update(
            resource_group,
            "test-ip",
            {
                "location": LOCATION,
                "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static"},
            },
            api_version=NETWORK_API,
        )
        .result()
        .as_dict()
    )
    assert (
        public_ip["properties"]["ipAddress"]
        and public_ip["properties"]["publicIPAllocationMethod"] == "Static"
    )
    body = {
        "location": LOCATION,
        "properties": {
            "enableAcceleratedNetworking": True,
            "ipConfigurations": [
                {
                    "name": "ipconfig1",
                    "properties": {
                        "publicIPAddress": {"id": public_ip["id"]},
                        "subnet": {"id": network.subnet_id},
                    },
                }
            ],
        },
    }
    nic = (
        clients.network.network_interfaces.begin_create_or_update(
            resource_group, "test-nic", body, api_version=NETWORK_API
        )
        .result()
        .as_dict()
    )
    assert_subset(
        nic,
        {
            "name": "test-nic",
            "id": _id(resource_group, "networkInterfaces/test-nic"),
            "properties": {
                "provisioningState": "Succeeded",
                "enableAcceleratedNetworking": True,
                "ipConfigurations": [
                    {
                        "name": "ipconfig1",
                        "id": _id(resource_group, "networkInterfaces/test-nic/ipConfigurations/ipconfig1"),
                        "properties": {
                            "provisioningState": "Succeeded",
                            "privateIPAllocationMethod": "Dynamic",
                            "publicIPAddress": {"id": public_ip["id"]},
                            "subnet": {"id": network.subnet_id},
                        },
                    }
                ],
            },
        },
    )
    held = clients.network.public_ip_addresses.get(
        resource_group, "test-ip", api_version=NETWORK_API
    ).as_dict()
    assert (
        held["properties"]["ipConfiguration"]["id"].lower()
        == nic["properties"]["ipConfigurations"][0]["id"].lower()
    )
    # One address, one holder; an address held is not deleted.
    with pytest.raises(HttpResponseError) as taken:
        clients.network.network_interfaces.begin_create_or_update(
            resource_group, "other-nic", body, api_version=NETWORK_API
        )
    assert taken.value.error is not None and taken.value.error.code == "PublicIPAddressInUse"
    with pytest.raises(HttpResponseError) as in_use:
        clients.network.public_ip_addresses.begin_delete(resource_group, "test-ip", api_version=NETWORK_API)
    assert in_use.value.error is not None and in_use.value.error.code == "PublicIPAddressInUseCannotBeDeleted"
    # A Standard address is static.
    with pytest.raises(HttpResponseError) as dynamic:
        clients.network.public_ip_addresses.begin_create_or_update(
            resource_group,
            "dynamic-ip",
            {
                "location": LOCATION,
                "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Dynamic"},
            },
            api_version=NETWORK_API,
        )
    assert (
        dynamic.value.error is not None
        and dynamic.value.error.code == "StandardSkuPublicIPAddressesMustBeStatic"
    )


@example("Network", "NetworkInterfaces_Get", "NetworkInterfaceGet")
def test_network_interface_get(clients: ArmClients, resource_group: str, network: Network) -> None:
    body = {
        "location": LOCATION,
        "properties": {
            "enableAcceleratedNetworking": True,
            "ipConfigurations": [{"name": "ipconfig1", "properties": {"subnet": {"id": network.subnet_id}}}],
        },
    }
    clients.network.network_interfaces.begin_create_or_update(
        resource_group, "test-nic", body, api_version=NETWORK_API
    ).result()
    nic = clients.network.network_interfaces.get(resource_group, "test-nic", api_version=NETWORK_API)
    assert_subset(
        nic.as_dict(),
        {
            "name": "test-nic",
            "id": _id(resource_group, "networkInterfaces/test-nic"),
            "type": "Microsoft.Network/networkInterfaces",
            "location": LOCATION,
            "properties": {
                "provisioningState": "Succeeded",
                "ipConfigurations": [
                    {
                        "name": "ipconfig1",
                        "id": _id(resource_group, "networkInterfaces/test-nic/ipConfigurations/ipconfig1"),
                        "properties": {
                            "provisioningState": "Succeeded",
                            "privateIPAddress": "10.0.0.4",  # the example's subnet is another one
                            "privateIPAllocationMethod": "Dynamic",
                            "subnet": {"id": network.subnet_id},
                            "primary": True,
                            "privateIPAddressVersion": "IPv4",
                        },
                    }
                ],
                "dnsSettings": {"dnsServers": [], "appliedDnsServers": []},
                "enableAcceleratedNetworking": True,
                "enableIPForwarding": False,
            },
        },
    )


# --- reads, lists and deletes ----------------------------------------------------------------------


def _vnet(clients: ArmClients, rg: str, name: str = "test-vnet") -> None:
    body = {
        "location": LOCATION,
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "subnet1", "properties": {"addressPrefix": "10.0.1.0/24"}}],
        },
    }
    clients.network.virtual_networks.begin_create_or_update(rg, name, body, api_version=NETWORK_API).result()


def _nsg_with_rule(clients: ArmClients, rg: str) -> None:
    rule = {
        "protocol": "*",
        "sourceAddressPrefix": "*",
        "destinationAddressPrefix": "*",
        "access": "Allow",
        "destinationPortRange": "80",
        "sourcePortRange": "*",
        "priority": 130,
        "direction": "Inbound",
    }
    body = {"location": LOCATION, "properties": {"securityRules": [{"name": "rule1", "properties": rule}]}}
    clients.network.network_security_groups.begin_create_or_update(
        rg, "testnsg", body, api_version=NETWORK_API
    ).result()


@example("Network", "VirtualNetworks_Get", "VirtualNetworkGet")
def test_virtual_network_get(clients: ArmClients, resource_group: str) -> None:
    _vnet(clients, resource_group)
    vnet = clients.network.virtual_networks.get(
        resource_group, "test-vnet", api_version=NETWORK_API
    ).as_dict()
    assert_subset(
        vnet,
        {
            "name": "test-vnet",
            "id": _id(resource_group, "virtualNetworks/test-vnet"),
            "type": "Microsoft.Network/virtualNetworks",
            "location": LOCATION,
            "properties": {
                "provisioningState": "Succeeded",
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [
                    {
                        "name": "subnet1",
                        "id": _id(resource_group, "virtualNetworks/test-vnet/subnets/subnet1"),
                        "properties": {"addressPrefix": "10.0.1.0/24", "provisioningState": "Succeeded"},
                    }
                ],
                "virtualNetworkPeerings": [],
                "enableDdosProtection": False,
            },
        },
    )
    assert vnet["etag"] and vnet["properties"]["resourceGuid"]


@example("Network", "VirtualNetworks_Delete", "VirtualNetworkDelete")
def test_virtual_network_delete(clients: ArmClients, resource_group: str) -> None:
    _vnet(clients, resource_group)
    clients.network.virtual_networks.begin_delete(
        resource_group, "test-vnet", api_version=NETWORK_API
    ).result()
    with pytest.raises(ResourceNotFoundError):
        clients.network.virtual_networks.get(resource_group, "test-vnet", api_version=NETWORK_API)


@example("Network", "VirtualNetworks_List", "VirtualNetworkList")
def test_virtual_network_list(clients: ArmClients, resource_group: str) -> None:
    _vnet(clients, resource_group, "vnet1")
    _vnet(clients, resource_group, "vnet2")
    listed = clients.network.virtual_networks.list(resource_group, api_version=NETWORK_API)
    assert sorted(v.name for v in listed) == ["vnet1", "vnet2"]


@example("Network", "Subnets_Get", "SubnetGet")
def test_subnet_get(clients: ArmClients, resource_group: str) -> None:
    _vnet(clients, resource_group)
    subnet = clients.network.subnets.get(resource_group, "test-vnet", "subnet1", api_version=NETWORK_API)
    assert_subset(
        subnet.as_dict(),
        {
            "id": _id(resource_group, "virtualNetworks/test-vnet/subnets/subnet1"),
            "name": "subnet1",
            "properties": {"addressPrefix": "10.0.1.0/24", "provisioningState": "Succeeded"},
        },
    )


@example("Network", "Subnets_Delete", "SubnetDelete")
def test_subnet_delete(clients: ArmClients, resource_group: str) -> None:
    _vnet(clients, resource_group)
    clients.network.subnets.begin_delete(
        resource_group, "test-vnet", "subnet1", api_version=NETWORK_API
    ).result()
    with pytest.raises(ResourceNotFoundError):
        clients.network.subnets.get(resource_group, "test-vnet", "subnet1", api_version=NETWORK_API)


@example("Network", "Subnets_List", "SubnetList")
def test_subnet_list(clients: ArmClients, resource_group: str) -> None:
    _vnet(clients, resource_group)
    clients.network.subnets.begin_create_or_update(
        resource_group,
        "test-vnet",
        "subnet2",
        {"properties": {"addressPrefix": "10.0.2.0/24"}},
        api_version=NETWORK_API,
    ).result()
    listed = clients.network.subnets.list(resource_group, "test-vnet", api_version=NETWORK_API)
    assert sorted((s.name, s.properties.address_prefix) for s in listed) == [
        ("subnet1", "10.0.1.0/24"),
        ("subnet2", "10.0.2.0/24"),
    ]


@example("Network", "Subnets_CreateOrUpdate", "SubnetCreateWithDelegation")
def test_subnet_create_with_a_delegation(clients: ArmClients, resource_group: str) -> None:
    """The example's service is a placeholder (`Microsoft.Provider/resourceType`, no actions); the
    transcription delegates to a real service, whose actions Azure lists."""
    _vnet(clients, resource_group)
    body = {
        "properties": {
            "addressPrefix": "10.0.3.0/24",
            "delegations": [
                {"name": "myDelegation", "properties": {"serviceName": "Microsoft.Sql/managedInstances"}}
            ],
        }
    }
    subnet = (
        clients.network.subnets.begin_create_or_update(
            resource_group, "test-vnet", "subnet3", body, api_version=NETWORK_API
        )
        .result()
        .as_dict()
    )
    subnet_id = f"/subscriptions/{SUB}/resourceGroups/{resource_group}/providers/Microsoft.Network/virtualNetworks/test-vnet/subnets/subnet3"
    assert_subset(
        subnet,
        {
            "id": subnet_id,
            "name": "subnet3",
            "properties": {
                "addressPrefix": "10.0.3.0/24",
                "provisioningState": "Succeeded",
                "delegations": [
                    {
                        "name": "myDelegation",
                        "id": f"{subnet_id}/delegations/myDelegation",
                        "properties": {
                            "provisioningState": "Succeeded",
                            "serviceName": "Microsoft.Sql/managedInstances",
                            "actions": [
                                "Microsoft.Network/virtualNetworks/subnets/join/action",
                                "Microsoft.Network/virtualNetworks/subnets/prepareNetworkPolicies/action",
                                "Microsoft.Network/virtualNetworks/subnets/unprepareNetworkPolicies/action",
                            ],
                        },
                    }
                ],
            },
        },
    )
    # A service that offers no delegation is refused.
    body["properties"]["addressPrefix"] = "10.0.4.0/24"
    body["properties"]["delegations"][0]["properties"]["serviceName"] = "Microsoft.Provider/resourceType"
    with pytest.raises(HttpResponseError) as raised:
        clients.network.subnets.begin_create_or_update(
            resource_group, "test-vnet", "subnet4", body, api_version=NETWORK_API
        )
    assert raised.value.status_code == 400 and raised.value.error is not None
    assert raised.value.error.code == "InvalidServiceNameOnDelegation"


@example("Network", "NetworkSecurityGroups_Get", "NetworkSecurityGroupGet")
def test_network_security_group_get(clients: ArmClients, resource_group: str) -> None:
    _nsg_with_rule(clients, resource_group)
    nsg = clients.network.network_security_groups.get(resource_group, "testnsg", api_version=NETWORK_API)
    assert [r["name"] for r in nsg.as_dict()["properties"]["securityRules"]] == ["rule1"]
    _nsg_rules(nsg.as_dict(), resource_group)


@example("Network", "NetworkSecurityGroups_Delete", "NetworkSecurityGroupDelete")
def test_network_security_group_delete(clients: ArmClients, resource_group: str) -> None:
    _nsg_with_rule(clients, resource_group)
    clients.network.network_security_groups.begin_delete(
        resource_group, "testnsg", api_version=NETWORK_API
    ).result()
    with pytest.raises(ResourceNotFoundError):
        clients.network.network_security_groups.get(resource_group, "testnsg", api_version=NETWORK_API)


@example("Network", "NetworkSecurityGroups_List", "NetworkSecurityGroupList")
def test_network_security_group_list(clients: ArmClients, resource_group: str) -> None:
    _nsg_with_rule(clients, resource_group)
    listed = clients.network.network_security_groups.list(resource_group, api_version=NETWORK_API)
    assert [n.name for n in listed] == ["testnsg"]


@example("Network", "SecurityRules_Get", "NetworkSecurityGroupRuleGet")
def test_security_rule_get(clients: ArmClients, resource_group: str) -> None:
    _nsg_with_rule(clients, resource_group)
    rule = clients.network.security_rules.get(resource_group, "testnsg", "rule1", api_version=NETWORK_API)
    assert_subset(
        rule.as_dict(),
        {
            "name": "rule1",
            "id": _id(resource_group, "networkSecurityGroups/testnsg/securityRules/rule1"),
            "properties": {
                "provisioningState": "Succeeded",
                "priority": 130,
                "direction": "Inbound",
                "access": "Allow",
            },
        },
    )


@example("Network", "SecurityRules_Delete", "NetworkSecurityGroupRuleDelete")
def test_security_rule_delete(clients: ArmClients, resource_group: str) -> None:
    _nsg_with_rule(clients, resource_group)
    clients.network.security_rules.begin_delete(
        resource_group, "testnsg", "rule1", api_version=NETWORK_API
    ).result()
    with pytest.raises(ResourceNotFoundError):
        clients.network.security_rules.get(resource_group, "testnsg", "rule1", api_version=NETWORK_API)


@example("Network", "NetworkInterfaces_Delete", "NetworkInterfaceDelete")
def test_network_interface_delete(clients: ArmClients, resource_group: str, network: Network) -> None:
    body = {
        "location": LOCATION,
        "properties": {
            "ipConfigurations": [{"name": "ipconfig1", "properties": {"subnet": {"id": network.subnet_id}}}]
        },
    }
    operations = clients.network.network_interfaces
    operations.begin_create_or_update(resource_group, "test-nic", body, api_version=NETWORK_API).result()
    operations.begin_delete(resource_group, "test-nic", api_version=NETWORK_API).result()
    with pytest.raises(ResourceNotFoundError):
        operations.get(resource_group, "test-nic", api_version=NETWORK_API)


@example("Network", "NetworkInterfaces_List", "NetworkInterfaceList")
def test_network_interface_list(clients: ArmClients, resource_group: str, network: Network) -> None:
    operations = clients.network.network_interfaces
    for name in ("test-nic", "test-nic2"):
        body = {
            "location": LOCATION,
            "properties": {
                "ipConfigurations": [
                    {"name": "ipconfig1", "properties": {"subnet": {"id": network.subnet_id}}}
                ]
            },
        }
        operations.begin_create_or_update(resource_group, name, body, api_version=NETWORK_API).result()
    listed = operations.list(resource_group, api_version=NETWORK_API)
    assert sorted(
        (n.name, n.properties.ip_configurations[0].properties.private_ip_address) for n in listed
    ) == [
        ("test-nic", "10.0.0.4"),
        ("test-nic2", "10.0.0.5"),
    ]
