"""Replica page blobs, recovery-point snapshots, retention and copies for Import, on Azurite."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from devhost.emulators import EmulatorEndpoints
from shared.domain.cycle import Consistency
from shared.domain.errors import Conflict
from shared.replication.replica_disks import (
    RecoveryPointCopy,
    RecoveryPointCopyPending,
    RecoveryPointNotFound,
    ReplicaDiskSpec,
    ReplicaFooterInvalid,
    ReplicaSizeMismatch,
    RetentionPolicy,
    copy_recovery_point,
    create_recovery_point,
    create_replica_disk,
    delete_replica_disk,
    list_recovery_points,
    prune_recovery_points,
    read_replica_footer,
    recovery_point_copy_name,
    restore_replica,
)
from shared.replication.vhd import FOOTER_SIZE, MIB, VhdFooter

pytestmark = pytest.mark.integration

SPEC = ReplicaDiskSpec(machine_id="vm-rp", disk_id="disk-0", disk_size=3 * MIB + 512)


@pytest.fixture
def replicas(emulators: EmulatorEndpoints) -> Iterator[ContainerClient]:
    service = BlobServiceClient.from_connection_string(emulators.storage_connection_string)
    container = service.get_container_client(f"replicas-{uuid.uuid4().hex[:12]}")
    yield container
    container.delete_container()


def test_replica_is_a_fixed_vhd_page_blob_of_rounded_size(replicas: ContainerClient) -> None:
    when = datetime(2026, 5, 1, tzinfo=UTC)
    disk = create_replica_disk(replicas, SPEC, timestamp=when)
    assert disk.created and disk.virtual_size == 4 * MIB and disk.blob_size == 4 * MIB + 512
    blob = replicas.get_blob_client(SPEC.blob_name)
    props = blob.get_blob_properties()
    assert props.blob_type == "PageBlob" and props.size == 4 * MIB + FOOTER_SIZE
    tail = blob.download_blob(offset=4 * MIB, length=FOOTER_SIZE).readall()
    footer = VhdFooter.parse(tail)
    assert footer.current_size == footer.original_size == 4 * MIB
    assert footer.created_at == when
    assert footer.unique_id == SPEC.unique_id
    assert read_replica_footer(replicas, SPEC.blob_name) == footer
    # only the footer page holds data: the disk area is sparse zeros
    ranges = [(r.start, r.end) for r in blob.list_page_ranges() if not r.cleared]
    assert ranges == [(4 * MIB, 4 * MIB + FOOTER_SIZE - 1)]


def test_create_is_idempotent_and_refuses_a_different_size(replicas: ContainerClient) -> None:
    first = create_replica_disk(replicas, SPEC)
    blob = replicas.get_blob_client(SPEC.blob_name)
    blob.upload_page(os.urandom(512), offset=0, length=512)  # replicated data must survive a re-run
    data = blob.download_blob().readall()
    again = create_replica_disk(replicas, SPEC, timestamp=datetime(2030, 1, 1, tzinfo=UTC))
    assert first.created and not again.created
    assert blob.download_blob().readall() == data  # untouched, footer included
    bigger = SPEC.model_copy(update={"disk_size": 8 * MIB})
    with pytest.raises(ReplicaSizeMismatch, match="resized"):
        create_replica_disk(replicas, bigger)
    # same rounded size but a different source size is still another disk
    same_rounding = SPEC.model_copy(update={"disk_size": 4 * MIB})
    with pytest.raises(ReplicaSizeMismatch):
        create_replica_disk(replicas, same_rounding)


def test_a_crash_between_create_and_footer_is_repaired_and_garbage_is_refused(
    replicas: ContainerClient,
) -> None:
    blob = replicas.get_blob_client(SPEC.blob_name)
    replicas.create_container()
    blob.create_page_blob(SPEC.blob_size, metadata={"sourcedisksize": str(SPEC.disk_size)})  # no footer yet
    assert not create_replica_disk(replicas, SPEC).created
    assert read_replica_footer(replicas, SPEC.blob_name).current_size == SPEC.virtual_size
    blob.upload_page(b"\x01" * 512, offset=SPEC.virtual_size, length=512)
    with pytest.raises(ReplicaFooterInvalid, match="cookie"):
        create_replica_disk(replicas, SPEC)


def test_a_replica_with_a_legacy_footer_gets_the_current_creator_and_keeps_everything_else(
    replicas: ContainerClient,
) -> None:
    when = datetime(2025, 3, 1, tzinfo=UTC)
    create_replica_disk(replicas, SPEC, timestamp=when)
    blob = replicas.get_blob_client(SPEC.blob_name)
    blob.upload_page(b"\x22" * 512, offset=0, length=512)
    legacy = VhdFooter.for_size(SPEC.virtual_size, unique_id=SPEC.unique_id, timestamp=when).model_copy(
        update={"creator_application": b"mgcp"}
    )
    blob.upload_page(legacy.to_bytes(), offset=SPEC.virtual_size, length=FOOTER_SIZE)
    assert read_replica_footer(replicas, SPEC.blob_name).is_legacy  # still read as it is
    point = create_recovery_point(
        replicas, SPEC.blob_name, cycle_id="c0", sequence=0, consistency=Consistency.CRASH
    )

    assert not create_replica_disk(replicas, SPEC, timestamp=datetime(2030, 1, 1, tzinfo=UTC)).created
    footer = read_replica_footer(replicas, SPEC.blob_name)
    assert footer == legacy.upgraded() and footer.created_at == when
    assert blob.download_blob(offset=0, length=512).readall() == b"\x22" * 512
    # recovery points are immutable snapshots: they keep the footer they were taken with
    assert read_replica_footer(replicas, SPEC.blob_name, snapshot=point.snapshot).is_legacy


def test_recovery_points_carry_cycle_metadata_and_are_idempotent(replicas: ContainerClient) -> None:
    create_replica_disk(replicas, SPEC)
    blob = replicas.get_blob_client(SPEC.blob_name)
    blob.upload_page(b"\x11" * 512, offset=0, length=512)
    p1 = create_recovery_point(
        replicas, SPEC.blob_name, cycle_id="c1", sequence=1, consistency=Consistency.CRASH
    )
    blob.upload_page(b"\x22" * 512, offset=0, length=512)
    p2 = create_recovery_point(
        replicas, SPEC.blob_name, cycle_id="c2", sequence=2, consistency=Consistency.APP
    )
    again = create_recovery_point(
        replicas, SPEC.blob_name, cycle_id="c2", sequence=2, consistency=Consistency.APP
    )
    assert again == p2  # a retried activity does not take a second snapshot
    # someone's manual snapshot is not a recovery point
    blob.create_snapshot()

    points = list_recovery_points(replicas, SPEC.blob_name)
    assert [(p.cycle_id, p.sequence, p.consistency) for p in points] == [
        ("c1", 1, Consistency.CRASH),
        ("c2", 2, Consistency.APP),
    ]
    # the snapshots hold the replica as it was
    snap1 = replicas.get_blob_client(SPEC.blob_name, snapshot=p1.snapshot)
    assert snap1.download_blob(offset=0, length=512).readall() == b"\x11" * 512
    assert (
        read_replica_footer(replicas, SPEC.blob_name, snapshot=p1.snapshot).current_size == SPEC.virtual_size
    )


def test_retention_prunes_by_count_and_age_but_keeps_newest_and_protected(replicas: ContainerClient) -> None:
    create_replica_disk(replicas, SPEC)
    for i in range(5):
        create_recovery_point(
            replicas, SPEC.blob_name, cycle_id=f"c{i}", sequence=i, consistency=Consistency.CRASH
        )
    points = list_recovery_points(replicas, SPEC.blob_name)
    protected = frozenset({points[0].snapshot})  # e.g. in use by a test migration

    result = prune_recovery_points(
        replicas, SPEC.blob_name, RetentionPolicy(max_count=2, max_age=timedelta(days=1)), protected=protected
    )
    assert [p.cycle_id for p in result.deleted] == ["c1", "c2"]
    remaining = list_recovery_points(replicas, SPEC.blob_name)
    assert [p.cycle_id for p in remaining] == ["c0", "c3", "c4"]
    assert [p.cycle_id for p in result.kept] == ["c0", "c3", "c4"]

    # everything is older than max_age a day later; the newest survives anyway
    later = datetime.now(UTC) + timedelta(days=2)
    aged = prune_recovery_points(
        replicas, SPEC.blob_name, RetentionPolicy(max_count=10, max_age=timedelta(hours=1)), now=later
    )
    assert [p.cycle_id for p in aged.deleted] == ["c0", "c3"]
    assert [p.cycle_id for p in list_recovery_points(replicas, SPEC.blob_name)] == ["c4"]
    # pruning again is a no-op
    assert (
        prune_recovery_points(
            replicas, SPEC.blob_name, RetentionPolicy(max_count=1, max_age=timedelta(hours=1)), now=later
        ).deleted
        == []
    )


def test_recovery_point_copy_is_its_own_importable_page_blob(replicas: ContainerClient) -> None:
    create_replica_disk(replicas, SPEC)
    blob = replicas.get_blob_client(SPEC.blob_name)
    payload = os.urandom(MIB)
    blob.upload_page(payload, offset=MIB, length=MIB)
    point = create_recovery_point(
        replicas, SPEC.blob_name, cycle_id="c1", sequence=1, consistency=Consistency.CRASH
    )
    blob.upload_page(bytes(range(256)) * 4, offset=MIB, length=1024)  # replication goes on

    target = recovery_point_copy_name(SPEC.machine_id, SPEC.disk_id, point.snapshot, "test-migration")
    # Started by one call, looked at by the next ones: none of them waits (the orchestration's timer does).
    copy: RecoveryPointCopy | RecoveryPointCopyPending = RecoveryPointCopyPending(blob_name=target)
    for _ in range(100):
        copy = copy_recovery_point(replicas, SPEC.blob_name, point.snapshot, target_blob_name=target)
        if isinstance(copy, RecoveryPointCopy):
            break
        time.sleep(0.1)
    assert isinstance(copy, RecoveryPointCopy)
    copied = replicas.get_blob_client(target)
    assert copied.get_blob_properties().blob_type == "PageBlob"
    assert copy.size == SPEC.blob_size
    assert (
        copied.download_blob(offset=MIB, length=MIB).readall() == payload
    )  # the point, not the live replica
    assert read_replica_footer(replicas, target).current_size == SPEC.virtual_size

    # idempotent: the same copy again is a no-op; another snapshot onto the same name is a conflict
    assert copy_recovery_point(replicas, SPEC.blob_name, point.snapshot, target_blob_name=target) == copy
    other = create_recovery_point(
        replicas, SPEC.blob_name, cycle_id="c2", sequence=2, consistency=Consistency.CRASH
    )
    with pytest.raises(Conflict):
        copy_recovery_point(replicas, SPEC.blob_name, other.snapshot, target_blob_name=target)
    with pytest.raises(RecoveryPointNotFound):
        copy_recovery_point(
            replicas, SPEC.blob_name, "2001-01-01T00:00:00.0000000Z", target_blob_name=target + ".x"
        )


def test_delete_removes_the_replica_and_its_points(replicas: ContainerClient) -> None:
    create_replica_disk(replicas, SPEC)
    create_recovery_point(replicas, SPEC.blob_name, cycle_id="c1", sequence=1, consistency=Consistency.CRASH)
    assert delete_replica_disk(replicas, SPEC.blob_name) is True
    assert list(replicas.list_blobs(include=["snapshots"])) == []
    assert delete_replica_disk(replicas, SPEC.blob_name) is False


def test_a_replica_is_restored_to_a_recovery_point_server_side_and_keeps_its_tags(
    replicas: ContainerClient,
) -> None:
    create_replica_disk(replicas, SPEC)
    blob = replicas.get_blob_client(SPEC.blob_name)
    good = bytes(range(256)) * 4096  # 1 MiB
    blob.upload_page(good, offset=0, length=MIB)
    point = create_recovery_point(
        replicas, SPEC.blob_name, cycle_id="c1", sequence=1, consistency=Consistency.CRASH
    )
    tags = blob.get_blob_properties().metadata
    blob.upload_page(bytes(MIB), offset=0, length=MIB)  # a rejected cycle's writes
    blob.upload_page(b"\x07" * MIB, offset=2 * MIB, length=MIB)

    state = restore_replica(replicas, SPEC.blob_name, point.snapshot, reason="c2")
    for _ in range(100):  # Azurite copies at once; Azure may take a while (the orchestration's timer waits)
        if state.done:
            break
        time.sleep(0.1)
        state = restore_replica(replicas, SPEC.blob_name, point.snapshot, reason="c2")
    assert state.done
    assert blob.download_blob(offset=0, length=3 * MIB).readall() == good + bytes(2 * MIB)
    props = blob.get_blob_properties()
    assert {k: v for k, v in props.metadata.items() if k in tags} == tags
    assert (
        props.size == SPEC.blob_size
        and read_replica_footer(replicas, SPEC.blob_name).current_size == SPEC.virtual_size
    )
    # asked again for the same rejected cycle: done, nothing copied again; the recovery point stays
    copy_id = props.copy.id
    assert restore_replica(replicas, SPEC.blob_name, point.snapshot, reason="c2").done
    assert blob.get_blob_properties().copy.id == copy_id
    assert [p.snapshot for p in list_recovery_points(replicas, SPEC.blob_name)] == [point.snapshot]
