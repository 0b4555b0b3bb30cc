"""Apply one disk's delta manifest from the cache storage account to its replica page blob.

The contract: every extent's checksum is verified before anything is written; a missing,
truncated, oversized, changed or corrupt upload raises a `CycleRejected` subclass and the replica is
left byte-identical; re-applying the same manifest gives the same replica.

How (docs/delta-format.md, "Applying a cycle", has the long version):

1. Check: the replica exists with the size the manifest's disk needs; every data blob exists with
   exactly the size the manifest implies. Each blob's ETag is pinned: every later read or server-side
   copy is conditional on it, so bytes that change after verification are never written.
2. Verify: stream each data blob in `read_size` GETs (bounded memory: parallelism x read_size), hash
   every extent incrementally, note which write units are all zeros, and, on the streaming write path,
   spool the non-zero bytes to a sparse local temp file.
3. Write, in disk order with bounded parallelism: zero units with Clear Pages (no body); the rest with
   Put Page From URL (server-side, when the endpoint supports it) or Put Page (<= 4 MiB, 512-aligned)
   from the spool, or from a second, ETag-pinned read of the cache when the spool would not fit.
   Extents adjacent on disk are coalesced into one call up to the 4 MiB limit. For initial/resync
   manifests (the whole disk) the ranges outside every extent are cleared where the replica has data.

Spool versus second read: the spool reads the cache once and costs local disk (the delta's non-zero
bytes; holes stay sparse) but no extra storage transactions; the second read needs no local disk but
doubles the read traffic. The engine spools when the delta fits `max_spool_bytes` and the spool
directory's free space, and re-reads otherwise; with Put Page From URL there is nothing to spool.

With Put Page From URL and `one_pass`, step 2 is left to the storage service: each call carries the CRC64
of what it copies (`x-ms-source-content-crc64`, shared/replication/page_from_url.py) and the worker reads
no data; units whose CRC64 is that of zeros are cleared. That needs a manifest the service can verify (a
CRC64 per extent of at most 4 MiB, no SHA-256); any other manifest streams.

Put Page From URL support is a capability of the destination endpoint, probed once per endpoint with
a request that cannot write (an impossible If-Match plus `if_sequence_number_lt=0`): 412 means the
operation exists, 501/APINotImplemented (Azurite) means it does not. The answer is cached per endpoint.
"""

from __future__ import annotations

import bisect
import functools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import (
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    UserDelegationKey,
    generate_blob_sas,
)
from pydantic import BaseModel, ConfigDict, Field

from shared.domain.errors import FieldProblem
from shared.replication.checksums import ChecksumAlgorithm, StreamingChecksum, crc64_combine, new_checksum
from shared.replication.delta_manifest import (
    MAX_MANIFEST_BYTES,
    CycleRejected,
    Extent,
    ManifestInvalid,
)
from shared.replication.manifest_stream import StreamedManifest
from shared.replication.page_from_url import (
    Crc64Run,
    is_checksum_mismatch,
    is_source_changed,
    is_source_missing,
    is_zero_extent,
    service_verifiable,
)
from shared.replication.replica_disks import (
    META_SOURCE_SIZE,
    ReplicaNotFound,
    ReplicaSizeMismatch,
)
from shared.replication.vhd import fixed_vhd_size, round_up_to_mib

log = logging.getLogger(__name__)

PAGE: Final = 512
MAX_PUT_PAGE: Final = 4 * 1024 * 1024  # Put Page / Put Page From URL limit per call
MIB: Final = 1024 * 1024
MANIFEST_READ_SIZE: Final = 4 * MIB


# --- errors --------------------------------------------------------------------------------------


class CycleDataMissing(CycleRejected):
    code = "CycleDataMissing"

    def __init__(self, blob: str, *, manifest: bool = False) -> None:
        # The manifest itself missing is a different mistake (posted before the manifest was uploaded,
        # or a wrong name in the event): say which blob is missing, never "named by the manifest".
        what = "manifest" if manifest else "data blob"
        remedy = (
            "the appliance must upload every disk's manifest before posting CycleUploaded, under the name "
            "the event gives"
            if manifest
            else "the appliance must upload a cycle's data blobs before its manifest"
        )
        named_by = "named by the CycleUploaded event" if manifest else "named by the manifest"
        super().__init__(
            f"{what} {blob} {named_by} does not exist in the cache account; {remedy}",
            details=[{"blob": blob, "blobRole": f"{what} {blob} {named_by}"}],
        )
        self.blob = blob
        self.manifest = manifest


class CycleDataTruncated(CycleRejected):
    code = "CycleDataTruncated"

    def __init__(self, blob: str, size: int, expected: int) -> None:
        super().__init__(
            f"data blob {blob} has {size} bytes but the manifest reads up to byte {expected}: "
            "the upload was cut short",
            details=[{"blob": blob, "size": size, "expected": expected}],
        )
        self.blob, self.size, self.expected = blob, size, expected


class CycleDataOversized(CycleRejected):
    code = "CycleDataOversized"

    def __init__(self, blob: str, size: int, expected: int) -> None:
        super().__init__(
            f"data blob {blob} has {size} bytes but the manifest accounts for {expected}: "
            "the blob and the manifest are from different uploads",
            details=[{"blob": blob, "size": size, "expected": expected}],
        )
        self.blob, self.size, self.expected = blob, size, expected


class CycleDataChanged(CycleRejected):
    code = "CycleDataChanged"

    def __init__(self, blob: str) -> None:
        super().__init__(
            f"data blob {blob} changed while the cycle was being applied; the appliance must not rewrite "
            "a cycle's blobs after posting it",
            details=[{"blob": blob}],
        )
        self.blob = blob


class ExtentChecksumMismatch(CycleRejected):
    code = "ExtentChecksumMismatch"

    def __init__(self, index: int, extent: Extent, algorithm: str, expected: str, actual: str) -> None:
        super().__init__(
            f"extent {index} (disk bytes {extent.offset}..{extent.end}, {extent.blob} at {extent.blob_offset}) "
            f"has {algorithm} {actual}, the manifest says {expected}: the data is corrupt",
            details=[
                {
                    "extent": index,
                    "offset": extent.offset,
                    "length": extent.length,
                    "blob": extent.blob,
                    "algorithm": algorithm,
                    "expected": expected,
                    "actual": actual,
                }
            ],
        )
        self.index, self.algorithm, self.expected, self.actual = index, algorithm, expected, actual


class ManifestMismatch(CycleRejected):
    """The manifest is well-formed but is not the one the caller asked for, or not for this replica."""

    code = "ManifestMismatch"


# --- what the engine reads -----------------------------------------------------------------------


