"""Killing the Functions host (SIGKILL) while an operator action starts or its job runs, then restarting it
on the same data: the crash tests' one way of doing it, shared by `tests/e2e_crash` and the flows that fold
kills into their own actions (`tests/e2e_failback`).

Kill points: the three instants of the start path (`shared/platform/crash_points.py`: transition recorded
without a job document; job recorded, orchestration not started or not woken; orchestration started or
woken, no 202 yet), held there by an armed file so the kill lands exactly; and a seeded delay after the 202
while the job runs. After the restart the action is retried with its Idempotency-Key or left to the start
reconciler, which these stacks take off its schedule (`AzureWebJobs.start_reconciler.Disabled`): it runs
only when a test runs it, past a grace shorter than a host restart, so it never meets a start in flight.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devhost.stack import LocalStack
from shared.platform import crash_points
from shared.platform.crash_points import CRASH_POINTS_ENV
from tests.e2e_migration.migration_client import FINISHED, MigrationClient, wait_for

DURING_JOB = "during-job"
START_POINTS = (crash_points.START_RECORDED, crash_points.JOB_RECORDED, crash_points.ORCHESTRATION_STARTED)
POINTS = (*START_POINTS, DURING_JOB)
# Before the action is handed to what runs it: only a retry or the reconciler can finish or undo it.
BEFORE_HANDOVER = (crash_points.START_RECORDED, crash_points.JOB_RECORDED)
RECONCILER = "start_reconciler"
# Shorter than a host restart: by the time the host is back, every interrupted start is past it.
GRACE_SECONDS = 1
NOT_STARTED = "NotStarted"
SEED = int(os.environ.get("CRASH_TEST_SEED", "17"))


def crash_stack_env(points_dir: Path) -> dict[str, str]:
    """The host settings of a stack the crash tests kill: crash points armed by file, a short grace, and
    the reconciler off its schedule (the tests run it; a scheduled run could meet a start in flight)."""
    return {
        CRASH_POINTS_ENV: str(points_dir),
        "OPERATOR_START_GRACE_SECONDS": str(GRACE_SECONDS),
        f"AzureWebJobs.{RECONCILER}.Disabled": "true",
    }


def get(client: MigrationClient, path: str) -> httpx.Response:
    # A connection kept alive across the restart is dead: a fresh one answers.
    for _ in range(3):
        try:
            return client.http.get(path)
        except httpx.TransportError:
            time.sleep(0.2)
    return client.http.get(path)


def send(
    client: MigrationClient, path: str, body: dict[str, Any] | None, key: str, method: str = "POST"
) -> httpx.Response:
    return client.http.request(method, path, json=body, headers={"Idempotency-Key": key})


def kill_at(local_stack: LocalStack, points_dir: Path, point: str, request: Callable[[], Any]) -> None:
    """Arm `point`, send the request, SIGKILL the host once the request holds there."""
    reached = points_dir / f"{point}.reached"
    reached.unlink(missing_ok=True)
    (points_dir / f"{point}.armed").write_text("")
    errors: list[BaseException] = []
    answers: list[str] = []

    def sender() -> None:
        try:
            answers.append(request().text)
        except httpx.TransportError as error:  # the host died under the request, as intended
            errors.append(error)

    thread = threading.Thread(target=sender)
    thread.start()
    wait_for(lambda: reached.exists() or answers, timeout=30, interval=0.02, what=f"crash point {point}")
    assert not answers, f"the request never reached {point}: {answers}"
    local_stack.kill_functions_host()
    thread.join(timeout=30)
    assert errors, f"the request at {point} was answered although the host was killed"
    reached.unlink()


def wait_past_grace(killed_at: float) -> None:
    time.sleep(max(0.0, killed_at + GRACE_SECONDS - time.monotonic()))


def named_jobs(machine: dict[str, Any]) -> set[str]:
    """Every job the machine's view names: its active job, its reverse protection's, its planned failback's."""
    named = {machine.get("activeJobId")}
    for part in ("reverseProtection", "plannedFailback"):
        named.add((machine.get(part) or {}).get("jobId"))
    return {job_id for job_id in named if job_id}


def assert_named_jobs_exist(client: MigrationClient, machine_id: str) -> dict[str, Any]:
    """No action can be refused for a job that does not exist: every job the machine names has a document."""
    machine: dict[str, Any] = get(client, f"/machines/{machine_id}").json()
    for job_id in named_jobs(machine):
        job = get(client, f"/jobs/{job_id}")
        assert job.status_code == 200, f"machine {machine_id} names job {job_id}, which is {job.status_code}"
    return machine


