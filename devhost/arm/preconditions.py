"""ARM `If-Match` / `If-None-Match` on writes: honoured where the resource provider's specification
declares them, refused loudly everywhere else.

ComputeRP declares both headers on a virtual machine's create-or-update (PUT) and update (PATCH)
(since 2023-09-01; `etag` is returned on the VM, a counter of its model's versions, `"1"` at
creation). The disk RP, the network RP's VNets, subnets, NSGs, NICs and public IPs, VM extensions,
availability sets, VM DELETE and the POST actions declare neither: a client sending one expects a
precondition that nothing checks, so the endpoint refuses the header (400 `NotSupported` naming it)
instead of ignoring it.

On a VM, as ComputeRP answers: `If-Match: <etag>` with another etag, or `If-Match: *` on a VM that
does not exist, is 412 `PreconditionFailed`; `If-None-Match: *` on a VM that exists is 412 too (it
allows creation only); another `If-None-Match` value is a 400 (the specification allows only `*`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from devhost.arm import ids
from devhost.arm.errors import ArmError
from devhost.arm.store import Doc

VERSION: Final = "_etag"  # the VM's model version, stored on the VM


@dataclass(frozen=True)
class Conditions:
    if_match: str | None = None
    if_none_match: str | None = None

    def __bool__(self) -> bool:
        return self.if_match is not None or self.if_none_match is not None


def etag_of(doc: Doc) -> str | None:
    version = doc.get(VERSION)
    return f'"{version}"' if version else None


def _bare(tag: str) -> str:
    text = tag.strip()
    if text.startswith("W/"):
        text = text[2:]
    return text.strip('"')


def refuse_undeclared(conditions: Conditions, method: str, resource_type: str) -> None:
    """Writes on anything but a VM's PUT/PATCH: the specification has no precondition to honour."""
    if not conditions or method not in ("PUT", "PATCH", "DELETE", "POST"):
        return
    if resource_type == ids.VIRTUAL_MACHINE and method in ("PUT", "PATCH"):
        return
    header = "If-Match" if conditions.if_match is not None else "If-None-Match"
    raise ArmError(
        400,
        "NotSupported",
        f"The local ARM endpoint does not emulate the '{header}' header on {method} of {resource_type}: the "
        "resource provider's specification declares no precondition for this operation, so the endpoint "
        "refuses the header rather than ignore it.",
        target=header,
    )


def check_vm(conditions: Conditions, name: str, existing: Doc | None) -> None:
    """A VM PUT/PATCH's preconditions against the VM as it is now (None: it does not exist)."""
    if conditions.if_none_match is not None:
        if conditions.if_none_match.strip() != "*":
            raise ArmError(
                400,
                "InvalidParameter",
                f"The value '{conditions.if_none_match}' of the If-None-Match header is not supported: only '*' "
                "(create the virtual machine only if it does not exist) is.",
                target="If-None-Match",
            )
        if existing is not None:
            raise ArmError(
                412,
                "PreconditionFailed",
                f"The virtual machine '{name}' already exists, and the If-None-Match header '*' allows only "
                "its creation.",
            )
    if conditions.if_match is not None:
        wanted = conditions.if_match.strip()
        if existing is None:
            raise ArmError(
                412,
                "PreconditionFailed",
                f"Etag provided in if-match header {wanted} does not match: the virtual machine '{name}' does "
                "not exist.",
            )
        current = etag_of(existing)
        if wanted != "*" and (current is None or _bare(wanted) != _bare(current)):
            raise ArmError(
                412,
                "PreconditionFailed",
                f"Etag provided in if-match header {wanted} does not match etag {current} of resource.",
            )
