"""The on-premises side of reverse protection: the failed-over Azure VM's disks written back to raw images.

What the control plane asks (shared/domain/command.py) and how it is done here:
- power the machine off or on: a flag file beside the images (`.<machine>.power.json`) that the
  simulator and the tests read, as a hypervisor's power state;
- apply a reverse manifest: each write range is read from the snapshot's SAS URL with a ranged GET
  (`BlobClient.from_blob_url(url).download_blob(offset=, length=)`), its CRC64 checked against the
  manifest's before a byte is written, and written at its offset; zero ranges are written as zeros.
  At most `concurrency` ranges are in flight (memory: concurrency x 4 MiB). A range whose bytes do not
  match is read again, then refused: nothing of it is written and the answer says which ranges and
  why. A journal beside the image (`<image>.reverse.json`, flushed after the image is synced) lets a
  retry after a crash skip the ranges already written; applying the same manifest again always ends
  with the same image, journal or not;
- hash the image's blocks: SHA-256 per block, one streamed pass, one block in memory;
- report the blocks changed since a forward cycle: the replicator's cycle history and its change
  tracker (appliance/replicator.py) answer that; `changed_blocks_answer` builds the answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.blob import BlobClient, ContainerClient

from appliance.blocks import MAX_EXTENT, MIB, ImageFile
from appliance.upload import UploadDestination, destination_of
from shared.domain.command import (
    MAX_INLINE_HASH_BYTES,
    ApplyReverseManifest,
    BlockHashes,
    ChangedBlocks,
    CommandError,
    ManifestRange,
    PowerChanged,
    PowerOffMachine,
    PowerOnMachine,
    PowerState,
    RangeOp,
    RangeOutcome,
    ReverseManifestApplied,
    hashed_pieces,
)
from shared.replication.checksums import ChecksumAlgorithm, checksum_hex

CHECKSUM_MISMATCH: Final = "ReverseRangeChecksumMismatch"
SNAPSHOT_READ_FAILED: Final = "SnapshotReadFailed"
DISK_TOO_SMALL: Final = "OnPremisesDiskTooSmall"
_JOURNAL_VERSION: Final = 1
RANGE_CRC64_HEADER: Final = "x-ms-range-get-content-crc64"
CONTENT_CRC64_HEADER: Final = "x-ms-content-crc64"
_JOURNAL_EVERY: Final = 16  # ranges written between journal flushes (each flush syncs the image)


# --- power --------------------------------------------------------------------------------------------


class PowerSwitch:
    """The machine's power state as a flag file; a machine with no flag yet is running."""

    def __init__(self, directory: Path, machine_id: str) -> None:
        self.path = Path(directory) / f".{machine_id}.power.json"

    @property
    def state(self) -> PowerState:
        try:
            return PowerState(json.loads(self.path.read_text())["powerState"])
        except FileNotFoundError:
            return PowerState.ON

    def set(self, request: PowerOffMachine | PowerOnMachine) -> PowerChanged:
        wanted = PowerState.OFF if isinstance(request, PowerOffMachine) else PowerState.ON
        changed = self.state is not wanted
        if changed:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(
                json.dumps({"powerState": wanted.value, "changedAt": datetime.now(UTC).isoformat()})
            )
            os.replace(tmp, self.path)
        return PowerChanged(kind=request.kind, power_state=wanted, changed=changed)


# --- applying a reverse manifest ----------------------------------------------------------------------


class RangeReader(Protocol):
    def read(self, offset: int, length: int) -> bytes: ...


