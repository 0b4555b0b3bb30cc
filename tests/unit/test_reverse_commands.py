"""Reverse-protection commands and answers: their wire shape, their checks, and the round trip through
the flat stored command."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from shared.domain.command import (
    MAX_MANIFEST_RANGES,
    ApplianceCommand,
    ApplyReverseManifest,
    BlockHashes,
    ChangedBlocks,
    CommandAnswer,
    CommandKind,
    HashDiskBlocks,
    ManifestRange,
    PowerChanged,
    PowerOffMachine,
    PowerOnMachine,
    RangeOp,
    ReportChangedBlocks,
    ReverseManifestApplied,
)

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
MIB = 1024 * 1024
CRC = "0123456789abcdef"


def write(offset: int, length: int = MIB) -> dict[str, Any]:
    return {"offset": offset, "length": length, "op": "write", "crc64": CRC}


def stored(request: Any) -> ApplianceCommand:
    return ApplianceCommand.of(
        request, command_id="c-1", appliance_id="a-1", machine_id="m-1", created_at=NOW
    )


def test_apply_reverse_manifest_has_the_wire_shape_the_appliance_reads() -> None:
    request = ApplyReverseManifest.model_validate(
        {
            "diskId": "disk-0",
            "snapshotReadUrl": "https://md-x.blob.core.windows.net/abcd/abcd?sv=2020-10-02&sig=x",
            "reverseCycleId": "rc-000001",
            "manifest": [write(0), {"offset": MIB, "length": 64 * MIB, "op": "zero"}],
        }
    )
    wire = stored(request).to_wire()
    assert wire["kind"] == "ApplyReverseManifest" and wire["diskId"] == "disk-0"
    assert wire["manifest"] == [
        {"offset": 0, "length": MIB, "op": "write", "crc64": CRC},
        {"offset": MIB, "length": 64 * MIB, "op": "zero", "crc64": None},
    ]
    assert ApplianceCommand.model_validate(wire).request() == request


@pytest.mark.parametrize(
    "request_",
    [
        PowerOffMachine(),
        PowerOnMachine(),
        HashDiskBlocks(disk_id="disk-0"),
        ReportChangedBlocks(disk_id="disk-0", since_cycle_id="m-1-000007-abcd"),
    ],
)
def test_every_reverse_request_round_trips_through_the_stored_command(request_: Any) -> None:
    command = stored(request_)
    assert command.kind is request_.kind
    assert ApplianceCommand.model_validate(command.to_wire()).request() == request_


def test_hash_blocks_default_to_one_mib() -> None:
    assert HashDiskBlocks(disk_id="d").block_size == MIB
    assert stored(HashDiskBlocks(disk_id="d")).to_wire()["blockSize"] == MIB


@pytest.mark.parametrize(
    ("range_", "problem"),
    [
        ({"offset": 0, "length": 8 * MIB, "op": "write", "crc64": CRC}, "at most 4194304"),
        ({"offset": 0, "length": MIB, "op": "zero", "crc64": CRC}, "no data to check"),
        ({"offset": 100, "length": MIB, "op": "zero"}, "multiple of 512"),
        ({"offset": 0, "length": 0, "op": "zero"}, "greater than 0"),
        ({"offset": 0, "length": 512, "op": "write", "crc64": "XYZ"}, "pattern"),
    ],
)
def test_a_bad_manifest_range_is_refused(range_: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        ManifestRange.model_validate(range_)


def test_a_write_read_from_the_snapshot_may_leave_its_crc64_to_the_storage_service() -> None:
    """The appliance checks such a range against the ranged GET's transactional x-ms-content-crc64."""
    assert ManifestRange.model_validate({"offset": 0, "length": MIB, "op": "write"}).crc64 is None


def test_overlapping_or_unsorted_ranges_are_refused() -> None:
    base = {"diskId": "d", "snapshotReadUrl": "u", "reverseCycleId": "rc-1"}
    with pytest.raises(ValidationError, match="must not overlap"):
        ApplyReverseManifest.model_validate({**base, "manifest": [write(0, 2 * MIB), write(MIB)]})
    with pytest.raises(ValidationError, match="sorted"):
        ApplyReverseManifest.model_validate({**base, "manifest": [write(MIB), write(0)]})
    too_long = [write(i * MIB) for i in range(MAX_MANIFEST_RANGES + 1)]
    with pytest.raises(ValidationError, match="at most 4096"):
        ApplyReverseManifest.model_validate({**base, "manifest": too_long})


