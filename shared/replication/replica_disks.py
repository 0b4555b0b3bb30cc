"""Replica disks (fixed-VHD page blobs) and their recovery points (blob snapshots).

A replica is `{machineId}/{diskId}.vhd` in the replica container: a page blob of the source disk's
size rounded up to 1 MiB, plus the 512-byte fixed-VHD footer at the end, so a managed disk can be
imported from it. Every applied cycle leaves a recovery point: a snapshot of the replica carrying the
cycle's id, sequence number and consistency in its metadata. Hydration never reads the replica or a
snapshot in place: `copy_recovery_point` copies a snapshot server-side to its own page blob first
(docs/replica-disks.md says why).

Every function is idempotent so an activity can be retried after any crash.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobProperties, ContainerClient
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain.cycle import Consistency
from shared.domain.errors import Conflict, DomainError, NotFound
from shared.domain.wire import ResourceId
from shared.replication.vhd import FOOTER_SIZE, SECTOR_SIZE, VhdFooter, VhdFormatError, round_up_to_mib

log = logging.getLogger(__name__)

# Footer unique ids are derived from the disk's identity so a re-created replica gets the same id.
_REPLICA_NAMESPACE: Final = uuid.UUID("5b0f6f0e-6a43-4c55-9a43-2f3c1d9e7a10")

# Blob metadata names must be C# identifiers; the service lower-cases nothing, so we do.
META_MACHINE: Final = "machineid"
META_DISK: Final = "diskid"
META_SOURCE_SIZE: Final = "sourcedisksize"
META_CYCLE: Final = "cycleid"
META_SEQUENCE: Final = "sequence"
META_CONSISTENCY: Final = "consistency"
META_COPY_OF_BLOB: Final = "copyofblob"
META_COPY_OF_SNAPSHOT: Final = "copyofsnapshot"


class ReplicaDiskError(DomainError):
    code = "ReplicaDiskError"


class ReplicaNotFound(NotFound):
    code = "ReplicaNotFound"


class ReplicaSizeMismatch(Conflict):
    """A replica blob exists under the name but was made for a different disk size."""

    code = "ReplicaSizeMismatch"


class ReplicaFooterInvalid(ReplicaDiskError):
    code = "ReplicaFooterInvalid"


class RecoveryPointNotFound(NotFound):
    code = "RecoveryPointNotFound"


class RecoveryPointCopyFailed(ReplicaDiskError):
    code = "RecoveryPointCopyFailed"


def replica_blob_name(machine_id: str, disk_id: str) -> str:
    return f"{machine_id}/{disk_id}.vhd"


def recovery_point_copy_name(machine_id: str, disk_id: str, snapshot: str, purpose: str) -> str:
    """Name of a recovery point's own page blob, e.g. for a test migration's Import."""
    stamp = snapshot.replace(":", "").replace(".", "").replace("-", "")
    return f"{machine_id}/copies/{purpose}/{disk_id}-{stamp}.vhd"


class ReplicaDiskSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    machine_id: ResourceId
    disk_id: ResourceId
    disk_size: int = Field(gt=0, multiple_of=SECTOR_SIZE, description="the source disk's size in bytes")

    @property
    def virtual_size(self) -> int:
        return round_up_to_mib(self.disk_size)

    @property
    def blob_size(self) -> int:
        return self.virtual_size + FOOTER_SIZE

    @property
    def blob_name(self) -> str:
        return replica_blob_name(self.machine_id, self.disk_id)

    @property
    def unique_id(self) -> uuid.UUID:
        return uuid.uuid5(_REPLICA_NAMESPACE, f"{self.machine_id}/{self.disk_id}")


class ReplicaDisk(BaseModel):
    model_config = ConfigDict(frozen=True)

    blob_name: str
    url: str
    disk_size: int
    virtual_size: int
    blob_size: int
    created: bool = Field(description="false when the replica already existed (an idempotent re-run)")


def create_replica_disk(
    container: ContainerClient, spec: ReplicaDiskSpec, *, timestamp: datetime | None = None
) -> ReplicaDisk:
    """Create the replica page blob with its footer, or confirm an existing one is the same disk.

    Exists with the right size and footer -> no-op (a legacy footer only gets the current creator).
    Exists with another size -> ReplicaSizeMismatch
    (never resized or overwritten: it may hold replicated data). Exists without a footer (a crash
    between create and footer write) -> the footer is written now.
    """
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    blob = container.get_blob_client(spec.blob_name)
    footer = VhdFooter.for_size(spec.virtual_size, unique_id=spec.unique_id, timestamp=timestamp)
    metadata = {
        META_MACHINE: spec.machine_id,
        META_DISK: spec.disk_id,
        META_SOURCE_SIZE: str(spec.disk_size),
    }
    created = True
    try:
        blob.create_page_blob(spec.blob_size, metadata=metadata, match_condition=MatchConditions.IfMissing)
    except ResourceExistsError:
        created = False
        _check_existing(blob, spec)
    if created:
        _write_footer(blob, spec, footer)
    else:
        existing = _read_footer_bytes(blob, spec.blob_size)
        if existing == bytes(FOOTER_SIZE):
            _write_footer(blob, spec, footer)
        else:
            found = _check_footer(blob.blob_name, existing, spec)
            if found.is_legacy:
                # Enabling or a whole-disk copy is when an old replica gets a footer qemu sizes right;
                # only the creator changes, the data and recovery points are left as they are.
                blob.upload_page(found.upgraded().to_bytes(), offset=spec.virtual_size, length=FOOTER_SIZE)
    return ReplicaDisk(
        blob_name=spec.blob_name,
        url=blob.url,
        disk_size=spec.disk_size,
        virtual_size=spec.virtual_size,
        blob_size=spec.blob_size,
        created=created,
    )


def _check_existing(blob: BlobClient, spec: ReplicaDiskSpec) -> None:
    props = blob.get_blob_properties()
    if props.blob_type != "PageBlob":
        raise ReplicaSizeMismatch(f"{spec.blob_name} exists but is a {props.blob_type}, not a page blob")
    recorded = props.metadata.get(META_SOURCE_SIZE)
    if props.size != spec.blob_size or (recorded is not None and recorded != str(spec.disk_size)):
        raise ReplicaSizeMismatch(
            f"replica {spec.blob_name} exists with {props.size} bytes (source disk {recorded or 'unknown'} bytes); "
            f"disk {spec.disk_id} of {spec.disk_size} bytes needs {spec.blob_size}. The source disk was resized "
            "or the id is reused: stop replication for the disk (which deletes the replica) and enable it again"
        )


def _write_footer(blob: BlobClient, spec: ReplicaDiskSpec, footer: VhdFooter) -> None:
    blob.upload_page(footer.to_bytes(), offset=spec.virtual_size, length=FOOTER_SIZE)


def _read_footer_bytes(blob: BlobClient, blob_size: int) -> bytes:
    return blob.download_blob(offset=blob_size - FOOTER_SIZE, length=FOOTER_SIZE).readall()


def _check_footer(name: str, data: bytes, spec: ReplicaDiskSpec) -> VhdFooter:
    try:
        footer = VhdFooter.parse(data)
    except VhdFormatError as exc:
        raise ReplicaFooterInvalid(f"replica {name} has an invalid VHD footer: {exc}") from exc
    if footer.current_size != spec.virtual_size:
        raise ReplicaSizeMismatch(
            f"replica {name}'s footer says {footer.current_size} bytes, expected {spec.virtual_size}"
        )
    return footer


def read_replica_footer(
    container: ContainerClient, blob_name: str, *, snapshot: str | None = None
) -> VhdFooter:
    """The footer of a replica (or of one of its recovery points), validated."""
    target = container.get_blob_client(blob_name, snapshot=snapshot)
    try:
        size = target.get_blob_properties().size
    except ResourceNotFoundError as exc:
        raise ReplicaNotFound(f"replica {blob_name} not found") from exc
    try:
        return VhdFooter.parse(_read_footer_bytes(target, size))
    except VhdFormatError as exc:
        raise ReplicaFooterInvalid(f"replica {blob_name} has an invalid VHD footer: {exc}") from exc


def delete_replica_disk(container: ContainerClient, blob_name: str) -> bool:
    """Delete a replica and all its recovery points. False when it was already gone."""
    try:
        container.get_blob_client(blob_name).delete_blob(delete_snapshots="include")
    except ResourceNotFoundError:
        return False
    return True


# --- recovery points ------------------------------------------------------------------------------


class RecoveryPointSnapshot(BaseModel):
    model_config = ConfigDict(frozen=True)

    blob_name: str
    snapshot: str = Field(description="the blob snapshot's id (its timestamp, as the service returns it)")
    cycle_id: str
    sequence: int
    consistency: Consistency
    created_at: datetime


def _snapshot_from_properties(props: BlobProperties) -> RecoveryPointSnapshot | None:
    meta = props.metadata or {}
    if props.snapshot is None or META_CYCLE not in meta:
        return None  # not ours (someone's manual snapshot): never listed, never pruned
    created = props.creation_time or props.last_modified
    try:
        snapshot_time = datetime.fromisoformat(props.snapshot.replace("Z", "+00:00"))
    except ValueError:
        snapshot_time = created
    return RecoveryPointSnapshot(
        blob_name=props.name,
        snapshot=props.snapshot,
        cycle_id=meta[META_CYCLE],
        sequence=int(meta.get(META_SEQUENCE, "0")),
        consistency=Consistency(meta.get(META_CONSISTENCY, Consistency.CRASH.value)),
        created_at=snapshot_time if snapshot_time.tzinfo else snapshot_time.replace(tzinfo=UTC),
    )


def list_recovery_points(container: ContainerClient, blob_name: str) -> list[RecoveryPointSnapshot]:
    """The replica's recovery points, oldest first (by sequence, then time)."""
    points = []
    for props in container.list_blobs(name_starts_with=blob_name, include=["snapshots", "metadata"]):
        if props.name != blob_name:
            continue
        point = _snapshot_from_properties(props)
        if point is not None:
            points.append(point)
    points.sort(key=lambda p: (p.sequence, p.created_at, p.snapshot))
    return points