class SnapshotReader:
    """Ranged reads of a snapshot (or any blob) through its SAS URL: the wire a managed-disk snapshot's
    read access serves."""

    def __init__(self, url: str) -> None:
        self._blob = BlobClient.from_blob_url(url)

    def read(self, offset: int, length: int) -> bytes:
        return self._download(offset, length, {})

    def read_checked(self, offset: int, length: int) -> bytes:
        """The range, checked against the storage service's transactional CRC64 of the GET
        (`x-ms-range-get-content-crc64`, ranges of at most 4 MiB): how a range the manifest gives no
        checksum for is verified, so the control plane never reads the data to compute one."""
        seen: dict[str, str | None] = {}

        def keep_crc64(response: Any) -> None:
            seen["crc64"] = response.http_response.headers.get(CONTENT_CRC64_HEADER)

        data = self._download(
            offset, length, {"headers": {RANGE_CRC64_HEADER: "true"}, "raw_response_hook": keep_crc64}
        )
        header = seen.get("crc64")
        if not header:
            raise TransactionalChecksumError(
                SNAPSHOT_READ_FAILED, f"reading {offset}+{length}: the service sent no {CONTENT_CRC64_HEADER}"
            )
        try:
            expected = crc64_from_header(header)
        except ValueError as exc:
            raise TransactionalChecksumError(
                SNAPSHOT_READ_FAILED, f"reading {offset}+{length}: unreadable {CONTENT_CRC64_HEADER}: {exc}"
            ) from exc
        actual = checksum_hex(ChecksumAlgorithm.CRC64, data)
        if actual != expected:
            raise TransactionalChecksumError(
                CHECKSUM_MISMATCH,
                f"range {offset}+{length}: CRC64 of the bytes read is {actual}, the service sent {expected}",
                crc64=actual,
            )
        return data

    def _download(self, offset: int, length: int, options: dict[str, Any]) -> bytes:
        data = bytes(
            self._blob.download_blob(offset=offset, length=length, max_concurrency=1, **options).readall()
        )
        if len(data) != length:
            raise OSError(f"the snapshot returned {len(data)} bytes for {offset}+{length}")
        return data


def crc64_from_header(header: str) -> str:
    """`x-ms-content-crc64` (base64 of 8 little-endian bytes) as the manifest's 16 hex digits."""
    raw = base64.b64decode(header, validate=True)
    if len(raw) != 8:
        raise ValueError(f"{CONTENT_CRC64_HEADER} is 8 bytes, got {len(raw)}")
    return f"{int.from_bytes(raw, 'little'):016x}"