class ManifestSource(Protocol):
    """A manifest as the engine reads it: `DeltaManifest` (in memory) or `StreamedManifest` (from disk).

    The engine only ever iterates the extents, a window at a time, so its memory follows the window."""

    @property
    def machine_id(self) -> str: ...
    @property
    def disk_id(self) -> str: ...
    @property
    def cycle_id(self) -> str: ...
    @property
    def sequence(self) -> int: ...
    @property
    def disk_size(self) -> int: ...
    @property
    def extent_count(self) -> int: ...
    @property
    def total_bytes(self) -> int: ...
    @property
    def describes_whole_disk(self) -> bool: ...

    def iter_extents(self) -> Iterator[Extent]: ...

    def referenced_blob_sizes(self) -> dict[str, int]: ...


# --- options and result --------------------------------------------------------------------------


class SpoolMode(StrEnum):
    AUTO = "auto"  # spool when it fits, else re-read
    DISK = "disk"
    REREAD = "reread"


class WritePath(StrEnum):
    PUT_PAGE = "put-page"
    PUT_PAGE_FROM_URL = "put-page-from-url"


class ApplyOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    parallelism: int = Field(default=4, ge=1, le=32, description="concurrent storage calls per phase")
    read_size: int = Field(default=8 * MIB, ge=PAGE, le=64 * MIB, description="bytes per verification GET")
    region_size: int = Field(
        default=64 * MIB, ge=MIB, description="contiguous blob bytes one verification task streams"
    )
    spool: SpoolMode = SpoolMode.AUTO
    spool_dir: Path | None = Field(default=None, description="None = the system temp directory")
    max_spool_bytes: int = Field(default=64 * 1024**3, ge=0)
    use_put_page_from_url: bool = True
    source_sas_ttl: timedelta = timedelta(hours=1)
    clear_zero_pages: bool = Field(default=True, description="write all-zero units with Clear Pages")
    one_pass: bool = Field(
        default=False,
        description="write each piece as soon as its bytes are read, verifying while writing: one read of "
        "the data and no spool, but a damaged upload is found after part of it is written (the caller "
        "restores the replica from its previous recovery point: CycleRejected.replica_changed)",
    )
    service_verifies_crc64: bool = Field(
        default=True,
        description="one pass with Put Page: each call carries the CRC64 of its bytes (combined from its "
        "extents' CRC64s in the manifest) and the storage service refuses a call whose bytes do not match, so "
        "a damaged extent is never written and the worker does not hash the data; extents without a CRC64, "
        "with a SHA-256 too, or longer than one call are hashed in the worker as before",
    )
    window_extents: int = Field(
        default=4096,
        ge=1,
        description="extents planned at a time: bounds memory whatever the manifest's size",
    )
    window_bytes: int = Field(
        default=2 * 1024 * MIB, ge=MAX_PUT_PAGE, description="extent bytes planned at a time (same purpose)"
    )
    progress_interval_seconds: float = Field(
        default=5.0, gt=0, description="at most one progress report per interval while writing"
    )


class ApplyResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    machine_id: str
    disk_id: str
    cycle_id: str
    sequence: int
    extents: int
    bytes_applied: int = Field(description="bytes of the disk the manifest sets (sum of extent lengths)")
    bytes_uploaded: int = Field(description="bytes sent with Put Page")
    bytes_copied: int = Field(description="bytes copied server-side with Put Page From URL")
    bytes_cleared: int = Field(description="bytes zeroed with Clear Pages (zero extents and whole-disk gaps)")
    bytes_read: int = Field(description="bytes read from the cache account")
    put_page_calls: int
    put_page_from_url_calls: int
    clear_page_calls: int
    read_calls: int
    write_path: WritePath
    data_source: str = Field(description="spool | reread | server-side")
    verify_seconds: float
    write_seconds: float
    duration_seconds: float

    @property
    def calls(self) -> int:
        return self.put_page_calls + self.put_page_from_url_calls + self.clear_page_calls + self.read_calls


# Told the bytes written so far (data, copies and clears) while writing, and once at the end.
ProgressReport = Callable[[int], None]

# --- source URLs for Put Page From URL -----------------------------------------------------------

SourceUrlSigner = Callable[[BlobClient], str | None]


class DefaultSourceUrlSigner:
    """A short-lived read-only SAS URL for a cache blob: account-key SAS or user-delegation SAS.

    Returns None when the client's credential can make neither (then the engine streams instead).
    """

    def __init__(self, ttl: timedelta = timedelta(hours=1)) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._delegation_keys: dict[str, tuple[UserDelegationKey, datetime]] = {}

    def __call__(self, blob: BlobClient) -> str | None:
        if urlsplit(blob.url).query:
            return blob.url  # already carries a SAS
        now = datetime.now(UTC)
        start, expiry = now - timedelta(minutes=5), now + self._ttl
        credential = blob.credential
        account_key = getattr(credential, "account_key", None)
        account_name = blob.account_name
        if account_name is None:
            return None
        if isinstance(account_key, str):
            sas = generate_blob_sas(
                account_name,
                blob.container_name,
                blob.blob_name,
                account_key=account_key,
                permission=BlobSasPermissions(read=True),
                start=start,
                expiry=expiry,
            )
            return f"{blob.url}?{sas}"
        if hasattr(credential, "get_token"):
            key = self._delegation_key(blob, start, expiry)
            sas = generate_blob_sas(
                account_name,
                blob.container_name,
                blob.blob_name,
                user_delegation_key=key,
                permission=BlobSasPermissions(read=True),
                start=start,
                expiry=expiry,
            )
            return f"{blob.url}?{sas}"
        return None

    def _delegation_key(self, blob: BlobClient, start: datetime, expiry: datetime) -> UserDelegationKey:
        account_url = f"{blob.scheme}://{blob.primary_hostname}"
        with self._lock:
            cached = self._delegation_keys.get(account_url)
            if cached is not None and cached[1] >= expiry:
                return cached[0]
            # One key serves many SAS; ask for twice the TTL so it outlives the SAS it signs.
            key_expiry = start + 2 * self._ttl
            service = BlobServiceClient(account_url, credential=blob.credential)
            key = service.get_user_delegation_key(start, key_expiry)
            self._delegation_keys[account_url] = (key, key_expiry)
            return key


_default_signer = DefaultSourceUrlSigner()


# --- capability probe ----------------------------------------------------------------------------

_capabilities: dict[str, bool] = {}
_capabilities_lock = threading.Lock()
_IMPOSSIBLE_ETAG: Final = '"0x0000000000000000"'
_NOT_IMPLEMENTED_CODES: Final = frozenset({"APINotImplemented", "NotImplemented", "FeatureNotSupported"})


def endpoint_key(blob: BlobClient) -> str:
    return f"{blob.scheme}://{blob.primary_hostname}/{blob.account_name or ''}"


def forget_capabilities() -> None:
    """Drop cached probe results (tests, or after an endpoint is upgraded)."""
    with _capabilities_lock:
        _capabilities.clear()


