"""On Azurite: the appliance's side of reverse protection, on raw disk images.

A page blob snapshot with a read SAS stands in for a managed-disk snapshot under read access: the
appliance reads it with the same ranged GETs. The manifests are planned with shared/failback/manifest.py
as the control plane plans them, from change records or from the two sides' block hashes.
"""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import os
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from azure.storage.blob import (
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    generate_blob_sas,
)

from appliance.control_plane import ApplianceApi, ApplianceEvents
from appliance.replicator import MachineReplicator, SourceDisk
from appliance.reverse import (
    CHECKSUM_MISMATCH,
    DISK_TOO_SMALL,
    SNAPSHOT_READ_FAILED,
    PowerSwitch,
    ReverseApplyOptions,
    apply_reverse_manifest,
    block_hashes_answer,
    hash_blocks,
)
from devhost.emulators import AZURITE_ACCOUNT, AZURITE_KEY, EmulatorEndpoints
from shared.domain.command import (
    ApplianceCommand,
    ApplyReverseManifest,
    BlockHashes,
    ChangedBlocks,
    CommandAnswer,
    CommandKind,
    HashDiskBlocks,
    ManifestRange,
    PowerChanged,
    PowerOffMachine,
    PowerOnMachine,
    PowerState,
    RangeOp,
    ReportChangedBlocks,
    ReverseManifestApplied,
)
from shared.domain.cycle import CycleKind
from shared.failback.manifest import (
    PlannedRange,
    crc64_hex,
    differing_blocks,
    digests,
    plan_from_changes,
    to_manifest,
    totals,
)

pytestmark = pytest.mark.integration