class TransactionalChecksumError(OSError):
    """The bytes a ranged GET returned do not match (or came without) the service's CRC64."""

    def __init__(self, code: str, message: str, crc64: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.crc64 = code, message, crc64


@dataclass(frozen=True)
class ReverseApplyOptions:
    concurrency: int = 4
    attempts: int = 3  # reads of one range before it is refused
    retry_delay_seconds: float = 0.2


class _Refused(Exception):
    def __init__(self, code: str, message: str, crc64: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.crc64 = code, message, crc64


class _Journal:
    """The ranges of one manifest already written and synced, by offset."""

    def __init__(self, image: Path, request: ApplyReverseManifest) -> None:
        self.path = image.with_name(image.name + ".reverse.json")
        self.key = {
            "version": _JOURNAL_VERSION,
            "reverseCycleId": request.reverse_cycle_id,
            "diskId": request.disk_id,
            "manifest": hashlib.sha256(
                json.dumps([r.to_wire() for r in request.manifest]).encode()
            ).hexdigest(),
        }
        self.done: dict[int, str | None] = {}
        try:
            stored = json.loads(self.path.read_text())
            if {k: stored.get(k) for k in self.key} == self.key:
                self.done = {int(k): v for k, v in stored["done"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no journal (or another manifest's, or torn): every range is written again

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({**self.key, "done": {str(k): v for k, v in self.done.items()}}))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def apply_reverse_manifest(
    image_path: Path,
    request: ApplyReverseManifest,
    *,
    reader: RangeReader | None = None,
    options: ReverseApplyOptions | None = None,
) -> tuple[ReverseManifestApplied, CommandError | None]:
    """Write the manifest's ranges to the image; the answer, and the error when any range was refused."""
    options = options or ReverseApplyOptions()
    source = reader or SnapshotReader(request.snapshot_read_url)
    image_path = Path(image_path)
    with ImageFile(image_path, writable=True) as image:
        needed = max((r.end for r in request.manifest), default=0)
        if needed > image.size:
            outcomes = [_outcome(r, None, verified=False) for r in request.manifest]
            return _answer(request, outcomes, 0, 0, 0), CommandError(
                code=DISK_TOO_SMALL,
                message=f"disk {request.disk_id} ({image_path}) is {image.size} bytes; the Azure disk's "
                f"data reaches {needed}. Grow the on-premises disk to at least the Azure disk's size.",
            )
        journal = _Journal(image_path, request)
        lock = threading.Lock()
        counters = {"read": 0, "written": 0, "zeroed": 0, "since_flush": 0}
        refusals: dict[int, _Refused] = {}

        def flush() -> None:
            os.fsync(image.fd)  # the journal never claims bytes the disk may not hold
            journal.save()
            counters["since_flush"] = 0

        def apply_one(r: ManifestRange) -> RangeOutcome:
            if r.offset in journal.done:
                return _outcome(r, journal.done[r.offset], verified=True, already_applied=True)
            crc: str | None = None
            try:
                if r.op is RangeOp.ZERO:
                    _write_zeros(image, r.offset, r.length)
                else:
                    data, crc = _read_verified(source, r, options)
                    image.write(r.offset, data)
            except _Refused as refused:
                with lock:
                    refusals[r.offset] = refused
                return _outcome(r, refused.crc64, verified=False)
            with lock:
                if r.op is RangeOp.ZERO:
                    counters["zeroed"] += r.length
                else:
                    counters["read"] += r.length
                    counters["written"] += r.length
                journal.done[r.offset] = crc
                counters["since_flush"] += 1
                if counters["since_flush"] >= _JOURNAL_EVERY:
                    flush()
            return _outcome(r, crc, verified=True)

        with ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="reverse") as pool:
            outcomes = list(pool.map(apply_one, request.manifest))
        with lock:
            flush()
        answer = _answer(request, outcomes, counters["read"], counters["written"], counters["zeroed"])
        if not refusals:
            journal.remove()
            return answer, None
        return answer, _refusal_error(request, refusals)


def _read_verified(source: RangeReader, r: ManifestRange, options: ReverseApplyOptions) -> tuple[bytes, str]:
    """The range's bytes and their CRC64, checked against the manifest's CRC64 when it has one (the
    reader checks the service's transactional CRC64 on its own)."""
    last: _Refused | None = None
    for attempt in range(options.attempts):
        if attempt:
            time.sleep(options.retry_delay_seconds * attempt)
        try:
            data = _read_range(source, r)
        except TransactionalChecksumError as exc:
            last = _Refused(exc.code, exc.message, crc64=exc.crc64)
            continue
        except HttpResponseError as exc:
            last = _Refused(SNAPSHOT_READ_FAILED, f"reading {r.offset}+{r.length}: {exc.message}")
            if exc.status_code is not None and 400 <= exc.status_code < 500 and exc.status_code != 408:
                raise last from exc  # an expired or revoked SAS does not heal by retrying
            continue
        except (AzureError, OSError) as exc:
            last = _Refused(SNAPSHOT_READ_FAILED, f"reading {r.offset}+{r.length}: {exc}")
            continue
        crc = checksum_hex(ChecksumAlgorithm.CRC64, data)
        if r.crc64 is None or crc == r.crc64:
            return data, crc
        last = _Refused(
            CHECKSUM_MISMATCH,
            f"range {r.offset}+{r.length}: CRC64 of the bytes read is {crc}, the manifest says {r.crc64}",
            crc64=crc,
        )
    assert last is not None  # attempts >= 1: a failed loop recorded why
    raise last


def _read_range(source: RangeReader, r: ManifestRange) -> bytes:
    if r.crc64 is not None:
        return source.read(r.offset, r.length)
    checked = getattr(source, "read_checked", None)
    if checked is None:
        raise TransactionalChecksumError(
            SNAPSHOT_READ_FAILED,
            f"range {r.offset}+{r.length} has no CRC64 and this reader cannot ask the service for one",
        )
    data: bytes = checked(r.offset, r.length)
    return data


def _write_zeros(image: ImageFile, offset: int, length: int) -> None:
    zeros = bytes(min(length, MAX_EXTENT))
    end = offset + length
    while offset < end:
        n = min(len(zeros), end - offset)
        image.write(offset, zeros[:n] if n < len(zeros) else zeros)
        offset += n


def _outcome(
    r: ManifestRange, crc: str | None, *, verified: bool, already_applied: bool = False
) -> RangeOutcome:
    return RangeOutcome(
        offset=r.offset,
        length=r.length,
        op=r.op,
        crc64=crc,
        verified=verified,
        already_applied=already_applied,
    )


def _answer(
    request: ApplyReverseManifest, outcomes: list[RangeOutcome], read: int, written: int, zeroed: int
) -> ReverseManifestApplied:
    return ReverseManifestApplied(
        disk_id=request.disk_id,
        reverse_cycle_id=request.reverse_cycle_id,
        bytes_read=read,
        bytes_written=written,
        bytes_zeroed=zeroed,
        ranges=outcomes,
    )


def _refusal_error(request: ApplyReverseManifest, refusals: dict[int, _Refused]) -> CommandError:
    ordered = [refusals[k] for k in sorted(refusals)]
    mismatched = [r for r in ordered if r.code == CHECKSUM_MISMATCH]
    code = CHECKSUM_MISMATCH if mismatched else SNAPSHOT_READ_FAILED
    first = "; ".join(r.message for r in ordered[:3])
    more = f" (and {len(ordered) - 3} more)" if len(ordered) > 3 else ""
    return CommandError(
        code=code,
        message=f"{len(ordered)} of {len(request.manifest)} ranges of disk {request.disk_id} were not "
        f"written (reverse cycle {request.reverse_cycle_id}): {first}{more}. The other ranges are written; "
        "send the manifest again (from the same snapshot) once the snapshot reads correctly.",
    )


# --- block hashes -------------------------------------------------------------------------------------


class HashRangeBeyondDisk(ValueError):
    """A finer pass asked for bytes past the end of the image: OnPremisesDiskTooSmall, as a manifest
    reaching past it is; nothing was hashed."""

    code: Final = "OnPremisesDiskTooSmall"


def hash_blocks(
    image_path: Path, block_size: int = MIB, ranges: list[tuple[int, int]] | None = None
) -> tuple[int, bytes]:
    """(disk size, the SHA-256 of each block, the last one clipped, concatenated). With `ranges` (the
    finer pass), of each `block_size` piece of those ranges only, in order (`hashed_pieces`)."""
    digests = bytearray()
    with ImageFile(Path(image_path)) as image:
        beyond = [(o, n) for o, n in ranges or () if o + n > image.size]
        if beyond:
            offset, length = beyond[0]
            raise HashRangeBeyondDisk(
                f"range [{offset}, {length}] ends beyond the disk ({image.size} bytes); nothing was hashed"
            )
        for offset, length in hashed_pieces(ranges, block_size, image.size):
            digests += hashlib.sha256(image.read(offset, length)).digest()
        return image.size, bytes(digests)


def block_hashes_answer(
    image_path: Path,
    *,
    disk_id: str,
    block_size: int,
    ranges: list[tuple[int, int]] | None = None,
    uploads: UploadDestination | ContainerClient | None = None,
    machine_id: str | None = None,
    answer_id: str | None = None,
) -> BlockHashes:
    """The HashDiskBlocks answer: digests inline when small, else uploaded beside the machine's cycles
    as `{machineId}/{answerId}/{diskId}/block-hashes.sha256` (with the same write-only credentials)."""
    size, digests = hash_blocks(image_path, block_size, ranges)
    if len(digests) <= MAX_INLINE_HASH_BYTES:
        return BlockHashes(
            disk_id=disk_id,
            block_size=block_size,
            disk_size=size,
            ranges=ranges,
            hashes=base64.b64encode(digests).decode(),
        )
    if uploads is None or machine_id is None or answer_id is None:
        raise ValueError(f"{len(digests)} bytes of block hashes need an upload destination")
    name = f"{machine_id}/{answer_id}/{disk_id}/block-hashes.sha256"
    blobs = destination_of(uploads).for_cycle(machine_id, answer_id, [name])
    blobs.get_blob_client(name).upload_blob(digests, overwrite=True)
    return BlockHashes(
        disk_id=disk_id, block_size=block_size, disk_size=size, ranges=ranges, hashes_blob=name
    )


# --- changed blocks -----------------------------------------------------------------------------------


def changed_blocks_answer(
    *, disk_id: str, since_cycle_id: str, ranges: Iterable[tuple[int, int]] | None, reason: str | None = None
) -> ChangedBlocks:
    if ranges is None:
        return ChangedBlocks(
            disk_id=disk_id,
            since_cycle_id=since_cycle_id,
            available=False,
            reason=reason or "no change record",
        )
    return ChangedBlocks(disk_id=disk_id, since_cycle_id=since_cycle_id, available=True, ranges=list(ranges))
