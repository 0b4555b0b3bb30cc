"""The delta manifest: what a valid one is, what each invalid one is told, and that the schema is current."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.replication.delta_manifest import (
    CycleRejected,
    DeltaManifest,
    ManifestInvalid,
    data_blob_name,
    manifest_blob_name,
    manifest_json_schema,
)

ROOT = Path(__file__).resolve().parents[2]
BLOB = data_blob_name("vm-1", "cycle-7", "disk-0", 0)
SHA = "ab" * 32


def extent(offset: int, length: int, blob_offset: int = 0, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"offset": offset, "length": length, "blob": BLOB, "blobOffset": blob_offset}
    body.update(extra or {"sha256": SHA})
    return body


def manifest(*extents: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "machineId": "vm-1",
        "diskId": "disk-0",
        "cycleId": "cycle-7",
        "sequence": 7,
        "kind": "delta",
        "diskSize": 8 * 1024 * 1024,
        "sectorSize": 512,
        "extents": list(extents),
    }
    body.update(overrides)
    return body


def problems(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ManifestInvalid) as info:
        DeltaManifest.parse(json.dumps(body))
    assert info.value.code == "ManifestInvalid"
    assert isinstance(info.value, CycleRejected)  # a bad manifest rejects the cycle; retrying cannot help
    return {p.field: p.problem for p in info.value.problems}


def test_a_valid_manifest_round_trips_through_json() -> None:
    body = manifest(
        extent(0, 4096), extent(4096, 512, 4096, crc64="0123456789abcdef"), extent(65536, 1024, 4608)
    )
    parsed = DeltaManifest.parse(json.dumps(body))
    assert parsed.total_bytes == 4096 + 512 + 1024
    assert parsed.referenced_blob_sizes() == {BLOB: 4608 + 1024}
    assert DeltaManifest.parse(parsed.to_json_bytes()) == parsed
    assert (
        parsed.blob_name
        == manifest_blob_name("vm-1", "cycle-7", "disk-0")
        == "vm-1/cycle-7/disk-0/manifest.json"
    )
    # camelCase on the wire, no nulls for the checksum not given
    wire = json.loads(parsed.to_json_bytes())
    assert wire["extents"][0] == {"offset": 0, "length": 4096, "blob": BLOB, "blobOffset": 0, "sha256": SHA}
    assert wire["formatVersion"] == 1


def test_an_empty_delta_is_valid() -> None:
    assert DeltaManifest.parse(json.dumps(manifest())).extents == []


@pytest.mark.parametrize(
    ("bad", "field", "says"),
    [
        (extent(100, 512), "extents.0.offset", "multiple of 512"),
        (extent(0, 1000), "extents.0.length", "multiple of 512"),
        (extent(0, 0), "extents.0.length", "greater than 0"),
        (extent(-512, 512), "extents.0.offset", "greater than or equal to 0"),
        (extent(0, 512, crc64=None, sha256=None), "extents.0.sha256", "needs a checksum"),
        (extent(0, 512, sha256="XYZ"), "extents.0.sha256", "pattern"),
        (extent(0, 512, crc64="abc"), "extents.0.crc64", "pattern"),
        (extent(8 * 1024 * 1024 - 512, 1024), "extents.0", "beyond the disk's size"),
        (
            {**extent(0, 512), "blob": "vm-2/cycle-7/disk-0/data-00000.bin"},
            "extents.0.blob",
            "outside this cycle",
        ),
        ({**extent(0, 512), "blob": "vm-1/cycle-7/../../x"}, "extents.0.blob", "plain relative"),
        ({**extent(0, 512), "checksum": "x"}, "extents.0.checksum", "not a known field"),
    ],
)
def test_each_invalid_extent_is_named_with_the_reason(bad: dict[str, Any], field: str, says: str) -> None:
    found = problems(manifest(bad))
    assert field in found, found
    assert says in found[field]


def test_unsorted_or_overlapping_extents_are_refused() -> None:
    overlap = problems(manifest(extent(0, 4096), extent(2048, 512, 4096)))
    assert "overlaps" in overlap["extents.1"]
    unsorted = problems(manifest(extent(4096, 512), extent(0, 512, 512)))
    assert "sorted" in unsorted["extents.1"]


def test_header_fields_are_checked() -> None:
    found = problems(
        manifest(kind="incremental", sectorSize=4096, diskSize=1000, sequence=-1, machineId="a/b")
    )
    assert set(found) >= {"kind", "sectorSize", "diskSize", "sequence", "machineId"}


def test_garbage_is_a_manifest_error_not_a_crash() -> None:
    with pytest.raises(ManifestInvalid):
        DeltaManifest.parse(b"{not json")
    with pytest.raises(ManifestInvalid):
        DeltaManifest.parse(b"[]")


def test_committed_schema_is_generated_from_the_model() -> None:
    committed = json.loads((ROOT / "docs/schemas/delta-manifest.schema.json").read_text())
    assert committed == manifest_json_schema()
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs/schemas/generate.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_schema_states_the_wire_rules() -> None:
    schema = manifest_json_schema()
    ext = schema["$defs"]["Extent"]["properties"]
    assert ext["offset"]["multipleOf"] == 512 and ext["length"]["multipleOf"] == 512
    assert set(schema["required"]) >= {
        "machineId",
        "diskId",
        "cycleId",
        "sequence",
        "kind",
        "diskSize",
        "extents",
    }
    assert schema["properties"]["sectorSize"]["const"] == 512
    assert schema["additionalProperties"] is False