def supports_put_page_from_url(replica: BlobClient, source_url: str) -> bool:
    """Whether the replica's endpoint implements Put Page From URL; probed once per endpoint, then cached."""
    key = endpoint_key(replica)
    with _capabilities_lock:
        known = _capabilities.get(key)
    if known is not None:
        return known
    try:
        # Cannot write: the destination If-Match never matches and no sequence number is below 0.
        replica.upload_pages_from_url(
            source_url,
            offset=0,
            length=PAGE,
            source_offset=0,
            etag=_IMPOSSIBLE_ETAG,
            match_condition=MatchConditions.IfNotModified,
            if_sequence_number_lt=0,
        )
    except HttpResponseError as exc:
        if exc.status_code == 412:
            supported = True
        elif exc.status_code == 501 or getattr(exc, "error_code", None) in _NOT_IMPLEMENTED_CODES:
            supported = False
        else:
            # Not a capability answer (e.g. the source SAS is refused): stream this time, ask again next time.
            log.warning(
                "Put Page From URL probe on %s answered %s %s; streaming",
                key,
                exc.status_code,
                getattr(exc, "error_code", None),
            )
            return False
    else:  # pragma: no cover - a service that ignores both preconditions; never use it
        log.error("Put Page From URL probe on %s succeeded despite impossible preconditions; streaming", key)
        supported = False
    with _capabilities_lock:
        _capabilities[key] = supported
    log.info("Put Page From URL on %s: %s", key, "supported" if supported else "not supported")
    return supported


# --- planning ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Piece:
    """At most 4 MiB of one extent: the unit of zero detection and of coalescing into Put Page calls."""

    extent: int
    disk_offset: int
    length: int
    blob: str
    blob_offset: int
    spool_offset: int
    nonzero: bool = False
    index: int = -1  # the extent's index in the manifest
    crc64: int | None = None  # the extent's CRC64 when the piece is the whole extent (a write unit)


@dataclass(slots=True)
class _Region:
    """Contiguous bytes of one data blob covering whole extents: one verification task."""

    blob: str
    start: int
    end: int
    extents: list[int]


@dataclass(slots=True)
class _WriteOp:
    offset: int
    length: int
    clear: bool
    pieces: list[_Piece] = field(default_factory=list)


@dataclass
class _Counters:
    lock: threading.Lock = field(default_factory=threading.Lock)
    bytes_uploaded: int = 0
    bytes_copied: int = 0
    bytes_cleared: int = 0
    bytes_read: int = 0
    put_page_calls: int = 0
    put_page_from_url_calls: int = 0
    clear_page_calls: int = 0
    read_calls: int = 0
    writes_started: int = 0

    def add(self, **deltas: int) -> None:
        with self.lock:
            for name, value in deltas.items():
                setattr(self, name, getattr(self, name) + value)


@dataclass(slots=True)
class _Window:
    """Consecutive extents of the manifest, planned and run together."""

    first_index: int  # the manifest index of extents[0]
    first_piece: int  # the manifest-wide number of extents[0]'s first piece
    spool_start: int  # where extents[0]'s bytes start in the spool
    extents: list[Extent]


