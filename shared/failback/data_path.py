"""The reverse data path of one disk: its snapshot, what must be sent, and the commands that send it.

On the change-record path the control plane only lists ranges (the page-range diff between two
incremental snapshots, and the appliance's own change record); the appliance reads the data straight
from the snapshot under a read SAS and checks each ranged GET against the storage service's
transactional CRC64, so no disk data passes through the Functions app. Only the hash fallback (no change
record, or no diff) reads the snapshot here, to hash its blocks: that is slower, costs the app's
bandwidth, and is said in an event each time it happens.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Generator, Sequence
from datetime import datetime
from typing import Final

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient

from shared.domain.command import (
    ApplyReverseManifest,
    BlockHashes,
    ManifestRange,
    RangeOp,
)
from shared.failback import manifest as plans
from shared.failback import snapshot_diff
from shared.failback.manifest import ManifestTotals, PlannedRange, Range
from shared.migration.resource_kinds import ResourceKind, delete_resource, parse_arm_id, resource_id
from shared.migration.tags import Purpose, ResourceTags
from shared.platform.arm_clients import ArmClients
from shared.platform.arm_errors import ArmError

# Read access the appliance gets to a snapshot: long enough to read a busy cycle's changes; ended as soon
# as the cycle's commands are answered.
APPLY_ACCESS_SECONDS: Final = 60 * 60
HASH_READ_CHUNK: Final = 4 * 1024 * 1024


class DiffUnavailable(Exception):
    """The Azure disk's changes cannot be listed (baseline snapshot gone, disk resized, ...)."""


def reverse_tags(machine_id: str, job_id: str, now: datetime) -> ResourceTags:
    """Reverse snapshots outlive their job as the failback baseline does, so they carry its purpose:
    the sweeper (temporary resources only) leaves them; the reverse flow deletes its own."""
    return ResourceTags(
        machine_id=machine_id, job_id=job_id, purpose=Purpose.FAILBACK_BASELINE, created_at=now
    )


def delete_snapshot(clients: ArmClients, snapshot_id: str) -> None:
    """End any read access, then delete; an absent snapshot counts as deleted."""
    snapshot_diff.end_read_access(clients, snapshot_id)
    delete_resource(clients, snapshot_id)


def prune_before(clients: ArmClients, disk_id: str, kept_snapshot_id: str) -> list[str]:
    """Delete the disk's incremental snapshots older than the one kept."""
    return snapshot_diff.delete_snapshots_before(
        clients,
        parse_arm_id(kept_snapshot_id).resource_group,
        disk_id=disk_id,
        oldest_kept_id=kept_snapshot_id,
    )


def azure_disk_size(clients: ArmClients, disk_id: str) -> int | None:
    parsed = parse_arm_id(disk_id)
    found = clients.compute.disks.get(parsed.resource_group, parsed.name)
    size = found.properties.disk_size_bytes if found.properties is not None else None
    return int(size) if size else None


def reverse_snapshot_name(disk_name: str, cycle_id: str) -> str:
    return f"{disk_name[:50]}-rv-{cycle_id[-24:]}"


def reverse_snapshot_id(disk_id: str, cycle_id: str) -> str:
    """Known before the snapshot is taken, so a failure after it can delete it."""
    disk = parse_arm_id(disk_id)
    return resource_id(
        ResourceKind.SNAPSHOT,
        disk.subscription,
        disk.resource_group,
        reverse_snapshot_name(disk.name, cycle_id),
    )


def take_snapshot(clients: ArmClients, disk_id: str, cycle_id: str, tags: ResourceTags) -> tuple[str, int]:
    """S_k of one Azure disk (idempotent by name) and the disk's size in bytes."""
    parsed = parse_arm_id(disk_id)
    disk = clients.compute.disks.get(parsed.resource_group, parsed.name)
    size = int(disk.properties.disk_size_bytes or 0) if disk.properties else 0
    snapshot = snapshot_diff.take_incremental_snapshot(
        clients,
        parsed.resource_group,
        reverse_snapshot_name(parsed.name, cycle_id),
        location=str(disk.location),
        disk_id=disk_id,
        tags=tags,
    )
    return snapshot.id, size


def plan_from_diff(
    clients: ArmClients,
    previous_snapshot_id: str,
    current_snapshot_id: str,
    disk_size: int,
    *,
    on_premises_changed: Sequence[Range] = (),
) -> list[PlannedRange]:
    """Writes and zeros from the page-range diff (united with the on-premises changes). DiffUnavailable
    when Azure cannot answer it."""
    written: list[Range] = []
    cleared: list[Range] = []
    try:
        for changed in snapshot_diff.changed_ranges(clients, previous_snapshot_id, current_snapshot_id):
            (written if changed.op is snapshot_diff.RangeOp.WRITE else cleared).append(
                (changed.offset, changed.length)
            )
    except (HttpResponseError, ArmError) as exc:
        raise DiffUnavailable(
            f"the changes between {parse_arm_id(previous_snapshot_id).name} and "
            f"{parse_arm_id(current_snapshot_id).name} could not be listed: {exc}"
        ) from exc
    return plans.plan_from_changes(
        disk_size,
        azure_changed=written,
        azure_cleared=cleared,
        on_premises_changed=[(o, n) for o, n in on_premises_changed if o < disk_size],
    )


