"""The Mobility agent's replication without a network: changed blocks by block hashes, the manifests it
writes (validated by the control plane's own model, and replayed onto a copy of the disk), the policy's
throttle, and the at-least-once posting of a cycle whose base moves on only once it is accepted."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent import replicator
from agent.replicator import (
    BLOCK,
    MAX_EXTENT,
    ApiError,
    ControlPlane,
    CycleUpload,
    Disk,
    Policy,
    Replicator,
    Throttle,
    changed_runs,
    upload_disk,
)
from shared.replication.delta_manifest import DeltaManifest

MIB = 1024 * 1024


class MemoryUpload(CycleUpload):
    """The blobs a cycle writes, kept in memory (the same calls the agent makes to storage)."""

    def __init__(self, machine_id: str, cycle_id: str, threads: int = 2) -> None:
        pool = ThreadPoolExecutor(threads)
        super().__init__(
            ControlPlane("http://unused", "", "-"),
            machine_id,
            cycle_id,
            Throttle(lambda: None),
            pool,
            threads,
        )
        self.blocks: dict[str, dict[str, bytes]] = {}
        self.blobs: dict[str, bytes] = {}

    def put_block(self, blob: str, block_id: str, data: bytes) -> None:
        self.blocks.setdefault(blob, {})[block_id] = data
        self.bytes_sent += len(data)

    def commit(self, blob: str, block_ids: list[str]) -> None:
        self.blobs[blob] = b"".join(self.blocks[blob][b] for b in block_ids)

    def put_blob(self, blob: str, data: bytes) -> None:
        self.blobs[blob] = data


def _image(path: Path, size: int, data_at: dict[int, bytes]) -> Disk:
    with path.open("wb") as f:
        f.truncate(size)
        for offset, data in data_at.items():
            f.seek(offset)
            f.write(data)
    return Disk("disk-0", path)


def _replay(upload: MemoryUpload, manifest_blob: str, onto: bytearray) -> DeltaManifest:
    manifest = DeltaManifest.model_validate(json.loads(upload.blobs[manifest_blob]))
    for extent in manifest.extents:
        data = upload.blobs[extent.blob][extent.blob_offset : extent.blob_offset + extent.length]
        onto[extent.offset : extent.offset + extent.length] = data
    return manifest


def test_a_full_copy_skips_zero_blocks_and_a_delta_sends_only_changed_blocks(tmp_path: Path) -> None:
    rng = random.Random(1)
    size = 12 * MIB + 4096  # a last block shorter than the hashed unit
    disk = _image(
        tmp_path / "disk.img",
        size,
        {0: rng.randbytes(6 * MIB), 9 * MIB: rng.randbytes(MIB), 12 * MIB: rng.randbytes(4096)},
    )
    initial = MemoryUpload("vm-1", "c-1")
    first = upload_disk(initial, disk, 1, "initial", None)
    replica = bytearray(size)
    manifest = _replay(initial, first.manifest_blob, replica)
    assert bytes(replica) == disk.path.read_bytes()
    assert manifest.kind.value == "initial" and manifest.disk_size == size
    assert all(e.length <= MAX_EXTENT for e in manifest.extents)
    assert first.uploaded == 7 * MIB + 4096  # the zero blocks were not sent
    assert [(e.offset, e.length) for e in manifest.extents] == [
        (0, 4 * MIB),
        (4 * MIB, 2 * MIB),
        (9 * MIB, MIB),
        (12 * MIB, 4096),
    ]

    # One block changed, one zeroed: the delta carries exactly those two, zeros included.
    with disk.path.open("r+b") as f:
        f.seek(3 * MIB + 512)
        f.write(b"\x01" * 512)
        f.seek(9 * MIB)
        f.write(bytes(MIB))
    delta = MemoryUpload("vm-1", "c-2")
    second = upload_disk(delta, disk, 2, "delta", first.digests)
    manifest = _replay(delta, second.manifest_blob, replica)
    assert [(e.offset, e.length) for e in manifest.extents] == [(3 * MIB, MIB), (9 * MIB, MIB)]
    assert bytes(replica) == disk.path.read_bytes()

    # Nothing changed: a valid empty delta and no data blob.
    empty = MemoryUpload("vm-1", "c-3")
    third = upload_disk(empty, disk, 3, "delta", second.digests)
    assert _replay(empty, third.manifest_blob, replica).extents == []
    assert list(empty.blobs) == [third.manifest_blob]


def test_runs_are_cut_at_4_mib_and_a_resized_disk_is_compared_with_nothing(tmp_path: Path) -> None:
    disk = _image(tmp_path / "disk.img", 10 * MIB, {0: b"\xff" * (10 * MIB)})
    runs = [r for r in changed_runs(disk, None, True) if isinstance(r, tuple)]
    assert [(o, len(d)) for o, d in runs] == [(0, 4 * MIB), (4 * MIB, 4 * MIB), (8 * MIB, 2 * MIB)]
    short = bytes(16)  # the hashes of some other disk: not comparable
    result = upload_disk(MemoryUpload("vm-1", "c-1"), disk, 2, "delta", short)
    assert result.uploaded == 10 * MIB


def test_a_disk_that_is_not_whole_sectors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.img"
    path.write_bytes(b"x" * 1000)
    with pytest.raises(ValueError, match="multiple of 512"):
        upload_disk(MemoryUpload("vm-1", "c-1"), Disk("d", path), 1, "initial", None)


def test_the_policy_limits_bandwidth_by_work_hours_of_the_local_time() -> None:
    policy = Policy.from_wire(
        {
            "throttlingEnabled": True,
            "workHoursBandwidthKbps": 800,
            "nonWorkHoursBandwidthKbps": 8000,
            "workHours": {"days": ["Monday"], "start": "09:00:00", "end": "18:00:00"},
            "uploadThreadsPerVm": 64,
        }
    )
    assert policy.threads == 32
    assert policy.bytes_per_second(datetime(2026, 11, 30, 10, 0)) == 100_000  # a Monday, 10:00
    assert policy.bytes_per_second(datetime(2026, 11, 30, 18, 0)) == 1_000_000
    assert policy.bytes_per_second(datetime(2026, 12, 1, 10, 0)) == 1_000_000  # Tuesday: not a work day
    assert Policy.from_wire({"throttlingEnabled": False}).bytes_per_second(datetime(2026, 11, 30, 10)) is None


def test_the_throttle_spaces_every_threads_bytes_by_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)

    throttle = Throttle(lambda: 1000.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        throttle.take(500)
    assert slept == [0.5, 1.0]  # the first goes at once; 1,500 bytes take 1.5 s at 1,000 B/s
    now[0] = 10.0
    throttle.take(500)  # idle time is not saved up
    assert slept == [0.5, 1.0]


class FakeApi(ControlPlane):
    def __init__(self, answers: list[Any]) -> None:
        super().__init__("http://unused", "", "-")
        self.answers = answers
        self.calls: list[tuple[str, str, Any]] = []

    def call(self, method: str, path: str, body: Any = None) -> Any:
        self.calls.append((method, path, body))
        if path == "/mobility/agents/policy":
            return {"uploadThreadsPerVm": 2}
        if path == "/mobility/agents/cycle-failures":
            return {"machineId": body["machineId"], "errorCode": "x", "health": "Warning"}
        if path == "/mobility/agents/cycles":
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        raise AssertionError(path)


def test_a_cycle_is_posted_at_least_once_and_the_base_moves_on_only_when_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = _image(tmp_path / "disk.img", 2 * MIB, {0: b"a" * BLOCK})
    sent: list[MemoryUpload] = []

    def memory_upload(api: ControlPlane, machine_id: str, cycle_id: str, *rest: Any) -> MemoryUpload:
        sent.append(MemoryUpload(machine_id, cycle_id))
        return sent[-1]

    monkeypatch.setattr(replicator, "CycleUpload", memory_upload)
    api = FakeApi([ApiError(503, "busy"), {"duplicate": False}, {"duplicate": True}])
    rep = Replicator(api, [disk], tmp_path / "state")

    with pytest.raises(ApiError):
        rep.run_cycle("initial", "vm-1", None)
    assert not rep.has_base() and (tmp_path / "state/pending.json").exists()
    # The next run posts the very same cycle first, then moves the base on.
    report = rep.post_pending()
    assert report is not None and report.sequence == 1 and report.kind == "initial"
    posted = [c[2] for c in api.calls if c[1] == "/mobility/agents/cycles"]
    assert posted[0] == posted[1] and posted[0]["cycleId"].endswith("-00000001")
    assert rep.has_base() and rep.post_pending() is None

    # A delta continues at sequence 2 from the posted hashes; a server past it makes it a resync.
    with disk.path.open("r+b") as f:
        f.seek(BLOCK)
        f.write(b"b" * 512)
    delta = rep.run_cycle("delta", "vm-1", 1)
    assert (delta.kind, delta.sequence, delta.uploaded) == ("delta", 2, BLOCK)
    api.answers.append({"duplicate": False})
    resync = rep.run_cycle("delta", "vm-1", 7)
    assert (resync.kind, resync.sequence) == ("resync", 8)


def test_a_refused_cycle_is_dropped_and_the_base_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = _image(tmp_path / "disk.img", MIB, {0: b"a" * 512})
    monkeypatch.setattr(replicator, "CycleUpload", lambda api, m, c, *rest: MemoryUpload(m, c))
    api = FakeApi([ApiError(409, "Conflict: machine vm-1 is Discovered")])
    rep = Replicator(api, [disk], tmp_path / "state")
    with pytest.raises(ApiError):
        rep.run_cycle("initial", "vm-1", None)
    assert not (tmp_path / "state/pending.json").exists()
    assert not (tmp_path / "state/disk-0.hashes.pending").exists()
    assert not rep.has_base()


def test_a_disk_it_cannot_read_is_reported_on_the_machine_and_nothing_is_posted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replicator, "CycleUpload", lambda api, m, c, *rest: MemoryUpload(m, c))
    api = FakeApi([])
    rep = Replicator(api, [Disk("data", tmp_path / "gone.img")], tmp_path / "state")
    with pytest.raises(OSError):
        rep.run_cycle("initial", "vm-1", None)
    [(_, _, report)] = [c for c in api.calls if c[1] == "/mobility/agents/cycle-failures"]
    assert report["machineId"] == "vm-1" and report["diskId"] == "data"
    assert "gone.img" in report["message"] and report["cycleId"].endswith("-00000001")
    assert not [c for c in api.calls if c[1] == "/mobility/agents/cycles"]
    assert not (tmp_path / "state/pending.json").exists()