def _windows(extents: Iterator[Extent], max_extents: int, max_bytes: int) -> Iterator[_Window]:
    piece = spool = 0
    current: list[Extent] = []
    size = 0
    start = (0, 0, 0)
    for index, extent in enumerate(extents):
        if current and (len(current) >= max_extents or size + extent.length > max_bytes):
            yield _Window(*start, current)
            current, size = [], 0
            start = (index, piece, spool)
        current.append(extent)
        size += extent.length
        piece += -(-extent.length // MAX_PUT_PAGE)
        spool += extent.length
    if current:
        yield _Window(*start, current)


def _plan_pieces(extents: Sequence[Extent], spool_start: int = 0, first_index: int = 0) -> list[_Piece]:
    """Pieces of `extents` (indices into it); `spool_start` is where the first extent's bytes go in the
    spool, which holds every extent of the manifest back to back in disk order; `first_index` is the
    manifest index of extents[0]."""
    pieces: list[_Piece] = []
    spool = spool_start
    for index, extent in enumerate(extents):
        if extent.length <= MAX_PUT_PAGE:
            crc = None if extent.crc64 is None else int(extent.crc64, 16)
            pieces.append(
                _Piece(
                    index,
                    extent.offset,
                    extent.length,
                    extent.blob,
                    extent.blob_offset,
                    spool,
                    False,
                    first_index + index,
                    crc,
                )
            )
            spool += extent.length
            continue
        position = extent.offset
        while position < extent.end:
            end = min(extent.end, position + MAX_PUT_PAGE)
            delta = position - extent.offset
            pieces.append(
                _Piece(
                    index,
                    position,
                    end - position,
                    extent.blob,
                    extent.blob_offset + delta,
                    spool + delta,
                    index=first_index + index,
                )
            )
            position = end
        spool += extent.length
    return pieces


def _plan_regions(extents: Sequence[Extent], region_size: int) -> list[_Region]:
    order = sorted(range(len(extents)), key=lambda i: (extents[i].blob, extents[i].blob_offset))
    regions: list[_Region] = []
    for i in order:
        e = extents[i]
        last = regions[-1] if regions else None
        if (
            last is not None
            and last.blob == e.blob
            and last.end == e.blob_offset
            and last.end - last.start + e.length <= region_size
        ):
            last.end = e.blob_end
            last.extents.append(i)
        else:
            regions.append(_Region(e.blob, e.blob_offset, e.blob_end, [i]))
    return regions


def _region_size_for(extents: Sequence[Extent], region_size: int, parallelism: int) -> int:
    """At most `region_size`, and small enough that `extents` make at least `parallelism` regions when
    their bytes allow it (never under 1 MiB: tiny regions would only add reads)."""
    total = sum(e.length for e in extents)
    return max(MIB, min(region_size, -(-total // parallelism)))


def _plan_writes(pieces: Sequence[_Piece], clear_zero_pages: bool) -> list[_WriteOp]:
    ops: list[_WriteOp] = []
    for piece in pieces:
        clear = clear_zero_pages and not piece.nonzero
        last = ops[-1] if ops else None
        if (
            last is not None
            and last.clear == clear
            and last.offset + last.length == piece.disk_offset
            and (clear or last.length + piece.length <= MAX_PUT_PAGE)
        ):
            last.length += piece.length
            last.pieces.append(piece)
        else:
            ops.append(_WriteOp(piece.disk_offset, piece.length, clear, [piece]))
    return ops


def _subtract(start: int, end: int, covered: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start, end) minus the sorted, disjoint `covered` ranges."""
    gaps = []
    position = start
    for s, e in covered:
        if e <= position:
            continue
        if s >= end:
            break
        if s > position:
            gaps.append((position, s))
        position = max(position, e)
    if position < end:
        gaps.append((position, end))
    return gaps


def _intersect(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _merge(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


class _RegionWriter:
    """One pass: the pieces one verification task reads, written as they complete, in the order they come.

    Pieces adjacent on disk are coalesced into one Put Page (at most 4 MiB) or one Clear Pages run, as the
    two-pass plan would; memory is at most one call's worth of data per task (as views into the chunks
    read, so the bytes are copied once, into the call's body).

    A run is written only once every extent it holds whole has been verified: by the worker (hashed as it
    was read, before the run is flushed) or by the storage service (the run carries the CRC64 of its bytes,
    combined from its extents' manifest CRC64s, and a mismatch is refused without writing). The two kinds
    are never mixed in one call, so every call is verified one way or the other."""

    def __init__(self, run: _Apply) -> None:
        self.run = run
        self.piece_parts: list[memoryview] = []
        self.piece_zero = True
        self.run_zero = False
        self.run_by_service = False
        self.run_start = self.run_end = 0
        self.run_parts: list[memoryview] = []
        self.run_extents: list[tuple[int, Extent]] = []
        self.run_crc = 0

    def add(
        self,
        piece: _Piece,
        data: memoryview,
        zero: bool,
        *,
        complete: bool,
        by_service: tuple[int, Extent] | None = None,
    ) -> None:
        """A segment of `piece`'s bytes, in order; `complete` on its last one. `by_service` (the extent's
        manifest index and the extent, which is this one piece) when the service is to verify it."""
        self.piece_parts.append(data)
        self.piece_zero = self.piece_zero and zero
        if not complete:
            return
        clear = self.piece_zero and self.run.opts.clear_zero_pages
        parts = self.piece_parts
        self.piece_parts, self.piece_zero = [], True
        if clear and by_service is not None:
            # A cleared piece sends no bytes for the service to check: its (zero) bytes are checked here.
            self.run._check_in_worker(by_service, b"".join(parts))
            by_service = None
        service = by_service is not None
        joinable = (
            self.run_end == piece.disk_offset
            and self.run_zero == clear
            and (
                clear
                or (
                    self.run_by_service == service
                    and self.run_end - self.run_start + piece.length <= MAX_PUT_PAGE
                )
            )
        )
        if not joinable:
            self.flush()
            self.run_start = self.run_end = piece.disk_offset
            self.run_zero, self.run_by_service = clear, service
        if not clear:
            self.run_parts += parts
        if by_service is not None:
            extent = by_service[1]
            assert extent.crc64 is not None
            self.run_crc = crc64_combine(self.run_crc, int(extent.crc64, 16), piece.length)
            self.run_extents.append(by_service)
        self.run_end += piece.length

    def flush(self) -> None:
        length = self.run_end - self.run_start
        if length == 0:
            return
        op = _WriteOp(self.run_start, length, self.run_zero)
        if self.run_zero:
            self.run._clear(op)
        else:
            data = b"".join(self.run_parts)
            self.run._put_one_pass(op, data, self.run_extents if self.run_by_service else None, self.run_crc)
        self.run_parts, self.run_extents, self.run_crc = [], [], 0
        self.run_start = self.run_end


# --- the engine ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SourceBlob:
    client: BlobClient
    etag: str
    size: int


def load_manifest(
    cache: ContainerClient,
    blob_name: str,
    *,
    machine_id: str | None = None,
    cycle_id: str | None = None,
    disk_id: str | None = None,
    spool_dir: Path | None = None,
) -> StreamedManifest:
    """Read and validate a manifest blob, and check it is the one the event named.

    The result holds the document in an unlinked local temp file (close it, or use it as a context
    manager): memory does not depend on the number of extents."""
    blob = cache.get_blob_client(blob_name)
    try:
        props = blob.get_blob_properties()
        if props.size > MAX_MANIFEST_BYTES:
            raise ManifestInvalid(
                [
                    FieldProblem(
                        "(manifest)", f"is {props.size} bytes, more than the {MAX_MANIFEST_BYTES} allowed"
                    )
                ],
                source=blob_name,
            )
        # To local disk, never whole into memory: the document is re-read per pass (verify, write).
        local = tempfile.TemporaryFile(prefix="manifest-", dir=spool_dir)  # noqa: SIM115 - owned by the result
        try:
            # Ranged GETs of a fixed size: a single download would buffer up to the SDK's 32 MiB first GET.
            for offset in range(0, props.size, MANIFEST_READ_SIZE):
                length = min(MANIFEST_READ_SIZE, props.size - offset)
                local.write(
                    blob.download_blob(
                        offset=offset,
                        length=length,
                        etag=props.etag,
                        match_condition=MatchConditions.IfNotModified,
                        max_concurrency=1,
                    ).readall()
                )
        except BaseException:
            local.close()
            raise
    except ResourceNotFoundError as exc:
        raise CycleDataMissing(blob_name, manifest=True) from exc
    try:
        manifest = StreamedManifest.read(local, source=blob_name)
    except BaseException:
        local.close()
        raise
    expected = {"machineId": machine_id, "cycleId": cycle_id, "diskId": disk_id}
    actual = {"machineId": manifest.machine_id, "cycleId": manifest.cycle_id, "diskId": manifest.disk_id}
    wrong = [
        f"{k} is {actual[k]!r}, expected {v!r}"
        for k, v in expected.items()
        if v is not None and actual[k] != v
    ]
    problem = None
    if wrong:
        problem = f"manifest {blob_name}: " + "; ".join(wrong)
    elif blob_name != manifest.blob_name:
        problem = f"manifest {blob_name} describes {manifest.blob_name}: it was uploaded under the wrong name"
    if problem is not None:
        manifest.close()
        raise ManifestMismatch(problem)
    return manifest


def apply_extents(
    manifest: ManifestSource,
    *,
    cache: ContainerClient,
    replica: BlobClient,
    options: ApplyOptions | None = None,
    source_url_signer: SourceUrlSigner | None = None,
    disk_range: tuple[int, int] | None = None,
    blob_sizes: dict[str, int] | None = None,
    progress: ProgressReport | None = None,
) -> ApplyResult:
    """Apply `manifest` (data in `cache`) to the `replica` page blob. See the module docstring.

    `disk_range` (whole-disk manifests only): the manifest is one unit of a larger whole-disk copy
    (shared/replication/units.py) and describes only the disk bytes [start, end): what the replica holds
    there outside the extents is cleared, and nothing outside the range is touched. `blob_sizes` then
    gives each data blob's size as the whole manifest implies it (a unit reads only part of a blob)."""
    opts = options or ApplyOptions()
    run = _Apply(manifest, cache, replica, opts, source_url_signer or _default_signer, progress)
    run.disk_range = disk_range
    run.blob_sizes = blob_sizes
    return run.run()


class _Cancelled(Exception):
    """Another task failed; this one stops early."""


class _Apply:
    def __init__(
        self,
        manifest: ManifestSource,
        cache: ContainerClient,
        replica: BlobClient,
        opts: ApplyOptions,
        signer: SourceUrlSigner,
        progress: ProgressReport | None = None,
    ) -> None:
        self.progress = progress
        self.last_report = time.perf_counter()
        # Held by the one writer thread that reports; the others skip the report rather than wait.
        self.report_lock = threading.Lock()
        self.manifest = manifest
        self.cache = cache
        self.replica = replica
        self.opts = opts
        self.signer = signer
        self.counters = _Counters()
        self.cancel = threading.Event()
        self.spool_fd: int | None = None
        self.source_urls: dict[str, str] = {}
        self.sources: dict[str, _SourceBlob] = {}
        # One bit per piece of the manifest (in disk order): set when verification saw non-zero bytes.
        # Kept between the verify and the write pass instead of the pieces themselves: 64 KiB for a
        # 2 TiB disk in 4 MiB pieces.
        self.nonzero = bytearray()
        self.write_path = WritePath.PUT_PAGE
        self.data_source = "spool"
        self.service_crc64 = False
        self.started = self.verified = 0.0
        self.disk_range: tuple[int, int] | None = None
        self.blob_sizes: dict[str, int] | None = None

    def run(self) -> ApplyResult:
        try:
            self.prepare()
            try:
                return self.commit()
            except CycleRejected as rejected:
                # Found while writing (the service's CRC64 check, a source that changed or went): a call
                # other than the refused one may have written, so the caller restores the replica.
                rejected.replica_changed = rejected.replica_changed or self.counters.writes_started > 1
                raise
        finally:
            self.close()

    def prepare(self) -> None:
        """Everything before the first write: checks, capability, spool, verification."""
        self.started = time.perf_counter()
        self._check_replica()
        self.sources = self._check_sources()
        self.write_path = self._choose_write_path(self.sources)
        if self.write_path is WritePath.PUT_PAGE_FROM_URL:
            self.data_source = "server-side"
            if self.opts.one_pass:
                # The service checks each call's CRC64 as it copies: nothing to read here at all.
                self.verified = time.perf_counter()
                return
        elif self.opts.one_pass:
            self.data_source = "one-pass"
        else:
            self.data_source = self._choose_spool()
        if self.data_source == "spool":
            self.spool_fd = self._open_spool()
        self.service_crc64 = self.data_source == "one-pass" and self.opts.service_verifies_crc64
        try:
            self._verify(self.sources)
        except CycleRejected as rejected:
            c = self.counters
            rejected.replica_changed = c.bytes_uploaded + c.bytes_cleared > 0
            raise
        self.verified = time.perf_counter()

    def commit(self) -> ApplyResult:
        """Write what `prepare` verified."""
        m = self.manifest
        write_started = time.perf_counter()
        whole_start, whole_end = self.disk_range or (0, round_up_to_mib(m.disk_size))
        existing = self._replica_data_ranges(whole_start, whole_end) if m.describes_whole_disk else []
        covered_to = whole_start
        unread = self.data_source == "server-side" and self.opts.one_pass
        for window in _windows(m.iter_extents(), self.opts.window_extents, self.opts.window_bytes):
            pieces = _plan_pieces(window.extents, window.spool_start, window.first_index)
            for number, piece in enumerate(pieces, window.first_piece):
                if unread:  # never read: the manifest's CRC64 says which units are zeros
                    piece.nonzero = not is_zero_extent(window.extents[piece.extent])
                else:
                    piece.nonzero = bool(self.nonzero[number >> 3] & (1 << (number & 7)))
            # One pass: the pieces were written while they were verified; only whole-disk gaps remain.
            ops = [] if self.data_source == "one-pass" else _plan_writes(pieces, self.opts.clear_zero_pages)
            if m.describes_whole_disk:
                window_end = window.extents[-1].end
                ops = self._with_whole_disk_gaps(ops, covered_to, window_end, window.extents, existing)
                covered_to = window_end
            self._write(ops, self.sources, self.write_path, self.data_source)
        if m.describes_whole_disk:
            tail = self._with_whole_disk_gaps([], covered_to, whole_end, [], existing)
            self._write(tail, self.sources, self.write_path, self.data_source)
        done = time.perf_counter()
        self._report(force=True)
        c = self.counters
        return ApplyResult(
            machine_id=m.machine_id,
            disk_id=m.disk_id,
            cycle_id=m.cycle_id,
            sequence=m.sequence,
            extents=m.extent_count,
            bytes_applied=m.total_bytes,
            bytes_uploaded=c.bytes_uploaded,
            bytes_copied=c.bytes_copied,
            bytes_cleared=c.bytes_cleared,
            bytes_read=c.bytes_read,
            put_page_calls=c.put_page_calls,
            put_page_from_url_calls=c.put_page_from_url_calls,
            clear_page_calls=c.clear_page_calls,
            read_calls=c.read_calls,
            write_path=self.write_path,
            data_source=self.data_source,
            verify_seconds=self.verified - self.started,
            write_seconds=done - write_started,
            duration_seconds=(self.verified - self.started) + (done - write_started),
        )

    def close(self) -> None:
        if self.spool_fd is not None:
            os.close(self.spool_fd)
            self.spool_fd = None

    # -- checks

    def _check_replica(self) -> None:
        m = self.manifest
        try:
            props = self.replica.get_blob_properties()
        except ResourceNotFoundError as exc:
            raise ReplicaNotFound(
                f"replica {self.replica.blob_name} for disk {m.disk_id} does not exist: create it before applying"
            ) from exc
        expected = fixed_vhd_size(m.disk_size)
        recorded = (props.metadata or {}).get(META_SOURCE_SIZE)
        if props.size != expected or (recorded is not None and recorded != str(m.disk_size)):
            raise ReplicaSizeMismatch(
                f"cycle {m.cycle_id} is for a {m.disk_size}-byte disk (replica of {expected} bytes) but replica "
                f"{self.replica.blob_name} has {props.size} bytes (source disk {recorded or 'unknown'}): "
                "the disk was resized; resync it"
            )

    def _check_sources(self) -> dict[str, _SourceBlob]:
        sources: dict[str, _SourceBlob] = {}
        referenced = self.manifest.referenced_blob_sizes()
        if self.blob_sizes is not None:
            missing = sorted(set(referenced) - set(self.blob_sizes))
            if missing:
                raise ValueError(f"blob_sizes lacks {missing}: give every blob the manifest reads")
            referenced = {name: max(referenced[name], self.blob_sizes[name]) for name in referenced}
        for name, needed in sorted(referenced.items()):
            client = self.cache.get_blob_client(name)
            try:
                props = client.get_blob_properties()
            except ResourceNotFoundError as exc:
                raise CycleDataMissing(name) from exc
            if props.size < needed:
                raise CycleDataTruncated(name, props.size, needed)
            if props.size > needed:
                raise CycleDataOversized(name, props.size, needed)
            sources[name] = _SourceBlob(client, str(props.etag), props.size)
        return sources

    def _choose_write_path(self, sources: dict[str, _SourceBlob]) -> WritePath:
        if not self.opts.use_put_page_from_url or not sources:
            return WritePath.PUT_PAGE
        if self.opts.one_pass:
            # One pass on this path reads nothing: only the service verifies, so it must be able to.
            why_not = service_verifiable(self.manifest.iter_extents())
            if why_not is not None:
                log.info("disk %s streams: %s", self.manifest.disk_id, why_not)
                return WritePath.PUT_PAGE
        with _capabilities_lock:
            if _capabilities.get(endpoint_key(self.replica)) is False:
                return WritePath.PUT_PAGE  # known: no need to sign source URLs
        for name, source in sources.items():
            url = self.signer(source.client)
            if url is None:
                return WritePath.PUT_PAGE
            self.source_urls[name] = url
        probe_url = next(iter(self.source_urls.values()))
        if supports_put_page_from_url(self.replica, probe_url):
            return WritePath.PUT_PAGE_FROM_URL
        return WritePath.PUT_PAGE

    def _choose_spool(self) -> str:
        mode = self.opts.spool
        if mode is SpoolMode.REREAD:
            return "reread"
        if mode is SpoolMode.DISK:
            return "spool"
        total = self.manifest.total_bytes
        directory = self.opts.spool_dir or Path(tempfile.gettempdir())
        try:
            free = shutil.disk_usage(directory).free
        except OSError:
            return "reread"
        # Keep a margin for everything else on the worker's disk.
        return "spool" if total <= self.opts.max_spool_bytes and total + 1024 * MIB <= free else "reread"

    def _open_spool(self) -> int:
        directory = self.opts.spool_dir or Path(tempfile.gettempdir())
        fd, path = tempfile.mkstemp(prefix="apply-spool-", dir=directory)
        os.unlink(path)  # the data lives only as long as the descriptor
        os.ftruncate(fd, self.manifest.total_bytes)  # sparse: unwritten (all-zero) pieces take no disk
        return fd

    # -- verification

    def _verify(self, sources: dict[str, _SourceBlob]) -> None:
        """Stream the manifest in windows; verify (and spool) each window's extents with bounded parallelism,
        noting which pieces hold data. Memory is one window's plan, never the whole manifest's."""
        for window in _windows(
            self.manifest.iter_extents(), self.opts.window_extents, self.opts.window_bytes
        ):
            pieces = _plan_pieces(window.extents, window.spool_start)
            by_extent: dict[int, list[_Piece]] = {}
            for piece in pieces:
                by_extent.setdefault(piece.extent, []).append(piece)
            region_size = self.opts.region_size
            if self.data_source == "one-pass":
                # In one pass each region's task writes what it reads, one call at a time: a window of less
                # than `parallelism` regions would leave writers idle (a 16 MiB delta of scattered 4 KiB
                # writes, contiguous in its blob, is one region: one Put Page at a time).
                region_size = _region_size_for(window.extents, region_size, self.opts.parallelism)
            regions = _plan_regions(window.extents, region_size)
            self._run_parallel(
                [
                    functools.partial(self._verify_region, window, r, sources[r.blob], by_extent)
                    for r in regions
                ]
            )
            needed = (window.first_piece + len(pieces) + 7) >> 3
            if len(self.nonzero) < needed:
                self.nonzero.extend(bytes(needed - len(self.nonzero)))
            for number, piece in enumerate(pieces, window.first_piece):
                if piece.nonzero:
                    self.nonzero[number >> 3] |= 1 << (number & 7)

    def _verify_region(
        self, window: _Window, region: _Region, source: _SourceBlob, by_extent: dict[int, list[_Piece]]
    ) -> None:
        extents = window.extents
        # The region's extents sorted by blob offset, as the stream delivers them.
        queue = [(extents[i].blob_offset, i) for i in region.extents]
        queue.sort()
        current = 0
        hashers: dict[int, list[StreamingChecksum]] = {}
        position = region.start
        writer = _RegionWriter(self) if self.data_source == "one-pass" else None
        for chunk in self._read(source, region.start, region.end - region.start):
            chunk_end = position + len(chunk)
            while current < len(queue) and queue[current][0] < chunk_end:
                blob_offset, index = queue[current]
                extent = extents[index]
                seg_start = max(position, blob_offset)
                seg_end = min(chunk_end, extent.blob_end)
                if seg_start < seg_end:
                    self._consume(
                        chunk,
                        position,
                        seg_start,
                        seg_end,
                        index,
                        extent,
                        hashers,
                        by_extent[index],
                        writer,
                        window.first_index + index,
                    )
                if extent.blob_end <= chunk_end:
                    self._finish_extent(window.first_index + index, extent, hashers.pop(index, None))
                    current += 1
                else:
                    break
            position = chunk_end
        if writer is not None:
            writer.flush()

    def _consume(
        self,
        chunk: bytes,
        chunk_start: int,
        seg_start: int,
        seg_end: int,
        index: int,
        extent: Extent,
        hashers: dict[int, list[StreamingChecksum]],
        extent_pieces: list[_Piece],
        writer: _RegionWriter | None = None,
        number: int = 0,
    ) -> None:
        view = memoryview(chunk)
        a, b = seg_start - chunk_start, seg_end - chunk_start
        by_service = (number, extent) if writer is not None and self._service_verifies(extent) else None
        if by_service is None:
            checks = hashers.get(index)
            if checks is None:
                checks = hashers[index] = [new_checksum(alg) for alg in extent.checksums()]
            segment = view[a:b]
            for check in checks:
                check.update(segment)
        # Zero detection and spooling per piece (an extent is cut into pieces of at most 4 MiB, in blob
        # order): start at the piece holding seg_start, so a huge extent costs O(pieces touched) per chunk.
        first = (seg_start - extent.blob_offset) // MAX_PUT_PAGE
        for piece in extent_pieces[first:]:
            p_start = piece.blob_offset
            if p_start >= seg_end:
                break
            s, e = max(seg_start, p_start), min(seg_end, p_start + piece.length)
            if s >= e:
                continue
            ca, cb = s - chunk_start, e - chunk_start
            zero = _is_zero(chunk, ca, cb)
            if writer is not None:
                writer.add(
                    piece, view[ca:cb], zero, complete=e == p_start + piece.length, by_service=by_service
                )
            if zero:
                continue
            piece.nonzero = True
            if self.spool_fd is not None:
                _pwrite_all(self.spool_fd, view[ca:cb], piece.spool_offset + (s - p_start))

    def _finish_extent(self, index: int, extent: Extent, checks: list[StreamingChecksum] | None) -> None:
        for check in checks or []:
            expected = extent.checksums()[check.algorithm]
            actual = check.hexdigest()
            if actual != expected:
                raise ExtentChecksumMismatch(index, extent, check.algorithm.value, expected, actual)

    def _service_verifies(self, extent: Extent) -> bool:
        """Whether the storage service checks this extent as it is written (see `service_verifies_crc64`):
        its one CRC64 must describe exactly the bytes of one piece, which a Put Page carries whole."""
        return (
            self.service_crc64
            and extent.crc64 is not None
            and extent.sha256 is None
            and extent.length <= MAX_PUT_PAGE
        )

    def _check_in_worker(self, checked: tuple[int, Extent], data: bytes) -> None:
        index, extent = checked
        assert extent.crc64 is not None
        actual = new_checksum(ChecksumAlgorithm.CRC64)
        actual.update(data)
        if actual.hexdigest() != extent.crc64:
            raise ExtentChecksumMismatch(index, extent, "crc64", extent.crc64, actual.hexdigest())

    def _find_damage(self, data: bytes, extents: list[tuple[int, Extent]]) -> None:
        """Which of a call's extents does not match its CRC64 (the call's bytes are its extents' in order)."""
        view, position = memoryview(data), 0
        for checked in extents:
            length = checked[1].length
            self._check_in_worker(checked, bytes(view[position : position + length]))
            position += length

    def _put_one_pass(
        self, op: _WriteOp, data: bytes, by_service: list[tuple[int, Extent]] | None, crc: int
    ) -> None:
        if self.cancel.is_set():
            raise _Cancelled
        if by_service is None:
            self.replica.upload_page(data, offset=op.offset, length=op.length)
            self.counters.add(bytes_uploaded=op.length, put_page_calls=1)
            self._report()
            return
        expected = crc.to_bytes(8, "little")  # x-ms-content-crc64: the 64-bit value, little-endian
        try:
            answer = self.replica.upload_page(
                data, offset=op.offset, length=op.length, transactional_content_crc64=expected
            )
        except HttpResponseError as exc:
            if getattr(exc, "error_code", None) == "Crc64Mismatch":
                # Refused, nothing written: name the damaged extent (and its CRC64) as the worker would.
                self._find_damage(data, by_service)
            raise
        self.counters.add(bytes_uploaded=op.length, put_page_calls=1)
        echoed = answer.get("content_crc64")
        if not isinstance(echoed, bytes | bytearray) or bytes(echoed) != expected:
            # A service that wrote the call without answering with the CRC64 we sent may not have checked
            # it: check here (written already, so a damage found is reported as a changed replica).
            self._find_damage(data, by_service)
        self._report()

    def _read(self, source: _SourceBlob, offset: int, length: int) -> Iterator[bytes]:
        """The bytes [offset, offset+length) of a data blob, in `read_size` pieces, pinned to its ETag.

        In one pass the next piece is fetched while the caller verifies and writes the current one, so the
        writes never wait for the reads (one more `read_size` buffer per task)."""
        end = offset + length
        spans = [(o, min(self.opts.read_size, end - o)) for o in range(offset, end, self.opts.read_size)]
        if self.data_source != "one-pass" or len(spans) < 2:
            for o, n in spans:
                yield self._get(source, o, n, end)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as ahead:
            pending = ahead.submit(self._get, source, *spans[0], end)
            for i in range(len(spans)):
                data = pending.result()
                if i + 1 < len(spans):
                    pending = ahead.submit(self._get, source, *spans[i + 1], end)
                yield data

    def _get(self, source: _SourceBlob, offset: int, n: int, end: int) -> bytes:
        if self.cancel.is_set():
            raise _Cancelled
        try:
            data = source.client.download_blob(
                offset=offset,
                length=n,
                etag=source.etag,
                match_condition=MatchConditions.IfNotModified,
                max_concurrency=1,
            ).readall()
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise CycleDataChanged(source.client.blob_name) from exc
        if len(data) != n:
            raise CycleDataTruncated(source.client.blob_name, offset + len(data), end)
        self.counters.add(bytes_read=n, read_calls=1)
        return data

    # -- writing

    def _replica_data_ranges(self, start: int, end: int) -> list[tuple[int, int]]:
        """Where the replica holds data within [start, end) (merged): what a whole-disk copy must clear
        outside its extents. Bounded by the replica's fragmentation there, not by the manifest."""
        return _merge(
            [
                (max(r.start, start), min(r.end + 1, end))
                for r in self.replica.list_page_ranges(offset=start, length=end - start)
                if r.start is not None and r.end is not None and not r.cleared and r.start < end
            ]
        )

    def _with_whole_disk_gaps(
        self,
        ops: list[_WriteOp],
        start: int,
        end: int,
        extents: Sequence[Extent],
        existing: list[tuple[int, int]],
    ) -> list[_WriteOp]:
        """Initial/resync manifests describe the whole disk: within [start, end), clear what the replica has
        outside `extents` (and under their all-zero pieces) instead of writing zeros."""
        gaps = _subtract(start, end, [(e.offset, e.end) for e in extents])
        first = max(0, bisect.bisect_right(existing, (start, start)) - 1)
        last = bisect.bisect_left(existing, (end, end))
        nearby = existing[first:last]
        zero_ops = [(op.offset, op.offset + op.length) for op in ops if op.clear]
        to_clear = _merge(_intersect(gaps, nearby) + _intersect(zero_ops, nearby))
        data_ops = [op for op in ops if not op.clear]
        clears = [_WriteOp(s, e - s, True) for s, e in to_clear]
        return sorted(data_ops + clears, key=lambda op: op.offset)

    def _write(
        self, ops: list[_WriteOp], sources: dict[str, _SourceBlob], path: WritePath, data_source: str
    ) -> None:
        def task(op: _WriteOp) -> Callable[[], None]:
            if op.clear:
                return lambda: self._clear(op)
            if path is WritePath.PUT_PAGE_FROM_URL:
                return lambda: self._copy(op, sources)
            return lambda: self._put(op, sources, data_source)

        self._run_parallel([task(op) for op in ops])

    def _report(self, *, force: bool = False) -> None:
        """Tell the caller how far the writes are, at most once an interval (and once at the end).

        Progress is for people: a report that fails is logged and the apply goes on."""
        if self.progress is None:
            return
        if not force and time.perf_counter() - self.last_report < self.opts.progress_interval_seconds:
            return
        if not self.report_lock.acquire(blocking=force):
            return
        try:
            self.last_report = time.perf_counter()
            c = self.counters
            with c.lock:
                written = c.bytes_uploaded + c.bytes_copied + c.bytes_cleared
            self.progress(written)
        except Exception:
            log.warning("progress report of disk %s failed", self.manifest.disk_id, exc_info=True)
        finally:
            self.report_lock.release()

    def _clear(self, op: _WriteOp) -> None:
        if self.cancel.is_set():
            raise _Cancelled
        self.counters.add(writes_started=1)
        self.replica.clear_page(offset=op.offset, length=op.length)
        self.counters.add(bytes_cleared=op.length, clear_page_calls=1)
        self._report()

    def _put(self, op: _WriteOp, sources: dict[str, _SourceBlob], data_source: str) -> None:
        if self.cancel.is_set():
            raise _Cancelled
        if data_source == "spool":
            assert self.spool_fd is not None
            data = _pread_all(self.spool_fd, op.length, op.pieces[0].spool_offset)
        else:
            parts: list[bytes] = []
            for blob, offset, length in _source_runs(op.pieces):
                parts.extend(self._read(sources[blob], offset, length))
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.counters.add(writes_started=1)
        self.replica.upload_page(data, offset=op.offset, length=op.length)
        self.counters.add(bytes_uploaded=op.length, put_page_calls=1)
        self._report()

    def _copy(self, op: _WriteOp, sources: dict[str, _SourceBlob]) -> None:
        offset = op.offset
        for run in _piece_runs(op.pieces):
            if self.cancel.is_set():
                raise _Cancelled
            length = sum(p.length for p in run)
            try:
                self._copy_call(run, offset, length, sources)
            except HttpResponseError as exc:
                if is_checksum_mismatch(exc) and len(run) > 1:
                    # Several extents in one call: copy them one by one to name the damaged one (the
                    # good ones are written again with the same bytes: harmless).
                    position = offset
                    for piece in run:
                        self._copy_one(piece, position, sources)
                        position += piece.length
                else:
                    self._raise_refusal(exc, run)
            self.counters.add(bytes_copied=length, put_page_from_url_calls=1)
            offset += length
        self._report()

    def _copy_one(self, piece: _Piece, offset: int, sources: dict[str, _SourceBlob]) -> None:
        try:
            self._copy_call([piece], offset, piece.length, sources)
        except HttpResponseError as exc:
            self._raise_refusal(exc, [piece])
        self.counters.add(put_page_from_url_calls=1)

    def _copy_call(
        self, run: list[_Piece], offset: int, length: int, sources: dict[str, _SourceBlob]
    ) -> None:
        """One Put Page From URL of the blob-contiguous `run`; with the run's CRC64 when every piece is a
        whole extent with one (the service then verifies what it copies)."""
        # `source_contentcrc64` is the generated operation's name for x-ms-source-content-crc64: the
        # public method (12.31) names only the MD5 but passes other keywords through to it.
        extra: dict[str, Any] = {}
        if all(p.crc64 is not None for p in run):
            crc = Crc64Run()
            for p in run:
                assert p.crc64 is not None
                crc.add(p.crc64, p.length)
            extra["source_contentcrc64"] = crc.header()
        blob = run[0].blob
        self.counters.add(writes_started=1)
        try:
            self.replica.upload_pages_from_url(
                self.source_urls[blob],
                offset=offset,
                length=length,
                source_offset=run[0].blob_offset,
                source_etag=sources[blob].etag,
                source_match_condition=MatchConditions.IfNotModified,
                **extra,
            )
        except ResourceModifiedError as exc:
            raise CycleDataChanged(blob) from exc

    def _raise_refusal(self, exc: HttpResponseError, run: list[_Piece]) -> None:
        first = run[0]
        if is_checksum_mismatch(exc) and len(run) == 1 and first.crc64 is not None:
            expected = f"{first.crc64:016x}"
            extent = Extent(
                offset=first.disk_offset,
                length=first.length,
                blob=first.blob,
                blob_offset=first.blob_offset,
                crc64=expected,
            )
            raise ExtentChecksumMismatch(
                first.index, extent, "crc64", expected, "another value (computed by the storage service)"
            ) from exc
        if is_source_changed(exc):
            raise CycleDataChanged(first.blob) from exc
        if is_source_missing(exc):
            raise CycleDataMissing(first.blob) from exc
        raise exc

    # -- parallelism

    def _run_parallel(self, tasks: list[Callable[[], None]]) -> None:
        """Run tasks with bounded parallelism; on the first failure stop the rest and raise it."""
        if not tasks:
            return
        if self.opts.parallelism == 1 or len(tasks) == 1:
            for t in tasks:
                t()
            return
        with ThreadPoolExecutor(max_workers=self.opts.parallelism, thread_name_prefix="apply") as pool:
            # Submit lazily, at most 2x parallelism in flight (a million-extent plan is not a million
            # futures), topping up as each task finishes so no worker idles while work remains.
            pending: set[Future[None]] = set()
            failure: BaseException | None = None
            for t in tasks:
                if len(pending) >= 2 * self.opts.parallelism:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    failure = _first_failure(finished)
                    if failure is not None:
                        break
                pending.add(pool.submit(t))
            if failure is None:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                failure = _first_failure(finished)
            if failure is not None:
                self.cancel.set()  # queued tasks stop at their first check; running calls finish
            finished, _ = wait(pending)
            failure = failure or _first_failure(finished)
        if failure is not None:
            raise failure


def _first_failure(futures: set[Future[None]]) -> BaseException | None:
    errors = [f.exception() for f in futures if f.exception() is not None]
    real = [e for e in errors if not isinstance(e, _Cancelled)]
    return real[0] if real else (errors[0] if errors else None)


def _piece_runs(pieces: Sequence[_Piece]) -> Iterator[list[_Piece]]:
    """Pieces grouped into runs contiguous in the same data blob (one Put Page From URL each)."""
    run = [pieces[0]]
    for piece in pieces[1:]:
        last = run[-1]
        if piece.blob == last.blob and piece.blob_offset == last.blob_offset + last.length:
            run.append(piece)
        else:
            yield run
            run = [piece]
    yield run


def _source_runs(pieces: Sequence[_Piece]) -> Iterator[tuple[str, int, int]]:
    """Coalesce pieces into runs contiguous in the same data blob: (blob, offset, length)."""
    blob, start, length = pieces[0].blob, pieces[0].blob_offset, pieces[0].length
    for piece in pieces[1:]:
        if piece.blob == blob and piece.blob_offset == start + length:
            length += piece.length
        else:
            yield blob, start, length
            blob, start, length = piece.blob, piece.blob_offset, piece.length
    yield blob, start, length


def _is_zero(data: bytes, start: int, end: int) -> bool:
    # Cheap rejections first: real data is rarely zero at both ends, so most chunks exit here.
    if data[start] or data[end - 1]:
        return False
    return data.count(0, start, end) == end - start


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) == length:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            raise OSError(f"spool ended at {offset + got}, expected {offset + length}")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def verify_extents(
    manifest: ManifestSource,
    *,
    cache: ContainerClient,
    replica: BlobClient,
    options: ApplyOptions | None = None,
) -> None:
    """Every check `apply_extents` makes before it writes (replica size, data blob sizes, every extent's
    checksum), without writing anything; raises the same errors.

    `apply_extents` verifies again (its writes are pinned to its own verification), so verifying first
    costs one more read of the data: the price of verifying every disk of a multi-disk cycle before
    writing any of them.
    """
    run = _Apply(manifest, cache, replica, options or ApplyOptions(), _default_signer)
    run._check_replica()
    run._verify(run._check_sources())


__all__ = [
    "ApplyOptions",
    "ApplyResult",
    "CycleDataChanged",
    "CycleDataMissing",
    "CycleDataOversized",
    "CycleDataTruncated",
    "CycleRejected",
    "DefaultSourceUrlSigner",
    "ExtentChecksumMismatch",
    "ManifestInvalid",
    "ManifestMismatch",
    "ManifestSource",
    "SpoolMode",
    "WritePath",
    "apply_extents",
    "forget_capabilities",
    "load_manifest",
    "supports_put_page_from_url",
    "verify_extents",
]
