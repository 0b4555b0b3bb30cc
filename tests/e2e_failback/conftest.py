"""Fixtures for reprotect end to end: the failover's local stack, ARM clients, HTTP client and guest
image (the same fixtures, imported)."""

from __future__ import annotations

from tests.e2e_failover.conftest import (
    arm,
    arm_faults,
    client,
    guest,
    local_stack,
    module_appliance,
)

__all__ = ["arm", "arm_faults", "client", "guest", "local_stack", "module_appliance"]