def create_recovery_point(
    container: ContainerClient,
    blob_name: str,
    *,
    cycle_id: str,
    sequence: int,
    consistency: Consistency,
) -> RecoveryPointSnapshot:
    """Snapshot the replica after a cycle was applied. Idempotent by cycle id: a retry returns the existing point."""
    for existing in list_recovery_points(container, blob_name):
        if existing.cycle_id == cycle_id:
            return existing
    blob = container.get_blob_client(blob_name)
    try:
        result = blob.create_snapshot(
            metadata={
                META_CYCLE: cycle_id,
                META_SEQUENCE: str(sequence),
                META_CONSISTENCY: Consistency(consistency).value,
            }
        )
    except ResourceNotFoundError as exc:
        raise ReplicaNotFound(f"replica {blob_name} not found: cannot record a recovery point") from exc
    snapshot = str(result["snapshot"])
    props = container.get_blob_client(blob_name, snapshot=snapshot).get_blob_properties()
    created = _snapshot_from_properties(props)
    if created is None:  # the service returned a snapshot without the metadata we set
        raise ReplicaDiskError(f"snapshot {snapshot} of {blob_name} lost its recovery-point metadata")
    return created


class RetentionPolicy(BaseModel):
    """Keep at most `max_count` points and none older than `max_age`; the newest point is always kept."""

    model_config = ConfigDict(frozen=True)

    max_count: int = Field(ge=1, le=1024)
    max_age: timedelta

    @model_validator(mode="after")
    def _positive_age(self) -> RetentionPolicy:
        if self.max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        return self


class PruneResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    deleted: list[RecoveryPointSnapshot]
    kept: list[RecoveryPointSnapshot]


def select_expired(
    points: list[RecoveryPointSnapshot],
    policy: RetentionPolicy,
    *,
    now: datetime,
    protected: frozenset[str] = frozenset(),
) -> list[RecoveryPointSnapshot]:
    """Which points the policy prunes (pure): beyond the newest `max_count`, or older than `max_age`.

    The newest point survives any policy (a machine always has something to fail over to), and
    `protected` snapshots (in use by a test migration or a failover not yet committed) are never pruned.
    """
    ordered = sorted(points, key=lambda p: (p.sequence, p.created_at, p.snapshot))
    if not ordered:
        return []
    newest = ordered[-1]
    keep_by_count = {p.snapshot for p in ordered[-policy.max_count :]}
    cutoff = now - policy.max_age
    return [
        p
        for p in ordered
        if p is not newest
        and p.snapshot not in protected
        and (p.snapshot not in keep_by_count or p.created_at < cutoff)
    ]


def prune_recovery_points(
    container: ContainerClient,
    blob_name: str,
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    protected: frozenset[str] = frozenset(),
) -> PruneResult:
    """Delete the recovery points the policy expires; a point already gone counts as deleted."""
    points = list_recovery_points(container, blob_name)
    expired = select_expired(points, policy, now=now or datetime.now(UTC), protected=protected)
    for point in expired:
        with contextlib.suppress(ResourceNotFoundError):
            container.get_blob_client(blob_name, snapshot=point.snapshot).delete_blob()
    gone = {p.snapshot for p in expired}
    return PruneResult(deleted=expired, kept=[p for p in points if p.snapshot not in gone])


# --- copies for Import -----------------------------------------------------------------------------


class RecoveryPointCopy(BaseModel):
    model_config = ConfigDict(frozen=True)

    blob_name: str
    url: str
    size: int
    source_blob: str
    source_snapshot: str


class RecoveryPointCopyPending(BaseModel):
    """The copy is running: ask again later (the orchestration waits with a durable timer, never a sleep)."""

    model_config = ConfigDict(frozen=True)

    blob_name: str
    progress: str | None = Field(default=None, description="bytes copied/total, as the service reports it")


