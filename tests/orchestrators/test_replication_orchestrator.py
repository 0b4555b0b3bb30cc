"""The machine replication orchestrator's decisions, through the real SDK replay with stub activities.

The stubs keep a small model of one machine (its inbox of uploaded cycles, watermark, upload watch) and
build each generation's view with the product's own cycle planning, so what is tested is the orchestrator:
what it applies and in which order, when it waits, what it reports, what it hands the next generation.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devhost.durable import ManualClock
from devhost.durable.history import EventType
from orchestrators.names import (
    CYCLE_STARTED_SIGNAL,
    CYCLE_UPLOADED_SIGNAL,
    MACHINE_REPLICATION,
    OPERATOR_REQUEST,
)
from orchestrators.replication import orchestrator as replication
from orchestrators.replication.activities import bp as replication_bp
from orchestrators.replication.contracts import (
    CycleCompleted,
    CycleCompletion,
    DiskApplied,
    DiskApply,
    DiskUnitPlan,
    DisposalRequest,
    DisposalResult,
    DisposeTimeout,
    GenerationView,
    HealthTimings,
    RestoreRequest,
    RestoreState,
    ResyncRequest,
    SnapshotRequest,
    SnapshotTaken,
    UnitApply,
    UploadDeadline,
)
from shared.domain.api import CycleSignal
from shared.domain.cycle import Cycle, CycleKind, RecoveryPoint
from shared.domain.inventory import Disk, Firmware, MachineInventory, OsType
from shared.domain.lifecycle import MachineState
from shared.domain.machine import Machine, MachineSnapshot, UploadWatch
from shared.domain.policy import ReplicationPolicy
from shared.replication.cycles import (
    HELD_STATES,
    DiskRef,
    MachineAfterCycle,
    ReplicationView,
    plan_ready_cycles,
)
from shared.replication.units import DiskUnit
from tests.orchestrators.conftest import Run, run, running

MACHINE = "vm-1"
INSTANCE = f"machine-{MACHINE}"
DISKS = ("d0", "d1")


@dataclass
class World:
    """One machine as the activities see it; the stubs read and change it under a lock."""

    clock: ManualClock
    last_applied: int | None = None
    inbox: list[Cycle] = field(default_factory=list)
    state: MachineState = MachineState.REPLICATING
    upload_watch: UploadWatch | None = None
    undisposed: dict[str, list[str]] = field(default_factory=dict)
    disposal_blocked: bool = False
    damaged: set[tuple[str, str]] = field(default_factory=set)  # (cycle id, disk id)
    policy: ReplicationPolicy = field(default_factory=ReplicationPolicy)
    timings: HealthTimings = field(
        default_factory=lambda: HealthTimings(dispose_timeout_seconds=60, dispose_retry_seconds=10)
    )
    restore_polls: int = 0  # "still copying" answers before a restore is done
    restore_asks: int = 0
    units_per_disk: int = 3
    unit_parallelism: int = 2
    unit_failures: dict[tuple[str, int], int] = field(default_factory=dict)  # (disk, unit) -> crashes left
    lock: threading.Lock = field(default_factory=threading.Lock)

    def upload(self, sequence: int, kind: CycleKind = CycleKind.DELTA) -> Cycle:
        cycle = Cycle(
            id=f"c{sequence}",
            machine_id=MACHINE,
            sequence=sequence,
            kind=kind,
            manifests={d: f"{MACHINE}/c{sequence}/{d}.manifest" for d in DISKS},
            received_at=self.clock.now(),
        )
        with self.lock:
            self.inbox.append(cycle)
        return cycle

    def disks(self) -> list[DiskRef]:
        return [DiskRef(id=d, size_bytes=1024**3, is_os_disk=d == "d0") for d in DISKS]

    # --- the activities -------------------------------------------------------------------------

    def load_replication_view(self, payload: Any) -> Any:
        with self.lock:
            view = ReplicationView(
                machine_id=MACHINE,
                appliance_id="appl-1",
                state=self.state,
                disks=self.disks(),
                last_applied_sequence=self.last_applied,
                policy=self.policy,
                plan=plan_ready_cycles([] if self.state in HELD_STATES else self.inbox, self.last_applied),
                job=None,
                upload_watch=self.upload_watch,
            )
        return GenerationView(view=view, timings=self.timings).model_dump(mode="json")

    def check_disk(self, payload: Any) -> Any:
        request = DiskApply.model_validate(payload)
        if (request.cycle_id, request.disk_id) in self.damaged:
            # found while writing, after part of the disk was written
            return DiskApplied(
                disk_id=request.disk_id,
                ok=False,
                error_code="ChecksumMismatch",
                error_message="damaged",
                replica_changed=True,
            ).model_dump(mode="json")
        return DiskApplied(
            disk_id=request.disk_id,
            ok=True,
            bytes_applied=100,
            data_blobs=[f"{MACHINE}/{request.cycle_id}/{request.disk_id}.data"],
        ).model_dump(mode="json")

    def restore_replicas(self, payload: Any) -> Any:
        request = RestoreRequest.model_validate(payload)
        with self.lock:
            self.restore_asks += 1
            done = self.restore_asks > self.restore_polls
        return RestoreState(done=done, restored=request.disk_ids).model_dump(mode="json")

    def plan_cycle_disk_units(self, payload: Any) -> Any:
        request = DiskApply.model_validate(payload)
        if (request.cycle_id, request.disk_id) in self.damaged:
            return DiskUnitPlan(
                disk_id=request.disk_id, ok=False, error_code="ManifestInvalid", error_message="damaged"
            ).model_dump(mode="json")
        units = [
            DiskUnit(
                index=i,
                first_extent=10 * i,
                extent_count=10,
                disk_start=i * 1024,
                disk_end=(i + 1) * 1024,
                bytes=100,
                shard_blob=f"{MACHINE}/{request.cycle_id}/{request.disk_id}/units/unit-{i:05d}.json",
                shard_etag="e",
                blob_sizes={},
            )
            for i in range(self.units_per_disk)
        ]
        return DiskUnitPlan(
            disk_id=request.disk_id,
            ok=True,
            units=units,
            parallelism=self.unit_parallelism,
            data_blobs=[f"{MACHINE}/{request.cycle_id}/{request.disk_id}.data"],
        ).model_dump(mode="json")

    def apply_disk_unit(self, payload: Any) -> Any:
        request = UnitApply.model_validate(payload)
        key = (request.disk_id, request.unit.index)
        with self.lock:
            crashes = self.unit_failures.get(key, 0)
            if crashes:
                self.unit_failures[key] = crashes - 1
        if crashes:
            raise ConnectionError("the worker died in the middle of the unit")
        return DiskApplied(disk_id=request.disk_id, ok=True, bytes_applied=request.unit.bytes).model_dump(
            mode="json"
        )

    def snapshot_recovery_point(self, payload: Any) -> Any:
        request = SnapshotRequest.model_validate(payload)
        point = RecoveryPoint(
            id=f"{request.sequence:010d}-{request.cycle_id}",
            cycle_id=request.cycle_id,
            time=self.clock.now(),
            consistency=request.consistency,
            disk_snapshots={d: "snap" for d in request.disk_ids},
        )
        return SnapshotTaken(recovery_point=point).model_dump(mode="json")

    def complete_cycle(self, payload: Any) -> Any:
        completion = CycleCompletion.model_validate(payload)
        cycle = completion.cycle
        with self.lock:
            self.last_applied = cycle.sequence
            self.inbox = [c for c in self.inbox if c.id != cycle.id]
            if self.upload_watch is not None and self.upload_watch.sequence <= cycle.sequence:
                self.upload_watch = None
            undisposed = self.undisposed.get(cycle.id, [])
            machine = MachineAfterCycle(
                state=self.state,
                last_applied_sequence=self.last_applied,
                disks=self.disks(),
                upload_watch=self.upload_watch,
            )
        return CycleCompleted(dropped_recovery_points=[], undisposed=undisposed, machine=machine).model_dump(
            mode="json"
        )

    def dispose_artefacts(self, payload: Any) -> Any:
        request = DisposalRequest.model_validate(payload)
        return DisposalResult(remaining=request.blobs if self.disposal_blocked else []).model_dump(
            mode="json"
        )

    def time_out_uploads(self, payload: Any) -> Any:
        with self.lock:
            watch = self.upload_watch
            if watch is None:
                return []
            self.upload_watch = watch.model_copy(update={"timed_out_disks": list(watch.disk_ids)})
            return list(watch.disk_ids)

    def supersede_cycles(self, payload: Any) -> None:
        with self.lock:
            self.inbox = [c for c in self.inbox if c.id not in payload["cycle_ids"]]

    def reject_cycle(self, payload: Any) -> None:
        with self.lock:
            self.inbox = [c for c in self.inbox if c.id != payload["cycle_id"]]

    def stubs(self) -> dict[str, Any]:
        def nothing(payload: Any) -> None:
            return None

        return {
            "load_replication_view": self.load_replication_view,
            "restore_replicas": self.restore_replicas,
            "apply_cycle_disk": self.check_disk,
            "plan_cycle_disk_units": self.plan_cycle_disk_units,
            "apply_disk_unit": self.apply_disk_unit,
            "report_progress": nothing,
            "snapshot_recovery_point": self.snapshot_recovery_point,
            "complete_cycle": self.complete_cycle,
            "dispose_artefacts": self.dispose_artefacts,
            "report_dispose_timeout": nothing,
            "time_out_uploads": self.time_out_uploads,
            "request_resync": nothing,
            "supersede_cycles": self.supersede_cycles,
            "reject_cycle": self.reject_cycle,
        }


async def start(r: Run) -> None:
    await r.start(MACHINE_REPLICATION, INSTANCE, {"machineId": MACHINE})
    await r.idle()


async def stop(r: Run, world: World) -> dict[str, Any]:
    """Replication stopped: the sleeping generation wakes on the request and the next one ends."""
    with world.lock:
        world.state = MachineState.REPLICATION_STOPPED
    await r.raise_event(INSTANCE, OPERATOR_REQUEST, {})
    status = await r.finish(INSTANCE)
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"] == "replication ended (ReplicationStopped)"
    return status


def applied(r: Run) -> list[str]:
    return [CycleCompletion.model_validate(p).cycle.id for p in r.calls.of("complete_cycle")]


def generation(status: dict[str, Any]) -> int:
    return int(status["input"]["generation"])


def test_cycles_are_applied_in_sequence_whatever_order_they_arrived_in(tmp_path: Path) -> None:
    clock = ManualClock()
    world = World(clock)
    world.upload(3)
    world.upload(1, CycleKind.INITIAL)
    world.upload(2)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            assert applied(r) == ["c1", "c2", "c3"]
            names = r.calls.names()
            # Each cycle: its disks written, then one recovery point, then recorded; the next cycle after.
            for cycle in ("c1", "c2", "c3"):
                steps = [
                    (i, name)
                    for i, (name, payload) in enumerate(r.calls.made)
                    if isinstance(payload, dict) and payload.get("cycle_id", "") == cycle
                ]
                order = [name for _, name in steps]
                if cycle == "c1":  # the initial copy: each disk planned as units, applied unit by unit
                    assert order == ["plan_cycle_disk_units"] * 2 + ["apply_disk_unit"] * 6 + [
                        "snapshot_recovery_point"
                    ]
                else:
                    assert order == ["apply_cycle_disk", "apply_cycle_disk", "snapshot_recovery_point"]
            completions = [CycleCompletion.model_validate(p) for p in r.calls.of("complete_cycle")]
            assert [c.bytes_applied for c in completions] == [600, 200, 200]
            assert all(c.started_at is not None for c in completions), "the apply's start, for its span"
            assert sorted(completions[1].artefacts) == [f"{MACHINE}/c2/{d}.data" for d in DISKS]
            # The whole-disk copy (2 disks x 3 units, 2 at a time) reports progress after each batch.
            assert names.count("report_progress") == 3
            # A multi-disk delta is applied in one pass per disk: nothing reads it beforehand.
            assert "verify_cycle_disk" not in names
            await stop(r, world)

    run(scenario())


def test_a_whole_disk_copy_runs_as_bounded_batches_and_resumes_at_the_unit_that_crashed(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    world = World(clock, units_per_disk=5, unit_parallelism=3, unit_failures={("d1", 2): 1})
    world.upload(1, CycleKind.INITIAL)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            for _ in range(20):  # the crashed unit's retry waits for its retry timer
                if applied(r) == ["c1"]:
                    break
                clock.advance(5)
                await r.idle()
            assert applied(r) == ["c1"]
            units = [UnitApply.model_validate(p) for p in r.calls.of("apply_disk_unit")]
            # every unit of both disks ran once, except the one that crashed, which ran again (and only it)
            ran = sorted((u.disk_id, u.unit.index) for u in units)
            assert ran == sorted([(d, i) for d in DISKS for i in range(5)] + [("d1", 2)])
            # never more than the parallelism at once: progress is recorded after each batch of 3
            progress = [p["percent"] for p in r.calls.of("report_progress")]
            assert progress == [round(99.0 * n / 10, 1) for n in (3, 6, 9, 10)]
            names = r.calls.names()
            batch_sizes, current = [], 0
            for name in names:
                if name == "apply_disk_unit":
                    current += 1
                elif name == "report_progress":
                    batch_sizes.append(current)
                    current = 0
            assert max(batch_sizes) <= 3 + 1  # + the crashed unit's rerun inside its batch
            (completion,) = [CycleCompletion.model_validate(p) for p in r.calls.of("complete_cycle")]
            assert completion.bytes_applied == 1000
            await stop(r, world)

    run(scenario())


def test_a_whole_disk_copy_with_a_bad_unit_is_rejected_and_applies_no_later_batch(tmp_path: Path) -> None:
    clock = ManualClock()
    world = World(clock, units_per_disk=4, unit_parallelism=2)
    world.upload(1, CycleKind.INITIAL)
    original = world.apply_disk_unit

    def corrupt_unit_three(payload: Any) -> Any:
        request = UnitApply.model_validate(payload)
        if (request.disk_id, request.unit.index) == ("d0", 3):
            return DiskApplied(
                disk_id="d0", ok=False, error_code="ExtentChecksumMismatch", error_message="corrupt"
            ).model_dump(mode="json")
        return original(payload)

    stubs = {**world.stubs(), "apply_disk_unit": corrupt_unit_three}

    async def scenario() -> None:
        async with running([replication_bp], stubs, tmp_path, clock) as r:
            await start(r)
            (rejection,) = r.calls.of("reject_cycle")
            assert rejection["rejected_disks"][0]["error_code"] == "ExtentChecksumMismatch"
            # units run in disk order, two at a time: d0's units 2 and 3 are the second batch; nothing after
            assert len(r.calls.of("apply_disk_unit")) == 4 and applied(r) == []
            await stop(r, world)

    run(scenario())


def test_a_damaged_upload_puts_every_replica_it_wrote_back_then_is_rejected(tmp_path: Path) -> None:
    clock = ManualClock()
    world = World(clock, last_applied=1, damaged={("c2", "d1")}, restore_polls=2)
    world.upload(2)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            for _ in range(10):  # the restore's copies are waited for with durable timers
                if r.calls.of("reject_cycle"):
                    break
                await r.advance(5)
            assert applied(r) == []
            # d0 applied fine and d1 was found damaged after a write: both go back to the last point,
            # asked again after a timer until the copies are done, and only then is the cycle rejected
            asks = [RestoreRequest.model_validate(p) for p in r.calls.of("restore_replicas")]
            assert len(asks) == 3 and all(a.disk_ids == ["d0", "d1"] and a.cycle_id == "c2" for a in asks)
            names = r.calls.names()
            assert names.index("reject_cycle") > max(
                i for i, n in enumerate(names) if n == "restore_replicas"
            )
            (rejection,) = r.calls.of("reject_cycle")
            assert rejection["cycle_id"] == "c2"
            assert [d["disk_id"] for d in rejection["rejected_disks"]] == ["d1"]
            # The cycle is discarded whole: every disk it carried is to be resynced, not only the damaged one.
            assert rejection["carried_disk_ids"] == sorted(DISKS)
            await stop(r, world)

    run(scenario())


def test_a_sequence_gap_requests_one_resync_after_the_gap_timeout(tmp_path: Path) -> None:
    clock = ManualClock()
    world = World(clock, last_applied=1)
    world.upload(3)
    world.upload(4)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            assert r.calls.of("request_resync") == [], "a missing cycle is waited for first"
            await r.advance(replication.GAP_TIMEOUT.total_seconds())
            (request,) = [ResyncRequest.model_validate(p) for p in r.calls.of("request_resync")]
            assert (request.missing_sequence, request.buffered) == (2, 2)
            assert request.request_id == f"gap-2-{INSTANCE}", "deterministic: a retried activity queues once"
            # Later generations remember (through continue-as-new) that the resync was asked for.
            before = generation(await r.status(INSTANCE))
            for _ in range(5):
                await r.advance(60)
            status = await r.status(INSTANCE)
            assert generation(status) > before
            assert status["input"]["resyncRequestedFor"] == 2 and status["input"]["gapSince"] is not None
            assert len(r.calls.of("request_resync")) == 1
            assert applied(r) == []

            world.upload(2)  # the missing cycle arrives after all: everything applies in order
            await r.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, {"cycleId": "c2", "sequence": 2})
            assert applied(r) == ["c2", "c3", "c4"]
            await r.advance(replication.IDLE_WAKE_UP.total_seconds())  # the next generation's input
            status = await r.status(INSTANCE)
            assert status["input"]["resyncRequestedFor"] is None and status["input"]["gapSince"] is None
            await stop(r, world)

    run(scenario())


def test_too_many_buffered_cycles_request_the_resync_at_once(tmp_path: Path) -> None:
    clock = ManualClock()
    world = World(clock, last_applied=1, policy=ReplicationPolicy(max_cycle_gap_before_resync=2))
    world.upload(3)
    world.upload(4)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            (request,) = [ResyncRequest.model_validate(p) for p in r.calls.of("request_resync")]
            assert (request.missing_sequence, request.max_gap) == (2, 2)
            await stop(r, world)

    run(scenario())


def test_a_disposal_that_does_not_finish_in_time_reports_181008_once_per_period(tmp_path: Path) -> None:
    clock = ManualClock()
    world = World(clock, last_applied=1, undisposed={"c2": [f"{MACHINE}/c2/d0.data"]})
    world.upload(2)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            assert applied(r) == ["c2"]
            applied_at: datetime = clock.now()
            world.disposal_blocked = True
            world.upload(3)
            await r.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, {"cycleId": "c3", "sequence": 3})
            for _ in range(13):  # 130 s in steps of the disposal retry period
                await r.advance(world.timings.dispose_retry_seconds)
            reports = [DisposeTimeout.model_validate(p) for p in r.calls.of("report_dispose_timeout")]
            assert [p.attempt for p in reports] == [1, 2]
            assert all(p.blocked_cycle_id == "c3" and p.previous_cycle_id == "c2" for p in reports)
            assert [p.waited_seconds >= 60 * p.attempt for p in reports] == [True, True]
            assert applied(r) == ["c2"], "the next cycle waits for the previous one's artefacts"
            assert len(r.calls.of("dispose_artefacts")) >= 12
            status = await r.status(INSTANCE)
            pending = status["input"]["pendingDisposal"]
            assert pending["cycleId"] == "c2" and pending["reports"] == 2
            assert datetime.fromisoformat(pending["since"]) == applied_at

            world.disposal_blocked = False
            await r.advance(world.timings.dispose_retry_seconds)
            assert applied(r) == ["c2", "c3"]
            assert len(r.calls.of("report_dispose_timeout")) == 2
            await stop(r, world)

    run(scenario())


def test_the_upload_deadline_reports_1011_once_when_the_upload_is_late(tmp_path: Path) -> None:
    clock = ManualClock()
    world = World(clock, last_applied=1)
    world.upload_watch = UploadWatch(
        cycle_id="c2",
        sequence=2,
        kind="delta",
        disk_ids=list(DISKS),
        started_at=clock.now(),
        deadline=clock.now() + timedelta(minutes=2),
    )

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            await r.advance(119)
            assert r.calls.of("time_out_uploads") == []
            await r.advance(1)
            await r.advance(1)
            (deadline,) = [UploadDeadline.model_validate(p) for p in r.calls.of("time_out_uploads")]
            assert deadline == UploadDeadline(machine_id=MACHINE, cycle_id="c2")
            for _ in range(3):
                await r.advance(60)
            assert len(r.calls.of("time_out_uploads")) == 1, "each late disk is reported once"
            await stop(r, world)

    run(scenario())


def test_an_upload_that_arrives_before_its_deadline_is_not_a_timeout(tmp_path: Path) -> None:
    clock = ManualClock()
    world = World(clock, last_applied=1)
    world.upload_watch = UploadWatch(
        cycle_id="c2",
        sequence=2,
        kind="delta",
        disk_ids=list(DISKS),
        started_at=clock.now(),
        deadline=clock.now() + timedelta(minutes=2),
    )

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            await r.advance(60)
            world.upload(2)
            await r.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, {"cycleId": "c2", "sequence": 2})
            assert applied(r) == ["c2"]
            for _ in range(4):
                await r.advance(60)
            assert r.calls.of("time_out_uploads") == []
            await stop(r, world)

    run(scenario())


def test_continue_as_new_hands_on_only_the_small_state(tmp_path: Path) -> None:
    clock = ManualClock()
    world = World(clock, last_applied=0)
    for sequence in range(1, replication.MAX_CYCLES_PER_GENERATION + 3):
        world.upload(sequence)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            # More cycles than one generation takes: the rest go to the next generation at once.
            assert applied(r) == [f"c{s}" for s in range(1, replication.MAX_CYCLES_PER_GENERATION + 3)]
            status = await r.status(INSTANCE)
            assert generation(status) == 1
            assert set(status["input"]) == {
                "machineId",
                "gapSince",
                "resyncRequestedFor",
                "pendingDisposal",
                "follow",
                "generation",
            }
            history = r.engine.store.load_history(INSTANCE)
            completed_here = [
                e
                for e in history
                if e["EventType"] == EventType.TASK_SCHEDULED and e["Name"] == "complete_cycle"
            ]
            assert len(completed_here) == 2, "each generation starts a fresh history"
            await stop(r, world)

    run(scenario())


def test_a_cycle_of_one_disk_leaves_a_recovery_point_of_every_disk(tmp_path: Path) -> None:
    clock = ManualClock()
    world = World(clock, last_applied=1)
    resync = Cycle(
        id="c2",
        machine_id=MACHINE,
        sequence=2,
        kind=CycleKind.RESYNC,
        manifests={"d1": f"{MACHINE}/c2/d1.manifest"},
        received_at=clock.now(),
    )
    world.inbox.append(resync)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            assert [DiskApply.model_validate(p).disk_id for p in r.calls.of("plan_cycle_disk_units")] == [
                "d1"
            ]
            assert {UnitApply.model_validate(p).disk_id for p in r.calls.of("apply_disk_unit")} == {"d1"}
            (request,) = [SnapshotRequest.model_validate(p) for p in r.calls.of("snapshot_recovery_point")]
            assert request.disk_ids == list(DISKS)
            (completion,) = [CycleCompletion.model_validate(p) for p in r.calls.of("complete_cycle")]
            assert completion.recovery_point is not None
            assert sorted(completion.recovery_point.disk_snapshots) == list(DISKS)
            await stop(r, world)

    run(scenario())


def signal_upload(world: World, sequence: int, kind: CycleKind = CycleKind.DELTA) -> dict[str, Any]:
    """The trigger's wake-up for an accepted upload: it carries the inbox record."""
    cycle = world.upload(sequence, kind)
    return CycleSignal(cycle_id=cycle.id, sequence=sequence, cycle=cycle).to_wire()


