"""apply_peak_rss_mib_by_extents: peak RSS of a process applying manifests of 1k, 131k and 524k extents
(target: each < 256 MiB, i.e. memory independent of the number of extents).

524,288 extents is a 2 TiB disk written everywhere in 4 MiB extents. Moving 2 TiB through Azurite is
not the point here (the 4 GiB figure of bench/apply_memory.py covers data volume), so each extent here
is 512 bytes, back to back on the disk and in one data blob: the manifest has the full extent count
(~70 MB of JSON at 524k) while the data is N x 512 bytes (256 MiB at 524k). The data blob is a sparse
page blob: one run of 64 random extents in every 1,024, the rest zeros, so the engine verifies every
extent, uploads the random runs and clears the zero runs.

Each apply runs in a child process (`python -m bench.apply_extent_memory --child ...`) that loads the
manifest exactly as the replication activity does (`load_manifest`, streamed), applies it in one pass
(as the activity applies a delta) and reports its own peak RSS (`VmHWM`, see `bench._stack.peak_rss_kib`)
and its RSS before the apply (interpreter plus SDK); the parent checks the replica against the data it
uploaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from azure.storage.blob import BlobServiceClient, ContainerClient

from bench._stack import azurite, blob_service, peak_rss_kib, rss_kib
from shared.replication.apply_engine import ApplyOptions, apply_extents, load_manifest
from shared.replication.checksums import ChecksumAlgorithm, checksum_hex
from shared.replication.delta_manifest import data_blob_name, manifest_blob_name
from shared.replication.replica_disks import ReplicaDiskSpec, create_replica_disk, replica_blob_name
from shared.replication.vhd import round_up_to_mib

EXTENT_COUNTS = (1_000, 131_072, 524_288)
EXTENT = 512
RUN_EVERY, RUN_LENGTH = 1024, 64  # extents: a random run of 64 starts every 1,024
MACHINE = "bench-ext"


def _prepare(service: BlobServiceClient, n: int) -> tuple[str, str, dict[int, bytes]]:
    """Upload the data blob and the manifest for `n` extents; returns (manifest blob, disk id, random runs)."""
    cycle, disk = f"c-{n}", f"disk-{n}"
    cache = service.get_container_client("cache")
    blob = data_blob_name(MACHINE, cycle, disk, 0)
    data = cache.get_blob_client(blob)
    data.create_page_blob(n * EXTENT)
    runs: dict[int, bytes] = {}
    for first in range(0, n, RUN_EVERY):
        count = min(RUN_LENGTH, n - first)
        payload = os.urandom(count * EXTENT)
        data.upload_page(payload, offset=first * EXTENT, length=len(payload))
        runs[first] = payload
    zero_crc = checksum_hex(ChecksumAlgorithm.CRC64, bytes(EXTENT))
    header = {
        "formatVersion": 1,
        "machineId": MACHINE,
        "diskId": disk,
        "cycleId": cycle,
        "sequence": 1,
        "kind": "delta",
        "diskSize": n * EXTENT,
        "sectorSize": 512,
    }
    # Written straight to a file as JSON text: building 524k models here would only slow the bench down.
    with tempfile.TemporaryFile() as document:
        document.write(json.dumps(header)[:-1].encode() + b',"extents":[')
        for i in range(n):
            run_start = i - i % RUN_EVERY
            offset_in_run = i - run_start
            if offset_in_run < RUN_LENGTH:
                chunk = runs[run_start][offset_in_run * EXTENT : (offset_in_run + 1) * EXTENT]
                crc = checksum_hex(ChecksumAlgorithm.CRC64, chunk)
            else:
                crc = zero_crc
            sep = b"," if i else b""
            document.write(
                sep
                + (
                    f'{{"offset":{i * EXTENT},"length":{EXTENT},"blob":"{blob}",'
                    f'"blobOffset":{i * EXTENT},"crc64":"{crc}"}}'
                ).encode()
            )
        document.write(b"]}")
        document.seek(0)
        name = manifest_blob_name(MACHINE, cycle, disk)
        cache.upload_blob(name, document, overwrite=True)
    create_replica_disk(
        service.get_container_client("replicas"),
        ReplicaDiskSpec(machine_id=MACHINE, disk_id=disk, disk_size=n * EXTENT),
    )
    return name, disk, runs


def _child(connection_string: str, manifest_blob: str, disk: str) -> None:
    service = BlobServiceClient.from_connection_string(connection_string)
    cache = service.get_container_client("cache")
    replica = service.get_container_client("replicas").get_blob_client(replica_blob_name(MACHINE, disk))
    before_kib = rss_kib()
    started = time.perf_counter()
    with load_manifest(cache, manifest_blob) as manifest:
        loaded = time.perf_counter()
        # as the replication activity applies a delta: one pass
        result = apply_extents(manifest, cache=cache, replica=replica, options=ApplyOptions(one_pass=True))
    print(
        json.dumps(
            {
                "peak_rss_kib": peak_rss_kib(),
                "rss_before_kib": before_kib,
                "load_seconds": loaded - started,
                "result": result.model_dump(mode="json"),
            }
        )
    )


def _check_replica(replicas: ContainerClient, disk: str, n: int, runs: dict[int, bytes]) -> None:
    replica = replicas.get_blob_client(replica_blob_name(MACHINE, disk))
    firsts = sorted(runs)
    for first in firsts[:: max(1, len(firsts) // 8)]:
        payload = runs[first]
        got = replica.download_blob(offset=first * EXTENT, length=len(payload)).readall()
        if got != payload:
            raise RuntimeError(f"replica of {n} extents differs from the data at extent {first}")
    end = min(n, RUN_EVERY) * EXTENT
    if n > RUN_LENGTH:
        zeros = replica.download_blob(offset=RUN_LENGTH * EXTENT, length=end - RUN_LENGTH * EXTENT).readall()
        if zeros.count(0) != len(zeros):
            raise RuntimeError(f"replica of {n} extents is not zero where the manifest says zeros")
    if replica.get_blob_properties().size < round_up_to_mib(n * EXTENT):
        raise RuntimeError("replica is smaller than the disk")


def run() -> dict[str, Any]:
    peaks: dict[str, float] = {}
    details: dict[str, dict[str, Any]] = {}
    with azurite() as endpoints:
        service = blob_service(endpoints)
        service.get_container_client("cache").create_container()
        for n in EXTENT_COUNTS:
            manifest, disk, runs = _prepare(service, n)
            child = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.apply_extent_memory",
                    "--child",
                    endpoints.storage_connection_string,
                    manifest,
                    disk,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode != 0:
                raise RuntimeError(f"apply child ({n} extents) failed:\n{child.stderr[-4000:]}")
            report = json.loads(child.stdout.strip().splitlines()[-1])
            _check_replica(service.get_container_client("replicas"), disk, n, runs)
            result = report["result"]
            peaks[str(n)] = round(report["peak_rss_kib"] / 1024, 1)
            details[str(n)] = {
                "rss_before_apply_mib": round(report["rss_before_kib"] / 1024, 1),
                "load_manifest_seconds": round(report["load_seconds"], 2),
                "apply_seconds": round(result["duration_seconds"], 2),
                "calls": result["put_page_calls"] + result["clear_page_calls"] + result["read_calls"],
                "bytes_read": result["bytes_read"],
            }
    return {
        "apply_peak_rss_mib_by_extents": peaks,
        "apply_by_extents_detail": details,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--child", nargs=3, metavar=("CONNECTION_STRING", "MANIFEST_BLOB", "DISK_ID"), required=True
    )
    args = parser.parse_args()
    _child(*args.child)
