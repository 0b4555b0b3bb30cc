"""A managed disk's performance settings as the disk RP keeps them: the Premium SSD performance tier
and on-demand bursting.

Azure's rules (the "performance tiers" and "disk bursting" pages of the managed disks documentation):
a Premium SSD has a baseline tier set by its size (P10 for up to 128 GiB, P30 for up to 1 TiB...);
its tier may be raised above the baseline and lowered back to it, never below it; growing the disk
past its tier's size raises the tier with it. Other disk types have no tier to set. On-demand
bursting is for Premium SSDs larger than 512 GiB only. Performance itself is not emulated: only what
the RP accepts, refuses and returns.
"""

from __future__ import annotations

import math
from typing import Any, Final

from devhost.arm.disks import GIB
from devhost.arm.errors import invalid_parameter

# Premium SSD tiers and the largest size in GiB each covers.
PREMIUM_TIERS: Final = (
    ("P1", 4),
    ("P2", 8),
    ("P3", 16),
    ("P4", 32),
    ("P6", 64),
    ("P10", 128),
    ("P15", 256),
    ("P20", 512),
    ("P30", 1024),
    ("P40", 2048),
    ("P50", 4096),
    ("P60", 8192),
    ("P70", 16384),
    ("P80", 32767),
)
TIERED_SKUS: Final = frozenset({"Premium_LRS", "Premium_ZRS"})
BURSTING_MIN_GIB: Final = 513


def baseline_tier(size_bytes: int) -> str:
    size_gib = math.ceil(size_bytes / GIB)
    for name, largest in PREMIUM_TIERS:
        if size_gib <= largest:
            return name
    return PREMIUM_TIERS[-1][0]


def _rank(tier: str) -> int:
    return [name for name, _ in PREMIUM_TIERS].index(tier)


def settle(properties: dict[str, Any], sku_name: str, asked: dict[str, Any]) -> None:
    """Set `tier` and `burstingEnabled` in the stored `properties` (size and sku already final) from
    what the request `asked`, or refuse the request."""
    size = int(properties["diskSizeBytes"])
    wanted_tier = asked.get("tier")
    if sku_name not in TIERED_SKUS:
        if wanted_tier is not None:
            raise invalid_parameter(
                f"Performance tier '{wanted_tier}' cannot be set on a {sku_name} disk: performance "
                "tiers apply to Premium SSD disks (Premium_LRS, Premium_ZRS) only.",
                "tier",
            )
        properties.pop("tier", None)
    else:
        baseline = baseline_tier(size)
        current = properties.get("tier")
        if wanted_tier == current:
            wanted_tier = None  # a PATCH arrives merged with the stored disk: its tier is not a request
        if wanted_tier is not None:
            names = [name for name, _ in PREMIUM_TIERS]
            if wanted_tier not in names:
                raise invalid_parameter(
                    f"Performance tier '{wanted_tier}' is not a Premium SSD tier ({', '.join(names)}).",
                    "tier",
                )
            if _rank(str(wanted_tier)) < _rank(baseline):
                raise invalid_parameter(
                    f"Performance tier '{wanted_tier}' is below the baseline tier {baseline} of a "
                    f"{math.ceil(size / GIB)} GiB disk; a disk's tier can be raised above its baseline "
                    "and lowered back to it, never below it.",
                    "tier",
                )
            properties["tier"] = wanted_tier
        elif current is None or _rank(str(current)) < _rank(baseline):
            properties["tier"] = baseline  # a new disk, or one grown past its tier
    bursting = asked.get("burstingEnabled")
    if bursting is not None:
        properties["burstingEnabled"] = bool(bursting)
    too_small = math.ceil(size / GIB) < BURSTING_MIN_GIB
    if properties.get("burstingEnabled") and (sku_name not in TIERED_SKUS or too_small):
        raise invalid_parameter(
            f"On-demand bursting is available for Premium SSD disks larger than 512 GiB only; this "
            f"disk is a {math.ceil(size / GIB)} GiB {sku_name} disk.",
            "burstingEnabled",
        )
