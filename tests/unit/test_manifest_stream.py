"""The streaming manifest reader: the same documents accepted and refused as the in-memory model, in
memory that does not grow with the number of extents."""

from __future__ import annotations

import io
import json
import tempfile
import tracemalloc
from typing import Any

import pytest

from shared.replication.delta_manifest import DeltaManifest, ManifestInvalid
from shared.replication.manifest_stream import READ_SIZE, StreamedManifest

BLOB = "vm-1/c-1/disk-0/data-00000.bin"


def document(n: int, *, header_last: bool = False, **header: Any) -> dict[str, Any]:
    extents = [
        {"offset": i * 4096, "length": 4096, "blob": BLOB, "blobOffset": i * 4096, "crc64": f"{i:016x}"}
        for i in range(n)
    ]
    head = {
        "formatVersion": 1,
        "machineId": "vm-1",
        "diskId": "disk-0",
        "cycleId": "c-1",
        "sequence": 1,
        "kind": "delta",
        "diskSize": (n + 1) * 4096,
        "sectorSize": 512,
        **header,
    }
    return {"extents": extents, **head} if header_last else {**head, "extents": extents}


def read(data: bytes) -> StreamedManifest:
    return StreamedManifest.read(io.BytesIO(data), source="m.json")


@pytest.mark.parametrize("header_last", [False, True])
@pytest.mark.parametrize("indent", [None, 2])
def test_reads_what_the_model_reads_whatever_the_field_order(header_last: bool, indent: int | None) -> None:
    data = json.dumps(document(300, header_last=header_last), indent=indent).encode()
    streamed = read(data)
    assert streamed.to_manifest() == DeltaManifest.parse(data)
    assert (streamed.extent_count, streamed.total_bytes) == (300, 300 * 4096)
    assert streamed.referenced_blob_sizes() == {BLOB: 300 * 4096}
    # every pass re-reads the same extents
    assert list(streamed.iter_extents()) == list(streamed.iter_extents())


def test_values_that_straddle_the_read_buffer_are_read_whole() -> None:
    # ~130 bytes per extent: tens of thousands of them cross many READ_SIZE boundaries, inside numbers,
    # strings and between tokens alike.
    n = 3 * READ_SIZE // 100
    data = json.dumps(document(n)).encode()
    streamed = read(data)
    assert streamed.extent_count == n
    assert streamed.to_manifest() == DeltaManifest.parse(data)


@pytest.mark.parametrize(
    ("data", "field", "says"),
    [
        (b'{"machineId": 1}', "machineId", "string"),
        (b"{", "(manifest)", "ends in the middle"),
        (json.dumps(document(3)).encode()[:-30], "(manifest)", "ends in the middle"),
        (json.dumps(document(3)).encode() + b"x", "(manifest)", "more after"),
        (b"[1]", "(manifest)", "expected '{'"),
        (b'{"sequence": 1, "sequence": 2}', "(manifest)", "twice"),
        (json.dumps({**document(1), "extra": 1}).encode(), "extra", "not a known field"),
        (
            json.dumps({k: v for k, v in document(1).items() if k != "extents"}).encode(),
            "extents",
            "required",
        ),
    ],
)
def test_a_bad_document_is_refused_naming_the_field(data: bytes, field: str, says: str) -> None:
    with pytest.raises(ManifestInvalid) as caught:
        read(data)
    assert any(p.field == field and says in p.problem for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"length": 100}, "extents.1.length", "multiple of 512"),
        ({"offset": 0}, "extents.1", "overlaps"),
        ({"offset": 10**9}, "extents.1", "beyond the disk"),
        ({"blob": "vm-2/c-1/disk-0/data-00000.bin"}, "extents.1.blob", "outside this cycle"),
        ({"crc64": None}, "extents.1.sha256", "checksum"),
    ],
)
def test_a_bad_extent_is_refused_by_index_as_the_model_refuses_it(
    change: dict[str, Any], field: str, says: str
) -> None:
    doc = document(3)
    doc["extents"][1] = {k: v for k, v in {**doc["extents"][1], **change}.items() if v is not None}
    data = json.dumps(doc).encode()
    with pytest.raises(ManifestInvalid) as streamed:
        read(data)
    with pytest.raises(ManifestInvalid) as whole:
        DeltaManifest.parse(data)
    assert any(p.field == field and says in p.problem for p in streamed.value.problems), (
        streamed.value.problems
    )
    assert {p.field for p in streamed.value.problems} == {p.field for p in whole.value.problems}


def _peak_mib_reading(n: int) -> float:
    with tempfile.TemporaryFile() as file:
        file.write(json.dumps(document(n)).encode())
        tracemalloc.start()
        try:
            streamed = StreamedManifest.read(file, source="m.json")
            assert sum(1 for _ in streamed.iter_extents()) == n
            return tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_extents() -> None:
    small, large = _peak_mib_reading(1_000), _peak_mib_reading(40_000)
    # The in-memory model costs ~1 KiB per extent (~40 MiB here); the stream holds a read buffer.
    assert large < 12, large
    assert large < small + 4, (small, large)
