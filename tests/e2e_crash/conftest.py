"""Fixtures for the crash test: migration's local stack with crash points armed by file, a reconciler
grace of a few seconds, and one replicating machine with a small disk (test migrations skip hydration,
so no guest OS is needed)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.replicator import MachineReplicator, SourceDisk
from devhost.stack import LocalStack
from shared.platform.crash_points import CRASH_POINTS_ENV
from tests.e2e.conftest import Appliance
from tests.e2e_migration.conftest import arm, client, migration_stack
from tests.e2e_migration.migration_client import MigrationClient

pytestmark = pytest.mark.e2e

# Shorter than a host restart: by the time the host is back, every interrupted start is past it.
GRACE_SECONDS = 1

__all__ = ["arm", "client"]


@pytest.fixture(scope="package")
def crash_points_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("crash-points")


@pytest.fixture(scope="package")
def local_stack(tmp_path_factory: pytest.TempPathFactory, crash_points_dir: Path) -> Iterator[LocalStack]:
    with migration_stack(
        tmp_path_factory,
        SWEEPER_MIN_AGE_MINUTES="0",
        OPERATOR_START_GRACE_SECONDS=str(GRACE_SECONDS),
        **{CRASH_POINTS_ENV: str(crash_points_dir)},
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def replicating_machine(client: MigrationClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    workdir = tmp_path_factory.mktemp("appliance")
    appliance: Appliance = client.new_appliance(workdir)
    machine_id = f"vm-{uuid.uuid4().hex[:10]}"
    disk = workdir / f"{machine_id}-os.img"
    with disk.open("wb") as image:
        image.truncate(4 * 1024 * 1024)
        image.write(os.urandom(64 * 1024))
    replicator = MachineReplicator(
        machine_id,
        [SourceDisk(disk_id="os", path=disk, is_os_disk=True)],
        appliance.uploads,
        appliance.events,
    )
    appliance.api.report_machines(
        [replicator.inventory(os_type="linux", os_name="Ubuntu", os_version="20.04")]
    )
    client.enable_replication(machine_id)
    [initial] = replicator.handle_commands(appliance.api)
    client.wait_applied(machine_id, initial.cycle_id)
    return machine_id


@pytest.fixture(scope="module")
def enabled_machine(client: MigrationClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A machine whose replication is enabled (InitialReplication): enabling and stopping it are the
    actions its replication orchestration runs; no copy is uploaded, none is needed."""
    workdir = tmp_path_factory.mktemp("appliance-enabled")
    appliance: Appliance = client.new_appliance(workdir)
    machine_id = f"vm-{uuid.uuid4().hex[:10]}"
    disk = workdir / f"{machine_id}-os.img"
    with disk.open("wb") as image:
        image.truncate(1024 * 1024)
    replicator = MachineReplicator(
        machine_id,
        [SourceDisk(disk_id="os", path=disk, is_os_disk=True)],
        appliance.uploads,
        appliance.events,
    )
    appliance.api.report_machines(
        [replicator.inventory(os_type="linux", os_name="Ubuntu", os_version="20.04")]
    )
    client.enable_replication(machine_id)
    return machine_id
