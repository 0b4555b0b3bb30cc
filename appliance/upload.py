"""Upload one replication cycle to the cache storage account: data blobs first, then the manifests.

The protocol (docs/delta-format.md): for each disk, the changed ranges are cut into extents of at
most 4 MiB, their bytes packed back to back into data blobs (block blobs of at most
`max_data_blob_bytes`), each extent's checksum computed while it is read; only when every data blob
of every disk is committed are the manifests written. The caller then posts
`Migrate.Replication.CycleUploaded` naming the returned manifest blobs. Re-running an upload with the
same inputs rewrites the same blobs with the same bytes.

Reads and uploads overlap: the calling thread reads the source and hands 4 MiB blocks to
`upload_threads` workers, with at most two blocks per worker in flight, so memory stays bounded by
about 2 x upload_threads x 4 MiB whatever the cycle's size.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from azure.storage.blob import BlobBlock, ContainerClient, ContentSettings
from pydantic import BaseModel, ConfigDict, Field

from appliance.blocks import MAX_EXTENT, MIB, BlockSource, Range, merge_ranges, split_ranges
from shared.domain.cycle import CycleKind
from shared.domain.policy import DEFAULT_UPLOAD_THREADS, MAX_UPLOAD_THREADS, MIN_UPLOAD_THREADS
from shared.replication.checksums import ChecksumAlgorithm, new_checksum
from shared.replication.delta_manifest import DeltaManifest, Extent, data_blob_name

STAGE_BLOCK: int = 4 * MIB


class UploadOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    upload_threads: int = Field(default=DEFAULT_UPLOAD_THREADS, ge=MIN_UPLOAD_THREADS, le=MAX_UPLOAD_THREADS)
    max_extent_bytes: int = Field(default=MAX_EXTENT, ge=512, multiple_of=512)
    max_data_blob_bytes: int = Field(default=256 * MIB, ge=4 * MIB)
    checksum: ChecksumAlgorithm = ChecksumAlgorithm.SHA256
    max_bytes_per_second: int | None = Field(
        default=None, gt=0, description="upload bandwidth cap; None = none"
    )


@dataclass
class DiskCycle:
    """One disk's part of a cycle: which ranges changed and where to read them (a point-in-time source)."""

    disk_id: str
    disk_size: int
    ranges: list[Range]
    source: BlockSource


@dataclass
class CycleUpload:
    machine_id: str
    cycle_id: str
    sequence: int
    kind: CycleKind
    disks: list[DiskCycle] = field(default_factory=list)


class CycleUploadResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    manifests: list[str]
    data_blobs: list[str]
    bytes_uploaded: int
    extents: int


@dataclass
class _PlannedBlob:
    name: str
    extents: list[tuple[int, int, int]]  # (disk offset, length, blob offset)


def plan_extents(ranges: list[Range], *, max_extent: int, max_blob: int) -> list[list[tuple[int, int, int]]]:
    """Cut ranges into extents and pack them into data blobs: a list per blob of (offset, length, blob offset)."""
    blobs: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    used = 0
    for offset, length in split_ranges(merge_ranges(ranges), max_extent):
        if current and used + length > max_blob:
            blobs.append(current)
            current, used = [], 0
        current.append((offset, length, used))
        used += length
    if current:
        blobs.append(current)
    return blobs


