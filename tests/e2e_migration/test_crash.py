"""A Functions host killed in the middle of a hydration (while the preparation script runs) resumes the
job from its Durable history after a restart: the extension is not run twice, the job completes with the
toolkit's steps, and nothing temporary is left."""

from __future__ import annotations

import pytest

from devhost.stack import LocalStack
from tests.e2e_migration.conftest import GuestMachine
from tests.e2e_migration.migration_client import MigrationClient, succeeded, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]


def test_a_host_crash_during_hydration_resumes_and_cleans_up(
    client: MigrationClient, linux_machine: GuestMachine, local_stack: LocalStack
) -> None:
    job_id = client.start(f"/machines/{linux_machine.id}/test-migrate", {})

    def preparing() -> bool:
        steps = {s["name"]: s["status"] for s in client.job(job_id)["steps"]}
        return steps.get("Run preparation script") == "InProgress"

    wait_for(preparing, interval=0.05, what="the preparation script running")
    local_stack.kill_functions_host()
    local_stack.start_functions_host()

    job = client.wait_job(job_id)
    assert succeeded(job), job
    assert any(s["name"].startswith("Prepare: validate_fstab") for s in job["steps"])
    left = client.resources_of_job(job_id)
    assert not [r for r in left if "/hyd-" in r], left
    assert client.run(f"/machines/{linux_machine.id}/test-migrate/cleanup")["status"] == "Succeeded"
    assert client.resources_of_job(job_id) == []
