"""Azure Resource Manager operations of the hydration and migration flows (see docs/arm-operations.md)."""

from shared.arm.clients import ArmClients, build_arm_clients
from shared.arm.errors import (
    ArmConflict,
    ArmError,
    ArmNotFound,
    ArmRequestFailed,
    ExtensionFailed,
    PolicyDisallowed,
    QuotaExceeded,
)
from shared.arm.tags import Purpose, ResourceTags

__all__ = [
    "ArmClients",
    "ArmConflict",
    "ArmError",
    "ArmNotFound",
    "ArmRequestFailed",
    "ExtensionFailed",
    "PolicyDisallowed",
    "Purpose",
    "QuotaExceeded",
    "ResourceTags",
    "build_arm_clients",
]
