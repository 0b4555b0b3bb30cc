"""The apply engine's planning, without storage: how extents become verification reads and write calls."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.replication.apply_engine import (
    MAX_PUT_PAGE,
    _intersect,
    _is_zero,
    _merge,
    _plan_pieces,
    _plan_regions,
    _plan_writes,
    _region_size_for,
    _source_runs,
    _subtract,
)
from shared.replication.delta_manifest import Extent

MIB = 1024 * 1024
SHA = "00" * 32


def ext(offset: int, length: int, blob_offset: int, blob: str = "m/c/d/data-00000.bin") -> Extent:
    return Extent(offset=offset, length=length, blob=blob, blob_offset=blob_offset, sha256=SHA)


def test_pieces_cut_extents_at_4_mib_and_lay_out_the_spool_in_disk_order() -> None:
    pieces = _plan_pieces([ext(0, 10 * MIB, 0), ext(12 * MIB, 512, 10 * MIB)])
    assert [(p.extent, p.disk_offset, p.length, p.blob_offset, p.spool_offset) for p in pieces] == [
        (0, 0, 4 * MIB, 0, 0),
        (0, 4 * MIB, 4 * MIB, 4 * MIB, 4 * MIB),
        (0, 8 * MIB, 2 * MIB, 8 * MIB, 8 * MIB),
        (1, 12 * MIB, 512, 10 * MIB, 10 * MIB),
    ]


def test_adjacent_extents_coalesce_into_calls_of_at_most_4_mib() -> None:
    extents = [ext(i * 256 * 1024, 256 * 1024, i * 256 * 1024) for i in range(20)]  # 5 MiB run
    pieces = _plan_pieces(extents)
    for p in pieces:
        p.nonzero = True
    ops = _plan_writes(pieces, clear_zero_pages=True)
    assert [(op.offset, op.length, op.clear) for op in ops] == [(0, 4 * MIB, False), (4 * MIB, MIB, False)]


def test_zero_pieces_become_one_clear_of_any_length_and_split_data_calls() -> None:
    pieces = _plan_pieces([ext(0, 12 * MIB, 0), ext(12 * MIB, MIB, 12 * MIB)])
    # pieces: [0,4) data, [4,8) zero, [8,12) zero, [12,13) data
    pieces[0].nonzero = True
    pieces[3].nonzero = True
    ops = _plan_writes(pieces, clear_zero_pages=True)
    assert [(op.offset, op.length, op.clear) for op in ops] == [
        (0, 4 * MIB, False),
        (4 * MIB, 8 * MIB, True),
        (12 * MIB, MIB, False),
    ]
    # with clearing off, zeros are written as data like everything else
    assert all(not op.clear for op in _plan_writes(pieces, clear_zero_pages=False))


def test_non_adjacent_extents_are_never_coalesced() -> None:
    pieces = _plan_pieces([ext(0, 512, 0), ext(1024, 512, 512)])
    for p in pieces:
        p.nonzero = True
    assert len(_plan_writes(pieces, clear_zero_pages=True)) == 2


def test_regions_follow_blob_contiguity_and_never_split_an_extent() -> None:
    a, b = "m/c/d/data-00000.bin", "m/c/d/data-00001.bin"
    extents = [
        ext(0, MIB, 0, a),
        ext(MIB, MIB, 0, b),
        ext(2 * MIB, MIB, MIB, a),  # continues blob a
        ext(3 * MIB, 100 * MIB, 2 * MIB, a),  # bigger than a region: its own, whole
        ext(200 * MIB, MIB, 0, a),  # shares blob a's first bytes (dedup): a separate region
    ]
    regions = _plan_regions(extents, region_size=64 * MIB)
    assert [(r.blob, r.start, r.end, r.extents) for r in regions] == [
        (a, 0, MIB, [0]),
        (a, 0, 2 * MIB, [4, 2]),  # the dedup extent starts its own region, which extent 2 continues
        (a, 2 * MIB, 102 * MIB, [3]),
        (b, 0, MIB, [1]),
    ]


def test_one_pass_regions_keep_every_writer_busy_for_small_deltas() -> None:
    # 16 MiB of scattered 4 KiB writes, back to back in one blob: 4 regions (one per writer), not one
    small = [ext(i * 8 * MIB, 4096, i * 4096) for i in range(4096)]
    size = _region_size_for(small, 64 * MIB, parallelism=4)
    assert size == 4 * MIB
    regions = _plan_regions(small, size)
    assert len(regions) == 4 and all(r.end - r.start == 4 * MIB for r in regions)
    # a large delta keeps the configured region size; a tiny one is not cut below 1 MiB
    assert _region_size_for([ext(0, 4 * MIB, 0)] * 256, 64 * MIB, parallelism=4) == 64 * MIB
    assert _region_size_for([ext(0, 8192, 0)], 64 * MIB, parallelism=4) == MIB


def test_source_runs_merge_only_bytes_contiguous_in_one_blob() -> None:
    a, b = "m/c/d/data-00000.bin", "m/c/d/data-00001.bin"
    pieces = _plan_pieces(
        [ext(0, 512, 0, a), ext(512, 512, 512, a), ext(1024, 512, 0, b), ext(1536, 512, 4096, b)]
    )
    assert list(_source_runs(pieces)) == [(a, 0, 1024), (b, 0, 512), (b, 4096, 512)]


def test_range_arithmetic() -> None:
    assert _merge([(5, 7), (0, 2), (2, 3), (6, 9)]) == [(0, 3), (5, 9)]
    assert _subtract(0, 10, [(2, 4), (6, 7)]) == [(0, 2), (4, 6), (7, 10)]
    assert _subtract(0, 10, [(0, 10)]) == []
    assert _intersect([(0, 5), (8, 12)], [(3, 9)]) == [(3, 5), (8, 9)]


def test_zero_detection() -> None:
    data = bytes(1024) + b"\x01" + bytes(1023)
    assert _is_zero(data, 0, 1024)
    assert not _is_zero(data, 0, 1025)
    assert not _is_zero(data, 512, 2048)
    assert _is_zero(data, 1025, 2048)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 24), st.booleans()), max_size=30))
def test_write_plan_covers_every_extent_byte_once_and_respects_the_put_page_limit(
    spec: list[tuple[int, int, bool]],
) -> None:
    # Build sorted, non-overlapping extents from (gap, length, zero?) in 256 KiB units.
    unit = 256 * 1024
    extents, zero_flags, position, blob_offset = [], [], 0, 0
    for gap, length, zero in spec:
        position += gap * unit
        extents.append(ext(position, length * unit, blob_offset))
        zero_flags.append(zero)
        position += length * unit
        blob_offset += length * unit
    pieces = _plan_pieces(extents)
    for p in pieces:
        p.nonzero = not zero_flags[p.extent]
    ops = _plan_writes(pieces, clear_zero_pages=True)
    covered = [(op.offset, op.offset + op.length) for op in ops]
    assert covered == sorted(covered)
    assert _merge(covered) == _merge([(e.offset, e.end) for e in extents])
    assert sum(e - s for s, e in covered) == sum(e.length for e in extents)  # no byte twice
    for op in ops:
        assert op.offset % 512 == 0 and op.length % 512 == 0
        if not op.clear:
            assert op.length <= MAX_PUT_PAGE
            assert all(p.nonzero for p in op.pieces)
        assert sum(p.length for p in op.pieces) == op.length
