"""The managed-disk data plane: the page blob a disk or snapshot grant's SAS URL names.

Served by the local ARM endpoint's own HTTP server at `/md-<account>/<container>/abcd` (path-style, as
the storage SDK expects of a local host), so `BlobClient.from_blob_url(sas)` works unchanged:
- `HEAD`: `Content-Length`, `x-ms-blob-type: PageBlob`, `ETag`, `Last-Modified`;
- `GET` with `x-ms-range`/`Range`: 206 and `Content-Range` (200 and the whole disk without one); with
  `x-ms-range-get-content-crc64: true` also the range's transactional `x-ms-content-crc64` (a range of
  at most 4 MiB, as Azure: a longer one, or none, is 400);
- `GET ?comp=pagelist`: Get Page Ranges in the storage XML format (`PageList` of `PageRange`, and with
  `x-ms-previous-snapshot-url` also `ClearRange`), segmented by `maxresults`/`marker`/`NextMarker`.
Every request needs a valid SAS (signature, a grant not ended, not expired: 403 `AuthenticationFailed`
otherwise) and `x-ms-version` (400 `MissingRequiredHeader`); a Read SAS allows nothing but reads (403
`AuthorizationPermissionMismatch`).

A diff between two incremental snapshots of one family compares the two sparse images: only the extents
that hold data in either file are read (SEEK_DATA/SEEK_HOLE), compared in chunks, and reported per
512-byte page, merged. A page whose bytes differ is a `PageRange` when the newer image holds data there
and a `ClearRange` when it is a hole (trimmed). Azure reports the pages written between the snapshots,
even when rewritten with the same bytes; this reports those whose content changed, a subset that
brings a copy to the same bytes.

The admin hook `POST /_admin/disk-write` plays a guest's writes into a managed disk's image.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import errno
import hashlib
import hmac
import os
import re
import time
import uuid
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from azure.storage.extensions.checksums import crc64
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from devhost.arm import access, disk_upload, ids
from devhost.arm.compute import disk_file, disk_owner
from devhost.arm.errors import ArmError
from devhost.arm.ids import ResourceId
from devhost.arm.store import Doc

if TYPE_CHECKING:
    from devhost.arm.service import LocalArm

PAGE: Final = 512
COMPARE_CHUNK: Final = 1024 * 1024
_SUB_BLOCK: Final = 64 * 1024
_BLOCK: Final = 4096
READ_CHUNK: Final = 4 * 1024 * 1024
MAX_RESULTS: Final = 10_000
# Storage service versions: the oldest one, and those that brought what the requests use.
OLDEST_VERSION: Final = "2009-09-19"
PREVIOUS_SNAPSHOT_URL_VERSION: Final = "2019-07-07"
MARKER_VERSION: Final = "2020-10-02"
_VERSION_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RANGE_RE: Final = re.compile(r"^bytes=(\d+)-(\d*)$")


class StorageError(Exception):
    """A storage service error: `<Error><Code/><Message/></Error>` and `x-ms-error-code`."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def response(self, request_id: str, *, head: bool, headers: dict[str, str]) -> Response:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
        parts = [
            f"<Code>{escape(self.code)}</Code>",
            f"<Message>{escape(self.message)}\nRequestId:{request_id}\nTime:{now}</Message>",
            *(f"<{k}>{escape(v)}</{k}>" for k, v in self.extra.items()),
        ]
        body = f'<?xml version="1.0" encoding="utf-8"?><Error>{"".join(parts)}</Error>'
        return Response(
            None if head else body.encode(),
            status_code=self.status,
            media_type="application/xml",
            headers={**headers, "x-ms-error-code": self.code},
        )


def _authentication_failed(detail: str) -> StorageError:
    return StorageError(
        403,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
        "correctly including the signature.",
        AuthenticationErrorDetail=detail,
    )


# --- sparse images: extents and diffs ----------------------------------------------------------------


@dataclass(frozen=True)
class PageSpan:
    """[start, end) of a blob, 512-byte aligned; `cleared` for a ClearRange."""

    start: int
    end: int
    cleared: bool = False


