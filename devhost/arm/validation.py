"""Checks every request meets before a provider handles it: names ARM validates, and the features
this endpoint does not emulate, refused loudly instead of accepted and ignored.

A property the endpoint would otherwise drop is a quiet success: the product's request passes
locally and does something else in Azure. Each one listed here is refused with 400 `NotSupported`
naming the property, so a test that needs it fails where it is used.
"""

from __future__ import annotations

from typing import Any, Final

from devhost.arm import ids
from devhost.arm.errors import ArmError

RESOURCE_GROUP_MAX: Final = 90
_RG_PUNCTUATION: Final = frozenset("-_.()")

# Top-level properties of a resource body that no type served here emulates.
_TOP_LEVEL: Final = ("zones", "extendedLocation", "plan", "identity")
# properties.* keys per type whose feature is not emulated.
_PROPERTIES: Final[dict[str, tuple[str, ...]]] = {
    ids.VIRTUAL_MACHINE: (
        "proximityPlacementGroup",
        "virtualMachineScaleSet",
        "host",
        "hostGroup",
        "capacityReservation",
        "additionalCapabilities",
        "billingProfile",
        "evictionPolicy",
        "applicationProfile",
        "platformFaultDomain",
        "scheduledEventsProfile",
    ),
    ids.DISK: (
        "diskAccessId",
        "diskEncryptionSetId",
        "securityProfile",
        "dataAccessAuthMode",
        "encryptionSettingsCollection",
    ),
    ids.VM_EXTENSION: ("protectedSettingsFromKeyVault", "provisionAfterExtensions", "suppressFailures"),
    ids.SNAPSHOT: ("diskAccessId", "securityProfile", "dataAccessAuthMode", "encryptionSettingsCollection"),
    ids.VIRTUAL_NETWORK: (
        "ddosProtectionPlan",
        "enableDdosProtection",
        "dhcpOptions",
        "virtualNetworkPeerings",
        "encryption",
    ),
    ids.SUBNET: (
        "serviceEndpointPolicies",
        "ipAllocations",
        "applicationGatewayIPConfigurations",
    ),
    ids.NIC: ("dnsSettings", "workloadType", "privateLinkService"),
}
# properties.ipConfigurations[*].properties keys of a NIC that reference things not served here.
_NIC_IP_CONFIG: Final = (
    "loadBalancerBackendAddressPools",
    "loadBalancerInboundNatRules",
    "applicationGatewayBackendAddressPools",
    "applicationSecurityGroups",
    "gatewayLoadBalancer",
    "virtualNetworkTaps",
)


def _is_set(value: Any) -> bool:
    """Given with some effect: `{"dnsServers": []}` or `false` asks for nothing, `{"id": ...}` does."""
    if isinstance(value, dict):
        return any(_is_set(v) for v in value.values())
    if isinstance(value, list):
        return any(_is_set(v) for v in value)
    return bool(value)


def not_emulated(feature: str, resource_type: str) -> ArmError:
    return ArmError(
        400,
        "NotSupported",
        f"The local ARM endpoint does not emulate '{feature}' on {resource_type}; it refuses it rather "
        "than ignore it (see docs/local-arm.md).",
        target=feature,
    )


def check_resource_group_name(name: str) -> None:
    """ARM's rule: 1-90 letters, digits, '-', '_', '.', '(', ')', not ending with a period."""
    invalid = sorted({c for c in name if not (c.isalnum() or c in _RG_PUNCTUATION)})
    if invalid:
        raise ArmError(
            400,
            "InvalidResourceGroup",
            f"The provided resource group name '{name}' has these invalid characters: '{''.join(invalid)}'. "
            "The name can only be a letter, digit, '-', '.', '(', ')' or '_'.",
        )
    if not name or len(name) > RESOURCE_GROUP_MAX or name.endswith("."):
        raise ArmError(
            400,
            "InvalidResourceGroup",
            f"The provided resource group name '{name}' is invalid: it must be 1 to {RESOURCE_GROUP_MAX} "
            "characters long and cannot end with a period.",
        )


def refuse_unemulated(resource_type: str, body: dict[str, Any]) -> None:
    for key in _TOP_LEVEL:
        if _is_set(body.get(key)):
            raise not_emulated(key, resource_type)
    props = body.get("properties")
    if not isinstance(props, dict):
        return
    for key in _PROPERTIES.get(resource_type, ()):
        if _is_set(props.get(key)):
            raise not_emulated(f"properties.{key}", resource_type)
    if resource_type == ids.DISK:
        encryption = props.get("encryption") or {}
        if isinstance(encryption, dict) and (
            encryption.get("diskEncryptionSetId")
            or encryption.get("type", "EncryptionAtRestWithPlatformKey") != "EncryptionAtRestWithPlatformKey"
        ):
            raise not_emulated("properties.encryption", resource_type)
        if int(props.get("maxShares") or 1) > 1:
            raise not_emulated("properties.maxShares", resource_type)
    if resource_type == ids.VIRTUAL_MACHINE:
        _refuse_vm_parts(props)
    if resource_type == ids.NIC:
        for index, config in enumerate(props.get("ipConfigurations") or []):
            cprops = (config or {}).get("properties") or {}
            for key in _NIC_IP_CONFIG:
                if _is_set(cprops.get(key)):
                    raise not_emulated(
                        f"properties.ipConfigurations[{index}].properties.{key}", resource_type
                    )
            if str(cprops.get("privateIPAddressVersion") or "IPv4") != "IPv4":
                raise not_emulated(
                    f"properties.ipConfigurations[{index}].properties.privateIPAddressVersion", resource_type
                )


def _refuse_vm_parts(props: dict[str, Any]) -> None:
    storage = props.get("storageProfile") or {}
    if str(storage.get("diskControllerType") or "SCSI").upper() != "SCSI":
        # NVMe changes the disks' device names in the guest, which the Custom Script run here does not.
        raise not_emulated("properties.storageProfile.diskControllerType", ids.VIRTUAL_MACHINE)
    if storage.get("alignRegionalDisksToVMZone"):
        raise not_emulated("properties.storageProfile.alignRegionalDisksToVMZone", ids.VIRTUAL_MACHINE)
    os_disk = storage.get("osDisk") or {}
    for key in ("encryptionSettings", "vhd", "image"):
        if os_disk.get(key):
            raise not_emulated(f"properties.storageProfile.osDisk.{key}", ids.VIRTUAL_MACHINE)
    disks = [("osDisk", os_disk)] + [
        (f"dataDisks[{i}]", d or {}) for i, d in enumerate(storage.get("dataDisks") or [])
    ]
    for where, disk in disks:
        managed = disk.get("managedDisk") or {}
        for key in ("diskEncryptionSet", "securityProfile"):
            if managed.get(key):
                raise not_emulated(
                    f"properties.storageProfile.{where}.managedDisk.{key}", ids.VIRTUAL_MACHINE
                )
        if disk.get("vhd") or disk.get("image"):
            raise not_emulated(f"properties.storageProfile.{where}.vhd", ids.VIRTUAL_MACHINE)
        if disk.get("writeAcceleratorEnabled"):
            raise not_emulated(
                f"properties.storageProfile.{where}.writeAcceleratorEnabled", ids.VIRTUAL_MACHINE
            )
    if (props.get("networkProfile") or {}).get("networkInterfaceConfigurations"):
        raise not_emulated("properties.networkProfile.networkInterfaceConfigurations", ids.VIRTUAL_MACHINE)
