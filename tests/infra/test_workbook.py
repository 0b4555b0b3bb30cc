"""The workbook queries the metrics shared/platform/telemetry.py emits, and the Bicep deploys it."""

from __future__ import annotations

import json
import re

from shared.platform.telemetry import METRIC_NAMES
from tests.infra.bicep_model import INFRA, resources

WORKBOOK = json.loads((INFRA / "workbook.json").read_text())


def queries() -> list[str]:
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            query = node.get("query")
            if isinstance(query, str):
                found.append(query)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(WORKBOOK)
    return found


def test_workbook_is_a_notebook_with_queries() -> None:
    assert WORKBOOK["version"] == "Notebook/1.0"
    assert len(queries()) >= 8


def test_every_metric_queried_exists_and_every_metric_is_shown() -> None:
    referenced = {name for query in queries() for name in re.findall(r'name == "([\w.]+)"', query)}
    metrics = {name for name in referenced if name.startswith("migrate.")}
    assert metrics - set(METRIC_NAMES) == set(), "workbook queries metrics telemetry never emits"
    assert set(METRIC_NAMES) - metrics == set(), "every metric deserves a tile"


def test_every_parameter_used_is_declared() -> None:
    declared = {
        parameter["name"]
        for item in WORKBOOK["items"]
        if item["type"] == 9
        for parameter in item["content"]["parameters"]
    }
    used = {name for query in queries() for name in re.findall(r"\{(\w+)\}", query)}
    assert used <= declared, used - declared


def test_workbook_is_deployed_from_this_file() -> None:
    (workbook,) = [r for r in resources() if r.type == "Microsoft.Insights/workbooks"]
    text = workbook.file.read_text()
    assert "loadJsonContent('../workbook.json')" in text
    assert workbook.config["kind"] == "shared"
