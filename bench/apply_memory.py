"""apply_peak_rss_mib: peak RSS of a process applying a 4 GiB sparse delta (target < 256 MiB).

The delta covers a whole 4 GiB disk in 1,024 extents of 4 MiB; one extent in 16 is random data
(256 MiB), the rest are zeros. The data blob is a 4 GiB page blob in the cache account holding only
the random pages, so preparing the benchmark does not write 4 GiB to Azurite, while the engine still
reads and verifies all 4 GiB. The apply runs in a child process (`python -m bench.apply_memory
--child ...`) that reports its own peak RSS (`VmHWM`, see `bench._stack.peak_rss_kib`) when done; the parent then checks the replica.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from typing import Any

from azure.storage.blob import BlobServiceClient

from bench._stack import azurite, blob_service, peak_rss_kib
from shared.domain.cycle import CycleKind
from shared.replication.apply_engine import apply_extents, load_manifest
from shared.replication.delta_manifest import DeltaManifest, Extent, data_blob_name
from shared.replication.replica_disks import ReplicaDiskSpec, create_replica_disk, replica_blob_name

MIB = 1024 * 1024
DISK_SIZE = 4 * 1024 * MIB
EXTENT = 4 * MIB
DATA_EVERY = 16
MACHINE, DISK, CYCLE = "bench-mem", "disk-0", "cycle-1"


def _prepare(service: BlobServiceClient) -> tuple[DeltaManifest, dict[int, str]]:
    cache = service.get_container_client("cache")
    cache.create_container()
    blob_name = data_blob_name(MACHINE, CYCLE, DISK, 0)
    data_blob = cache.get_blob_client(blob_name)
    data_blob.create_page_blob(DISK_SIZE)
    zero_sha = hashlib.sha256(bytes(EXTENT)).hexdigest()
    extents, written = [], {}
    for i in range(DISK_SIZE // EXTENT):
        offset = i * EXTENT
        sha = zero_sha
        if i % DATA_EVERY == 0:
            payload = os.urandom(EXTENT)
            data_blob.upload_page(payload, offset=offset, length=EXTENT)
            sha = hashlib.sha256(payload).hexdigest()
            written[offset] = sha
        extents.append(Extent(offset=offset, length=EXTENT, blob=blob_name, blob_offset=offset, sha256=sha))
    manifest = DeltaManifest(
        machine_id=MACHINE,
        disk_id=DISK,
        cycle_id=CYCLE,
        sequence=1,
        kind=CycleKind.DELTA,
        disk_size=DISK_SIZE,
        extents=extents,
    )
    cache.upload_blob(manifest.blob_name, manifest.to_json_bytes())
    create_replica_disk(
        service.get_container_client("replicas"),
        ReplicaDiskSpec(machine_id=MACHINE, disk_id=DISK, disk_size=DISK_SIZE),
    )
    return manifest, written


def _child(connection_string: str, manifest_blob: str) -> None:
    service = BlobServiceClient.from_connection_string(connection_string)
    cache = service.get_container_client("cache")
    manifest = load_manifest(cache, manifest_blob)
    replica = service.get_container_client("replicas").get_blob_client(replica_blob_name(MACHINE, DISK))
    result = apply_extents(manifest, cache=cache, replica=replica)
    print(json.dumps({"peak_rss_kib": peak_rss_kib(), "result": result.model_dump(mode="json")}))


def run() -> dict[str, Any]:
    with azurite() as endpoints:
        service = blob_service(endpoints)
        manifest, written = _prepare(service)
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.apply_memory",
                "--child",
                endpoints.storage_connection_string,
                manifest.blob_name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise RuntimeError(f"apply child failed ({child.returncode}):\n{child.stderr[-4000:]}")
        report = json.loads(child.stdout.strip().splitlines()[-1])
        replica = service.get_container_client("replicas").get_blob_client(replica_blob_name(MACHINE, DISK))
        for offset, sha in list(written.items())[:: max(1, len(written) // 8)]:
            got = replica.download_blob(offset=offset, length=EXTENT).readall()
            if hashlib.sha256(got).hexdigest() != sha:
                raise RuntimeError(f"replica differs from the delta at {offset}")
    result = report["result"]
    return {
        "apply_peak_rss_mib": round(report["peak_rss_kib"] / 1024, 1),
        "apply_4gib_delta_seconds": round(result["duration_seconds"], 2),
        "apply_4gib_delta_bytes": result["bytes_applied"],
        "apply_4gib_delta_bytes_uploaded": result["bytes_uploaded"],
        "apply_4gib_delta_bytes_cleared": result["bytes_cleared"],
        "apply_4gib_delta_calls": result["put_page_calls"]
        + result["clear_page_calls"]
        + result["read_calls"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, metavar=("CONNECTION_STRING", "MANIFEST_BLOB"), required=True)
    args = parser.parse_args()
    _child(*args.child)
