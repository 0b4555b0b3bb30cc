"""From a reported error to its catalog entry, and from an entry to the text an operator reads.

Matching never loses what was reported: the message is kept verbatim (it is what the product showed and
what support will search for), and an error nothing recognises lands on the generic entry with its own
code and text intact.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from shared.domain.errors import DomainError
from shared.domain.event import Event, Severity
from shared.domain.failover import FailoverStep
from shared.health.catalog.entries import ENTRIES
from shared.health.catalog.models import Catalog, CatalogEntry, EventType, RenderedError

CATALOG = Catalog(entries=ENTRIES)
# A failover's, reprotect's or planned failback's error, never a replication cycle's.
_NOT_CYCLE_ERRORS = frozenset(
    {
        EventType.FAILOVER_FAILED,
        EventType.REPROTECT_FAILED,
        EventType.PLANNED_FAILOVER_FAILED,
        EventType.MOBILITY_INSTALL_FAILED,
        EventType.MOBILITY_AGENT_NOT_RESPONDING,
    }
)


class MatchedBy(StrEnum):
    CODE = "code"
    MESSAGE = "message"
    STEP = "step"  # a failover failure, by the step that failed
    FALLBACK = "fallback"  # nothing matched: the generic entry


class CatalogMatch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    entry: CatalogEntry
    matched_by: MatchedBy
    message: str  # verbatim, as reported
    reported_code: str | None
    values: dict[str, str]

    @property
    def error_code(self) -> str:
        """The code events and current errors carry.

        The catalog's code, so that the same error is one current error whatever spelling the appliance
        used; except on the generic entry, where the appliance's own code is kept: current errors are
        deduplicated by code, and two different unknown errors must not collapse into one.
        """
        if self.entry.generic and self.reported_code:
            return self.reported_code
        return self.entry.code

    def render(self, **extra: object) -> RenderedError:
        """The entry filled with what was extracted (plus `extra`), showing the reported message verbatim."""
        rendered = render(self.entry, **{**self.values, **extra})
        return rendered.model_copy(update={"message": self.message})


def _message_match(message: str) -> tuple[CatalogEntry, dict[str, str]] | None:
    # Catalog order puts specific formats before the catch-alls that would also match them.
    for entry in CATALOG.entries:
        values = entry.extract(message)
        if values is not None:
            return entry, values
    return None


def _generic(message: str, reported_code: str | None, matched_by: MatchedBy) -> CatalogMatch:
    values = {"message": message}
    if reported_code:
        values["reportedCode"] = reported_code
    return CatalogMatch(
        entry=CATALOG.generic,
        matched_by=matched_by,
        message=message,
        reported_code=reported_code,
        values=values,
    )


def match_appliance_error(code: str | None, message: str) -> CatalogMatch:
    """The catalog entry for an error the appliance reported (a CycleFailed event's code and message).

    By code when the code names an entry (its id, name or an alias, case-insensitive), with placeholders
    taken from the message where its format matches; a catch-all named by code (the generic VMware
    internal error) gives way to a more specific entry of the same origin the message matches. Otherwise
    by the fixed message formats. Otherwise the generic entry, with the message and code verbatim.
    """
    reported = code.strip() if code is not None and code.strip() else None
    found = _message_match(message)
    if reported is not None:
        entry = CATALOG.find(reported)
        if entry is not None and entry.event_type in _NOT_CYCLE_ERRORS:
            # A failover's, reprotect's or push installation's error, or the monitor's silent agent (only
            # the agent's heartbeat may clear that): never a cycle's.
            entry = None
        if entry is not None:
            refinable = entry.umbrella or entry.generic
            if refinable and found is not None and found[0].origin is entry.origin and found[0] is not entry:
                return CatalogMatch(
                    entry=found[0],
                    matched_by=MatchedBy.MESSAGE,
                    message=message,
                    reported_code=reported,
                    values=found[1],
                )
            if entry.generic:
                return _generic(message, reported, MatchedBy.CODE)
            return CatalogMatch(
                entry=entry,
                matched_by=MatchedBy.CODE,
                message=message,
                reported_code=reported,
                values=entry.extract(message) or {},
            )
    if found is not None:
        return CatalogMatch(
            entry=found[0],
            matched_by=MatchedBy.MESSAGE,
            message=message,
            reported_code=reported,
            values=found[1],
        )
    return _generic(message, reported, MatchedBy.FALLBACK)


def match_domain_error(
    error: DomainError, *, cycle_id: str | None = None, disk_id: str | None = None
) -> CatalogMatch:
    """The catalog entry for an error the control plane raised (the apply engine's `CycleRejected`
    subclasses, `ManifestInvalid`, replica errors), by the exception's code.

    Placeholders come from the exception's single `details` record (blob, size, expected, ...), plus the
    cycle and disk the caller was applying; an exception the catalog lacks is kept under the generic entry.
    """
    entry = CATALOG.find(error.code)
    if entry is None or entry.generic:
        return _generic(error.message, error.code, MatchedBy.FALLBACK if entry is None else MatchedBy.CODE)
    values: dict[str, str] = {"message": error.message} if "message" in entry.placeholders else {}
    if len(error.details) == 1:
        values.update(_scalars(error.details[0], entry.placeholders))
    if cycle_id is not None:
        values["cycleId"] = cycle_id
    if disk_id is not None:
        values["diskId"] = disk_id
    values = {k: v for k, v in values.items() if k in entry.placeholders}
    return CatalogMatch(
        entry=entry, matched_by=MatchedBy.CODE, message=error.message, reported_code=error.code, values=values
    )


def control_plane_error(code: str, **values: object) -> CatalogMatch:
    """A match for a condition the control plane detects without an exception (e.g. CycleSequenceGap):
    the message is the entry's template filled with `values`. Raises KeyError for an unknown code."""
    entry = CATALOG[code]
    message = render(entry, **values).message
    texts = {k: str(v) for k, v in values.items() if v is not None and str(v)}
    return CatalogMatch(
        entry=entry, matched_by=MatchedBy.CODE, message=message, reported_code=None, values=texts
    )


# Why Azure refuses to create a virtual machine: no quota, a size it does not offer or has no room for,
# a policy. `QuotaExceeded` and `PolicyDisallowed` are our typed verdicts (shared.platform.arm_errors),
# the others ARM's own codes; `VmFailed` is what hydration reports when ARM gave no code.
_VM_NOT_CREATED: Final = frozenset(
    code.casefold()
    for code in (
        "QuotaExceeded",
        "PolicyDisallowed",
        "RequestDisallowedByPolicy",
        "SkuNotAvailable",
        "AllocationFailed",
        "ZonalAllocationFailed",
        "OverconstrainedAllocationRequest",
        "OverconstrainedZonalAllocationRequest",
        "VmFailed",
    )
)
# Why the network resource provider refuses a network interface; `NicFailed` is hydration's report
# when ARM gave no code.
_NIC_NOT_CREATED: Final = frozenset(
    code.casefold()
    for code in ("NicFailed", "PrivateIPAddressInUse", "PrivateIPAddressNotInSubnet", "SubnetIsFull")
)
_NIC_TYPE: Final = "microsoft.network/networkinterfaces"
_VM_TYPE: Final = "microsoft.compute/virtualmachines"
# Steps that create or start a virtual machine: whatever fails there, the VM could not be created.
_VM_STEPS: Final = frozenset({FailoverStep.CREATE_VM, FailoverStep.START_VM})


def failover_error(
    step: str,
    code: str | None,
    *,
    reason: str = "",
    resource_type: str | None = None,
    **values: object,
) -> CatalogMatch:
    """The catalog entry for a failover that failed at `step` with `code`, in Site Recovery's terms.

    `code` is the failed activity's: our typed ARM verdict (QuotaExceeded, PolicyDisallowed), ARM's own
    code (SkuNotAvailable, PrivateIPAddressInUse, ...) or hydration's (VmFailed, NicFailed, ...);
    `resource_type` is the ARM type being created when the caller knows it. In order:

    - a network interface that could not be created (by its type or its code): 28092;
    - a virtual machine Azure refused (quota, size, capacity, policy) while hydrating, creating or
      starting the VM, or any failure creating or starting the VM: 28031;
    - any other failure while hydrating: 170010;
    - anything else: MCP-4001, which names the step.

    `reason` is the reported message, kept verbatim in the event; `values` fill the entry's other
    placeholders (vmName, vmSize, resourceGroup, subnet, staticIpAddress, ...): those it does not
    declare are ignored, so a caller may pass everything it knows.
    """
    folded = (code or "").strip().casefold()
    kind = (resource_type or "").strip().casefold()
    creates_vm = step in _VM_STEPS or step == FailoverStep.HYDRATE or kind == _VM_TYPE
    matched_by = MatchedBy.CODE
    if kind == _NIC_TYPE or folded in _NIC_NOT_CREATED:
        entry = CATALOG["FailoverNicCreationFailed"]
    elif creates_vm and folded in _VM_NOT_CREATED:
        entry = CATALOG["FailoverVmCreationFailed"]
    elif step in _VM_STEPS:
        entry, matched_by = CATALOG["FailoverVmCreationFailed"], MatchedBy.STEP
    elif step == FailoverStep.HYDRATE:
        entry, matched_by = CATALOG["FailoverHydrationFailed"], MatchedBy.STEP
    else:
        entry, matched_by = CATALOG["FailoverStepFailed"], MatchedBy.STEP
    known = {"step": step, "reason": reason, **values}
    texts = {
        k: str(v) for k, v in known.items() if k in entry.placeholders and v is not None and str(v).strip()
    }
    return CatalogMatch(
        entry=entry,
        matched_by=matched_by,
        message=render(entry, **texts).message,
        reported_code=code.strip() if code and code.strip() else None,
        values=texts,
    )


def _scalars(detail: Mapping[str, Any], wanted: Mapping[str, str]) -> dict[str, str]:
    return {
        k: str(v) for k, v in detail.items() if k in wanted and isinstance(v, str | int | float) and str(v)
    }


class _Lenient(string.Formatter):
    """str.format that shows a missing placeholder as <name> instead of raising KeyError: an event with
    a visible gap is better than no event, and <name> reads as "fill this in" in a command."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.missing: list[str] = []

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        name = str(key)
        value = self.values.get(name)
        if value:
            return value
        if name not in self.missing:
            self.missing.append(name)
        return f"<{name}>"


def render(entry: CatalogEntry, **values: object) -> RenderedError:
    """Fill the entry's message, causes and recommendations with `values`.

    A placeholder without a value renders as `<name>` and is listed in `missing`; a value for a
    placeholder the entry does not declare is a caller's typo and raises ValueError.
    """
    undeclared = sorted(set(values) - set(entry.placeholders))
    if undeclared:
        raise ValueError(
            f"{entry.name} has no placeholder {', '.join(undeclared)}; it has {', '.join(sorted(entry.placeholders))}"
        )
    texts = {k: "" if v is None else str(v) for k, v in values.items()}
    formatter = _Lenient(texts)
    return RenderedError(
        code=entry.code,
        name=entry.name,
        title=entry.title,
        severity=entry.severity,
        event_type=entry.event_type,
        message=formatter.format(entry.template),
        causes=tuple(formatter.format(line) for line in entry.causes),
        recommendations=tuple(formatter.format(line) for line in entry.recommendations),
        references=entry.references,
        missing=tuple(formatter.missing),
    )


def build_event(
    match: CatalogMatch,
    *,
    event_id: str,
    machine_id: str,
    time: datetime,
    disk_id: str | None = None,
    cycle_id: str | None = None,
    severity: Severity | None = None,
    values: Mapping[str, object] | None = None,
) -> Event:
    """The machine event for one matched error.

    `values` adds what the caller knows and the message did not say (e.g. applianceName, used in the
    recommendations). `severity` overrides the entry's when health logic decided otherwise (a CBT reset
    being repaired automatically is a Warning, not Critical).
    """
    rendered = match.render(**(values or {}))
    return Event(
        id=event_id,
        machine_id=machine_id,
        time=time,
        type=rendered.event_type.value,
        severity=severity or rendered.severity,
        message=rendered.message,
        error_code=match.error_code,
        disk_id=disk_id or match.values.get("diskId"),
        cycle_id=cycle_id or match.values.get("cycleId"),
        causes=list(rendered.causes),
        recommendations=list(rendered.recommendations),
    )


def planned_failover_error(step: str, *, reason: str, cancel: bool = False) -> CatalogMatch:
    """The catalog entry for a planned failover to on-premises that failed at `step` (it is cancelled
    automatically), or for its cancel that failed (the operator runs cancel again)."""
    entry = CATALOG["PlannedFailoverCancelFailed" if cancel else "PlannedFailoverFailed"]
    values = {"step": step, "reason": reason or "the step failed"}
    return CatalogMatch(
        entry=entry,
        matched_by=MatchedBy.STEP,
        message=render(entry, **values).message,
        reported_code=None,
        values=values,
    )


def commit_failback_error(step: str, *, reason: str, left: str) -> CatalogMatch:
    """The catalog entry for a CommitFailback job that failed at `step`; `left` says what it left."""
    entry = CATALOG["FailbackCommitFailed"]
    values = {"step": step, "reason": reason or "the step failed", "left": left}
    return CatalogMatch(
        entry=entry,
        matched_by=MatchedBy.STEP,
        message=render(entry, **values).message,
        reported_code=None,
        values=values,
    )


def forward_reprotect_error(step: str, *, reason: str) -> CatalogMatch:
    """The catalog entry for a reprotect to Azure (after a committed failback) that failed at `step`."""
    entry = CATALOG["ForwardReprotectFailed"]
    values = {"step": step, "reason": reason or "the step failed"}
    return CatalogMatch(
        entry=entry,
        matched_by=MatchedBy.STEP,
        message=render(entry, **values).message,
        reported_code=None,
        values=values,
    )


def reprotect_error(step: str, code: str | None, *, reason: str = "") -> CatalogMatch:
    """The catalog entry for reverse protection that failed at `step` with `code` (the appliance's
    answer code, or the control plane's): the reverse entry of that code, else ReprotectStepFailed."""
    entry = CATALOG.find(code.strip()) if code and code.strip() else None
    matched_by = MatchedBy.CODE
    if entry is None or entry.event_type is not EventType.REPROTECT_FAILED:
        entry, matched_by = CATALOG["ReprotectStepFailed"], MatchedBy.STEP
    values = {"step": step, "reason": reason or "the step failed"}
    return CatalogMatch(
        entry=entry,
        matched_by=matched_by,
        message=render(entry, **values).message,
        reported_code=code,
        values=values,
    )
