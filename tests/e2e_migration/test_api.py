"""The migration routes refuse what they cannot do with the API's error shape, and change nothing; a cutover
waiting for its final cycle is cancelled, through two host kills during the cancel request."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from devhost.stack import LocalStack
from shared.platform import crash_points
from tests.e2e_migration.conftest import GuestMachine, machine_state
from tests.e2e_migration.migration_client import MigrationClient, wait_for
from tests.support.host_kills import assert_named_jobs_exist, get, kill_at, wait_job_ended

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
    client: MigrationClient, linux_machine: GuestMachine, local_stack: LocalStack, crash_points_dir: Path
) -> None:
    machine, replicator, api = linux_machine.id, linux_machine.replicator, linux_machine.appliance.api
    job_id = client.start(f"/machines/{machine}/migrate", {})

    # The appliance does not fetch its commands yet: the cutover waits for the final cycle.
    def waiting() -> bool:
        steps = {s["name"]: s["status"] for s in client.job(job_id)["steps"]}
        return steps["Run final replication cycle"] == "InProgress"

    wait_for(waiting, what="the cutover waiting for its final cycle")

    def cancel() -> httpx.Response:
        return client.post(f"/jobs/{job_id}/cancel")

    # The host killed once the cancel is checked, before its event is raised: nothing was delivered, the
    # cutover still waits after the restart, the machine names it, and the cancel is sent again.
    kill_at(local_stack, crash_points_dir, crash_points.CANCEL_CHECKED, cancel)
    local_stack.start_functions_host()
    assert assert_named_jobs_exist(client, machine)["activeJobId"] == job_id
    wait_for(waiting, what="the cutover still waiting after the restart")
    assert get(client, f"/jobs/{job_id}").json()["status"] == "InProgress"
    # Killed again once the resent cancel's event is raised, before its 202: Durable keeps the event, so
    # the cancel is delivered although its request got no answer.
    kill_at(local_stack, crash_points_dir, crash_points.ORCHESTRATION_STARTED, cancel)
    local_stack.start_functions_host()
    job = wait_job_ended(client, job_id, timeout=120)
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
