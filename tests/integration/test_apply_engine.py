"""The apply engine against Azurite through the real SDK: good cycles land, bad ones change nothing."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient

import shared.replication.apply_engine as engine
from devhost.emulators import EmulatorEndpoints
from shared.domain.cycle import CycleKind
from shared.replication.apply_engine import (
    ApplyOptions,
    CycleDataChanged,
    CycleDataMissing,
    CycleDataOversized,
    CycleDataTruncated,
    ExtentChecksumMismatch,
    ManifestMismatch,
    SpoolMode,
    WritePath,
    apply_extents,
    endpoint_key,
    forget_capabilities,
    load_manifest,
    supports_put_page_from_url,
    verify_extents,
)
from shared.replication.checksums import ChecksumAlgorithm, checksum_hex
from shared.replication.delta_manifest import DeltaManifest, Extent, ManifestInvalid, data_blob_name
from shared.replication.replica_disks import (
    ReplicaDiskSpec,
    ReplicaNotFound,
    ReplicaSizeMismatch,
    create_replica_disk,
    read_replica_footer,
)
from shared.replication.units import DiskUnit, UnitLimits, apply_unit, plan_units
from shared.replication.vhd import FOOTER_SIZE, MIB
from tests.support.apply_cycles import apply_cycle, apply_manifest_blob, dispose_cycle_data

pytestmark = pytest.mark.integration

MACHINE = "vm-apply"
DISK = "disk-0"
DISK_SIZE = 9 * MIB + 1536  # not a whole MiB: the replica rounds up; crosses two 4 MiB Put Page cells


@pytest.fixture(scope="module")
def service(azurite_direct: EmulatorEndpoints) -> BlobServiceClient:
    # The streaming path: Azurite itself, without the blob front's Put Page From URL (that path is
    # tests/integration/test_page_from_url.py).
    return BlobServiceClient.from_connection_string(azurite_direct.storage_connection_string)


@pytest.fixture
def cache(service: BlobServiceClient) -> Iterator[ContainerClient]:
    container = service.get_container_client(f"cache-{uuid.uuid4().hex[:12]}")
    container.create_container()
    yield container
    container.delete_container()


@pytest.fixture
def replicas(service: BlobServiceClient) -> Iterator[ContainerClient]:
    container = service.get_container_client(f"replicas-{uuid.uuid4().hex[:12]}")
    yield container
    container.delete_container()


@pytest.fixture
def replica(replicas: ContainerClient) -> BlobClient:
    spec = ReplicaDiskSpec(machine_id=MACHINE, disk_id=DISK, disk_size=DISK_SIZE)
    create_replica_disk(replicas, spec)
    return replicas.get_blob_client(spec.blob_name)


def upload_cycle(
    cache: ContainerClient,
    cycle_id: str,
    writes: list[tuple[int, bytes]],
    *,
    kind: CycleKind = CycleKind.DELTA,
    algorithm: ChecksumAlgorithm = ChecksumAlgorithm.SHA256,
    blobs: int = 1,
    disk: str = DISK,
) -> DeltaManifest:
    """Writes -> data blobs (round-robin over `blobs`) + manifest, as the appliance would upload them."""
    payloads: list[list[bytes]] = [[] for _ in range(blobs)]
    used = [0] * blobs
    extents = []
    for i, (offset, data) in enumerate(sorted(writes)):
        b = i % blobs
        name = data_blob_name(MACHINE, cycle_id, disk, b)
        extents.append(
            Extent.model_validate(
                {
                    "offset": offset,
                    "length": len(data),
                    "blob": name,
                    "blobOffset": used[b],
                    algorithm.value: checksum_hex(algorithm, data),
                }
            )
        )
        payloads[b].append(data)
        used[b] += len(data)
    for b, parts in enumerate(payloads):
        if parts:
            cache.upload_blob(data_blob_name(MACHINE, cycle_id, disk, b), b"".join(parts), overwrite=True)
    manifest = DeltaManifest(
        machine_id=MACHINE,
        disk_id=disk,
        cycle_id=cycle_id,
        sequence=int(cycle_id.rsplit("-", 1)[-1]) if cycle_id[-1].isdigit() else 0,
        kind=kind,
        disk_size=DISK_SIZE,
        extents=extents,
    )
    cache.upload_blob(manifest.blob_name, manifest.to_json_bytes(), overwrite=True)
    return manifest


def whole(replica: BlobClient) -> bytes:
    return replica.download_blob().readall()


def rand(n: int) -> bytes:
    return os.urandom(n)


def expect_image(size: int, writes: list[tuple[int, bytes]], base: bytes | None = None) -> bytes:
    image = bytearray(base if base is not None else bytes(size))
    for offset, data in writes:
        image[offset : offset + len(data)] = data
    return bytes(image)


def test_initial_then_delta_land_byte_for_byte_and_keep_the_footer(
    cache: ContainerClient, replicas: ContainerClient, replica: BlobClient
) -> None:
    initial = [(0, rand(3 * MIB)), (3 * MIB, rand(2 * MIB)), (8 * MIB, rand(MIB + 1536))]
    m0 = upload_cycle(cache, "cycle-0", initial, kind=CycleKind.INITIAL)
    r0 = apply_extents(m0, cache=cache, replica=replica)
    assert r0.bytes_applied == 6 * MIB + 1536
    assert r0.write_path is WritePath.PUT_PAGE  # Azurite has no Put Page From URL
    # 0..5 MiB is one run on disk (3 MiB + 2 MiB extents: no single call fits both); 8 MiB.. is a third.
    assert r0.put_page_calls == 3

    delta = [(512, rand(512)), (4 * MIB - 512, rand(1024)), (9 * MIB, rand(1536))]
    m1 = upload_cycle(cache, "cycle-1", delta)
    apply_extents(m1, cache=cache, replica=replica)

    data = whole(replica)
    image = expect_image(DISK_SIZE, initial + delta)
    assert data[:DISK_SIZE] == image
    assert data[DISK_SIZE:-FOOTER_SIZE] == bytes(
        len(data) - FOOTER_SIZE - DISK_SIZE
    )  # rounding pad stays zero
    assert read_replica_footer(replicas, replica.blob_name).current_size == 10 * MIB


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed (qemu-utils)")
def test_a_downloaded_replica_is_identical_to_its_source_for_qemu_img(
    cache: ContainerClient, replica: BlobClient, tmp_path: Path
) -> None:
    source = rand(DISK_SIZE)
    writes = [(offset, source[offset : offset + MIB]) for offset in range(0, DISK_SIZE, MIB)]
    apply_extents(
        upload_cycle(cache, "cycle-0", writes, kind=CycleKind.INITIAL), cache=cache, replica=replica
    )
    source_path = tmp_path / "source.raw"
    source_path.write_bytes(source)
    replica_path = tmp_path / "replica.vhd"
    replica_path.write_bytes(whole(replica))

    # The replica is the source rounded up to a whole MiB with zeros; qemu-img compares the extra tail
    # against nothing and accepts it only if it is all zeros.
    compared = subprocess.run(
        ["qemu-img", "compare", "-f", "vpc", "-F", "raw", str(replica_path), str(source_path)],
        capture_output=True,
        text=True,
    )
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "Images are identical" in compared.stdout


@pytest.mark.parametrize("mode", [SpoolMode.DISK, SpoolMode.REREAD])
def test_spool_and_reread_give_the_same_replica(
    cache: ContainerClient, replica: BlobClient, mode: SpoolMode
) -> None:
    writes = [(i * 700 * 1024 // 512 * 512, rand(64 * 1024)) for i in range(12)]
    m = upload_cycle(cache, "cycle-0", writes, blobs=3)
    result = apply_extents(
        m, cache=cache, replica=replica, options=ApplyOptions(spool=mode, read_size=96 * 1024)
    )
    assert result.data_source == ("spool" if mode is SpoolMode.DISK else "reread")
    assert whole(replica)[:DISK_SIZE] == expect_image(DISK_SIZE, writes)
    # the re-read path reads every byte twice (verify, then write); the spool once
    assert result.bytes_read == (1 if mode is SpoolMode.DISK else 2) * m.total_bytes


def test_zero_extents_are_cleared_not_uploaded(cache: ContainerClient, replica: BlobClient) -> None:
    base = [(0, rand(2 * MIB))]
    apply_extents(upload_cycle(cache, "cycle-0", base, kind=CycleKind.INITIAL), cache=cache, replica=replica)
    zeros = [(MIB, bytes(MIB))]
    result = apply_extents(upload_cycle(cache, "cycle-1", zeros), cache=cache, replica=replica)
    assert result.bytes_uploaded == 0 and result.bytes_cleared == MIB and result.clear_page_calls == 1
    assert whole(replica)[:DISK_SIZE] == expect_image(DISK_SIZE, base + zeros)


def test_one_large_extent_streams_in_unaligned_chunks_and_clears_its_zero_piece(
    cache: ContainerClient, replica: BlobClient
) -> None:
    apply_extents(
        upload_cycle(cache, "cycle-0", [(0, rand(9 * MIB))], kind=CycleKind.INITIAL),
        cache=cache,
        replica=replica,
    )
    payload = rand(4 * MIB) + bytes(4 * MIB) + rand(MIB)  # the extent's 4 MiB pieces: data, zeros, data
    m = upload_cycle(cache, "cycle-1", [(512, payload)])
    # 768 KiB reads straddle the 4 MiB piece boundaries; every piece must still be classified right
    result = apply_extents(m, cache=cache, replica=replica, options=ApplyOptions(read_size=768 * 1024))
    assert result.clear_page_calls == 1 and result.bytes_cleared == 4 * MIB
    assert result.bytes_uploaded == len(payload) - 4 * MIB
    assert whole(replica)[512 : 512 + len(payload)] == payload


def test_resync_clears_what_the_replica_has_outside_the_extents(
    cache: ContainerClient, replicas: ContainerClient, replica: BlobClient
) -> None:
    old = [(0, rand(MIB)), (5 * MIB, rand(MIB)), (9 * MIB, rand(1536))]
    apply_extents(upload_cycle(cache, "cycle-0", old, kind=CycleKind.INITIAL), cache=cache, replica=replica)
    fresh = [(512 * 1024, rand(MIB))]
    result = apply_extents(
        upload_cycle(cache, "cycle-1", fresh, kind=CycleKind.RESYNC), cache=cache, replica=replica
    )
    assert whole(replica)[:DISK_SIZE] == expect_image(DISK_SIZE, fresh)
    assert result.bytes_cleared >= MIB + 1536
    assert read_replica_footer(replicas, replica.blob_name).current_size == 10 * MIB


@pytest.mark.parametrize("window_extents", [1, 2, 5])
def test_small_windows_give_the_same_replica_and_read_the_data_once(
    cache: ContainerClient, replica: BlobClient, window_extents: int
) -> None:
    """The engine plans a manifest a window at a time (its memory follows the window, not the manifest):
    extents, zero pieces, whole-disk gaps and checksum errors behave the same at every window size."""
    old = [(0, rand(MIB)), (3 * MIB, rand(MIB)), (9 * MIB, rand(1536))]
    apply_extents(upload_cycle(cache, "cycle-0", old, kind=CycleKind.INITIAL), cache=cache, replica=replica)
    fresh = [(512 * 1024, rand(MIB)), (2 * MIB, bytes(MIB)), (5 * MIB, rand(3 * MIB)), (9 * MIB, rand(512))]
    m = upload_cycle(cache, "cycle-1", fresh, kind=CycleKind.RESYNC, blobs=2)
    options = ApplyOptions(window_extents=window_extents, spool=SpoolMode.DISK)
    result = apply_extents(m, cache=cache, replica=replica, options=options)
    assert whole(replica)[:DISK_SIZE] == expect_image(DISK_SIZE, fresh)
    assert result.extents == 4 and result.bytes_read == m.total_bytes
    # the 1 MiB of zeros is cleared, never uploaded
    assert result.bytes_uploaded == m.total_bytes - MIB
    bad = upload_cycle(cache, "cycle-2", [(0, rand(4096)), (MIB, rand(4096)), (2 * MIB, rand(4096))])
    corrupt = bad.model_copy(
        update={"extents": [*bad.extents[:2], bad.extents[2].model_copy(update={"sha256": "0" * 64})]}
    )
    before = whole(replica)
    with pytest.raises(ExtentChecksumMismatch, match=r"^extent 2 "):
        apply_extents(corrupt, cache=cache, replica=replica, options=options)
    assert whole(replica) == before


def test_a_streamed_manifest_applies_like_the_in_memory_one(
    cache: ContainerClient, replicas: ContainerClient, replica: BlobClient
) -> None:
    writes = [(i * MIB, rand(64 * 1024)) for i in range(9)]
    m = upload_cycle(cache, "cycle-4", writes, kind=CycleKind.INITIAL, blobs=2)
    with load_manifest(cache, m.blob_name, machine_id=MACHINE, cycle_id="cycle-4") as streamed:
        assert (streamed.extent_count, streamed.total_bytes) == (9, m.total_bytes)
        assert streamed.referenced_blob_sizes() == m.referenced_blob_sizes()
        result = apply_extents(streamed, cache=cache, replica=replica, options=ApplyOptions(window_extents=4))
    assert result.extents == 9
    assert whole(replica)[:DISK_SIZE] == expect_image(DISK_SIZE, writes)


def test_reapplying_a_manifest_is_harmless(cache: ContainerClient, replica: BlobClient) -> None:
    writes = [(0, rand(MIB)), (2 * MIB, bytes(512 * 1024)), (3 * MIB, rand(4096))]
    m = upload_cycle(cache, "cycle-0", writes)
    apply_extents(m, cache=cache, replica=replica)
    once = whole(replica)
    apply_extents(m, cache=cache, replica=replica)
    apply_extents(
        m, cache=cache, replica=replica, options=ApplyOptions(spool=SpoolMode.REREAD, parallelism=1)
    )
    assert whole(replica) == once


# --- bad uploads: a clear error, and the replica byte-identical ----------------------------------


def _tamper(cache: ContainerClient, name: str, change: Callable[[bytes], bytes]) -> None:
    blob = cache.get_blob_client(name)
    blob.upload_blob(change(blob.download_blob().readall()), overwrite=True)


def _flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x5A])


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (lambda c, n: _tamper(c, n, _flip_last_byte), ExtentChecksumMismatch),
        (lambda c, n: _tamper(c, n, lambda d: d[:-512]), CycleDataTruncated),
        (lambda c, n: _tamper(c, n, lambda d: d + bytes(512)), CycleDataOversized),
        (lambda c, n: c.delete_blob(n), CycleDataMissing),
    ],
    ids=["corrupt", "truncated", "oversized", "missing"],
)
@pytest.mark.parametrize("algorithm", [ChecksumAlgorithm.SHA256, ChecksumAlgorithm.CRC64])
def test_a_bad_upload_is_rejected_and_the_replica_is_unchanged(
    cache: ContainerClient,
    replica: BlobClient,
    damage: Callable[[ContainerClient, str], None],
    error: type[Exception],
    algorithm: ChecksumAlgorithm,
) -> None:
    apply_extents(
        upload_cycle(cache, "cycle-0", [(0, rand(5 * MIB))], kind=CycleKind.INITIAL),
        cache=cache,
        replica=replica,
    )
    before = whole(replica)
    # Two blobs: the damage is in the last one, so the first blob's extents verify fine and must still not land.
    writes = [(0, rand(MIB)), (MIB, rand(3 * MIB)), (6 * MIB, rand(MIB)), (8 * MIB, rand(MIB))]
    m = upload_cycle(cache, "cycle-1", writes, blobs=2, algorithm=algorithm)
    damage(cache, data_blob_name(MACHINE, "cycle-1", DISK, 1))
    with pytest.raises(error) as info:
        apply_extents(m, cache=cache, replica=replica)
    assert info.value.code == error.__name__  # type: ignore[attr-defined]
    assert data_blob_name(MACHINE, "cycle-1", DISK, 1) in str(info.value)
    assert whole(replica) == before


def test_a_blob_changed_after_verification_is_not_written(
    cache: ContainerClient, replica: BlobClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = [(0, rand(MIB)), (2 * MIB, rand(MIB))]
    m = upload_cycle(cache, "cycle-0", writes)
    before = whole(replica)
    real_plan = engine._plan_writes
    name = data_blob_name(MACHINE, "cycle-0", DISK, 0)

    def plan_after_a_rewrite(*args: Any) -> Any:
        # Between verification and the first write the appliance (wrongly) rewrites the blob.
        _tamper(cache, name, lambda d: d)
        return real_plan(*args)

    monkeypatch.setattr(engine, "_plan_writes", plan_after_a_rewrite)
    with pytest.raises(CycleDataChanged):
        apply_extents(m, cache=cache, replica=replica, options=ApplyOptions(spool=SpoolMode.REREAD))
    assert whole(replica) == before


# --- the replica and the manifest must match ------------------------------------------------------


def test_missing_or_wrong_sized_replica_is_refused(cache: ContainerClient, replicas: ContainerClient) -> None:
    m = upload_cycle(cache, "cycle-0", [(0, rand(4096))])
    with pytest.raises(ReplicaNotFound):
        apply_extents(m, cache=cache, replica=replicas.get_blob_client("nope.vhd"))
    other = ReplicaDiskSpec(machine_id=MACHINE, disk_id="other", disk_size=2 * DISK_SIZE)
    create_replica_disk(replicas, other)
    with pytest.raises(ReplicaSizeMismatch, match="resized"):
        apply_extents(m, cache=cache, replica=replicas.get_blob_client(other.blob_name))


def test_load_manifest_checks_identity_and_shape(cache: ContainerClient, replicas: ContainerClient) -> None:
    m = upload_cycle(cache, "cycle-3", [(0, rand(4096))])
    with load_manifest(cache, m.blob_name, machine_id=MACHINE, cycle_id="cycle-3") as loaded:
        assert loaded.to_manifest() == m
    with pytest.raises(ManifestMismatch, match="cycleId"):
        load_manifest(cache, m.blob_name, cycle_id="cycle-4")
    # The missing blob is the manifest itself, and the message says so (not "named by the manifest").
    with pytest.raises(
        CycleDataMissing, match=r"^manifest \S+/cycle-9/\S+/manifest\.json named by the CycleUploaded"
    ):
        load_manifest(cache, f"{MACHINE}/cycle-9/{DISK}/manifest.json")
    cache.upload_blob(f"{MACHINE}/cycle-5/{DISK}/manifest.json", b'{"machineId": 1}')
    with pytest.raises(ManifestInvalid):
        load_manifest(cache, f"{MACHINE}/cycle-5/{DISK}/manifest.json")
    # the activity-shaped entry point finds the replica by the manifest's machine and disk
    spec = ReplicaDiskSpec(machine_id=MACHINE, disk_id=DISK, disk_size=DISK_SIZE)
    create_replica_disk(replicas, spec)
    result = apply_manifest_blob(m.blob_name, cache=cache, replicas=replicas, machine_id=MACHINE)
    assert result.bytes_applied == 4096
    assert replicas.get_blob_client(spec.blob_name).download_blob(offset=0, length=4096).readall() == (
        cache.get_blob_client(m.extents[0].blob).download_blob().readall()
    )


# --- Put Page From URL: chosen by capability ------------------------------------------------------


def test_azurite_is_probed_once_and_found_without_put_page_from_url(
    cache: ContainerClient, replica: BlobClient
) -> None:
    forget_capabilities()
    m = upload_cycle(cache, "cycle-0", [(0, rand(4096))])
    before = whole(replica)
    source = cache.get_blob_client(m.extents[0].blob)
    url = engine._default_signer(source)
    assert url is not None and "sig=" in url
    assert supports_put_page_from_url(replica, url) is False
    assert engine._capabilities[endpoint_key(replica)] is False
    assert whole(replica) == before  # the probe wrote nothing
    result = apply_extents(m, cache=cache, replica=replica)
    assert result.write_path is WritePath.PUT_PAGE and result.put_page_from_url_calls == 0


class ServerSideCopyReplica(BlobClient):
    """Azurite with Put Page From URL: the service-side semantics (source range -> destination range,
    conditional on the source ETag and destination preconditions), carried out through the SDK so the
    engine's URL path runs against real data. Only the missing operation is supplied."""

    copies: list[tuple[int, int]]

    def upload_pages_from_url(
        self, source_url: str, offset: int, length: int, source_offset: int, **kwargs: Any
    ) -> dict[str, Any]:
        if kwargs.get("etag") is not None or kwargs.get("if_sequence_number_lt") is not None:
            # preconditions the probe uses: evaluated first, nothing copied
            err = HttpResponseError(message="ConditionNotMet")
            err.status_code = 412
            raise err
        source = BlobClient.from_blob_url(source_url)
        data = source.download_blob(
            offset=source_offset,
            length=length,
            etag=kwargs["source_etag"],
            match_condition=MatchConditions.IfNotModified,
        ).readall()
        self.copies.append((offset, length))
        return self.upload_page(data, offset=offset, length=length)


