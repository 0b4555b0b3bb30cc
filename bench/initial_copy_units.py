"""initial_copy_2tib_longest_activity_s: a sparse 2 TiB disk's initial copy planned as units and applied
unit by unit on the local stack (Azurite), timing every activity as the orchestration runs them.

The disk is 2 TiB with 512 MiB of random data in 128 extents of 4 MiB spread evenly over it (one every
16 GiB), uploaded as two 256 MiB data blobs, plus its whole-disk manifest. The plan (the
`plan_cycle_disk_units` activity's work: stream the manifest, cut it into units, write their shards) and
each unit (`apply_disk_unit`: verify and write one unit, clearing its range) are timed separately;
units run `PARALLELISM` at a time as the orchestration fans them out. The figure is the longest of those
activities: it must stay minutes, not hours, whatever the disk's size.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench._stack import azurite, blob_service
from shared.domain.cycle import CycleKind
from shared.replication.apply_engine import load_manifest
from shared.replication.checksums import ChecksumAlgorithm, checksum_hex
from shared.replication.delta_manifest import DeltaManifest, Extent, data_blob_name
from shared.replication.replica_disks import ReplicaDiskSpec, create_replica_disk, replica_blob_name
from shared.replication.units import DiskUnit, apply_unit, plan_units

MIB = 1024 * 1024
GIB = 1024 * MIB
DISK_SIZE = 2 * 1024 * GIB
EXTENT = 4 * MIB
EXTENTS = 128
PER_BLOB = 64  # extents per 256 MiB data blob
PARALLELISM = 4  # REPLICATION_UNIT_PARALLELISM's default
MACHINE, DISK, CYCLE = "bench-2tib", "disk-0", "cycle-1"


def run() -> dict[str, Any]:
    with azurite() as endpoints:
        service = blob_service(endpoints)
        cache = service.get_container_client("cache")
        cache.create_container()
        stride = DISK_SIZE // EXTENTS
        extents, samples = [], {}
        for b in range(EXTENTS // PER_BLOB):
            name = data_blob_name(MACHINE, CYCLE, DISK, b)
            parts = []
            for j in range(PER_BLOB):
                payload = os.urandom(EXTENT)
                parts.append(payload)
                offset = (b * PER_BLOB + j) * stride
                extents.append(
                    Extent(
                        offset=offset,
                        length=EXTENT,
                        blob=name,
                        blob_offset=j * EXTENT,
                        crc64=checksum_hex(ChecksumAlgorithm.CRC64, payload),
                    )
                )
                if j % 16 == 0:
                    samples[offset] = payload
            cache.upload_blob(name, b"".join(parts), max_concurrency=4)
        manifest = DeltaManifest(
            machine_id=MACHINE,
            disk_id=DISK,
            cycle_id=CYCLE,
            sequence=0,
            kind=CycleKind.INITIAL,
            disk_size=DISK_SIZE,
            extents=extents,
        )
        cache.upload_blob(manifest.blob_name, manifest.to_json_bytes())
        replicas = service.get_container_client("replicas")
        create_replica_disk(replicas, ReplicaDiskSpec(machine_id=MACHINE, disk_id=DISK, disk_size=DISK_SIZE))
        replica = replicas.get_blob_client(replica_blob_name(MACHINE, DISK))

        started = time.perf_counter()
        with load_manifest(cache, manifest.blob_name) as streamed:
            units = plan_units(streamed, cache)
        plan_seconds = time.perf_counter() - started

        def one(unit: DiskUnit) -> float:
            t0 = time.perf_counter()
            apply_unit(unit, cache=cache, replica=replica)
            return time.perf_counter() - t0

        with ThreadPoolExecutor(PARALLELISM) as pool:
            unit_seconds = list(pool.map(one, units))
        wall = time.perf_counter() - started

        for offset, payload in samples.items():
            if replica.download_blob(offset=offset, length=EXTENT).readall() != payload:
                raise RuntimeError(f"replica differs from the source at {offset}")
    longest = max([plan_seconds, *unit_seconds])
    return {
        "initial_copy_2tib_longest_activity_s": round(longest, 2),
        "initial_copy_2tib_units": len(units),
        "initial_copy_2tib_wall_s": round(wall, 2),
        "initial_copy_2tib_plan_s": round(plan_seconds, 2),
        "initial_copy_2tib_unit_s_median": round(sorted(unit_seconds)[len(unit_seconds) // 2], 2),
        "initial_copy_2tib_data_bytes": EXTENTS * EXTENT,
        "initial_copy_2tib_parallelism": PARALLELISM,
    }
