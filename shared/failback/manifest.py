"""The reverse manifest: which bytes of an on-premises disk must become the Azure disk's, planned purely.

What must travel is every block that differs between the on-premises disk and the Azure snapshot S1.
Two ways to know it:
- from change records: the ranges the Azure VM changed since the failback baseline (the page-range diff
  S0 -> S1: `changed` data, `cleared` ranges), united with the ranges the on-premises machine changed
  after the failover point (its change tracking). A cleared range is zeros in S1 whatever happened
  on-premises, so it is a zero op and nothing is read for it;
- from block hashes, when a change record is missing: the blocks whose on-premises hash differs from
  S1's (`differing_blocks`); S1's all-zero blocks become zero ops.

Either way the plan is a sorted list of disjoint ranges, writes cut into units of at most 4 MiB (one
ranged read, one Put Page on Azure's side). A range planned from change records goes without a
checksum (`to_snapshot_manifest`): the appliance checks its ranged GET against the storage service's
transactional CRC64, so no data passes through the control plane. A range whose bytes the control
plane read anyway (the hash fallback) carries their CRC64 (`to_manifest`), the checksum Azure Storage
uses for `x-ms-content-crc64`. A manifest too long for one command is split (`split_manifest`).

Ranges are `(offset, length)` in bytes, 512-aligned.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from azure.storage.extensions.checksums import crc64 as _crc64
from pydantic import BaseModel, ConfigDict, Field

from shared.domain.command import (
    MAX_MANIFEST_RANGES,
    MAX_RANGE_BYTES,
    SECTOR_SIZE,
    ManifestRange,
    RangeOp,
)
from shared.domain.wire import WireModel

Range = tuple[int, int]
BLOCK_DIGEST_SIZE: Final = 32  # SHA-256, as the appliance's HashDiskBlocks answer carries it


class PlannedRange(BaseModel):
    """A manifest range before its checksum is known."""

    model_config = ConfigDict(frozen=True)

    offset: int
    length: int
    op: RangeOp

    @property
    def end(self) -> int:
        return self.offset + self.length

    def to_manifest_range(self, crc64: str | None) -> ManifestRange:
        return ManifestRange(offset=self.offset, length=self.length, op=self.op, crc64=crc64)


class ManifestTotals(WireModel):
    """What a plan costs, as Site Recovery reports it: processed = transferred + matched.

    `transferred` is the data read from Azure and sent (write ranges); `matched` is the rest of the
    processed bytes, which needed no data: identical on both sides, or cleared in Azure and written as
    zeros (`zeroed`, a part of matched).
    """

    disk_size: int = Field(ge=0)
    bytes_processed: int = Field(ge=0)
    bytes_transferred: int = Field(ge=0)
    bytes_matched: int = Field(ge=0)
    bytes_zeroed: int = Field(ge=0)

    @property
    def transfer_ratio(self) -> float:
        """Transferred bytes per byte of disk."""
        return self.bytes_transferred / self.disk_size if self.disk_size else 0.0


# --- range arithmetic -------------------------------------------------------------------------------


def check_ranges(ranges: Iterable[Range], disk_size: int) -> list[Range]:
    """The non-empty ranges, each 512-aligned and inside the disk, or ValueError naming the first bad one."""
    good = []
    for offset, length in ranges:
        if length == 0:
            continue
        if offset % SECTOR_SIZE or length % SECTOR_SIZE or offset < 0 or length < 0:
            raise ValueError(f"range {offset}+{length} is not whole 512-byte sectors")
        if offset + length > disk_size:
            raise ValueError(f"range {offset}+{length} ends beyond the disk ({disk_size} bytes)")
        good.append((offset, length))
    return good


def union(*range_lists: Iterable[Range]) -> list[Range]:
    """Sorted, with overlapping and adjacent ranges coalesced."""
    out: list[Range] = []
    for offset, length in sorted(r for ranges in range_lists for r in ranges if r[1] > 0):
        if out and offset <= out[-1][0] + out[-1][1]:
            start = out[-1][0]
            out[-1] = (start, max(out[-1][0] + out[-1][1], offset + length) - start)
        else:
            out.append((offset, length))
    return out


def subtract(ranges: Iterable[Range], removed: Iterable[Range]) -> list[Range]:
    """`ranges` without the bytes of `removed` (both coalesced first)."""
    out: list[Range] = []
    cuts = union(removed)
    i = 0
    for offset, length in union(ranges):
        start, end = offset, offset + length
        while i < len(cuts) and cuts[i][0] + cuts[i][1] <= start:
            i += 1
        j = i
        while start < end and j < len(cuts) and cuts[j][0] < end:
            cut_start, cut_end = cuts[j][0], cuts[j][0] + cuts[j][1]
            if cut_start > start:
                out.append((start, cut_start - start))
            start = max(start, cut_end)
            j += 1
        if start < end:
            out.append((start, end - start))
    return out


def split(ranges: Iterable[Range], max_length: int = MAX_RANGE_BYTES) -> list[Range]:
    """Each range cut into pieces of at most `max_length` bytes, in order."""
    out = []
    for offset, length in ranges:
        while length > 0:
            n = min(length, max_length)
            out.append((offset, n))
            offset, length = offset + n, length - n
    return out


# --- planners ---------------------------------------------------------------------------------------


def plan_from_changes(
    disk_size: int,
    *,
    azure_changed: Iterable[Range],
    azure_cleared: Iterable[Range] = (),
    on_premises_changed: Iterable[Range] = (),
    max_unit: int = MAX_RANGE_BYTES,
) -> list[PlannedRange]:
    """Writes where Azure or on-premises changed, except where Azure cleared; zeros where it cleared.

    `disk_size` is the Azure disk's: the on-premises disk may be larger, and its bytes past the Azure
    disk's end are left alone.
    """
    if max_unit % SECTOR_SIZE or not 0 < max_unit <= MAX_RANGE_BYTES:
        raise ValueError(f"a write unit is a multiple of 512 bytes, at most {MAX_RANGE_BYTES}")
    cleared = union(check_ranges(azure_cleared, disk_size))
    writes = subtract(
        union(check_ranges(azure_changed, disk_size), check_ranges(on_premises_changed, disk_size)), cleared
    )
    planned = [PlannedRange(offset=o, length=n, op=RangeOp.WRITE) for o, n in split(writes, max_unit)]
    planned += [PlannedRange(offset=o, length=n, op=RangeOp.ZERO) for o, n in cleared]
    return sorted(planned, key=lambda r: r.offset)


def block_count(disk_size: int, block_size: int) -> int:
    return -(-disk_size // block_size)


def digests(packed: bytes) -> list[bytes]:
    """A HashDiskBlocks answer's digests (decoded from base64 or read from its blob), one per block."""
    if len(packed) % BLOCK_DIGEST_SIZE:
        raise ValueError(f"{len(packed)} bytes is not a whole number of {BLOCK_DIGEST_SIZE}-byte digests")
    return [packed[i : i + BLOCK_DIGEST_SIZE] for i in range(0, len(packed), BLOCK_DIGEST_SIZE)]


