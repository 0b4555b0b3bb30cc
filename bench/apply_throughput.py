"""apply_throughput_ratio: the apply engine against raw Put Page of the same bytes, same replica endpoint, same run.

The delta is 256 MiB of random (incompressible, non-zero) data as 256 KiB extents in runs of 4 MiB
separated by 1 MiB gaps, in one data blob: the shape the appliance uploads for busy CBT blocks. The
baseline writes exactly the bytes the engine writes (each 4 MiB run with one Put Page, from memory,
with the engine's parallelism), so the ratio prices what the engine adds: reading the cache and
verifying every CRC64 while writing (the product's one-pass delta path, `ApplyOptions(one_pass=True)`),
planning. Each layout starts with one unmeasured pair (first connections, first pass through the
code), then engine and baseline run back to back for ROUNDS rounds, in alternating order (raw first in
even rounds, the engine first in odd ones), and the ratio is the median of the per-round ratios, so
load from other processes on the machine hits both sides of each pair alike.

The Azurites are started as the local stack starts them (`devhost.emulators.start_azurite`), with a
fixed V8 heap growth factor. Without it the ratio measured V8's heap sizing more than the engine: an
Azurite that idles for a few seconds (in `separate`, the cache account while two raw sides run) gets
almost no heap headroom, and then serves every 8 MiB read with mark-compacts, 3.6-5 CPU s per GiB read
instead of 0.6-0.9 (docs/scale.md).

Two layouts, each its own set of pairs:
- `shared`: both accounts in one Azurite, as the local stack runs them (and as this figure was always
  measured): Azurite serves the engine's reads from the same single JavaScript thread that serves its
  writes (each Put Page costs it ~11 ms of that thread per MiB, mostly its own CRC64), and that thread
  is ~93% busy on both sides, so the ratio stays near writes / (writes + reads) of that thread's time
  whatever the engine does. This is `apply_throughput_ratio`.
- `separate`: the cache account in an Azurite of its own, as in Azure (CACHE_STORAGE_* and
  REPLICA_STORAGE_* are two accounts), so the endpoint written to serves only writes on both sides; on a
  2-core machine the second Azurite still competes for the same CPU.
  `apply_throughput_ratio_separate_cache_account`.

Beside the ratios, CPU seconds per GiB of each side (this process, and each Azurite from /proc, whole
and its JavaScript thread alone) and how busy each Azurite's JavaScript thread was over the measured
pairs: figures the machine's other load moves much less than wall time, which say where the engine's
cost goes and what sets the pace.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

from azure.storage.blob import BlobClient, ContainerClient

from bench._stack import azurite_process, blob_service, main_thread_cpu_seconds, process_cpu_seconds
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
ROUNDS = 11
GIB = 1024 * MIB
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


def _pairs(cache: ContainerClient, replicas: ContainerClient, pids: dict[str, int]) -> dict[str, Any]:
    """ROUNDS pairs (engine, raw Put Page) in alternating order on one layout; medians and CPU per GiB."""
    options = ApplyOptions(one_pass=True)
    manifest, runs = _build(cache)
    spec = ReplicaDiskSpec(machine_id=MACHINE, disk_id=DISK, disk_size=manifest.disk_size)
    create_replica_disk(replicas, spec)
    replica = replicas.get_blob_client(spec.blob_name)
    raw_target = replicas.get_blob_client("raw-baseline.vhd")
    raw_target.create_page_blob(spec.blob_size)

    times: dict[str, list[float]] = {"engine": [], "raw": []}
    threads = [f"{who}_main_thread" for who in pids]
    cpu: dict[str, dict[str, float]] = {
        side: dict.fromkeys(["worker", *pids, *threads], 0.0) for side in times
    }
    result = None

    def counters() -> dict[str, float]:
        spent = {who: process_cpu_seconds(pid) for who, pid in pids.items()}
        spent.update({f"{who}_main_thread": main_thread_cpu_seconds(pid) for who, pid in pids.items()})
        return spent

    def side(name: str) -> None:
        nonlocal result
        before = counters()
        worker, started = time.process_time(), time.perf_counter()
        if name == "raw":
            _raw_put_page(raw_target, runs, options.parallelism)
        else:
            result = apply_extents(manifest, cache=cache, replica=replica, options=options)
        times[name].append(time.perf_counter() - started)
        cpu[name]["worker"] += time.process_time() - worker
        for who, seconds in counters().items():
            cpu[name][who] += seconds - before[who]

    # One unmeasured pair first: neither side's figures include its first connections or Azurite's and the
    # SDK's first pass through their code.
    _raw_put_page(raw_target, runs, options.parallelism)
    apply_extents(manifest, cache=cache, replica=replica, options=options)
    for round_number in range(ROUNDS):
        for name in ("raw", "engine") if round_number % 2 == 0 else ("engine", "raw"):
            side(name)
    assert result is not None
    # The replica must equal what the baseline wrote: same bytes, or the comparison means nothing.
    for offset, data in runs[:: RUNS // 8]:
        assert replica.download_blob(offset=offset, length=len(data)).readall() == data
    total = manifest.total_bytes
    ratios = [r / e for r, e in zip(times["raw"], times["engine"], strict=True)]
    per_gib = GIB / (total * ROUNDS)
    # How busy each Azurite's JavaScript thread was over the measured sides: near 1, it sets the pace.
    measured = sum(times["raw"]) + sum(times["engine"])
    busy = {
        who: round((cpu["raw"][f"{who}_main_thread"] + cpu["engine"][f"{who}_main_thread"]) / measured, 2)
        for who in pids
    }
    return {
        "ratio": round(statistics.median(ratios), 3),
        "main_thread_busy": busy,
        "rounds": [round(r, 3) for r in ratios],
        "engine_mib_s": round(total / statistics.median(times["engine"]) / MIB, 1),
        "raw_mib_s": round(total / statistics.median(times["raw"]) / MIB, 1),
        "cpu_s_per_gib": {
            side: {who: round(seconds * per_gib, 2) for who, seconds in spent.items()}
            for side, spent in cpu.items()
        },
        "result": result,
        "total": total,
        "parallelism": options.parallelism,
    }


def run() -> dict[str, Any]:
    with ExitStack() as stack:
        replica_endpoints, replica_pid = stack.enter_context(azurite_process())
        cache_endpoints, cache_pid = stack.enter_context(azurite_process())
        replica_service = blob_service(replica_endpoints)
        layouts: dict[str, tuple[ContainerClient, dict[str, int]]] = {
            "separate": (
                blob_service(cache_endpoints).get_container_client("cache"),
                {"replica_azurite": replica_pid, "cache_azurite": cache_pid},
            ),
            "shared": (
                blob_service(replica_endpoints).get_container_client("cache"),
                {"azurite": replica_pid},
            ),
        }
        figures = {}
        for label, (cache, pids) in layouts.items():
            cache.create_container()
            # a replica container per layout: each starts from an empty replica, as a cycle's target would
            figures[label] = _pairs(cache, replica_service.get_container_client(f"replicas-{label}"), pids)
    main, separate = figures["shared"], figures["separate"]
    result = main["result"]
    return {
        "apply_throughput_ratio": main["ratio"],
        "apply_throughput_ratio_rounds": main["rounds"],
        "apply_throughput_layout": "shared: the cache and replica accounts in one Azurite, as the local stack runs them",
        "apply_throughput_mib_s": main["engine_mib_s"],
        "raw_put_page_mib_s": main["raw_mib_s"],
        "apply_throughput_cpu_s_per_gib": main["cpu_s_per_gib"],
        "apply_throughput_azurite_main_thread_busy": main["main_thread_busy"],
        "apply_throughput_ratio_separate_cache_account": separate["ratio"],
        "apply_throughput_ratio_separate_cache_account_rounds": separate["rounds"],
        "apply_throughput_separate_cache_account_mib_s": separate["engine_mib_s"],
        "raw_put_page_separate_cache_account_mib_s": separate["raw_mib_s"],
        "apply_throughput_separate_cache_account_cpu_s_per_gib": separate["cpu_s_per_gib"],
        "apply_throughput_separate_cache_account_azurite_main_thread_busy": separate["main_thread_busy"],
        "apply_throughput_bytes": main["total"],
        "apply_throughput_put_page_calls": result.put_page_calls,
        "apply_throughput_extents": result.extents,
        "apply_throughput_data_source": result.data_source,
        # one pass: reading, verifying and writing the data all happen in the first phase
        "apply_throughput_read_verify_write_s": round(result.verify_seconds, 2),
        "apply_throughput_bytes_read": result.bytes_read,
        "apply_throughput_parallelism": main["parallelism"],
    }
