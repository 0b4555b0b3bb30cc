"""A LocalStack per test module on free ports, with the health timings shortened so that timeouts fire
in seconds (the product reads them from app settings; see docs/health.md).

tests/e2e will have a session-wide `local_stack`; these tests need their own settings (short upload and
disposal timeouts, and for the monitor tiny RPO/heartbeat thresholds), so they start their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.stack import LocalStack, StackPorts
from tests.e2e_health.client import Stack

# Fast, not instant: an upload or disposal that is merely in flight must not trip them.
FAST_TIMINGS = {
    "HEALTH_UPLOAD_TIMEOUT_SECONDS": "6",
    "HEALTH_DISPOSE_TIMEOUT_SECONDS": "4",
    "HEALTH_DISPOSE_RETRY_SECONDS": "1",
}


def start_stack(data_dir: Path, host_env: dict[str, str]) -> LocalStack:
    ports = StackPorts.free()
    stack = LocalStack(
        ports=ports, data_dir=data_dir, host_env={"DEVHOST_EVENTGRID_RETRY_SCHEDULE": "1,2,5", **host_env}
    )
    stack.start()
    return stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
    extra: dict[str, str] = getattr(request.module, "HOST_ENV", {})
    local = start_stack(tmp_path_factory.mktemp("stack"), {**FAST_TIMINGS, **extra})
    try:
        yield Stack(local)
    finally:
        local.stop()
