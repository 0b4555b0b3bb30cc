"""Typed errors for Azure Resource Manager calls: what the orchestrations decide on.

ARM answers failures in the OData shape `{"error": {"code", "message", "target", "details",
"additionalInfo"}}`, synchronously (the PUT itself) or in the async operation's status. azure-core turns
both into `HttpResponseError` with `.error` parsed; `translate_arm_error` maps that onto the few cases
the flows handle differently:

- `PolicyDisallowed` (403 RequestDisallowedByPolicy): a policy forbids the resource; hydration falls
  back to the target VNet/subnet instead of creating its own network artefacts.
- `QuotaExceeded` (OperationNotAllowed "... exceeding quota limits of Core ..."): the operator must
  raise the quota or pick another size; retrying does not help.
- `ArmConflict` (409, and the network RP's in-use 400s such as NicInUse): the resource's state does not
  allow the call now (attached, in use, another operation running).
- `ArmNotFound` (404).
- `ExtensionFailed`: a Custom Script Extension run failed; carries the script's output tails.
- `ArmRequestFailed`: anything else (bad request, 5xx after retries), with ARM's code.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from azure.core.exceptions import HttpResponseError

from shared.domain.errors import Conflict, DomainError, Forbidden, NotFound

_QUOTA_TEXT: Final = re.compile(r"quota", re.IGNORECASE)
# The network RP reports "in use" dependencies as 400s; for the flows they are conflicts of state.
_IN_USE_CODES: Final = frozenset(
    {
        "NicInUse",
        "InUseSubnetCannotBeDeleted",
        "InUseNetworkSecurityGroupCannotBeDeleted",
        "AnotherOperationInProgress",
        "RetryableErrorDueToAnotherOperation",
        "OperationNotAllowed",
        "Conflict",
        "PropertyChangeNotAllowed",
        "InvalidResourceLocation",
    }
)


class ArmError(DomainError):
    """A failed ARM call: ARM's error code, HTTP status and the operation that failed."""

    code = "ArmRequestFailed"

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        arm_code: str | None = None,
        status_code: int | None = None,
        target: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, details=details or [])
        self.operation = operation
        self.arm_code = arm_code
        self.status_code = status_code
        self.target = target


class ArmRequestFailed(ArmError):
    code = "ArmRequestFailed"


class ArmNotFound(ArmError, NotFound):
    code = "ArmNotFound"


class ArmConflict(ArmError, Conflict):
    code = "ArmConflict"


class QuotaExceeded(ArmError, Conflict):
    code = "QuotaExceeded"


class PolicyDisallowed(ArmError, Forbidden):
    """A policy denied the request; `policy_assignments`/`policy_definitions` name what denied it."""

    code = "PolicyDisallowed"

    def __init__(
        self, message: str, *, policy_assignments: list[str], policy_definitions: list[str], **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.policy_assignments = policy_assignments
        self.policy_definitions = policy_definitions


class ExtensionFailed(ArmError):
    """The Custom Script Extension's command failed; the tails are the last 4 KiB the handler reports."""

    code = "ExtensionFailed"

    def __init__(
        self, message: str, *, stdout_tail: str, stderr_tail: str, exit_status: int | None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.stdout_tail = stdout_tail
        self.stderr_tail = stderr_tail
        self.exit_status = exit_status


def _error_body(exc: HttpResponseError) -> dict[str, Any]:
    """The `error` object of the response, read from the raw body (it keeps additionalInfo)."""
    response = exc.response
    if response is not None:
        try:
            body = json.loads(response.text())
        except (ValueError, TypeError):
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            found: dict[str, Any] = body["error"]
            return found
    error = exc.error
    if error is not None:
        return {"code": error.code, "message": error.message, "target": getattr(error, "target", None)}
    return {}


def translate_arm_error(exc: HttpResponseError, *, operation: str) -> ArmError:
    """The typed error for a failed ARM call (sync answer or async operation)."""
    error = _error_body(exc)
    code = str(error.get("code") or (exc.error.code if exc.error else "") or "")
    message = str(error.get("message") or exc.message or str(exc))
    status = exc.status_code
    kwargs: dict[str, Any] = {
        "operation": operation,
        "arm_code": code or None,
        "status_code": status,
        "target": error.get("target"),
    }
    text = f"{operation}: {code or status}: {message}"
    if code == "RequestDisallowedByPolicy":
        assignments, definitions = [], []
        for info in error.get("additionalInfo") or []:
            if isinstance(info, dict) and info.get("type") == "PolicyViolation":
                details = info.get("info") or {}
                if details.get("policyAssignmentId"):
                    assignments.append(str(details["policyAssignmentId"]))
                if details.get("policyDefinitionId"):
                    definitions.append(str(details["policyDefinitionId"]))
        return PolicyDisallowed(
            text, policy_assignments=assignments, policy_definitions=definitions, **kwargs
        )
    if code in ("OperationNotAllowed", "QuotaExceeded") and _QUOTA_TEXT.search(message):
        return QuotaExceeded(text, **kwargs)
    if status == 404 or code in (
        "ResourceNotFound",
        "NotFound",
        "ResourceGroupNotFound",
        "ParentResourceNotFound",
    ):
        return ArmNotFound(text, **kwargs)
    if status == 409 or code in _IN_USE_CODES:
        return ArmConflict(text, **kwargs)
    return ArmRequestFailed(text, **kwargs)