def views_loaded(r: Run) -> int:
    return len(r.calls.of("load_replication_view"))


def test_signalled_deltas_apply_in_the_same_generation_without_re_reading_the_view(tmp_path: Path) -> None:
    clock = ManualClock()
    world = World(clock, last_applied=1)
    world.upload(2)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            assert applied(r) == ["c2"] and views_loaded(r) == 1
            signals = [signal_upload(world, sequence) for sequence in (3, 4, 5)]
            for signal in signals:
                await r.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, signal)
            assert applied(r) == ["c2", "c3", "c4", "c5"]
            assert views_loaded(r) == 1, "the signals carried the cycles: no view was read for them"
            # A redelivered upload of an applied cycle changes nothing.
            await r.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, signals[1])
            assert applied(r) == ["c2", "c3", "c4", "c5"] and views_loaded(r) == 1
            await stop(r, world)

    run(scenario())


def test_a_signal_out_of_sequence_or_a_whole_disk_copy_goes_through_the_next_generations_plan(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    world = World(clock, last_applied=1)
    world.upload(2)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            # Sequence 4 before 3: the generation ends, the next one plans and waits for 3.
            await r.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, signal_upload(world, 4))
            assert applied(r) == ["c2"] and views_loaded(r) == 2
            await r.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, signal_upload(world, 3))
            assert applied(r) == ["c2", "c3", "c4"]
            # A resync is planned (it supersedes what is older), never followed from its signal alone.
            loaded = views_loaded(r)
            await r.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, signal_upload(world, 5, CycleKind.RESYNC))
            assert applied(r)[-1] == "c5" and views_loaded(r) == loaded + 1
            await stop(r, world)

    run(scenario())


