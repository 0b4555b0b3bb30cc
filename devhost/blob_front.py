"""A front for Azurite's blob endpoint that adds Put Page From URL, which Azurite (3.37) answers with 501.

Production applies replication data with Put Page From URL (`PUT ?comp=page` + `x-ms-copy-source`):
the storage service reads the cache blob itself and checks `x-ms-source-content-crc64`, so no data
passes through the Functions worker. For the local stack to run the path production runs, this front
listens on the stack's blob port and sits in front of Azurite:

- every request but Put Page From URL is forwarded unchanged (method, raw path and query, headers,
  body streamed both ways), so SharedKey and SAS signatures, which are computed over the request,
  still verify at Azurite;
- Put Page From URL is implemented per the REST reference: the headers are validated (destination and
  source ranges 512-aligned, of equal length, at most 4 MiB; `x-ms-page-write: update`; an empty body),
  the destination request is authorized by Azurite (a SharedKey request is first sent to Azurite as it
  came: Azurite checks its signature, then answers 501 for the operation; a SAS or bearer request is
  checked by Azurite on the write itself), the source range is read with the source URL's own SAS or
  `x-ms-copy-source-authorization` (refused as Azure does: `CannotVerifyCopySource` with the source's
  status, `SourceConditionNotMet` when an `x-ms-source-if-*` condition fails), its CRC64 / MD5 checked
  against `x-ms-source-content-crc64` / `-md5` (400 `Crc64Mismatch` / `Md5Mismatch`, nothing written),
  and the bytes written with a Put Page carrying the request's destination conditions and authorization
  (a SharedKey request's Put Page is signed again with the account key, which the front knows as
  Azurite does: the emulator's documented development account).

Run: `python -m devhost.blob_front --port PORT --upstream http://127.0.0.1:AZURITE_PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import logging
import os
import re
import signal
import sys
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from xml.sax.saxutils import escape

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from azure.storage.extensions.checksums import crc64 as _crc64
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from devhost.emulators import AZURITE_ACCOUNT, AZURITE_KEY, REPO_ROOT, EmulatorPorts, start_azurite
from devhost.processes import ManagedProcess, free_port
from devhost.redaction import configure_logging

log = logging.getLogger("devhost.blob_front")

PAGE: Final = 512
MAX_RANGE: Final = 4 * 1024 * 1024
# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection and are never forwarded.
_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
# Destination conditions a Put Page From URL carries over to the Put Page that writes the bytes.
_DESTINATION_HEADERS: Final = (
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "x-ms-if-sequence-number-le",
    "x-ms-if-sequence-number-lt",
    "x-ms-if-sequence-number-eq",
    "x-ms-if-tags",
    "x-ms-lease-id",
    "x-ms-client-request-id",
    "x-ms-version",
)
# Source conditions, as the source GET sends them.
_SOURCE_CONDITIONS: Final = {
    "x-ms-source-if-match": "If-Match",
    "x-ms-source-if-none-match": "If-None-Match",
    "x-ms-source-if-modified-since": "If-Modified-Since",
    "x-ms-source-if-unmodified-since": "If-Unmodified-Since",
}
_RANGE: Final = re.compile(r"^bytes=(\d+)-(\d+)$")


# --- validation (pure: unit-tested on its own) ---------------------------------------------------


@dataclass(frozen=True)
class FrontError(Exception):
    """An answer in Azure's error shape: status, `x-ms-error-code`, message, optional details."""

    status: int
    code: str
    message: str
    header_name: str | None = None


@dataclass(frozen=True)
class PutPageFromUrl:
    """A validated Put Page From URL request."""

    source_url: str
    offset: int
    source_offset: int
    length: int
    source_crc64: int | None
    source_md5: bytes | None
    source_authorization: str | None
    source_conditions: tuple[tuple[str, str], ...]


