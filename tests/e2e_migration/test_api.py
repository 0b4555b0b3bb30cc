"""The migration routes refuse what they cannot do with the API's error shape, and change nothing."""

from __future__ import annotations

import pytest

from tests.e2e_migration.conftest import GuestMachine, machine_state
from tests.e2e_migration.migration_client import MigrationClient

pytestmark = [pytest.mark.e2e, pytest.mark.root]


def test_refusals(client: MigrationClient, linux_machine: GuestMachine) -> None:
    machine = linux_machine.id
    before = client.machine(machine)["activeJobId"]
    response = client.post(f"/machines/{machine}/test-migrate", {"recoveryPoint": "no-such-point"})
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "recoveryPoint"
    response = client.post(f"/machines/{machine}/migrate", {"shutdownsource": True})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ValidationFailed"
    response = client.post(f"/machines/{machine}/test-migrate/cleanup")
    assert response.status_code == 409
    assert response.json()["error"]["details"][0]["from"] == "Replicating"
    assert client.post("/machines/no-such-machine/migrate", {}).status_code == 404
    assert machine_state(client, machine) == "Replicating"
    assert client.machine(machine)["activeJobId"] == before
