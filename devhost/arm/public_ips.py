"""Public IP addresses (`Microsoft.Network/publicIPAddresses`): what the network RP keeps and refuses.

Standard sku only (the Basic sku is retired: refused loudly as not emulated), regional tier, IPv4,
static allocation (`StandardSkuPublicIPAddressesMustBeStatic` otherwise; a request that names no
method gets Static, as the Standard sku requires); the address is allocated when the resource is
created and kept until it is deleted; `idleTimeoutInMinutes` 4-30; a `dnsSettings.domainNameLabel`
gives `{label}.{region}.cloudapp.azure.com`. A NIC IP configuration may name one public IP, which then
reports it in `ipConfiguration`; another configuration naming it is `PublicIPAddressInUse`, and an
address in use is not deleted (`PublicIPAddressInUseCannotBeDeleted`). No traffic reaches it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import TYPE_CHECKING, Any, Final

from devhost.arm import ids
from devhost.arm.errors import ArmError, invalid_parameter
from devhost.arm.ids import ResourceId
from devhost.arm.store import Doc
from devhost.arm.validation import not_emulated

if TYPE_CHECKING:
    from devhost.arm.service import LocalArm

# Addresses are handed out from a documentation-free public range that no test network uses.
_POOL: Final = ipaddress.ip_network("20.40.0.0/16")
_LABEL: Final = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")


def _allocate(arm: LocalArm, rid: ResourceId) -> str:
    taken = {
        str(doc["properties"].get("ipAddress"))
        for _, doc in arm.of_type(ids.PUBLIC_IP)
        if doc.get("properties")
    }
    hosts = list(_POOL.hosts())
    start = int(hashlib.sha256(rid.key.encode()).hexdigest(), 16) % len(hosts)
    for step in range(len(hosts)):
        candidate = str(hosts[(start + step) % len(hosts)])
        if candidate not in taken:
            return candidate
    raise ArmError(409, "PublicIpAddressesExhausted", "No public IP address is left in the local pool.")


def prepare(arm: LocalArm, rid: ResourceId, body: dict[str, Any], existing: Doc | None) -> Doc:
    props = body.get("properties") or {}
    old = (existing or {}).get("properties") or {}
    sku = dict(body.get("sku") or (existing or {}).get("sku") or {"name": "Standard"})
    sku.setdefault("name", "Standard")
    sku.setdefault("tier", "Regional")
    if sku["name"] != "Standard":
        raise not_emulated(f"sku.name {sku['name']} (retired; Standard is emulated)", ids.PUBLIC_IP)
    if sku["tier"] != "Regional":
        raise not_emulated(f"sku.tier {sku['tier']}", ids.PUBLIC_IP)
    if existing is not None and existing["sku"] != sku:
        raise ArmError(
            409, "PropertyChangeNotAllowed", "Changing property 'sku' is not allowed.", target="sku"
        )
    if str(props.get("publicIPAddressVersion") or "IPv4") != "IPv4":
        raise not_emulated("properties.publicIPAddressVersion IPv6", ids.PUBLIC_IP)
    method = str(props.get("publicIPAllocationMethod") or "Static")
    if method != "Static":
        raise ArmError(
            400,
            "StandardSkuPublicIPAddressesMustBeStatic",
            f"Standard sku publicIp {rid.arm_id} must have AllocationMethod set to Static.",
            target="properties.publicIPAllocationMethod",
        )
    timeout = props.get("idleTimeoutInMinutes", old.get("idleTimeoutInMinutes", 4))
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 4 <= timeout <= 30:
        raise invalid_parameter(
            f"idleTimeoutInMinutes {timeout!r} is out of range (4-30).", "properties.idleTimeoutInMinutes"
        )
    for key in ("ipTags", "publicIPPrefix", "ddosSettings", "natGateway", "linkedPublicIPAddress"):
        if props.get(key):
            raise not_emulated(f"properties.{key}", ids.PUBLIC_IP)
    stored: dict[str, Any] = {
        "publicIPAddressVersion": "IPv4",
        "publicIPAllocationMethod": "Static",
        "idleTimeoutInMinutes": timeout,
        "ipAddress": old.get("ipAddress") or _allocate(arm, rid),
        "resourceGuid": old.get("resourceGuid") or arm.new_guid(),
    }
    label = (props.get("dnsSettings") or {}).get("domainNameLabel")
    if label:
        if not _LABEL.match(str(label)):
            raise ArmError(
                400,
                "InvalidDomainNameLabel",
                f"The domain name label {label} is invalid. It must conform to the following regular "
                "expression: ^[a-z][a-z0-9-]{1,61}[a-z0-9]$.",
                target="properties.dnsSettings.domainNameLabel",
            )
        region = str(body.get("location") or (existing or {}).get("location") or "").replace(" ", "").lower()
        stored["dnsSettings"] = {"domainNameLabel": label, "fqdn": f"{label}.{region}.cloudapp.azure.com"}
    doc = arm.tracked_doc(rid, body, existing)
    doc["sku"] = sku
    doc["properties"] = stored
    return doc


def user(arm: LocalArm, public_ip: ResourceId, except_nic: str | None = None) -> str | None:
    """The NIC IP configuration that holds the address, if any."""
    for key, nic in arm.of_type(ids.NIC):
        if key == except_nic:
            continue
        for config in nic["properties"].get("ipConfigurations", []):
            ref = ((config.get("properties") or {}).get("publicIPAddress") or {}).get("id", "")
            if str(ref).lower() == public_ip.key:
                return str(config["id"])
    return None


def claim(arm: LocalArm, public_ip: ResourceId, nic: ResourceId, config_id: str, claimed: set[str]) -> None:
    """Refuse a NIC configuration naming an address another configuration holds."""
    holder = user(arm, public_ip, except_nic=nic.key)
    if holder is None and public_ip.key in claimed:
        holder = f"{nic.arm_id} (another of its IP configurations)"
    if holder is not None:
        raise ArmError(
            400,
            "PublicIPAddressInUse",
            f"Resource {config_id} is referencing public IP address {public_ip.arm_id} that is already "
            f"allocated to resource {holder}.",
        )
    claimed.add(public_ip.key)


def view(arm: LocalArm, rid: ResourceId, doc: Doc) -> Doc:
    out = dict(doc)
    props = dict(doc["properties"])
    holder = user(arm, rid)
    if holder is not None:
        props["ipConfiguration"] = {"id": holder}
    out["properties"] = props
    return out


def check_deletable(arm: LocalArm, rid: ResourceId, doc: Doc) -> None:
    holder = user(arm, rid)
    if holder is not None:
        raise ArmError(
            400,
            "PublicIPAddressInUseCannotBeDeleted",
            f"Public IP address {doc['id']} can not be deleted since it is still allocated to resource "
            f"{holder}. In order to delete the public IP, disassociate/detach the Public IP address from "
            "the resource.",
        )
