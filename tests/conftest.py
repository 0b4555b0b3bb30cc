"""Shared fixtures: the protocol emulators are started once per test session on free ports."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import replace

import pytest

from devhost.blob_front import start_blob_storage
from devhost.emulators import EmulatorEndpoints, EmulatorPorts, start_cosmos
from devhost.processes import free_port

# The local Cosmos emulator uses a self-signed certificate (connection_verify=False locally only).
warnings.filterwarnings("ignore", message="Unverified HTTPS request")


def _quiet_process_telemetry() -> None:
    """Code under test that configures telemetry in this process (services built in-process) would
    otherwise export to stderr, and its final flush at exit would print after pytest's summary line.
    In-memory exporters keep the telemetry real but silent; tests that inspect it bring their own."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shared.platform.settings import Settings
    from shared.platform.telemetry import configure_telemetry

    settings = Settings.from_environ(
        {
            "COSMOS_ENDPOINT": "https://127.0.0.1:1/",
            "CACHE_STORAGE_CONNECTION_STRING": "unused",
            "REPLICA_STORAGE_CONNECTION_STRING": "unused",
            "EVENTGRID_TOPIC_ENDPOINT": "http://127.0.0.1:1/",
            "APPLIANCE_CREDENTIAL_PEPPER": "unused",
        }
    )
    configure_telemetry(settings, span_exporter=InMemorySpanExporter(), metric_reader=InMemoryMetricReader())


_quiet_process_telemetry()


_AZURITE_PORT = pytest.StashKey[int]()


@pytest.fixture(scope="session")
def emulators(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[EmulatorEndpoints]:
    """Azurite behind the blob front (devhost/blob_front.py), as the stack runs it, and cosmosdb-server."""
    root = tmp_path_factory.mktemp("emulators")
    ports = EmulatorPorts(blob=free_port(), queue=free_port(), table=free_port(), cosmos=free_port())
    blob = start_blob_storage(root / "azurite", ports, root / "logs")
    request.config.stash[_AZURITE_PORT] = blob.azurite_port
    try:
        cosmos = start_cosmos(ports, root / "logs")
        try:
            yield EmulatorEndpoints(ports)
        finally:
            cosmos.stop()
    finally:
        blob.stop()


@pytest.fixture(scope="session")
def azurite_direct(emulators: EmulatorEndpoints, request: pytest.FixtureRequest) -> EmulatorEndpoints:
    """The same Azurite without the front: an endpoint that lacks Put Page From URL, for the tests of the
    engine's streaming path (chosen by probing, as for any such endpoint)."""
    return EmulatorEndpoints(replace(emulators.ports, blob=request.config.stash[_AZURITE_PORT]))
