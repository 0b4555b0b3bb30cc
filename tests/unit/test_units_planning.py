"""Cutting a whole-disk copy into bounded units: the units partition the disk, keep every extent once and
in order, and respect every limit."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.replication.delta_manifest import Extent
from shared.replication.units import UnitLimits, cut_units
from shared.replication.vhd import round_up_to_mib

MIB = 1024 * 1024
SHA = "00" * 32


def extents_at(spans: list[tuple[int, int]]) -> list[Extent]:
    return [
        Extent(offset=o, length=n, blob="m/c/d/data-00000.bin", blob_offset=0, sha256=SHA) for o, n in spans
    ]


def check(
    extents: list[Extent], disk_size: int, limits: UnitLimits
) -> list[tuple[int, list[Extent], int, int]]:
    units = list(cut_units(iter(extents), disk_size, limits))
    # the ranges partition [0, virtual size)
    assert units[0][2] == 0 and units[-1][3] == round_up_to_mib(disk_size)
    assert all(a[3] == b[2] for a, b in itertools.pairwise(units))
    # every extent once, in order, inside its unit's range, and first indices follow
    assert [e for u in units for e in u[1]] == extents
    position = 0
    for first, unit_extents, start, end in units:
        assert first == position
        position += len(unit_extents)
        assert all(start <= e.offset and e.end <= end for e in unit_extents)
        assert len(unit_extents) <= limits.max_extents
        assert sum(e.length for e in unit_extents) <= max(
            limits.max_bytes, max((e.length for e in unit_extents), default=0)
        )
        if len(unit_extents) > 1:
            assert end - start <= limits.max_span or unit_extents[-1].end - start <= limits.max_span
        if not unit_extents:
            assert end - start <= limits.max_span
    return units


def test_a_dense_disk_is_cut_by_bytes_and_extent_count() -> None:
    extents = extents_at([(i * 4 * MIB, 4 * MIB) for i in range(100)])
    units = check(extents, 400 * MIB, UnitLimits(max_bytes=64 * MIB, max_extents=10, max_span=1024 * MIB))
    assert [len(u[1]) for u in units] == [10] * 10


def test_a_sparse_disk_gets_units_for_its_empty_stretches() -> None:
    # 2 TiB with data at the start and the end only: the middle is empty units of at most the span
    tib = 1024**4
    extents = extents_at([(0, 4 * MIB), (2 * tib - 4 * MIB, 4 * MIB)])
    limits = UnitLimits(max_span=64 * 1024**3)
    units = check(extents, 2 * tib, limits)
    assert 2 * tib // limits.max_span <= len(units) <= 2 * tib // limits.max_span + 2
    assert all(end - start <= limits.max_span for _, _, start, end in units)
    assert sum(1 for u in units if not u[1]) == len(units) - 2


def test_a_disk_without_extents_is_units_of_the_span() -> None:
    units = check([], 10 * MIB, UnitLimits(max_span=4 * MIB))
    assert [(u[2], u[3]) for u in units] == [(0, 4 * MIB), (4 * MIB, 8 * MIB), (8 * MIB, 10 * MIB)]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 64), st.integers(1, 16)), max_size=60),
    st.integers(1, 8),
    st.integers(1, 12),
    st.integers(1, 40),
)
def test_units_partition_any_disk_within_their_limits(
    gaps_and_lengths: list[tuple[int, int]], max_extents: int, max_mib: int, span_mib: int
) -> None:
    spans, position = [], 0
    for gap, length in gaps_and_lengths:
        position += gap * 512 * 1024
        spans.append((position, length * 512 * 1024))
        position += length * 512 * 1024
    disk = max(position, 512) + 3 * MIB
    limits = UnitLimits(max_extents=max_extents, max_bytes=max(4, max_mib) * MIB, max_span=span_mib * MIB)
    check(extents_at(spans), disk, limits)
