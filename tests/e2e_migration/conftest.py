"""Fixtures for migration end to end: the local stack with the ARM endpoint at latency 0, the operator's
target network in the local ARM, and replicating machines whose disks hold a real guest OS."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.replicator import MachineReplicator, SourceDisk
from devhost.arm import LATENCY_SCALE_ENV
from devhost.stack import LocalStack, StackPorts
from shared.platform.arm_clients import ArmClients, build_arm_clients
from shared.platform.settings import Settings
from tests.e2e.conftest import Appliance
from tests.e2e_migration.guest_images import GuestImage, linux_guest, missing_requirements
from tests.e2e_migration.migration_client import MigrationClient, ensure_operator_network, wait_for
from tests.support.host_kills import crash_points_dir, crash_stack_env, host_killer
from tests.support.telemetry import METRIC_EXPORT_ENV

pytestmark = pytest.mark.e2e


@contextmanager
def migration_stack(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    arm_snapshot_window_seconds: float | None = None,
    **host_env: str,
) -> Iterator[LocalStack]:
    """The local stack with ARM latencies off (the waits are counted, not timed), fast final-cycle polls
    and metric exports; `host_env` adds to the host's settings (other end-to-end suites reuse it), and
    `arm_snapshot_window_seconds` shortens the local ARM's 5-minute incremental-snapshot window."""
    if reason := missing_requirements():
        pytest.skip(reason)
    previous = os.environ.get(LATENCY_SCALE_ENV)
    os.environ[LATENCY_SCALE_ENV] = "0"
    ports = StackPorts.free()
    stack = LocalStack(
        ports,
        data_dir=tmp_path_factory.mktemp("stack"),
        host_env={
            "DEVHOST_EVENTGRID_RETRY_SCHEDULE": "0.5,1,2,4",
            "DEVHOST_LOG_LEVEL": "INFO",
            "MIGRATION_FINAL_CYCLE_POLL_SECONDS": "1",
            # Throttling and busy resources are waited out for a few seconds only: the fault cases that
            # outlast it fail in seconds, not minutes.
            "ARM_RETRY_BUDGET_SECONDS": "5",
            "MIGRATION_SHUTDOWN_TIMEOUT_SECONDS": "10",
            **METRIC_EXPORT_ENV,
            **host_env,
        },
        arm_snapshot_window_seconds=arm_snapshot_window_seconds,
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


# Package scope, here and in every e2e package: a stack stops after its package's last test. A stack kept
# to the session's end goes on running its machines' orchestrations (the failback package's reverse cycles
# poll an appliance that is gone, every second, their history growing) and took most of a core from every
# later test.
@pytest.fixture(scope="package")
def local_stack(tmp_path_factory: pytest.TempPathFactory, crash_points_dir: Path) -> Iterator[LocalStack]:
    # The sweeper test runs it on demand: no age threshold. The cutover's cancel is killed at its crash
    # points (test_api.py), so the stack is one the crash tests can kill (tests.support.host_kills).
    with migration_stack(
        tmp_path_factory, SWEEPER_MIN_AGE_MINUTES="0", **crash_stack_env(crash_points_dir)
    ) as stack:
        yield stack


@pytest.fixture(scope="package")
def arm(local_stack: LocalStack) -> Iterator[ArmClients]:
    with build_arm_clients(Settings.from_environ(local_stack.settings)) as clients:
        ensure_operator_network(clients)
        yield clients


@pytest.fixture(scope="package")
def client(local_stack: LocalStack, arm: ArmClients) -> MigrationClient:
    return MigrationClient(local_stack, arm)


@pytest.fixture
def arm_faults(client: MigrationClient) -> Iterator[Callable[[dict[str, Any]], None]]:
    yield client.add_fault
    client.clear_faults()


@dataclass
class GuestMachine:
    replicator: MachineReplicator
    guest: GuestImage
    appliance: Appliance

    @property
    def id(self) -> str:
        return self.replicator.machine_id


def replicate_guest(
    appliance: Appliance,
    client: MigrationClient,
    guest: GuestImage,
    extra_disks: dict[str, int] | None = None,
) -> GuestMachine:
    machine_id = f"vm-{uuid.uuid4().hex[:10]}"
    disks = [SourceDisk(disk_id="os", path=guest.path, is_os_disk=True)]
    for disk_id, size in (extra_disks or {}).items():
        path = guest.path.with_name(f"{machine_id}-{disk_id}.img")
        with path.open("wb") as image:
            image.truncate(size)
            image.write(os.urandom(64 * 1024))
        disks.append(SourceDisk(disk_id=disk_id, path=path))
    replicator = MachineReplicator(machine_id, disks, appliance.uploads, appliance.events)
    appliance.api.report_machines(
        [replicator.inventory(os_type=guest.os_type, os_name=guest.os_name, os_version=guest.os_version)]
    )
    client.enable_replication(machine_id)
    [initial] = replicator.handle_commands(appliance.api)
    client.wait_applied(machine_id, initial.cycle_id)
    return GuestMachine(replicator, guest, appliance)


@pytest.fixture(scope="module")
def module_appliance(client: MigrationClient, tmp_path_factory: pytest.TempPathFactory) -> Appliance:
    appliance: Appliance = client.new_appliance(tmp_path_factory.mktemp("appliance"))
    return appliance


@pytest.fixture(scope="module")
def linux_machine(
    module_appliance: Appliance, client: MigrationClient, tmp_path_factory: pytest.TempPathFactory
) -> GuestMachine:
    """One replicating Ubuntu 20.04 machine (OS disk + a data disk) shared by a module's tests; each test
    leaves it Replicating."""
    guest = linux_guest(tmp_path_factory.mktemp("guest"))
    return replicate_guest(module_appliance, client, guest, extra_disks={"data": 8 * 1024 * 1024})


def machine_state(client: MigrationClient, machine_id: str) -> str:
    return str(client.machine(machine_id)["state"])


def http_ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 300, response.text
    body: dict[str, Any] = response.json()
    return body


__all__ = [
    "GuestMachine",
    "Path",
    "crash_points_dir",
    "host_killer",
    "http_ok",
    "machine_state",
    "replicate_guest",
    "wait_for",
]
