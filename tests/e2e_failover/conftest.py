"""Fixtures for failover end to end: migration's local stack, ARM clients and HTTP client (the same
fixtures, imported), with a short source-shutdown wait, and one Ubuntu guest image per module from which
each test replicates its own machine (a failover leaves its machine FailedOver)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devhost.arm import LATENCY_SCALE_ENV
from devhost.emulators import EmulatorPorts
from devhost.processes import free_port
from devhost.stack import LocalStack, StackPorts
from tests.e2e.conftest import Appliance
from tests.e2e_migration.conftest import arm, arm_faults, client, module_appliance
from tests.e2e_migration.guest_images import GuestImage, linux_guest, missing_requirements
from tests.e2e_migration.migration_client import MigrationClient
from tests.support.telemetry import METRIC_EXPORT_ENV

pytestmark = pytest.mark.e2e

SHUTDOWN_TIMEOUT_SECONDS = 4

__all__ = ["arm", "arm_faults", "client", "module_appliance"]


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """As tests/e2e_migration's, with the failover's wait for the source's shutdown a few seconds."""
    if reason := missing_requirements():
        pytest.skip(reason)
    previous = os.environ.get(LATENCY_SCALE_ENV)
    os.environ[LATENCY_SCALE_ENV] = "0"
    ports = StackPorts(
        functions=free_port(),
        emulators=EmulatorPorts(blob=free_port(), queue=free_port(), table=free_port(), cosmos=free_port()),
    )
    stack = LocalStack(
        ports,
        data_dir=tmp_path_factory.mktemp("stack"),
        host_env={
            "DEVHOST_EVENTGRID_RETRY_SCHEDULE": "0.5,1,2,4",
            "DEVHOST_LOG_LEVEL": "INFO",
            "MIGRATION_FINAL_CYCLE_POLL_SECONDS": "1",
            "FAILOVER_SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_SECONDS),
            **METRIC_EXPORT_ENV,
        },
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        if previous is None:
            os.environ.pop(LATENCY_SCALE_ENV, None)
        else:
            os.environ[LATENCY_SCALE_ENV] = previous


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> GuestImage:
    return linux_guest(tmp_path_factory.mktemp("guest"))


__all__ += ["Appliance", "MigrationClient", "guest", "local_stack"]
