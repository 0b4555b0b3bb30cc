"""Put Page From URL on the local stack: the blob front in front of Azurite, through the real SDK, and the
apply engine's server-side path over it (no data through the worker, the service verifying CRC64)."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import (
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    generate_blob_sas,
)
from azure.storage.extensions.checksums import crc64

import shared.replication.apply_engine as engine
from devhost.emulators import AZURITE_ACCOUNT, AZURITE_KEY, EmulatorEndpoints
from shared.domain.cycle import CycleKind
from shared.replication.apply_engine import (
    ApplyOptions,
    ExtentChecksumMismatch,
    WritePath,
    apply_extents,
    endpoint_key,
    forget_capabilities,
    supports_put_page_from_url,
)
from shared.replication.checksums import ChecksumAlgorithm, checksum_hex
from shared.replication.delta_manifest import DeltaManifest, Extent, data_blob_name
from shared.replication.page_from_url import error_code
from shared.replication.replica_disks import ReplicaDiskSpec, create_replica_disk
from shared.replication.units import UnitLimits, apply_unit, plan_units
from shared.replication.vhd import MIB

pytestmark = pytest.mark.integration

MACHINE = "vm-url"
DISK = "disk-0"
DISK_SIZE = 12 * MIB
ONE_PASS = ApplyOptions(one_pass=True)


@pytest.fixture(scope="module")
def service(emulators: EmulatorEndpoints) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(emulators.storage_connection_string)


@pytest.fixture
def container(service: BlobServiceClient) -> Iterator[ContainerClient]:
    client = service.get_container_client(f"url-{uuid.uuid4().hex[:12]}")
    client.create_container()
    yield client
    client.delete_container()


@pytest.fixture(autouse=True)
def fresh_capabilities() -> Iterator[None]:
    forget_capabilities()
    yield
    forget_capabilities()


def sas(blob: BlobClient, **permissions: bool) -> str:
    token = generate_blob_sas(
        AZURITE_ACCOUNT,
        blob.container_name,
        blob.blob_name,
        account_key=AZURITE_KEY,
        permission=BlobSasPermissions(**permissions),
        expiry=datetime.now(UTC) + timedelta(minutes=10),
    )
    return f"{blob.url}?{token}"


def crc_of(data: bytes) -> bytearray:
    return bytearray(crc64.compute(data, 0).to_bytes(8, "little"))


@pytest.fixture
def pair(container: ContainerClient) -> tuple[BlobClient, BlobClient, bytes]:
    data = os.urandom(2 * MIB)
    source = container.get_blob_client("source.bin")
    source.upload_blob(data)
    destination = container.get_blob_client("replica.vhd")
    destination.create_page_blob(4 * MIB)
    return source, destination, data


# --- the front, through the SDK -------------------------------------------------------------------


def test_a_good_range_is_copied_and_the_service_reports_its_crc64(
    pair: tuple[BlobClient, BlobClient, bytes],
) -> None:
    source, destination, data = pair
    piece = data[MIB : MIB + 4 * 1024 * 1024 // 4]
    answer = destination.upload_pages_from_url(
        sas(source, read=True),
        offset=512,
        length=len(piece),
        source_offset=MIB,
        source_contentcrc64=crc_of(piece),
    )
    assert destination.download_blob(offset=512, length=len(piece)).readall() == piece
    assert bytes(answer["content_crc64"]) == bytes(crc_of(piece))


def test_the_destination_may_be_authorized_by_a_write_sas(pair: tuple[BlobClient, BlobClient, bytes]) -> None:
    source, destination, data = pair
    writer = BlobClient.from_blob_url(sas(destination, write=True))
    writer.upload_pages_from_url(sas(source, read=True), offset=0, length=4096, source_offset=0)
    assert destination.download_blob(offset=0, length=4096).readall() == data[:4096]
    reader_only = BlobClient.from_blob_url(sas(destination, read=True))
    with pytest.raises(HttpResponseError) as refused:
        reader_only.upload_pages_from_url(sas(source, read=True), offset=8192, length=512, source_offset=0)
    assert refused.value.status_code == 403
    assert destination.download_blob(offset=8192, length=512).readall() == bytes(512)


def test_a_wrong_shared_key_is_refused_by_azurite(pair: tuple[BlobClient, BlobClient, bytes]) -> None:
    source, destination, _ = pair
    other_key = base64.b64encode(b"not the account key" * 3).decode()
    forged = BlobClient.from_blob_url(
        destination.url, credential={"account_name": AZURITE_ACCOUNT, "account_key": other_key}
    )
    with pytest.raises(HttpResponseError) as refused:
        forged.upload_pages_from_url(sas(source, read=True), offset=0, length=512, source_offset=0)
    assert refused.value.status_code == 403
    assert destination.download_blob(offset=0, length=512).readall() == bytes(512)


def test_a_wrong_crc64_is_400_crc64mismatch_and_writes_nothing(
    pair: tuple[BlobClient, BlobClient, bytes],
) -> None:
    source, destination, data = pair
    wrong = crc_of(data[:4096] + b"\x00")  # the CRC64 of other bytes
    with pytest.raises(HttpResponseError) as refused:
        destination.upload_pages_from_url(
            sas(source, read=True), offset=0, length=4096, source_offset=0, source_contentcrc64=wrong
        )
    assert (refused.value.status_code, error_code(refused.value)) == (400, "Crc64Mismatch")
    assert destination.download_blob(offset=0, length=4096).readall() == bytes(4096)
    assert not [r for r in destination.list_page_ranges() if not r.cleared]


def test_a_source_sas_without_read_is_refused(pair: tuple[BlobClient, BlobClient, bytes]) -> None:
    source, destination, _ = pair
    with pytest.raises(ResourceNotFoundError) as refused:  # the SDK's class for CannotVerifyCopySource
        destination.upload_pages_from_url(sas(source, write=True), offset=0, length=512, source_offset=0)
    assert refused.value.status_code == 403
    assert error_code(refused.value) == "CannotVerifyCopySource"
    assert destination.download_blob(offset=0, length=512).readall() == bytes(512)


def test_a_missing_source_is_404_cannot_verify_copy_source(
    pair: tuple[BlobClient, BlobClient, bytes],
) -> None:
    source, destination, _ = pair
    gone = source.container_name, "no-such-blob"
    url = sas(BlobClient(source.url.rsplit("/", 2)[0], gone[0], gone[1]), read=True)
    with pytest.raises(ResourceNotFoundError) as refused:
        destination.upload_pages_from_url(url, offset=0, length=512, source_offset=0)
    assert refused.value.status_code == 404


def test_a_misaligned_source_range_is_400(pair: tuple[BlobClient, BlobClient, bytes]) -> None:
    # The SDK checks the destination's alignment itself but not the source's: the service must.
    source, destination, _ = pair
    with pytest.raises(HttpResponseError) as refused:
        destination.upload_pages_from_url(sas(source, read=True), offset=0, length=512, source_offset=100)
    assert (refused.value.status_code, error_code(refused.value)) == (400, "InvalidHeaderValue")
    assert destination.download_blob(offset=0, length=512).readall() == bytes(512)


def test_more_than_4_mib_is_400(
    container: ContainerClient, pair: tuple[BlobClient, BlobClient, bytes]
) -> None:
    _, destination, _ = pair
    big = container.get_blob_client("big.bin")
    big.upload_blob(bytes(8 * MIB))
    with pytest.raises(HttpResponseError) as refused:
        destination.upload_pages_from_url(
            sas(big, read=True), offset=0, length=4 * MIB + 512, source_offset=0
        )
    assert refused.value.status_code == 400


def test_other_requests_pass_through_unchanged(container: ContainerClient) -> None:
    """Shared Key over every ordinary operation, a large streamed upload and a ranged download."""
    blob = container.get_blob_client("plain.bin")
    data = os.urandom(9 * MIB)
    blob.upload_blob(data, metadata={"k": "v"})
    assert blob.get_blob_properties().metadata == {"k": "v"}
    assert blob.download_blob(offset=MIB, length=MIB + 7).readall() == data[MIB : 2 * MIB + 7]
    assert [b.name for b in container.list_blobs()] == ["plain.bin"]
    assert BlobClient.from_blob_url(sas(blob, read=True)).download_blob().readall() == data


# --- the engine over it ---------------------------------------------------------------------------


def upload_cycle(
    cache: ContainerClient,
    cycle_id: str,
    writes: list[tuple[int, bytes]],
    *,
    kind: CycleKind = CycleKind.DELTA,
    algorithm: ChecksumAlgorithm = ChecksumAlgorithm.CRC64,
    corrupt: int | None = None,
) -> DeltaManifest:
    """One data blob with the writes back to back (as the appliance packs them); `corrupt` flips a byte
    of that write's data after its checksum was taken."""
    extents, parts, used = [], [], 0
    name = data_blob_name(MACHINE, cycle_id, DISK, 0)
    for i, (offset, data) in enumerate(sorted(writes)):
        extents.append(
            Extent.model_validate(
                {
                    "offset": offset,
                    "length": len(data),
                    "blob": name,
                    "blobOffset": used,
                    algorithm.value: checksum_hex(algorithm, data),
                }
            )
        )
        parts.append(data if i != corrupt else bytes([data[0] ^ 0xFF]) + data[1:])
        used += len(data)
    cache.upload_blob(name, b"".join(parts), overwrite=True)
    manifest = DeltaManifest(
        machine_id=MACHINE,
        disk_id=DISK,
        cycle_id=cycle_id,
        sequence=1,
        kind=kind,
        disk_size=DISK_SIZE,
        extents=extents,
    )
    cache.upload_blob(manifest.blob_name, manifest.to_json_bytes(), overwrite=True)
    return manifest


