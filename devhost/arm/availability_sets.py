"""Availability sets (`Microsoft.Compute/availabilitySets`): what the compute RP keeps and refuses.

Synchronous like Azure's (a PUT answers 200 with the set, a DELETE 200/204: no async operation).
The rules: at most 3 fault domains and 20 update domains (defaults 2 and 5); a set's domain counts
are fixed once made; `Aligned` (managed disks) may not go back to `Classic`; a VM joins a set only
when it is created, in the same resource group and region, and a VM with managed disks only an
`Aligned` set; the set lists its VMs; a set with VMs in it cannot be deleted. Placement itself (fault
and update domains of the VMs) is not emulated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from devhost.arm import ids
from devhost.arm.errors import ArmError, invalid_parameter
from devhost.arm.ids import ResourceId, parse_resource_id
from devhost.arm.store import Doc

if TYPE_CHECKING:
    from devhost.arm.service import LocalArm

MAX_FAULT_DOMAINS: Final = 3
MAX_UPDATE_DOMAINS: Final = 20
SKUS: Final = ("Classic", "Aligned")


def _count(props: dict[str, Any], key: str, default: int, largest: int) -> int:
    value = props.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= largest:
        raise invalid_parameter(f"{key} {value!r} is out of range: it must be between 1 and {largest}.", key)
    return value


def prepare(arm: LocalArm, rid: ResourceId, body: dict[str, Any], existing: Doc | None) -> Doc:
    props = body.get("properties") or {}
    old = (existing or {}).get("properties") or {}
    sku = str(
        (body.get("sku") or {}).get("name") or ((existing or {}).get("sku") or {}).get("name") or "Classic"
    )
    if sku not in SKUS:
        raise invalid_parameter(
            f"sku.name '{sku}' is not an availability set sku ({', '.join(SKUS)}).", "sku.name"
        )
    if existing is not None and existing["sku"]["name"] == "Aligned" and sku == "Classic":
        raise ArmError(
            409,
            "PropertyChangeNotAllowed",
            "An Aligned (managed) availability set cannot be converted back to Classic.",
            target="sku.name",
        )
    faults = _count(
        props, "platformFaultDomainCount", old.get("platformFaultDomainCount", 2), MAX_FAULT_DOMAINS
    )
    updates = _count(
        props, "platformUpdateDomainCount", old.get("platformUpdateDomainCount", 5), MAX_UPDATE_DOMAINS
    )
    for key, value in (("platformFaultDomainCount", faults), ("platformUpdateDomainCount", updates)):
        if existing is not None and value != old.get(key):
            raise ArmError(
                409, "PropertyChangeNotAllowed", f"Changing property '{key}' is not allowed.", target=key
            )
    doc = arm.tracked_doc(rid, body, existing)
    doc["sku"] = {"name": sku}
    doc["properties"] = {"platformFaultDomainCount": faults, "platformUpdateDomainCount": updates}
    return doc


def members(arm: LocalArm, rid: ResourceId) -> list[str]:
    return [
        vm["id"]
        for _, vm in arm.of_type(ids.VIRTUAL_MACHINE)
        if str((vm["properties"].get("availabilitySet") or {}).get("id", "")).lower() == rid.key
    ]


def view(arm: LocalArm, rid: ResourceId, doc: Doc) -> Doc:
    out = dict(doc)
    out["properties"] = dict(doc["properties"], virtualMachines=[{"id": vm} for vm in members(arm, rid)])
    return out


def check_deletable(arm: LocalArm, rid: ResourceId) -> None:
    inside = members(arm, rid)
    if inside:
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Availability set {rid.name} cannot be deleted: virtual machines {', '.join(inside)} are in it. "
            "Delete them first.",
        )


def join(arm: LocalArm, vm: ResourceId, body: dict[str, Any], existing: Doc | None) -> dict[str, str] | None:
    """The `availabilitySet` a VM keeps: given at creation (checked), never changed afterwards."""
    given = (body.get("properties") or {}).get("availabilitySet")
    current = ((existing or {}).get("properties") or {}).get("availabilitySet")
    if existing is not None:
        given_id = str((given or {}).get("id") or "").lower() if given else None
        current_id = str((current or {}).get("id") or "").lower() if current else None
        if given is not None and given_id != current_id:
            raise ArmError(
                409,
                "PropertyChangeNotAllowed",
                "Changing property 'availabilitySet' is not allowed: a VM joins an availability set only "
                "when it is created.",
                target="availabilitySet",
            )
        return current
    if not given:
        return None
    set_id = str(given.get("id") or "")
    set_rid = parse_resource_id(set_id)
    doc = arm.store.get(set_rid.key) if set_rid and set_rid.type == ids.AVAILABILITY_SET else None
    if set_rid is None or doc is None:
        raise ArmError(
            404,
            "NotFound",
            f"Availability set {set_id} was not found.",
            target="properties.availabilitySet.id",
        )
    if set_rid.resource_group.lower() != vm.resource_group.lower():
        raise invalid_parameter(
            f"Availability set {set_rid.name} is in resource group {set_rid.resource_group}; a VM joins an "
            f"availability set of its own resource group ({vm.resource_group}).",
            "properties.availabilitySet.id",
        )
    if _region(doc.get("location")) != _region(body.get("location")):
        raise invalid_parameter(
            f"Availability set {set_rid.name} is in {doc.get('location')}; the VM is in {body.get('location')}.",
            "properties.availabilitySet.id",
        )
    if doc["sku"]["name"] != "Aligned":
        raise ArmError(
            409,
            "OperationNotAllowed",
            "Addition of a VM with managed disks to non-managed Availability Set or addition of a VM with blob "
            "based disks to managed Availability Set is not supported. Please create an Availability Set with "
            "'Aligned' SKU in order to add a VM with managed disks to it.",
            target="properties.availabilitySet.id",
        )
    return {"id": doc["id"]}


def _region(location: Any) -> str:
    return str(location or "").replace(" ", "").lower()
