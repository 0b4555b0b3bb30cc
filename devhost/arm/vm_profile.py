"""Parts of a VM the compute RP validates and keeps with nothing to emulate behind them: the custom
vCPU settings of `hardwareProfile.vmSizeProperties` and `userData`, and what a size allows of its disks.

A size holds at most `MaxDataDiskCount` data disks (409 `OperationNotAllowed` "The maximum number of
data disks allowed to be attached to a VM of this size is N."), and premium disks only if it has
`PremiumIO` (400 `InvalidParameter` "Requested operation cannot be performed because the VM size ... does
not support the storage account type Premium_LRS of disk '...'."), both in Azure's words, checked at
creation and at every update (a resize included).

Azure's rules: `vCPUsAvailable` is between 1 and the size's vCPUs; `vCPUsPerCore` is 1 (simultaneous
multithreading off) or the size's own vCPUs per core; sizes whose capabilities are not known here
are refused loudly rather than accepted unchecked. `userData` is base64 of at most 64 KiB, kept
across updates unless replaced, and returned only when asked for (`$expand=userData`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from devhost.arm import ids
from devhost.arm.errors import ArmError, invalid_parameter
from devhost.arm.ids import ResourceId
from devhost.arm.validation import not_emulated

USER_DATA_MAX_BYTES: Final = 64 * 1024


def _size_capabilities(size: str) -> tuple[int, int] | None:
    """(vCPUs, vCPUs per core) of a size in the local SKU table."""
    from devhost.arm import skus  # the SKU table imports the service, which imports this module

    for sku in skus.VM_SKUS:
        if sku.name.lower() == size.lower():
            return sku.vcpus, 1 if sku.vcpus == 1 else 2
    return None


def check_size_offered(vm: ResourceId, size: str, location: Any) -> None:
    """A VM is made only in a size the region offers this subscription (the Resource SKUs list): a
    size listed there with a `Location` restriction, or not offered in the region, is Azure's 409
    `SkuNotAvailable`; a size or region the local table does not hold is refused as not emulated."""
    from devhost.arm import skus  # the SKU table imports the service, which imports this module

    region = str(location or "").replace(" ", "").lower()
    sku = next((s for s in skus.VM_SKUS if s.name.lower() == size.lower()), None)
    if sku is None:
        raise not_emulated(
            f"properties.hardwareProfile.vmSize {size} (not in the local SKU table)", ids.VIRTUAL_MACHINE
        )
    if region not in skus.REGIONS:
        raise not_emulated(f"location {location} (not in the local SKU table)", ids.VIRTUAL_MACHINE)
    if region in sku.not_offered_in or region in sku.restricted_in:
        raise ArmError(
            409,
            "SkuNotAvailable",
            f"The requested size for resource '{vm.arm_id}' is currently not available in location '{region}' "
            f"zones '' for subscription '{vm.subscription}'. Please try another size or deploy to a different "
            "location or zones. See https://aka.ms/azureskunotavailable for details.",
        )


def size_properties(size: str, hardware: dict[str, Any]) -> dict[str, int] | None:
    asked = hardware.get("vmSizeProperties")
    if not asked:
        return None
    known = _size_capabilities(size)
    if known is None:
        raise not_emulated(
            f"properties.hardwareProfile.vmSizeProperties for size {size}", ids.VIRTUAL_MACHINE
        )
    vcpus, per_core = known
    settled: dict[str, int] = {}
    if asked.get("vCPUsAvailable") is not None:
        available = asked["vCPUsAvailable"]
        if not isinstance(available, int) or isinstance(available, bool) or not 1 <= available <= vcpus:
            raise invalid_parameter(
                f"vCPUsAvailable {available!r} is not valid for size {size}: it must be between 1 and "
                f"the size's {vcpus} vCPUs.",
                "hardwareProfile.vmSizeProperties.vCPUsAvailable",
            )
        settled["vCPUsAvailable"] = available
    if asked.get("vCPUsPerCore") is not None:
        threads = asked["vCPUsPerCore"]
        if threads not in (1, per_core) or isinstance(threads, bool):
            raise invalid_parameter(
                f"vCPUsPerCore {threads!r} is not valid for size {size}: it must be 1 (multithreading "
                f"off) or the size's {per_core}.",
                "hardwareProfile.vmSizeProperties.vCPUsPerCore",
            )
        settled["vCPUsPerCore"] = threads
    return settled


def user_data(props: dict[str, Any], existing: dict[str, Any] | None) -> str | None:
    given = props.get("userData")
    if given is None:
        return (existing or {}).get("userData")
    if not isinstance(given, str):
        raise invalid_parameter("userData must be a base64-encoded string.", "userData")
    try:
        decoded = base64.b64decode(given, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_parameter("userData must be a base64-encoded string.", "userData") from None
    if len(decoded) > USER_DATA_MAX_BYTES:
        raise invalid_parameter(
            f"userData is {len(decoded)} bytes once decoded; at most {USER_DATA_MAX_BYTES} are allowed.",
            "userData",
        )
    return given or None


PREMIUM_ACCOUNT_TYPES: Final = ("Premium_LRS", "Premium_ZRS", "PremiumV2_LRS")


def check_disks_fit(size: str, disks: list[tuple[str, str, str]], data_disk_count: int) -> None:
    """`disks`: (target, disk name, storage account type) of the OS disk and every data disk."""
    from devhost.arm import skus  # the SKU table imports the service, which imports this module

    sku = next((s for s in skus.VM_SKUS if s.name.lower() == size.lower()), None)
    if sku is None:
        return  # refused as not emulated where the size is chosen
    if data_disk_count > sku.max_data_disks:
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"The maximum number of data disks allowed to be attached to a VM of this size is {sku.max_data_disks}.",
            target="dataDisks",
        )
    if sku.premium_io:
        return
    for target, name, account in disks:
        if account in PREMIUM_ACCOUNT_TYPES:
            raise invalid_parameter(
                f"Requested operation cannot be performed because the VM size {sku.name} does not support the "
                f"storage account type {account} of disk '{name}'. Consider updating the VM to a size that "
                "supports Premium storage.",
                target,
            )