@pytest.fixture
def replica(container: ContainerClient) -> BlobClient:
    spec = ReplicaDiskSpec(machine_id=MACHINE, disk_id=DISK, disk_size=DISK_SIZE)
    create_replica_disk(container, spec)
    return container.get_blob_client(spec.blob_name)


def image(replica: BlobClient) -> bytes:
    return replica.download_blob(offset=0, length=DISK_SIZE).readall()


def test_the_stack_offers_put_page_from_url_and_the_probe_finds_it(
    container: ContainerClient, replica: BlobClient
) -> None:
    m = upload_cycle(container, "cycle-1", [(0, os.urandom(4096))])
    before = image(replica)
    url = engine._default_signer(container.get_blob_client(m.extents[0].blob))
    assert url is not None
    assert supports_put_page_from_url(replica, url) is True
    assert engine._capabilities[endpoint_key(replica)] is True
    assert image(replica) == before  # the probe wrote nothing


def test_one_pass_applies_server_side_with_no_data_through_the_worker(
    container: ContainerClient, replica: BlobClient
) -> None:
    unit = 256 * 1024
    run = [(MIB + i * unit, os.urandom(unit)) for i in range(20)]  # 5 MiB on disk and in the blob
    writes = [(0, os.urandom(4096)), *run, (8 * MIB, bytes(MIB)), (10 * MIB, os.urandom(512))]
    m = upload_cycle(container, "cycle-1", writes)
    result = apply_extents(m, cache=container, replica=replica, options=ONE_PASS)
    assert result.write_path is WritePath.PUT_PAGE_FROM_URL and result.data_source == "server-side"
    assert result.bytes_read == 0 and result.read_calls == 0 and result.bytes_uploaded == 0
    assert result.bytes_cleared == MIB  # the zero unit: known by its CRC64, cleared, never copied
    assert result.bytes_copied == 4096 + 20 * unit + 512
    # 5 MiB of adjacent 256 KiB extents: two calls of at most 4 MiB, each verified by its combined CRC64.
    assert result.put_page_from_url_calls == 1 + 2 + 1
    expected = bytearray(DISK_SIZE)
    for offset, data in writes:
        expected[offset : offset + len(data)] = data
    assert image(replica) == bytes(expected)