class Throttle:
    """The policy's bandwidth limit, shared by the upload threads: each block waits for its time slot.

    Slots are handed out in order, `n / rate` seconds long, so the long-run rate never exceeds `rate`
    bytes per second however many threads upload; an idle period does not build up credit.
    """

    def __init__(
        self,
        rate: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = clock()

    def take(self, n: int) -> None:
        if self._rate is None:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + n / self._rate
        if start > now:
            self._sleep(start - now)


def _block_id(index: int) -> str:
    return base64.b64encode(f"{index:010d}".encode()).decode()


def _blocks(
    source: BlockSource, extents: list[tuple[int, int, int]], algorithm: ChecksumAlgorithm
) -> Iterator[tuple[bytes, list[tuple[int, str]]]]:
    """Yield the data blob's bytes in <= 4 MiB blocks, with the checksums of extents completed in each block."""
    buffer: list[bytes] = []
    buffered = 0
    finished: list[tuple[int, str]] = []
    for index, (offset, length, _) in enumerate(extents):
        check = new_checksum(algorithm)
        position = offset
        end = offset + length
        while position < end:
            n = min(end - position, STAGE_BLOCK - buffered)
            data = source.read(position, n)
            check.update(data)
            buffer.append(data)
            buffered += n
            position += n
            if position == end:
                finished.append((index, check.hexdigest()))
            if buffered == STAGE_BLOCK:
                yield b"".join(buffer), finished
                buffer, buffered, finished = [], 0, []
    if buffered:
        yield b"".join(buffer), finished


def upload_cycle(
    container: ContainerClient, cycle: CycleUpload, *, options: UploadOptions | None = None
) -> list[str]:
    """Upload every disk's data blobs, then every disk's manifest; returns the manifest blob names
    (in disk order) for the caller's `Migrate.Replication.CycleUploaded` event."""
    return upload_cycle_with_stats(container, cycle, options=options).manifests


def upload_cycle_with_stats(
    container: ContainerClient, cycle: CycleUpload, *, options: UploadOptions | None = None
) -> CycleUploadResult:
    """`upload_cycle`, also reporting the data blobs written, bytes and extents."""
    opts = options or UploadOptions()
    throttle = Throttle(opts.max_bytes_per_second)
    manifests: list[DeltaManifest] = []
    data_blobs: list[str] = []
    total = 0
    with ThreadPoolExecutor(max_workers=opts.upload_threads, thread_name_prefix="upload") as pool:
        for disk in cycle.disks:
            plan = plan_extents(
                disk.ranges, max_extent=opts.max_extent_bytes, max_blob=opts.max_data_blob_bytes
            )
            extents: list[Extent] = []
            for blob_index, blob_extents in enumerate(plan):
                name = data_blob_name(cycle.machine_id, cycle.cycle_id, disk.disk_id, blob_index)
                checksums = _upload_data_blob(
                    container, name, disk.source, blob_extents, opts, pool, throttle
                )
                for i, (offset, length, blob_offset) in enumerate(blob_extents):
                    extents.append(
                        Extent.model_validate(
                            {
                                "offset": offset,
                                "length": length,
                                "blob": name,
                                "blobOffset": blob_offset,
                                opts.checksum.value: checksums[i],
                            }
                        )
                    )
                data_blobs.append(name)
                total += sum(length for _, length, _ in blob_extents)
            extents.sort(key=lambda e: e.offset)
            manifests.append(
                DeltaManifest(
                    machine_id=cycle.machine_id,
                    disk_id=disk.disk_id,
                    cycle_id=cycle.cycle_id,
                    sequence=cycle.sequence,
                    kind=cycle.kind,
                    disk_size=disk.disk_size,
                    extents=extents,
                )
            )
    # Manifests last: a manifest's presence promises its data blobs are complete.
    names = []
    for manifest in manifests:
        container.upload_blob(
            manifest.blob_name,
            manifest.to_json_bytes(),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )
        names.append(manifest.blob_name)
    return CycleUploadResult(
        manifests=names,
        data_blobs=data_blobs,
        bytes_uploaded=total,
        extents=sum(len(m.extents) for m in manifests),
    )


def _upload_data_blob(
    container: ContainerClient,
    name: str,
    source: BlockSource,
    extents: list[tuple[int, int, int]],
    opts: UploadOptions,
    pool: ThreadPoolExecutor,
    throttle: Throttle,
) -> dict[int, str]:
    blob = container.get_blob_client(name)
    checksums: dict[int, str] = {}
    block_ids: list[str] = []
    in_flight: set[Future[None]] = set()

    def stage(block_id: str, data: bytes) -> None:
        throttle.take(len(data))
        blob.stage_block(block_id, data, length=len(data))

    for index, (data, finished) in enumerate(_blocks(source, extents, opts.checksum)):
        checksums.update(finished)
        block_id = _block_id(index)
        block_ids.append(block_id)
        in_flight.add(pool.submit(stage, block_id, data))
        if len(in_flight) >= 2 * opts.upload_threads:
            # top up as soon as any block finishes, so every thread stays busy
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for f in done:
                f.result()
    done, _ = wait(in_flight)
    for f in done:
        f.result()
    blob.commit_block_list([BlobBlock(block_id=b) for b in block_ids])
    return checksums