def test_a_machine_held_by_a_failover_applies_no_signalled_cycle(tmp_path: Path) -> None:
    clock = ManualClock()
    world = World(clock, last_applied=1)
    world.upload(2)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            assert applied(r) == ["c2"]
            with world.lock:
                world.state = MachineState.FAILING_OVER
            # The upload was accepted just before the hold, and its signal arrives first: the recorded
            # machine still says Replicating, so the loop must not trust it beyond the generation's view.
            await r.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, signal_upload(world, 3))
            assert applied(r) == ["c2", "c3"], "accepted before the hold: applied, as the plan would"
            await r.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, signal_upload(world, 4))
            assert applied(r) == ["c2", "c3"], "the recorded machine is FailingOver: nothing more applies"
            with world.lock:
                world.state = MachineState.REPLICATION_STOPPED
            await r.raise_event(INSTANCE, OPERATOR_REQUEST, {})
            status = await r.finish(INSTANCE)
            assert status["runtimeStatus"] == "Completed", status

    run(scenario())


def test_a_started_cycle_arms_the_upload_deadline_from_its_signal(tmp_path: Path) -> None:
    clock = ManualClock()
    world = World(clock, last_applied=1)
    world.upload(2)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            watch = UploadWatch(
                cycle_id="c3",
                sequence=3,
                kind="delta",
                disk_ids=list(DISKS),
                started_at=clock.now(),
                deadline=clock.now() + timedelta(minutes=2),
            )
            with world.lock:
                world.upload_watch = watch
            await r.raise_event(
                INSTANCE,
                CYCLE_STARTED_SIGNAL,
                CycleSignal(cycle_id="c3", started=True, upload_watch=watch).to_wire(),
            )
            assert views_loaded(r) == 1
            await r.advance(119)
            assert r.calls.of("time_out_uploads") == []
            await r.advance(1)
            await r.advance(1)
            assert [UploadDeadline.model_validate(p) for p in r.calls.of("time_out_uploads")] == [
                UploadDeadline(machine_id=MACHINE, cycle_id="c3")
            ]
            await stop(r, world)

    run(scenario())