class HashesUnreadable(Exception):
    """The appliance's block hashes cannot be read (a blob outside its machine's prefix, gone, torn)."""


def block_digests(answer: BlockHashes, machine_id: str, cache: ContainerClient) -> list[bytes]:
    """The digests of a HashDiskBlocks answer: inline, or (a large disk) from the blob the appliance
    uploaded to the cache container under its machine's prefix, one per block of the disk."""
    if answer.hashes is not None:
        packed = base64.b64decode(answer.hashes)
    else:
        name = answer.hashes_blob or ""
        # The appliance's upload credentials are scoped to its machine's prefix: any other name is not its.
        if not name.startswith(f"{machine_id}/") or ".." in name.split("/"):
            raise HashesUnreadable(f"block hashes blob {name!r} is not under machine {machine_id}'s uploads")
        try:
            packed = cache.get_blob_client(name).download_blob(max_concurrency=1).readall()
        except ResourceNotFoundError:
            raise HashesUnreadable(
                f"block hashes blob {name!r} does not exist in the cache container"
            ) from None
    blocks = len(answer.pieces())
    try:
        found = plans.digests(packed)
    except ValueError as exc:
        raise HashesUnreadable(str(exc)) from None
    if len(found) != blocks:
        raise HashesUnreadable(
            f"{len(found)} block hashes for {blocks} pieces of {answer.block_size} bytes of disk {answer.disk_id}"
        )
    return found


def _snapshot_pieces(
    blob: BlobClient, spans: Sequence[Range], block_size: int
) -> Generator[tuple[int, bytes], None, None]:
    """(offset, bytes) of each `block_size` piece of the spans, read in chunks of whole pieces."""
    chunk_size = max(block_size, HASH_READ_CHUNK // block_size * block_size)
    for start, span in spans:
        offset, end = start, start + span
        while offset < end:
            length = min(chunk_size, end - offset)
            chunk = blob.download_blob(offset=offset, length=length, max_concurrency=1).readall()
            for at in range(0, len(chunk), block_size):
                yield offset + at, chunk[at : at + block_size]
            offset += length


def differing_ranges(
    clients: ArmClients,
    current_snapshot_id: str,
    disk_size: int,
    *,
    on_premises: Sequence[bytes],
    block_size: int,
) -> list[Range]:
    """The coarse pass: the blocks of S_k whose hash differs from the appliance's (writes and zeros
    alike), coalesced; what the finer pass hashes again in small pieces. Reads the whole snapshot."""
    with snapshot_diff.read_access(clients, [current_snapshot_id]) as (sas,):
        blob = snapshot_diff.blob_client_from_sas(sas)
        azure = [
            hashlib.sha256(data).digest() for _, data in _snapshot_pieces(blob, [(0, disk_size)], block_size)
        ]
    planned = plans.differing_blocks(disk_size, block_size, on_premises=on_premises, azure=azure)
    return plans.union((r.offset, r.length) for r in planned)


def plan_from_hashes(
    clients: ArmClients,
    current_snapshot_id: str,
    disk_size: int,
    *,
    on_premises: Sequence[bytes],
    block_size: int,
    ranges: Sequence[Range] | None = None,
) -> list[ManifestRange]:
    """The pieces of S_k (every block, or the pieces of `ranges`: the finer pass) whose hash differs
    from the appliance's, adjacent ones joined into writes with their CRC64 (the bytes are read here
    anyway), all-zero pieces as zeros. The fallback only: it reads the snapshot through the app."""
    spans = list(ranges) if ranges is not None else [(0, disk_size)]
    with snapshot_diff.read_access(clients, [current_snapshot_id]) as (sas,):
        blob = snapshot_diff.blob_client_from_sas(sas)
        return plans.plan_pieces(_snapshot_pieces(blob, spans, block_size), on_premises)


def totals_of(manifest: Sequence[ManifestRange | PlannedRange], disk_size: int) -> ManifestTotals:
    return plans.totals(manifest, disk_size)


def apply_requests(
    disk_id: str, cycle_id: str, snapshot_sas: str, manifest: Sequence[ManifestRange]
) -> list[ApplyReverseManifest]:
    """One ApplyReverseManifest per part of at most 4096 ranges."""
    return [
        ApplyReverseManifest(
            disk_id=disk_id, snapshot_read_url=snapshot_sas, reverse_cycle_id=cycle_id, manifest=part
        )
        for part in plans.split_manifest(list(manifest))
    ]


def writes_in(manifest: Sequence[ManifestRange]) -> int:
    return sum(r.length for r in manifest if r.op is RangeOp.WRITE)
