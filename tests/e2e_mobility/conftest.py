"""Fixtures for the Mobility service end to end: the whole local stack (the migration suites' stack, with
the local ARM endpoint at latency 0, so an agent's recovery point can be test-migrated), an appliance, and
a real Debian server with sshd in a chroot (see server.py). The stack is one the crash tests can kill
(tests.support.host_kills): the push install and update each run through a seeded host kill."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.stack import LocalStack
from tests.e2e.conftest import new_appliance, operator
from tests.e2e_migration.conftest import arm, client, migration_stack
from tests.e2e_mobility.server import SshServer, debootstrap
from tests.support.host_kills import crash_points_dir, crash_stack_env, host_killer

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]

__all__ = ["arm", "client", "crash_points_dir", "host_killer", "new_appliance", "operator"]


@pytest.fixture(scope="package")
def local_stack(tmp_path_factory: pytest.TempPathFactory, crash_points_dir: Path) -> Iterator[LocalStack]:
    with migration_stack(tmp_path_factory, **crash_stack_env(crash_points_dir)) as stack:
        yield stack


@pytest.fixture(scope="session")
def debian_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root for debootstrap, chroot and loop devices")
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed: run scripts/install-system-deps.sh")
    return debootstrap(tmp_path_factory.mktemp("server") / "rootfs")


@pytest.fixture(scope="module")
def server(debian_rootfs: Path) -> Iterator[SshServer]:
    ssh = SshServer(debian_rootfs)
    ssh.start()
    try:
        yield ssh
    finally:
        ssh.stop()


__all__ += ["debian_rootfs", "local_stack", "server"]
