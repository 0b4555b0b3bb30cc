"""A request sent again without an Idempotency-Key (a client that timed out and resends) gets the job the
first one started while that job runs, through the real host, Durable extension, Cosmos emulator and
local ARM endpoint: the same method, path, JSON body (however its keys are spaced) and caller within
OPERATOR_RETRY_WINDOW_SECONDS. Another body while it runs is a 409 naming the job; once the job has ended
the same body is a new request, refused or run as the machine's state says."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e_migration.migration_client import MigrationClient

pytestmark = pytest.mark.e2e


def _send(client: MigrationClient, path: str, body: bytes) -> httpx.Response:
    return client.http.post(path, content=body, headers={"Content-Type": "application/json"})


def test_the_same_request_sent_again_while_its_job_runs_gets_that_job(
    client: MigrationClient, replicating_machine: str
) -> None:
    machine_id = replicating_machine
    path = f"/machines/{machine_id}/test-migrate"

    first = _send(client, path, b'{"preparedManually": true}')
    assert first.status_code == 202, first.text
    job_id = first.json()["jobId"]
    # Copying the disks, importing them and creating the VM take seconds: the job runs during what follows.
    assert client.http.get(f"/jobs/{job_id}").json()["status"] == "InProgress"

    resent = _send(client, path, b'{ "preparedManually" :true }\n')
    assert resent.status_code == 202, resent.text
    assert resent.json()["jobId"] == job_id and resent.headers["Location"] == first.headers["Location"]

    other = _send(client, path, b'{"preparedManually": true, "recoveryPoint": "latest"}')
    assert other.status_code == 409, other.text
    error = other.json()["error"]
    assert error["code"] == "ForbiddenTransition" and job_id in error["message"], error
    assert {"activeJobId": job_id, "kind": "TestMigration", "status": "InProgress"} in error["details"]

    ended = client.wait_job(job_id, timeout=300)
    assert ended["status"] in {"Succeeded", "Warning"}, ended
    # The job has ended: the same body is a new request, which the standing test migration refuses.
    again = _send(client, path, b'{"preparedManually": true}')
    assert again.status_code == 409, again.text

    cleaned = client.run(f"/machines/{machine_id}/test-migrate/cleanup")
    assert cleaned["status"] == "Succeeded", cleaned
    jobs = client.http.get(f"/jobs?machineId={machine_id}&kind=TestMigration").json()["jobs"]
    assert [j["id"] for j in jobs] == [job_id]
    assert client.resources_of_machine(machine_id) == []