def test_put_page_from_url_path_when_the_endpoint_has_it(cache: ContainerClient, replica: BlobClient) -> None:
    forget_capabilities()
    url_replica = ServerSideCopyReplica.from_blob_url(replica.url, credential=replica.credential)
    url_replica.copies = []
    writes = [(0, rand(MIB)), (MIB, rand(MIB)), (5 * MIB, bytes(MIB)), (7 * MIB, rand(4096))]
    m = upload_cycle(cache, "cycle-0", writes, blobs=2)
    result = apply_extents(m, cache=cache, replica=url_replica)
    try:
        assert result.write_path is WritePath.PUT_PAGE_FROM_URL and result.data_source == "server-side"
        assert result.bytes_copied == 2 * MIB + 4096 and result.bytes_uploaded == 0
        assert result.bytes_cleared == MIB  # zero extents still become Clear Pages
        assert result.bytes_read == m.total_bytes  # read once, to verify
        assert whole(replica)[:DISK_SIZE] == expect_image(DISK_SIZE, writes)
        # extents adjacent on disk but in different blobs are separate copies
        assert (0, MIB) in url_replica.copies and (MIB, MIB) in url_replica.copies
    finally:
        forget_capabilities()


def test_checksums_are_those_of_the_extent_bytes() -> None:
    data = b"123456789"
    assert checksum_hex(ChecksumAlgorithm.SHA256, data) == hashlib.sha256(data).hexdigest()
    assert (
        checksum_hex(ChecksumAlgorithm.CRC64, data) == "ae8b14860a799888"
    )  # Azure Storage CRC64 check value


