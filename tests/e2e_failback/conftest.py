"""Fixtures for reprotect end to end: the failover's ARM clients, HTTP client and guest image (the same
fixtures, imported), on a stack of their own whose local ARM counts Azure's 7 incremental snapshots per
disk in a 20-second window instead of 5 minutes, and whose reverse replication asks again 5 seconds after
a refusal instead of a minute (REVERSE_SNAPSHOT_LIMIT_WAIT_SECONDS; 6 asks still outlast the window). A
test meets the limit only where it means to (test_planned_failover.py), and waits it out in seconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.stack import LocalStack
from tests.e2e_failover.conftest import (
    SHUTDOWN_TIMEOUT_SECONDS,
    arm,
    arm_faults,
    client,
    guest,
    module_appliance,
)
from tests.e2e_migration.conftest import migration_stack
from tests.support.host_kills import crash_points_dir, crash_stack_env, host_killer

SNAPSHOT_WINDOW_SECONDS = 20
SNAPSHOT_LIMIT_WAIT_SECONDS = 5

__all__ = [
    "arm",
    "arm_faults",
    "client",
    "crash_points_dir",
    "guest",
    "host_killer",
    "local_stack",
    "module_appliance",
]


@pytest.fixture(scope="package")
def local_stack(tmp_path_factory: pytest.TempPathFactory, crash_points_dir: Path) -> Iterator[LocalStack]:
    with migration_stack(
        tmp_path_factory,
        arm_snapshot_window_seconds=SNAPSHOT_WINDOW_SECONDS,
        FAILOVER_SHUTDOWN_TIMEOUT_SECONDS=str(SHUTDOWN_TIMEOUT_SECONDS),
        REVERSE_SNAPSHOT_LIMIT_WAIT_SECONDS=str(SNAPSHOT_LIMIT_WAIT_SECONDS),
        **crash_stack_env(crash_points_dir),
    ) as stack:
        yield stack
