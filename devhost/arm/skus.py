"""`GET /subscriptions/{sub}/providers/Microsoft.Compute/skus[?$filter=location eq '<loc>']`: the Resource
SKUs list in Azure's wire shape, from a table of common sizes in the regions the local stack uses.

As Azure answers it: one `virtualMachines` entry per size and region (`locations` names that one region,
`locationInfo` its zones), capabilities as name/value strings, and `restrictions` for what this
subscription may not use: a `Location` restriction (the size is listed but cannot be deployed in that
region) or a `Zone` one (deployable, but not in those zones). The table holds one of each on purpose:
`Standard_D4as_v5` is restricted in westeurope, `Standard_B1s` in westeurope's zone 3, and
`Standard_E16s_v5` is not offered in westeurope at all. Disk SKUs (`disks`) are listed too, as Azure does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from devhost.arm.errors import ArmError
from devhost.arm.service import Answer

REGIONS: Final = ("westeurope", "northeurope", "eastus", "westus", "westus2")
ZONES: Final = ("1", "2", "3")


@dataclass(frozen=True)
class VmSku:
    name: str
    family: str
    vcpus: int
    memory_gb: float
    max_data_disks: int
    premium_io: bool = True
    temp_gib: int = 0  # the resource (temp) disk, Azure's MaxResourceVolumeMB
    cache_gib: int = 0  # the host cache, Azure's CachedDiskBytes (sizes with premium storage only)
    not_offered_in: tuple[str, ...] = ()
    restricted_in: tuple[str, ...] = ()
    zone_restricted: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def size(self) -> str:
        return self.name.split("_", 1)[1]

    def ephemeral_placements(self) -> tuple[str, ...]:
        """Where an ephemeral OS disk can live on this size: local storage of a premium storage size."""
        if not self.premium_io:
            return ()
        return tuple(p for p, gib in (("CacheDisk", self.cache_gib), ("ResourceDisk", self.temp_gib)) if gib)

    def placement_gib(self, placement: str) -> int:
        return {"CacheDisk": self.cache_gib, "ResourceDisk": self.temp_gib}.get(placement, 0)


# Temp and cache sizes (GiB) are those of Azure's size pages: v5 sizes have no local disk at all.
VM_SKUS: Final = (
    VmSku("Standard_A2_v2", "standardAv2Family", 2, 4, 4, premium_io=False, temp_gib=20),
    VmSku("Standard_D1_v2", "standardDv2Family", 1, 3.5, 4, premium_io=False, temp_gib=50),
    VmSku("Standard_D2_v2", "standardDv2Family", 2, 7, 8, premium_io=False, temp_gib=100),
    VmSku("Standard_B1s", "standardBSFamily", 1, 1, 2, temp_gib=4, zone_restricted=(("westeurope", ("3",)),)),
    VmSku("Standard_B1ms", "standardBSFamily", 1, 2, 2, temp_gib=4),
    VmSku("Standard_B2s", "standardBSFamily", 2, 4, 4, temp_gib=8),
    VmSku("Standard_B2ms", "standardBSFamily", 2, 8, 4, temp_gib=16),
    VmSku("Standard_B4ms", "standardBSFamily", 4, 16, 8, temp_gib=32),
    VmSku("Standard_B8ms", "standardBSFamily", 8, 32, 16, temp_gib=64),
    VmSku("Standard_DS1_v2", "standardDSv2Family", 1, 3.5, 4, temp_gib=7, cache_gib=43),
    VmSku("Standard_DS2_v2", "standardDSv2Family", 2, 7, 8, temp_gib=14, cache_gib=86),
    VmSku("Standard_D2_v3", "standardDv3Family", 2, 8, 4, premium_io=False, temp_gib=50),
    VmSku("Standard_D4_v3", "standardDv3Family", 4, 16, 8, premium_io=False, temp_gib=100),
    VmSku("Standard_D2s_v3", "standardDSv3Family", 2, 8, 4, temp_gib=16, cache_gib=50),
    VmSku("Standard_D4s_v3", "standardDSv3Family", 4, 16, 8, temp_gib=32, cache_gib=100),
    VmSku("Standard_D8s_v3", "standardDSv3Family", 8, 32, 16, temp_gib=64, cache_gib=200),
    VmSku("Standard_D16s_v3", "standardDSv3Family", 16, 64, 32, temp_gib=128, cache_gib=400),
    VmSku("Standard_D2s_v5", "standardDSv5Family", 2, 8, 4),
    VmSku("Standard_D4s_v5", "standardDSv5Family", 4, 16, 8),
    VmSku("Standard_D8s_v5", "standardDSv5Family", 8, 32, 16),
    VmSku("Standard_D16s_v5", "standardDSv5Family", 16, 64, 32),
    VmSku("Standard_D2as_v5", "standardDASv5Family", 2, 8, 4),
    VmSku("Standard_D4as_v5", "standardDASv5Family", 4, 16, 8, restricted_in=("westeurope",)),
    VmSku("Standard_E2s_v5", "standardESv5Family", 2, 16, 4),
    VmSku("Standard_E4s_v5", "standardESv5Family", 4, 32, 8),
    VmSku("Standard_E8s_v5", "standardESv5Family", 8, 64, 16),
    VmSku("Standard_E16s_v5", "standardESv5Family", 16, 128, 32, not_offered_in=("westeurope",)),
    VmSku("Standard_F2s_v2", "standardFSv2Family", 2, 4, 4, temp_gib=16, cache_gib=32),
    VmSku("Standard_F4s_v2", "standardFSv2Family", 4, 8, 8, temp_gib=32, cache_gib=64),
    VmSku("Standard_F8s_v2", "standardFSv2Family", 8, 16, 16, temp_gib=64, cache_gib=128),
)

# (name, tier, size, max GiB, IOPS) of a few managed disk tiers, per region like the VM sizes.
DISK_SKUS: Final = (
    ("Standard_LRS", "Standard", "S10", 128, 500),
    ("Standard_LRS", "Standard", "S30", 1024, 500),
    ("StandardSSD_LRS", "Standard", "E10", 128, 500),
    ("StandardSSD_LRS", "Standard", "E30", 1024, 500),
    ("Premium_LRS", "Premium", "P10", 128, 500),
    ("Premium_LRS", "Premium", "P30", 1024, 5000),
)

_FILTER: Final = re.compile(r"^\s*location\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)


def _restriction(kind: str, location: str, zones: tuple[str, ...] = ()) -> dict[str, Any]:
    info: dict[str, Any] = {"locations": [location]}
    if zones:
        info["zones"] = list(zones)
    return {
        "type": kind,
        "values": [location],
        "restrictionInfo": info,
        "reasonCode": "NotAvailableForSubscription",
    }


def _vm_entry(sku: VmSku, location: str) -> dict[str, Any]:
    restrictions = [_restriction("Location", location)] if location in sku.restricted_in else []
    restrictions += [
        _restriction("Zone", location, zones) for where, zones in sku.zone_restricted if where == location
    ]
    memory = f"{sku.memory_gb:g}"
    placements = sku.ephemeral_placements()
    return {
        "resourceType": "virtualMachines",
        "name": sku.name,
        "tier": "Standard",
        "size": sku.size,
        "family": sku.family,
        "locations": [location],
        "locationInfo": [{"location": location, "zones": list(ZONES), "zoneDetails": []}],
        "capabilities": [
            {"name": "MaxResourceVolumeMB", "value": str(sku.temp_gib * 1024)},
            {"name": "OSVhdSizeMB", "value": "1047552"},
            {"name": "vCPUs", "value": str(sku.vcpus)},
            {"name": "HyperVGenerations", "value": "V1,V2"},
            {"name": "MemoryGB", "value": memory},
            {"name": "MaxDataDiskCount", "value": str(sku.max_data_disks)},
            {"name": "CpuArchitectureType", "value": "x64"},
            {"name": "LowPriorityCapable", "value": "True"},
            {"name": "PremiumIO", "value": str(sku.premium_io)},
            {"name": "VMDeploymentTypes", "value": "IaaS"},
            {"name": "vCPUsAvailable", "value": str(sku.vcpus)},
            {"name": "vCPUsPerCore", "value": "1" if sku.vcpus == 1 else "2"},
            {"name": "EphemeralOSDiskSupported", "value": str(bool(placements))},
            *(
                [{"name": "SupportedEphemeralOSDiskPlacements", "value": ",".join(placements)}]
                if placements
                else []
            ),
            *([{"name": "CachedDiskBytes", "value": str(sku.cache_gib * 2**30)}] if sku.cache_gib else []),
            {"name": "AcceleratedNetworkingEnabled", "value": str(sku.vcpus >= 2)},
            {"name": "RdmaEnabled", "value": "False"},
            {"name": "MaxNetworkInterfaces", "value": str(min(8, max(2, sku.vcpus // 2)))},
        ],
        "restrictions": restrictions,
    }


def _disk_entry(name: str, tier: str, size: str, max_gib: int, iops: int, location: str) -> dict[str, Any]:
    return {
        "resourceType": "disks",
        "name": name,
        "tier": tier,
        "size": size,
        "family": name,
        "locations": [location],
        "locationInfo": [{"location": location, "zones": list(ZONES), "zoneDetails": []}],
        "capabilities": [
            {"name": "MaxSizeGiB", "value": str(max_gib)},
            {"name": "MinSizeGiB", "value": str(max_gib // 2)},
            {"name": "MaxIOps", "value": str(iops)},
            {"name": "MinIOps", "value": str(iops)},
        ],
        "restrictions": [],
    }


def entries(location: str | None = None) -> list[dict[str, Any]]:
    """Every SKU entry, or those of one region (case-insensitive, as Azure matches it)."""
    regions = [r for r in REGIONS if location is None or r == location.lower()]
    return [
        *(_vm_entry(s, r) for s in VM_SKUS for r in regions if r not in s.not_offered_in),
        *(_disk_entry(*d, r) for d in DISK_SKUS for r in regions),
    ]


def list_skus(query: dict[str, str]) -> Answer:
    text = query.get("$filter")
    location = None
    if text:
        match = _FILTER.match(text)
        if match is None:
            raise ArmError(
                400,
                "InvalidFilterInQueryString",
                f"The $filter '{text}' is not supported: the only filter is location eq '<location>'.",
            )
        location = match.group(1)
    return Answer(200, {"value": entries(location)})
