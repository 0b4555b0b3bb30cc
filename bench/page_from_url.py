"""What the worker carries per GiB applied: Put Page From URL against streaming, same endpoint, same run.

Local-stack figures: Azurite behind the stack's blob front (devhost/blob_front.py), which implements Put
Page From URL as Azure does (it reads the source range itself, checks the CRC64, writes). The delta is the
shape of bench/apply_throughput.py (random data as 256 KiB extents in 4 MiB runs, CRC64 per extent), read
from its uploaded manifest as the replication activity reads it, and applied in one pass (the product's
mode) both ways:

- `put-page-from-url`: the engine signs source URLs and sends one Put Page From URL per 4 MiB run with the
  run's CRC64; the front (the storage service) moves the data.
- `streaming`: the same apply with `use_put_page_from_url=False`: the engine reads each run and writes it
  with Put Page.

Counted in the engine's process, at the SDK's transport (every request on the wire, retries included):
request and response body bytes other than the manifest's download (`bytes_through_worker_per_gib`:
the data the worker carries; the manifest's bytes are reported beside it) and the number of storage
calls (the manifest's reads and the blob checks included); CPU time is the process's own (user +
system, all threads). The front's own counter of bytes it copied is the cross-check that the data did
move. Rounds alternate the order of the two paths; figures are medians.

Also measured: what the front costs ordinary requests (Put Page of 4 MiB, direct to Azurite against
through the front, alternating), since every test and the demo go through it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from azure.core.pipeline.transport import HttpRequest, RequestsTransport
from azure.storage.blob import BlobClient, BlobServiceClient

from devhost.blob_front import start_blob_storage
from devhost.emulators import EmulatorEndpoints, EmulatorPorts
from devhost.processes import free_port
from shared.domain.cycle import CycleKind
from shared.replication.apply_engine import (
    ApplyOptions,
    ApplyResult,
    apply_extents,
    forget_capabilities,
    load_manifest,
)
from shared.replication.checksums import ChecksumAlgorithm, checksum_hex
from shared.replication.delta_manifest import MANIFEST_FILE_NAME, DeltaManifest, Extent, data_blob_name

MIB = 1024 * 1024
GIB = 1024 * MIB
EXTENT = 256 * 1024
RUN = 4 * MIB
GAP = MIB
RUNS = 32  # 128 MiB of data
ROUNDS = 3
OVERHEAD_ROUNDS = 5
MACHINE, DISK, CYCLE = "bench-vm", "disk-0", "cycle-1"


class TransferCounter(RequestsTransport):  # type: ignore[misc]  # untyped without requests stubs
    """The SDK's own transport, counting what this process sends and receives: body bytes (by
    Content-Length; a HEAD answer has none) and requests. Clients derived from a service client
    (containers, blobs) share its transport, so every call of the engine is seen."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.sent = self.received = self.calls = self.manifest = 0

    def send(self, request: HttpRequest, **kwargs: Any) -> Any:
        response = super().send(request, **kwargs)
        sent = int(request.headers.get("Content-Length", "0") or 0)
        received = 0 if request.method == "HEAD" else int(response.headers.get("Content-Length", "0") or 0)
        with self.lock:
            self.sent += sent
            self.received += received
            self.calls += 1
            if urlsplit(request.url).path.endswith("/" + MANIFEST_FILE_NAME):
                self.manifest += received
        return response

    def snapshot(self) -> tuple[int, int, int, int]:
        with self.lock:
            return self.sent, self.received, self.calls, self.manifest


def _build(service: BlobServiceClient) -> tuple[str, int, int]:
    """Upload the delta and its manifest; (manifest blob, data bytes, manifest bytes)."""
    cache = service.get_container_client("cache")
    cache.create_container()
    data = os.urandom(RUNS * RUN)
    blob = data_blob_name(MACHINE, CYCLE, DISK, 0)
    cache.upload_blob(blob, data, max_concurrency=4)
    extents = [
        Extent(
            offset=r * (RUN + GAP) + e * EXTENT,
            length=EXTENT,
            blob=blob,
            blob_offset=r * RUN + e * EXTENT,
            crc64=checksum_hex(
                ChecksumAlgorithm.CRC64, data[r * RUN + e * EXTENT : r * RUN + (e + 1) * EXTENT]
            ),
        )
        for r in range(RUNS)
        for e in range(RUN // EXTENT)
    ]
    manifest = DeltaManifest(
        machine_id=MACHINE,
        disk_id=DISK,
        cycle_id=CYCLE,
        sequence=1,
        kind=CycleKind.DELTA,
        disk_size=RUNS * (RUN + GAP),
        extents=extents,
    )
    document = manifest.to_json_bytes()
    cache.upload_blob(manifest.blob_name, document, overwrite=True)
    return manifest.blob_name, len(data), len(document)


def _apply_once(
    service: BlobServiceClient, counter: TransferCounter, manifest_blob: str, replica: str, *, url: bool
) -> tuple[ApplyResult, dict[str, float]]:
    cache = service.get_container_client("cache")
    target = service.get_container_client("replicas").get_blob_client(replica)
    sent0, received0, calls0, manifest0 = counter.snapshot()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with load_manifest(cache, manifest_blob, machine_id=MACHINE, cycle_id=CYCLE, disk_id=DISK) as manifest:
        result = apply_extents(
            manifest,
            cache=cache,
            replica=target,
            options=ApplyOptions(one_pass=True, use_put_page_from_url=url),
        )
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    sent, received, calls, manifest_read = counter.snapshot()
    moved = (sent - sent0) + (received - received0)
    return result, {
        # Data: everything but the manifest document, which the worker must read to plan.
        "bytes": moved - (manifest_read - manifest0),
        "manifest": manifest_read - manifest0,
        "calls": calls - calls0,
        "cpu": cpu,
        "wall": wall,
    }


def _front_copied(endpoints: EmulatorEndpoints) -> int:
    stats = httpx.get(f"http://127.0.0.1:{endpoints.ports.blob}/.front/stats", timeout=10).json()
    return int(stats["copiedBytes"])


def _put_pages(blob: BlobClient, data: bytes, count: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: blob.upload_page(data, offset=i * len(data), length=len(data)), range(count)))
    return time.perf_counter() - started