def test_a_stored_reverse_command_is_checked_like_its_request() -> None:
    with pytest.raises(ValidationError, match="diskId"):
        ApplianceCommand.model_validate(
            {"id": "c1", "applianceId": "a1", "machineId": "m1", "kind": "HashDiskBlocks", "createdAt": NOW}
        )
    forward = ApplianceCommand(
        id="c1", appliance_id="a1", machine_id="m1", kind=CommandKind.RUN_CYCLE, created_at=NOW
    )
    with pytest.raises(ValueError, match="not a reverse-protection command"):
        forward.request()


def test_answers_are_told_apart_by_kind() -> None:
    answers = [
        {"kind": "PowerOffMachine", "powerState": "off", "changed": True},
        {
            "kind": "ApplyReverseManifest",
            "diskId": "d",
            "reverseCycleId": "rc-1",
            "bytesRead": MIB,
            "bytesWritten": MIB,
            "bytesZeroed": 0,
            "ranges": [{"offset": 0, "length": MIB, "op": "write", "crc64": CRC, "verified": True}],
        },
        {"kind": "HashDiskBlocks", "diskId": "d", "blockSize": MIB, "diskSize": MIB, "hashes": "AA=="},
        {
            "kind": "ReportChangedBlocks",
            "diskId": "d",
            "sinceCycleId": "c",
            "available": True,
            "ranges": [[0, 512]],
        },
    ]
    types = [type(CommandAnswer.model_validate({"result": a}).result) for a in answers]
    assert types == [PowerChanged, ReverseManifestApplied, BlockHashes, ChangedBlocks]
    applied = CommandAnswer.model_validate({"result": answers[1]}).result
    assert isinstance(applied, ReverseManifestApplied) and applied.complete


def test_an_unavailable_change_record_says_why() -> None:
    with pytest.raises(ValidationError, match="says why"):
        ChangedBlocks(disk_id="d", since_cycle_id="c", available=False)
    reset = ChangedBlocks(disk_id="d", since_cycle_id="c", available=False, reason="CBT was reset")
    assert reset.to_wire()["available"] is False and reset.bytes_changed == 0


def test_block_hashes_are_inline_or_in_a_blob_not_both() -> None:
    with pytest.raises(ValidationError, match="inline"):
        BlockHashes(disk_id="d", block_size=MIB, disk_size=MIB)
    with pytest.raises(ValidationError, match="inline"):
        BlockHashes(disk_id="d", block_size=MIB, disk_size=MIB, hashes="AA==", hashes_blob="b")


def test_range_ops_on_the_wire() -> None:
    assert [op.value for op in RangeOp] == ["write", "zero"]


def test_a_finer_hash_pass_names_sorted_sector_ranges_and_its_pieces() -> None:
    request = HashDiskBlocks(disk_id="d", block_size=4096, ranges=[(0, 8192), (MIB, 6144)])
    stored_request = stored(request)
    assert stored_request.to_wire()["ranges"] == [[0, 8192], [MIB, 6144]]
    assert stored_request.request() == request
    answer = BlockHashes(
        disk_id="d", block_size=4096, disk_size=2 * MIB, ranges=[(0, 8192), (MIB, 6144)], hashes="AA=="
    )
    assert answer.pieces() == [(0, 4096), (4096, 4096), (MIB, 4096), (MIB + 4096, 2048)]
    assert BlockHashes(disk_id="d", block_size=MIB, disk_size=2 * MIB + 512, hashes="AA==").pieces() == [
        (0, MIB),
        (MIB, MIB),
        (2 * MIB, 512),
    ]
    for bad, says in (
        ([(0, 4096), (2048, 4096)], "sorted and must not overlap"),
        ([(100, 4096)], "whole 512-byte sectors"),
        ([(0, 0)], "non-empty"),
    ):
        with pytest.raises(ValidationError, match=says):
            HashDiskBlocks(disk_id="d", block_size=4096, ranges=bad)