def differing_blocks(
    disk_size: int,
    block_size: int,
    *,
    on_premises: Sequence[bytes],
    azure: Sequence[bytes],
    max_unit: int = MAX_RANGE_BYTES,
) -> list[PlannedRange]:
    """The blocks of the Azure disk (`disk_size`, hashed as `azure`) whose on-premises hash differs.

    A block the on-premises list lacks (a smaller disk) differs. An Azure block that is all zeros
    becomes a zero op: nothing needs reading to make it so.
    """
    if block_size % SECTOR_SIZE or block_size <= 0:
        raise ValueError("the block size is a positive multiple of 512")
    count = block_count(disk_size, block_size)
    if len(azure) != count:
        raise ValueError(f"{len(azure)} Azure block hashes for {count} blocks of {block_size} bytes")
    writes: list[Range] = []
    zeros: list[Range] = []
    zero_digest = hashlib.sha256(bytes(block_size)).digest()
    tail = disk_size - (count - 1) * block_size
    tail_zero_digest = hashlib.sha256(bytes(tail)).digest()
    for block, digest in enumerate(azure):
        if block < len(on_premises) and on_premises[block] == digest:
            continue
        start = block * block_size
        length = min(block_size, disk_size - start)
        is_zero = digest == (zero_digest if length == block_size else tail_zero_digest)
        (zeros if is_zero else writes).append((start, length))
    planned = [PlannedRange(offset=o, length=n, op=RangeOp.WRITE) for o, n in split(union(writes), max_unit)]
    planned += [PlannedRange(offset=o, length=n, op=RangeOp.ZERO) for o, n in union(zeros)]
    return sorted(planned, key=lambda r: r.offset)


def merge_to_at_most(ranges: Iterable[Range], count: int) -> list[Range]:
    """The ranges coalesced, then joined across their smallest gaps until at most `count` remain.

    For the finer hash pass: hashing an identical gap costs a few digests, never a transferred byte
    (identical pieces are not sent), while one command holds at most `count` ranges.
    """
    if count <= 0:
        raise ValueError("count must be positive")
    merged = union(ranges)
    if len(merged) <= count:
        return merged
    gaps = sorted(range(1, len(merged)), key=lambda i: (merged[i][0] - sum(merged[i - 1]), i))
    joined = set(gaps[: len(merged) - count])
    out: list[Range] = []
    for i, (offset, length) in enumerate(merged):
        if i in joined:
            out[-1] = (out[-1][0], offset + length - out[-1][0])
        else:
            out.append((offset, length))
    return out