def _front_overhead(endpoints: EmulatorEndpoints, azurite_port: int) -> dict[str, Any]:
    """Put Page MiB/s straight to Azurite and through the front, alternating; the front's cost is the ratio."""
    direct = EmulatorEndpoints(replace(endpoints.ports, blob=azurite_port))
    clients = {
        name: BlobServiceClient.from_connection_string(e.storage_connection_string)
        .get_container_client("replicas")
        .get_blob_client(f"overhead-{name}.vhd")
        for name, e in (("direct", direct), ("front", endpoints))
    }
    data, count = os.urandom(RUN), 16
    for blob in clients.values():
        blob.create_page_blob(count * RUN)
    times: dict[str, list[float]] = {"direct": [], "front": []}
    for round_number in range(OVERHEAD_ROUNDS):
        order = ("direct", "front") if round_number % 2 == 0 else ("front", "direct")
        for name in order:
            times[name].append(_put_pages(clients[name], data, count))
    ratios = [d / f for d, f in zip(times["direct"], times["front"], strict=True)]
    mib = count * RUN / MIB
    return {
        "blob_front_put_page_ratio": round(statistics.median(ratios), 3),
        "blob_front_put_page_mib_s": {
            "direct": round(mib / statistics.median(times["direct"]), 1),
            "through_front": round(mib / statistics.median(times["front"]), 1),
        },
    }


def run() -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-pageurl-"))
    ports = EmulatorPorts(blob=free_port(), queue=free_port(), table=free_port(), cosmos=free_port())
    storage = start_blob_storage(root / "data", ports, root / "logs")
    forget_capabilities()
    try:
        endpoints = EmulatorEndpoints(ports)
        counter = TransferCounter()
        service = BlobServiceClient.from_connection_string(
            endpoints.storage_connection_string, transport=counter
        )
        manifest_blob, data_bytes, manifest_bytes = _build(service)
        replicas = service.get_container_client("replicas")
        replicas.create_container()
        for name in ("url.vhd", "streaming.vhd"):
            replicas.get_blob_client(name).create_page_blob(RUNS * (RUN + GAP) + 512)
        figures: dict[str, list[dict[str, float]]] = {"put-page-from-url": [], "streaming": []}
        results: dict[str, ApplyResult] = {}
        copied = 0
        for round_number in range(ROUNDS):
            order = (True, False) if round_number % 2 == 0 else (False, True)
            for url in order:
                path = "put-page-from-url" if url else "streaming"
                before = _front_copied(endpoints)
                result, measured = _apply_once(
                    service, counter, manifest_blob, "url.vhd" if url else "streaming.vhd", url=url
                )
                if url:
                    copied = _front_copied(endpoints) - before
                figures[path].append(measured)
                results[path] = result
        url_result = results["put-page-from-url"]
        assert url_result.write_path.value == "put-page-from-url" and url_result.bytes_read == 0
        assert copied == data_bytes  # the storage side moved every byte
        # Both replicas hold the delta: same bytes whichever way it went.
        for offset in (0, (RUNS // 2) * (RUN + GAP)):
            a = replicas.get_blob_client("url.vhd").download_blob(offset=offset, length=RUN).readall()
            b = replicas.get_blob_client("streaming.vhd").download_blob(offset=offset, length=RUN).readall()
            assert a == b and any(a)
        overhead = _front_overhead(endpoints, storage.azurite_port)
    finally:
        storage.stop()
        forget_capabilities()
        shutil.rmtree(root, ignore_errors=True)

    per_gib = GIB / data_bytes

    def median(path: str, key: str) -> float:
        return statistics.median(m[key] for m in figures[path])

    def by_path(key: str, digits: int) -> dict[str, float]:
        return {path: round(median(path, key) * per_gib, digits) for path in figures}

    return {
        # The headline figures are the Put Page From URL path's (what production runs); both paths are kept.
        "bytes_through_worker_per_gib": round(median("put-page-from-url", "bytes") * per_gib),
        "storage_calls_per_gib": round(median("put-page-from-url", "calls") * per_gib, 1),
        "cpu_seconds_per_gib": round(median("put-page-from-url", "cpu") * per_gib, 2),
        "page_from_url_by_path": {
            "bytes_through_worker_per_gib": by_path("bytes", 0),
            "storage_calls_per_gib": by_path("calls", 1),
            "cpu_seconds_per_gib": by_path("cpu", 2),
            "wall_seconds_per_gib": by_path("wall", 1),
        },
        "page_from_url_manifest_bytes": manifest_bytes,
        "page_from_url_manifest_bytes_read_per_apply": round(median("put-page-from-url", "manifest")),
        "page_from_url_data_bytes": data_bytes,
        "page_from_url_calls": {
            "put_page_from_url": url_result.put_page_from_url_calls,
            "streaming_put_page": results["streaming"].put_page_calls,
            "streaming_reads": results["streaming"].read_calls,
        },
        "page_from_url_rounds": ROUNDS,
        "page_from_url_environment": "local stack: Azurite behind devhost/blob_front.py",
        **overhead,
    }
