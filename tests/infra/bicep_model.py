"""The parsed Bicep of infra/ (pycep, the parser checkov uses), with the few walks the infra tests need."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@cache
def parse(path: Path) -> dict[str, Any]:
    parsed: dict[str, Any] = BicepParser().parse(file_path=path)
    return parsed


def body(config: dict[str, Any]) -> dict[str, Any]:
    """A resource or module body without pycep's loop/condition wrappers."""
    while isinstance(config.get("config"), dict) and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


@dataclass(frozen=True)
class Resource:
    file: Path
    symbol: str
    type: str
    api_version: str
    existing: bool
    config: dict[str, Any]  # unwrapped body
    looped: bool
    conditional: bool


def resources(path: Path | None = None) -> Iterator[Resource]:
    for file in [path] if path else bicep_files():
        for symbol, resource in parse(file).get("resources", {}).items():
            raw = resource["config"]
            yield Resource(
                file=file,
                symbol=symbol,
                type=resource["type"],
                api_version=resource["api_version"],
                existing=bool(resource.get("existing")),
                config=body(raw),
                looped=raw.get("loop_type") is not None,
                conditional=raw.get("condition") is not None,
            )


def variables(path: Path) -> dict[str, Any]:
    return {name: variable["value"] for name, variable in parse(path).get("variables", {}).items()}


def function_call(node: Any, name: str) -> dict[str, Any] | None:
    """The parameters of `node` if it is a call to the Bicep function `name` (pycep's snake_case type)."""
    if isinstance(node, dict) and isinstance(node.get("function"), dict) and node["function"]["type"] == name:
        parameters: dict[str, Any] = node["function"]["parameters"]
        return parameters
    return None


def object_keys(node: Any) -> dict[str, Any]:
    """Keys of a Bicep object expression, looking through union(...) of literal objects."""
    union = function_call(node, "union")
    if union is not None:
        merged: dict[str, Any] = {}
        for argument in union.values():
            merged.update(object_keys(argument))
        return merged
    return dict(node) if isinstance(node, dict) and "function" not in node and "operator" not in node else {}


def strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


def literal(node: Any) -> Any:
    """A literal value as Python: pycep writes negative numbers as a unary minus over the magnitude."""
    if (
        isinstance(node, dict)
        and isinstance(node.get("operator"), dict)
        and node["operator"]["type"] == "minus"
    ):
        operands = node["operator"]["operands"]
        if set(operands) == {"integer_value"}:
            return -int(operands["integer_value"])
    if isinstance(node, dict):
        return {key: literal(value) for key, value in node.items()}
    if isinstance(node, list):
        return [literal(value) for value in node]
    return node
