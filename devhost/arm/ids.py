"""Resource ids: parsing request paths into what they address, case-insensitively as ARM does.

ARM treats every segment of a resource id except the names' original spelling as case-insensitive
(the compute SDK writes `resourceGroups`, the resource SDK `resourcegroups`). The store keys
resources by the lower-cased id and keeps the spelling of the first PUT for responses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Canonical spellings of the types the endpoint serves: namespace/type[/child type].
RESOURCE_GROUP: Final = "Microsoft.Resources/resourceGroups"
VIRTUAL_NETWORK: Final = "Microsoft.Network/virtualNetworks"
SUBNET: Final = "Microsoft.Network/virtualNetworks/subnets"
NSG: Final = "Microsoft.Network/networkSecurityGroups"
SECURITY_RULE: Final = "Microsoft.Network/networkSecurityGroups/securityRules"
NIC: Final = "Microsoft.Network/networkInterfaces"
PUBLIC_IP: Final = "Microsoft.Network/publicIPAddresses"
VIRTUAL_MACHINE: Final = "Microsoft.Compute/virtualMachines"
VM_EXTENSION: Final = "Microsoft.Compute/virtualMachines/extensions"
DISK: Final = "Microsoft.Compute/disks"
SNAPSHOT: Final = "Microsoft.Compute/snapshots"
AVAILABILITY_SET: Final = "Microsoft.Compute/availabilitySets"

KNOWN_TYPES: Final = (
    VIRTUAL_NETWORK,
    SUBNET,
    NSG,
    SECURITY_RULE,
    NIC,
    PUBLIC_IP,
    VIRTUAL_MACHINE,
    VM_EXTENSION,
    DISK,
    SNAPSHOT,
    AVAILABILITY_SET,
)
_CANONICAL: Final = {t.lower(): t for t in (*KNOWN_TYPES, RESOURCE_GROUP)}


def canonical_type(resource_type: str) -> str | None:
    return _CANONICAL.get(resource_type.lower())


def namespace_of(resource_type: str) -> str:
    return resource_type.split("/", 1)[0]


@dataclass(frozen=True)
class ResourceId:
    """A provider resource (top-level or child) inside a resource group."""

    subscription: str
    resource_group: str
    type: str  # canonical, e.g. Microsoft.Network/virtualNetworks/subnets
    names: tuple[str, ...]  # one per type level: ("vnet1", "default")

    @property
    def name(self) -> str:
        return self.names[-1]

    @property
    def parent(self) -> ResourceId | None:
        if len(self.names) == 1:
            return None
        return ResourceId(
            self.subscription, self.resource_group, self.type.rsplit("/", 1)[0], self.names[:-1]
        )

    @property
    def arm_id(self) -> str:
        namespace, *types = self.type.split("/")
        path = "/".join(f"{t}/{n}" for t, n in zip(types, self.names, strict=True))
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{namespace}/{path}"
        )

    @property
    def key(self) -> str:
        return self.arm_id.lower()

    def child(self, child_type: str, name: str) -> ResourceId:
        return ResourceId(
            self.subscription, self.resource_group, f"{self.type}/{child_type}", (*self.names, name)
        )


def resource_group_id(subscription: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{name}"


def parse_resource_id(arm_id: str) -> ResourceId | None:
    """Parse a full ARM id of a known type; None when it is not one (foreign, malformed or unknown type)."""
    parts = [p for p in arm_id.split("/") if p]
    if len(parts) < 8 or parts[0].lower() != "subscriptions" or parts[2].lower() != "resourcegroups":
        return None
    if parts[4].lower() != "providers":
        return None
    namespace = parts[5]
    rest = parts[6:]
    if len(rest) % 2:
        return None
    types = rest[0::2]
    names = rest[1::2]
    canonical = canonical_type("/".join([namespace, *types]))
    if canonical is None:
        return None
    return ResourceId(parts[1], parts[3], canonical, tuple(names))
