"""What the operators' workbook queries, read from its KQL, and what the local stack's host emitted, read
from its telemetry file: so a test checks that every tile has data, not just that names match."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKBOOK = REPO_ROOT / "infra" / "workbook.json"

_TABLE = re.compile(r"\b(customMetrics|dependencies|requests|traces)\b")
_NAME = re.compile(r'\bname\s*==\s*"([\w.]+)"')
_DIMENSION = re.compile(r'customDimensions\["([\w.]+)"\]')


@dataclass(frozen=True)
class Queried:
    """One thing a workbook query reads: a metric (customMetrics) or a span (dependencies) by name, or,
    with no name, any failed record; and the custom dimensions the query filters, groups or shows by."""

    table: str
    name: str | None
    dimensions: frozenset[str]


def workbook_queries() -> list[str]:
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

    walk(json.loads(WORKBOOK.read_text()))
    return found


def queried() -> set[Queried]:
    """Each `name == "..."` filter starts a segment of its query that runs to the next one; the dimensions
    in that segment belong to that name (a query that joins two metrics reads each in its own `let`)."""
    result: dict[tuple[str, str | None], set[str]] = {}
    for query in workbook_queries():
        names = list(_NAME.finditer(query))
        if not names:
            tables = _TABLE.findall(query)
            if tables:
                result.setdefault((tables[0], None), set()).update(_DIMENSION.findall(query))
            continue
        for index, match in enumerate(names):
            end = names[index + 1].start() if index + 1 < len(names) else len(query)
            tables = _TABLE.findall(query[: match.start()])
            key = (tables[-1] if tables else "customMetrics", match.group(1))
            result.setdefault(key, set()).update(_DIMENSION.findall(query[match.start() : end]))
    return {Queried(table, name, frozenset(dimensions)) for (table, name), dimensions in result.items()}


@dataclass
class Emitted:
    """The metric data points (name -> attribute sets) and spans in a telemetry file."""

    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    spans: list[dict[str, Any]] = field(default_factory=list)

    def metric_points(self, name: str, **where: str) -> list[dict[str, Any]]:
        return [a for a in self.metrics.get(name, []) if all(a.get(k) == v for k, v in where.items())]

    def spans_named(self, name: str | None, **where: str) -> Iterator[dict[str, Any]]:
        for span in self.spans:
            attributes = span.get("attributes") or {}
            if (name is None or span.get("name") == name) and all(
                attributes.get(k) == v for k, v in where.items()
            ):
                yield span


def read_emitted(path: Path) -> Emitted:
    emitted = Emitted()
    if not path.exists():
        return emitted
    for line in path.read_text(errors="replace").splitlines():
        try:
            document = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        if "resource_metrics" in document:
            for resource in document["resource_metrics"]:
                for scope in resource["scope_metrics"]:
                    for metric in scope["metrics"]:
                        points = emitted.metrics.setdefault(metric["name"], [])
                        points += [dict(p.get("attributes") or {}) for p in metric["data"]["data_points"]]
        elif "context" in document and "name" in document:
            emitted.spans.append(document)
    return emitted


def failed(span: dict[str, Any]) -> bool:
    return bool((span.get("status") or {}).get("status_code") == "ERROR")


def missing_from(emitted: Emitted, expected: set[Queried], *, machine_id: str) -> list[str]:
    """What of `expected` this machine has not emitted with every dimension the workbook reads (empty
    when all is there; a metric without a machine dimension counts whoever emitted it). A nameless query
    (the failure list) needs a failed span with its dimensions."""
    missing = []
    for item in sorted(expected, key=lambda q: (q.table, q.name or "")):
        if item.table == "customMetrics":
            assert item.name is not None
            mine = {"migrate.machine_id": machine_id} if "migrate.machine_id" in item.dimensions else {}
            points = emitted.metric_points(item.name, **mine)
            if not any(item.dimensions <= {k for k, v in p.items() if v not in (None, "")} for p in points):
                missing.append(f"metric {item.name} with {sorted(item.dimensions)}")
            continue
        spans = [
            s
            for s in emitted.spans_named(item.name, **{"migrate.machine_id": machine_id})
            if item.name is not None or failed(s)
        ]
        if not any(item.dimensions <= set(s.get("attributes") or {}) for s in spans):
            what = f"span {item.name}" if item.name else "a failed span"
            missing.append(f"{what} with {sorted(item.dimensions)}")
    return missing


def wait_for_emitted(
    path: Path,
    expected: set[Queried],
    *,
    machine_id: str,
    timeout: float = 30,
    until: Callable[[Emitted], bool] = lambda _: True,
) -> Emitted:
    """Until the exporters (periodic) have written everything expected of this machine, and `until` holds
    (a machine shared by several tests has older points: `until` names the one this test waits for)."""

    def written() -> Emitted | None:
        emitted = read_emitted(path)
        return (
            emitted if not missing_from(emitted, expected, machine_id=machine_id) and until(emitted) else None
        )

    return wait_until(
        written,
        timeout=timeout,
        interval=0.5,
        what=f"telemetry of {machine_id}: {sorted(str(q.name) for q in expected)}",
        hint=f"see {path}",
    )


# Emitted by hydration and its ARM calls: checked by the migration end-to-end tests; everything else the
# workbook reads comes from replicating a machine (tests/e2e/test_telemetry.py).
FROM_MIGRATION = frozenset({"migrate.hydration.duration", "migrate.arm.retries"})
# Only a machine with a registered Mobility agent has it: tests/e2e_health/test_monitor.py checks it.
FROM_MOBILITY = frozenset({"migrate.mobility.agent_heartbeat_age"})
# Often enough that a test waits a second or two for a metric, not the minute a demo uses.
METRIC_EXPORT_ENV = {"TELEMETRY_CONSOLE_METRIC_INTERVAL_MS": "1000"}
