"""ARM's error responses: the OData v4 error shape every resource provider answers with.

`{"error": {"code", "message", "target", "details": [...], "additionalInfo": [{"type", "info"}]}}`
(common-types ErrorResponse). The SDKs parse `error.code`/`error.message` into `HttpResponseError.error`,
which is what the control plane's error translation reads, so the codes below are ARM's own.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response


class ArmError(Exception):
    """An ARM error answer: raised anywhere in a handler, rendered once by the app."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        details: list[dict[str, Any]] | None = None,
        additional_info: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.details = details or []
        self.additional_info = additional_info or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        if self.details:
            error["details"] = self.details
        if self.additional_info:
            error["additionalInfo"] = self.additional_info
        return {"error": error}

    def response(self) -> Response:
        return Response(
            json.dumps(self.body()),
            status_code=self.status,
            media_type="application/json; charset=utf-8",
            headers={"x-ms-failure-cause": "gateway" if self.status == 429 else "service", **self.headers},
        )


def not_found(resource_type: str, name: str, resource_group: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def resource_group_not_found(name: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")


def invalid_parameter(message: str, target: str) -> ArmError:
    return ArmError(400, "InvalidParameter", message, target=target)


def bad_request(message: str, target: str | None = None, code: str = "BadRequest") -> ArmError:
    return ArmError(400, code, message, target=target)
