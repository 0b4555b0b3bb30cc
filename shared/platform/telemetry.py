"""OpenTelemetry for the control plane: one tracer, the replication/hydration metrics, secret redaction.

In Azure (APPLICATIONINSIGHTS_CONNECTION_STRING set) everything goes to Application Insights through
azure-monitor-opentelemetry, authenticated with the app's managed identity (the component has local
auth disabled). Without it nothing leaves the process: spans and metrics are written as JSON lines to a
stream (stderr, or the file TELEMETRY_FILE names), or to the exporters/readers a test passes in.

The names below are a contract with infra/workbook.json and the KQL in docs/deploy.md: change them
together. Spans carry `migrate.machine_id`, `migrate.cycle_id`, `migrate.job_id`; metrics carry only
low-cardinality dimensions (machine, kind, outcome, error code), never cycle or job ids, so a metric
series stays one per machine rather than one per cycle.

Use it from triggers and activities only, never inside an orchestrator function: an orchestrator is
replayed from the start at every step, so spans and metrics recorded there would be recorded again on
each replay.
"""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, cast

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.rest import HttpRequest, HttpResponse
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from shared.platform.settings import Settings

SERVICE_NAME: Final = "migration-control-plane"
INSTRUMENTATION_SCOPE: Final = "migrate.control_plane"

# Span and metric attribute keys.
ATTR_MACHINE_ID: Final = "migrate.machine_id"
ATTR_CYCLE_ID: Final = "migrate.cycle_id"
ATTR_JOB_ID: Final = "migrate.job_id"
ATTR_CYCLE_KIND: Final = "migrate.cycle.kind"
ATTR_OUTCOME: Final = "migrate.outcome"
ATTR_ERROR_CODE: Final = "migrate.error_code"
ATTR_OS_FAMILY: Final = "migrate.os_family"
ATTR_ARM_OPERATION: Final = "migrate.arm.operation"
ATTR_HTTP_STATUS: Final = "http.response.status_code"
ATTR_APPLIANCE_ID: Final = "migrate.appliance_id"
ATTR_JOB_KIND: Final = "migrate.job.kind"
ATTR_JOB_STATUS: Final = "migrate.job.status"

# Metric instrument names (customMetrics.name in Application Insights).
METRIC_BYTES_APPLIED: Final = "migrate.replication.bytes_applied"
METRIC_CYCLE_DURATION: Final = "migrate.replication.cycle.duration"
METRIC_RPO: Final = "migrate.replication.rpo"
METRIC_CYCLE_FAILURES: Final = "migrate.replication.cycle.failures"
METRIC_HYDRATION_DURATION: Final = "migrate.hydration.duration"
METRIC_ARM_RETRIES: Final = "migrate.arm.retries"
METRIC_JOBS_FINISHED: Final = "migrate.jobs.finished"
METRIC_MACHINE_HEALTH: Final = "migrate.replication.health"
METRIC_APPLIANCE_HEARTBEAT_AGE: Final = "migrate.appliance.heartbeat_age"
METRIC_MOBILITY_AGENT_HEARTBEAT_AGE: Final = "migrate.mobility.agent_heartbeat_age"
METRIC_COSMOS_OPERATIONS: Final = "migrate.cosmos.operations"
METRIC_COSMOS_REQUEST_UNITS: Final = "migrate.cosmos.request_units"
METRIC_COSMOS_FALLBACKS: Final = "migrate.cosmos.fallbacks"
METRIC_NAMES: Final = (
    METRIC_BYTES_APPLIED,
    METRIC_CYCLE_DURATION,
    METRIC_RPO,
    METRIC_CYCLE_FAILURES,
    METRIC_HYDRATION_DURATION,
    METRIC_ARM_RETRIES,
    METRIC_JOBS_FINISHED,
    METRIC_MACHINE_HEALTH,
    METRIC_APPLIANCE_HEARTBEAT_AGE,
    METRIC_MOBILITY_AGENT_HEARTBEAT_AGE,
)
# The health metric's values: alert rules and the workbook compare against these.
HEALTH_LEVELS: Final = {"Healthy": 0, "Warning": 1, "Critical": 2}

