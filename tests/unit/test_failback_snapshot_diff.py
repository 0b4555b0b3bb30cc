"""The failback adapter's range logic: segments continued by marker, ranges typed and ordered, access
always ended (small fakes stand in for the SDK clients; tests/arm runs it against the local endpoint)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient

from shared.failback.snapshot_diff import ChangedRange, RangeOp, coalesce, diff_segments, read_access
from shared.platform.arm_clients import ArmClients

SNAPSHOT = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/snapshots/{}"


@dataclass
class _PageList:
    next_marker: str | None


class _FakeBlob:
    """Answers each call with one prepared segment, handing its marker to `cls` as the SDK does."""

    def __init__(self, segments: list[tuple[list[dict[str, int]], list[dict[str, int]], str | None]]) -> None:
        self.segments = segments
        self.calls: list[dict[str, Any]] = []

    def get_page_range_diff_for_managed_disk(self, previous: str, **options: Any) -> Any:
        self.calls.append({"previous": previous, **{k: v for k, v in options.items() if k != "cls"}})
        written, cleared, marker = self.segments[len(self.calls) - 1]
        options["cls"](None, _PageList(marker), {})
        return written, cleared


def test_segments_follow_the_marker_and_interleave_written_and_cleared() -> None:
    blob = _FakeBlob(
        [
            ([{"start": 0, "end": 511}, {"start": 4096, "end": 8191}], [{"start": 1024, "end": 2047}], "m1"),
            ([], [], "m2"),  # a segment may be empty and still not the last
            ([{"start": 65536, "end": 66047}], [], ""),
        ]
    )
    segments = list(diff_segments(cast(BlobClient, blob), "prev-sas", segment_ranges=3))
    assert segments == [
        [
            ChangedRange(offset=0, length=512, op=RangeOp.WRITE),
            ChangedRange(offset=1024, length=1024, op=RangeOp.ZERO),
            ChangedRange(offset=4096, length=4096, op=RangeOp.WRITE),
        ],
        [ChangedRange(offset=65536, length=512, op=RangeOp.WRITE)],
    ]
    assert blob.calls == [
        {"previous": "prev-sas", "maxresults": 3},
        {"previous": "prev-sas", "maxresults": 3, "marker": "m1"},
        {"previous": "prev-sas", "maxresults": 3, "marker": "m2"},
    ]


def test_coalesce_merges_runs_split_by_segments_and_refuses_overlaps() -> None:
    write, zero = RangeOp.WRITE, RangeOp.ZERO
    ranges = [
        ChangedRange(offset=1024, length=512, op=write),
        ChangedRange(offset=0, length=1024, op=write),
        ChangedRange(offset=1536, length=512, op=zero),
    ]
    assert coalesce(ranges) == [
        ChangedRange(offset=0, length=1536, op=write),
        ChangedRange(offset=1536, length=512, op=zero),
    ]
    with pytest.raises(ValueError, match="overlapping"):
        coalesce(
            [ChangedRange(offset=0, length=1024, op=write), ChangedRange(offset=512, length=512, op=zero)]
        )
    assert ChangedRange(offset=512, length=512, op=write).end == 1024


@dataclass
class _Poller:
    value: Any = None

    def result(self) -> Any:
        return self.value


@dataclass
class _Snapshots:
    refuse: set[str] = field(default_factory=set)
    granted: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)

    def begin_grant_access(self, resource_group: str, name: str, data: Any) -> _Poller:
        if name in self.refuse:
            raise HttpResponseError(message="refused")
        self.granted.append(name)

        @dataclass
        class _Uri:
            access_sas: str

        return _Poller(_Uri(f"https://md/{name}?sig=x"))

    def begin_revoke_access(self, resource_group: str, name: str) -> _Poller:
        self.revoked.append(name)
        return _Poller()


@dataclass
class _Compute:
    snapshots: _Snapshots


@dataclass
class _Clients:
    compute: _Compute


def test_access_is_ended_on_success_on_failure_and_after_a_refused_grant() -> None:
    snapshots = _Snapshots()
    clients = cast(ArmClients, _Clients(_Compute(snapshots)))
    ids = [SNAPSHOT.format("s0"), SNAPSHOT.format("s1")]
    with read_access(clients, ids, duration_seconds=60) as urls:
        assert urls == ["https://md/s0?sig=x", "https://md/s1?sig=x"]
    assert snapshots.revoked == ["s0", "s1"]

    snapshots.revoked.clear()
    with pytest.raises(RuntimeError), read_access(clients, ids, duration_seconds=60):
        raise RuntimeError("the diff failed")
    assert snapshots.revoked == ["s0", "s1"]

    snapshots.revoked.clear()
    snapshots.refuse = {"s1"}
    with pytest.raises(Exception, match="refused"), read_access(clients, ids, duration_seconds=60):
        pass
    assert snapshots.revoked == ["s0", "s1"]  # ending access where none was given is harmless
