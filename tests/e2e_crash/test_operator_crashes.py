"""The Functions host killed (SIGKILL) at seeded instants while operator actions start and while their
jobs run, then restarted on the same data: every machine ends consistent (a stable state, its job
finished), no action is refused for a job that does not exist, and nothing is left in ARM.

Kill points: the three instants of the start path (`shared/platform/crash_points.py`: transition recorded
without a job document; job recorded, orchestration not started; orchestration started, no 202 yet),
held there by an armed file so the kill lands exactly; and a seeded delay after the 202 while the job
runs. After each restart, half the actions are retried with their Idempotency-Key at once (the retry
completes the start), the others are left to the reconciler (which, past its grace, settles or rolls
back). The seed is CRASH_TEST_SEED (default 17); the kills, outcomes and time are printed.

The second test does the same for the actions the machine's long-lived replication orchestration runs
(stop replication, enable it again), with a smaller seeded sample to keep it near a minute: each of
the two instants before the action is handed over twice, the instant after it and a kill while the job
runs, shuffled. The first such kill of a stop and of an enable is left to the reconciler (which delivers
an unacknowledged start again to a live orchestration, or rolls it back when none is: a stop finds the
orchestration alive, an enable of a stopped machine none); the others are retried with their key.
CRASH_TEST_HOSTED_ROUNDS repeats that sample (default 1).
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from devhost.stack import LocalStack
from shared.platform import crash_points
from tests.e2e_migration.migration_client import FINISHED, TARGET, MigrationClient, wait_for
from tests.support.host_kills import (
    DURING_JOB,
    GRACE_SECONDS,
    POINTS,
    RECONCILER,
    get,
    kill_at,
    send,
    wait_past_grace,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED = int(os.environ.get("CRASH_TEST_SEED", "17"))
KILLS = int(os.environ.get("CRASH_TEST_KILLS", "20"))
HOSTED_ROUNDS = int(os.environ.get("CRASH_TEST_HOSTED_ROUNDS", "1"))
STABLE = {"Replicating", "TestMigrated"}


def _action(client: MigrationClient, machine_id: str) -> tuple[str, dict[str, Any] | None]:
    state = get(client, f"/machines/{machine_id}").json()["state"]
    if state == "TestMigrated":
        return f"/machines/{machine_id}/test-migrate/cleanup", None
    assert state == "Replicating", state
    return f"/machines/{machine_id}/test-migrate", {"preparedManually": True}


def _settle(client: MigrationClient, machine_id: str, killed_at: float) -> str:
    """Run the reconciler past its grace and wait for the machine's job; the machine ends stable, every
    job it names exists, and what stands in ARM is what its state says: the test VM of its test
    migration when TestMigrated, nothing when Replicating."""
    wait_past_grace(killed_at)
    client.run_timer(RECONCILER)

    def stable() -> str | None:
        machine = get(client, f"/machines/{machine_id}").json()
        job_id = machine.get("activeJobId")
        if job_id:
            job = get(client, f"/jobs/{job_id}")
            assert job.status_code == 200, (
                f"machine {machine_id} names job {job_id}, which is {job.status_code}"
            )
            if job.json()["status"] not in FINISHED:
                return None
        return str(machine["state"]) if machine["state"] in STABLE else None

    state: str = wait_for(stable, timeout=60, interval=0.2, what=f"machine {machine_id} stable")
    machine = get(client, f"/machines/{machine_id}").json()
    if state == "TestMigrated":
        test_job = machine["activeJobId"]
        assert any("/virtualMachines/" in r for r in client.resources_of_job(test_job)), (
            f"{machine_id} is TestMigrated by {test_job} but its test VM is gone"
        )
    else:
        assert client.resources_of_machine(machine_id) == [], (
            f"{machine_id} is Replicating with resources left"
        )
    return state


def test_kills_during_operator_starts_and_jobs_leave_every_machine_consistent(
    client: MigrationClient, local_stack: LocalStack, replicating_machine: str, crash_points_dir: Path
) -> None:
    rng = random.Random(SEED)
    plan = [POINTS[i % len(POINTS)] for i in range(KILLS)]
    rng.shuffle(plan)
    began = time.monotonic()
    outcomes: Counter[str] = Counter()
    machine_id = replicating_machine
    for i, point in enumerate(plan):
        path, body = _action(client, machine_id)
        key = f"crash-{SEED}-{i}"
        if point == DURING_JOB:
            response = send(client, path, body, key)
            assert response.status_code == 202, response.text
            time.sleep(rng.uniform(0.0, 1.5))
            local_stack.kill_functions_host()
        else:
            kill_at(local_stack, crash_points_dir, point, functools.partial(send, client, path, body, key))
        killed_at = time.monotonic()
        local_stack.start_functions_host()

        if rng.random() < 0.5:
            # The operator retries at once with the same key: the same job, or (if the reconciler already
            # rolled the start back) a new one; never a 409 for the job the crash interrupted.
            retried = send(client, path, body, key)
            assert retried.status_code == 202, (point, retried.text)
            outcomes["retried"] += 1
        state = _settle(client, machine_id, killed_at)
        outcomes[f"{point} -> {state}"] += 1
        print(f"kill {i} at {point}: {path.rsplit('/', 1)[-1]} -> {state} ({time.monotonic() - began:.1f} s)")

        # The next action is never refused for a job that does not exist.
        probe, _ = _action(client, machine_id)
        assert probe.endswith("cleanup") == (state == "TestMigrated")

    # Back to Replicating, then nothing of any test migration is left in ARM.
    if get(client, f"/machines/{machine_id}").json()["state"] == "TestMigrated":
        assert client.run(f"/machines/{machine_id}/test-migrate/cleanup")["status"] == "Succeeded"
    jobs = get(client, f"/jobs?machineId={machine_id}&pageSize=100").json()["jobs"]
    assert all(job["status"] in FINISHED for job in jobs), [j for j in jobs if j["status"] not in FINISHED]
    not_started = [j for j in jobs if (j.get("error") or {}).get("code") == "NotStarted"]
    outcomes["jobs"] = len(jobs)
    outcomes["jobs rolled back (NotStarted)"] = len(not_started)
    outcomes["jobs succeeded"] = sum(1 for j in jobs if j["status"] == "Succeeded")
    for job in jobs:
        if job["status"] != "Succeeded" and (job.get("error") or {}).get("code") != "NotStarted":
            outcomes[f"job {job['kind']} {job['status']}: {(job.get('error') or {}).get('code')}"] += 1
    assert client.resources_of_machine(machine_id) == []
    elapsed = time.monotonic() - began
    print(f"\ncrash test seed {SEED}: {KILLS} kills in {elapsed:.0f} s; {dict(sorted(outcomes.items()))}")


HOSTED_STABLE = {"InitialReplication", "ReplicationStopped"}


def _replication_action(client: MigrationClient, machine_id: str) -> tuple[str, dict[str, Any] | None]:
    """Stop replication of an enabled machine, enable a stopped one again (its orchestration runs both)."""
    state = get(client, f"/machines/{machine_id}").json()["state"]
    if state == "ReplicationStopped":
        return "PUT", TARGET
    assert state == "InitialReplication", state
    return "DELETE", None


def _settle_hosted(client: MigrationClient, machine_id: str, killed_at: float) -> str:
    """Run the reconciler past its grace (again while the machine is not stable: a re-delivered start
    gets the grace once more) until the machine is stable and every job it names exists and ended."""
    deadline = time.monotonic() + 90

    def stable() -> str | None:
        machine = get(client, f"/machines/{machine_id}").json()
        job_id = machine.get("activeJobId")
        if job_id:
            job = get(client, f"/jobs/{job_id}")
            assert job.status_code == 200, (
                f"machine {machine_id} names job {job_id}, which is {job.status_code}"
            )
            if job.json()["status"] not in FINISHED:
                return None
        return str(machine["state"]) if machine["state"] in HOSTED_STABLE else None

    wait_past_grace(killed_at)
    while True:
        client.run_timer(RECONCILER)
        try:
            state: str = wait_for(stable, timeout=8, interval=0.2, what=f"machine {machine_id} stable")
            return state
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
            time.sleep(GRACE_SECONDS)


def test_kills_while_replication_is_stopped_and_enabled_leave_the_machine_consistent(
    client: MigrationClient, local_stack: LocalStack, enabled_machine: str, crash_points_dir: Path
) -> None:
    rng = random.Random(SEED + 1)
    before_handover = (crash_points.START_RECORDED, crash_points.JOB_RECORDED)
    plan = [
        *before_handover,
        *before_handover,
        crash_points.ORCHESTRATION_STARTED,
        DURING_JOB,
    ] * HOSTED_ROUNDS
    rng.shuffle(plan)
    # A kill before the action is handed over is retried with its key, except the first of each action:
    # that one is left to the reconciler (a stop finds its orchestration alive: delivered again; an enable
    # of a stopped machine finds none: rolled back).
    left_to_reconciler = {"DELETE": 0, "PUT": 0}
    log = local_stack.data_dir / "logs" / "functions-host.log"
    began = time.monotonic()
    outcomes: Counter[str] = Counter()
    machine_id = enabled_machine
    path = f"/machines/{machine_id}/replication"
    for i, point in enumerate(plan):
        method, body = _replication_action(client, machine_id)
        if point in before_handover and not left_to_reconciler[method]:
            left_to_reconciler[method] += 1
            retry = False
        elif point in before_handover:
            retry = True
        else:
            retry = point == crash_points.ORCHESTRATION_STARTED and rng.random() < 0.5
        key = f"crash-hosted-{SEED}-{i}"
        request = functools.partial(send, client, path, body, key, method)
        if point == DURING_JOB:
            response = request()
            assert response.status_code == 202, response.text
            time.sleep(rng.uniform(0.0, 1.5))
            local_stack.kill_functions_host()
        else:
            kill_at(local_stack, crash_points_dir, point, request)
        killed_at = time.monotonic()
        local_stack.start_functions_host()
        if retry:
            retried = request()
            assert retried.status_code == 202, (point, retried.text)
            outcomes["retried"] += 1
        state = _settle_hosted(client, machine_id, killed_at)
        outcomes[f"{method} at {point} -> {state}"] += 1
        print(f"kill {i} at {point}: {method} -> {state} ({time.monotonic() - began:.1f} s)")
        # The next action is never refused for a job that does not exist.
        next_method, _ = _replication_action(client, machine_id)
        assert (next_method == "PUT") == (state == "ReplicationStopped")

    jobs = get(client, f"/jobs?machineId={machine_id}&pageSize=100").json()["jobs"]
    assert all(job["status"] in FINISHED for job in jobs), [j for j in jobs if j["status"] not in FINISHED]
    outcomes["jobs"] = len(jobs)
    outcomes["jobs rolled back (NotStarted)"] = sum(
        1 for j in jobs if (j.get("error") or {}).get("code") == "NotStarted"
    )
    outcomes["jobs succeeded"] = sum(1 for j in jobs if j["status"] == "Succeeded")
    # Each start left to the reconciler before it was handed over was delivered again (a stop) or rolled
    # back (an enable).
    text = log.read_text(errors="replace")
    outcomes["re-delivered by the reconciler"] = text.count(
        f"on machine {machine_id} was not acknowledged by its Machine orchestration"
    )
    assert outcomes["re-delivered by the reconciler"] >= left_to_reconciler["DELETE"], dict(outcomes)
    assert outcomes["jobs rolled back (NotStarted)"] == left_to_reconciler["PUT"], dict(outcomes)
    # Every job either ran to its end or never started (rolled back): none failed half-way.
    failed = [
        j for j in jobs if j["status"] != "Succeeded" and (j.get("error") or {}).get("code") != "NotStarted"
    ]
    assert failed == [], failed
    elapsed = time.monotonic() - began
    print(
        f"\nhosted crash test seed {SEED}: {len(plan)} kills in {elapsed:.0f} s; {dict(sorted(outcomes.items()))}"
    )