# Span names the workbook queries (dependencies.name in Application Insights).
SPAN_APPLY_CYCLE: Final = "replication.apply_cycle"
SPAN_CYCLE_FAILURE: Final = "replication.cycle_failure"

OUTCOME_SUCCEEDED: Final = "succeeded"
OUTCOME_FAILED: Final = "failed"
UNKNOWN_ERROR_CODE: Final = "Unknown"


def standard_attributes(
    *, machine_id: str | None = None, cycle_id: str | None = None, job_id: str | None = None
) -> dict[str, AttributeValue]:
    """The standard span attributes; ids that are not known are left out rather than set empty."""
    attributes: dict[str, AttributeValue] = {}
    if machine_id:
        attributes[ATTR_MACHINE_ID] = machine_id
    if cycle_id:
        attributes[ATTR_CYCLE_ID] = cycle_id
    if job_id:
        attributes[ATTR_JOB_ID] = job_id
    return attributes


def error_code_of(exc: BaseException) -> str:
    """The catalog error code an exception carries (`code` or `error_code`), else its class name."""
    for attribute in ("error_code", "code"):
        value = getattr(exc, attribute, None)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return type(exc).__name__


class Telemetry:
    """The tracer and the metric instruments, bound to one tracer provider and one meter provider."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider,
        meter_provider: metrics.MeterProvider,
        *,
        on_shutdown: Callable[[], None] | None = None,
    ) -> None:
        self.tracer = tracer_provider.get_tracer(INSTRUMENTATION_SCOPE)
        meter = meter_provider.get_meter(INSTRUMENTATION_SCOPE)
        self._on_shutdown = on_shutdown
        self._bytes_applied = meter.create_counter(
            METRIC_BYTES_APPLIED, unit="By", description="Bytes written to replica disks from applied cycles"
        )
        self._cycle_duration = meter.create_histogram(
            METRIC_CYCLE_DURATION, unit="s", description="Time to apply one replication cycle to its replicas"
        )
        self._rpo = meter.create_histogram(
            METRIC_RPO,
            unit="s",
            description="Recovery point objective: age of the newest recovery point when a cycle is applied",
        )
        self._cycle_failures = meter.create_counter(
            METRIC_CYCLE_FAILURES, unit="{cycle}", description="Replication cycles that failed, by error code"
        )
        self._hydration_duration = meter.create_histogram(
            METRIC_HYDRATION_DURATION,
            unit="s",
            description="Wall time of one hydration, temporary VM to cleanup",
        )
        self._arm_retries = meter.create_counter(
            METRIC_ARM_RETRIES,
            unit="{retry}",
            description="Azure Resource Manager calls retried (429/5xx/409)",
        )
        self._jobs_finished = meter.create_counter(
            METRIC_JOBS_FINISHED,
            unit="{job}",
            description="Long operations that ended, by kind and status (Succeeded, Warning, Failed, Cancelled)",
        )
        self._machine_health = meter.create_histogram(
            METRIC_MACHINE_HEALTH,
            unit="1",
            description="A replicating machine's health at each health check: 0 Healthy, 1 Warning, 2 Critical",
        )
        self._appliance_heartbeat_age = meter.create_histogram(
            METRIC_APPLIANCE_HEARTBEAT_AGE,
            unit="s",
            description="Seconds since an appliance with replicating machines last sent a heartbeat",
        )
        self._agent_heartbeat_age = meter.create_histogram(
            METRIC_MOBILITY_AGENT_HEARTBEAT_AGE,
            unit="s",
            description="Seconds since a replicating machine's Mobility agent last sent a heartbeat (or, "
            "before its first, registered)",
        )
        self._cosmos_operations = meter.create_counter(
            METRIC_COSMOS_OPERATIONS,
            unit="{operation}",
            description="Cosmos DB round-trips, by operation and container (the per-cycle cost)",
        )
        self._cosmos_request_units = meter.create_counter(
            METRIC_COSMOS_REQUEST_UNITS, unit="{RU}", description="Cosmos DB request units charged"
        )
        self._cosmos_fallbacks = meter.create_counter(
            METRIC_COSMOS_FALLBACKS,
            unit="{fallback}",
            description="Writes that took their fallback (a read, and maybe another write) instead of "
            "their one round-trip, by path and reason",
        )

    @contextmanager
    def span(
        self,
        name: str,
        *,
        machine_id: str | None = None,
        cycle_id: str | None = None,
        job_id: str | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> Iterator[Span]:
        """A current span with the standard attributes; an escaping exception marks it failed and is recorded."""
        merged = standard_attributes(machine_id=machine_id, cycle_id=cycle_id, job_id=job_id)
        if attributes:
            merged.update(attributes)
        with self.tracer.start_as_current_span(name, kind=kind, attributes=merged) as span:
            try:
                yield span
            except Exception as exc:
                span.set_attribute(ATTR_ERROR_CODE, error_code_of(exc))
                raise

    @contextmanager
    def cycle(
        self, *, machine_id: str, cycle_id: str, kind: str, job_id: str | None = None
    ) -> Iterator[Span]:
        """Span + duration + failure count for applying one cycle: the caller only does the work."""
        started = time.monotonic()
        with self.span(
            SPAN_APPLY_CYCLE,
            machine_id=machine_id,
            cycle_id=cycle_id,
            job_id=job_id,
            attributes={ATTR_CYCLE_KIND: kind},
        ) as span:
            try:
                yield span
            except Exception as exc:
                self.record_cycle_duration(
                    time.monotonic() - started, machine_id=machine_id, cycle_kind=kind, outcome=OUTCOME_FAILED
                )
                self.record_cycle_failure(machine_id=machine_id, error_code=error_code_of(exc))
                raise
            self.record_cycle_duration(
                time.monotonic() - started, machine_id=machine_id, cycle_kind=kind, outcome=OUTCOME_SUCCEEDED
            )

    def cycle_applied(
        self,
        *,
        machine_id: str,
        cycle_id: str,
        kind: str,
        started_at: datetime,
        received_at: datetime,
        applied_at: datetime,
        bytes_applied: int,
        job_id: str | None = None,
    ) -> None:
        """Span, duration, bytes and RPO of a cycle now on the replicas, recorded once at its completion.

        A cycle is applied by several activities of an orchestration, so no one process holds a span
        open across the apply: the span is recorded afterwards with the apply's start and end times.
        The RPO is the age of the new recovery point's data (received from the appliance at
        `received_at`) at the moment it became a recovery point.
        """
        span = self.tracer.start_span(
            SPAN_APPLY_CYCLE,
            start_time=_nanoseconds(min(started_at, applied_at)),
            attributes={
                **standard_attributes(machine_id=machine_id, cycle_id=cycle_id, job_id=job_id),
                ATTR_CYCLE_KIND: kind,
                ATTR_OUTCOME: OUTCOME_SUCCEEDED,
            },
        )
        span.end(end_time=_nanoseconds(applied_at))
        self.record_cycle_duration(
            max(0.0, (applied_at - started_at).total_seconds()),
            machine_id=machine_id,
            cycle_kind=kind,
            outcome=OUTCOME_SUCCEEDED,
        )
        self.record_bytes_applied(bytes_applied, machine_id=machine_id, cycle_kind=kind)
        self.record_rpo(max(0.0, (applied_at - received_at).total_seconds()), machine_id=machine_id)

    def cycle_failed(
        self,
        *,
        machine_id: str,
        error_code: str,
        message: str = "",
        cycle_id: str | None = None,
        job_id: str | None = None,
    ) -> None:
        """A cycle that will not be applied (rejected upload, upload timed out, sequence gap, appliance
        failure): the failure count by error code, and a failed span the workbook lists with its ids."""
        with self.span(
            SPAN_CYCLE_FAILURE,
            machine_id=machine_id,
            cycle_id=cycle_id,
            job_id=job_id,
            attributes={ATTR_ERROR_CODE: error_code or UNKNOWN_ERROR_CODE},
        ) as span:
            span.set_status(Status(StatusCode.ERROR, redact(message) or None))
        self.record_cycle_failure(machine_id=machine_id, error_code=error_code)

    def record_rpo_since(self, last_applied: datetime | None, *, now: datetime, machine_id: str) -> None:
        """The RPO of a machine whose newest recovery point dates from `last_applied`; nothing before
        its first one (there is no recovery point to be late with)."""
        if last_applied is not None:
            self.record_rpo(max(0.0, (now - last_applied).total_seconds()), machine_id=machine_id)

    @contextmanager
    def hydration(self, *, machine_id: str, job_id: str, os_family: str) -> Iterator[Span]:
        """Span + duration for one hydration (temporary VM, preparation script, cleanup)."""
        started = time.monotonic()
        outcome = OUTCOME_FAILED
        try:
            with self.span(
                "hydration.run", machine_id=machine_id, job_id=job_id, attributes={ATTR_OS_FAMILY: os_family}
            ) as span:
                yield span
                outcome = OUTCOME_SUCCEEDED
        finally:
            self.record_hydration_duration(
                time.monotonic() - started, machine_id=machine_id, os_family=os_family, outcome=outcome
            )

    def record_bytes_applied(
        self, byte_count: int, *, machine_id: str, cycle_kind: str | None = None
    ) -> None:
        if byte_count < 0:
            raise ValueError(f"bytes applied cannot be negative: {byte_count}")
        attributes: dict[str, AttributeValue] = {ATTR_MACHINE_ID: machine_id}
        if cycle_kind:
            attributes[ATTR_CYCLE_KIND] = cycle_kind
        self._bytes_applied.add(byte_count, attributes)

    def record_cycle_duration(
        self, seconds: float, *, machine_id: str, cycle_kind: str, outcome: str
    ) -> None:
        self._cycle_duration.record(
            _non_negative(seconds, "cycle duration"),
            {ATTR_MACHINE_ID: machine_id, ATTR_CYCLE_KIND: cycle_kind, ATTR_OUTCOME: outcome},
        )

    def record_rpo(self, seconds: float, *, machine_id: str) -> None:
        self._rpo.record(_non_negative(seconds, "RPO"), {ATTR_MACHINE_ID: machine_id})

    def record_cycle_failure(self, *, machine_id: str, error_code: str) -> None:
        self._cycle_failures.add(
            1, {ATTR_MACHINE_ID: machine_id, ATTR_ERROR_CODE: error_code or UNKNOWN_ERROR_CODE}
        )

    def record_hydration_duration(
        self, seconds: float, *, machine_id: str, os_family: str, outcome: str
    ) -> None:
        self._hydration_duration.record(
            _non_negative(seconds, "hydration duration"),
            {ATTR_MACHINE_ID: machine_id, ATTR_OS_FAMILY: os_family, ATTR_OUTCOME: outcome},
        )

    def record_job_finished(
        self, *, machine_id: str, job_id: str, kind: str, status: str, error_code: str | None = None
    ) -> None:
        attributes: dict[str, AttributeValue] = {
            ATTR_MACHINE_ID: machine_id,
            ATTR_JOB_ID: job_id,
            ATTR_JOB_KIND: kind,
            ATTR_JOB_STATUS: status,
        }
        if error_code:
            attributes[ATTR_ERROR_CODE] = error_code
        self._jobs_finished.add(1, attributes)

    def record_machine_health(self, health: str, *, machine_id: str) -> None:
        if health not in HEALTH_LEVELS:
            raise ValueError(f"unknown health {health!r}: one of {', '.join(HEALTH_LEVELS)}")
        self._machine_health.record(HEALTH_LEVELS[health], {ATTR_MACHINE_ID: machine_id})

    def record_appliance_heartbeat_age(self, seconds: float, *, appliance_id: str) -> None:
        self._appliance_heartbeat_age.record(
            _non_negative(seconds, "heartbeat age"), {ATTR_APPLIANCE_ID: appliance_id}
        )

    def record_mobility_agent_heartbeat_age(self, seconds: float, *, machine_id: str) -> None:
        # By machine, not agent id: the alert names what the operator looks at (one agent per machine).
        self._agent_heartbeat_age.record(
            _non_negative(seconds, "agent heartbeat age"), {ATTR_MACHINE_ID: machine_id}
        )

    def record_cosmos_operation(self, operation: str, container: str, request_units: float = 0.0) -> None:
        """An OperationCounter listener (shared/platform/documents.py)."""
        attributes: dict[str, AttributeValue] = {
            "db.operation": operation,
            "db.cosmosdb.container": container,
        }
        self._cosmos_operations.add(1, attributes)
        if request_units > 0:
            self._cosmos_request_units.add(request_units, attributes)

    def record_cosmos_fallback(self, path: str, reason: str) -> None:
        """An OperationCounter fallback listener (shared/platform/documents.py)."""
        self._cosmos_fallbacks.add(1, {"migrate.fallback.path": path, "migrate.fallback.reason": reason})

    def record_arm_retry(self, *, operation: str, status_code: int | None = None) -> None:
        attributes: dict[str, AttributeValue] = {ATTR_ARM_OPERATION: operation}
        if status_code is not None:
            attributes[ATTR_HTTP_STATUS] = status_code
        self._arm_retries.add(1, attributes)

    def shutdown(self) -> None:
        """Flush and stop the exporters this instance owns (none when it uses the global providers)."""
        if self._on_shutdown is not None:
            self._on_shutdown()


def _nanoseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


def _non_negative(value: float, what: str) -> float:
    if value < 0:
        raise ValueError(f"{what} cannot be negative: {value}")
    return value


_ARM_PROVIDER_PATH = re.compile(r"/providers/(?P<namespace>[^/]+)/(?P<rest>[^?]*)", re.IGNORECASE)
_LAST_STATUS_KEY: Final = "migrate.arm.last_status"


def arm_operation_name(method: str, url: str) -> str:
    """`PUT Microsoft.Compute/virtualMachines/extensions` for any ARM URL: resource types, never names.

    Resource names are dropped so the metric keeps one series per kind of call, not one per resource.
    """
    match = _ARM_PROVIDER_PATH.search(url.split("?", 1)[0])
    if match is None:
        return f"{method.upper()} {'resourceGroups' if '/resourcegroups/' in url.lower() else 'other'}"
    segments = [segment for segment in match["rest"].split("/") if segment]
    # Provider paths alternate type/name/type/name...; the types are the even positions.
    types = segments[0::2]
    return f"{method.upper()} {match['namespace']}/{'/'.join(types)}"


class ArmRetryTelemetryPolicy(SansIOHTTPPolicy[HttpRequest, HttpResponse]):
    """Counts ARM retries into `migrate.arm.retries`; add it to a management client's per-retry policies.

    `ComputeManagementClient(credential, subscription_id, per_retry_policies=[ArmRetryTelemetryPolicy()])`.
    azure-core's RetryPolicy stores the attempt number in the request context before each attempt; a
    per-retry policy therefore sees every attempt and records each one after the first, with the status
    that caused it (None after a connection error).
    """

    def __init__(self, telemetry: Telemetry | None = None) -> None:
        self._telemetry = telemetry

    def on_request(self, request: PipelineRequest[HttpRequest]) -> None:
        if int(request.context.get("retry_count", 0) or 0) > 0:
            (self._telemetry or get_telemetry()).record_arm_retry(
                operation=arm_operation_name(request.http_request.method, request.http_request.url),
                status_code=request.context.get(_LAST_STATUS_KEY),
            )

    def on_response(
        self, request: PipelineRequest[HttpRequest], response: PipelineResponse[HttpRequest, HttpResponse]
    ) -> None:
        request.context[_LAST_STATUS_KEY] = response.http_response.status_code

    def on_exception(self, request: PipelineRequest[HttpRequest]) -> None:
        request.context[_LAST_STATUS_KEY] = None


_lock = threading.Lock()
_current: Telemetry | None = None
_azure_monitor_configured = False
_global_providers_set = False


def configure_telemetry(
    settings: Settings,
    *,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
    json_lines_stream: IO[str] | None = None,
    set_global: bool = True,
) -> Telemetry:
    """Set up tracing, metrics and log redaction once per process and return the Telemetry to use.

    With a connection string: Azure Monitor (global providers; a second call returns the first result,
    because OpenTelemetry's global providers cannot be replaced). Without: local SDK providers exporting
    to `span_exporter`/`metric_reader` when given (tests), else JSON lines on `json_lines_stream` (stderr).
    No network is used locally. `set_global=False` keeps the providers private (tests, several instances).
    """
    global _current, _azure_monitor_configured, _global_providers_set
    install_secret_redaction()
    resource = Resource.create({"service.name": SERVICE_NAME})
    connection_string = (
        settings.applicationinsights_connection_string.get_secret_value().strip()
        if settings.applicationinsights_connection_string is not None
        else ""
    )
    explicit_exporters = span_exporter is not None or metric_reader is not None
    with _lock:
        if set_global and not explicit_exporters and _current is not None:
            # One configuration per process: blueprints may each call this at import time.
            return _current
        if connection_string:
            if _azure_monitor_configured and _current is not None:
                return _current
            _configure_azure_monitor(settings, connection_string, resource, span_exporter, metric_reader)
            _azure_monitor_configured = True
            # Handlers the distro attached to the root logger must redact `extra` fields too.
            _add_filter_to_root_handlers()
            _current = Telemetry(trace.get_tracer_provider(), metrics.get_meter_provider())
            return _current

        tracer_provider = TracerProvider(resource=resource)
        stream: IO[str]
        if json_lines_stream is not None:
            stream = json_lines_stream
        elif settings.telemetry.file:
            stream = cast(IO[str], _JsonLinesFile(settings.telemetry.file))
        else:
            stream = cast(IO[str], _CurrentStderr())
        if span_exporter is not None:
            # Synchronous export: a test sees a span as soon as it ends.
            tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        else:
            tracer_provider.add_span_processor(
                BatchSpanProcessor(ConsoleSpanExporter(out=stream, formatter=_span_json_line))
            )
        reader = metric_reader or PeriodicExportingMetricReader(
            ConsoleMetricExporter(out=stream, formatter=_metrics_json_line),
            export_interval_millis=settings.telemetry.console_metric_interval.total_seconds() * 1000,
        )
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])

        def shutdown() -> None:
            tracer_provider.shutdown()
            meter_provider.shutdown()

        telemetry = Telemetry(tracer_provider, meter_provider, on_shutdown=shutdown)
        if set_global and not _global_providers_set:
            # Libraries instrumented with the OpenTelemetry API (azure-core tracing) report into ours.
            trace.set_tracer_provider(tracer_provider)
            metrics.set_meter_provider(meter_provider)
            _global_providers_set = True
        if set_global:
            _current = telemetry
        return telemetry


class _CurrentStderr(io.TextIOBase):
    """Whatever sys.stderr is at the time of writing: the exporters' background threads outlive a
    test runner's captured stderr, and writing to a closed capture would fail at exit."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _JsonLinesFile(io.TextIOBase):
    """An append-only file shared by the span and metric exporters' threads: one whole line per write,
    flushed at once, so a reader never sees half a record."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the exporters

    def write(self, text: str) -> int:
        with self._lock:
            written = self._file.write(text)
            self._file.flush()
            return written

    def flush(self) -> None:
        with self._lock:
            self._file.flush()


def get_telemetry() -> Telemetry:
    """The configured Telemetry; before configure_telemetry, one over the global (no-op by default) providers."""
    current = _current
    if current is not None:
        return current
    return Telemetry(trace.get_tracer_provider(), metrics.get_meter_provider())


def _configure_azure_monitor(
    settings: Settings,
    connection_string: str,
    resource: Resource,
    span_exporter: SpanExporter | None,
    metric_reader: MetricReader | None,
) -> None:
    # Imported here: the distro pulls in every instrumentation it bundles, which local runs never need.
    from azure.monitor.opentelemetry import configure_azure_monitor

    options: dict[str, Any] = {
        "connection_string": connection_string,
        "resource": resource,
        # Live metrics keeps a long-poll connection per instance; the workbook covers what we watch.
        "enable_live_metrics": False,
    }
    if settings.managed_identity_client_id:
        from azure.identity import ManagedIdentityCredential

        # Application Insights has local auth disabled (infra/modules/monitoring.bicep): ingestion needs
        # an Entra token of the app identity, which holds Monitoring Metrics Publisher on the component.
        options["credential"] = ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
    if span_exporter is not None:
        options["span_processors"] = [SimpleSpanProcessor(span_exporter)]
    if metric_reader is not None:
        options["metric_readers"] = [metric_reader]
    configure_azure_monitor(**options)


def _span_json_line(span: ReadableSpan) -> str:
    line: str = span.to_json(indent=None)
    return line + "\n"


def _metrics_json_line(data: MetricsData) -> str:
    return data.to_json(indent=None) + "\n"


# --- secret redaction -------------------------------------------------------------------------------

REDACTED: Final = "***"

_SECRET_FIELD = (
    r"(?:[a-z0-9_.-]*(?:credential|password|passwd|secret|pepper|token|signature)"
    r"|api[_-]?key|account[_-]?key|access[_-]?key|shared[_-]?key|primary[_-]?key|secondary[_-]?key)"
)


def _keep_quotes(match: re.Match[str]) -> str:
    value = match.group(2)
    if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]:
        return f"{match.group(1)}{value[0]}{REDACTED}{value[0]}"
    return f"{match.group(1)}{REDACTED}"


_REDACTIONS: Final[tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...]] = (
    # PEM private keys (appliance certificates) in full.
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL),
        f"-----BEGIN PRIVATE KEY-----{REDACTED}-----END PRIVATE KEY-----",
    ),
    # SAS signature and Functions keys in any URL or query string; the rest of the URL stays readable.
    (re.compile(r"(?i)([?&](?:sig|code)=)[^&\s\"'#<>]+"), rf"\g<1>{REDACTED}"),
    # Secrets inside connection strings (Storage, Service Bus, Event Hubs, SQL).
    (
        re.compile(
            r"(?i)\b(AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd|ClientSecret|AccessKey)"
            r"=([^;\s\"']+)"
        ),
        rf"\g<1>={REDACTED}",
    ),
    # HTTP authorization schemes with their credential.
    (
        re.compile(r"(?i)\b(Bearer|Basic|SharedKey|SharedAccessSignature)\s+[A-Za-z0-9._~+/=:%-]{8,}"),
        rf"\g<1> {REDACTED}",
    ),
    # Headers that carry a credential on their own.
    (
        re.compile(
            r"(?i)\b(aeg-sas-key|aeg-sas-token|x-functions-key|ocp-apim-subscription-key)(\"?\s*[:=]\s*\"?)[^\s\"',;]+"
        ),
        rf"\g<1>\g<2>{REDACTED}",
    ),
    # key: value / "key": "value" / key=value fields whose name says it is a secret.
    (
        re.compile(rf"(?i)([\"']?\b{_SECRET_FIELD}[\"']?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&}}\]]+)"),
        _keep_quotes,
    ),
)


def redact(text: str) -> str:
    """The text with credentials, SAS signatures, keys and connection-string secrets replaced by ***."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


_STANDARD_RECORD_ATTRIBUTES: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime", "taskName"}
)