def plan_pieces(
    pieces: Iterable[tuple[int, bytes]], on_premises: Sequence[bytes], *, max_unit: int = MAX_RANGE_BYTES
) -> list[ManifestRange]:
    """The manifest from S1's hashed pieces, `(offset, bytes)` in offset order, and the on-premises
    digests of the same pieces (`hashed_pieces` order): a piece whose digest differs is written (adjacent
    ones joined up to `max_unit`, each write with the CRC64 of its bytes, computed as they stream by),
    or zeroed when S1 holds zeros there; identical pieces are left alone. A piece the on-premises list
    lacks (a smaller disk) differs. Memory: one write unit's CRC,
    never its bytes."""
    planned: list[ManifestRange] = []
    zeros: list[Range] = []
    run: tuple[int, int, int] | None = None  # offset, length, CRC64 so far

    def flush() -> None:
        nonlocal run
        if run is not None:
            planned.append(
                ManifestRange(offset=run[0], length=run[1], op=RangeOp.WRITE, crc64=f"{run[2]:016x}")
            )
            run = None

    for index, (offset, data) in enumerate(pieces):
        if index < len(on_premises) and on_premises[index] == hashlib.sha256(data).digest():
            continue
        if not any(data):
            zeros.append((offset, len(data)))
            continue
        if run is not None and run[0] + run[1] == offset and run[1] + len(data) <= max_unit:
            run = (run[0], run[1] + len(data), _crc64.compute(data, run[2]))
        else:
            flush()
            run = (offset, len(data), _crc64.compute(data, 0))
    flush()
    planned += [ManifestRange(offset=o, length=n, op=RangeOp.ZERO) for o, n in union(zeros)]
    return sorted(planned, key=lambda r: r.offset)


def totals(planned: Sequence[PlannedRange | ManifestRange], disk_size: int) -> ManifestTotals:
    """Processed is the whole disk: a plan decides every byte of it, sent or not."""
    transferred = sum(r.length for r in planned if r.op is RangeOp.WRITE)
    zeroed = sum(r.length for r in planned if r.op is RangeOp.ZERO)
    return ManifestTotals(
        disk_size=disk_size,
        bytes_processed=disk_size,
        bytes_transferred=transferred,
        bytes_matched=disk_size - transferred,
        bytes_zeroed=zeroed,
    )


def to_manifest(planned: Sequence[PlannedRange], crc64s: Mapping[int, str]) -> list[ManifestRange]:
    """The manifest, each write range with the CRC64 of its bytes (`crc64s` by offset)."""
    missing = [r.offset for r in planned if r.op is RangeOp.WRITE and r.offset not in crc64s]
    if missing:
        raise ValueError(f"no CRC64 for the write ranges at {missing[:5]}")
    return [r.to_manifest_range(crc64s[r.offset] if r.op is RangeOp.WRITE else None) for r in planned]


def to_snapshot_manifest(planned: Sequence[PlannedRange]) -> list[ManifestRange]:
    """The manifest for ranges the appliance reads straight from the snapshot, without a CRC64: the
    control plane never reads those bytes, and the appliance checks each ranged GET against the storage
    service's transactional CRC64 instead."""
    return [r.to_manifest_range(None) for r in planned]


def split_manifest(
    ranges: Sequence[ManifestRange], max_ranges: int = MAX_MANIFEST_RANGES
) -> list[list[ManifestRange]]:
    """Consecutive parts of at most `max_ranges` ranges, one command each; never an empty part list."""
    if max_ranges <= 0:
        raise ValueError("max_ranges must be positive")
    return [list(ranges[i : i + max_ranges]) for i in range(0, len(ranges), max_ranges)] or [[]]


# --- CRC64 ------------------------------------------------------------------------------------------


def crc64_hex(data: bytes, initial: int = 0) -> str:
    """Azure Storage's CRC64 of `data` as a manifest writes it: 16 lowercase hex digits."""
    return f"{_crc64.compute(data, initial):016x}"


def crc64_to_header(value: str) -> str:
    """The manifest's hex CRC64 as Azure sends it in `x-ms-content-crc64`: base64 of 8 little-endian bytes."""
    return base64.b64encode(int(value, 16).to_bytes(8, "little")).decode()


def crc64_from_header(header: str) -> str:
    raw = base64.b64decode(header, validate=True)
    if len(raw) != 8:
        raise ValueError(f"x-ms-content-crc64 is 8 bytes, got {len(raw)}")
    return f"{int.from_bytes(raw, 'little'):016x}"
