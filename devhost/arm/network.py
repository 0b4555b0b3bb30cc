"""Microsoft.Network resources: virtual networks, subnets, network security groups (+ rules), NICs.

References between resources (a NIC's subnet, a subnet's NSG, a VM's NIC) are stored one way only,
on the referring resource; the reverse views (`subnet.ipConfigurations`, `nic.virtualMachine`,
`nsg.networkInterfaces`) are computed on read from the store, so they can never go stale, and the
in-use checks on delete read the same relations. Errors are the network RP's codes:
InUseSubnetCannotBeDeleted, NicInUse, InUseNetworkSecurityGroupCannotBeDeleted,
InvalidResourceReference, NetcfgSubnetRangeOutsideVnet, NetcfgSubnetRangesOverlap.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import TYPE_CHECKING, Any, Final

from devhost.arm import delegations, ids, public_ips
from devhost.arm.errors import ArmError, bad_request, not_found
from devhost.arm.ids import ResourceId, parse_resource_id
from devhost.arm.store import Doc

if TYPE_CHECKING:
    from devhost.arm.service import LocalArm

ROUTE_TABLE: Final = "Microsoft.Network/routeTables"
NAT_GATEWAY: Final = "Microsoft.Network/natGateways"
_PROTOCOLS: Final = {"tcp": "Tcp", "udp": "Udp", "icmp": "Icmp", "esp": "Esp", "ah": "Ah", "*": "*"}

DEFAULT_SECURITY_RULES: Final = (
    ("AllowVnetInBound", "Inbound", 65000, "Allow", "VirtualNetwork", "VirtualNetwork"),
    ("AllowAzureLoadBalancerInBound", "Inbound", 65001, "Allow", "AzureLoadBalancer", "*"),
    ("DenyAllInBound", "Inbound", 65500, "Deny", "*", "*"),
    ("AllowVnetOutBound", "Outbound", 65000, "Allow", "VirtualNetwork", "VirtualNetwork"),
    ("AllowInternetOutBound", "Outbound", 65001, "Allow", "*", "Internet"),
    ("DenyAllOutBound", "Outbound", 65500, "Deny", "*", "*"),
)
DEFAULT_RULE_DESCRIPTIONS: Final = {
    "AllowVnetInBound": "Allow inbound traffic from all VMs in VNET",
    "AllowAzureLoadBalancerInBound": "Allow inbound traffic from azure load balancer",
    "DenyAllInBound": "Deny all inbound traffic",
    "AllowVnetOutBound": "Allow outbound traffic from all VMs to all VMs in VNET",
    "AllowInternetOutBound": "Allow outbound traffic from all VMs to Internet",
    "DenyAllOutBound": "Deny all outbound traffic",
}


def _props(body: dict[str, Any]) -> dict[str, Any]:
    props = body.get("properties") or {}
    if not isinstance(props, dict):
        raise bad_request("'properties' must be an object", "properties")
    return props


def _region(arm: LocalArm, rid: ResourceId) -> str:
    """A resource's region, a child's its parent's (a subnet is in its VNet's), normalized."""
    current: ResourceId | None = rid
    while current is not None:
        doc = arm.store.get(current.key)
        if doc is not None and doc.get("location"):
            return str(doc["location"]).replace(" ", "").lower()
        current = current.parent
    return ""


def _reference(
    arm: LocalArm,
    value: Any,
    referrer: ResourceId,
    expected_type: str,
    target: str,
    location: Any = None,
) -> ResourceId:
    """The referenced resource: it exists, is of the type, and (given the referrer's `location`) is in
    the referrer's region; Azure answers a reference across regions as one to a missing resource."""
    ref_id = value.get("id") if isinstance(value, dict) else None
    parsed = parse_resource_id(str(ref_id)) if ref_id else None
    region = str(location or "").replace(" ", "").lower()
    if (
        parsed is None
        or parsed.type != expected_type
        or arm.store.get(parsed.key) is None
        or (region and _region(arm, parsed) not in ("", region))
    ):
        raise ArmError(
            400,
            "InvalidResourceReference",
            f"Resource {ref_id} referenced by resource {referrer.arm_id} was not found. Please make sure that "
            "the referenced resource exists, and that both resources are in the same region.",
            target=target,
        )
    return parsed


def _is_reference(value: Any) -> bool:
    return isinstance(value, dict) and bool(value.get("id"))


def _check_unserved_references(arm: LocalArm, props: dict[str, Any], referrer: ResourceId) -> None:
    """Route tables and NAT gateways are not served here: a subnet naming one names a missing resource."""
    for key, resource_type in (("routeTable", ROUTE_TABLE), ("natGateway", NAT_GATEWAY)):
        if _is_reference(props.get(key)):
            _reference(arm, props[key], referrer, resource_type, key)


def _network(value: str, target: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        loose = ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ArmError(
            400, "InvalidAddressPrefixFormat", f"Address prefix {value} has an invalid format.", target=target
        ) from exc
    if str(loose) != value and loose.with_prefixlen != value:
        # Host bits set: Azure names the prefix it would have accepted.
        raise ArmError(
            400,
            "InvalidCIDRNotation",
            f"The address prefix {value} has an invalid CIDR notation. For the given prefix "
            f"length, the address prefix should be {loose.with_prefixlen}.",
            target=target,
        )
    return loose


def _subnet_prefixes(props: dict[str, Any], target: str) -> list[str]:
    prefixes = props.get("addressPrefixes") or (
        [props["addressPrefix"]] if props.get("addressPrefix") else []
    )
    if not prefixes:
        raise bad_request("Subnet must have an addressPrefix.", target, code="InvalidRequestFormat")
    return [str(p) for p in prefixes]


# --- virtual networks and subnets -------------------------------------------------------------------


def prepare_vnet(arm: LocalArm, rid: ResourceId, body: dict[str, Any], existing: Doc | None) -> Doc:
    props = _props(body)
    space = [str(p) for p in (props.get("addressSpace") or {}).get("addressPrefixes") or []]
    if not space:
        raise bad_request(
            "addressSpace.addressPrefixes must list at least one prefix.",
            "properties.addressSpace",
            code="InvalidRequestFormat",
        )
    networks = [_network(p, "properties.addressSpace.addressPrefixes") for p in space]
    subnets = props.get("subnets")
    # The network RP treats a PUT as the whole VNet: subnets left out are deleted (if nothing uses them).
    wanted: dict[str, dict[str, Any]] = {}
    for index, subnet in enumerate(subnets or []):
        name = str(subnet.get("name") or "")
        if not name:
            raise bad_request(
                "Every subnet needs a name.", f"properties.subnets[{index}]", code="InvalidRequestFormat"
            )
        wanted[name.lower()] = subnet
    current = {doc["name"].lower(): doc for _, doc in arm.children(rid, "subnets")}
    for name, doc in current.items():
        if name not in wanted:
            check_subnet_unused(arm, rid.child("subnets", doc["name"]))
    validated: list[tuple[str, list[str]]] = []
    for subnet in wanted.values():
        sprops = _props(subnet)
        prefixes = _subnet_prefixes(sprops, f"properties.subnets[{subnet.get('name')}]")
        _check_subnet_ranges(rid, subnet["name"], prefixes, networks, validated)
        validated.append((subnet["name"], prefixes))
        if sprops.get("networkSecurityGroup"):
            _reference(
                arm,
                sprops["networkSecurityGroup"],
                rid,
                ids.NSG,
                "networkSecurityGroup",
                body.get("location") or (existing or {}).get("location"),
            )
        _check_unserved_references(arm, sprops, rid.child("subnets", subnet["name"]))
    doc = arm.tracked_doc(rid, body, existing)
    doc["properties"] = {
        "addressSpace": {"addressPrefixes": space},
        "resourceGuid": (existing or {}).get("properties", {}).get("resourceGuid") or arm.new_guid(),
    }
    if props.get("flowTimeoutInMinutes") is not None:
        # Kept and returned (flow logging is nothing to emulate); Azure allows 4 to 30 minutes.
        timeout = props["flowTimeoutInMinutes"]
        if not isinstance(timeout, int) or not 4 <= timeout <= 30:
            raise bad_request(
                f"FlowTimeoutInMinutes {timeout} is out of the range 4 to 30.",
                "properties.flowTimeoutInMinutes",
                code="InvalidRequestFormat",
            )
        doc["properties"]["flowTimeoutInMinutes"] = timeout
    # Subnets become their own documents (a VNet PUT and a subnet PUT address the same thing).
    for name, doc_sub in current.items():
        if name not in wanted:
            arm.store.delete(rid.child("subnets", doc_sub["name"]).key)
    for subnet in wanted.values():
        sub_rid = rid.child("subnets", subnet["name"])
        sub_existing = arm.store.get(sub_rid.key)
        arm.store.put(sub_rid.key, _subnet_doc(sub_rid, subnet, sub_existing, "Succeeded"))
    return doc


def _check_subnet_ranges(
    vnet: ResourceId,
    name: str,
    prefixes: list[str],
    space: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    others: list[tuple[str, list[str]]],
) -> None:
    for prefix in prefixes:
        net = _network(prefix, "properties.addressPrefix")
        if not any(net.version == s.version and net.subnet_of(s) for s in space):  # type: ignore[arg-type]
            raise ArmError(
                400,
                "NetcfgSubnetRangeOutsideVnet",
                f"Subnet '{name}' is not valid because its IP address range is outside the IP address range of "
                f"virtual network '{vnet.name}'.",
            )
        for other_name, other_prefixes in others:
            if other_name.lower() == name.lower():
                continue
            for other in other_prefixes:
                if net.overlaps(_network(other, "properties.addressPrefix")):
                    raise ArmError(
                        400,
                        "NetcfgSubnetRangesOverlap",
                        f"Subnet '{name}' is not valid because its IP address range overlaps with that of an "
                        f"existing subnet '{other_name}' in virtual network '{vnet.name}'.",
                    )


def _subnet_doc(rid: ResourceId, body: dict[str, Any], existing: Doc | None, state: str) -> Doc:
    props = _props(body)
    prefixes = _subnet_prefixes(props, "properties.addressPrefix")
    stored: dict[str, Any] = {"provisioningState": state}
    if len(prefixes) == 1 and "addressPrefixes" not in props:
        stored["addressPrefix"] = prefixes[0]
    else:
        stored["addressPrefixes"] = prefixes
    if props.get("networkSecurityGroup"):
        stored["networkSecurityGroup"] = {"id": props["networkSecurityGroup"]["id"]}
    for key in (
        "privateEndpointNetworkPolicies",
        "privateLinkServiceNetworkPolicies",
        "serviceEndpoints",
        "defaultOutboundAccess",
    ):
        if key in props:
            stored[key] = props[key]
    subnet_id = rid.arm_id if existing is None else existing["id"]
    stored["delegations"] = delegations.settle(subnet_id, props.get("delegations"), "properties.delegations")
    return {
        "id": subnet_id,
        "name": rid.name if existing is None else existing["name"],
        "type": ids.SUBNET,
        "properties": stored,
        "_created": (existing or {}).get("_created"),
    }


def prepare_subnet(arm: LocalArm, rid: ResourceId, body: dict[str, Any], existing: Doc | None) -> Doc:
    parent = rid.parent
    assert parent is not None
    vnet = arm.store.get(parent.key)
    if vnet is None:
        raise not_found(ids.VIRTUAL_NETWORK, parent.name, rid.resource_group)
    props = _props(body)
    prefixes = _subnet_prefixes(props, "properties.addressPrefix")
    space = [_network(p, "addressSpace") for p in vnet["properties"]["addressSpace"]["addressPrefixes"]]
    others = [(d["name"], _subnet_prefixes(d["properties"], "")) for _, d in arm.children(parent, "subnets")]
    _check_subnet_ranges(parent, rid.name, prefixes, space, others)
    if props.get("networkSecurityGroup"):
        _reference(
            arm, props["networkSecurityGroup"], rid, ids.NSG, "networkSecurityGroup", vnet.get("location")
        )
    _check_unserved_references(arm, props, rid)
    doc = _subnet_doc(rid, body, existing, "Updating")
    doc["_created"] = (existing or {}).get("_created") or arm.now_iso()
    return doc


def subnet_users(arm: LocalArm, subnet: ResourceId) -> list[str]:
    """Ids of the NIC IP configurations placed in the subnet."""
    users = []
    for _, nic in arm.of_type(ids.NIC):
        for config in nic["properties"].get("ipConfigurations", []):
            ref = ((config.get("properties") or {}).get("subnet") or {}).get("id", "")
            if ref.lower() == subnet.key:
                users.append(f"{nic['id']}/ipConfigurations/{config['name']}")
    return users


def check_subnet_unused(arm: LocalArm, subnet: ResourceId) -> None:
    users = subnet_users(arm, subnet)
    if users:
        raise ArmError(
            400,
            "InUseSubnetCannotBeDeleted",
            f"Subnet {subnet.name} is in use by {users[0]} and cannot be deleted. In order to delete the subnet, "
            "delete all the resources within the subnet. See aka.ms/deletesubnet.",
        )


def check_vnet_deletable(arm: LocalArm, rid: ResourceId, doc: Doc) -> None:
    for _, subnet in arm.children(rid, "subnets"):
        check_subnet_unused(arm, rid.child("subnets", subnet["name"]))


def view_subnet(arm: LocalArm, rid: ResourceId, doc: Doc) -> Doc:
    view = dict(doc)
    props = dict(doc["properties"])
    users = subnet_users(arm, rid)
    if users:
        props["ipConfigurations"] = [{"id": u} for u in users]
    view["properties"] = props
    view["etag"] = arm.etag(doc)
    return view


def view_vnet(arm: LocalArm, rid: ResourceId, doc: Doc) -> Doc:
    view = dict(doc)
    props = dict(doc["properties"])
    props["subnets"] = [
        view_subnet(arm, rid.child("subnets", d["name"]), d) for _, d in arm.children(rid, "subnets")
    ]
    props["virtualNetworkPeerings"] = []  # peering is refused, so there is never one
    props["enableDdosProtection"] = False
    view["properties"] = props
    return view


# --- network security groups -------------------------------------------------------------------------


def _rule_doc(arm: LocalArm, rid: ResourceId, body: dict[str, Any], existing: Doc | None, state: str) -> Doc:
    props = _props(body)
    target = f"securityRules[{rid.name}]"
    try:
        priority = int(props.get("priority"))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise bad_request(
            f"Security rule {rid.name} needs an integer priority.", target, code="SecurityRuleInvalidPriority"
        ) from exc
    if not 100 <= priority <= 4096:
        raise bad_request(
            f"Security rule {rid.name} has invalid Priority {priority}. Value provided: {priority} "
            "Allowed range 100-4096.",
            target,
            code="SecurityRuleInvalidPriority",
        )
    direction = str(props.get("direction", ""))
    access = str(props.get("access", ""))
    protocol = _PROTOCOLS.get(str(props.get("protocol", "")).lower())
    if direction not in ("Inbound", "Outbound"):
        raise bad_request(
            f"Security rule {rid.name} has invalid direction '{direction}'.",
            target,
            code="SecurityRuleInvalidDirection",
        )
    if access not in ("Allow", "Deny"):
        raise bad_request(
            f"Security rule {rid.name} has invalid access '{access}'.",
            target,
            code="SecurityRuleInvalidAccess",
        )
    if protocol is None:
        raise bad_request(
            f"Security rule {rid.name} has invalid protocol '{props.get('protocol')}'.",
            target,
            code="SecurityRuleInvalidProtocol",
        )
    for side in ("source", "destination"):
        if not (
            props.get(f"{side}AddressPrefix")
            or props.get(f"{side}AddressPrefixes")
            or props.get(f"{side}ApplicationSecurityGroups")
        ):
            raise bad_request(
                f"Security rule {rid.name} needs a {side} address prefix.",
                target,
                code="SecurityRuleParameterContainsUnsupportedValue",
            )
        if not (props.get(f"{side}PortRange") or props.get(f"{side}PortRanges")):
            raise bad_request(
                f"Security rule {rid.name} needs a {side} port range.",
                target,
                code="SecurityRuleParameterContainsUnsupportedValue",
            )
    stored = {k: v for k, v in props.items() if k != "provisioningState"}
    stored.update(
        priority=priority, direction=direction, access=access, protocol=protocol, provisioningState=state
    )
    return {
        "id": rid.arm_id if existing is None else existing["id"],
        "name": rid.name if existing is None else existing["name"],
        "type": ids.SECURITY_RULE,
        "properties": stored,
        "_created": (existing or {}).get("_created") or arm.now_iso(),
    }


def _check_rule_priorities(rules: list[Doc]) -> None:
    seen: dict[tuple[str, int], str] = {}
    for rule in rules:
        key = (rule["properties"]["direction"], rule["properties"]["priority"])
        if key in seen:
            raise ArmError(
                400,
                "SecurityRuleConflict",
                f"Security rule {rule['name']} conflicts with rule {seen[key]}. Rules cannot have the same "
                "Priority and Direction.",
            )
        seen[key] = rule["name"]


def prepare_nsg(arm: LocalArm, rid: ResourceId, body: dict[str, Any], existing: Doc | None) -> Doc:
    props = _props(body)
    rules = [
        _rule_doc(
            arm,
            rid.child("securityRules", str(r.get("name"))),
            r,
            arm.store.get(rid.child("securityRules", str(r.get("name"))).key),
            "Succeeded",
        )
        for r in props.get("securityRules") or []
    ]
    _check_rule_priorities(rules)
    doc = arm.tracked_doc(rid, body, existing)
    doc["properties"] = {
        "resourceGuid": (existing or {}).get("properties", {}).get("resourceGuid") or arm.new_guid(),
    }
    # Like subnets, the NSG PUT is the whole rule set.
    for _, old in arm.children(rid, "securityRules"):
        arm.store.delete(rid.child("securityRules", old["name"]).key)
    for rule in rules:
        arm.store.put(rid.child("securityRules", rule["name"]).key, rule)
    return doc


def prepare_security_rule(arm: LocalArm, rid: ResourceId, body: dict[str, Any], existing: Doc | None) -> Doc:
    parent = rid.parent
    assert parent is not None
    if arm.store.get(parent.key) is None:
        raise not_found(ids.NSG, parent.name, rid.resource_group)
    rule = _rule_doc(arm, rid, body, existing, "Updating")
    others = [d for _, d in arm.children(parent, "securityRules") if d["name"].lower() != rid.name.lower()]
    _check_rule_priorities([*others, rule])
    return rule


def nsg_users(arm: LocalArm, nsg: ResourceId) -> tuple[list[str], list[str]]:
    nics = [
        d["id"]
        for _, d in arm.of_type(ids.NIC)
        if (d["properties"].get("networkSecurityGroup") or {}).get("id", "").lower() == nsg.key
    ]
    subnets = [
        d["id"]
        for _, d in arm.of_type(ids.SUBNET)
        if (d["properties"].get("networkSecurityGroup") or {}).get("id", "").lower() == nsg.key
    ]
    return nics, subnets


def check_nsg_deletable(arm: LocalArm, rid: ResourceId, doc: Doc) -> None:
    nics, subnets = nsg_users(arm, rid)
    if nics or subnets:
        raise ArmError(
            400,
            "InUseNetworkSecurityGroupCannotBeDeleted",
            f"Network security group {rid.arm_id} cannot be deleted because it is in use by the following "
            f"resources: {', '.join([*nics, *subnets])}. In order to delete the Network security group, remove "
            "the association with the resource(s). To learn how to do this, see aka.ms/deletensg.",
        )


def view_nsg(arm: LocalArm, rid: ResourceId, doc: Doc) -> Doc:
    view = dict(doc)
    props = dict(doc["properties"])
    props["securityRules"] = [dict(d, etag=arm.etag(d)) for _, d in arm.children(rid, "securityRules")]
    props["defaultSecurityRules"] = [
        {
            "id": f"{doc['id']}/defaultSecurityRules/{name}",
            "name": name,
            "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
            "properties": {
                "description": DEFAULT_RULE_DESCRIPTIONS[name],
                "protocol": "*",
                "sourcePortRange": "*",
                "destinationPortRange": "*",
                "sourceAddressPrefix": source,
                "destinationAddressPrefix": dest,
                "access": access,
                "priority": priority,
                "direction": direction,
                "provisioningState": "Succeeded",
            },
        }
        for name, direction, priority, access, source, dest in DEFAULT_SECURITY_RULES
    ]
    nics, subnets = nsg_users(arm, rid)
    if nics:
        props["networkInterfaces"] = [{"id": n} for n in nics]
    if subnets:
        props["subnets"] = [{"id": s} for s in subnets]
    view["properties"] = props
    return view


# --- network interfaces --------------------------------------------------------------------------------


def used_addresses(arm: LocalArm, subnet_key: str, except_nic: str) -> set[str]:
    """The private addresses NICs other than `except_nic` hold in the subnet (also what
    CheckIPAddressAvailability calls taken)."""
    used = set()
    for key, nic in arm.of_type(ids.NIC):
        if key == except_nic:
            continue
        for config in nic["properties"].get("ipConfigurations", []):
            cprops = config.get("properties") or {}
            if (cprops.get("subnet") or {}).get("id", "").lower() == subnet_key and cprops.get(
                "privateIPAddress"
            ):
                used.add(cprops["privateIPAddress"])
    return used


def prepare_nic(arm: LocalArm, rid: ResourceId, body: dict[str, Any], existing: Doc | None) -> Doc:
    props = _props(body)
    configs = props.get("ipConfigurations") or []
    if not configs:
        raise bad_request(
            "A network interface needs at least one IP configuration.",
            "properties.ipConfigurations",
            code="InvalidRequestFormat",
        )
    region = body.get("location") or (existing or {}).get("location")
    if props.get("networkSecurityGroup"):
        _reference(arm, props["networkSecurityGroup"], rid, ids.NSG, "networkSecurityGroup", region)
    old_configs = {
        c["name"].lower(): c for c in ((existing or {}).get("properties") or {}).get("ipConfigurations", [])
    }
    stored_configs = []
    claimed: set[str] = set()
    for index, config in enumerate(configs):
        name = str(config.get("name") or f"ipconfig{index + 1}")
        cprops = _props(config)
        public_ip = None
        if _is_reference(cprops.get("publicIPAddress")):
            public_ip = _reference(
                arm,
                cprops["publicIPAddress"],
                rid,
                ids.PUBLIC_IP,
                f"ipConfigurations[{name}].publicIPAddress",
                region,
            )
            public_ips.claim(arm, public_ip, rid, f"{rid.arm_id}/ipConfigurations/{name}", claimed)
        subnet = _reference(
            arm, cprops.get("subnet"), rid, ids.SUBNET, f"ipConfigurations[{name}].subnet", region
        )
        subnet_doc = arm.store.get(subnet.key)
        assert subnet_doc is not None
        delegations.nic_refused_in_delegated_subnet(subnet, subnet_doc, f"ipConfigurations[{name}].subnet")
        network = _network(_subnet_prefixes(subnet_doc["properties"], "")[0], "subnet")
        used = used_addresses(arm, subnet.key, rid.key)
        method = str(cprops.get("privateIPAllocationMethod") or "Dynamic")
        address = cprops.get("privateIPAddress") if method == "Static" else None
        previous = (old_configs.get(name.lower()) or {}).get("properties") or {}
        if address:
            if ipaddress.ip_address(address) not in network:
                raise ArmError(
                    400,
                    "PrivateIPAddressNotInSubnet",
                    f"IP configuration {name} is referencing a private IP address {address} "
                    f"which does not belong to subnet {subnet.name}.",
                )
            if address in used:
                raise ArmError(
                    400,
                    "PrivateIPAddressInUse",
                    f"IP configuration {name} is using the private IP address {address} which is "
                    f"already allocated to another resource.",
                )
        elif (
            previous.get("privateIPAddress")
            and (previous.get("subnet") or {}).get("id", "").lower() == subnet.key
        ):
            address = previous["privateIPAddress"]
        else:
            # Azure keeps the first four addresses of every subnet (network, gateway, two DNS) and the last.
            hosts = list(network.hosts()) if network.num_addresses <= 65536 else []
            address = next((str(h) for h in hosts[3:-1] if str(h) not in used), None)
            if address is None:
                raise ArmError(400, "SubnetIsFull", f"Subnet {subnet.name} has no free IP address.")
        stored_configs.append(
            {
                "id": f"{rid.arm_id}/ipConfigurations/{name}",
                "name": name,
                "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
                "properties": {
                    "privateIPAddress": address,
                    "privateIPAllocationMethod": method,
                    "privateIPAddressVersion": "IPv4",
                    "subnet": {"id": subnet_doc["id"]},
                    "primary": bool(cprops.get("primary", index == 0)),
                    "provisioningState": "Succeeded",
                    **({"publicIPAddress": {"id": public_ip.arm_id}} if public_ip is not None else {}),
                },
            }
        )
    doc = arm.tracked_doc(rid, body, existing)
    stored: dict[str, Any] = {
        "ipConfigurations": stored_configs,
        "resourceGuid": (existing or {}).get("properties", {}).get("resourceGuid") or arm.new_guid(),
        "enableAcceleratedNetworking": bool(props.get("enableAcceleratedNetworking", False)),
        "enableIPForwarding": bool(props.get("enableIPForwarding", False)),
    }
    if props.get("networkSecurityGroup"):
        stored["networkSecurityGroup"] = {"id": props["networkSecurityGroup"]["id"]}
    doc["properties"] = stored
    return doc


def nic_vm(arm: LocalArm, nic: ResourceId) -> str | None:
    for _, vm in arm.of_type(ids.VIRTUAL_MACHINE):
        for ref in (vm["properties"].get("networkProfile") or {}).get("networkInterfaces") or []:
            if str(ref.get("id", "")).lower() == nic.key:
                return str(vm["id"])
    return None


def check_nic_deletable(arm: LocalArm, rid: ResourceId, doc: Doc) -> None:
    vm = nic_vm(arm, rid)
    if vm:
        raise ArmError(
            400,
            "NicInUse",
            f"Network Interface {doc['id']} is used by existing resource {vm}. In order to delete the network "
            "interface, it must be dissociated from the resource. To learn more, see aka.ms/deletenic.",
        )


def view_nic(arm: LocalArm, rid: ResourceId, doc: Doc) -> Doc:
    view = dict(doc)
    props = dict(doc["properties"])
    props["dnsSettings"] = {"dnsServers": [], "appliedDnsServers": []}  # custom DNS is refused
    vm = nic_vm(arm, rid)
    if vm:
        props["virtualMachine"] = {"id": vm}
        digest = hashlib.sha256(rid.key.encode()).hexdigest()
        props["macAddress"] = "00-0D-3A-" + "-".join(digest[i : i + 2].upper() for i in (0, 2, 4))
        props["primary"] = True
    view["properties"] = props
    return view
