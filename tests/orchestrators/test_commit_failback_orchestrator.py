"""The CommitFailback job through the real SDK replay: nothing is deleted before the replicas hold the
final snapshots, the deletions run VM -> disks -> snapshots, the appliance is told to delete its copy of
the disks last, and a failing step ends the job at that step without running the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devhost.durable import ManualClock
from orchestrators.failback import activities as failback_activities
from orchestrators.failback import commit as commit_flow
from orchestrators.failback import commit_activities, planned_activities
from orchestrators.failback.contracts import CommandView, FailbackRun, Queued, StepResult
from orchestrators.failback.planned_activities import Recorded
from orchestrators.hydration import activities as hydration_activities
from orchestrators.hydration.contracts import Done, JobProgress
from shared.failback.commit import CommitOutcome
from tests.orchestrators.conftest import Run, run, running

BLUEPRINTS = [
    commit_flow.bp,
    commit_activities.bp,
    planned_activities.bp,
    failback_activities.bp,
    hydration_activities.bp,
]
MACHINE = "vm-1"
JOB = "job-0000000000cf"


class World:
    """What the stubs answer: the check, and the step (by name) whose activity fails every attempt."""

    def __init__(self, *, check_ok: bool = True, failing: str | None = None, refuse: bool = False) -> None:
        self.check_ok = check_ok
        self.failing = failing
        self.refuse = refuse  # the appliance answers the delete with an error

    def stubs(self) -> dict[str, Any]:
        def check(_: Any) -> Any:
            if self.check_ok:
                return StepResult(ok=True, message="2 final snapshot(s)").model_dump(mode="json")
            return StepResult(ok=False, message="no final snapshot for disk data").model_dump(mode="json")

        def sync(_: Any) -> Any:
            return Recorded(done=True, values={"os": "s-os", "data": "s-data"}, message="copied").model_dump(
                mode="json"
            )

        def delete(payload: Any) -> Any:
            if payload["step"] == self.failing:
                raise RuntimeError("ScopeLocked: the resource group is locked")
            return Recorded(done=True, message=f"deleted for {payload['step']}").model_dump(mode="json")

        def queue(payload: Any) -> Any:
            command_id = f"{payload['job_id']}-{payload['command']}"
            return Queued(command_ids=[command_id], poll_seconds=5, timeout_seconds=60).model_dump(
                mode="json"
            )

        def read(_: Any) -> Any:
            if self.refuse:
                return CommandView(
                    acknowledged=True, error_code="DiskSnapshotFailed", error_message="datastore offline"
                ).model_dump(mode="json")
            return CommandView(acknowledged=True).model_dump(mode="json")

        return {
            "check_commit_prerequisites": check,
            "sync_replicas": sync,
            "delete_commit_resources": delete,
            "queue_failback_command": queue,
            "read_command": read,
            "record_job_progress": lambda p: (JobProgress.model_validate(p), Done().model_dump())[1],
            "end_commit_failback_job": lambda p: Done().model_dump(),
        }


def _run(world: World, tmp_path: Path) -> Run:
    async def scenario() -> Run:
        async with running(BLUEPRINTS, world.stubs(), tmp_path, ManualClock()) as r:
            payload = FailbackRun(machine_id=MACHINE, job_id=JOB).model_dump(mode="json")
            instance = await r.start(commit_flow.COMMIT_FAILBACK, JOB, payload)
            status = await r.finish(instance, step=10)
            assert status["runtimeStatus"] == "Completed", status
            return r

    result: Run = run(scenario())
    return result


def _outcome(r: Run) -> CommitOutcome:
    (ended,) = r.calls.of("end_commit_failback_job")
    return CommitOutcome.model_validate(ended)


def _work(r: Run) -> list[str]:
    """The calls that do something, without the job's progress writes."""
    return [n for n in r.calls.names() if n not in ("record_job_progress", "read_command")]


def test_the_replicas_are_synced_before_anything_is_deleted_and_the_appliance_copy_goes_last(
    tmp_path: Path,
) -> None:
    r = _run(World(), tmp_path)
    assert _work(r) == [
        "check_commit_prerequisites",
        "sync_replicas",
        "delete_commit_resources",
        "delete_commit_resources",
        "delete_commit_resources",
        "queue_failback_command",
        "end_commit_failback_job",
    ]
    assert [d["step"] for d in r.calls.of("delete_commit_resources")] == [
        "Delete the Azure VM and its NICs",
        "Delete the Azure disks",
        "Delete the reverse snapshots",
    ]
    (queued,) = r.calls.of("queue_failback_command")
    assert queued["command"] == "deleteDiskSnapshots"
    assert _outcome(r).succeeded
    finished = [
        u["name"]
        for p in r.calls.of("record_job_progress")
        for u in p["updates"]
        if u["status"] == "Succeeded"
    ]
    assert finished == [
        "Check prerequisites",
        "Bring the replicas to the final snapshots",
        "Delete the Azure VM and its NICs",
        "Delete the Azure disks",
        "Delete the reverse snapshots",
        "Delete the on-premises snapshot",
    ]


def test_a_failed_check_deletes_nothing(tmp_path: Path) -> None:
    r = _run(World(check_ok=False), tmp_path)
    assert _work(r) == ["check_commit_prerequisites", "end_commit_failback_job"]
    outcome = _outcome(r)
    assert not outcome.succeeded and outcome.failed_step == "Check prerequisites"
    assert "no final snapshot" in (outcome.error_message or "")


def test_a_deletion_that_keeps_failing_ends_the_job_at_its_step(tmp_path: Path) -> None:
    r = _run(World(failing="Delete the Azure disks"), tmp_path)
    steps = [d["step"] for d in r.calls.of("delete_commit_resources")]
    # Retried with the ARM retry policy, then given up: the snapshots and the appliance are not reached.
    assert set(steps) == {"Delete the Azure VM and its NICs", "Delete the Azure disks"}
    assert steps.count("Delete the Azure disks") > 1
    assert not r.calls.of("queue_failback_command")
    outcome = _outcome(r)
    assert not outcome.succeeded and outcome.failed_step == "Delete the Azure disks"
    assert "ScopeLocked" in (outcome.error_message or "")


def test_an_appliance_that_cannot_delete_its_copy_fails_the_last_step(tmp_path: Path) -> None:
    r = _run(World(refuse=True), tmp_path)
    outcome = _outcome(r)
    assert not outcome.succeeded and outcome.failed_step == "Delete the on-premises snapshot"
    assert "datastore offline" in (outcome.error_message or "")
