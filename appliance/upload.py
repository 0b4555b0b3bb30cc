"""Upload one replication cycle to the cache storage account: data blobs first, then the manifests.

An appliance writes with the per-blob, write-only SAS URLs the control plane issues for the cycle's blob
names (`SasDestination`), never with a storage key; a `ContainerClient` with its own credential is
accepted too (tests and tools).

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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.storage.blob import BlobBlock, BlobClient, ContainerClient, ContentSettings, ExponentialRetry
from pydantic import BaseModel, ConfigDict, Field

from appliance.blocks import MAX_EXTENT, MIB, BlockSource, Range, merge_ranges, split_ranges
from shared.domain.cycle import CycleKind
from shared.domain.policy import DEFAULT_UPLOAD_THREADS, MAX_UPLOAD_THREADS, MIN_UPLOAD_THREADS
from shared.replication.checksums import ChecksumAlgorithm, new_checksum
from shared.replication.delta_manifest import DeltaManifest, Extent, data_blob_name, manifest_blob_name

STAGE_BLOCK: int = 4 * MIB


class UploadOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    upload_threads: int = Field(default=DEFAULT_UPLOAD_THREADS, ge=MIN_UPLOAD_THREADS, le=MAX_UPLOAD_THREADS)
    max_extent_bytes: int = Field(default=MAX_EXTENT, ge=512, multiple_of=512)
    max_data_blob_bytes: int = Field(default=256 * MIB, ge=4 * MIB)
    # CRC64 per write unit (extents are cut at 4 MiB): the storage service verifies it itself on Put Page
    # From URL (x-ms-source-content-crc64), and it is several times cheaper than SHA-256 to compute.
    checksum: ChecksumAlgorithm = ChecksumAlgorithm.CRC64
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


class CycleBlobs(Protocol):
    """Where one cycle's blobs are written: a client for each blob name of the cycle."""

    def get_blob_client(self, blob: str) -> BlobClient: ...


class UploadDestination(Protocol):
    """Gives the blobs of a cycle, given every name the cycle will write (known before the first byte)."""

    def for_cycle(self, machine_id: str, cycle_id: str, blobs: Sequence[str]) -> CycleBlobs: ...


class ContainerDestination:
    """A container reached with its own credential (tests, tools): every cycle's blobs in it."""

    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    def for_cycle(self, machine_id: str, cycle_id: str, blobs: Sequence[str]) -> CycleBlobs:
        return self.container


class UploadCredentialSource(Protocol):
    def upload_credentials(self, machine_id: str, cycle_id: str, blobs: list[str]) -> dict[str, Any]: ...


# Blob uploads retry throttling (503), timeouts and dropped connections with exponential backoff; an
# expired SAS (403) is not retried here: the URLs are renewed before they expire.
def upload_retry() -> ExponentialRetry:
    return ExponentialRetry(initial_backoff=2, increment_base=4, retry_total=6)


# A SAS is asked for again when less than this is left, so no block starts on a URL about to expire.
RENEW_BEFORE_EXPIRY = timedelta(minutes=10)
CREDENTIAL_BATCH = 1000