def is_put_page_from_url(method: str, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    return method == "PUT" and query.get("comp") == "page" and "x-ms-copy-source" in headers


def _header_value_error(name: str, value: str | None, why: str) -> FrontError:
    return FrontError(
        400,
        "InvalidHeaderValue",
        f"The value for one of the HTTP headers is not in the correct format. {name}: {value!r}: {why}",
        header_name=name,
    )


def _parse_range(name: str, value: str | None) -> tuple[int, int]:
    if value is None:
        raise FrontError(
            400,
            "MissingRequiredHeader",
            f"An HTTP header that's mandatory for this request is not specified: {name}",
            name,
        )
    match = _RANGE.match(value.strip())
    if match is None:
        raise _header_value_error(name, value, "expected bytes=start-end")
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise _header_value_error(name, value, "the range ends before it starts")
    if start % PAGE or (end + 1) % PAGE:
        raise _header_value_error(
            name,
            value,
            "pages are 512-byte aligned: the start must be a multiple of 512 and the end one less",
        )
    return start, end - start + 1


def _parse_digest(name: str, value: str | None, size: int) -> bytes | None:
    if value is None:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise _header_value_error(name, value, f"expected {size} bytes, base64-encoded")
    return raw


def parse_put_page_from_url(headers: Mapping[str, str]) -> PutPageFromUrl:
    """Validate the headers of a Put Page From URL (lower-case names); raises FrontError as Azure answers."""
    length_header = headers.get("content-length", "0").strip()
    if length_header not in ("", "0"):
        raise _header_value_error(
            "Content-Length", length_header, "Put Page From URL has no request body: it must be 0"
        )
    write = headers.get("x-ms-page-write")
    if write is None:
        raise FrontError(
            400,
            "MissingRequiredHeader",
            "An HTTP header that's mandatory for this request is not specified: x-ms-page-write",
            "x-ms-page-write",
        )
    if write.strip().lower() != "update":
        raise _header_value_error("x-ms-page-write", write, "only update is allowed with x-ms-copy-source")
    range_name = "x-ms-range" if "x-ms-range" in headers else "Range"
    offset, length = _parse_range(range_name, headers.get(range_name.lower()))
    source_offset, source_length = _parse_range("x-ms-source-range", headers.get("x-ms-source-range"))
    if source_length != length:
        raise _header_value_error(
            "x-ms-source-range",
            headers.get("x-ms-source-range"),
            f"the source range has {source_length} bytes, the destination range {length}: they must be equal",
        )
    if length > MAX_RANGE:
        raise _header_value_error(
            range_name, headers.get(range_name.lower()), "a page write is at most 4 MiB"
        )
    source = headers["x-ms-copy-source"].strip()
    parts = urlsplit(source)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _header_value_error(
            "x-ms-copy-source", source, "expected an absolute http(s) URL of the source blob"
        )
    crc = _parse_digest("x-ms-source-content-crc64", headers.get("x-ms-source-content-crc64"), 8)
    md5 = _parse_digest("x-ms-source-content-md5", headers.get("x-ms-source-content-md5"), 16)
    authorization = headers.get("x-ms-copy-source-authorization")
    if authorization is not None and not authorization.lower().startswith("bearer "):
        raise _header_value_error(
            "x-ms-copy-source-authorization", authorization, "only the Bearer scheme is supported"
        )
    conditions = tuple(
        (header, headers[name]) for name, header in _SOURCE_CONDITIONS.items() if name in headers
    )
    return PutPageFromUrl(
        source_url=source,
        offset=offset,
        source_offset=source_offset,
        length=length,
        source_crc64=None if crc is None else int.from_bytes(crc, "little"),
        source_md5=md5,
        source_authorization=authorization,
        source_conditions=conditions,
    )


def check_source_content(request: PutPageFromUrl, data: bytes) -> None:
    """The source bytes against the request's digests; raises FrontError (nothing is written then)."""
    if len(data) != request.length:
        raise FrontError(
            416,
            "CannotVerifyCopySource",
            f"The source range is beyond the end of the source blob: {request.length} bytes asked, {len(data)} read.",
        )
    if request.source_crc64 is not None:
        actual = _crc64.compute(data, 0)
        if actual != request.source_crc64:
            raise FrontError(
                400,
                "Crc64Mismatch",
                "The CRC64 value specified in the request did not match with the CRC64 value calculated by the "
                f"server: given {request.source_crc64:016x}, calculated {actual:016x}.",
            )
    if (
        request.source_md5 is not None
        and hashlib.md5(data, usedforsecurity=False).digest() != request.source_md5
    ):
        raise FrontError(
            400,
            "Md5Mismatch",
            "The MD5 value specified in the request did not match with the MD5 value calculated by the server.",
        )


# --- Shared Key (the front's own Put Page of a SharedKey request) --------------------------------


def shared_key_signature(
    key: str,
    account: str,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
) -> str:
    """The `SharedKey account:signature` value for a request (Blob service, version 2009-09-19 and later)."""
    h = {k.lower(): v for k, v in headers.items()}
    length = h.get("content-length", "")
    standard = [
        h.get("content-encoding", ""),
        h.get("content-language", ""),
        "" if length == "0" else length,
        h.get("content-md5", ""),
        h.get("content-type", ""),
        h.get("date", ""),
        h.get("if-modified-since", ""),
        h.get("if-match", ""),
        h.get("if-none-match", ""),
        h.get("if-unmodified-since", ""),
        h.get("range", ""),
    ]
    canonical_headers = "".join(f"{k}:{v.strip()}\n" for k, v in sorted(h.items()) if k.startswith("x-ms-"))
    grouped: dict[str, list[str]] = {}
    for name, value in query:
        grouped.setdefault(name.lower(), []).append(value)
    canonical_query = "".join(
        f"\n{name}:{','.join(sorted(values))}" for name, values in sorted(grouped.items())
    )
    to_sign = (
        "\n".join([method, *standard]) + "\n" + canonical_headers + f"/{account}{path}" + canonical_query
    )
    digest = hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
    return f"SharedKey {account}:{base64.b64encode(digest).decode()}"


# --- the server -----------------------------------------------------------------------------------


def _error_response(error: FrontError, request_id: str) -> web.Response:
    details = f"<HeaderName>{escape(error.header_name)}</HeaderName>" if error.header_name else ""
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{error.code}</Code><Message>{escape(error.message)}\nRequestId:{request_id}\n"
        f"Time:{formatdate(usegmt=True)}</Message>{details}</Error>"
    )
    return web.Response(
        status=error.status,
        body=body.encode(),
        headers={
            "Content-Type": "application/xml",
            "x-ms-error-code": error.code,
            "x-ms-request-id": request_id,
        },
    )


