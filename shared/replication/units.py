"""Bounded units of work for whole-disk copies (initial replication and resync).

A 2 TiB disk's initial copy read and verified in one activity takes about an hour, twice what the
Functions host allows an activity. So a whole-disk manifest is planned as units: consecutive extents
with at most `UnitLimits.max_bytes` of data, `max_extents` extents and `max_span` bytes of disk, that
together partition the disk. Each unit is applied, verified and recorded by its own activity, so no
activity runs longer than a unit takes whatever the disk's size, and a crash resumes at the unit that
was running (Durable replays the finished ones from history; applying a unit again is harmless).

The plan writes each unit's extents as a small manifest of its own (a "shard", under the cycle's prefix
so disposal removes it with the upload) and pins it by ETag: a unit activity reads only its shard,
never the whole manifest, and the shard it applies is the one that was planned.

A unit's shard is a whole-disk manifest for the unit's disk range only: the engine clears what the
replica holds in that range outside the extents, and touches nothing outside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient
from pydantic import BaseModel, ConfigDict, Field

from shared.replication.apply_engine import (
    ApplyOptions,
    ApplyResult,
    CycleDataChanged,
    CycleDataMissing,
    ProgressReport,
    apply_extents,
)
from shared.replication.delta_manifest import DeltaManifest, Extent, disk_prefix
from shared.replication.manifest_stream import StreamedManifest
from shared.replication.vhd import round_up_to_mib

GIB: Final = 1024**3


class UnitLimits(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_bytes: int = Field(default=2 * GIB, ge=4 * 1024 * 1024, description="extent bytes per unit")
    max_extents: int = Field(default=4096, ge=1, description="extents per unit")
    max_span: int = Field(
        default=64 * GIB, ge=1024 * 1024, description="disk bytes a unit covers (what it may have to clear)"
    )


class DiskUnit(BaseModel):
    """One unit of a whole-disk copy: the extents [first_extent, first_extent+extent_count) of the disk's
    manifest, which lie in the disk bytes [disk_start, disk_end)."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0)
    first_extent: int = Field(ge=0)
    extent_count: int = Field(ge=0)
    disk_start: int = Field(ge=0)
    disk_end: int = Field(gt=0)
    bytes: int = Field(ge=0, description="extent bytes (what the unit reads and verifies)")
    shard_blob: str
    shard_etag: str
    blob_sizes: dict[str, int] = Field(
        description="each data blob the unit reads, with its size as the whole manifest implies it"
    )


def shard_blob_name(machine_id: str, cycle_id: str, disk_id: str, index: int) -> str:
    return disk_prefix(machine_id, cycle_id, disk_id) + f"units/unit-{index:05d}.json"


def cut_units(
    extents: Iterator[Extent], disk_size: int, limits: UnitLimits
) -> Iterator[tuple[int, list[Extent], int, int]]:
    """(first extent index, extents, disk start, disk end) per unit, in disk order; the ranges partition
    the disk. A unit ends before an extent that would break a limit; a stretch of disk longer than the span
    limit without extents is units of its own (they may have old data to clear). Memory: one unit."""
    virtual_size = round_up_to_mib(disk_size)
    start = first = size = 0
    current: list[Extent] = []
    index = -1
    for index, extent in enumerate(extents):
        if current and (
            len(current) >= limits.max_extents
            or size + extent.length > limits.max_bytes
            or extent.end - start > limits.max_span
        ):
            yield first, current, start, current[-1].end
            start, current, size = current[-1].end, [], 0
        if not current:
            first = index
            while extent.offset - start >= limits.max_span:
                yield index, [], start, start + limits.max_span
                start += limits.max_span
        current.append(extent)
        size += extent.length
    if current and virtual_size - start > limits.max_span:
        yield first, current, start, current[-1].end
        start, current = current[-1].end, []
    if not current:
        first = index + 1
    while virtual_size - start > limits.max_span and not current:
        yield first, [], start, start + limits.max_span
        start += limits.max_span
    yield first, current, start, virtual_size


def plan_units(
    manifest: StreamedManifest | DeltaManifest,
    cache: ContainerClient,
    limits: UnitLimits | None = None,
) -> list[DiskUnit]:
    """Cut a validated whole-disk manifest into units and upload each unit's shard (deterministic names and
    bytes: planning again after a crash rewrites the same shards). Memory: one unit's extents."""
    limits = limits or UnitLimits()
    full_sizes = manifest.referenced_blob_sizes()
    units: list[DiskUnit] = []
    cuts = cut_units(manifest.iter_extents(), manifest.disk_size, limits)
    for index, (first, extents, start, end) in enumerate(cuts):
        shard = DeltaManifest(
            machine_id=manifest.machine_id,
            disk_id=manifest.disk_id,
            cycle_id=manifest.cycle_id,
            sequence=manifest.sequence,
            kind=manifest.kind,
            disk_size=manifest.disk_size,
            extents=extents,
        )
        name = shard_blob_name(manifest.machine_id, manifest.cycle_id, manifest.disk_id, index)
        uploaded = cache.get_blob_client(name).upload_blob(shard.to_json_bytes(), overwrite=True)
        units.append(
            DiskUnit(
                index=index,
                first_extent=first,
                extent_count=len(extents),
                disk_start=start,
                disk_end=end,
                bytes=shard.total_bytes,
                shard_blob=name,
                shard_etag=str(uploaded["etag"]),
                blob_sizes={blob: full_sizes[blob] for blob in shard.referenced_blob_sizes()},
            )
        )
    return units


def load_shard(cache: ContainerClient, unit: DiskUnit) -> DeltaManifest:
    """The unit's shard exactly as planned (pinned by ETag)."""
    blob: BlobClient = cache.get_blob_client(unit.shard_blob)
    try:
        data = blob.download_blob(
            etag=unit.shard_etag, match_condition=MatchConditions.IfNotModified
        ).readall()
    except ResourceNotFoundError as exc:
        raise CycleDataMissing(unit.shard_blob) from exc
    except ResourceModifiedError as exc:
        raise CycleDataChanged(unit.shard_blob) from exc
    return DeltaManifest.parse(data, source=unit.shard_blob)


def apply_unit(
    unit: DiskUnit,
    *,
    cache: ContainerClient,
    replica: BlobClient,
    options: ApplyOptions | None = None,
    progress: ProgressReport | None = None,
) -> ApplyResult:
    """Verify and write one unit: its extents, and clearing of its disk range outside them.

    One pass by default: a whole-disk copy has no earlier replica state to protect, so a unit found
    damaged after a write rejects the cycle and the resync it asks for rewrites the unit."""
    shard = load_shard(cache, unit)
    return apply_extents(
        shard,
        cache=cache,
        replica=replica,
        options=options or ApplyOptions(one_pass=True),
        disk_range=(unit.disk_start, unit.disk_end),
        blob_sizes=unit.blob_sizes,
        progress=progress,
    )
