"""Runtime knobs of the local ARM endpoint: the latency model and fault injection.

Both are set through the admin endpoints (`/_admin/latency`, `/_admin/faults`) while the endpoint runs,
so a test or a benchmark shapes Azure's behaviour without restarting anything.
"""

from __future__ import annotations

import math
import re
import threading
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from devhost.arm import ids

Action = Literal["put", "delete", "post", "get"]
FaultKind = Literal[
    "throttle", "conflict", "internal", "policy", "quota", "extensionFailure", "operationFailure"
]

# How long an operation stays InProgress in Azure, in seconds, before the latency scale is applied.
# Orders of magnitude observed for these resource providers: network artefacts in seconds, an Import
# in tens of seconds, a VM create in most of a minute. An extension's own figure is the handler's
# overhead (download of the handler, status reporting); the script's real run time comes on top.
DEFAULT_LATENCY: Final[dict[str, dict[str, float]]] = {
    ids.RESOURCE_GROUP: {"put": 1.0, "delete": 15.0},
    ids.VIRTUAL_NETWORK: {"put": 6.0, "delete": 10.0},
    ids.SUBNET: {"put": 4.0, "delete": 6.0},
    ids.NSG: {"put": 4.0, "delete": 6.0},
    ids.SECURITY_RULE: {"put": 3.0, "delete": 3.0},
    ids.NIC: {"put": 3.0, "delete": 5.0},
    ids.DISK: {"put": 5.0, "put:import": 20.0, "put:copy": 10.0, "delete": 5.0},
    ids.SNAPSHOT: {"put": 10.0, "delete": 5.0},
    ids.VIRTUAL_MACHINE: {
        "put": 45.0,
        "put:update": 20.0,
        "delete": 30.0,
        "post:poweroff": 20.0,
        "post:deallocate": 40.0,
        "post:start": 30.0,
    },
    ids.VM_EXTENSION: {"put": 10.0, "delete": 15.0},
}
# What an operation not in the table takes.
FALLBACK_LATENCY: Final = 5.0
# Retry-After of an async operation: ARM's guidance is 10 s to 10 min; locally it follows the time left.
MAX_RETRY_AFTER: Final = 60


class LatencyConfig(BaseModel):
    """The latency model: per-type, per-action durations (seconds) times a global scale."""

    model_config = ConfigDict(extra="forbid")

    scale: float = Field(
        default=1.0, ge=0.0, description="multiplies every duration; 0 makes operations instant"
    )
    overrides: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="resource type -> action (put, put:import, delete, post:poweroff, ...) -> seconds",
    )

    @field_validator("overrides")
    @classmethod
    def _known_types(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        fixed: dict[str, dict[str, float]] = {}
        for resource_type, actions in value.items():
            canonical = ids.canonical_type(resource_type)
            if canonical is None:
                raise ValueError(f"unknown resource type {resource_type!r}")
            if any(seconds < 0 for seconds in actions.values()):
                raise ValueError(f"negative duration for {resource_type}")
            fixed[canonical] = {a.lower(): s for a, s in actions.items()}
        return fixed

    def duration(self, resource_type: str, action: str) -> float:
        """Seconds an operation stays InProgress. `action` may be refined (`put:import`); falls back to `put`."""
        action = action.lower()
        for table in (self.overrides.get(resource_type, {}), DEFAULT_LATENCY.get(resource_type, {})):
            for candidate in (action, action.split(":", 1)[0]):
                if candidate in table:
                    return table[candidate] * self.scale
        return FALLBACK_LATENCY * self.scale


def retry_after_for(remaining: float) -> int:
    """Whole seconds a client should wait before polling again: the time left, at most a minute."""
    if remaining <= 0:
        return 0
    return min(MAX_RETRY_AFTER, math.ceil(remaining))


class FaultMatch(BaseModel):
    """Which requests a fault applies to; every field given must match (case-insensitive)."""

    model_config = ConfigDict(extra="forbid")

    method: str | None = Field(default=None, description="HTTP method: PUT, DELETE, POST, GET")
    resourceType: str | None = Field(default=None, description="e.g. Microsoft.Network/networkSecurityGroups")
    nameRegex: str | None = Field(default=None, description="searched in the resource's name")
    action: str | None = Field(default=None, description="POST action name, e.g. powerOff")

    @field_validator("nameRegex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:  # not a ValueError: pydantic would let it escape as a 500
                raise ValueError(f"nameRegex {value!r} does not compile: {exc}") from exc
        return value

    def matches(self, method: str, resource_type: str, name: str, action: str | None) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.resourceType is not None and self.resourceType.lower() != resource_type.lower():
            return False
        if self.nameRegex is not None and not re.search(self.nameRegex, name, re.IGNORECASE):
            return False
        return self.action is None or (action is not None and self.action.lower() == action.lower())


class FaultRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: FaultMatch = Field(default_factory=FaultMatch)
    fault: FaultKind
    times: int = Field(default=1, ge=1, description="how many matching requests fail; then the rule is spent")
    retryAfter: int = Field(default=1, ge=0, description="Retry-After (s) of a throttle")
    exitStatus: int = Field(
        default=1, ge=1, le=255, description="exit status of an injected extension failure"
    )
    quotaLimit: int | None = Field(default=None, ge=0, description="'Maximum allowed' cores of a quota fault")


# Faults answered at the request (the ARM front door or the RP's synchronous validation) versus those
# that surface in the async operation, as a failing extension or a failed provisioning does in Azure.
ASYNC_FAULTS: Final = frozenset({"extensionFailure", "operationFailure"})


class FaultRegistry:
    """Armed fault rules; each matching request consumes one use of the first rule that matches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[tuple[int, FaultRule, int]] = []  # (id, rule, uses left)
        self._next_id = 1

    def add(self, rule: FaultRule) -> int:
        with self._lock:
            rule_id = self._next_id
            self._next_id += 1
            self._rules.append((rule_id, rule, rule.times))
            return rule_id

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def list(self) -> list[dict[str, object]]:
        with self._lock:
            return [{"id": i, "remaining": left, **rule.model_dump()} for i, rule, left in self._rules]

    def take(
        self, method: str, resource_type: str, name: str, action: str | None, *, asynchronous: bool
    ) -> FaultRule | None:
        """The first armed rule of the given phase matching the request, with one use consumed."""
        with self._lock:
            for index, (rule_id, rule, left) in enumerate(self._rules):
                if (rule.fault in ASYNC_FAULTS) != asynchronous:
                    continue
                if not rule.match.matches(method, resource_type, name, action):
                    continue
                if left <= 1:
                    del self._rules[index]
                else:
                    self._rules[index] = (rule_id, rule, left - 1)
                return rule
        return None
