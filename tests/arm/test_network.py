"""Network artefacts through the real azure-mgmt-network client against the local ARM endpoint."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.network import models as nm

from shared.migration import resource_kinds as kinds
from shared.migration import resources as ops
from shared.migration.tags import TAG_JOB_ID, TAG_PURPOSE, ResourceTags
from shared.platform.arm_clients import ArmClients
from shared.platform.arm_errors import ArmConflict, ArmRequestFailed, translate_arm_error
from tests.arm.conftest import LOCATION

pytestmark = pytest.mark.integration


def _network(
    clients: ArmClients, rg: str, tags: ResourceTags
) -> tuple[ops.VirtualNetworkRef, ops.ResourceRef, ops.NetworkInterfaceRef]:
    vnet = ops.ensure_virtual_network(
        clients,
        rg,
        "hyd-vnet",
        location=LOCATION,
        address_prefix="10.10.0.0/24",
        subnet_name="hyd-subnet",
        subnet_prefix="10.10.0.0/27",
        tags=tags,
    )
    nsg = ops.ensure_helper_network_security_group(
        clients,
        rg,
        "hyd-nsg",
        location=LOCATION,
        storage=ops.StorageDestination(region="West Europe"),
        tags=tags,
    )
    nic = ops.ensure_network_interface(
        clients,
        rg,
        "hyd-nic",
        location=LOCATION,
        subnet_id=vnet.subnet_id,
        network_security_group_id=nsg.id,
        tags=tags,
    )
    return vnet, nsg, nic


def test_create_get_list_delete_network_artefacts(
    clients: ArmClients, resource_group: str, tags: ResourceTags
) -> None:
    vnet, nsg, nic = _network(clients, resource_group, tags)

    assert vnet.subnet_id == f"{vnet.id}/subnets/hyd-subnet"
    # Azure keeps the first four addresses of a subnet.
    assert nic.private_ip_address == "10.10.0.4"

    got_vnet = clients.network.virtual_networks.get(resource_group, "hyd-vnet")
    assert got_vnet.properties.provisioning_state == "Succeeded"
    assert got_vnet.tags[TAG_JOB_ID] == tags.job_id and got_vnet.tags[TAG_PURPOSE] == "temporary"
    subnet = clients.network.subnets.get(resource_group, "hyd-vnet", "hyd-subnet")
    assert [c.id for c in subnet.properties.ip_configurations] == [f"{nic.id}/ipConfigurations/ipconfig1"]

    got_nsg = clients.network.network_security_groups.get(resource_group, "hyd-nsg")
    rules = {r.name: r.properties for r in got_nsg.properties.security_rules}
    assert rules["allow-storage-https-out"].destination_address_prefix == "Storage.westeurope"
    assert rules["allow-storage-https-out"].destination_port_range == "443"
    assert rules["deny-all-out"].priority == 4096 and rules["deny-all-out"].access == "Deny"
    assert rules["deny-all-in"].direction == "Inbound"
    assert [n.id for n in got_nsg.properties.network_interfaces] == [nic.id]
    assert {r.name for r in got_nsg.properties.default_security_rules} >= {
        "DenyAllOutBound",
        "AllowVnetInBound",
    }

    in_group = {n.name for n in clients.network.network_interfaces.list(resource_group)}
    assert in_group == {"hyd-nic"}
    everywhere = {n.id for n in clients.network.virtual_networks.list_all()}
    assert vnet.id in everywhere

    # Re-running a create is an idempotent update: same ids, same address.
    again = ops.ensure_network_interface(
        clients,
        resource_group,
        "hyd-nic",
        location=LOCATION,
        subnet_id=vnet.subnet_id,
        network_security_group_id=nsg.id,
        tags=tags,
    )
    assert again == nic

    for arm_id in (nic.id, nsg.id, vnet.id):
        kinds.delete_resource(clients, arm_id)
    assert list(clients.network.virtual_networks.list(resource_group)) == []
    assert list(clients.network.network_security_groups.list(resource_group)) == []
    # Deleting what is already gone is a success (a retried compensation).
    kinds.delete_resource(clients, nic.id)


def test_in_use_subnet_and_nsg_cannot_be_deleted(
    clients: ArmClients, resource_group: str, tags: ResourceTags
) -> None:
    vnet, nsg, nic = _network(clients, resource_group, tags)

    with pytest.raises(ArmConflict) as subnet_error:
        kinds.delete_resource(clients, vnet.subnet_id)
    assert subnet_error.value.arm_code == "InUseSubnetCannotBeDeleted"
    assert subnet_error.value.status_code == 400
    with pytest.raises(ArmConflict) as vnet_error:
        kinds.delete_resource(clients, vnet.id)
    assert vnet_error.value.arm_code == "InUseSubnetCannotBeDeleted"
    with pytest.raises(ArmConflict) as nsg_error:
        kinds.delete_resource(clients, nsg.id)
    assert nsg_error.value.arm_code == "InUseNetworkSecurityGroupCannotBeDeleted"

    kinds.delete_resource(clients, nic.id)
    kinds.delete_resource(clients, vnet.subnet_id)
    assert clients.network.virtual_networks.get(resource_group, "hyd-vnet").properties.subnets == []


def test_explicit_storage_addresses_replace_the_service_tag() -> None:
    rules = ops.helper_security_rules(ops.StorageDestination(region="westeurope", addresses=["10.1.2.3/32"]))
    storage = rules[0].properties
    assert storage.destination_address_prefixes == ["10.1.2.3/32"]
    assert storage.destination_address_prefix is None
    assert [r.properties.priority for r in rules] == [100, 110, 4096, 4096]


def test_child_resources_rules_and_subnets(
    clients: ArmClients, resource_group: str, tags: ResourceTags
) -> None:
    vnet = ops.ensure_virtual_network(
        clients,
        resource_group,
        "parent",
        location=LOCATION,
        address_prefix="10.70.0.0/24",
        subnet_name="a",
        subnet_prefix="10.70.0.0/26",
        tags=tags,
    )
    second = clients.network.subnets.begin_create_or_update(
        resource_group,
        "parent",
        "b",
        nm.Subnet(properties=nm.SubnetPropertiesFormat(address_prefix="10.70.0.64/26")),
    ).result()
    assert second.properties.provisioning_state == "Succeeded"
    assert sorted(s.name for s in clients.network.subnets.list(resource_group, "parent")) == ["a", "b"]
    with pytest.raises(ArmRequestFailed) as overlap:
        try:
            clients.network.subnets.begin_create_or_update(
                resource_group,
                "parent",
                "c",
                nm.Subnet(properties=nm.SubnetPropertiesFormat(address_prefix="10.70.0.0/25")),
            ).result()
        except HttpResponseError as exc:
            raise translate_arm_error(exc, operation="create subnet c") from exc
    assert overlap.value.arm_code == "NetcfgSubnetRangesOverlap"
    with pytest.raises(HttpResponseError, match="NetcfgSubnetRangeOutsideVnet"):
        clients.network.subnets.begin_create_or_update(
            resource_group,
            "parent",
            "d",
            nm.Subnet(properties=nm.SubnetPropertiesFormat(address_prefix="10.99.0.0/26")),
        ).result()

    nsg = ops.ensure_helper_network_security_group(
        clients,
        resource_group,
        "rules",
        location=LOCATION,
        storage=ops.StorageDestination(region=LOCATION),
        tags=tags,
    )
    rule = clients.network.security_rules.begin_create_or_update(
        resource_group,
        "rules",
        "allow-ssh-in",
        nm.SecurityRule(
            properties=nm.SecurityRulePropertiesFormat(
                priority=200,
                direction="Inbound",
                access="Allow",
                protocol="Tcp",
                source_address_prefix="10.0.0.0/8",
                source_port_range="*",
                destination_address_prefix="*",
                destination_port_range="22",
            )
        ),
    ).result()
    assert rule.properties.provisioning_state == "Succeeded"
    with pytest.raises(HttpResponseError, match="SecurityRuleConflict"):
        clients.network.security_rules.begin_create_or_update(
            resource_group,
            "rules",
            "clash",
            nm.SecurityRule(
                properties=nm.SecurityRulePropertiesFormat(
                    priority=100,
                    direction="Outbound",
                    access="Deny",
                    protocol="*",
                    source_address_prefix="*",
                    source_port_range="*",
                    destination_address_prefix="*",
                    destination_port_range="*",
                )
            ),
        ).result()
    names = {r.name for r in clients.network.security_rules.list(resource_group, "rules")}
    assert names == {
        "allow-storage-https-out",
        "allow-azure-platform-out",
        "deny-all-out",
        "deny-all-in",
        "allow-ssh-in",
    }
    clients.network.security_rules.begin_delete(resource_group, "rules", "allow-ssh-in").result()
    assert (
        len(clients.network.network_security_groups.get(resource_group, "rules").properties.security_rules)
        == 4
    )
    subnet_b = str(second.id)
    kinds.delete_resource(clients, subnet_b)
    kinds.delete_resource(clients, subnet_b)  # already gone: still a success
    assert [s.name for s in clients.network.subnets.list(resource_group, "parent")] == ["a"]
    for arm_id in (nsg.id, vnet.id):
        kinds.delete_resource(clients, arm_id)


def test_deleting_a_resource_group_deletes_what_is_in_it(clients: ArmClients, tags: ResourceTags) -> None:
    clients.resources.resource_groups.create_or_update("rg-doomed", {"location": LOCATION})
    ops.ensure_virtual_network(
        clients,
        "rg-doomed",
        "v",
        location=LOCATION,
        address_prefix="10.80.0.0/24",
        subnet_name="s",
        subnet_prefix="10.80.0.0/26",
        tags=tags,
    )
    assert clients.resources.resource_groups.check_existence("rg-doomed")
    clients.resources.resource_groups.begin_delete("rg-doomed").result()
    assert not clients.resources.resource_groups.check_existence("rg-doomed")
    assert "rg-doomed" not in {g.name for g in clients.resources.resource_groups.list()}
    with pytest.raises(HttpResponseError, match="ResourceGroupNotFound"):
        clients.network.virtual_networks.get("rg-doomed", "v")