def test_a_rejected_cycle_stops_the_generation_before_the_cycles_after_it(tmp_path: Path) -> None:
    clock = ManualClock()
    world = World(clock, last_applied=1, damaged={("c2", "d1")})
    world.upload(2)
    world.upload(3)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            # c3 is a delta on top of c2's changes: applied without them it would make a recovery point
            # of a disk that never existed. It waits for the resync instead.
            assert applied(r) == [] and [p["cycle_id"] for p in r.calls.of("reject_cycle")] == ["c2"]
            assert {p["cycle_id"] for p in r.calls.of("apply_cycle_disk")} == {"c2"}
            await stop(r, world)

    run(scenario())


def test_signals_that_arrive_while_a_cycle_is_applied_are_each_handled_once(tmp_path: Path) -> None:
    """Events raised before the orchestration waits are replayed by the SDK to every later wait of the
    same name in one execution (azure-functions-durable-python#507): the orchestration must neither loop
    on such an event nor lose the cycle."""
    clock = ManualClock()
    world = World(clock, last_applied=1)
    world.upload(2)
    entered, release = threading.Event(), threading.Event()
    record = world.complete_cycle

    def slow_complete(payload: Any) -> Any:
        if CycleCompletion.model_validate(payload).cycle.id == "c2":
            entered.set()
            release.wait(10)
        return record(payload)

    stubs = {**world.stubs(), "complete_cycle": slow_complete}

    async def scenario() -> None:
        async with running([replication_bp], stubs, tmp_path, clock) as r:
            await r.engine.start_new(MACHINE_REPLICATION, INSTANCE, {"machineId": MACHINE})
            await asyncio.to_thread(entered.wait, 10)
            watch = UploadWatch(
                cycle_id="c3",
                sequence=3,
                kind="delta",
                disk_ids=list(DISKS),
                started_at=clock.now(),
                deadline=clock.now() + timedelta(minutes=2),
            )
            started = CycleSignal(cycle_id="c3", started=True, upload_watch=watch).to_wire()
            await r.engine.raise_event(INSTANCE, CYCLE_STARTED_SIGNAL, started)
            await r.engine.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, signal_upload(world, 3))
            release.set()
            await r.idle()
            for _ in range(3):
                await r.advance(1)
            assert applied(r) == ["c2", "c3"]
            assert (await r.status(INSTANCE))["runtimeStatus"] == "Running"
            await r.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, signal_upload(world, 4))
            assert applied(r) == ["c2", "c3", "c4"]
            await stop(r, world)

    run(scenario())


