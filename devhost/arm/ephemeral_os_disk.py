"""Ephemeral OS disks (`osDisk.diffDiskSettings`): an OS disk on the host's local storage instead of a
managed disk.

Azure's rules: `option: Local`, placed on the cache disk (default) or the resource disk (`NvmeDisk`
needs sizes this endpoint does not list: refused as not emulated); only `FromImage` OS disks, with
`ReadOnly` caching; only sizes that support ephemeral OS disks (premium storage sizes of the SKU
table); no managed disk resource exists for it, it is deleted with the VM, and the VM cannot be
deallocated (its disk would be lost), only stopped. Not checked: that the OS disk fits the size's
cache or resource disk (the SKU table does not carry their sizes); docs/local-arm.md says so.
"""

from __future__ import annotations

from typing import Any, Final

from devhost.arm import ids
from devhost.arm.errors import ArmError, invalid_parameter
from devhost.arm.validation import not_emulated

PLACEMENTS: Final = ("CacheDisk", "ResourceDisk")
TARGET: Final = "properties.storageProfile.osDisk.diffDiskSettings"


def settle(size: str, os_disk: dict[str, Any]) -> dict[str, str] | None:
    """The stored `diffDiskSettings` of a FromImage OS disk, None for a managed one, or a refusal."""
    diff = os_disk.get("diffDiskSettings")
    if not diff:
        return None
    if diff.get("option") != "Local":
        raise invalid_parameter(f"diffDiskSettings.option '{diff.get('option')}' is invalid (Local).", TARGET)
    placement = str(diff.get("placement") or "CacheDisk")
    if placement == "NvmeDisk":
        raise not_emulated(f"{TARGET}.placement NvmeDisk", ids.VIRTUAL_MACHINE)
    if placement not in PLACEMENTS:
        raise invalid_parameter(
            f"diffDiskSettings.placement '{placement}' is invalid.", f"{TARGET}.placement"
        )
    caching = str(os_disk.get("caching") or "ReadOnly")
    if caching != "ReadOnly":
        raise invalid_parameter(
            f"Caching '{caching}' is not supported for an ephemeral OS disk: it must be ReadOnly.",
            "properties.storageProfile.osDisk.caching",
        )
    if not _supports_ephemeral(size):
        raise invalid_parameter(
            f"The VM size {size} does not support ephemeral OS disks (or is not listed here).", TARGET
        )
    return {"option": "Local", "placement": placement}


def _supports_ephemeral(size: str) -> bool:
    from devhost.arm import skus  # the SKU table imports the service, which imports this module

    return any(sku.name.lower() == size.lower() and sku.premium_io for sku in skus.VM_SKUS)


def refuse_deallocate(vm: dict[str, Any]) -> None:
    os_disk = ((vm.get("properties") or {}).get("storageProfile") or {}).get("osDisk") or {}
    if os_disk.get("diffDiskSettings"):
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Operation 'deallocate' is not supported for VM '{vm['name']}': it uses an ephemeral OS disk, "
            "which lives on the host and would be lost. Stop (power off) the VM instead.",
        )