class BlobFront:
    def __init__(self, upstream: str, accounts: Mapping[str, str]) -> None:
        self.upstream = upstream.rstrip("/")
        self.accounts = dict(accounts)
        self.own_netlocs: set[str] = set()
        self.session: ClientSession | None = None
        # Bytes the front moved itself for Put Page From URL (what in Azure the service moves): the
        # benchmark reads them to tell server-side copies from data through the worker.
        self.copied_bytes = 0
        self.copy_calls = 0

    async def start(self, app: web.Application) -> None:
        # No pool limit: the front must never be the bottleneck of parallel writers.
        self.session = ClientSession(
            connector=TCPConnector(limit=0, force_close=False),
            auto_decompress=False,
            timeout=ClientTimeout(total=None, sock_connect=30),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    async def stop(self, app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    def application(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.stop)
        app.router.add_route("GET", "/.front/stats", self.stats)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"copiedBytes": self.copied_bytes, "copyCalls": self.copy_calls})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.own_netlocs.add(request.host)
        query = dict(parse_qsl(request.query_string, keep_blank_values=True))
        if is_put_page_from_url(request.method, query, {k.lower(): v for k, v in request.headers.items()}):
            return await self.put_page_from_url(request)
        return await self.forward(request)

    def _upstream_url(self, raw_path: str) -> URL:
        # encoded=True: the path and query go to Azurite byte for byte (a signature covers them).
        return URL(self.upstream + raw_path, encoded=True)

    def _forward_headers(self, headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
        return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _HOP_BY_HOP)

    async def forward(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        has_body = request.can_read_body
        async with self.session.request(
            request.method,
            self._upstream_url(request.raw_path),
            headers=self._forward_headers(request.headers),
            data=request.content if has_body else None,
            allow_redirects=False,
            compress=None,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            await response.write_eof()
            return response

    async def put_page_from_url(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        request_id = str(uuid.uuid4())
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            copy = parse_put_page_from_url(headers)
        except FrontError as error:
            return _error_response(error, request_id)
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("SharedKey "):
            # Azurite checks the signature of the request as it came, then refuses the operation (501):
            # anything else (403 for a bad signature) is its answer to the caller.
            async with self.session.request(
                "PUT", self._upstream_url(request.raw_path), headers=self._forward_headers(request.headers)
            ) as checked:
                if checked.status != 501:
                    body = await checked.read()
                    passthrough = web.Response(status=checked.status, reason=checked.reason, body=body)
                    for name, value in checked.headers.items():
                        if name.lower() not in _HOP_BY_HOP | {"content-length"}:
                            passthrough.headers.add(name, value)
                    return passthrough
        try:
            data = await self._read_source(copy, request.headers.get("x-ms-version"))
            check_source_content(copy, data)
        except FrontError as error:
            return _error_response(error, request_id)
        return await self._write(request, copy, data, authorization)

    def _source_target(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.netloc in self.own_netlocs:
            upstream = urlsplit(self.upstream)
            return urlunsplit((upstream.scheme, upstream.netloc, parts.path, parts.query, ""))
        return url

    async def _read_source(self, copy: PutPageFromUrl, version: str | None) -> bytes:
        assert self.session is not None
        end = copy.source_offset + copy.length - 1
        headers = {"x-ms-range": f"bytes={copy.source_offset}-{end}", "x-ms-date": formatdate(usegmt=True)}
        if version:
            headers["x-ms-version"] = version
        if copy.source_authorization:
            headers["Authorization"] = copy.source_authorization
        headers.update(dict(copy.source_conditions))
        async with self.session.get(
            URL(self._source_target(copy.source_url), encoded=True), headers=headers, allow_redirects=False
        ) as source:
            if source.status in (304, 412):
                raise FrontError(
                    412,
                    "SourceConditionNotMet",
                    "The source condition specified using HTTP conditional header(s) is not met.",
                )
            if source.status not in (200, 206):
                code = source.headers.get("x-ms-error-code", "")
                raise FrontError(
                    source.status,
                    "CannotVerifyCopySource",
                    f"Could not verify the copy source: it answered {source.status} {code}".rstrip(),
                )
            data = await source.read()
        return data

    async def _write(
        self, request: web.Request, copy: PutPageFromUrl, data: bytes, authorization: str
    ) -> web.StreamResponse:
        assert self.session is not None
        headers: dict[str, str] = {
            name: request.headers[name] for name in _DESTINATION_HEADERS if name in request.headers
        }
        headers.update(
            {
                "x-ms-date": formatdate(usegmt=True),
                "x-ms-range": f"bytes={copy.offset}-{copy.offset + copy.length - 1}",
                "x-ms-page-write": "update",
                "Content-Length": str(copy.length),
            }
        )
        path = request.raw_path.split("?", 1)[0]
        query = parse_qsl(request.query_string, keep_blank_values=True)
        if authorization.startswith("SharedKey "):
            account = authorization.removeprefix("SharedKey ").split(":", 1)[0]
            key = self.accounts.get(account)
            if key is None:  # Azurite accepted the signature, so it knows the account; the front must too
                return _error_response(
                    FrontError(
                        403, "AuthenticationFailed", f"the blob front has no key for account {account}"
                    ),
                    str(uuid.uuid4()),
                )
            headers["Authorization"] = shared_key_signature(key, account, "PUT", path, query, headers)
        elif authorization:
            headers["Authorization"] = authorization
        async with self.session.put(
            self._upstream_url(request.raw_path), headers=headers, data=data
        ) as written:
            body = await written.read()
            response = web.Response(status=written.status, reason=written.reason, body=body)
            for name, value in written.headers.items():
                if name.lower() not in _HOP_BY_HOP | {"content-length", "content-md5"}:
                    response.headers.add(name, value)
        if written.status == 201:
            self.copied_bytes += copy.length
            self.copy_calls += 1
            response.headers["x-ms-content-crc64"] = base64.b64encode(
                _crc64.compute(data, 0).to_bytes(8, "little")
            ).decode()
        return response


def start_blob_front(port: int, upstream_port: int, log_dir: Path) -> ManagedProcess:
    """The front as a child process on `port`, forwarding to Azurite's blob endpoint on `upstream_port`."""
    proc = ManagedProcess(
        name="blob-front",
        argv=[
            sys.executable,
            "-m",
            "devhost.blob_front",
            "--port",
            str(port),
            "--upstream",
            f"http://127.0.0.1:{upstream_port}",
        ],
        log_path=log_dir / "blob-front.log",
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
    ).start()
    proc.wait_ready(lambda: _answers(f"http://127.0.0.1:{port}/.front/stats"))
    return proc


@dataclass
class BlobStorage:
    """Azurite behind the front: `processes` in start order (stop them in reverse); `azurite_port` is
    Azurite's own blob port, for the few tests that must reach it without the front."""

    processes: list[ManagedProcess]
    azurite_port: int

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def start_blob_storage(
    data_dir: Path, ports: EmulatorPorts, log_dir: Path, *, fresh: bool = True
) -> BlobStorage:
    """Azurite with this front on the blob port (`ports.blob`); Azurite's own blob port is private."""
    inner = free_port()
    azurite = start_azurite(data_dir, ports, log_dir, fresh=fresh, blob_port=inner)
    try:
        return BlobStorage([azurite, start_blob_front(ports.blob, inner, log_dir)], inner)
    except BaseException:
        azurite.stop()
        raise


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as answer:
        return bool(answer.status == 200)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--upstream", required=True, help="Azurite's blob endpoint, e.g. http://127.0.0.1:10100"
    )
    args = parser.parse_args(argv)
    # aiohttp logs a failed request with its URL, whose SAS (the source's, the destination's) is redacted.
    configure_logging(logging.INFO, "%(asctime)s %(levelname)s %(name)s %(message)s")
    front = BlobFront(args.upstream, {AZURITE_ACCOUNT: AZURITE_KEY})

    async def serve() -> None:
        runner = web.AppRunner(front.application(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port, backlog=1024)
        await site.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        log.info("blob front on %s:%d -> %s", args.host, args.port, args.upstream)
        await stopping.wait()
        await runner.cleanup()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