def test_disposing_a_cycle_removes_only_its_blobs_and_can_be_retried(cache: ContainerClient) -> None:
    upload_cycle(cache, "cycle-1", [(0, rand(4096)), (8192, rand(4096))], blobs=2)
    upload_cycle(cache, "cycle-2", [(0, rand(4096))])
    cache.upload_blob(f"{MACHINE}/cycle-10/{DISK}/manifest.json", b"{}")  # a prefix lookalike survives
    assert dispose_cycle_data(cache, MACHINE, "cycle-1") == 3  # two data blobs and the manifest
    assert dispose_cycle_data(cache, MACHINE, "cycle-1") == 0
    assert sorted(b.name for b in cache.list_blobs()) == [
        f"{MACHINE}/cycle-10/{DISK}/manifest.json",
        f"{MACHINE}/cycle-2/{DISK}/data-00000.bin",
        f"{MACHINE}/cycle-2/{DISK}/manifest.json",
    ]


def test_verify_extents_checks_everything_and_writes_nothing(
    cache: ContainerClient, replica: BlobClient
) -> None:
    before = whole(replica)
    good = upload_cycle(cache, "cycle-1", [(0, rand(MIB)), (2 * MIB, bytes(MIB))], blobs=2)
    verify_extents(good, cache=cache, replica=replica)
    assert whole(replica) == before
    bad = upload_cycle(cache, "cycle-2", [(0, rand(MIB)), (2 * MIB, rand(MIB))], blobs=2)
    _tamper(cache, data_blob_name(MACHINE, "cycle-2", DISK, 0), _flip_last_byte)
    with pytest.raises(ExtentChecksumMismatch):
        verify_extents(bad, cache=cache, replica=replica)
    assert whole(replica) == before


