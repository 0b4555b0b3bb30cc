"""The Mobility routes over real HTTP on the local stack (local Functions host, Cosmos emulator, Azurite):
an installer uploaded with its Content-Length, listed and resolved; the install command for a machine an
appliance reported; the passphrase and an agent registering with it."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Appliance, Operator

pytestmark = [pytest.mark.e2e]
MIB = 1024 * 1024


def test_catalog_install_command_and_registration_over_http(
    operator: Operator, new_appliance: Callable[[], Appliance]
) -> None:
    version = f"9.{uuid.uuid4().int % 1000 + 100}.0.0"  # newer than anything another run uploaded
    name = f"Microsoft-ASR_UA_{version}_UBUNTU-20.04-64_GA_20230525_release.tar.gz"
    data = os.urandom(9 * MIB)
    uploaded = operator.call("PUT", f"/mobility/installers/{name}", content=data)
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert operator.call("PUT", "/mobility/installers/setup.exe", content=b"x").status_code == 400

    listed = operator.call("GET", "/mobility/installers").json()["installers"]
    assert any(i["fileName"] == name and i["sizeBytes"] == len(data) for i in listed)
    resolved = operator.call("GET", "/mobility/installers/resolve", params={"os": "Ubuntu 20.04.6 LTS"})
    assert resolved.status_code == 200 and resolved.json()["installer"]["fileName"] == name
    refused = operator.call("GET", "/mobility/installers/resolve", params={"os": "Ubuntu 22.04"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "OsNotSupported"

    appliance = new_appliance()
    machine_id = f"vm-{uuid.uuid4().hex[:10]}"
    appliance.api.report_machines(
        [
            {
                "id": machine_id,
                "displayName": machine_id,
                "osType": "linux",
                "osName": "Ubuntu",
                "osVersion": "20.04",
                "firmware": "BIOS",
                "disks": [{"id": "sda", "sizeBytes": 4 * MIB, "isOsDisk": True}],
            }
        ]
    )
    command = operator.call(
        "GET",
        f"/machines/{machine_id}/mobility/install-command",
        params={"csEndpoint": "10.1.0.4", "passphraseFilePath": "/var/passphrase.txt"},
    )
    assert command.status_code == 200, command.text
    assert f"tar -xvf {name}" in [line for step in command.json()["steps"] for line in step["commands"]]

    issued = operator.call("POST", "/mobility/passphrase")
    assert issued.status_code == 201 and issued.headers["cache-control"] == "no-store"
    wrong = operator.call(
        "POST", "/mobility/agents/register", json={"passphrase": "x", "machineId": machine_id}
    )
    assert wrong.status_code == 401
    agent = operator.call(
        "POST",
        "/mobility/agents/register",
        json={"passphrase": issued.json()["passphrase"], "machineId": machine_id},
    )
    assert agent.status_code == 201, agent.text
    assert agent.json()["credential"].startswith(agent.json()["agentId"] + ".")
    assert operator.call("GET", "/mobility/passphrase").json()["exists"] is True
