"""The Reprotect job toward Azure through the real SDK replay: the reprotect cycle is asked for once and
waited for with durable timers until the machine's replication applied it, and a cycle that never comes
ends the job at its step after the timeout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devhost.durable import ManualClock
from orchestrators.failback import forward as forward_flow
from orchestrators.failback import forward_activities
from orchestrators.failback.contracts import FailbackRun, Queued, StepResult
from orchestrators.failback.forward_activities import ForwardOutcome
from orchestrators.failback.planned_activities import Recorded
from orchestrators.hydration import activities as hydration_activities
from orchestrators.hydration.contracts import Done
from tests.orchestrators.conftest import Run, run, running

BLUEPRINTS = [forward_flow.bp, forward_activities.bp, hydration_activities.bp]
JOB = "job-00000000rta1"


def _run(tmp_path: Path, *, applied_after: int | None) -> Run:
    reads: list[int] = []

    def read(_: Any) -> Any:
        reads.append(1)
        if applied_after is not None and len(reads) > applied_after:
            return Recorded(done=True, message="cycle c9 sent 196608 bytes").model_dump(mode="json")
        return Recorded(done=False, message="the machine is Reprotecting").model_dump(mode="json")

    stubs = {
        "check_forward_reprotect": lambda _: StepResult(ok=True, message="ready").model_dump(mode="json"),
        "request_reprotect_cycle": lambda _: Queued(
            command_ids=[f"{JOB}-reprotect-cycle"], poll_seconds=30, timeout_seconds=600
        ).model_dump(mode="json"),
        "read_reprotect_cycle": read,
        "record_job_progress": lambda _: Done().model_dump(),
        "end_forward_reprotect_job": lambda _: Done().model_dump(),
    }

    async def scenario() -> Run:
        async with running(BLUEPRINTS, stubs, tmp_path, ManualClock()) as r:
            payload = FailbackRun(machine_id="vm-1", job_id=JOB).model_dump(mode="json")
            instance = await r.start(forward_flow.REPROTECT_TO_AZURE, JOB, payload)
            status = await r.finish(instance, step=30)
            assert status["runtimeStatus"] == "Completed", status
            return r

    result: Run = run(scenario())
    return result


def _outcome(r: Run) -> ForwardOutcome:
    (ended,) = r.calls.of("end_forward_reprotect_job")
    return ForwardOutcome.model_validate(ended)


def test_the_job_waits_for_the_reprotect_cycle_and_succeeds_once_it_is_applied(tmp_path: Path) -> None:
    r = _run(tmp_path, applied_after=3)
    assert r.calls.names().count("request_reprotect_cycle") == 1
    assert r.calls.names().count("read_reprotect_cycle") == 4
    assert _outcome(r).succeeded
    updates = [u for p in r.calls.of("record_job_progress") for u in p["updates"]]
    sent = next(
        u
        for u in updates
        if u["name"] == "Send the on-premises changes since the snapshot" and u["status"] == "Succeeded"
    )
    assert "196608 bytes" in sent["message"]


def test_a_cycle_that_never_comes_fails_the_send_step_after_the_timeout(tmp_path: Path) -> None:
    r = _run(tmp_path, applied_after=None)
    outcome = _outcome(r)
    assert not outcome.succeeded
    assert outcome.failed_step == "Send the on-premises changes since the snapshot"
    assert "no reprotect cycle within 10 minutes" in (outcome.error_message or "")
    # Every 30 s for the first 2 minutes, then at an interval growing to 75 s, and once at the deadline:
    # 15 asks where a fixed interval took 21.
    assert 14 <= r.calls.names().count("read_reprotect_cycle") <= 16
