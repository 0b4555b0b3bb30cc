"""The managed-disk data plane's pure parts: the diff of two sparse images, markers, the PageList XML."""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devhost.arm.dataplane import (
    PageSpan,
    StorageError,
    _punch_hole,
    changed_spans,
    decode_marker,
    encode_marker,
    page_list_xml,
    written_spans,
)

MIB = 1024 * 1024


def _image(path: Path, size: int, writes: dict[int, bytes]) -> Path:
    with path.open("wb") as out:
        out.truncate(size)
        for offset, data in writes.items():
            out.seek(offset)
            out.write(data)
    return path


def test_changed_pages_are_merged_and_classified(tmp_path: Path) -> None:
    old = _image(tmp_path / "old", 8 * MIB, {0: b"a" * 8192, 4 * MIB: b"b" * 65536})
    new = _image(tmp_path / "new", 8 * MIB, {0: b"a" * 8192, 4 * MIB: b"b" * 65536})
    with new.open("r+b") as image:
        image.seek(1024)
        image.write(b"c" * 1536)  # pages 2..4 of the first block
        image.seek(6 * MIB)
        image.write(b"d" * 512)
        _punch_hole(image.fileno(), 4 * MIB, 65536)
    assert list(changed_spans(old, new, 0, 8 * MIB)) == [
        PageSpan(1024, 2560),
        PageSpan(4 * MIB, 4 * MIB + 65536, cleared=True),
        PageSpan(6 * MIB, 6 * MIB + 512),
    ]
    # From an offset (a marker): the same spans from there on; a window clips.
    assert [s.start for s in changed_spans(old, new, 4 * MIB, 8 * MIB)] == [4 * MIB, 6 * MIB]
    assert list(changed_spans(old, old, 0, 8 * MIB)) == []
    assert list(written_spans(new, 0, 8 * MIB)) == [PageSpan(0, 8192), PageSpan(6 * MIB, 6 * MIB + 4096)]


def test_a_huge_sparse_disk_is_diffed_by_its_data_only(tmp_path: Path) -> None:
    size = 512 * 1024 * MIB  # 512 GiB of holes: reading them would take minutes
    old = _image(tmp_path / "old", size, {100 * MIB: os.urandom(MIB)})
    new = _image(tmp_path / "new", size, {100 * MIB: os.urandom(MIB), size - 4096: b"z" * 4096})
    started = time.monotonic()
    spans = list(changed_spans(old, new, 0, size))
    assert time.monotonic() - started < 5
    assert spans[0].start == 100 * MIB and spans[-1] == PageSpan(size - 4096, size)


@settings(max_examples=30, deadline=None)
@given(
    writes=st.lists(
        st.tuples(st.integers(0, 2047), st.integers(1, 16), st.binary(min_size=1, max_size=1)), max_size=8
    )
)
def test_spans_cover_exactly_the_pages_that_differ(
    tmp_path_factory: pytest.TempPathFactory, writes: list[tuple[int, int, bytes]]
) -> None:
    folder = tmp_path_factory.mktemp("diff")
    size = 256 * 4096
    old = _image(folder / "old", size, {0: os.urandom(64 * 1024)})
    new = folder / "new"
    new.write_bytes(old.read_bytes())
    with new.open("r+b") as image:
        for page, count, fill in writes:
            start = page * 512  # whole sectors anywhere, not only on 4 KiB blocks
            image.seek(start)
            image.write(fill * min(count * 512, size - start))
    before, after = old.read_bytes(), new.read_bytes()
    differing = {p for p in range(0, size, 512) if before[p : p + 512] != after[p : p + 512]}
    spans = list(changed_spans(old, new, 0, size))
    covered = {p for s in spans for p in range(s.start, s.end, 512)}
    assert covered == differing
    assert all(a.end < b.start or a.cleared != b.cleared for a, b in pairwise(spans))


def test_markers_and_page_list_xml() -> None:
    assert decode_marker(encode_marker(123 * 512)) == 123 * 512
    with pytest.raises(StorageError) as bad:
        decode_marker("not-a-marker")
    assert bad.value.code == "InvalidQueryParameterValue"
    root = ET.fromstring(page_list_xml([PageSpan(0, 512), PageSpan(1024, 2048, cleared=True)], "m"))
    assert [(e.tag, e.findtext("Start"), e.findtext("End")) for e in root] == [
        ("PageRange", "0", "511"),
        ("ClearRange", "1024", "2047"),
        ("NextMarker", None, None),
    ]
    assert root.findtext("NextMarker") == "m"
    assert "NextMarker" not in page_list_xml([], None)
