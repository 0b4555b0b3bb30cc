"""The Functions host killed (SIGKILL, seeded) while "Repair replication" starts or runs, and while a
migration (cutover) does, then restarted on the same data: the machine ends consistent, its jobs exist and
end, and nothing of the machine is left in ARM but its migrated VM.

A repair has no orchestration of its own (its start queues the appliance's ResyncDisk commands: runner
COMMANDS), so its kill points are the two instants before it is handed over and a kill while the resync
runs; the reconciler completes an interrupted start itself. The cutover (its own orchestration) gets one
kill at a seeded point. Seed: CRASH_TEST_SEED (default 17).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from devhost.stack import LocalStack
from shared.platform import crash_points
from tests.e2e_crash.conftest import ReplicatingMachine, new_replicating_machine
from tests.e2e_migration.migration_client import MigrationClient, wait_for
from tests.support.host_kills import DURING_JOB, POINTS, HostKiller, get, machine_jobs

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED = int(os.environ.get("CRASH_TEST_SEED", "17"))
# What a VMware appliance reports when changed block tracking was reset: MCP-1001, repaired by a resync.
CBT_RESET = "Encountered an error while trying to fetch changed blocks"
REPAIR_POINTS = (crash_points.START_RECORDED, crash_points.JOB_RECORDED, DURING_JOB)


@pytest.fixture(scope="module")
def machine(client: MigrationClient, tmp_path_factory: pytest.TempPathFactory) -> ReplicatingMachine:
    return new_replicating_machine(client, tmp_path_factory.mktemp("appliance-repair"))


def test_kills_during_repairs_and_a_cutover_leave_the_machine_consistent(
    client: MigrationClient, local_stack: LocalStack, crash_points_dir: Path, machine: ReplicatingMachine
) -> None:
    killer = HostKiller(local_stack, client, crash_points_dir, random.Random(f"{SEED}-repair"))

    def finish(job_id: str) -> dict[str, Any]:
        return machine.run_with_appliance(client, job_id)

    for _ in killer.plan(REPAIR_POINTS):
        machine.appliance.events.cycle_failed(machine_id=machine.id, message=CBT_RESET)
        wait_for(
            lambda: get(client, f"/machines/{machine.id}").json()["health"] == "Critical",
            what="the CBT reset reported",
        )
        job = killer.run_next(machine.id, f"/machines/{machine.id}/repair", finish=finish)
        assert job["status"] == "Succeeded", job
        view = get(client, f"/machines/{machine.id}").json()
        assert view["state"] == "Replicating" and view["health"] == "Healthy", view

    # The cutover: the appliance sends the final cycle, the VM is created (the OS prepared by hand).
    killer.plan((killer.rng.choice(POINTS),))
    migrated = killer.run_next(
        machine.id, f"/machines/{machine.id}/migrate", {"preparedManually": True}, finish=finish
    )
    assert migrated["status"] in ("Succeeded", "Warning"), migrated
    assert get(client, f"/machines/{machine.id}").json()["state"] == "Migrated"
    # Nothing orphaned: the machine's only resources in ARM are those of the migration that ran.
    assert sorted(client.resources_of_machine(machine.id)) == sorted(client.resources_of_job(migrated["id"]))
    jobs = machine_jobs(client, machine.id)
    assert all(job["status"] in ("Succeeded", "Warning", "Failed") for job in jobs), jobs
    failed = [
        j for j in jobs if j["status"] == "Failed" and (j.get("error") or {}).get("code") != "NotStarted"
    ]
    assert failed == [], failed
    print(
        f"\nrepair and cutover crash test seed {SEED}: {sum(killer.outcomes.values())} kills, "
        f"{killer.seconds:.0f} s from kill to action running; {dict(sorted(killer.outcomes.items()))}"
    )