def data_extents(fd: int, start: int, end: int) -> list[tuple[int, int]]:
    """The [start, end) spans of an open file that hold data (not holes), clipped to [start, end)."""
    spans: list[tuple[int, int]] = []
    position = start
    while position < end:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after position
                break
            raise
        if data >= end:
            break
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        spans.append((data, min(hole, end)))
        position = hole
    return spans


def _page_aligned(spans: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in spans:
        a, b = s - s % PAGE, min(-(-e // PAGE) * PAGE, limit)
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        elif a < b:
            out.append((a, b))
    return out


def _union(first: list[tuple[int, int]], second: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted(first + second):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def written_spans(path: Path, start: int, end: int) -> Iterator[PageSpan]:
    """The pages of an image that hold data (Get Page Ranges without a previous snapshot)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for s, e in _page_aligned(data_extents(fd, start, end), end):
            yield PageSpan(s, e)
    finally:
        os.close(fd)


def _differing_pages(old: bytes, new: bytes, base: int) -> Iterator[int]:
    """Offsets of the 512-byte pages that differ, narrowing down by 64 KiB then 4 KiB blocks."""
    for sub in range(0, len(new), _SUB_BLOCK):
        if old[sub : sub + _SUB_BLOCK] == new[sub : sub + _SUB_BLOCK]:
            continue
        for block in range(sub, min(sub + _SUB_BLOCK, len(new)), _BLOCK):
            if old[block : block + _BLOCK] == new[block : block + _BLOCK]:
                continue
            for page in range(block, min(block + _BLOCK, len(new)), PAGE):
                if old[page : page + PAGE] != new[page : page + PAGE]:
                    yield base + page


def changed_spans(previous: Path, current: Path, start: int, end: int) -> Iterator[PageSpan]:
    """The pages whose content differs between two images over [start, end), merged, in order."""
    old_fd = os.open(previous, os.O_RDONLY)
    new_fd = os.open(current, os.O_RDONLY)
    try:
        new_data = _page_aligned(data_extents(new_fd, start, end), end)
        starts = [s for s, _ in new_data]
        regions = _union(_page_aligned(data_extents(old_fd, start, end), end), new_data)

        def in_new_data(offset: int) -> bool:
            index = bisect_right(starts, offset) - 1
            return index >= 0 and offset < new_data[index][1]

        pending: PageSpan | None = None
        for region_start, region_end in regions:
            for chunk in range(region_start, region_end, COMPARE_CHUNK):
                length = min(COMPARE_CHUNK, region_end - chunk)
                old = os.pread(old_fd, length, chunk).ljust(length, b"\0")
                new = os.pread(new_fd, length, chunk).ljust(length, b"\0")
                if old == new:
                    continue
                for page in _differing_pages(old, new, chunk):
                    cleared = not in_new_data(page)
                    if pending is not None and pending.end == page and pending.cleared == cleared:
                        pending = PageSpan(pending.start, page + PAGE, cleared)
                        continue
                    if pending is not None:
                        yield pending
                    pending = PageSpan(page, page + PAGE, cleared)
        if pending is not None:
            yield pending
    finally:
        os.close(old_fd)
        os.close(new_fd)


def encode_marker(offset: int) -> str:
    return base64.urlsafe_b64encode(f"pagelist:{offset}".encode()).decode()


def decode_marker(marker: str) -> int:
    try:
        kind, _, offset = base64.urlsafe_b64decode(marker.encode()).decode().partition(":")
        if kind != "pagelist":
            raise ValueError(kind)
        return int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise StorageError(
            400,
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid.",
            QueryParameterName="marker",
            QueryParameterValue=marker,
        ) from exc


def page_list_xml(spans: list[PageSpan], next_marker: str | None) -> str:
    parts = []
    for span in spans:
        tag = "ClearRange" if span.cleared else "PageRange"
        parts.append(f"<{tag}><Start>{span.start}</Start><End>{span.end - 1}</End></{tag}>")
    if next_marker is not None:
        parts.append(f"<NextMarker>{escape(next_marker)}</NextMarker>" if next_marker else "<NextMarker />")
    return f'<?xml version="1.0" encoding="utf-8"?><PageList>{"".join(parts)}</PageList>'


# --- requests ----------------------------------------------------------------------------------------


def is_dataplane_path(path: str) -> bool:
    segments = [s for s in path.split("/") if s]
    return len(segments) == 3 and segments[0].startswith(access.ACCOUNT_PREFIX)


@dataclass(frozen=True)
class Target:
    rid: ResourceId
    doc: Doc
    path: Path
    size: int


def _verify(arm: LocalArm, path: str, query: dict[str, str]) -> tuple[Target, dict[str, object]]:
    """The resource a SAS URL names, if its signature and grant are valid; else AuthenticationFailed."""
    identifier, sig = query.get("si"), query.get("sig")
    version, resource = query.get("sv", ""), query.get("sr", "")
    if not identifier or not sig:
        raise _authentication_failed("The request carries no shared access signature (si, sig).")
    found = access.find_grant(arm, identifier)
    if found is None:
        raise _authentication_failed(
            f"Signed identifier '{identifier}' was not found: the access was ended (endGetAccess) or never "
            "granted."
        )
    rid, doc, grant = found
    account, container = access.account_of(doc)
    expected = access.signature(
        access.signing_key(arm), version=version, resource=resource, identifier=identifier, path=path
    )
    if path != f"/{account}/{container}/{access.BLOB_NAME}" or not hmac.compare_digest(expected, sig):
        raise _authentication_failed("Signature did not match.")
    expires = float(grant["expires"])
    if expires <= time.time():
        raise _authentication_failed(
            f"The signed access expired at {datetime.fromtimestamp(expires, UTC).isoformat()}."
        )
    return Target(rid, doc, disk_file(arm, doc), disk_upload.blob_size(doc)), grant


def _etag_and_modified(target: Target) -> tuple[str, str]:
    if target.rid.type == ids.SNAPSHOT:  # a snapshot never changes
        digest = hashlib.sha256(str(target.doc["properties"]["uniqueId"]).encode()).hexdigest()[:16]
        created = datetime.fromisoformat(str(target.doc["properties"]["timeCreated"]))
        return f'"0x{digest.upper()}"', formatdate(created.timestamp(), usegmt=True)
    stat = target.path.stat()
    return f'"0x{stat.st_mtime_ns:X}"', formatdate(stat.st_mtime, usegmt=True)


def _version(request: Request) -> str:
    version = request.headers.get("x-ms-version")
    if version is None:
        raise StorageError(
            400,
            "MissingRequiredHeader",
            "An HTTP header that's mandatory for this request is not specified.",
            HeaderName="x-ms-version",
        )
    if not _VERSION_RE.match(version) or version < OLDEST_VERSION:
        raise StorageError(
            400,
            "InvalidHeaderValue",
            "The value for one of the HTTP headers is not in the correct format.",
            HeaderName="x-ms-version",
            HeaderValue=version,
        )
    return version


def _byte_range(request: Request, size: int) -> tuple[int, int] | None:
    """The inclusive byte range asked for (`x-ms-range` wins over `Range`), clipped to the blob."""
    header = request.headers.get("x-ms-range") or request.headers.get("range")
    if header is None:
        return None
    match = _RANGE_RE.match(header.strip())
    if match is None:
        raise StorageError(
            400,
            "InvalidHeaderValue",
            "The value for one of the HTTP headers is not in the correct format.",
            HeaderName="x-ms-range" if request.headers.get("x-ms-range") else "Range",
            HeaderValue=header,
        )
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) else size - 1
    if start >= size or end < start:
        raise StorageError(
            416, "InvalidRange", "The range specified is invalid for the current size of the resource."
        )
    return start, min(end, size - 1)


async def handle(arm: LocalArm, request: Request) -> Response:
    request_id = str(uuid.uuid4())
    head = request.method == "HEAD"
    headers = {"x-ms-request-id": request_id, "Date": formatdate(usegmt=True)}
    try:
        query = {k: v for k, v in request.query_params.items()}
        target, grant = _verify(arm, request.url.path, query)
        if grant["access"] == "Write" and request.method == "PUT" and query.get("comp") == "page":
            headers["x-ms-version"] = _version(request)
            payload = await request.body()
            return await run_in_threadpool(_put_page, request, target, payload, headers)
        if request.method not in ("GET", "HEAD") or grant["access"] != "Read":
            raise StorageError(
                403,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
            )
        version = _version(request)
        headers["x-ms-version"] = version
        etag, modified = _etag_and_modified(target)
        if_match = request.headers.get("if-match")
        if if_match is not None and if_match not in ("*", etag):
            raise StorageError(
                412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met."
            )
        headers |= {"ETag": etag, "Last-Modified": modified}
        comp = query.get("comp")
        if comp == "pagelist" and not head:
            body = await run_in_threadpool(_page_list, arm, request, target, version)
            return Response(
                body.encode(),
                media_type="application/xml",
                headers={**headers, "x-ms-blob-content-length": str(target.size)},
            )
        if comp is not None:
            raise StorageError(
                400,
                "InvalidQueryParameterValue",
                "Value for one of the query parameters specified in the request URI is invalid.",
                QueryParameterName="comp",
                QueryParameterValue=comp,
            )
        headers |= {
            "x-ms-blob-type": "PageBlob",
            "x-ms-blob-sequence-number": "0",
            "x-ms-creation-time": formatdate(
                datetime.fromisoformat(str(target.doc["properties"]["timeCreated"])).timestamp(), usegmt=True
            ),
            "x-ms-lease-status": "unlocked",
            "x-ms-lease-state": "available",
            "x-ms-server-encrypted": "true",
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if head:
            return Response(None, headers={**headers, "Content-Length": str(target.size)})
        wanted = _byte_range(request, target.size)
        start, end = wanted if wanted is not None else (0, target.size - 1)
        with_crc64 = (request.headers.get(CRC64_REQUEST_HEADER) or "").lower() == "true"
        if with_crc64 and (wanted is None or end - start + 1 > MAX_CHECKSUM_RANGE):
            raise StorageError(
                400,
                "InvalidHeaderValue",
                "The value for one of the HTTP headers is not in the correct format.",
                HeaderName=CRC64_REQUEST_HEADER,
                HeaderValue="true",
            )
        headers["Content-Length"] = str(end - start + 1)
        if wanted is not None:
            headers["Content-Range"] = f"bytes {start}-{end}/{target.size}"
        if with_crc64:
            data = await run_in_threadpool(lambda: b"".join(_read(target.path, start, end + 1)))
            headers["x-ms-content-crc64"] = base64.b64encode(
                crc64.compute(data, 0).to_bytes(8, "little")
            ).decode()
            return Response(data, status_code=206, headers=headers)
        return StreamingResponse(
            _read(target.path, start, end + 1), status_code=206 if wanted else 200, headers=headers
        )
    except StorageError as exc:
        return exc.response(request_id, head=head, headers=headers)


def _put_page(request: Request, target: Target, body: bytes, headers: dict[str, str]) -> Response:
    """Put Page on a disk being uploaded: `update` writes the body, `clear` zeroes the range."""
    header = request.headers.get("x-ms-range") or request.headers.get("range") or ""
    match = _RANGE_RE.match(header.strip())
    if match is None or match.group(2) is None:
        raise StorageError(
            400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format.",
            HeaderName="x-ms-range", HeaderValue=header,
        )  # fmt: skip
    start, end = int(match.group(1)), int(match.group(2))
    if start % PAGE or (end + 1) % PAGE or end < start or end >= target.size:
        raise StorageError(416, "InvalidPageRange", "The page range specified is invalid.")
    length = end - start + 1
    operation = (request.headers.get("x-ms-page-write") or "").lower()
    if operation == "update":
        if length > disk_upload.MAX_PAGE_WRITE:
            raise StorageError(
                413,
                "RequestBodyTooLarge",
                "The request body is too large and exceeds the maximum permissible limit.",
            )
        if len(body) != length:
            raise StorageError(
                400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format.",
                HeaderName="Content-Length", HeaderValue=str(len(body)),
            )  # fmt: skip
        disk_upload.write_pages(target.path, start, body)
    elif operation == "clear":
        fd = os.open(target.path, os.O_WRONLY)
        try:
            _punch_hole(fd, start, length)
        finally:
            os.close(fd)
    else:
        raise StorageError(
            400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format.",
            HeaderName="x-ms-page-write", HeaderValue=operation,
        )  # fmt: skip
    etag, modified = _etag_and_modified(target)
    return Response(
        None,
        status_code=201,
        headers={
            **headers,
            "ETag": etag,
            "Last-Modified": modified,
            "x-ms-blob-sequence-number": "0",
            "x-ms-request-server-encrypted": "true",
        },
    )


CRC64_REQUEST_HEADER: Final = "x-ms-range-get-content-crc64"
# Azure computes a transactional checksum only for a range of at most 4 MiB.
MAX_CHECKSUM_RANGE: Final = 4 * 1024 * 1024


def _read(path: Path, start: int, end: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(start)
        while start < end:
            data = handle.read(min(READ_CHUNK, end - start))
            if not data:  # an image shorter than the disk reads as zeros, like a hole
                data = bytes(min(READ_CHUNK, end - start))
            start += len(data)
            yield data


def _page_list(arm: LocalArm, request: Request, target: Target, version: str) -> str:
    query = request.query_params
    window = _byte_range(request, target.size)
    start, end = (window[0], window[1] + 1) if window else (0, target.size)
    if start % PAGE or (end % PAGE and end != target.size):
        raise StorageError(416, "InvalidPageRange", "The page range specified is invalid.")
    max_results: int | None = None
    paged = "maxresults" in query or "marker" in query
    if paged and version < MARKER_VERSION:
        raise StorageError(
            400,
            "InvalidQueryParameterValue",
            f"marker and maxresults need x-ms-version {MARKER_VERSION} or later.",
            QueryParameterName="maxresults" if "maxresults" in query else "marker",
        )
    if "maxresults" in query:
        try:
            max_results = int(query["maxresults"])
        except ValueError as exc:
            raise StorageError(
                400,
                "InvalidQueryParameterValue",
                "Value for one of the query parameters specified in the request URI is invalid.",
                QueryParameterName="maxresults",
                QueryParameterValue=query["maxresults"],
            ) from exc
        if max_results <= 0:
            raise StorageError(
                400,
                "OutOfRangeQueryParameterValue",
                "One of the query parameters specified in the request URI is outside the permissible range.",
                QueryParameterName="maxresults",
                QueryParameterValue=query["maxresults"],
            )
        max_results = min(max_results, MAX_RESULTS)
    if query.get("marker"):
        start = max(start, decode_marker(query["marker"]))
    previous_url = request.headers.get("x-ms-previous-snapshot-url")
    spans: Iterator[PageSpan]
    if previous_url is not None:
        if version < PREVIOUS_SNAPSHOT_URL_VERSION:
            raise StorageError(
                400,
                "InvalidHeaderValue",
                f"x-ms-previous-snapshot-url needs x-ms-version {PREVIOUS_SNAPSHOT_URL_VERSION} or later.",
                HeaderName="x-ms-version",
                HeaderValue=version,
            )
        previous = _previous_snapshot(arm, previous_url, target)
        spans = changed_spans(previous.path, target.path, start, end)
    else:
        spans = written_spans(target.path, start, end)
    taken: list[PageSpan] = []
    next_marker: str | None = "" if paged else None
    for span in spans:
        if max_results is not None and len(taken) == max_results:
            next_marker = encode_marker(span.start)
            break
        taken.append(span)
    return page_list_xml(taken, next_marker)


def _previous_snapshot(arm: LocalArm, url: str, target: Target) -> Target:
    """The previous snapshot a diff names: an older incremental snapshot of the target's family."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    try:
        previous, _ = _verify(arm, unquote(parts.path), query)
    except StorageError as exc:
        detail = exc.extra.get("AuthenticationErrorDetail", exc.message)
        raise StorageError(
            409,
            "PreviousSnapshotNotFound",
            "The previous snapshot is not found.",
            Detail=f"x-ms-previous-snapshot-url: {detail}",
        ) from exc
    props, old = target.doc["properties"], previous.doc["properties"]
    family = props.get("incrementalSnapshotFamilyId")
    if (
        target.rid.type != ids.SNAPSHOT
        or previous.rid.type != ids.SNAPSHOT
        or not props.get("incremental")
        or not old.get("incremental")
        or not family
        or family != old.get("incrementalSnapshotFamilyId")
        or target.size != previous.size
    ):
        raise StorageError(
            409,
            "PreviousSnapshotOperationNotSupported",
            "Differential Get Page Ranges is not supported on the previous snapshot.",
            Detail="Both must be incremental snapshots of the same disk (one family) and of the same size.",
        )
    if datetime.fromisoformat(str(old["timeCreated"])) >= datetime.fromisoformat(str(props["timeCreated"])):
        raise StorageError(
            400,
            "PreviousSnapshotCannotBeNewer",
            "The prevsnapshot query parameter value cannot be newer than snapshot query parameter value.",
        )
    return previous


# --- a guest's writes --------------------------------------------------------------------------------


class GuestWrite(BaseModel):
    """Bytes a VM's guest writes into one of its disks: `data` (base64), or `pattern` (hex) repeated
    over `length`; `op: "zero"` trims `length` bytes (a hole in the image, a ClearRange in a diff)."""

    model_config = ConfigDict(extra="forbid")

    diskId: str
    offset: int = Field(ge=0)
    op: Literal["write", "zero"] = "write"
    data: str | None = None
    pattern: str | None = None
    length: int | None = Field(default=None, gt=0)


_FALLOC_FL_KEEP_SIZE: Final = 0x01
_FALLOC_FL_PUNCH_HOLE: Final = 0x02


def _punch_hole(fd: int, offset: int, length: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fallocate = libc.fallocate
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"fallocate(PUNCH_HOLE): {os.strerror(code)}")


def guest_write(arm: LocalArm, write: GuestWrite) -> dict[str, object]:
    """Write into a disk's image as its VM's guest would. Azure VMs write only while running, so the
    disk must be attached to a running VM; offsets and lengths are whole 512-byte sectors."""
    rid = ids.parse_resource_id(write.diskId)
    doc = arm.store.get(rid.key) if rid is not None and rid.type == ids.DISK else None
    if rid is None or doc is None:
        raise ArmError(404, "NotFound", f"Disk {write.diskId} was not found.")
    owner = disk_owner(arm, rid.key)
    if owner is None or owner.get("_powerState", "running") != "running":
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Disk {doc['name']} is not attached to a running VM: only a running VM's guest writes to its disks.",
        )
    if write.op == "zero":
        if write.length is None or write.data is not None or write.pattern is not None:
            raise ArmError(400, "InvalidRequest", "op 'zero' takes a length and no data or pattern.")
        length = write.length
        payload = b""
    else:
        if (write.data is None) == (write.pattern is None):
            raise ArmError(400, "InvalidRequest", "op 'write' takes either data (base64) or pattern (hex).")
        try:
            if write.data is not None:
                payload = base64.b64decode(write.data, validate=True)
            else:
                unit = bytes.fromhex(write.pattern or "")
                if not unit or write.length is None:
                    raise ValueError("a pattern needs at least one byte and a length")
                payload = (unit * (write.length // len(unit) + 1))[: write.length]
        except (ValueError, binascii.Error) as exc:
            raise ArmError(400, "InvalidRequest", f"bad data or pattern: {exc}") from exc
        length = len(payload)
    size = int(doc["properties"]["diskSizeBytes"])
    if write.offset % PAGE or length % PAGE or length == 0 or write.offset + length > size:
        raise ArmError(
            400,
            "InvalidRequest",
            f"A write covers whole 512-byte sectors inside the disk ({size} bytes): offset {write.offset}, "
            f"length {length}.",
        )
    with disk_file(arm, doc).open("r+b") as image:
        if write.op == "zero":
            _punch_hole(image.fileno(), write.offset, length)
        else:
            image.seek(write.offset)
            image.write(payload)
        image.flush()
        os.fsync(image.fileno())
    return {"diskId": doc["id"], "offset": write.offset, "length": length, "op": write.op}