def redact_record(record: logging.LogRecord) -> None:
    """Redact a record in place: message with its args, exception text, stack, and string `extra` fields."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed %-format must not lose the record; log what we have
        message = str(record.msg)
    record.msg = redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        raw = logging.Formatter().formatException(record.exc_info)
        record.exc_text = redact(raw)
        if record.exc_text != raw:
            # Handlers that render exc_info themselves (Azure Monitor's exception telemetry) would
            # otherwise export the unredacted message; the redacted traceback stays in exc_text.
            record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    for key, value in list(record.__dict__.items()):
        if key not in _STANDARD_RECORD_ATTRIBUTES and isinstance(value, str):
            setattr(record, key, redact(value))


class SecretRedactingFilter(logging.Filter):
    """Logging filter that redacts secrets; attach to handlers (a logger's filters skip child loggers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_redaction_installed = False


def install_secret_redaction() -> None:
    """Redact every log record of the process, whichever handler later ships it. Idempotent.

    The record factory catches records of every logger before any handler sees them (the Functions
    worker adds its own handler after us); the handler filter also covers `extra` fields, which logging
    sets after the factory runs.
    """
    global _redaction_installed
    with _lock:
        if _redaction_installed:
            _add_filter_to_root_handlers()
            return
        previous_factory = logging.getLogRecordFactory()

        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous_factory(*args, **kwargs)
            redact_record(record)
            return record

        logging.setLogRecordFactory(redacting_factory)
        _redaction_installed = True
        _add_filter_to_root_handlers()


def _add_filter_to_root_handlers() -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, SecretRedactingFilter) for existing in handler.filters):
            handler.addFilter(SecretRedactingFilter())
