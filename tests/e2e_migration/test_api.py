"""The migration routes refuse what they cannot do with the API's error shape, and change nothing."""

from __future__ import annotations

import pytest

from tests.e2e_migration.conftest import GuestMachine, machine_state
from tests.e2e_migration.migration_client import MigrationClient, wait_for

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


def test_a_cutover_waiting_for_its_final_cycle_can_be_cancelled(
    client: MigrationClient, linux_machine: GuestMachine
) -> None:
    machine, replicator, api = linux_machine.id, linux_machine.replicator, linux_machine.appliance.api
    job_id = client.start(f"/machines/{machine}/migrate", {})

    # The appliance does not fetch its commands yet: the cutover waits for the final cycle.
    def waiting() -> bool:
        steps = {s["name"]: s["status"] for s in client.job(job_id)["steps"]}
        return steps["Run final replication cycle"] == "InProgress"

    wait_for(waiting, what="the cutover waiting for its final cycle")
    response = client.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/api/jobs/{job_id}"
    job = client.wait_job(job_id, timeout=120)
    assert job["status"] == "Cancelled", job
    assert job["error"]["code"] == "Cancelled" and "cancelled by the operator" in job["error"]["message"]
    assert {s["status"] for s in job["steps"]} == {"Cancelled"}
    assert machine_state(client, machine) == "Replicating"
    events = client.http.get(f"/machines/{machine}/events").json()["events"]
    assert any(e["type"] == "Migration cancelled" for e in events), events
    # Nothing was created in Azure for it.
    assert client.tagged("migrate-job-id", job_id) == []
    again = client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "JobAlreadyFinished"
    # Replication resumes: the final cycle the appliance still runs is applied as any cycle.
    [final] = wait_for(
        lambda: replicator.handle_commands(api), interval=0.5, what="the final cycle's command"
    )
    client.wait_applied(machine, final.cycle_id)
    assert machine_state(client, machine) == "Replicating"
