"""Change tracking on raw images: CBT bitmap, .hrl replay, block-hash diff, and extent packing."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.blocks import ImageFile, merge_ranges, nonzero_ranges
from appliance.cbt import ALL_AREAS, ChangedBlockTracker, ChangeTrackingReset, state_path_for
from appliance.hashdiff import BlockHashIndex, diff_blocks
from appliance.hrl import HyperVChangeTracker, ReplicationLog, ReplicationLogCorrupt
from appliance.upload import Throttle, UploadOptions, plan_extents

KIB = 1024
MIB = 1024 * KIB


def make_image(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    return path


def test_nonzero_ranges_skip_zero_blocks(tmp_path: Path) -> None:
    image = make_image(tmp_path / "d.raw", 4 * MIB + 1536)
    with ImageFile(image, writable=True) as f:
        f.write(64 * KIB, b"\x01" * 512)  # one block
        f.write(200 * KIB, os.urandom(100 * KIB))  # straddles blocks 3..4
        f.write(4 * MIB + 1024, b"\xff" * 512)  # the partial last block
    with ImageFile(image) as f:
        assert nonzero_ranges(f, block_size=64 * KIB) == [
            (64 * KIB, 64 * KIB),
            (192 * KIB, 128 * KIB),
            (4 * MIB, 1536),
        ]


def test_cbt_records_writes_and_starts_a_new_epoch(tmp_path: Path) -> None:
    image = make_image(tmp_path / "d.raw", 2 * MIB)
    with ChangedBlockTracker.enable(image, block_size=4 * KIB) as cbt:
        first = cbt.change_id
        cbt.write(0, b"a" * 512)
        cbt.write(10 * KIB, b"b" * 8 * KIB)  # blocks 2..4
        cbt.write(2 * MIB - 512, b"c" * 512)
        assert cbt.changed_areas(first) == [(0, 4 * KIB), (8 * KIB, 12 * KIB), (2 * MIB - 4 * KIB, 4 * KIB)]
        assert cbt.changed_areas(ALL_AREAS) == [
            (0, 4 * KIB),
            (8 * KIB, 12 * KIB),
            (2 * MIB - 4 * KIB, 4 * KIB),
        ]
        second = cbt.next_epoch()
        assert second != first and cbt.changed_areas(second) == []
        with pytest.raises(ChangeTrackingReset):
            cbt.changed_areas(first)  # a lost cycle: the caller must resync
        cbt.write(4 * KIB, b"d" * 512)
    # state survives a clean close
    with ChangedBlockTracker.open(image) as cbt:
        assert cbt.changed_areas(second) == [(4 * KIB, 4 * KIB)]
    with ImageFile(image) as f:
        assert f.read(4 * KIB, 512) == b"d" * 512  # writes went through to the image


def test_cbt_resets_on_untracked_writes_or_lost_state(tmp_path: Path) -> None:
    image = make_image(tmp_path / "d.raw", MIB)
    ChangedBlockTracker.enable(image).close()
    with ImageFile(image, writable=True) as f:
        f.write(0, b"x" * 512)  # a write CBT never saw
    os.utime(image, ns=(1, 1))
    with pytest.raises(ChangeTrackingReset, match="changed since"):
        ChangedBlockTracker.open(image)
    state_path_for(image).write_text("{garbage")
    with pytest.raises(ChangeTrackingReset, match="unusable"):
        ChangedBlockTracker.open(image)
    state_path_for(image).unlink()
    with pytest.raises(ChangeTrackingReset):
        ChangedBlockTracker.open(image)


def test_cbt_refuses_unaligned_writes(tmp_path: Path) -> None:
    with ChangedBlockTracker.enable(make_image(tmp_path / "d.raw", MIB)) as cbt, pytest.raises(ValueError):
        cbt.write(100, b"x" * 512)


def test_hrl_replays_last_writer_wins_from_the_frozen_log(tmp_path: Path) -> None:
    image = make_image(tmp_path / "d.vhdx.raw", MIB)
    with HyperVChangeTracker(image) as hv:
        hv.write(0, b"\x01" * 4096)
        hv.write(1024, b"\x02" * 1024)  # overwrites the middle
        hv.write(8192, b"\x03" * 512)
        hv.write(3584, b"\x04" * 1024)  # straddles the end of the first write
        frozen = hv.switch_log()
        hv.write(0, b"\x05" * 512)  # next interval: not in the frozen log
        second = hv.switch_log()
    with ReplicationLog.open(frozen) as log:
        assert log.changed_ranges() == [(0, 4608), (8192, 512)]
        expected = b"\x01" * 1024 + b"\x02" * 1024 + b"\x01" * 1536 + b"\x04" * 1024
        assert log.read(0, 4608) == expected
        assert log.read(8192, 512) == b"\x03" * 512
        with pytest.raises(ValueError, match="not written"):
            log.read(4608, 512)
    with ReplicationLog.open(second) as log:
        assert log.changed_ranges() == [(0, 512)] and log.read(0, 512) == b"\x05" * 512
        assert log.number == 2


def test_hrl_detects_torn_and_corrupt_records(tmp_path: Path) -> None:
    image = make_image(tmp_path / "d.raw", MIB)
    with HyperVChangeTracker(image) as hv:
        hv.write(0, os.urandom(4096))
        hv.write(8192, os.urandom(4096))
        frozen = hv.switch_log()
    raw = frozen.read_bytes()
    torn = tmp_path / "torn.hrl"
    torn.write_bytes(raw[:-100])
    with pytest.raises(ReplicationLogCorrupt, match="runs past"):
        ReplicationLog.open(torn)
    flipped = tmp_path / "flipped.hrl"
    flipped.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(ReplicationLogCorrupt, match="CRC32"):
        ReplicationLog.open(flipped)
    notalog = tmp_path / "x.hrl"
    notalog.write_bytes(b"hello")
    with pytest.raises(ReplicationLogCorrupt):
        ReplicationLog.open(notalog)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.integers(0, 63), st.integers(1, 8), st.integers(1, 255)),
        min_size=1,
        max_size=30,
    )
)
def test_hrl_replay_equals_the_image_on_every_written_byte(
    tmp_path: Path, writes: list[tuple[int, int, int]]
) -> None:
    image = tmp_path / f"p{random.getrandbits(32)}.raw"
    make_image(image, 64 * 512 + 8 * 512)
    with HyperVChangeTracker(image) as hv:
        for sector, count, value in writes:
            hv.write(sector * 512, bytes([value]) * count * 512)
        frozen = hv.switch_log()
    with ReplicationLog.open(frozen) as log, ImageFile(image) as img:
        ranges = log.changed_ranges()
        assert ranges == merge_ranges((s * 512, c * 512) for s, c, _ in writes)
        for offset, length in ranges:
            assert log.read(offset, length) == img.read(offset, length)


def test_hash_diff_finds_changed_blocks_and_survives_a_save(tmp_path: Path) -> None:
    image = make_image(tmp_path / "d.raw", 4 * MIB + 512)
    with ImageFile(image, writable=True) as f:
        f.write(0, os.urandom(MIB))
        index = BlockHashIndex.compute(f, block_size=MIB)
        index.save(tmp_path / "d.bhi")
        f.write(2 * MIB + 512, b"z" * 512)
        f.write(4 * MIB, b"y" * 512)  # the partial last block
        loaded = BlockHashIndex.load(tmp_path / "d.bhi")
        new_index, changed = diff_blocks(f, loaded, block_size=MIB)
        assert changed == [(2 * MIB, MIB), (4 * MIB, 512)]
        _, nothing = diff_blocks(f, new_index, block_size=MIB)
        assert nothing == []
        _, everything = diff_blocks(f, None, block_size=MIB)  # no baseline: a full resync
        assert everything == [(0, 4 * MIB + 512)]


def test_plan_extents_cuts_at_4_mib_and_packs_blobs() -> None:
    ranges = [(0, 10 * MIB), (20 * MIB, 512), (20 * MIB + 512, 512)]
    blobs = plan_extents(ranges, max_extent=4 * MIB, max_blob=8 * MIB)
    assert blobs == [
        [(0, 4 * MIB, 0), (4 * MIB, 4 * MIB, 4 * MIB)],
        [(8 * MIB, 2 * MIB, 0), (20 * MIB, 1024, 2 * MIB)],
    ]


def test_upload_threads_are_bounded_by_the_policy_range() -> None:
    assert UploadOptions().upload_threads == 4
    UploadOptions(upload_threads=32)
    for bad in (0, 33):
        with pytest.raises(ValueError):
            UploadOptions(upload_threads=bad)


class FakeClock:
    """Virtual time: the throttle's waits are recorded, never slept."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_throttle_hands_out_time_slots_at_the_configured_rate() -> None:
    clock = FakeClock()
    throttle = Throttle(1000, clock=clock, sleep=clock.sleep)
    throttle.take(500)  # first slot starts now
    throttle.take(500)  # waits for the first to pass
    throttle.take(2000)
    assert clock.slept == [0.5, 0.5]
    assert clock.now == 101.0
    clock.now += 10  # idle time builds up no credit
    throttle.take(1000)
    throttle.take(1000)
    assert clock.slept[-1] == 1.0
    unlimited = Throttle(None, clock=clock, sleep=clock.sleep)
    unlimited.take(10**9)
    assert len(clock.slept) == 3
