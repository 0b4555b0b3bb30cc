"""delta_shapes: the apply engine's rate and storage calls for the shapes a delta cycle takes, on the local stack.

A cycle's cost depends on its shape, not just its size: scattered small writes cost one Put Page each
(nothing to coalesce), sequential writes coalesce into 4 MiB calls, all-zero blocks become Clear Pages
with no body. Each shape is uploaded as the appliance does (the extents' bytes back to back in one data
blob, a CRC64 per extent) and applied by the product's delta path (`ApplyOptions(one_pass=True)`, the
streaming path Azurite gets), ROUNDS times onto the same replica; the figures are medians. Each round is
paired, in alternating order, with the same calls made raw from memory (adjacent writes joined up to 4 MiB,
zero runs as Clear Pages, the engine's parallelism) onto another replica, so `vs_raw` (the median of the
per-round ratios) says how close the engine comes to what the endpoint takes for that shape, whatever
the machine's load did to both.

| shape | extents | on disk |
|---|---|---|
| random_4k | 4 KiB | at random 4 KiB-aligned offsets over a 4 GiB disk |
| random_64k | 64 KiB | at random 64 KiB-aligned offsets over a 4 GiB disk |
| sequential | 64 KiB | back to back (one run) |
| half_zeros | 64 KiB | back to back; every other MiB all zeros (what a freshly zeroed or trimmed range uploads) |

Per shape: `mib_s` (extent bytes applied per second of the apply), `calls_per_gib` (every storage call
the apply makes: reads of the cache, Put Page, Clear Pages, per GiB of extent bytes), the calls by kind,
and `worker_cpu_s_per_gib` (this process's CPU seconds per GiB: what the worker spends, which the
machine's other load inflates less than wall time). Local-stack figures: Azurite on the development
machine; `delta_shapes_conditions` records the Azurite version, commit and load average beside them.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.storage.blob import BlobClient, ContainerClient

from bench._stack import azurite, blob_service
from shared.domain.cycle import CycleKind
from shared.replication.apply_engine import ApplyOptions, ApplyResult, apply_extents
from shared.replication.checksums import ChecksumAlgorithm, checksum_hex
from shared.replication.delta_manifest import DeltaManifest, Extent, data_blob_name
from shared.replication.replica_disks import ReplicaDiskSpec, create_replica_disk

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
DISK_SIZE = 4 * GIB
ROUNDS = 5
MACHINE, CYCLE = "bench-shapes", "cycle-1"

# A write: (disk offset, bytes). Each shape makes its writes from a seeded generator: the same every run.
Shape = Callable[[random.Random], list[tuple[int, bytes]]]


def _random_writes(size: int, total: int) -> Shape:
    def make(rng: random.Random) -> list[tuple[int, bytes]]:
        slots = rng.sample(range(DISK_SIZE // size), total // size)
        return [(slot * size, os.urandom(size)) for slot in sorted(slots)]

    return make


def _sequential(total: int, *, zero_every_other_mib: bool = False) -> Shape:
    def make(rng: random.Random) -> list[tuple[int, bytes]]:
        base = rng.randrange(DISK_SIZE // (2 * GIB)) * GIB  # a MiB-aligned start in the disk's first half
        writes = []
        for offset in range(0, total, 64 * KIB):
            zero = zero_every_other_mib and (offset // MIB) % 2 == 1
            writes.append((base + offset, bytes(64 * KIB) if zero else os.urandom(64 * KIB)))
        return writes

    return make


# Data volume per shape: enough calls for a rate (4 KiB random is 4,096 extents at 16 MiB).
SHAPES: dict[str, Shape] = {
    "random_4k": _random_writes(4 * KIB, 16 * MIB),
    "random_64k": _random_writes(64 * KIB, 64 * MIB),
    "sequential": _sequential(64 * MIB),
    "half_zeros": _sequential(64 * MIB, zero_every_other_mib=True),
}


def _upload(cache: ContainerClient, disk: str, writes: list[tuple[int, bytes]]) -> DeltaManifest:
    blob = data_blob_name(MACHINE, CYCLE, disk, 0)
    cache.upload_blob(blob, b"".join(data for _, data in writes), overwrite=True, max_concurrency=4)
    extents, position = [], 0
    for offset, data in writes:
        extents.append(
            Extent(
                offset=offset,
                length=len(data),
                blob=blob,
                blob_offset=position,
                crc64=checksum_hex(ChecksumAlgorithm.CRC64, data),
            )
        )
        position += len(data)
    return DeltaManifest(
        machine_id=MACHINE,
        disk_id=disk,
        cycle_id=CYCLE,
        sequence=1,
        kind=CycleKind.DELTA,
        disk_size=DISK_SIZE,
        extents=extents,
    )


def _check(replica: BlobClient, writes: list[tuple[int, bytes]]) -> None:
    """The replica holds what was written (a sample): a fast apply that writes the wrong bytes counts for nothing."""
    for offset, data in writes[:: max(1, len(writes) // 16)]:
        if replica.download_blob(offset=offset, length=len(data)).readall() != data:
            raise RuntimeError(f"replica differs from the delta at {offset}")


def _raw_calls(writes: list[tuple[int, bytes]]) -> list[tuple[int, bytes | int]]:
    """The calls the engine makes for `writes`, made raw: adjacent writes joined up to 4 MiB, all-zero ones
    as a Clear Pages run of any length (offset, length)."""
    runs: list[tuple[int, bool, list[bytes]]] = []  # (offset, all zero, the writes' bytes)
    end = -1
    for offset, data in writes:
        zero = not any(data)
        if runs and offset == end and runs[-1][1] == zero:
            parts = runs[-1][2]
            if zero or sum(map(len, parts)) + len(data) <= 4 * MIB:
                parts.append(data)
                end += len(data)
                continue
        runs.append((offset, zero, [data]))
        end = offset + len(data)
    return [(o, sum(map(len, parts)) if zero else b"".join(parts)) for o, zero, parts in runs]


def _raw(target: BlobClient, calls: list[tuple[int, bytes | int]], parallelism: int) -> float:
    def call(item: tuple[int, bytes | int]) -> None:
        offset, what = item
        if isinstance(what, int):
            target.clear_page(offset=offset, length=what)
        else:
            target.upload_page(what, offset=offset, length=len(what))

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        list(pool.map(call, calls))
    return time.perf_counter() - started


def _measure(
    cache: ContainerClient,
    replica: BlobClient,
    raw_target: BlobClient,
    manifest: DeltaManifest,
    writes: list[tuple[int, bytes]],
) -> dict[str, Any]:
    options = ApplyOptions(one_pass=True)
    calls = _raw_calls(writes)
    walls, cpus, raws = [], [], []
    result: ApplyResult | None = None
    for round_number in range(ROUNDS):
        if round_number % 2 == 0:
            raws.append(_raw(raw_target, calls, options.parallelism))
        cpu, started = time.process_time(), time.perf_counter()
        result = apply_extents(manifest, cache=cache, replica=replica, options=options)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
        if round_number % 2 == 1:
            raws.append(_raw(raw_target, calls, options.parallelism))
    assert result is not None
    total = manifest.total_bytes
    per_gib = GIB / total
    return {
        "mib_s": round(total / MIB / statistics.median(walls), 1),
        "raw_mib_s": round(total / MIB / statistics.median(raws), 1),
        "vs_raw": round(statistics.median(r / w for r, w in zip(raws, walls, strict=True)), 3),
        "calls_per_gib": round(result.calls * per_gib),
        "put_page_calls_per_gib": round(result.put_page_calls * per_gib),
        "clear_page_calls_per_gib": round(result.clear_page_calls * per_gib),
        "read_calls_per_gib": round(result.read_calls * per_gib),
        "worker_cpu_s_per_gib": round(statistics.median(cpus) * per_gib, 2),
        "extents": result.extents,
        "bytes": total,
        "seconds_by_round": [round(w, 2) for w in walls],
        "raw_seconds_by_round": [round(r, 2) for r in raws],
        "write_path": result.write_path.value,
    }


def run() -> dict[str, Any]:
    figures: dict[str, Any] = {}
    load_before = [round(x, 2) for x in os.getloadavg()]
    with azurite() as endpoints:
        service = blob_service(endpoints)
        cache = service.get_container_client("cache")
        replicas = service.get_container_client("replicas")
        cache.create_container()
        for number, (name, shape) in enumerate(SHAPES.items()):
            disk = f"disk-{number}"
            writes = shape(random.Random(number))
            manifest = _upload(cache, disk, writes)
            spec = ReplicaDiskSpec(machine_id=MACHINE, disk_id=disk, disk_size=DISK_SIZE)
            create_replica_disk(replicas, spec)
            replica = replicas.get_blob_client(spec.blob_name)
            raw_target = replicas.get_blob_client(f"raw-{disk}.vhd")
            raw_target.create_page_blob(replica.get_blob_properties().size)
            figures[name] = _measure(cache, replica, raw_target, manifest, writes)
            _check(replica, writes)
    return {
        "delta_shapes": figures,
        "delta_shapes_conditions": {
            "stack": "local: Azurite, one process for the cache and replica accounts",
            "rounds": ROUNDS,
            "apply": "one pass, Put Page (streaming path)",
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
