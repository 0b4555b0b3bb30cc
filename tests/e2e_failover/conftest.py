"""Fixtures for failover end to end: migration's local stack, ARM clients and HTTP client (the same
fixtures, imported), with a short source-shutdown wait, and one Ubuntu guest image per module from which
each test replicates its own machine (a failover leaves its machine FailedOver). The stack is one the
crash tests can kill (tests.support.host_kills): the change of recovery point and the commit are each
run through a seeded host kill."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.stack import LocalStack
from tests.e2e.conftest import Appliance
from tests.e2e_migration.conftest import arm, arm_faults, client, migration_stack, module_appliance
from tests.e2e_migration.guest_images import GuestImage, linux_guest
from tests.e2e_migration.migration_client import MigrationClient
from tests.support.host_kills import crash_points_dir, crash_stack_env, host_killer

pytestmark = pytest.mark.e2e

SHUTDOWN_TIMEOUT_SECONDS = 4

__all__ = ["arm", "arm_faults", "client", "crash_points_dir", "host_killer", "module_appliance"]


@pytest.fixture(scope="package")
def local_stack(tmp_path_factory: pytest.TempPathFactory, crash_points_dir: Path) -> Iterator[LocalStack]:
    """Migration's stack, with the failover's wait for the source's shutdown a few seconds, and crash
    points, a short start grace and the start reconciler run by the tests only."""
    with migration_stack(
        tmp_path_factory,
        FAILOVER_SHUTDOWN_TIMEOUT_SECONDS=str(SHUTDOWN_TIMEOUT_SECONDS),
        **crash_stack_env(crash_points_dir),
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> GuestImage:
    return linux_guest(tmp_path_factory.mktemp("guest"))


__all__ += ["Appliance", "MigrationClient", "guest", "local_stack"]