def test_apply_cycle_is_all_or_nothing_across_disks(
    cache: ContainerClient, replicas: ContainerClient
) -> None:
    disks = ["disk-a", "disk-b"]
    for d in disks:
        create_replica_disk(replicas, ReplicaDiskSpec(machine_id=MACHINE, disk_id=d, disk_size=DISK_SIZE))
    blobs = {d: replicas.get_blob_client(f"{MACHINE}/{d}.vhd") for d in disks}
    good = {d: [(0, rand(MIB)), (3 * MIB, rand(512))] for d in disks}
    manifests = [upload_cycle(cache, "cycle-1", good[d], disk=d) for d in disks]
    results = apply_cycle(manifests, cache=cache, replicas=replicas)
    assert [r.disk_id for r in results] == disks
    assert all(r.bytes_read == r.bytes_applied for r in results)  # one read per disk: verified and spooled
    for d in disks:
        assert whole(blobs[d])[:DISK_SIZE] == expect_image(DISK_SIZE, good[d])
    before = {d: whole(blobs[d]) for d in disks}

    # the second disk's upload is corrupt: the first disk, though fine, must not be written either
    nxt = [upload_cycle(cache, "cycle-2", [(MIB, rand(MIB))], disk=d) for d in disks]
    _tamper(cache, data_blob_name(MACHINE, "cycle-2", "disk-b", 0), _flip_last_byte)
    with pytest.raises(ExtentChecksumMismatch, match="disk-b"):
        apply_cycle(nxt, cache=cache, replicas=replicas)
    assert {d: whole(blobs[d]) for d in disks} == before
    with pytest.raises(ManifestMismatch):
        apply_cycle([manifests[0], nxt[1]], cache=cache, replicas=replicas)