def machine_jobs(client: MigrationClient, machine_id: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = get(client, f"/jobs?machineId={machine_id}&pageSize=100").json()["jobs"]
    return jobs


def rolled_back(job: dict[str, Any]) -> bool:
    return (job.get("error") or {}).get("code") == NOT_STARTED


@dataclass(frozen=True)
class Kill:
    point: str
    retried: bool  # the operator sends the request again at once with its key; else the reconciler decides
    delay: float = 0.0  # for DURING_JOB: how long after the 202


@dataclass
class HostKiller:
    """Seeded kills folded into a flow's own actions: `plan` draws them, `run_next` performs the flow's
    next action through the next one and hands back the job that did the action (the interrupted one, or
    the one run again after the reconciler rolled the interrupted start back), ended."""

    stack: LocalStack
    client: MigrationClient
    points_dir: Path
    rng: random.Random
    planned: list[Kill] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    # From each killed request to its job found again after the restart (the kills' cost).
    seconds: float = 0.0

    def plan(self, points: tuple[str, ...] = POINTS, *, retried: bool | None = None) -> list[Kill]:
        """One kill at each of `points`, shuffled, for the next actions. `retried` says whether the
        operator sends each request again at once with its key; by default the kills before the hand-over
        alternate, the first left to the reconciler (so both ways are taken), the others are drawn."""
        order = list(points)
        self.rng.shuffle(order)
        kills = []
        before_handover = 0
        for point in order:
            again = self.rng.random() < 0.5 if retried is None else retried
            if point in BEFORE_HANDOVER and retried is None:
                again = before_handover % 2 == 1
                before_handover += 1
            kills.append(self._kill(point, again))
        self.planned += kills
        return kills

    def add(self, point: str, *, retried: bool) -> None:
        """A kill chosen by the flow (where it must take a given way), for its next action."""
        self.planned.append(self._kill(point, retried))

    def _kill(self, point: str, retried: bool) -> Kill:
        return Kill(point, retried, self.rng.uniform(0.0, 1.5) if point == DURING_JOB else 0.0)

    def run_next(
        self,
        machine_id: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        finish: Callable[[str], dict[str, Any]],
        method: str = "POST",
    ) -> dict[str, Any]:
        assert self.planned, "no kill left in the plan"
        return self.run(self.planned.pop(0), machine_id, path, body, finish=finish, method=method)

    def run(
        self,
        kill: Kill,
        machine_id: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        finish: Callable[[str], dict[str, Any]],
        method: str = "POST",
    ) -> dict[str, Any]:
        """Send the action, kill the host at `kill.point`, restart it, retry or run the reconciler past its
        grace; every job the machine names then exists. `finish(job_id)` waits for a job to end (answering
        the appliance's commands where the job needs it). A start the reconciler rolled back leaves the
        machine as it was and the action is not refused: it is run again, under a new key."""
        began = time.monotonic()
        action = path.rsplit("/", 1)[-1] if method == "POST" else f"{method} {path.rsplit('/', 1)[-1]}"
        state_before = get(self.client, f"/machines/{machine_id}").json()["state"]
        known = {job["id"] for job in machine_jobs(self.client, machine_id)}
        key = f"kill-{uuid.uuid4().hex[:12]}"
        request = functools.partial(send, self.client, path, body, key, method)
        job_id: str | None = None
        if kill.point == DURING_JOB:
            response = request()
            assert response.status_code == 202, response.text
            job_id = str(response.json()["jobId"])
            time.sleep(kill.delay)
            self.stack.kill_functions_host()
        else:
            kill_at(self.stack, self.points_dir, kill.point, request)
        killed_at = time.monotonic()
        self.stack.start_functions_host()
        if kill.retried:
            retried = request()
            assert retried.status_code == 202, (kill, retried.text)
            assert job_id is None or retried.json()["jobId"] == job_id, (kill, retried.text)
            job_id = str(retried.json()["jobId"])
        wait_past_grace(killed_at)
        self.client.run_timer(RECONCILER)
        assert_named_jobs_exist(self.client, machine_id)
        if job_id is None:
            # Killed before the 202 and not retried: the reconciler wrote the job if the crash came first.
            new = [job["id"] for job in machine_jobs(self.client, machine_id) if job["id"] not in known]
            assert len(new) == 1, (kill, f"the interrupted request left the jobs {new}, not one")
            job_id = new[0]
        self.seconds += time.monotonic() - began
        job = finish(job_id)
        if rolled_back(job):
            # Only a start nobody finished is rolled back: a retry completes it.
            assert not kill.retried, (kill, job)
            machine = assert_named_jobs_exist(self.client, machine_id)
            assert machine["state"] == state_before, (kill, machine["state"], state_before)
            again = send(self.client, path, body, f"kill-{uuid.uuid4().hex[:12]}", method)
            assert again.status_code == 202, (kill, again.text)
            job = finish(str(again.json()["jobId"]))
        assert_named_jobs_exist(self.client, machine_id)
        how = "retried" if kill.retried else "left to the reconciler"
        ending = "rolled back, run again" if job["id"] != job_id else job["status"]
        self.outcomes[f"{action} at {kill.point} ({how}): {ending}"] += 1
        print(f"killed at {kill.point} during {action} ({how}): {ending}")
        return job


def wait_job_ended(client: MigrationClient, job_id: str, timeout: float = 300) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = get(client, f"/jobs/{job_id}").json()
        return job if job["status"] in FINISHED else None

    result: dict[str, Any] = wait_for(ended, timeout=timeout, interval=0.2, what=f"job {job_id} ended")
    return result


@pytest.fixture(scope="session")
def crash_points_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("crash-points")


@pytest.fixture
def host_killer(
    request: pytest.FixtureRequest, local_stack: LocalStack, client: MigrationClient, crash_points_dir: Path
) -> Iterator[HostKiller]:
    """A HostKiller seeded per module (CRASH_TEST_SEED, default 17) for a flow on a crash stack
    (`crash_stack_env`); prints the kills' outcomes and cost at the end of the test."""
    killer = HostKiller(
        local_stack, client, crash_points_dir, random.Random(f"{SEED}-{request.node.module.__name__}")
    )
    yield killer
    print(
        f"\nhost kills (seed {SEED}): {sum(killer.outcomes.values())} in {killer.seconds:.0f} s; "
        f"{dict(sorted(killer.outcomes.items()))}"
    )