class SasDestination:
    """Uploads with the write-only, per-blob SAS URLs the control plane issues
    (`POST /api/appliances/{id}/upload-credentials`): the appliance holds no storage key."""

    def __init__(
        self,
        api: UploadCredentialSource,
        *,
        renew_before: timedelta = RENEW_BEFORE_EXPIRY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self._renew_before = renew_before
        self._clock = clock

    def for_cycle(self, machine_id: str, cycle_id: str, blobs: Sequence[str]) -> CycleBlobs:
        return _SasCycleBlobs(self, machine_id, cycle_id, list(dict.fromkeys(blobs)))

    def issue(self, machine_id: str, cycle_id: str, blobs: list[str]) -> tuple[dict[str, str], datetime]:
        urls: dict[str, str] = {}
        expires = datetime.max.replace(tzinfo=UTC)
        for start in range(0, len(blobs), CREDENTIAL_BATCH):
            issued = self._api.upload_credentials(
                machine_id, cycle_id, blobs[start : start + CREDENTIAL_BATCH]
            )
            urls.update(issued["blobs"])
            expires = min(expires, datetime.fromisoformat(issued["expiresOn"]))
        return urls, expires - self._renew_before

    def now(self) -> datetime:
        return self._clock()


class _SasCycleBlobs:
    def __init__(self, owner: SasDestination, machine_id: str, cycle_id: str, blobs: list[str]) -> None:
        self._owner = owner
        self._machine_id, self._cycle_id, self._names = machine_id, cycle_id, blobs
        self._lock = threading.Lock()
        self._clients: dict[str, BlobClient] = {}
        self._renew_at = datetime.min.replace(tzinfo=UTC)

    def get_blob_client(self, blob: str) -> BlobClient:
        with self._lock:
            if self._owner.now() >= self._renew_at:
                urls, self._renew_at = self._owner.issue(self._machine_id, self._cycle_id, self._names)
                self._clients = {
                    name: BlobClient.from_blob_url(url, retry_policy=upload_retry())
                    for name, url in urls.items()
                }
            return self._clients[blob]


def destination_of(target: UploadDestination | ContainerClient) -> UploadDestination:
    return ContainerDestination(target) if isinstance(target, ContainerClient) else target


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
    destination: UploadDestination | ContainerClient,
    cycle: CycleUpload,
    *,
    options: UploadOptions | None = None,
) -> list[str]:
    """Upload every disk's data blobs, then every disk's manifest; returns the manifest blob names
    (in disk order) for the caller's `Migrate.Replication.CycleUploaded` event."""
    return upload_cycle_with_stats(destination, cycle, options=options).manifests


def upload_cycle_with_stats(
    destination: UploadDestination | ContainerClient,
    cycle: CycleUpload,
    *,
    options: UploadOptions | None = None,
) -> CycleUploadResult:
    """`upload_cycle`, also reporting the data blobs written, bytes and extents."""
    opts = options or UploadOptions()
    throttle = Throttle(opts.max_bytes_per_second)
    # Every name is known before the first byte: the credentials cover exactly these blobs.
    plans = [
        plan_extents(disk.ranges, max_extent=opts.max_extent_bytes, max_blob=opts.max_data_blob_bytes)
        for disk in cycle.disks
    ]
    names = [
        data_blob_name(cycle.machine_id, cycle.cycle_id, disk.disk_id, blob_index)
        for disk, plan in zip(cycle.disks, plans, strict=True)
        for blob_index in range(len(plan))
    ] + [manifest_blob_name(cycle.machine_id, cycle.cycle_id, disk.disk_id) for disk in cycle.disks]
    blobs = destination_of(destination).for_cycle(cycle.machine_id, cycle.cycle_id, names)
    manifests: list[DeltaManifest] = []
    data_blobs: list[str] = []
    total = 0
    with ThreadPoolExecutor(max_workers=opts.upload_threads, thread_name_prefix="upload") as pool:
        for disk, plan in zip(cycle.disks, plans, strict=True):
            extents: list[Extent] = []
            for blob_index, blob_extents in enumerate(plan):
                name = data_blob_name(cycle.machine_id, cycle.cycle_id, disk.disk_id, blob_index)
                checksums = _upload_data_blob(blobs, name, disk.source, blob_extents, opts, pool, throttle)
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
    uploaded = []
    for manifest in manifests:
        blobs.get_blob_client(manifest.blob_name).upload_blob(
            manifest.to_json_bytes(),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )
        uploaded.append(manifest.blob_name)
    return CycleUploadResult(
        manifests=uploaded,
        data_blobs=data_blobs,
        bytes_uploaded=total,
        extents=sum(len(m.extents) for m in manifests),
    )


def _upload_data_blob(
    blobs: CycleBlobs,
    name: str,
    source: BlockSource,
    extents: list[tuple[int, int, int]],
    opts: UploadOptions,
    pool: ThreadPoolExecutor,
    throttle: Throttle,
) -> dict[int, str]:
    checksums: dict[int, str] = {}
    block_ids: list[str] = []
    in_flight: set[Future[None]] = set()

    def stage(block_id: str, data: bytes) -> None:
        throttle.take(len(data))
        # Asked per block: a long upload picks up renewed credentials between blocks.
        blobs.get_blob_client(name).stage_block(block_id, data, length=len(data))

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
    blobs.get_blob_client(name).commit_block_list([BlobBlock(block_id=b) for b in block_ids])
    return checksums
