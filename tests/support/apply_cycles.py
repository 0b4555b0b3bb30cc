"""Apply helpers that only the tests use, built on the apply engine's public steps.

The product applies a cycle through the replication orchestration, one activity per disk (verify every
disk of a multi-disk cycle first, then apply each); these helpers apply a manifest, or a whole cycle,
in one call so a test can drive the engine against the storage emulator directly.
"""

from __future__ import annotations

from collections.abc import Sequence

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.replication.apply_engine import (
    ApplyOptions,
    ApplyResult,
    ManifestMismatch,
    ManifestSource,
    SourceUrlSigner,
    _Apply,
    _default_signer,
    apply_extents,
    load_manifest,
)
from shared.replication.delta_manifest import cycle_prefix
from shared.replication.replica_disks import replica_blob_name


def apply_manifest_blob(
    manifest_blob_name: str,
    *,
    cache: ContainerClient,
    replicas: ContainerClient,
    machine_id: str | None = None,
    cycle_id: str | None = None,
    options: ApplyOptions | None = None,
) -> ApplyResult:
    """Load a manifest by name, find its replica, apply."""
    with load_manifest(cache, manifest_blob_name, machine_id=machine_id, cycle_id=cycle_id) as manifest:
        replica = replicas.get_blob_client(replica_blob_name(manifest.machine_id, manifest.disk_id))
        return apply_extents(manifest, cache=cache, replica=replica, options=options)


def apply_cycle(
    manifests: Sequence[ManifestSource],
    *,
    cache: ContainerClient,
    replicas: ContainerClient,
    options: ApplyOptions | None = None,
    source_url_signer: SourceUrlSigner | None = None,
) -> list[ApplyResult]:
    """Apply every disk of one cycle all-or-nothing: every disk is checked and verified (and spooled)
    before the first write to any replica, so one damaged disk leaves every replica unchanged, and each
    disk's data is read once.

    Disks are verified one after another, each with the engine's bounded parallelism, so memory stays
    bounded; the spools (local disk) of all disks exist until the writes finish.
    """
    opts = options or ApplyOptions()
    signer = source_url_signer or _default_signer
    runs = [
        _Apply(m, cache, replicas.get_blob_client(replica_blob_name(m.machine_id, m.disk_id)), opts, signer)
        for m in manifests
    ]
    cycles = {(m.machine_id, m.cycle_id) for m in manifests}
    if len(cycles) > 1:
        raise ManifestMismatch(f"apply_cycle takes the manifests of one cycle, got {sorted(cycles)}")
    try:
        for run in runs:
            run.prepare()
        return [run.commit() for run in runs]
    finally:
        for run in runs:
            run.close()


def dispose_cycle_data(cache: ContainerClient, machine_id: str, cycle_id: str) -> int:
    """Delete a cycle's data blobs and manifests; returns how many were deleted. Blobs already gone are
    skipped, so a second call deletes nothing."""
    deleted = 0
    for blob in cache.list_blobs(name_starts_with=cycle_prefix(machine_id, cycle_id)):
        try:
            cache.delete_blob(blob.name)
        except ResourceNotFoundError:
            continue
        deleted += 1
    return deleted