def started_signal(clock: ManualClock, sequence: int) -> dict[str, Any]:
    """The trigger's wake-up for a cycle the appliance started: it carries the upload deadline."""
    watch = UploadWatch(
        cycle_id=f"c{sequence}",
        sequence=sequence,
        kind="delta",
        disk_ids=list(DISKS),
        started_at=clock.now(),
        deadline=clock.now() + timedelta(minutes=30),
    )
    return CycleSignal(cycle_id=watch.cycle_id, started=True, upload_watch=watch).to_wire()


def test_a_small_delta_signalled_right_after_its_start_is_applied_without_waiting_for_a_timer(
    tmp_path: Path,
) -> None:
    """The appliance announces a cycle, then uploads a small delta a moment later: both signals reach the
    sleeping generation in one episode. The upload must be applied then, not when a timer re-reads the
    inbox (the clock never moves here). Before CycleStarted had a name of its own, the start woke a
    generation that followed the signals, which continued as new and so discarded the upload's signal
    with its execution."""
    clock = ManualClock()
    world = World(clock, last_applied=1)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            assert applied(r) == [] and views_loaded(r) == 1
            # c2 wakes a generation that planned from its view; c3 and c4 one that follows the signals.
            for sequence in (2, 3, 4):
                # Queued back to back before the instance runs: one episode sees both.
                await r.engine.raise_event(INSTANCE, CYCLE_STARTED_SIGNAL, started_signal(clock, sequence))
                await r.engine.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, signal_upload(world, sequence))
                await r.idle()
                assert applied(r)[-1:] == [f"c{sequence}"], f"c{sequence} waits in the inbox for a timer"
            assert views_loaded(r) == 2
            assert r.calls.of("time_out_uploads") == []
            await stop(r, world)

    run(scenario())


