"""End to end on Azurite: appliance change tracking -> upload -> apply engine -> replica == source disk.

The property test drives random guest writes through the CBT tracker for several cycles and checks,
after every cycle, that the replica's data area equals the source image byte for byte.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import (
    ALL_AREAS,
    ChangedBlockTracker,
    ChangeTrackingReset,
    CycleUpload,
    DiskCycle,
    HyperVChangeTracker,
    ImageFile,
    ReplicationLog,
    UploadOptions,
    diff_blocks,
    nonzero_ranges,
    upload_cycle,
    upload_cycle_with_stats,
)
from devhost.emulators import EmulatorEndpoints
from shared.domain.cycle import CycleKind
from shared.replication.apply_engine import ApplyOptions
from shared.replication.checksums import ChecksumAlgorithm, checksum_hex
from shared.replication.delta_manifest import DeltaManifest
from shared.replication.replica_disks import ReplicaDiskSpec, create_replica_disk, replica_blob_name
from shared.replication.vhd import FOOTER_SIZE
from tests.support.apply_cycles import apply_manifest_blob

pytestmark = pytest.mark.integration

KIB = 1024
MIB = 1024 * KIB
_counter = itertools.count()


@pytest.fixture(scope="module")
def storage(emulators: EmulatorEndpoints) -> Iterator[tuple[ContainerClient, ContainerClient]]:
    service = BlobServiceClient.from_connection_string(emulators.storage_connection_string)
    suffix = uuid.uuid4().hex[:10]
    cache = service.get_container_client(f"cache-{suffix}")
    replicas = service.get_container_client(f"replicas-{suffix}")
    cache.create_container()
    replicas.create_container()
    yield cache, replicas
    cache.delete_container()
    replicas.delete_container()


def replica_data(replicas: ContainerClient, machine: str, disk: str, size: int) -> bytes:
    blob = replicas.get_blob_client(replica_blob_name(machine, disk))
    data = blob.download_blob().readall()
    assert data[size:-FOOTER_SIZE] == bytes(len(data) - FOOTER_SIZE - size)  # rounding pad stays zero
    return data[:size]


def image_bytes(path: Path) -> bytes:
    return path.read_bytes()


def run_cycle(
    cache: ContainerClient,
    replicas: ContainerClient,
    cycle: CycleUpload,
    options: UploadOptions | None = None,
) -> list[str]:
    manifests = upload_cycle(cache, cycle, options=options)
    for name in manifests:
        apply_manifest_blob(name, cache=cache, replicas=replicas, machine_id=cycle.machine_id)
    return manifests


# A write: (sector, sectors, fill) with fill None = random bytes, 0 = zeros (TRIM-like), else that byte.
writes_strategy = st.lists(
    st.tuples(
        st.integers(0, (6 * MIB) // 512 - 1),
        st.integers(1, 600),
        st.one_of(st.none(), st.just(0), st.integers(1, 255)),
    ),
    min_size=0,
    max_size=12,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cycles=st.lists(writes_strategy, min_size=1, max_size=4),
    threads=st.sampled_from([1, 4, 32]),
    algorithm=st.sampled_from(list(ChecksumAlgorithm)),
)
def test_replica_equals_source_after_random_cbt_cycles(
    storage: tuple[ContainerClient, ContainerClient],
    tmp_path: Path,
    cycles: list[list[tuple[int, int, int | None]]],
    threads: int,
    algorithm: ChecksumAlgorithm,
) -> None:
    cache, replicas = storage
    n = next(_counter)
    machine, disk = f"vm-prop-{n}", "disk-0"
    size = 6 * MIB + 3 * 512  # not a MiB multiple; crosses the 4 MiB Put Page grid
    image = tmp_path / f"disk-{n}.raw"
    with image.open("wb") as f:
        f.truncate(size)
    with ImageFile(image, writable=True) as f:  # some pre-existing data for the initial copy
        f.write(MIB, os.urandom(300 * KIB))
        f.write(5 * MIB, b"\x07" * 4096)
    create_replica_disk(replicas, ReplicaDiskSpec(machine_id=machine, disk_id=disk, disk_size=size))
    options = UploadOptions(upload_threads=threads, checksum=algorithm, max_data_blob_bytes=4 * MIB)

    tracker = ChangedBlockTracker.enable(image, block_size=16 * KIB)
    try:
        with ImageFile(image) as source:
            initial = DiskCycle(disk, size, tracker.changed_areas(ALL_AREAS), source)
            run_cycle(cache, replicas, CycleUpload(machine, "c0", 0, CycleKind.INITIAL, [initial]), options)
        change_id = tracker.next_epoch()
        assert replica_data(replicas, machine, disk, size) == image_bytes(image)

        for seq, writes in enumerate(cycles, start=1):
            for sector, count, fill in writes:
                count = min(count, size // 512 - sector)
                length = count * 512
                data = os.urandom(length) if fill is None else bytes([fill]) * length
                tracker.write(sector * 512, data)
            with ImageFile(image) as source:
                delta = DiskCycle(disk, size, tracker.changed_areas(change_id), source)
                run_cycle(
                    cache, replicas, CycleUpload(machine, f"c{seq}", seq, CycleKind.DELTA, [delta]), options
                )
            change_id = tracker.next_epoch()
            assert replica_data(replicas, machine, disk, size) == image_bytes(image), f"after cycle {seq}"
    finally:
        tracker.close()


def test_hyperv_log_cycles_apply_from_the_frozen_logs(
    storage: tuple[ContainerClient, ContainerClient], tmp_path: Path
) -> None:
    cache, replicas = storage
    machine, disk, size = "vm-hyperv", "disk-0", 5 * MIB
    image = tmp_path / "hv.raw"
    with image.open("wb") as f:
        f.truncate(size)
    create_replica_disk(replicas, ReplicaDiskSpec(machine_id=machine, disk_id=disk, disk_size=size))
    with ImageFile(image) as source:  # initial copy from the VM's snapshot
        run_cycle(
            cache,
            replicas,
            CycleUpload(
                machine, "h0", 0, CycleKind.INITIAL, [DiskCycle(disk, size, nonzero_ranges(source), source)]
            ),
        )

    states = []
    with HyperVChangeTracker(image) as hv:
        for seq in range(1, 4):
            for _ in range(6):
                sector = int.from_bytes(os.urandom(2)) % (size // 512 - 64)
                hv.write(sector * 512, os.urandom(512 * (1 + os.urandom(1)[0] % 64)))
            log_path = hv.switch_log()
            states.append(image_bytes(image))
            # the guest keeps writing while the cycle uploads: the log, not the live image, is the source
            hv.write(0, os.urandom(4096))
            with ReplicationLog.open(log_path) as log:
                cycle = CycleUpload(
                    machine,
                    f"h{seq}",
                    seq,
                    CycleKind.DELTA,
                    [DiskCycle(disk, size, log.changed_ranges(), log)],
                )
                run_cycle(cache, replicas, cycle, UploadOptions(upload_threads=2))
            # the replica is the disk as it was at the log switch, not the live image
            assert replica_data(replicas, machine, disk, size) == states[-1]
            assert states[-1] != image_bytes(image)
        final = hv.switch_log()
    with ReplicationLog.open(final) as log:
        run_cycle(
            cache,
            replicas,
            CycleUpload(
                machine, "h4", 4, CycleKind.FINAL, [DiskCycle(disk, size, log.changed_ranges(), log)]
            ),
        )
    assert replica_data(replicas, machine, disk, size) == image_bytes(image)


def test_cbt_reset_is_recovered_by_a_hash_diff_resync(
    storage: tuple[ContainerClient, ContainerClient], tmp_path: Path
) -> None:
    cache, replicas = storage
    machine, disk, size = "vm-reset", "disk-0", 4 * MIB
    image = tmp_path / "r.raw"
    with image.open("wb") as f:
        f.truncate(size)
    create_replica_disk(replicas, ReplicaDiskSpec(machine_id=machine, disk_id=disk, disk_size=size))
    tracker = ChangedBlockTracker.enable(image)
    tracker.write(0, os.urandom(2 * MIB))
    with ImageFile(image) as source:
        run_cycle(
            cache,
            replicas,
            CycleUpload(
                machine,
                "r0",
                0,
                CycleKind.INITIAL,
                [DiskCycle(disk, size, tracker.changed_areas(ALL_AREAS), source)],
            ),
        )
        hashes, _ = diff_blocks(source, None, block_size=256 * KIB)
    tracker.next_epoch()
    tracker.close()

    with ImageFile(image, writable=True) as f:  # writes CBT never sees (e.g. the VM ran on another host)
        f.write(512 * KIB, b"\xaa" * 4096)
        f.write(3 * MIB, os.urandom(8192))
    with pytest.raises(ChangeTrackingReset):
        ChangedBlockTracker.open(image)

    with ImageFile(image) as source:
        _, changed = diff_blocks(source, hashes, block_size=256 * KIB)
        assert changed == [(512 * KIB, 256 * KIB), (3 * MIB, 256 * KIB)]  # only the two touched blocks
        manifests = run_cycle(
            cache,
            replicas,
            CycleUpload(machine, "r1", 1, CycleKind.DELTA, [DiskCycle(disk, size, changed, source)]),
        )
    assert replica_data(replicas, machine, disk, size) == image_bytes(image)
    manifest = DeltaManifest.parse(cache.get_blob_client(manifests[0]).download_blob().readall())
    assert manifest.total_bytes == 512 * KIB


def test_upload_puts_data_before_manifests_and_names_them_for_the_event(
    storage: tuple[ContainerClient, ContainerClient], tmp_path: Path
) -> None:
    cache, _ = storage
    image = tmp_path / "u.raw"
    with image.open("wb") as f:
        f.truncate(3 * MIB)
    with ImageFile(image, writable=True) as f:
        f.write(0, os.urandom(3 * MIB))
    with ImageFile(image) as source:
        cycle = CycleUpload(
            "vm-up",
            "u1",
            1,
            CycleKind.DELTA,
            [DiskCycle("disk-0", 3 * MIB, [(0, 3 * MIB)], source), DiskCycle("disk-1", 3 * MIB, [], source)],
        )
        result = upload_cycle_with_stats(
            cache, cycle, options=UploadOptions(max_data_blob_bytes=4 * MIB, max_extent_bytes=MIB)
        )
    assert result.data_blobs == ["vm-up/u1/disk-0/data-00000.bin"] and result.bytes_uploaded == 3 * MIB
    assert result.manifests == ["vm-up/u1/disk-0/manifest.json", "vm-up/u1/disk-1/manifest.json"]
    blobs = {b.name: b for b in cache.list_blobs(name_starts_with="vm-up/u1/")}
    data = blobs["vm-up/u1/disk-0/data-00000.bin"]
    manifest_blob = blobs["vm-up/u1/disk-0/manifest.json"]
    assert data.size == 3 * MIB and manifest_blob.last_modified >= data.last_modified
    body = json.loads(cache.get_blob_client("vm-up/u1/disk-0/manifest.json").download_blob().readall())
    assert [e["length"] for e in body["extents"]] == [MIB, MIB, MIB]
    assert body["kind"] == "delta" and body["sequence"] == 1
    # every write unit (<= 4 MiB) carries its CRC64, the checksum the storage service can verify itself
    data_bytes = cache.get_blob_client("vm-up/u1/disk-0/data-00000.bin").download_blob().readall()
    for e in body["extents"]:
        assert set(e) >= {"crc64"} and "sha256" not in e
        piece = data_bytes[e["blobOffset"] : e["blobOffset"] + e["length"]]
        assert e["crc64"] == checksum_hex(ChecksumAlgorithm.CRC64, piece)
    empty = json.loads(cache.get_blob_client("vm-up/u1/disk-1/manifest.json").download_blob().readall())
    assert empty["extents"] == []
    # an upload retried with the same inputs leaves the same blobs
    with ImageFile(image) as source:
        cycle.disks = [DiskCycle("disk-0", 3 * MIB, [(0, 3 * MIB)], source)]
        again = upload_cycle(
            cache, cycle, options=UploadOptions(max_data_blob_bytes=4 * MIB, max_extent_bytes=MIB)
        )
    assert again == result.manifests[:1]
    assert (
        cache.get_blob_client("vm-up/u1/disk-0/manifest.json").download_blob().readall()
        == json.dumps(body, separators=(",", ":")).encode()
    )


def test_apply_options_reach_the_engine_from_the_activity_entry_point(
    storage: tuple[ContainerClient, ContainerClient], tmp_path: Path
) -> None:
    cache, replicas = storage
    image = tmp_path / "o.raw"
    with image.open("wb") as f:
        f.truncate(MIB)
    with ImageFile(image, writable=True) as f:
        f.write(0, os.urandom(MIB))
    create_replica_disk(replicas, ReplicaDiskSpec(machine_id="vm-opt", disk_id="disk-0", disk_size=MIB))
    with ImageFile(image) as source:
        manifests = upload_cycle(
            cache,
            CycleUpload("vm-opt", "o0", 0, CycleKind.INITIAL, [DiskCycle("disk-0", MIB, [(0, MIB)], source)]),
        )
    applied = apply_manifest_blob(
        manifests[0],
        cache=cache,
        replicas=replicas,
        options=ApplyOptions(parallelism=1, read_size=64 * KIB),
    )
    assert applied.read_calls == MIB // (64 * KIB)
    assert replica_data(replicas, "vm-opt", "disk-0", MIB) == image_bytes(image)
