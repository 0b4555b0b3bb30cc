"""The product emits the workbook's data where it happens: a completed cycle (span, duration, bytes, RPO),
a failed one (failure count and a failed span), the health monitor (RPO of every replicating machine),
and, without Application Insights, JSON lines in the file TELEMETRY_FILE names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from shared import health
from shared.domain.cycle import CycleKind
from shared.platform import telemetry as tm
from shared.platform.repository import Repositories
from tests.unit.test_health_integration_services import NOW, complete
from tests.unit.test_health_integration_services import repos as repos
from tests.unit.test_telemetry import make_settings, points

Recorded = tuple[tm.Telemetry, InMemorySpanExporter, InMemoryMetricReader]


@pytest.fixture
def current(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorded]:
    """A private Telemetry that product code's `get_telemetry()` returns for this test."""
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    telemetry = tm.configure_telemetry(
        make_settings(), span_exporter=spans, metric_reader=reader, set_global=False
    )
    monkeypatch.setattr(tm, "_current", telemetry)
    yield telemetry, spans, reader
    telemetry.shutdown()


def attributes(point: Any) -> dict[str, Any]:
    return dict(point.attributes or {})


def test_cycle_applied_records_the_span_over_the_apply_and_the_metrics(current: Recorded) -> None:
    telemetry, spans, reader = current
    received = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    started = received + timedelta(seconds=20)
    applied = started + timedelta(seconds=40)
    telemetry.cycle_applied(
        machine_id="m-1",
        cycle_id="c-7",
        kind="delta",
        started_at=started,
        received_at=received,
        applied_at=applied,
        bytes_applied=4096,
        job_id="job-3",
    )
    (span,) = spans.get_finished_spans()
    assert span.name == tm.SPAN_APPLY_CYCLE
    assert span.start_time is not None and span.end_time is not None
    assert (span.end_time - span.start_time) / 1e9 == pytest.approx(40.0)
    assert attributes(span) == {
        "migrate.machine_id": "m-1",
        "migrate.cycle_id": "c-7",
        "migrate.job_id": "job-3",
        "migrate.cycle.kind": "delta",
        "migrate.outcome": "succeeded",
    }
    (duration,) = points(reader, tm.METRIC_CYCLE_DURATION)
    assert duration.sum == pytest.approx(40.0)
    assert attributes(duration) == {
        "migrate.machine_id": "m-1",
        "migrate.cycle.kind": "delta",
        "migrate.outcome": "succeeded",
    }
    (applied_bytes,) = points(reader, tm.METRIC_BYTES_APPLIED)
    assert applied_bytes.value == 4096
    assert attributes(applied_bytes) == {"migrate.machine_id": "m-1", "migrate.cycle.kind": "delta"}
    (rpo,) = points(reader, tm.METRIC_RPO)
    assert rpo.max == pytest.approx(60.0), "the new point's data is as old as its upload"
    assert attributes(rpo) == {"migrate.machine_id": "m-1"}


def test_cycle_failed_counts_by_code_and_leaves_a_failed_span(current: Recorded) -> None:
    telemetry, spans, reader = current
    telemetry.cycle_failed(
        machine_id="m-1",
        cycle_id="c-8",
        error_code="1011",
        message="upload to https://cache/c/d0?sv=2024&sig=abc timed out",
    )
    telemetry.cycle_failed(machine_id="m-1", error_code="")
    failed = spans.get_finished_spans()
    assert [s.name for s in failed] == [tm.SPAN_CYCLE_FAILURE] * 2
    assert failed[0].status.status_code is StatusCode.ERROR
    assert "abc" not in (failed[0].status.description or ""), "messages are redacted like logs"
    assert attributes(failed[0])["migrate.cycle_id"] == "c-8"
    assert attributes(failed[0])["migrate.error_code"] == "1011"
    counted = {attributes(p)["migrate.error_code"]: p.value for p in points(reader, tm.METRIC_CYCLE_FAILURES)}
    assert counted == {"1011": 1, tm.UNKNOWN_ERROR_CODE: 1}


def test_rpo_since_is_nothing_before_the_first_recovery_point(current: Recorded) -> None:
    telemetry, _, reader = current
    telemetry.record_rpo_since(None, now=NOW, machine_id="m-1")
    assert reader.get_metrics_data() is None, "nothing recorded at all"
    telemetry.record_rpo_since(NOW - timedelta(minutes=3), now=NOW, machine_id="m-1")
    (rpo,) = points(reader, tm.METRIC_RPO)
    assert rpo.max == pytest.approx(180.0)


def test_completing_a_cycle_emits_its_span_and_metrics(current: Recorded, repos: Repositories) -> None:
    _, spans, reader = current
    complete(repos, 2, kind=CycleKind.DELTA, minutes=10)
    (span,) = [s for s in spans.get_finished_spans() if s.name == tm.SPAN_APPLY_CYCLE]
    assert attributes(span)["migrate.cycle_id"] == "c2"
    assert attributes(span)["migrate.machine_id"] == "vm-1"
    (applied_bytes,) = points(reader, tm.METRIC_BYTES_APPLIED)
    assert (applied_bytes.value, attributes(applied_bytes)["migrate.cycle.kind"]) == (4096, "delta")
    assert len(points(reader, tm.METRIC_CYCLE_DURATION)) == 1
    assert len(points(reader, tm.METRIC_RPO)) == 1


def test_the_monitor_records_the_rpo_of_every_replicating_machine(
    current: Recorded, repos: Repositories
) -> None:
    _, _, reader = current
    complete(repos, 2, minutes=0)
    health.monitor_health(repos, now=NOW + timedelta(hours=2), settings=health.HealthSettings())
    rpos = points(reader, tm.METRIC_RPO)
    assert len(rpos) == 1 and rpos[0].count == 2  # the cycle's, then the monitor's
    assert rpos[0].max == pytest.approx(7200.0)


def test_without_application_insights_telemetry_goes_to_the_named_file(tmp_path: Path) -> None:
    target = tmp_path / "logs" / "telemetry.jsonl"
    telemetry = tm.configure_telemetry(make_settings(TELEMETRY_FILE=str(target)), set_global=False)
    telemetry.cycle_failed(machine_id="m-1", cycle_id="c-1", error_code="1011")
    telemetry.shutdown()  # flushes both exporters
    documents = [json.loads(line) for line in target.read_text().splitlines()]
    assert any(d.get("name") == tm.SPAN_CYCLE_FAILURE for d in documents)
    metrics = [
        m["name"]
        for d in documents
        for r in d.get("resource_metrics", [])
        for s in r["scope_metrics"]
        for m in s["metrics"]
    ]
    assert tm.METRIC_CYCLE_FAILURES in metrics
