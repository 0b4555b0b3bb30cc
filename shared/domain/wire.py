"""Base models: one JSON shape (camelCase) for the HTTP API and the Cosmos documents alike.

Portal-style clients and Cosmos queries both see camelCase, so a document field and the API field
are spelled the same everywhere (`machineId`, `applianceId`); Python code keeps snake_case.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """A stored or returned record.

    Unknown fields are refused even when nested in a request body (a typo is a 400, not a silent default);
    the Cosmos adapter strips its system properties (_etag, _ts, ...) before validation.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class RequestModel(BaseModel):
    """A request body: a misspelt field is a 400, never silently dropped."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# Cosmos ids may not contain '/', '\\', '?' or '#', and they travel in URL paths: keep them plain.
RESOURCE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_ID_PATTERN = re.compile(RESOURCE_ID_PATTERN)


def is_resource_id(value: str) -> bool:
    return _ID_PATTERN.fullmatch(value) is not None


def check_resource_id(value: str) -> str:
    if not _ID_PATTERN.fullmatch(value):
        raise ValueError(
            "must be 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


ResourceId = Annotated[
    str,
    AfterValidator(check_resource_id),
    Field(json_schema_extra={"pattern": _ID_PATTERN.pattern}),
]


def json_integers(value: Any) -> Any:
    """`value` (parsed JSON) with every integral number as an int: JSON has one number type and JSON
    Schema counts 3.0 as an integer, so a strict integer field takes it as 3; 3.5 stays a float."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: json_integers(member) for key, member in value.items()}
    if isinstance(value, list):
        return [json_integers(item) for item in value]
    return value


def merge_patch(target: Any, patch: Any) -> Any:
    """`patch` applied to `target` as a JSON merge patch (RFC 7396); neither argument is changed.

    An object merges member by member, a null member removes that member, anything else (arrays
    included) replaces the target's value whole.
    """
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = merge_patch(merged.get(name), value)
    return merged