# --- whole-disk copies in bounded units --------------------------------------------------------------


def test_a_resync_applied_unit_by_unit_gives_the_whole_manifests_replica(
    cache: ContainerClient, replica: BlobClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = [(0, rand(MIB)), (3 * MIB, rand(2 * MIB)), (7 * MIB, rand(MIB)), (9 * MIB, rand(1536))]
    apply_extents(upload_cycle(cache, "cycle-0", old, kind=CycleKind.INITIAL), cache=cache, replica=replica)
    fresh = [(i * 640 * 1024, rand(256 * 1024)) for i in range(12)] + [(9 * MIB, bytes(512))]
    m = upload_cycle(cache, "cycle-1", fresh, kind=CycleKind.RESYNC, blobs=2)
    limits = UnitLimits(max_extents=3, max_bytes=4 * MIB, max_span=2 * MIB)
    with load_manifest(cache, m.blob_name) as streamed:
        planned = plan_units(streamed, cache, limits)
    assert len(planned) >= 5 and sum(u.extent_count for u in planned) == len(fresh)
    assert planned[-1].disk_end == 10 * MIB and all(a.disk_end == b.disk_start for a, b in pairs(planned))
    # planning again (a retried activity) writes the same shards
    assert [u.shard_blob for u in plan_units(m, cache, limits)] == [u.shard_blob for u in planned]
    planned = plan_units(m, cache, limits)

    # a worker dies in the middle of unit 2, after its first write: units 0-1 are done, 2 is half done
    for unit in planned[:2]:
        apply_unit(unit, cache=cache, replica=replica)
    real_put = engine._Apply._put
    calls = []

    def crash_after_one(self: Any, *args: Any) -> None:
        calls.append(1)
        if len(calls) > 1:
            raise ConnectionError("worker lost")
        real_put(self, *args)

    monkeypatch.setattr(engine._Apply, "_put", crash_after_one)
    with pytest.raises(ConnectionError):
        apply_unit(planned[2], cache=cache, replica=replica, options=ApplyOptions(parallelism=1))
    monkeypatch.undo()
    # resumed at unit 2
    results = [apply_unit(unit, cache=cache, replica=replica) for unit in planned[2:]]
    assert whole(replica)[:DISK_SIZE] == expect_image(DISK_SIZE, fresh)
    assert sum(r.bytes_read for r in results) == sum(u.bytes for u in planned[2:])


def pairs(units: list[DiskUnit]) -> list[tuple[DiskUnit, DiskUnit]]:
    return list(itertools.pairwise(units))


# --- one pass: verify while writing -------------------------------------------------------------------


@pytest.mark.parametrize("read_size", [96 * 1024, 8 * MIB])
def test_one_pass_reads_once_and_gives_the_two_pass_replica(
    cache: ContainerClient, replica: BlobClient, read_size: int
) -> None:
    base = [(0, rand(9 * MIB))]
    apply_extents(upload_cycle(cache, "cycle-0", base, kind=CycleKind.INITIAL), cache=cache, replica=replica)
    # sequential 64 KiB writes (coalesced), a zero run (cleared), a piece half zero, scattered 4 KiB ones
    writes = [(MIB + i * 65536, rand(65536)) for i in range(20)]
    writes += [(3 * MIB, bytes(MIB)), (4 * MIB, bytes(2048) + rand(2048))]
    writes += [(5 * MIB + i * 300 * 1024 // 512 * 512, rand(4096)) for i in range(8)]
    m = upload_cycle(cache, "cycle-1", writes, algorithm=ChecksumAlgorithm.CRC64, blobs=2)
    result = apply_extents(
        m, cache=cache, replica=replica, options=ApplyOptions(one_pass=True, read_size=read_size)
    )
    assert result.data_source == "one-pass"
    assert result.bytes_read == m.total_bytes  # one read of the data, no spool
    assert result.bytes_cleared == MIB and result.bytes_uploaded == m.total_bytes - MIB
    assert result.put_page_calls < len(writes)  # the sequential run was coalesced
    image = expect_image(DISK_SIZE, base + writes)
    assert whole(replica)[:DISK_SIZE] == image


def test_one_pass_reports_a_damaged_upload_found_after_writing_as_a_changed_replica(
    cache: ContainerClient, replica: BlobClient
) -> None:
    # not adjacent on disk, so each is its own Put Page, written as soon as it is read
    writes = [(2 * i * MIB, rand(MIB)) for i in range(4)]
    m = upload_cycle(cache, "cycle-1", writes, algorithm=ChecksumAlgorithm.CRC64)
    corrupt = m.model_copy(
        update={"extents": [*m.extents[:3], m.extents[3].model_copy(update={"crc64": "0" * 16})]}
    )
    options = ApplyOptions(one_pass=True, parallelism=1, read_size=MIB)
    with pytest.raises(ExtentChecksumMismatch) as caught:
        apply_extents(corrupt, cache=cache, replica=replica, options=options)
    assert caught.value.replica_changed  # extents 0-2 were written before extent 3 was found damaged
    # a damage found before its run was written leaves the replica as it was, and says so
    before = whole(replica)
    first_bad = m.model_copy(
        update={"extents": [m.extents[0].model_copy(update={"crc64": "0" * 16}), *m.extents[1:]]}
    )
    with pytest.raises(ExtentChecksumMismatch) as caught:
        apply_extents(first_bad, cache=cache, replica=replica, options=options)
    assert not caught.value.replica_changed and whole(replica) == before


def test_a_whole_disk_copy_reports_its_bytes_as_it_writes_them(
    cache: ContainerClient, replica: BlobClient
) -> None:
    initial = [(0, rand(3 * MIB)), (3 * MIB, rand(2 * MIB)), (8 * MIB, rand(MIB + 1536))]
    manifest = upload_cycle(cache, "cycle-0", initial, kind=CycleKind.INITIAL)
    applied: list[int] = []
    # One writer and a tiny interval: a report after every write call.
    options = ApplyOptions(parallelism=1, progress_interval_seconds=1e-9)
    apply_extents(manifest, cache=cache, replica=replica, options=options, progress=applied.append)
    # A fresh replica has nothing to clear between the extents: the copy writes the data.
    total = 6 * MIB + 1536
    assert applied == sorted(applied) and applied[-1] == total
    assert len([a for a in applied if 0 < a < total]) >= 2


def test_a_failing_progress_report_does_not_fail_the_apply(
    cache: ContainerClient, replica: BlobClient
) -> None:
    manifest = upload_cycle(cache, "cycle-0", [(0, rand(MIB))], kind=CycleKind.INITIAL)

    def broken(applied: int) -> None:
        raise RuntimeError("the machine document is busy")

    result = apply_extents(manifest, cache=cache, replica=replica, progress=broken)
    assert result.bytes_applied == MIB


# --- one pass: the storage service checks each Put Page's CRC64 -----------------------------------------


def _damage(cache: ContainerClient, blob: str, at: int) -> None:
    """Flip one byte of an uploaded data blob (same size), as a bad upload would."""
    data = bytearray(cache.download_blob(blob).readall())
    data[at] ^= 0xFF
    cache.upload_blob(blob, bytes(data), overwrite=True)


def test_one_pass_sends_each_calls_crc64_and_the_service_refuses_a_damaged_one(
    cache: ContainerClient, replica: BlobClient
) -> None:
    before = whole(replica)
    # 16 sequential 256 KiB extents: one coalesced 4 MiB Put Page whose CRC64 is combined from theirs
    writes = [(i * 256 * 1024, rand(256 * 1024)) for i in range(16)]
    m = upload_cycle(cache, "cycle-1", writes, algorithm=ChecksumAlgorithm.CRC64)
    _damage(cache, m.extents[5].blob, m.extents[5].blob_offset + 1000)
    options = ApplyOptions(one_pass=True, parallelism=1)
    with pytest.raises(ExtentChecksumMismatch) as caught:
        apply_extents(m, cache=cache, replica=replica, options=options)
    # the service refused the call: nothing of it was written, and the damaged extent is named exactly
    assert caught.value.index == 5 and caught.value.expected == m.extents[5].crc64
    damaged = cache.download_blob(
        m.extents[5].blob, offset=m.extents[5].blob_offset, length=256 * 1024
    ).readall()
    assert caught.value.actual == checksum_hex(ChecksumAlgorithm.CRC64, damaged)
    assert not caught.value.replica_changed and whole(replica) == before


def test_one_pass_a_call_refused_among_parallel_writers_is_the_error_raised(
    cache: ContainerClient, replica: BlobClient
) -> None:
    before = whole(replica)
    # 8 runs of 512 KiB (8 extents of 64 KiB each) 512 KiB apart: 8 calls, read by 4 region readers and
    # written by 4 writers; the service refuses run 5's call
    writes = [(r * MIB + i * 65536, rand(65536)) for r in range(8) for i in range(8)]
    m = upload_cycle(cache, "cycle-1", writes, algorithm=ChecksumAlgorithm.CRC64)
    damaged = m.extents[5 * 8 + 3]
    _damage(cache, damaged.blob, damaged.blob_offset + 100)
    options = ApplyOptions(one_pass=True, parallelism=4, read_size=MIB)
    with pytest.raises(ExtentChecksumMismatch) as caught:
        apply_extents(m, cache=cache, replica=replica, options=options)
    assert caught.value.index == 5 * 8 + 3  # the writer's refusal, not another task's cancellation
    after = whole(replica)
    assert after[5 * MIB : 5 * MIB + 512 * 1024] == before[5 * MIB : 5 * MIB + 512 * 1024]  # never written
    assert caught.value.replica_changed or after == before


def test_one_pass_with_service_checks_gives_the_replica_the_worker_checks_give(
    cache: ContainerClient, replicas: ContainerClient
) -> None:
    # CRC64 extents (checked by the service), a SHA-256 one and one longer than a call (checked here), zeros
    writes = [(i * 65536, rand(65536)) for i in range(40)]
    writes += [(4 * MIB, bytes(MIB)), (6 * MIB, rand(3 * MIB))]
    m = upload_cycle(cache, "cycle-1", writes, algorithm=ChecksumAlgorithm.CRC64)
    sha = m.extents[3].model_copy(
        update={"crc64": None, "sha256": checksum_hex(ChecksumAlgorithm.SHA256, writes[3][1])}
    )
    m = m.model_copy(update={"extents": [*m.extents[:3], sha, *m.extents[4:]]})
    images = []
    for by_service in (True, False):
        spec = ReplicaDiskSpec(machine_id=MACHINE, disk_id=f"disk-{by_service}", disk_size=DISK_SIZE)
        create_replica_disk(replicas, spec)
        target = replicas.get_blob_client(spec.blob_name)
        options = ApplyOptions(one_pass=True, service_verifies_crc64=by_service)
        result = apply_extents(m, cache=cache, replica=target, options=options)
        assert result.bytes_read == m.total_bytes and result.bytes_cleared == MIB
        images.append(whole(target)[:DISK_SIZE])  # the footers differ: each names its own disk
    assert images[0] == images[1]
    assert images[0] == expect_image(DISK_SIZE, writes)


def test_one_pass_checks_a_cleared_pieces_crc64_in_the_worker(
    cache: ContainerClient, replica: BlobClient
) -> None:
    before = whole(replica)
    # the manifest promises data, the blob holds zeros: the piece would be cleared, so nothing reaches the
    # service to check; the worker checks it before clearing
    m = upload_cycle(cache, "cycle-1", [(0, bytes(MIB))], algorithm=ChecksumAlgorithm.CRC64)
    lying = m.model_copy(
        update={
            "extents": [
                m.extents[0].model_copy(update={"crc64": checksum_hex(ChecksumAlgorithm.CRC64, rand(MIB))})
            ]
        }
    )
    with pytest.raises(ExtentChecksumMismatch) as caught:
        apply_extents(lying, cache=cache, replica=replica, options=ApplyOptions(one_pass=True))
    assert caught.value.actual == checksum_hex(ChecksumAlgorithm.CRC64, bytes(MIB))
    assert not caught.value.replica_changed and whole(replica) == before