def machine_copy(etag: str, watch: UploadWatch | None) -> dict[str, Any]:
    """A machine document as a trigger read or patched it, with its ETag."""
    machine = Machine(
        id=MACHINE,
        appliance_id="appl-1",
        inventory=MachineInventory(
            display_name=MACHINE,
            os_type=OsType.LINUX,
            os_name="Ubuntu",
            os_version="22.04",
            firmware=Firmware.BIOS,
            disks=[Disk(id=d, size_bytes=1024**3, is_os_disk=d == "d0") for d in DISKS],
        ),
        state=MachineState.REPLICATING,
        discovered_at=datetime(2026, 12, 1, tzinfo=UTC),
        updated_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    machine.replication.upload_watch = watch
    return MachineSnapshot(machine=machine, etag=etag).to_wire()


def test_a_followed_cycle_completes_on_the_newer_of_the_machine_copies_its_two_signals_carried(
    tmp_path: Path,
) -> None:
    """The start's watch patched the machine and the upload's acceptance read it, in either order: the
    completion is handed the copy that saw the other's change (a stale one would cost a 412 and a read)."""
    clock = ManualClock()
    world = World(clock, last_applied=1)
    world.upload(2)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            for sequence, read_after_patch in ((3, True), (4, False)):
                started = CycleSignal.model_validate(started_signal(clock, sequence))
                assert started.upload_watch is not None
                patched = machine_copy(f"etag-patched-{sequence}", started.upload_watch)
                read = machine_copy(
                    f"etag-read-{sequence}", started.upload_watch if read_after_patch else None
                )
                await r.engine.raise_event(
                    INSTANCE, CYCLE_STARTED_SIGNAL, {**started.to_wire(), "machine": patched}
                )
                await r.engine.raise_event(
                    INSTANCE, CYCLE_UPLOADED_SIGNAL, {**signal_upload(world, sequence), "machine": read}
                )
                await r.idle()
                seen = CycleCompletion.model_validate(r.calls.of("complete_cycle")[-1]).machine_seen
                assert seen is not None and seen.etag == (
                    f"etag-read-{sequence}" if read_after_patch else f"etag-patched-{sequence}"
                )
            assert applied(r) == ["c2", "c3", "c4"]
            # c2 was planned from the view: no copy reached its completion, which reads the machine.
            assert CycleCompletion.model_validate(r.calls.of("complete_cycle")[0]).machine_seen is None
            await stop(r, world)

    run(scenario())


def test_a_followed_cycle_whose_start_is_signalled_after_its_upload_completes_on_the_starts_copy(
    tmp_path: Path,
) -> None:
    """Event Grid keeps no order: the upload's acceptance may read the machine before the start's watch is
    patched in and be signalled first. The start's signal, arriving while the cycle is applied, carries the
    copy that saw the patch: the completion writes on it instead of taking a 412 on the older read."""
    clock = ManualClock()
    world = World(clock, last_applied=1)
    world.upload(2)
    entered, release = threading.Event(), threading.Event()
    check = world.check_disk

    def slow_apply(payload: Any) -> Any:
        if DiskApply.model_validate(payload).cycle_id == "c3":
            entered.set()
            release.wait(10)
        return check(payload)

    stubs = {**world.stubs(), "apply_cycle_disk": slow_apply}

    async def scenario() -> None:
        async with running([replication_bp], stubs, tmp_path, clock) as r:
            await start(r)
            started = CycleSignal.model_validate(started_signal(clock, 3))
            assert started.upload_watch is not None
            read_before_patch = machine_copy("etag-read-3", None)
            await r.engine.raise_event(
                INSTANCE, CYCLE_UPLOADED_SIGNAL, {**signal_upload(world, 3), "machine": read_before_patch}
            )
            await asyncio.to_thread(entered.wait, 10)
            patched = machine_copy("etag-patched-3", started.upload_watch)
            await r.engine.raise_event(
                INSTANCE, CYCLE_STARTED_SIGNAL, {**started.to_wire(), "machine": patched}
            )
            await _until_in_history(r, CYCLE_STARTED_SIGNAL)  # before the disk's apply completes
            release.set()
            await r.idle()
            assert applied(r) == ["c2", "c3"]
            seen = CycleCompletion.model_validate(r.calls.of("complete_cycle")[-1]).machine_seen
            assert seen is not None and seen.etag == "etag-patched-3"
            # The next cycle's start, signalled in the sleep that follows, is still seen there.
            await r.engine.raise_event(
                INSTANCE,
                CYCLE_STARTED_SIGNAL,
                {**started_signal(clock, 4), "machine": machine_copy("p4", None)},
            )
            await r.engine.raise_event(
                INSTANCE,
                CYCLE_UPLOADED_SIGNAL,
                {**signal_upload(world, 4), "machine": machine_copy("r4", None)},
            )
            await r.idle()
            assert applied(r) == ["c2", "c3", "c4"]
            await stop(r, world)

    run(scenario())


def test_a_late_start_of_an_applied_cycle_hands_no_copy_to_the_next_cycles_completion(tmp_path: Path) -> None:
    """A cycle's start delivered after the cycle was applied carries a copy from before its completion: the
    next cycle's completion must not write on it (it would cost a 412 and a read every time)."""
    clock = ManualClock()
    world = World(clock, last_applied=1)
    world.upload(2)

    async def scenario() -> None:
        async with running([replication_bp], world.stubs(), tmp_path, clock) as r:
            await start(r)
            await r.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, signal_upload(world, 3))
            assert applied(r) == ["c2", "c3"]
            late = CycleSignal.model_validate(started_signal(clock, 3))
            await r.raise_event(
                INSTANCE,
                CYCLE_STARTED_SIGNAL,
                {**late.to_wire(), "machine": machine_copy("etag-before-c3", late.upload_watch)},
            )
            c4 = CycleSignal.model_validate(started_signal(clock, 4))
            await r.raise_event(
                INSTANCE,
                CYCLE_UPLOADED_SIGNAL,
                {**signal_upload(world, 4), "machine": machine_copy("etag-read-4", c4.upload_watch)},
            )
            assert applied(r) == ["c2", "c3", "c4"]
            seen = CycleCompletion.model_validate(r.calls.of("complete_cycle")[-1]).machine_seen
            assert seen is not None and seen.etag == "etag-read-4"
            await stop(r, world)

    run(scenario())


