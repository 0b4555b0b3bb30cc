"""The reverse orchestration through the real SDK replay: the Reprotect job's steps and their order, the
hash fallback, a failed answer sent again from the same snapshot, clean-up on failure, one reverse
cycle after the job, and what a wait for an absent appliance costs in history."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from devhost.durable.clock import ManualClock
from orchestrators.failback import activities as failback_activities
from orchestrators.failback import orchestrator as reverse_flow
from orchestrators.failback.contracts import (
    CommandView,
    CommandWatch,
    CycleSettings,
    DiskRef,
    DiskSend,
    DiskSent,
    Fallback,
    PointRecord,
    Polling,
    Prune,
    Queued,
    ReprotectOutcome,
    Resend,
    ReverseInput,
    SnapshotIds,
    SnapshotsRequest,
    SnapshotsTaken,
    StepResult,
)
from orchestrators.failback.orchestrator import REVERSE
from orchestrators.hydration import activities as hydration_activities
from orchestrators.hydration.contracts import Done, JobProgress
from tests.orchestrators.conftest import Run, run, running

MACHINE = "vm-1"
INSTANCE = f"reverse-{MACHINE}"
JOB = "job-0000000000r1"
RG = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-fo/providers/Microsoft.Compute"
OS, DATA = f"{RG}/disks/db01-os", f"{RG}/disks/db01-data"
S0 = {OS: f"{RG}/snapshots/os-fb", DATA: f"{RG}/snapshots/data-fb"}
SHORT = Polling(poll_seconds=5, timeout_seconds=60)
BLUEPRINTS = [reverse_flow.bp, failback_activities.bp, hydration_activities.bp]


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json")


class World:
    def __init__(
        self,
        *,
        prerequisites_ok: bool = True,
        changes: bool = True,
        fail_first_apply: bool = False,
        appliance_answers: bool = True,
        replicating_after_job: bool = True,
        refine: bool = False,
        refine_error: bool = False,
        snapshot_refusals: int = 0,
        limit_wait_seconds: float = 60,
        power_off_polling: Polling = SHORT,
        answers_after: float = 0,
    ) -> None:
        self.clock = ManualClock()
        self.started = self.clock.now()
        self.power_off_polling = power_off_polling
        self.answers_after = timedelta(seconds=answers_after)  # the appliance is away until then
        self.reads_at: list[datetime] = []
        self.snapshots_asked_at: list[datetime] = []
        self.limit_wait_seconds = limit_wait_seconds  # REVERSE_SNAPSHOT_LIMIT_WAIT_SECONDS, as reported
        self.refine = refine
        self.refine_error = refine_error
        self.snapshot_refusals = snapshot_refusals  # how many times Azure's snapshot limit refuses first
        self.prerequisites_ok = prerequisites_ok
        self.changes = changes
        self.fail_first_apply = fail_first_apply
        self.appliance_answers = appliance_answers
        self.replicating = False
        self.replicating_after_job = replicating_after_job
        self.failed_once = False
        self.cycles_seen = 0
        self.history: list[dict[str, Any]] = []

    def stubs(self) -> dict[str, Any]:
        names = [
            "check_reprotect_prerequisites",
            "request_power_off",
            "request_changed_blocks",
            "request_block_hashes",
            "read_command",
            "take_reverse_snapshots",
            "send_reverse_disk",
            "resend_reverse_command",
            "end_snapshot_access",
            "delete_reverse_snapshots",
            "prune_reverse_snapshots",
            "record_reverse_point",
            "reverse_cycle_settings",
            "record_reverse_cycle_failure",
            "end_reprotect_job",
            "record_job_progress",
        ]
        return {name: getattr(self, name) for name in names}

    def check_reprotect_prerequisites(self, payload: Any) -> Any:
        if not self.prerequisites_ok:
            return _dump(StepResult(ok=False, message="disk too small", error_code="OnPremisesDiskTooSmall"))
        return _dump(StepResult(ok=True, message="fine"))

    def request_power_off(self, payload: Any) -> Any:
        return _dump(Queued(command_ids=[f"{JOB}-power-off"], **self.power_off_polling.model_dump()))

    def request_changed_blocks(self, payload: Any) -> Any:
        ids = [f"{JOB}-changes-0", f"{JOB}-changes-1"] if self.changes else []
        return _dump(Queued(command_ids=ids, poll_seconds=5, timeout_seconds=60))

    def request_block_hashes(self, payload: Any) -> Any:
        fallback = Fallback.model_validate(payload)
        return _dump(
            Queued(command_ids=[f"hashes-{fallback.on_premises_disk_id}"], poll_seconds=5, timeout_seconds=60)
        )

    def read_command(self, payload: Any) -> Any:
        watch = CommandWatch.model_validate(payload)
        self.reads_at.append(self.clock.now())
        if not self.appliance_answers or self.clock.now() < self.started + self.answers_after:
            return _dump(CommandView(acknowledged=False))
        if self.refine_error and watch.command_id.startswith("refine-"):
            return _dump(
                CommandView(acknowledged=True, error_code="OnPremisesDiskTooSmall", error_message="x")
            )
        if self.fail_first_apply and watch.command_id.endswith("-a1") and not self.failed_once:
            self.failed_once = True
            return _dump(
                CommandView(
                    acknowledged=True, error_code="SnapshotReadFailed", error_message="x", complete=False
                )
            )
        return _dump(CommandView(acknowledged=True, complete=True, bytes_written=1024))

    def take_reverse_snapshots(self, payload: Any) -> Any:
        request = SnapshotsRequest.model_validate(payload)
        self.snapshots_asked_at.append(self.clock.now())
        if self.snapshot_refusals:
            self.snapshot_refusals -= 1
            return _dump(
                SnapshotsTaken(
                    ok=False,
                    snapshot_ids={OS: f"{OS}-rv-{request.cycle_id}"},
                    message="The disk 'db01-data' has reached the limit of 7 incremental snapshots in 5 minutes.",
                    error_code="SnapshotLimitReached",
                    limit_wait_seconds=self.limit_wait_seconds,
                )
            )
        return _dump(
            SnapshotsTaken(
                ok=True,
                snapshot_ids={d: f"{d}-rv-{request.cycle_id}" for d in (OS, DATA)},
                disk_sizes={OS: 64 << 20, DATA: 8 << 20},
            )
        )

    def send_reverse_disk(self, payload: Any) -> Any:
        send = DiskSend.model_validate(payload)
        if send.hashes_command_id is None and send.changes_command_id is None and not self.replicating:
            return _dump(DiskSent(ok=True, fallback_reason="no change record on-premises: reset"))
        if (
            self.refine
            and send.hashes_command_id is not None
            and send.hashes_command_id.startswith("hashes-")
        ):
            refine = Queued(
                command_ids=[f"refine-{send.on_premises_disk_id}"], poll_seconds=5, timeout_seconds=60
            )
            return _dump(DiskSent(ok=True, refine=refine))
        return _dump(
            DiskSent(
                ok=True,
                command_ids=[f"{send.cycle_id}-{send.on_premises_disk_id}-0-a1"],
                bytes_processed=send.disk_size,
                bytes_transferred=1 << 20,
                bytes_matched=send.disk_size - (1 << 20),
            )
        )

    def resend_reverse_command(self, payload: Any) -> Any:
        resend = Resend.model_validate(payload)
        base = resend.command_id.rsplit("-a", 1)[0]
        return _dump(Queued(command_ids=[f"{base}-a{resend.attempt}"], poll_seconds=5, timeout_seconds=60))

    def end_snapshot_access(self, payload: Any) -> Any:
        SnapshotIds.model_validate(payload)
        return _dump(Done())

    def delete_reverse_snapshots(self, payload: Any) -> Any:
        SnapshotIds.model_validate(payload)
        return _dump(Done())

    def prune_reverse_snapshots(self, payload: Any) -> Any:
        Prune.model_validate(payload)
        return _dump(SnapshotIds(snapshot_ids=[]))

    def record_reverse_point(self, payload: Any) -> Any:
        if PointRecord.model_validate(payload).cycle_id.endswith("-c1"):
            self.cycles_seen += 1
        return _dump(Done())

    def reverse_cycle_settings(self, payload: Any) -> Any:
        if self.cycles_seen >= 1:
            self.replicating = False
            return _dump(CycleSettings(active=False))
        previous = S0 if not self.replicating else {d: f"{d}-rv-{JOB}-s1" for d in (OS, DATA)}
        return _dump(
            CycleSettings(
                active=True,
                replicating=self.replicating,
                interval_seconds=60,
                poll_seconds=5,
                timeout_seconds=60,
                previous_snapshot_ids=previous,
                disks=[
                    DiskRef(azure_disk_id=OS, on_premises_disk_id="os"),
                    DiskRef(azure_disk_id=DATA, on_premises_disk_id="data"),
                ],
                job_id=JOB,
            )
        )

    def record_reverse_cycle_failure(self, payload: Any) -> Any:
        return _dump(Done())

    def end_reprotect_job(self, payload: Any) -> Any:
        outcome = ReprotectOutcome.model_validate(payload)
        self.replicating = outcome.succeeded and self.replicating_after_job
        return _dump(Done())

    def record_job_progress(self, payload: Any) -> Any:
        JobProgress.model_validate(payload)
        return _dump(Done())


def _go(world: World, tmp_path: Path, step: float = 30, max_steps: int = 200) -> tuple[Run, dict[str, Any]]:
    async def scenario() -> tuple[Run, dict[str, Any]]:
        async with running(BLUEPRINTS, world.stubs(), tmp_path, clock=world.clock) as r:
            instance = await r.start(REVERSE, INSTANCE, _dump(ReverseInput(machine_id=MACHINE, job_id=JOB)))
            status = await r.finish(instance, step=step, max_steps=max_steps)
            world.history = r.engine.store.load_history(instance)
            return r, status

    result: tuple[Run, dict[str, Any]] = run(scenario())
    return result


def _outcome(r: Run) -> ReprotectOutcome:
    (payload,) = r.calls.of("end_reprotect_job")
    return ReprotectOutcome.model_validate(payload)


def _steps(r: Run) -> list[tuple[str, str]]:
    return [
        (u["name"], u["status"])
        for p in r.calls.of("record_job_progress")
        for u in JobProgress.model_validate(p).model_dump()["updates"]
    ]


def test_reprotect_runs_its_steps_then_one_reverse_cycle_from_s1(tmp_path: Path) -> None:
    world = World(replicating_after_job=True)
    r, status = _go(world, tmp_path)
    assert status["runtimeStatus"] == "Completed"
    assert _outcome(r).succeeded
    assert [s for s in _steps(r) if s[1] == "Succeeded"] == [
        ("Check prerequisites", "Succeeded"),
        ("Power off on-premises VM", "Succeeded"),
        ("Determine baseline", "Succeeded"),
        ("Initial reverse sync", "Succeeded"),
        ("Start reverse replication", "Succeeded"),
    ]
    sends = [DiskSend.model_validate(p) for p in r.calls.of("send_reverse_disk")]
    initial = [s for s in sends if s.cycle_id == f"{JOB[-40:]}-s1"]
    # The initial sync diffs from the failback baseline S0 with the appliance's change record.
    assert [(s.previous_snapshot_id, s.changes_command_id) for s in initial] == [
        (S0[OS], f"{JOB}-changes-0"),
        (S0[DATA], f"{JOB}-changes-1"),
    ]
    points = [PointRecord.model_validate(p) for p in r.calls.of("record_reverse_point")]
    assert points[0].baseline == "changeRecords" and points[0].bytes_transferred == 2 << 20
    # One reverse cycle: from S1, its own snapshot, a point, S1 kept and older ones pruned.
    cycle = [s for s in sends if s.cycle_id == f"{JOB[-40:]}-c1"]
    assert [s.previous_snapshot_id for s in cycle] == [f"{OS}-rv-{JOB}-s1", f"{DATA}-rv-{JOB}-s1"]
    assert [p.cycle_id for p in points] == [f"{JOB[-40:]}-s1", f"{JOB[-40:]}-c1"]
    assert Prune.model_validate(r.calls.of("prune_reverse_snapshots")[0]).kept == {
        OS: f"{OS}-rv-{JOB}-s1",
        DATA: f"{DATA}-rv-{JOB}-s1",
    }
    assert not r.calls.of("delete_reverse_snapshots")


def test_without_a_change_record_block_hashes_are_compared(tmp_path: Path) -> None:
    world = World(changes=False, replicating_after_job=False)
    r, _ = _go(world, tmp_path)
    assert _outcome(r).succeeded
    fallbacks = [Fallback.model_validate(p) for p in r.calls.of("request_block_hashes")]
    assert [f.on_premises_disk_id for f in fallbacks] == ["os", "data"]
    sends = [DiskSend.model_validate(p) for p in r.calls.of("send_reverse_disk")]
    assert [s.hashes_command_id for s in sends if s.hashes_command_id] == ["hashes-os", "hashes-data"]
    point = PointRecord.model_validate(r.calls.of("record_reverse_point")[0])
    assert point.baseline == "blockHashes"


def test_differing_blocks_are_hashed_again_in_small_pieces_and_that_answer_plans_the_disk(
    tmp_path: Path,
) -> None:
    world = World(changes=False, replicating_after_job=False, refine=True)
    r, _ = _go(world, tmp_path)
    assert _outcome(r).succeeded
    sends = [DiskSend.model_validate(p) for p in r.calls.of("send_reverse_disk")]
    # Per disk: the fallback, the coarse hashes (which queue the finer pass), then the finer answer.
    assert [s.hashes_command_id for s in sends] == [
        None,
        "hashes-os",
        "refine-os",
        None,
        "hashes-data",
        "refine-data",
    ]
    watched = [CommandWatch.model_validate(p).command_id for p in r.calls.of("read_command")]
    assert watched.index("refine-os") < watched.index(f"{JOB[-40:]}-s1-os-0-a1")
    assert PointRecord.model_validate(r.calls.of("record_reverse_point")[0]).baseline == "blockHashes"


def test_a_refused_finer_pass_stops_the_job_at_its_step(tmp_path: Path) -> None:
    world = World(changes=False, replicating_after_job=False, refine=True, refine_error=True)
    r, _ = _go(world, tmp_path)
    outcome = _outcome(r)
    assert not outcome.succeeded
    assert (outcome.failed_step, outcome.error_code) == ("Initial reverse sync", "OnPremisesDiskTooSmall")
    assert r.calls.of("delete_reverse_snapshots")


def test_a_failed_answer_is_sent_again_from_the_same_snapshot(tmp_path: Path) -> None:
    world = World(fail_first_apply=True, replicating_after_job=False)
    r, _ = _go(world, tmp_path)
    assert _outcome(r).succeeded
    (resend,) = [Resend.model_validate(p) for p in r.calls.of("resend_reverse_command")]
    assert resend.attempt == 2 and resend.command_id.endswith("-os-0-a1")
    assert len(r.calls.of("take_reverse_snapshots")) == 1  # S1 is not retaken


def test_failed_prerequisites_end_the_job_at_its_step_and_take_nothing(tmp_path: Path) -> None:
    r, _ = _go(World(prerequisites_ok=False), tmp_path)
    outcome = _outcome(r)
    assert (outcome.succeeded, outcome.failed_step, outcome.error_code) == (
        False,
        "Check prerequisites",
        "OnPremisesDiskTooSmall",
    )
    assert not r.calls.of("take_reverse_snapshots") and not r.calls.of("delete_reverse_snapshots")


def test_an_appliance_that_never_answers_fails_the_job_and_deletes_nothing_it_did_not_take(
    tmp_path: Path,
) -> None:
    r, _ = _go(World(appliance_answers=False), tmp_path)
    outcome = _outcome(r)
    assert (outcome.failed_step, outcome.error_code) == ("Power off on-premises VM", "ApplianceUnreachable")
    assert not r.calls.of("delete_reverse_snapshots")


def test_a_failure_after_s1_deletes_it(tmp_path: Path) -> None:
    world = World(changes=False)
    original = world.read_command

    def read(payload: Any) -> Any:
        if CommandWatch.model_validate(payload).command_id == "hashes-os":
            return _dump(
                CommandView(acknowledged=True, error_code="OnPremisesDiskNotFound", error_message="gone")
            )
        return original(payload)

    world.read_command = read  # type: ignore[method-assign]
    r, _ = _go(world, tmp_path)
    outcome = _outcome(r)
    assert (outcome.failed_step, outcome.error_code) == ("Initial reverse sync", "OnPremisesDiskNotFound")
    (deleted,) = [SnapshotIds.model_validate(p) for p in r.calls.of("delete_reverse_snapshots")]
    assert sorted(deleted.snapshot_ids) == sorted(f"{d}-rv-{JOB[-40:]}-s1" for d in (OS, DATA))


def test_a_snapshot_refused_for_azures_limit_is_taken_a_minute_later(tmp_path: Path) -> None:
    world = World(snapshot_refusals=2, replicating_after_job=False)
    r, status = _go(world, tmp_path)
    assert status["runtimeStatus"] == "Completed"
    assert _outcome(r).succeeded
    # S1 asked three times (two refusals, each followed by a minute's durable wait), then the sync from it.
    asked = [SnapshotsRequest.model_validate(p).cycle_id for p in r.calls.of("take_reverse_snapshots")]
    assert asked == [f"{JOB[-40:]}-s1"] * 3
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(world.snapshots_asked_at)]
    assert all(gap >= 60 for gap in gaps), gaps
    sends = [DiskSend.model_validate(p) for p in r.calls.of("send_reverse_disk")]
    assert {s.current_snapshot_id for s in sends} == {f"{OS}-rv-{JOB[-40:]}-s1", f"{DATA}-rv-{JOB[-40:]}-s1"}


def test_the_wait_after_a_snapshot_limit_is_the_one_the_activity_reports(tmp_path: Path) -> None:
    """REVERSE_SNAPSHOT_LIMIT_WAIT_SECONDS travels in the activity's answer (orchestrators read no
    settings): a 5-second wait asks again 5 seconds later, not a minute later."""
    world = World(snapshot_refusals=2, replicating_after_job=False, limit_wait_seconds=5)
    r, status = _go(world, tmp_path, step=1)
    assert status["runtimeStatus"] == "Completed" and _outcome(r).succeeded
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(world.snapshots_asked_at)]
    assert len(gaps) == 2 and all(5 <= gap < 6 for gap in gaps), gaps


def test_a_snapshot_limit_that_does_not_clear_stops_the_job_after_six_minutes(tmp_path: Path) -> None:
    world = World(snapshot_refusals=100)
    r, _ = _go(world, tmp_path)
    outcome = _outcome(r)
    assert (outcome.succeeded, outcome.failed_step, outcome.error_code) == (
        False,
        "Determine baseline",
        "SnapshotLimitReached",
    )
    assert len(r.calls.of("take_reverse_snapshots")) == reverse_flow.SNAPSHOT_LIMIT_RETRIES + 1


# --- waiting for an answer: the history a long wait leaves ---------------------------------------

# Production's MIGRATION_FINAL_CYCLE_POLL_SECONDS and MIGRATION_FINAL_CYCLE_TIMEOUT_MINUTES.
PRODUCTION = Polling(poll_seconds=15, timeout_seconds=240 * 60)


def test_a_silent_appliance_costs_a_bounded_history_over_a_four_hour_wait(tmp_path: Path) -> None:
    # The clock moves a minute at a time: a fixed 15 s interval asked on every move, 241 times, and left
    # 1,956 history events (961 asks and 7,716 events with the clock moving by 15 s).
    world = World(appliance_answers=False, power_off_polling=PRODUCTION)
    r, _ = _go(world, tmp_path, step=60, max_steps=300)
    outcome = _outcome(r)
    assert (outcome.failed_step, outcome.error_code) == ("Power off on-premises VM", "ApplianceUnreachable")
    reads = world.reads_at  # the power-off is the only command the stopped job waited for
    assert len(reads) < 100
    assert len(world.history) < 700
    # The last ask is at the deadline, not an interval past it.
    assert reads[-1] - reads[0] == timedelta(seconds=PRODUCTION.timeout_seconds)


def test_an_answer_in_the_first_minutes_is_seen_within_the_poll_interval(tmp_path: Path) -> None:
    world = World(power_off_polling=PRODUCTION, answers_after=100)
    r, _ = _go(world, tmp_path, step=5)
    assert _outcome(r).succeeded
    first_read, *_ = world.reads_at
    seen = next(at for at in world.reads_at if at >= world.started + world.answers_after)
    assert seen - (world.started + world.answers_after) <= timedelta(seconds=PRODUCTION.poll_seconds)
    assert first_read == world.started


def test_an_answer_after_hours_is_seen_within_five_minutes(tmp_path: Path) -> None:
    world = World(power_off_polling=PRODUCTION, answers_after=3 * 3600 + 7)
    r, _ = _go(world, tmp_path, step=60, max_steps=300)
    assert _outcome(r).succeeded
    answered = world.started + world.answers_after
    seen = next(at for at in world.reads_at if at >= answered)
    assert seen - answered <= timedelta(minutes=5)