def copy_recovery_point(
    container: ContainerClient,
    blob_name: str,
    snapshot: str,
    *,
    target_blob_name: str,
) -> RecoveryPointCopy | RecoveryPointCopyPending:
    """Start (or look at) a server-side copy of one recovery point (snapshot) to its own page blob, for
    `createOption: Import`; never waits. Call it again until it returns the finished `RecoveryPointCopy`.

    Idempotent: a finished copy of the same snapshot is returned as is; a pending one is reported pending;
    a failed or aborted one is started again. A target holding anything else is a conflict.
    """
    source = container.get_blob_client(blob_name, snapshot=snapshot)
    try:
        source_props = source.get_blob_properties()
    except ResourceNotFoundError as exc:
        raise RecoveryPointNotFound(f"recovery point {snapshot} of {blob_name} not found") from exc
    target = container.get_blob_client(target_blob_name)
    wanted = {META_COPY_OF_BLOB: blob_name, META_COPY_OF_SNAPSHOT: snapshot}
    try:
        props = target.get_blob_properties()
    except ResourceNotFoundError:
        props = None
    if props is not None:
        meta = props.metadata or {}
        if meta.get(META_COPY_OF_BLOB) != blob_name or meta.get(META_COPY_OF_SNAPSHOT) != snapshot:
            raise Conflict(
                f"{target_blob_name} exists and is not a copy of {blob_name}@{snapshot}; "
                "pick another name or delete it first"
            )
        if props.copy.status in ("failed", "aborted"):
            log.warning(
                "copy of %s@%s to %s %s (%s): starting it again",
                blob_name,
                snapshot,
                target_blob_name,
                props.copy.status,
                props.copy.status_description,
            )
            target.delete_blob()
            props = None
    if props is None:
        target.start_copy_from_url(source.url, metadata=wanted)
        props = target.get_blob_properties()
    status = props.copy.status
    if status in ("failed", "aborted"):
        raise RecoveryPointCopyFailed(
            f"copy of {blob_name}@{snapshot} to {target_blob_name} {status}: {props.copy.status_description}"
        )
    if status not in (None, "success"):
        return RecoveryPointCopyPending(blob_name=target_blob_name, progress=props.copy.progress)
    if props.size != source_props.size:
        raise RecoveryPointCopyFailed(
            f"copy {target_blob_name} has {props.size} bytes, the recovery point has {source_props.size}"
        )
    return RecoveryPointCopy(
        blob_name=target_blob_name,
        url=target.url,
        size=props.size,
        source_blob=blob_name,
        source_snapshot=snapshot,
    )


# --- restoring a replica to a recovery point ---------------------------------------------------------

META_RESTORED_FOR: Final = "restoredfor"
META_RESTORED_FROM: Final = "restoredfrom"


class ReplicaRestore(BaseModel):
    """Where the restore of one replica stands: `done`, or still copying (ask again later)."""

    model_config = ConfigDict(frozen=True)

    blob_name: str
    snapshot: str
    done: bool
    progress: str | None = None


def restore_replica(
    container: ContainerClient, blob_name: str, snapshot: str, *, reason: str
) -> ReplicaRestore:
    """Start (or look at) the server-side copy of a recovery point's snapshot over its own replica; never
    waits. Call it again until `done` (the orchestration waits between calls with a durable timer).

    Idempotent for one `reason` (a rejected cycle's id): the replica is tagged with it, so a call after the
    copy finished reports done instead of copying again; a failed copy is started again. The snapshots stay.
    """
    source = container.get_blob_client(blob_name, snapshot=snapshot)
    try:
        source.get_blob_properties()
    except ResourceNotFoundError as exc:
        raise RecoveryPointNotFound(f"recovery point {snapshot} of {blob_name} not found") from exc
    replica = container.get_blob_client(blob_name)
    props = replica.get_blob_properties()
    meta = props.metadata or {}
    mine = meta.get(META_RESTORED_FOR) == reason and meta.get(META_RESTORED_FROM) == snapshot
    if not mine or props.copy.status in ("failed", "aborted"):
        # The replica keeps its own tags (machine, disk, size): the snapshot's carry its cycle as well.
        metadata = {**meta, META_RESTORED_FOR: reason, META_RESTORED_FROM: snapshot}
        replica.start_copy_from_url(source.url, metadata=metadata)
        props = replica.get_blob_properties()
    status = props.copy.status
    if status in ("failed", "aborted"):
        raise RecoveryPointCopyFailed(
            f"restoring {blob_name} from {snapshot} {status}: {props.copy.status_description}"
        )
    return ReplicaRestore(
        blob_name=blob_name, snapshot=snapshot, done=status in (None, "success"), progress=props.copy.progress
    )
