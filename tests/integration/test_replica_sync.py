"""A replica brought to a snapshot's content (a committed failback's final snapshot) on Azurite through
the real storage SDK: only the snapshot's written ranges are copied, the replica's other data is cleared,
its VHD footer is kept, and Azurite (no Put Page From URL) gets the streamed path."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, ContainerClient, generate_blob_sas

from devhost.emulators import EmulatorEndpoints
from shared.replication.replica_disks import ReplicaDiskSpec, create_replica_disk, read_replica_footer
from shared.replication.replica_sync import sync_replica_from_snapshot
from shared.replication.vhd import MIB

pytestmark = pytest.mark.integration

SPEC = ReplicaDiskSpec(machine_id="vm-sync", disk_id="disk-0", disk_size=8 * MIB)


@pytest.fixture
def containers(emulators: EmulatorEndpoints) -> Iterator[tuple[ContainerClient, BlobServiceClient]]:
    service = BlobServiceClient.from_connection_string(emulators.storage_connection_string)
    container = service.get_container_client(f"replicas-{uuid.uuid4().hex[:12]}")
    container.create_container()
    yield container, service
    container.delete_container()


def _read_sas(service: BlobServiceClient, container: str, name: str) -> str:
    key = service.credential.account_key
    token = generate_blob_sas(
        service.account_name or "",
        container,
        name,
        account_key=key,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"{service.get_blob_client(container, name).url}?{token}"


def test_the_replica_becomes_the_snapshot_and_keeps_its_footer(
    containers: tuple[ContainerClient, BlobServiceClient],
) -> None:
    replicas, service = containers
    create_replica_disk(replicas, SPEC)
    replica = replicas.get_blob_client(SPEC.blob_name)
    footer = read_replica_footer(replicas, SPEC.blob_name)
    rng = random.Random(7)
    # The replica holds the old forward data: some of it the snapshot overwrote, some it trimmed.
    replica.upload_page(rng.randbytes(MIB), offset=0, length=MIB)
    replica.upload_page(rng.randbytes(MIB), offset=5 * MIB, length=MIB)
    # The final snapshot (a managed disk's image: no footer), written in two places only.
    snapshot = replicas.get_blob_client("final-snapshot")
    snapshot.create_page_blob(size=8 * MIB)
    first, second = rng.randbytes(512 * 1024), rng.randbytes(5 * MIB)
    snapshot.upload_page(first, offset=512 * 1024, length=len(first))
    snapshot.upload_page(second, offset=2 * MIB, length=len(second))
    expected = snapshot.download_blob().readall()

    totals = sync_replica_from_snapshot(
        replica, _read_sas(service, replicas.container_name, "final-snapshot")
    )

    assert replica.download_blob(offset=0, length=8 * MIB).readall() == expected
    assert read_replica_footer(replicas, SPEC.blob_name) == footer
    # Only what the snapshot holds travelled, server-side (the stack's blob front has Put Page From URL);
    # the replica's first MiB (outside it) was cleared.
    assert totals.bytes_copied == len(first) + len(second) and totals.from_url
    assert totals.bytes_cleared == 512 * 1024
    again = sync_replica_from_snapshot(replica, _read_sas(service, replicas.container_name, "final-snapshot"))
    assert again.bytes_copied == totals.bytes_copied and again.bytes_cleared == 0
    assert replica.download_blob(offset=0, length=8 * MIB).readall() == expected
