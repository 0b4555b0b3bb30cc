"""Target settings for a replicating machine, validated up front so enabling replication fails early.

Naming rules are Azure's (Microsoft.Compute/virtualMachines, resource groups, virtual networks).
Checks that need the machine (OS type for the VM-name length, disk sizes) are in
`validate_for_machine`; everything else is on the model.
"""

from __future__ import annotations

import re
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from shared.domain.errors import FieldProblem, FieldValueError
from shared.domain.inventory import MachineInventory, OsType
from shared.domain.wire import RequestModel

GIB = 1024**3
TIB = 1024**4
MAX_OS_DISK_BYTES = 4 * TIB  # Azure OS disks: 4 TiB
MAX_DATA_DISK_BYTES = 32 * TIB  # Azure managed data disks: 32 TiB
MAX_OS_DISK_BYTES_BIOS = 2 * TIB  # a BIOS (Gen1, MBR) boot disk cannot address more than 2 TiB

_RG_NAME = re.compile(r"^[-\w._()]{1,90}$")
_VNET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}[A-Za-z0-9_]$|^[A-Za-z0-9]$")
_SUBNET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,78}[A-Za-z0-9_]$|^[A-Za-z0-9]$")
_VNET_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-\w._()]{1,90}"
    r"/providers/Microsoft\.Network/virtualNetworks/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    re.IGNORECASE,
)
# Standard_D4s_v3, Standard_E8-4ds_v5, Standard_DS2_v2, Standard_M128ms, Basic_A1 ...
_VM_SIZE = re.compile(r"^(Standard|Basic)_([A-Z]+)(\d+)(-\d+)?([a-z]*)(_[A-Za-z0-9]+)*$")
_VM_NAME_FORBIDDEN = set("~!@#$%^&*()=+_[]{}\\|;:'\",<>/? ")


class DiskType(StrEnum):
    STANDARD_LRS = "Standard_LRS"
    STANDARDSSD_LRS = "StandardSSD_LRS"
    STANDARDSSD_ZRS = "StandardSSD_ZRS"
    PREMIUM_LRS = "Premium_LRS"
    PREMIUM_ZRS = "Premium_ZRS"

    @property
    def is_premium(self) -> bool:
        return self.value.startswith("Premium")


def vm_size_supports_premium(vm_size: str) -> bool:
    """Premium storage needs an 's' size (D4s_v3, E8ds_v5) or a DS/GS/M/L-series size."""
    match = _VM_SIZE.fullmatch(vm_size)
    if not match or match.group(1) == "Basic":
        return False
    family, features = match.group(2), match.group(5)
    return "s" in features or family in {"DS", "GS", "FS", "M", "L"}


def vm_name_problem(name: str, os_type: OsType | None) -> str | None:
    """What is wrong with `name` as an Azure VM name for this OS, or None if it is fine."""
    limit = 15 if os_type is OsType.WINDOWS else 64
    if not 1 <= len(name) <= limit:
        what = "Windows" if os_type is OsType.WINDOWS else "Linux"
        return f"must be 1-{limit} characters for a {what} VM; '{name}' has {len(name)}"
    bad = sorted({c for c in name if c in _VM_NAME_FORBIDDEN or not c.isprintable()})
    if bad:
        return f"contains characters Azure VM names cannot use: {' '.join(repr(c) for c in bad)}"
    if os_type is OsType.WINDOWS and "." in name:
        return "cannot contain '.' for a Windows VM"
    if name.endswith(("-", ".")):
        return "cannot end with '-' or '.'"
    if os_type is OsType.WINDOWS and name.isdigit():
        return "cannot be entirely numeric for a Windows VM"
    return None


def check_resource_group(value: str) -> str:
    if not _RG_NAME.fullmatch(value) or value.endswith("."):
        raise ValueError("must be 1-90 letters, digits, '_', '-', '.', '(' or ')' and cannot end with '.'")
    return value


def check_virtual_network(value: str) -> str:
    if value.startswith("/"):
        if not _VNET_ID.fullmatch(value):
            raise ValueError(
                "is not a VNet resource id: expected /subscriptions/<guid>/resourceGroups/<rg>"
                "/providers/Microsoft.Network/virtualNetworks/<name>"
            )
    elif not _VNET_NAME.fullmatch(value):
        raise ValueError(
            "must be a VNet resource id or a VNet name of 2-64 letters, digits, '_', '.', '-' "
            "starting with a letter or digit and ending with a letter, digit or '_'"
        )
    return value


def check_subnet(value: str) -> str:
    if not _SUBNET_NAME.fullmatch(value):
        raise ValueError(
            "must be a subnet name of 1-80 letters, digits, '_', '.', '-' "
            "starting with a letter or digit and ending with a letter, digit or '_'"
        )
    if value.lower() in {"gatewaysubnet", "azurefirewallsubnet", "azurebastionsubnet"}:
        raise ValueError(f"'{value}' is reserved for an Azure service; choose a workload subnet")
    return value


def check_vm_size(value: str) -> str:
    if not _VM_SIZE.fullmatch(value):
        raise ValueError(f"'{value}' is not an Azure VM size name; expected e.g. Standard_D4s_v3")
    return value


def check_vm_name_syntax(value: str) -> str:
    # The OS-specific length rule needs the machine: see vm_name_problem with its OS type.
    if problem := vm_name_problem(value, None):
        raise ValueError(problem)
    return value


def _schema_pattern(pattern: str) -> Any:
    """The pattern clients see in the OpenAPI document: ASCII only and at most as wide as the check, so
    a name that matches it is never refused for its syntax."""
    return Field(json_schema_extra={"pattern": pattern})


