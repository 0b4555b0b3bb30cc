"""When compensation itself cannot delete (the helper VM's delete keeps failing), the job fails naming what
is left, and the sweeper timer (functions/migration_sweeper.py) deletes those leftovers by tag once the fault is
gone, in dependency order. A live test migration's resources are not swept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e_migration.conftest import GuestMachine, machine_state
from tests.e2e_migration.migration_client import MigrationClient, succeeded

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]


def test_the_sweeper_deletes_what_compensation_could_not(
    client: MigrationClient, linux_machine: GuestMachine, arm_faults: Callable[[dict[str, Any]], None]
) -> None:
    # Enough failures to outlast the delete retries of the hydration step and of the compensation.
    arm_faults(
        {
            "match": {
                "method": "DELETE",
                "resourceType": "Microsoft.Compute/virtualMachines",
                "nameRegex": "^hyd-",
            },
            "fault": "operationFailure",
            "times": 100,
        }
    )
    job = client.run(f"/machines/{linux_machine.id}/test-migrate", {}, timeout=600)
    assert job["status"] == "Failed", job
    assert "the sweeper retries them" in job["error"]["message"]
    left = client.resources_of_job(job["id"])
    assert any("/virtualMachines/hyd-" in r for r in left), left
    assert machine_state(client, linux_machine.id) == "Replicating"

    # No new test migration beside them: the 409 names them and says what to do.
    client.clear_faults()
    refused = client.post(f"/machines/{linux_machine.id}/test-migrate", {})
    assert refused.status_code == 409, refused.text
    assert "hyd-" in refused.json()["error"]["message"] and job["id"] in refused.json()["error"]["message"]
    assert machine_state(client, linux_machine.id) == "Replicating"
    # The failed job is finished: the sweeper deletes its leftovers at once, whatever their age.
    client.run_timer("arm_sweeper")
    assert client.resources_of_job(job["id"]) == []

    # Then another test migration stands: its VM must survive the sweep.
    live = client.run(f"/machines/{linux_machine.id}/test-migrate", {})
    assert succeeded(live), live
    live_resources = client.resources_of_job(live["id"])

    client.run_timer("arm_sweeper")
    assert client.resources_of_job(live["id"]) == live_resources
    assert client.run(f"/machines/{linux_machine.id}/test-migrate/cleanup")["status"] == "Succeeded"
    assert client.resources_of_job(live["id"]) == []
