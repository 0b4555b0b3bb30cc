"""Fixtures for the crash test: migration's local stack with crash points armed by file and the start
reconciler run by the tests only, past a grace of a second (tests.support.host_kills), and one replicating
machine with a small disk (test migrations skip hydration, so no guest OS is needed)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.replicator import MachineReplicator, SourceDisk
from devhost.stack import LocalStack
from tests.e2e.conftest import Appliance
from tests.e2e_migration.conftest import arm, client, migration_stack
from tests.e2e_migration.migration_client import FINISHED, MigrationClient, wait_for
from tests.support.host_kills import crash_points_dir, crash_stack_env, get

pytestmark = pytest.mark.e2e

__all__ = ["arm", "client", "crash_points_dir"]


@pytest.fixture(scope="package")
def local_stack(tmp_path_factory: pytest.TempPathFactory, crash_points_dir: Path) -> Iterator[LocalStack]:
    with migration_stack(
        tmp_path_factory, SWEEPER_MIN_AGE_MINUTES="0", **crash_stack_env(crash_points_dir)
    ) as stack:
        yield stack


@dataclass(frozen=True)
class ReplicatingMachine:
    id: str
    replicator: MachineReplicator
    appliance: Appliance

    def run_with_appliance(
        self, client: MigrationClient, job_id: str, timeout: float = 120
    ) -> dict[str, Any]:
        """Wait for a job to end while the appliance carries out the machine's commands (resync, final
        cycle), as its poll loop would."""

        def ended() -> dict[str, Any] | None:
            self.replicator.handle_commands(self.appliance.api)
            job: dict[str, Any] = get(client, f"/jobs/{job_id}").json()
            return job if job["status"] in FINISHED else None

        result: dict[str, Any] = wait_for(ended, timeout=timeout, interval=0.5, what=f"job {job_id} ended")
        return result


def new_replicating_machine(client: MigrationClient, workdir: Path) -> ReplicatingMachine:
    """A machine with one small disk, replicated (its initial copy applied) by its own appliance."""
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
    return ReplicatingMachine(machine_id, replicator, appliance)


@pytest.fixture(scope="module")
def replicating_machine(client: MigrationClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    return new_replicating_machine(client, tmp_path_factory.mktemp("appliance")).id


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