_RG_SCHEMA = r"[-A-Za-z0-9_.()]{0,89}[-A-Za-z0-9_()]"
_VNET_NAME_SCHEMA = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}[A-Za-z0-9_]"

# The same rules wherever these names are accepted (target settings, failover settings).
ResourceGroupName = Annotated[str, AfterValidator(check_resource_group), _schema_pattern(f"^{_RG_SCHEMA}$")]
VirtualNetworkRef = Annotated[
    str,
    AfterValidator(check_virtual_network),
    _schema_pattern(
        rf"^(/subscriptions/[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}"
        rf"/resourceGroups/{_RG_SCHEMA}/providers/Microsoft\.Network/virtualNetworks/{_VNET_NAME_SCHEMA}"
        rf"|{_VNET_NAME_SCHEMA})$"
    ),
]
SubnetName = Annotated[
    str,
    AfterValidator(check_subnet),
    _schema_pattern(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$"),
]
VmSize = Annotated[
    str,
    AfterValidator(check_vm_size),
    _schema_pattern(r"^(Standard|Basic)_[A-Z]+[0-9]+(-[0-9]+)?[a-z]*(_[A-Za-z0-9]+)*$"),
]
# Windows allows 15 characters and no '.': checked against the machine's OS, after the schema.
VmName = Annotated[
    str,
    AfterValidator(check_vm_name_syntax),
    _schema_pattern(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,13}[A-Za-z0-9])?$"),
]


def premium_problem(field: str, disk_type: DiskType, vm_size: str) -> FieldValueError | None:
    """A Premium disk on a VM size that cannot attach one, blamed on `field` (wire spelling)."""
    if disk_type.is_premium and not vm_size_supports_premium(vm_size):
        return FieldValueError(
            field,
            f"{field} {disk_type} needs a VM size that supports Premium storage; "
            f"{vm_size} does not: choose an 's' size (e.g. Standard_D4s_v3) or diskType StandardSSD_LRS",
        )
    return None


def static_ip_problem(
    ip: IPv4Address | None, prefix: IPv4Network | None, subnet: str
) -> FieldValueError | None:
    """A static address outside the subnet's prefix or on one of the addresses Azure reserves in it."""
    if ip is None or prefix is None:
        return None
    if ip not in prefix:
        return FieldValueError(
            "staticIpAddress",
            f"staticIpAddress {ip} is outside subnet {subnet} ({prefix}); "
            f"choose an address between {_first_usable(prefix)} and {_last_usable(prefix)}",
        )
    if ip < _first_usable(prefix) or ip > _last_usable(prefix):
        return FieldValueError(
            "staticIpAddress",
            f"staticIpAddress {ip} is reserved by Azure in {prefix} (the first four and the last "
            f"address of a subnet); choose one between {_first_usable(prefix)} and {_last_usable(prefix)}",
        )
    return None


class TargetSettings(RequestModel):
    """Where and how the machine will run in Azure (body of PUT /api/machines/{id}/replication)."""

    resource_group: ResourceGroupName = Field(description="target resource group name")
    virtual_network: VirtualNetworkRef = Field(
        description="VNet ARM id, or a VNet name in the target resource group"
    )
    subnet: SubnetName = Field(description="subnet name in the target VNet")
    subnet_address_prefix: IPv4Network | None = Field(
        default=None, description="the subnet's address prefix when known; enables static-IP checks"
    )
    test_virtual_network: VirtualNetworkRef | None = Field(
        default=None, description="isolated VNet (ARM id or name) for test migration"
    )
    vm_size: VmSize = Field(description="e.g. Standard_D4s_v3")
    disk_type: DiskType = DiskType.STANDARDSSD_LRS
    static_ip_address: IPv4Address | None = None
    target_vm_name: VmName | None = Field(default=None, description="defaults to the source machine's name")
    auto_repair_replication: bool = Field(
        default=False, description="resync automatically when changed block tracking is reset"
    )

    @model_validator(mode="after")
    def _cross_field(self) -> TargetSettings:
        problem = premium_problem("diskType", self.disk_type, self.vm_size) or static_ip_problem(
            self.static_ip_address, self.subnet_address_prefix, self.subnet
        )
        if problem is not None:
            raise problem
        return self

    def vm_name_for(self, inventory: MachineInventory) -> str:
        return self.target_vm_name or inventory.display_name

    def validate_for_machine(self, inventory: MachineInventory) -> list[FieldProblem]:
        """Problems that depend on the source machine: VM name for its OS, disk sizes Azure can hold."""
        problems: list[FieldProblem] = []
        name = self.vm_name_for(inventory)
        if problem := vm_name_problem(name, inventory.os_type):
            hint = (
                "" if self.target_vm_name else " (defaulted from the source machine's name: set targetVmName)"
            )
            problems.append(FieldProblem("targetVmName", f"{problem}{hint}"))
        for disk in inventory.disks:
            limit = MAX_DATA_DISK_BYTES
            if disk.is_os_disk:
                limit = MAX_OS_DISK_BYTES_BIOS if inventory.firmware == "BIOS" else MAX_OS_DISK_BYTES
            if disk.size_bytes > limit:
                kind = "OS" if disk.is_os_disk else "data"
                problems.append(
                    FieldProblem(
                        f"disks.{disk.id}",
                        f"{kind} disk is {disk.size_bytes / GIB:,.0f} GiB; Azure allows at most "
                        f"{limit / GIB:,.0f} GiB for it ({inventory.firmware}): shrink it before replicating",
                    )
                )
        return problems


def _first_usable(prefix: IPv4Network) -> IPv4Address:
    return prefix.network_address + 4


def _last_usable(prefix: IPv4Network) -> IPv4Address:
    return prefix.broadcast_address - 1