async def _until_in_history(r: Run, event_name: str) -> None:
    for _ in range(1000):
        history = r.engine.store.load_history(INSTANCE)
        if any(e["EventType"] == EventType.EVENT_RAISED and e.get("Name") == event_name for e in history):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{event_name} never reached the orchestration's history")


def test_a_later_cycles_start_taken_while_a_cycle_is_applied_still_arms_its_upload_deadline(
    tmp_path: Path,
) -> None:
    """An appliance may start its next cycle before the last one is applied: that start is taken by the wait
    that watches for the applied cycle's own start, and its deadline must still be armed in the sleep after
    (the start's signal is handed on, and the completion's machine shows the watch too)."""
    clock = ManualClock()
    world = World(clock, last_applied=1)
    world.upload(2)
    entered, release = threading.Event(), threading.Event()
    check = world.check_disk

    def slow_apply(payload: Any) -> Any:
        if DiskApply.model_validate(payload).cycle_id == "c3":
            entered.set()
            release.wait(10)
        return check(payload)

    stubs = {**world.stubs(), "apply_cycle_disk": slow_apply}

    async def scenario() -> None:
        async with running([replication_bp], stubs, tmp_path, clock) as r:
            await start(r)
            await r.engine.raise_event(INSTANCE, CYCLE_UPLOADED_SIGNAL, signal_upload(world, 3))
            await asyncio.to_thread(entered.wait, 10)
            watch = UploadWatch(
                cycle_id="c4",
                sequence=4,
                kind="delta",
                disk_ids=list(DISKS),
                started_at=clock.now(),
                deadline=clock.now() + timedelta(minutes=2),
            )
            with world.lock:
                world.upload_watch = watch
            await r.engine.raise_event(
                INSTANCE,
                CYCLE_STARTED_SIGNAL,
                CycleSignal(cycle_id="c4", started=True, upload_watch=watch).to_wire(),
            )
            await _until_in_history(r, CYCLE_STARTED_SIGNAL)
            release.set()
            await r.idle()
            assert applied(r) == ["c2", "c3"]
            await r.advance(119)
            assert r.calls.of("time_out_uploads") == []
            await r.advance(1)
            await r.advance(1)
            assert [UploadDeadline.model_validate(p) for p in r.calls.of("time_out_uploads")] == [
                UploadDeadline(machine_id=MACHINE, cycle_id="c4")
            ]
            await stop(r, world)

    run(scenario())
