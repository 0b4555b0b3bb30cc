"""shared.platform.telemetry: span attributes, metric instruments, local (no-network) export, Azure Monitor wiring."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from shared.platform import telemetry as tm
from shared.platform.settings import Settings

BASE_ENV = {
    "COSMOS_ENDPOINT": "https://127.0.0.1:8081/",
    "CACHE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    "REPLICA_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    "EVENTGRID_TOPIC_ENDPOINT": "http://127.0.0.1:7071/api/events",
    "APPLIANCE_CREDENTIAL_PEPPER": "pepper",
}


def make_settings(**extra: str) -> Settings:
    return Settings.from_environ({**BASE_ENV, **extra})


class CycleUploadTimedOut(Exception):
    """Stands in for a catalog error: carries the catalog code like the real ones do."""

    code = "1011"


@pytest.fixture
def recorded() -> Iterator[tuple[tm.Telemetry, InMemorySpanExporter, InMemoryMetricReader]]:
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    telemetry = tm.configure_telemetry(
        make_settings(), span_exporter=spans, metric_reader=reader, set_global=False
    )
    yield telemetry, spans, reader
    telemetry.shutdown()


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    found: list[Any] = []
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def test_span_carries_the_standard_attributes_and_nests(recorded: Any) -> None:
    telemetry, spans, _ = recorded
    with telemetry.span("orchestration.replicate", machine_id="m-1", job_id="job-7") as outer:
        with telemetry.span("activity.apply", machine_id="m-1", cycle_id="c-42", attributes={"disk": "d0"}):
            pass
        outer_context = outer.get_span_context()

    finished = {span.name: span for span in spans.get_finished_spans()}
    inner = finished["activity.apply"]
    assert dict(inner.attributes or {}) == {
        "migrate.machine_id": "m-1",
        "migrate.cycle_id": "c-42",
        "disk": "d0",
    }
    assert dict(finished["orchestration.replicate"].attributes or {}) == {
        "migrate.machine_id": "m-1",
        "migrate.job_id": "job-7",
    }
    assert inner.parent is not None and inner.parent.span_id == outer_context.span_id
    assert inner.resource.attributes["service.name"] == tm.SERVICE_NAME


def test_unknown_ids_are_left_out_not_blank(recorded: Any) -> None:
    telemetry, spans, _ = recorded
    with telemetry.span("health"):
        pass
    (span,) = spans.get_finished_spans()
    assert not any(key.startswith("migrate.") for key in (span.attributes or {}))


def test_successful_cycle_records_span_and_duration(recorded: Any) -> None:
    telemetry, spans, reader = recorded
    with telemetry.cycle(machine_id="m-1", cycle_id="c-1", kind="delta", job_id="job-1"):
        telemetry.record_bytes_applied(4 * 1024 * 1024, machine_id="m-1", cycle_kind="delta")
        telemetry.record_bytes_applied(512, machine_id="m-1", cycle_kind="delta")
    telemetry.record_rpo(95.5, machine_id="m-1")
    telemetry.record_rpo(30.0, machine_id="m-1")

    (span,) = spans.get_finished_spans()
    assert span.name == "replication.apply_cycle"
    assert span.attributes is not None
    assert span.attributes["migrate.machine_id"] == "m-1"
    assert span.attributes["migrate.cycle_id"] == "c-1"
    assert span.attributes["migrate.job_id"] == "job-1"
    assert span.attributes["migrate.cycle.kind"] == "delta"
    assert span.status.status_code != StatusCode.ERROR

    (applied,) = points(reader, tm.METRIC_BYTES_APPLIED)
    assert isinstance(applied, NumberDataPoint)
    assert applied.value == 4 * 1024 * 1024 + 512
    assert dict(applied.attributes or {}) == {"migrate.machine_id": "m-1", "migrate.cycle.kind": "delta"}

    (duration,) = points(reader, tm.METRIC_CYCLE_DURATION)
    assert isinstance(duration, HistogramDataPoint)
    assert duration.count == 1 and duration.sum >= 0
    assert dict(duration.attributes or {})["migrate.outcome"] == "succeeded"
    assert "migrate.cycle_id" not in (duration.attributes or {}), "cycle ids would explode metric cardinality"

    (rpo,) = points(reader, tm.METRIC_RPO)
    assert (rpo.count, rpo.min, rpo.max) == (2, 30.0, 95.5)
    assert points(reader, tm.METRIC_CYCLE_FAILURES) == []


def test_failed_cycle_marks_span_and_counts_failure_by_error_code(recorded: Any) -> None:
    telemetry, spans, reader = recorded
    with (
        pytest.raises(CycleUploadTimedOut),
        telemetry.cycle(machine_id="m-2", cycle_id="c-9", kind="initial"),
    ):
        raise CycleUploadTimedOut("disk d0 upload did not finish")

    (span,) = spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None and span.attributes["migrate.error_code"] == "1011"
    assert any(event.name == "exception" for event in span.events)

    (failure,) = points(reader, tm.METRIC_CYCLE_FAILURES)
    assert failure.value == 1
    assert dict(failure.attributes or {}) == {"migrate.machine_id": "m-2", "migrate.error_code": "1011"}
    (duration,) = points(reader, tm.METRIC_CYCLE_DURATION)
    assert dict(duration.attributes or {})["migrate.outcome"] == "failed"


def test_hydration_and_arm_retries(recorded: Any) -> None:
    telemetry, spans, reader = recorded
    with telemetry.hydration(machine_id="m-3", job_id="job-3", os_family="linux"):
        telemetry.record_arm_retry(operation="virtual_machines.begin_create_or_update", status_code=429)
        telemetry.record_arm_retry(operation="virtual_machines.begin_create_or_update", status_code=429)
    with (
        pytest.raises(RuntimeError),
        telemetry.hydration(machine_id="m-4", job_id="job-4", os_family="windows"),
    ):
        raise RuntimeError("extension failed")

    names = [span.name for span in spans.get_finished_spans()]
    assert names == ["hydration.run", "hydration.run"]
    outcomes = {
        (dict(p.attributes)["migrate.machine_id"], dict(p.attributes)["migrate.outcome"]): p.count
        for p in points(reader, tm.METRIC_HYDRATION_DURATION)
    }
    assert outcomes == {("m-3", "succeeded"): 1, ("m-4", "failed"): 1}
    (retries,) = points(reader, tm.METRIC_ARM_RETRIES)
    assert retries.value == 2
    assert dict(retries.attributes or {}) == {
        "migrate.arm.operation": "virtual_machines.begin_create_or_update",
        "http.response.status_code": 429,
    }


def test_metric_names_are_the_documented_contract() -> None:
    assert set(tm.METRIC_NAMES) == {
        "migrate.replication.bytes_applied",
        "migrate.replication.cycle.duration",
        "migrate.replication.rpo",
        "migrate.replication.cycle.failures",
        "migrate.hydration.duration",
        "migrate.arm.retries",
        "migrate.jobs.finished",
        "migrate.replication.health",
        "migrate.appliance.heartbeat_age",
        "migrate.mobility.agent_heartbeat_age",
    }


def test_health_is_recorded_as_its_level_and_an_unknown_one_is_refused() -> None:
    assert tm.HEALTH_LEVELS == {"Healthy": 0, "Warning": 1, "Critical": 2}
    with pytest.raises(ValueError, match="unknown health"):
        tm.get_telemetry().record_machine_health("Unwell", machine_id="m")
    with pytest.raises(ValueError):
        tm.get_telemetry().record_appliance_heartbeat_age(-1.0, appliance_id="a")
    with pytest.raises(ValueError):
        tm.get_telemetry().record_mobility_agent_heartbeat_age(-1.0, machine_id="m")


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.record_bytes_applied(-1, machine_id="m"),
        lambda t: t.record_rpo(-0.5, machine_id="m"),
        lambda t: t.record_cycle_duration(-2, machine_id="m", cycle_kind="delta", outcome="succeeded"),
        lambda t: t.record_hydration_duration(-3, machine_id="m", os_family="linux", outcome="failed"),
    ],
)
def test_negative_measurements_are_refused(recorded: Any, call: Any) -> None:
    telemetry, _, _ = recorded
    with pytest.raises(ValueError, match="negative"):
        call(telemetry)


def test_error_code_of_prefers_catalog_codes() -> None:
    class WithErrorCode(Exception):
        error_code = 181008

    assert tm.error_code_of(WithErrorCode()) == "181008"
    assert tm.error_code_of(CycleUploadTimedOut()) == "1011"
    assert tm.error_code_of(KeyError("x")) == "KeyError"


def test_local_mode_writes_json_lines_and_opens_no_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("telemetry tried to open a network connection locally")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    out = io.StringIO()
    telemetry = tm.configure_telemetry(
        make_settings(APPLICATIONINSIGHTS_CONNECTION_STRING=""), json_lines_stream=out, set_global=False
    )
    with telemetry.span("local.check", machine_id="m-local", cycle_id="c-local"):
        telemetry.record_bytes_applied(10, machine_id="m-local")
    telemetry.shutdown()  # flushes the batch processor and the periodic metric reader

    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    spans = [line for line in lines if line.get("name") == "local.check"]
    assert spans and spans[0]["attributes"]["migrate.machine_id"] == "m-local"
    assert any("resource_metrics" in line for line in lines)
    assert tm.METRIC_BYTES_APPLIED in out.getvalue()


def test_azure_mode_uses_the_connection_string_and_the_app_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    import azure.monitor.opentelemetry as distro

    captured: dict[str, Any] = {}
    monkeypatch.setattr(distro, "configure_azure_monitor", lambda **kwargs: captured.update(kwargs))
    monkeypatch.setattr(tm, "_azure_monitor_configured", False)
    monkeypatch.setattr(tm, "_current", None)
    connection_string = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://x/"
    settings = make_settings(
        APPLICATIONINSIGHTS_CONNECTION_STRING=connection_string,
        AZURE_CLIENT_ID="11111111-2222-3333-4444-555555555555",
    )

    first = tm.configure_telemetry(settings)
    second = tm.configure_telemetry(settings)

    from azure.identity import ManagedIdentityCredential

    assert captured["connection_string"] == connection_string
    assert isinstance(captured["credential"], ManagedIdentityCredential)
    assert captured["enable_live_metrics"] is False
    assert captured["resource"].attributes["service.name"] == tm.SERVICE_NAME
    assert second is first, "the distro's global providers cannot be replaced, so configure runs once"


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        (
            "put",
            "https://management.azure.com/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/"
            "virtualMachines/vm-1/extensions/prep?api-version=2026-04-01",
            "PUT Microsoft.Compute/virtualMachines/extensions",
        ),
        (
            "GET",
            "https://management.azure.com/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/"
            "networkSecurityGroups/nsg-tmp",
            "GET Microsoft.Network/networkSecurityGroups",
        ),
        (
            "PUT",
            "https://management.azure.com/subscriptions/s/resourcegroups/rg?api-version=1",
            "PUT resourceGroups",
        ),
    ],
)
def test_arm_operation_names_keep_types_and_drop_resource_names(method: str, url: str, expected: str) -> None:
    assert tm.arm_operation_name(method, url) == expected


def test_arm_retry_policy_counts_each_retry_with_the_status_that_caused_it(recorded: Any) -> None:
    """A real azure-core pipeline (RetryPolicy + RequestsTransport) against a loopback server: 429, 503, 200."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from azure.core.pipeline import Pipeline
    from azure.core.pipeline.policies import RetryPolicy
    from azure.core.pipeline.transport import RequestsTransport
    from azure.core.rest import HttpRequest

    statuses = [429, 503, 200]

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            status = statuses.pop(0)
            self.send_response(status)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    telemetry, _, reader = recorded
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = (
            f"http://127.0.0.1:{server.server_address[1]}/subscriptions/s/resourceGroups/rg/providers/"
            "Microsoft.Compute/disks/replica-0?api-version=2026-03-02"
        )
        pipeline = Pipeline(
            transport=RequestsTransport(),
            policies=[RetryPolicy(retry_backoff_factor=0), tm.ArmRetryTelemetryPolicy(telemetry)],
        )
        with pipeline:
            response = pipeline.run(HttpRequest("PUT", url, json={})).http_response
    finally:
        server.shutdown()
        server.server_close()

    assert response.status_code == 200
    counted = {
        dict(p.attributes)["http.response.status_code"]: p.value
        for p in points(reader, tm.METRIC_ARM_RETRIES)
    }
    assert counted == {429: 1, 503: 1}
    (point, _) = points(reader, tm.METRIC_ARM_RETRIES)
    assert dict(point.attributes)["migrate.arm.operation"] == "PUT Microsoft.Compute/disks"
