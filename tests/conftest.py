"""Shared fixtures: the protocol emulators are started once per test session on free ports."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from devhost.emulators import EmulatorEndpoints, EmulatorPorts, start_azurite, start_cosmos
from devhost.processes import free_port

# The local Cosmos emulator uses a self-signed certificate (connection_verify=False locally only).
warnings.filterwarnings("ignore", message="Unverified HTTPS request")


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorEndpoints]:
    root = tmp_path_factory.mktemp("emulators")
    ports = EmulatorPorts(blob=free_port(), queue=free_port(), table=free_port(), cosmos=free_port())
    azurite = start_azurite(root / "azurite", ports, root / "logs")
    try:
        cosmos = start_cosmos(ports, root / "logs")
        try:
            yield EmulatorEndpoints(ports)
        finally:
            cosmos.stop()
    finally:
        azurite.stop()
