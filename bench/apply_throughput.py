"""apply_throughput_ratio: the apply engine against raw Put Page of the same bytes, same Azurite, same run.

The delta is 256 MiB of random (incompressible, non-zero) data as 256 KiB extents in runs of 4 MiB
separated by 1 MiB gaps, in one data blob: the shape the appliance uploads for busy CBT blocks. The
baseline writes exactly the bytes the engine writes (each 4 MiB run with one Put Page, from memory,
with the engine's parallelism), so the ratio prices what the engine adds: reading the cache and
verifying every CRC64 while writing (the product's one-pass delta path, `ApplyOptions(one_pass=True)`),
planning. Engine and baseline run back to back for ROUNDS rounds, in alternating order (raw first in
even rounds, the engine first in odd ones), and the ratio is the median of the per-round ratios, so
load from other processes on the machine hits both sides of each pair alike.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.storage.blob import BlobClient, ContainerClient

from bench._stack import azurite, blob_service
from shared.domain.cycle import CycleKind
from shared.replication.apply_engine import ApplyOptions, apply_extents
from shared.replication.checksums import ChecksumAlgorithm, checksum_hex
from shared.replication.delta_manifest import DeltaManifest, Extent, data_blob_name
from shared.replication.replica_disks import ReplicaDiskSpec, create_replica_disk

MIB = 1024 * 1024
EXTENT = 256 * 1024
RUN = 4 * MIB
GAP = MIB
RUNS = 64  # 256 MiB of data
ROUNDS = 7
MACHINE, DISK, CYCLE = "bench-vm", "disk-0", "cycle-1"


def _build(cache: ContainerClient) -> tuple[DeltaManifest, list[tuple[int, bytes]]]:
    data = os.urandom(RUNS * RUN)
    blob = data_blob_name(MACHINE, CYCLE, DISK, 0)
    cache.upload_blob(blob, data, max_concurrency=4)
    extents = []
    runs = []
    for r in range(RUNS):
        disk_offset = r * (RUN + GAP)
        runs.append((disk_offset, data[r * RUN : (r + 1) * RUN]))
        for e in range(RUN // EXTENT):
            blob_offset = r * RUN + e * EXTENT
            extents.append(
                Extent(
                    offset=disk_offset + e * EXTENT,
                    length=EXTENT,
                    blob=blob,
                    blob_offset=blob_offset,
                    crc64=checksum_hex(ChecksumAlgorithm.CRC64, data[blob_offset : blob_offset + EXTENT]),
                )
            )
    disk_size = RUNS * (RUN + GAP)
    manifest = DeltaManifest(
        machine_id=MACHINE,
        disk_id=DISK,
        cycle_id=CYCLE,
        sequence=1,
        kind=CycleKind.DELTA,
        disk_size=disk_size,
        extents=extents,
    )
    return manifest, runs


def _raw_put_page(blob: BlobClient, runs: list[tuple[int, bytes]], parallelism: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        list(pool.map(lambda run: blob.upload_page(run[1], offset=run[0], length=len(run[1])), runs))
    return time.perf_counter() - started


def run() -> dict[str, Any]:
    options = ApplyOptions(one_pass=True)
    with azurite() as endpoints:
        service = blob_service(endpoints)
        cache = service.get_container_client("cache")
        replicas = service.get_container_client("replicas")
        cache.create_container()
        manifest, runs = _build(cache)
        spec = ReplicaDiskSpec(machine_id=MACHINE, disk_id=DISK, disk_size=manifest.disk_size)
        create_replica_disk(replicas, spec)
        replica = replicas.get_blob_client(spec.blob_name)
        raw_target = replicas.get_blob_client("raw-baseline.vhd")
        raw_target.create_page_blob(spec.blob_size)

        raw_times, engine_times, verify_times = [], [], []
        result = None
        for round_number in range(ROUNDS):
            if round_number % 2 == 0:
                raw_times.append(_raw_put_page(raw_target, runs, options.parallelism))
            started = time.perf_counter()
            result = apply_extents(manifest, cache=cache, replica=replica, options=options)
            engine_times.append(time.perf_counter() - started)
            if round_number % 2 == 1:
                raw_times.append(_raw_put_page(raw_target, runs, options.parallelism))
            verify_times.append(result.verify_seconds)
        assert result is not None
        # The replica must equal what the baseline wrote: same bytes, or the comparison means nothing.
        for offset, data in runs[:: RUNS // 8]:
            assert replica.download_blob(offset=offset, length=len(data)).readall() == data
    total = manifest.total_bytes
    raw = total / statistics.median(raw_times)
    applied = total / statistics.median(engine_times)
    ratio = statistics.median(r / e for r, e in zip(raw_times, engine_times, strict=True))
    return {
        "apply_throughput_ratio": round(ratio, 3),
        "apply_throughput_ratio_rounds": [
            round(r / e, 3) for r, e in zip(raw_times, engine_times, strict=True)
        ],
        "apply_throughput_mib_s": round(applied / MIB, 1),
        "raw_put_page_mib_s": round(raw / MIB, 1),
        "apply_throughput_bytes": total,
        "apply_throughput_put_page_calls": result.put_page_calls,
        "apply_throughput_extents": result.extents,
        "apply_throughput_data_source": result.data_source,
        # one pass: reading, verifying and writing the data all happen in the first phase
        "apply_throughput_read_verify_write_s": round(statistics.median(verify_times), 2),
        "apply_throughput_bytes_read": result.bytes_read,
        "apply_throughput_parallelism": options.parallelism,
    }
