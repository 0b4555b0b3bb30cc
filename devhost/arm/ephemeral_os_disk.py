"""Ephemeral OS disks (`osDisk.diffDiskSettings`): an OS disk on the host's local storage instead of a
managed disk.

Azure's rules: `option: Local`, placed on the cache disk (default) or the resource disk (`NvmeDisk`
needs sizes this endpoint does not list: refused as not emulated); only `FromImage` OS disks, with
`ReadOnly` caching; only sizes that support ephemeral OS disks (premium storage sizes of the SKU
table with local storage); the OS disk (the image's size, or a larger `diskSizeGB`) must fit the
placement's local storage, the size's cache (`CachedDiskBytes`) or resource disk
(`MaxResourceVolumeMB`), else 400 `NotSupported` in Azure's words ("OS disk of Ephemeral VM with size
greater than 43 GB is not allowed for VM size Standard_DS1_v2 when the DiffDiskPlacement is
CacheDisk."); no managed disk resource exists for it, it is deleted with the VM, and the VM cannot be
deallocated (its disk would be lost), only stopped.
"""

from __future__ import annotations

from typing import Any, Final

from devhost.arm import ids
from devhost.arm.errors import ArmError, invalid_parameter
from devhost.arm.validation import not_emulated

PLACEMENTS: Final = ("CacheDisk", "ResourceDisk")
TARGET: Final = "properties.storageProfile.osDisk.diffDiskSettings"


def settle(size: str, os_disk: dict[str, Any], disk_gb: int) -> dict[str, str] | None:
    """The stored `diffDiskSettings` of a FromImage OS disk of `disk_gb`, None for a managed one, or a
    refusal."""
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
    sku = _sku(size)
    if sku is None or not sku.ephemeral_placements():
        raise invalid_parameter(
            f"The VM size {size} does not support ephemeral OS disks (or is not listed here).", TARGET
        )
    capacity = sku.placement_gib(placement)
    if disk_gb > capacity:
        # Azure's own refusal, word for word; a placement the size lacks has a capacity of 0 GB.
        raise ArmError(
            400,
            "NotSupported",
            f"OS disk of Ephemeral VM with size greater than {capacity} GB is not allowed for VM size "
            f"{sku.name} when the DiffDiskPlacement is {placement}.",
            target=f"{TARGET}.placement",
        )
    return {"option": "Local", "placement": placement}


def _sku(size: str) -> Any:
    from devhost.arm import skus  # the SKU table imports the service, which imports this module

    return next((sku for sku in skus.VM_SKUS if sku.name.lower() == size.lower()), None)


def refuse_deallocate(vm: dict[str, Any]) -> None:
    os_disk = ((vm.get("properties") or {}).get("storageProfile") or {}).get("osDisk") or {}
    if os_disk.get("diffDiskSettings"):
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Operation 'deallocate' is not supported for VM '{vm['name']}': it uses an ephemeral OS disk, "
            "which lives on the host and would be lost. Stop (power off) the VM instead.",
        )
