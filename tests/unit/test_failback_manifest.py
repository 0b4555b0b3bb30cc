"""The reverse manifest planners: checked against a byte-level model of the two disks."""

from __future__ import annotations

import base64
import hashlib
from itertools import pairwise

import pytest
from azure.storage.blob._shared.validation import calculate_crc64_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.command import MAX_RANGE_BYTES, ApplyReverseManifest, RangeOp, hashed_pieces
from shared.failback.manifest import (
    PlannedRange,
    crc64_from_header,
    crc64_hex,
    crc64_to_header,
    differing_blocks,
    digests,
    merge_to_at_most,
    plan_from_changes,
    plan_pieces,
    split,
    split_manifest,
    subtract,
    to_manifest,
    totals,
    union,
)

S = 512
KIB = 1024
MIB = 1024 * KIB
W, Z = RangeOp.WRITE, RangeOp.ZERO


def sectors(ranges: list[tuple[int, int]]) -> set[int]:
    return {s for offset, length in ranges for s in range(offset // S, (offset + length) // S)}


def planned_sectors(planned: list[PlannedRange], op: RangeOp) -> set[int]:
    return sectors([(r.offset, r.length) for r in planned if r.op is op])


def sector_ranges(max_sector: int) -> st.SearchStrategy[list[tuple[int, int]]]:
    one = st.tuples(st.integers(0, max_sector - 1), st.integers(1, 64)).map(
        lambda t: (t[0] * S, min(t[1], max_sector - t[0]) * S)
    )
    return st.lists(one, max_size=12)


# --- range arithmetic -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ranges", "expected"),
    [
        ([], []),
        ([(0, 512), (512, 512)], [(0, 1024)]),  # adjacent coalesce
        ([(1024, 512), (0, 2048)], [(0, 2048)]),  # contained
        ([(0, 512), (1024, 512)], [(0, 512), (1024, 512)]),  # a gap stays a gap
        ([(0, 0), (512, 512)], [(512, 512)]),  # empty dropped
    ],
)
def test_union_table(ranges: list[tuple[int, int]], expected: list[tuple[int, int]]) -> None:
    assert union(ranges) == expected


@pytest.mark.parametrize(
    ("ranges", "removed", "expected"),
    [
        ([(0, 4096)], [(1024, 1024)], [(0, 1024), (2048, 2048)]),
        ([(0, 4096)], [(0, 4096)], []),
        ([(0, 1024), (2048, 1024)], [(512, 2048)], [(0, 512), (2560, 512)]),
        ([(0, 1024)], [], [(0, 1024)]),
    ],
)
def test_subtract_table(
    ranges: list[tuple[int, int]], removed: list[tuple[int, int]], expected: list[tuple[int, int]]
) -> None:
    assert subtract(ranges, removed) == expected


@given(sector_ranges(256), sector_ranges(256))
def test_union_and_subtract_are_set_operations(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    assert sectors(union(a, b)) == sectors(a) | sectors(b)
    assert sectors(subtract(a, b)) == sectors(a) - sectors(b)
    merged = union(a, b)
    assert all(x[0] + x[1] < y[0] for x, y in pairwise(merged))


def test_split_cuts_into_units() -> None:
    assert split([(0, 9 * MIB)]) == [(0, 4 * MIB), (4 * MIB, 4 * MIB), (8 * MIB, MIB)]


# --- planning from change records -------------------------------------------------------------------


DISK = 64 * MIB


def test_plan_from_changes_unites_both_sides_and_cuts_writes_into_4_mib_units() -> None:
    planned = plan_from_changes(
        DISK,
        azure_changed=[(0, 6 * MIB), (20 * MIB, 4 * KIB)],
        on_premises_changed=[(6 * MIB, 512), (20 * MIB + 4 * KIB, 4 * KIB), (40 * MIB, 64 * KIB)],
        azure_cleared=[(30 * MIB, 8 * MIB)],
    )
    assert [(r.offset, r.length, r.op) for r in planned] == [
        (0, 4 * MIB, W),
        (4 * MIB, 2 * MIB + 512, W),
        (20 * MIB, 8 * KIB, W),
        (30 * MIB, 8 * MIB, Z),  # zero ranges are kept whole: nothing is read for them
        (40 * MIB, 64 * KIB, W),
    ]
    t = totals(planned, DISK)
    assert t.bytes_transferred == 6 * MIB + 512 + 8 * KIB + 64 * KIB
    assert t.bytes_zeroed == 8 * MIB
    assert t.bytes_processed == DISK == t.bytes_transferred + t.bytes_matched


def test_a_range_cleared_in_azure_is_zeroed_even_where_on_premises_changed_it() -> None:
    planned = plan_from_changes(
        DISK, azure_changed=[], on_premises_changed=[(0, 2 * MIB)], azure_cleared=[(MIB, MIB)]
    )
    assert [(r.offset, r.length, r.op) for r in planned] == [(0, MIB, W), (MIB, MIB, Z)]


@pytest.mark.parametrize(
    ("ranges", "problem"),
    [([(100, 512)], "512-byte"), ([(DISK - 512, 1024)], "beyond the disk")],
)
def test_plan_from_changes_refuses_bad_ranges(ranges: list[tuple[int, int]], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        plan_from_changes(DISK, azure_changed=ranges)


@settings(max_examples=200)
@given(
    sector_ranges(512),
    sector_ranges(512),
    sector_ranges(512),
    st.sampled_from([S, 64 * KIB, MAX_RANGE_BYTES]),
)
def test_plan_from_changes_covers_exactly_what_differs(
    azure: list[tuple[int, int]],
    on_premises: list[tuple[int, int]],
    cleared: list[tuple[int, int]],
    unit: int,
) -> None:
    disk = 512 * S
    planned = plan_from_changes(
        disk, azure_changed=azure, on_premises_changed=on_premises, azure_cleared=cleared, max_unit=unit
    )
    assert planned_sectors(planned, Z) == sectors(cleared)
    assert planned_sectors(planned, W) == (sectors(azure) | sectors(on_premises)) - sectors(cleared)
    for before, after in pairwise(planned):
        assert before.end <= after.offset
    assert all(r.length <= unit for r in planned if r.op is W)
    t = totals(planned, disk)
    assert t.bytes_transferred == len(planned_sectors(planned, W)) * S  # no byte sent twice


# --- planning from block hashes ---------------------------------------------------------------------


def block_digests(image: bytes, block: int) -> list[bytes]:
    return [hashlib.sha256(image[i : i + block]).digest() for i in range(0, len(image), block)]


@settings(max_examples=100)
@given(st.data())
def test_differing_blocks_are_exactly_the_blocks_that_differ(data: st.DataObject) -> None:
    block = 4 * KIB
    size = data.draw(st.integers(1, 24)) * S * 8 + data.draw(st.sampled_from([0, S, 3 * S]))
    azure = bytearray(size)
    on_prem = bytearray(size)
    for offset, length in data.draw(sector_ranges(size // S)):
        azure[offset : offset + length] = b"\xa5" * length
    for offset, length in data.draw(sector_ranges(size // S)):
        on_prem[offset : offset + length] = b"\x5a" * length
    planned = differing_blocks(
        size,
        block,
        on_premises=block_digests(bytes(on_prem), block),
        azure=block_digests(bytes(azure), block),
    )
    # Applying the plan to the on-premises bytes gives Azure's.
    result = bytearray(on_prem)
    for r in planned:
        result[r.offset : r.end] = azure[r.offset : r.end] if r.op is W else bytes(r.length)
    assert result == azure
    # Only differing blocks are touched, and zero ops only where Azure is zero.
    for r in planned:
        for b in range(r.offset // block, -(-r.end // block)):
            assert azure[b * block : (b + 1) * block] != on_prem[b * block : (b + 1) * block]
        if r.op is Z:
            assert not any(azure[r.offset : r.end])


def test_a_smaller_on_premises_hash_list_sends_the_missing_blocks() -> None:
    block = MIB
    azure = [hashlib.sha256(bytes([i]) * block).digest() for i in range(1, 5)]
    planned = differing_blocks(4 * MIB, block, on_premises=azure[:2], azure=azure)
    assert [(r.offset, r.length, r.op) for r in planned] == [(2 * MIB, 2 * MIB, W)]
    t = totals(planned, 4 * MIB)
    assert (t.bytes_transferred, t.bytes_matched) == (2 * MIB, 2 * MIB)


def test_hash_lists_must_match_the_disk() -> None:
    with pytest.raises(ValueError, match="2 Azure block hashes for 3 blocks"):
        differing_blocks(3 * MIB, MIB, on_premises=[], azure=[b"x" * 32] * 2)
    assert digests(b"a" * 64) == [b"a" * 32, b"a" * 32]
    with pytest.raises(ValueError, match="whole number"):
        digests(b"a" * 33)


# --- the finer pass: pieces of the differing blocks ------------------------------------------------


def pieces_of(image: bytes, ranges: list[tuple[int, int]] | None, block: int) -> list[tuple[int, bytes]]:
    return [(o, image[o : o + n]) for o, n in hashed_pieces(ranges, block, len(image))]


@settings(max_examples=100)
@given(st.data())
def test_two_passes_send_only_the_small_pieces_that_differ(data: st.DataObject) -> None:
    """Coarse blocks, then the differing ones in 4 KiB pieces: the plan makes on-premises equal Azure
    and writes only pieces that differ, each with the CRC64 of exactly its bytes."""
    coarse, fine = 64 * KIB, 4 * KIB
    size = data.draw(st.integers(1, 12)) * coarse + data.draw(st.sampled_from([0, S, 9 * S]))
    azure = bytearray(size)
    on_prem = bytearray(size)
    for offset, length in data.draw(sector_ranges(size // S)):
        azure[offset : offset + length] = data.draw(st.sampled_from([b"\xa5", b"\x00"])) * length
    for offset, length in data.draw(sector_ranges(size // S)):
        on_prem[offset : offset + length] = b"\x5a" * length
    differing = differing_blocks(
        size,
        coarse,
        on_premises=block_digests(bytes(on_prem), coarse),
        azure=block_digests(bytes(azure), coarse),
    )
    ranges = merge_to_at_most(((r.offset, r.length) for r in differing), 3)
    on_prem_digests = [hashlib.sha256(d).digest() for _, d in pieces_of(bytes(on_prem), ranges, fine)]
    manifest = plan_pieces(pieces_of(bytes(azure), ranges, fine), on_prem_digests, max_unit=3 * fine)
    result = bytearray(on_prem)
    for r in manifest:
        if r.op is W:
            assert r.crc64 == crc64_hex(bytes(azure[r.offset : r.end])) and r.length <= 3 * fine
            result[r.offset : r.end] = azure[r.offset : r.end]
        else:
            assert r.crc64 is None and not any(azure[r.offset : r.end])
            result[r.offset : r.end] = bytes(r.length)
    assert result == azure
    for r in manifest:
        for start in range(r.offset, r.end, fine):
            end = min(start + fine, r.end)
            assert azure[start:end] != on_prem[start:end], "an identical piece was sent"
    assert all(after.offset >= before.end for before, after in pairwise(manifest))


def test_scattered_small_writes_cost_their_pieces_not_their_blocks() -> None:
    size, coarse, fine = 16 * MIB, MIB, 4 * KIB
    azure = bytearray(size)
    for i in range(16):  # one 4 KiB write in every 1 MiB block
        azure[i * MIB + 12 * KIB : i * MIB + 16 * KIB] = b"\x01" * fine
    on_prem = bytes(size)
    differing = differing_blocks(
        size, coarse, on_premises=block_digests(on_prem, coarse), azure=block_digests(bytes(azure), coarse)
    )
    assert (
        totals(differing, size).bytes_transferred == 16 * MIB
    )  # the coarse pass alone: 256 times the change
    ranges = merge_to_at_most(((r.offset, r.length) for r in differing), 4096)
    manifest = plan_pieces(
        pieces_of(bytes(azure), ranges, fine),
        [hashlib.sha256(d).digest() for _, d in pieces_of(on_prem, ranges, fine)],
    )
    assert [(r.offset, r.length, r.op) for r in manifest] == [
        (i * MIB + 12 * KIB, fine, W) for i in range(16)
    ]
    assert totals(manifest, size).bytes_transferred == 16 * fine


def test_a_piece_missing_on_premises_differs() -> None:
    manifest = plan_pieces([(0, b"\x01" * S), (S, b"\x02" * S)], [hashlib.sha256(b"\x01" * S).digest()])
    assert [(r.offset, r.length, r.op) for r in manifest] == [(S, S, W)]


def test_merging_joins_the_smallest_gaps_first() -> None:
    ranges = [(0, S), (2 * S, S), (10 * S, S), (11 * S, S), (40 * S, S)]
    assert merge_to_at_most(ranges, 10) == [(0, S), (2 * S, S), (10 * S, 2 * S), (40 * S, S)]
    assert merge_to_at_most(ranges, 3) == [(0, 3 * S), (10 * S, 2 * S), (40 * S, S)]
    assert merge_to_at_most(ranges, 1) == [(0, 41 * S)]
    with pytest.raises(ValueError, match="positive"):
        merge_to_at_most(ranges, 0)


# --- checksums and the command manifest -------------------------------------------------------------


def test_crc64_is_azure_storages_and_converts_to_its_header() -> None:
    data = bytes(range(256)) * 64
    header = base64.b64encode(
        calculate_crc64_bytes(data)
    ).decode()  # what the SDK sends as x-ms-content-crc64
    assert crc64_to_header(crc64_hex(data)) == header
    assert crc64_from_header(header) == crc64_hex(data)
    # Streaming: the CRC of a whole is the CRC continued over its parts.
    assert crc64_hex(data[1000:], int(crc64_hex(data[:1000]), 16)) == crc64_hex(data)


def test_to_manifest_needs_a_crc_for_every_write_and_splits_into_commands() -> None:
    planned = plan_from_changes(DISK, azure_changed=[(0, 8 * MIB)], azure_cleared=[(16 * MIB, MIB)])
    with pytest.raises(ValueError, match="no CRC64"):
        to_manifest(planned, {0: "0" * 16})
    manifest = to_manifest(planned, {0: "0" * 16, 4 * MIB: "1" * 16})
    assert [(r.op, r.crc64) for r in manifest] == [(W, "0" * 16), (W, "1" * 16), (Z, None)]
    parts = split_manifest(manifest, max_ranges=2)
    assert [len(p) for p in parts] == [2, 1] and [r for p in parts for r in p] == manifest
    assert split_manifest([]) == [[]]
    ApplyReverseManifest(disk_id="d", snapshot_read_url="u", reverse_cycle_id="rc-1", manifest=parts[0])