KIB = 1024
MIB = 1024 * KIB
DISK = 16 * MIB
NOW = datetime(2026, 12, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def container(emulators: EmulatorEndpoints) -> Iterator[ContainerClient]:
    service = BlobServiceClient.from_connection_string(emulators.storage_connection_string)
    client = service.get_container_client(f"reverse-{uuid.uuid4().hex[:10]}")
    client.create_container()
    yield client
    client.delete_container()


class AzureDisk:
    """A page blob playing the Azure VM's disk; `snapshot()` gives a read SAS URL of a snapshot of it."""

    def __init__(self, container: ContainerClient, size: int = DISK) -> None:
        self.blob: BlobClient = container.get_blob_client(f"disk-{uuid.uuid4().hex[:8]}")
        self.blob.create_page_blob(size)
        self.size = size

    def write(self, offset: int, data: bytes) -> None:
        for start in range(0, len(data), 4 * MIB):
            chunk = data[start : start + 4 * MIB]
            self.blob.upload_page(chunk, offset=offset + start, length=len(chunk))

    def clear(self, offset: int, length: int) -> None:
        self.blob.clear_page(offset=offset, length=length)

    def snapshot(self) -> tuple[str, bytes]:
        snap = self.blob.create_snapshot()["snapshot"]
        sas = generate_blob_sas(
            AZURITE_ACCOUNT,
            self.blob.container_name,
            self.blob.blob_name,
            snapshot=snap,
            account_key=AZURITE_KEY,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        url = f"{self.blob.url}?snapshot={snap}&{sas}"
        data = BlobClient.from_blob_url(url).download_blob().readall()
        return url, data


def make_image(path: Path, size: int = DISK, seed: int = 1) -> Path:
    rng = random.Random(seed)
    path.write_bytes(rng.randbytes(size // 2) + bytes(size - size // 2))
    return path


def manifest_for(planned: list[PlannedRange], azure: bytes) -> list[ManifestRange]:
    crcs = {r.offset: crc64_hex(azure[r.offset : r.end]) for r in planned if r.op is RangeOp.WRITE}
    return to_manifest(planned, crcs)


def request(url: str, manifest: list[ManifestRange], cycle: str = "rc-000001") -> ApplyReverseManifest:
    return ApplyReverseManifest(
        disk_id="disk-0", snapshot_read_url=url, reverse_cycle_id=cycle, manifest=manifest
    )


def scattered_writes(disk: AzureDisk, seed: int, count: int = 12) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    ranges = []
    for _ in range(count):
        offset = rng.randrange(0, DISK // 512 - 2048) * 512
        length = rng.randrange(1, 2048) * 512
        disk.write(offset, rng.randbytes(length))
        ranges.append((offset, length))
    return ranges


# --- applying a manifest ----------------------------------------------------------------------------


def test_a_manifest_from_change_records_makes_the_image_equal_to_the_snapshot(
    container: ContainerClient, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "disk-0.img")
    disk = AzureDisk(container)
    disk.write(0, image.read_bytes()[: DISK // 2])  # the failover point: Azure starts as on-premises was
    # After the failover: the Azure VM writes and trims, the on-premises machine wrote a little too.
    azure_changed = scattered_writes(disk, seed=7)
    disk.clear(4 * MIB, 2 * MIB)
    on_prem_changed = [(9 * MIB, 64 * KIB), (12 * MIB + 512, 4 * KIB)]
    with image.open("r+b") as f:
        for offset, length in on_prem_changed:
            f.seek(offset)
            f.write(b"\xee" * length)
    url, azure = disk.snapshot()

    planned = plan_from_changes(
        DISK,
        azure_changed=azure_changed,
        azure_cleared=[(4 * MIB, 2 * MIB)],
        on_premises_changed=on_prem_changed,
    )
    answer, error = apply_reverse_manifest(image, request(url, manifest_for(planned, azure)))

    assert error is None and answer.complete
    assert image.read_bytes() == azure
    t = totals(planned, DISK)
    assert answer.bytes_read == answer.bytes_written == t.bytes_transferred
    assert answer.bytes_zeroed == t.bytes_zeroed == 2 * MIB
    assert all(r.verified and not r.already_applied for r in answer.ranges)
    assert not image.with_name(image.name + ".reverse.json").exists()  # done: no journal left


def test_a_manifest_from_block_hashes_makes_the_image_equal_to_the_snapshot(
    container: ContainerClient, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "disk-0.img", seed=3)
    disk = AzureDisk(container)
    disk.write(0, make_image(tmp_path / "other.img", seed=4).read_bytes()[: 10 * MIB])
    url, azure = disk.snapshot()

    size, on_prem_digests = hash_blocks(image, MIB)
    azure_digests = [hashlib.sha256(azure[i : i + MIB]).digest() for i in range(0, DISK, MIB)]
    planned = differing_blocks(DISK, MIB, on_premises=digests(on_prem_digests), azure=azure_digests)
    answer, error = apply_reverse_manifest(image, request(url, manifest_for(planned, azure)))

    assert size == DISK and error is None
    assert image.read_bytes() == azure
    # Both disks hold 8 MiB of (different) data and zeros after: only the data blocks differ.
    assert answer.bytes_read == 8 * MIB
    assert answer.bytes_zeroed == 0


def test_a_range_whose_crc_does_not_match_is_refused_and_nothing_of_it_is_written(
    container: ContainerClient, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "disk-0.img")
    before = image.read_bytes()
    disk = AzureDisk(container)
    disk.write(0, random.Random(5).randbytes(3 * MIB))
    url, azure = disk.snapshot()
    planned = plan_from_changes(DISK, azure_changed=[(0, 3 * MIB)], max_unit=MIB)
    manifest = manifest_for(planned, azure)
    manifest[1] = manifest[1].model_copy(update={"crc64": "0123456789abcdef"})

    answer, error = apply_reverse_manifest(
        image, request(url, manifest), options=ReverseApplyOptions(retry_delay_seconds=0.0)
    )

    after = image.read_bytes()
    assert error is not None and error.code == CHECKSUM_MISMATCH
    assert f"range {MIB}+{MIB}: CRC64 of the bytes read is {crc64_hex(azure[MIB : 2 * MIB])}" in error.message
    assert "the manifest says 0123456789abcdef" in error.message and "1 of 3 ranges" in error.message
    assert after[MIB : 2 * MIB] == before[MIB : 2 * MIB]  # the refused range is untouched
    assert after[:MIB] == azure[:MIB] and after[2 * MIB : 3 * MIB] == azure[2 * MIB : 3 * MIB]
    assert [r.verified for r in answer.ranges] == [True, False, True]
    assert answer.ranges[1].crc64 == crc64_hex(azure[MIB : 2 * MIB])
    assert answer.bytes_written == 2 * MIB and not answer.complete


def test_a_disk_smaller_than_the_manifest_is_refused_before_anything_is_read(
    container: ContainerClient, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "disk-0.img", size=2 * MIB)
    before = image.read_bytes()
    disk = AzureDisk(container)
    disk.write(3 * MIB, b"\x01" * MIB)
    url, azure = disk.snapshot()
    manifest = manifest_for(plan_from_changes(DISK, azure_changed=[(3 * MIB, MIB)]), azure)
    answer, error = apply_reverse_manifest(image, request(url, manifest))
    assert error is not None and error.code == DISK_TOO_SMALL and "Grow the on-premises disk" in error.message
    assert answer.bytes_read == 0 and image.read_bytes() == before


def test_an_unreadable_snapshot_is_a_clear_error(container: ContainerClient, tmp_path: Path) -> None:
    image = make_image(tmp_path / "disk-0.img")
    disk = AzureDisk(container)
    disk.write(0, b"\x02" * MIB)
    url, azure = disk.snapshot()
    revoked = url.replace("sig=", "sig=AAAA")  # a SAS whose signature no longer holds
    manifest = manifest_for(plan_from_changes(DISK, azure_changed=[(0, MIB)]), azure)
    answer, error = apply_reverse_manifest(
        image, request(revoked, manifest), options=ReverseApplyOptions(retry_delay_seconds=0.0)
    )
    assert error is not None and error.code == SNAPSHOT_READ_FAILED and f"reading 0+{MIB}" in error.message
    assert answer.bytes_read == 0


def _crash_after(url: str, image: str, req: dict[str, Any], reads: int) -> None:
    """Child process: apply, and die abruptly (no clean-up, no flush) on the `reads`-th ranged read."""
    from appliance.reverse import SnapshotReader

    class Crashing(SnapshotReader):
        count = 0

        def read(self, offset: int, length: int) -> bytes:
            Crashing.count += 1
            if Crashing.count >= reads:
                os._exit(137)
            return super().read(offset, length)

    apply_reverse_manifest(
        Path(image),
        ApplyReverseManifest.model_validate(req),
        reader=Crashing(url),
        options=ReverseApplyOptions(concurrency=2),
    )


def test_a_crash_mid_apply_then_the_same_manifest_again_ends_equal(
    container: ContainerClient, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "disk-0.img")
    disk = AzureDisk(container)
    disk.write(0, random.Random(11).randbytes(12 * MIB))
    disk.clear(13 * MIB, MIB)
    url, azure = disk.snapshot()
    planned = plan_from_changes(
        DISK, azure_changed=[(0, 12 * MIB)], azure_cleared=[(13 * MIB, MIB)], max_unit=256 * KIB
    )
    req = request(url, manifest_for(planned, azure))

    child = multiprocessing.get_context("fork").Process(
        target=_crash_after, args=(url, str(image), req.to_wire(), 30)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 137
    assert image.read_bytes() != azure  # the crash left it half done

    answer, error = apply_reverse_manifest(image, req)
    assert error is None and image.read_bytes() == azure
    skipped = [r for r in answer.ranges if r.already_applied]
    assert skipped, "the journal let the retry skip ranges written before the crash"
    assert answer.bytes_read == sum(
        r.length for r in answer.ranges if r.op is RangeOp.WRITE and not r.already_applied
    )

    # And once more, with no journal left: the same manifest again changes nothing.
    again, error = apply_reverse_manifest(image, req)
    assert error is None and image.read_bytes() == azure and not any(r.already_applied for r in again.ranges)


# --- hashing ------------------------------------------------------------------------------------------


def test_block_hashes_are_sha256_per_block_inline_or_in_a_blob(
    container: ContainerClient, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "disk-0.img", size=9 * MIB + 512)
    data = image.read_bytes()
    expected = b"".join(hashlib.sha256(data[i : i + MIB]).digest() for i in range(0, len(data), MIB))
    inline = block_hashes_answer(image, disk_id="disk-0", block_size=MIB)
    assert inline.disk_size == len(data) and inline.hashes is not None
    assert base64.b64decode(inline.hashes) == expected and len(expected) == 10 * 32  # the last block clipped

    # 512-byte blocks of 9 MiB are too many to answer inline: they go to the cache container.
    small = [hashlib.sha256(data[i : i + 512]).digest() for i in range(0, len(data), 512)]
    big = block_hashes_answer(
        image,
        disk_id="disk-0",
        block_size=512,
        uploads=container,
        machine_id="m-1",
        answer_id="c-1",
    )
    assert big.hashes is None and big.hashes_blob == "m-1/c-1/disk-0/block-hashes.sha256"
    assert container.get_blob_client(big.hashes_blob).download_blob().readall() == b"".join(small)


def test_a_finer_pass_hashes_only_the_pieces_of_its_ranges_and_refuses_bytes_past_the_disk(
    container: ContainerClient, tmp_path: Path
) -> None:
    source = replicator(container, tmp_path)
    data = source.disks[0].path.read_bytes()
    ranges = [(MIB, 8 * KIB), (5 * MIB + 4 * KIB, 6 * KIB)]
    pieces = [(MIB, 4096), (MIB + 4096, 4096), (5 * MIB + 4096, 4096), (5 * MIB + 8192, 2048)]
    api = RecordingApi(
        [
            ApplianceCommand.of(
                HashDiskBlocks(disk_id="disk-0", block_size=4096, ranges=ranges),
                command_id="c-fine",
                appliance_id="a-1",
                machine_id=source.machine_id,
                created_at=NOW,
            ),
            ApplianceCommand.of(
                HashDiskBlocks(disk_id="disk-0", block_size=4096, ranges=[(8 * MIB - 4096, 8192)]),
                command_id="c-past",
                appliance_id="a-1",
                machine_id=source.machine_id,
                created_at=NOW,
            ),
        ]
    )
    source.handle_commands(cast(ApplianceApi, api))
    fine = api.acks["c-fine"]
    assert fine is not None and isinstance(fine.result, BlockHashes) and fine.error is None
    assert fine.result.ranges == ranges and fine.result.pieces() == pieces
    assert base64.b64decode(fine.result.hashes or "") == b"".join(
        hashlib.sha256(data[o : o + n]).digest() for o, n in pieces
    )
    past = api.acks["c-past"]
    assert past is not None and past.result is None and past.error is not None
    assert past.error.code == "OnPremisesDiskTooSmall" and "ends beyond the disk" in past.error.message
    source.close()


# --- the replicator: change records and the command dispatch -----------------------------------------


class RecordingEvents:
    """The appliance's outbound events, recorded: these tests are about what it tracks, not what it sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def cycle_started(self, **data: Any) -> str:
        self.sent.append(("started", data))
        return uuid.uuid4().hex

    def cycle_uploaded(self, **data: Any) -> str:
        self.sent.append(("uploaded", data))
        return uuid.uuid4().hex

    def cycle_failed(self, **data: Any) -> str:
        self.sent.append(("failed", data))
        return uuid.uuid4().hex


class RecordingApi:
    def __init__(self, commands: list[ApplianceCommand]) -> None:
        self.pending = [c.to_wire() for c in commands]
        self.acks: dict[str, CommandAnswer | None] = {}

    def commands(self) -> list[dict[str, Any]]:
        return [c for c in self.pending if c["id"] not in self.acks]

    def acknowledge(self, command_id: str, answer: CommandAnswer | None = None) -> None:
        self.acks[command_id] = answer


def replicator(container: ContainerClient, tmp_path: Path, flavour: str = "vmware") -> MachineReplicator:
    machine_id = f"vm-{uuid.uuid4().hex[:8]}"
    image = make_image(tmp_path / f"{machine_id}-disk-0.img", size=8 * MIB)
    return MachineReplicator(
        machine_id,
        [SourceDisk("disk-0", image, is_os_disk=True)],
        container,
        cast(ApplianceEvents, RecordingEvents()),
        flavour=flavour,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("flavour", ["vmware", "hyperv"])
def test_changed_blocks_since_a_cycle_are_the_later_cycles_and_the_writes_since(
    container: ContainerClient, tmp_path: Path, flavour: str
) -> None:
    source = replicator(container, tmp_path, flavour)
    source.run_cycle(CycleKind.INITIAL)
    source.write("disk-0", 0, b"\x01" * 4096)
    point = source.run_cycle(CycleKind.DELTA)  # the failover's recovery point comes from this cycle
    source.write("disk-0", 2 * MIB, b"\x02" * 512)
    source.run_cycle(CycleKind.DELTA)  # sent, but after the point
    source.write("disk-0", 5 * MIB, b"\x03" * 8192)  # never sent: the machine was shut down

    changed = source.changed_since("disk-0", point.cycle_id)
    assert changed.available
    granule = 64 * KIB if flavour == "vmware" else 512  # CBT's blocks, or Hyper-V's exact writes
    assert changed.ranges == [(2 * MIB, max(granule, 512)), (5 * MIB, max(granule, 8192))]

    unknown = source.changed_since("disk-0", "vm-never-000001-abcd")
    assert not unknown.available and "no record of cycle" in (unknown.reason or "")
    source.close()


def test_changed_blocks_are_unavailable_after_a_tracking_reset_or_a_resync(
    container: ContainerClient, tmp_path: Path
) -> None:
    source = replicator(container, tmp_path)
    source.run_cycle(CycleKind.INITIAL)
    point = source.run_cycle(CycleKind.DELTA)
    source.run_cycle(CycleKind.RESYNC)
    after_resync = source.changed_since("disk-0", point.cycle_id)
    assert not after_resync.available and "compare block hashes" in (after_resync.reason or "")

    point = source.run_cycle(CycleKind.DELTA)
    source.close()
    # Written behind the tracker's back (an unclean shutdown): CBT cannot vouch for its bitmap.
    with source.disks[0].path.open("r+b") as f:
        f.write(b"\x09" * 512)
    reopened = MachineReplicator(
        source.machine_id, source.disks, container, cast(ApplianceEvents, RecordingEvents())
    )
    reset = reopened.changed_since("disk-0", point.cycle_id)
    assert not reset.available and "An error occurred while trying to fetch changed blocks" in (
        reset.reason or ""
    )


def test_the_appliance_carries_out_a_reprotect_sequence_of_commands(
    container: ContainerClient, tmp_path: Path
) -> None:
    source = replicator(container, tmp_path)
    source.run_cycle(CycleKind.INITIAL)
    point = source.run_cycle(CycleKind.DELTA)
    disk = AzureDisk(container, size=8 * MIB)
    disk.write(0, source.disks[0].path.read_bytes()[: 4 * MIB])
    disk.write(6 * MIB, b"\x42" * MIB)
    url, azure = disk.snapshot()

    def command(n: int, req: Any) -> ApplianceCommand:
        return ApplianceCommand.of(
            req, command_id=f"c-{n}", appliance_id="a-1", machine_id=source.machine_id, created_at=NOW
        )

    apply = request(
        url,
        manifest_for(
            differing_blocks(
                8 * MIB,
                MIB,
                on_premises=[],
                azure=[hashlib.sha256(azure[i : i + MIB]).digest() for i in range(0, 8 * MIB, MIB)],
            ),
            azure,
        ),
    )
    api = RecordingApi(
        [
            command(1, ApplyReverseManifest.model_validate(apply.to_wire())),  # refused: still running
            command(2, ReportChangedBlocks(disk_id="disk-0", since_cycle_id=point.cycle_id)),
            command(3, HashDiskBlocks(disk_id="disk-0")),
            command(4, PowerOffMachine()),
            command(5, ApplyReverseManifest.model_validate({**apply.to_wire(), "reverseCycleId": "rc-2"})),
            command(6, HashDiskBlocks(disk_id="disk-9")),
            command(7, PowerOnMachine()),
        ]
    )
    # The power-off comes after the first apply in the queue, so that apply is refused; run in order.
    assert source.handle_commands(cast(ApplianceApi, api)) == []
    acks = api.acks
    assert acks["c-1"] is not None and acks["c-1"].error is not None
    assert acks["c-1"].error.code == "OnPremisesMachineRunning"
    changed = acks["c-2"].result if acks["c-2"] else None
    assert isinstance(changed, ChangedBlocks) and changed.available and changed.ranges == []
    hashes = acks["c-3"].result if acks["c-3"] else None
    assert isinstance(hashes, BlockHashes) and hashes.hashes is not None
    off = acks["c-4"].result if acks["c-4"] else None
    assert off == PowerChanged(kind=PowerOffMachine().kind, power_state=PowerState.OFF, changed=True)
    applied = acks["c-5"].result if acks["c-5"] else None
    assert isinstance(applied, ReverseManifestApplied) and applied.complete
    assert source.disks[0].path.read_bytes() == azure
    assert acks["c-6"] is not None and acks["c-6"].error is not None
    assert acks["c-6"].error.code == "OnPremisesDiskNotFound"
    assert PowerSwitch(source.disks[0].path.parent, source.machine_id).state is PowerState.ON
    source.close()


def test_shut_down_source_is_answered_with_the_power_state(
    container: ContainerClient, tmp_path: Path
) -> None:
    source = replicator(container, tmp_path)
    shutdown = {
        "id": "c-shutdown",
        "applianceId": "a-1",
        "machineId": source.machine_id,
        "kind": "ShutDownSource",
        "status": "Pending",
        "createdAt": NOW.isoformat(),
    }
    api = RecordingApi([])
    api.pending = [shutdown]
    assert source.handle_commands(cast(ApplianceApi, api)) == []
    answer = api.acks["c-shutdown"]
    assert answer is not None and answer.result == PowerChanged(
        kind=CommandKind.SHUT_DOWN_SOURCE, power_state=PowerState.OFF, changed=True
    )
    assert source.power.state is PowerState.OFF
    # Asked again (a retried command): it is off already, and says so.
    api.acks.clear()
    source.handle_commands(cast(ApplianceApi, api))
    again = api.acks["c-shutdown"]
    assert again is not None and isinstance(again.result, PowerChanged) and not again.result.changed
    source.close()