def test_a_corrupt_unit_is_rejected_by_the_service_naming_the_extent(
    container: ContainerClient, replica: BlobClient
) -> None:
    writes = [(i * 64 * 1024, os.urandom(64 * 1024)) for i in range(8)]  # one coalesced call
    m = upload_cycle(container, "cycle-1", writes, corrupt=5)
    with pytest.raises(ExtentChecksumMismatch) as rejected:
        apply_extents(m, cache=container, replica=replica, options=ONE_PASS)
    assert rejected.value.index == 5 and rejected.value.algorithm == "crc64"
    assert rejected.value.details[0]["offset"] == 5 * 64 * 1024
    # Found while writing: the caller restores the replica from its previous recovery point.
    assert rejected.value.replica_changed
    # Extents 0-4 were copied again one by one to name the damaged one; nothing of it was written.
    assert image(replica)[5 * 64 * 1024 : 6 * 64 * 1024] == bytes(64 * 1024)


def test_sha256_manifests_stream_in_one_pass(container: ContainerClient, replica: BlobClient) -> None:
    writes = [(0, os.urandom(8192))]
    m = upload_cycle(container, "cycle-1", writes, algorithm=ChecksumAlgorithm.SHA256)
    result = apply_extents(m, cache=container, replica=replica, options=ONE_PASS)
    assert result.write_path is WritePath.PUT_PAGE and result.bytes_read == 8192
    assert image(replica)[:8192] == writes[0][1]


def test_two_passes_verify_first_then_copy_server_side(
    container: ContainerClient, replica: BlobClient
) -> None:
    writes = [(0, os.urandom(8192)), (MIB, os.urandom(4096))]
    m = upload_cycle(container, "cycle-1", writes, corrupt=1)
    with pytest.raises(ExtentChecksumMismatch) as rejected:
        apply_extents(m, cache=container, replica=replica)
    assert not rejected.value.replica_changed and image(replica) == bytes(DISK_SIZE)
    good = upload_cycle(container, "cycle-2", writes)
    result = apply_extents(good, cache=container, replica=replica)
    assert result.write_path is WritePath.PUT_PAGE_FROM_URL and result.bytes_read == 12288
    assert result.bytes_copied == 12288


def test_a_whole_disk_unit_copies_server_side_and_clears_old_data(
    container: ContainerClient, replica: BlobClient
) -> None:
    replica.upload_page(os.urandom(MIB), offset=6 * MIB, length=MIB)  # old data outside the new copy
    writes = [(0, os.urandom(4 * MIB)), (4 * MIB, os.urandom(MIB))]
    m = upload_cycle(container, "cycle-0", writes, kind=CycleKind.INITIAL)
    units = plan_units(m, container, UnitLimits(max_bytes=4 * MIB))
    results = [apply_unit(u, cache=container, replica=replica) for u in units]
    assert all(r.write_path is WritePath.PUT_PAGE_FROM_URL and r.bytes_read == 0 for r in results)
    expected = bytearray(DISK_SIZE)
    for offset, data in writes:
        expected[offset : offset + len(data)] = data
    assert image(replica) == bytes(expected)
