"""The blocks an Azure disk changed between two of its incremental snapshots, read from Azure itself.

Managed-disk incremental snapshots of one disk form a family, and the storage service answers the
difference between two of them (Get Page Ranges with `x-ms-previous-snapshot-url`): the pages written
(`PageRange`) and those cleared (`ClearRange`, trimmed) after the older one. That is all a reverse
cycle has to send on-premises, so no agent runs in the Azure VM and unchanged blocks never travel.

Reading it takes a read SAS on both snapshots (`beginGetAccess`); Azure hands them out for at most five
snapshots of a family at a time, so access is asked for the shortest useful time and always ended
(`endGetAccess`, harmless when already ended). The diff is read in segments (`maxresults` ranges each,
continued with the service's marker), so a heavily changed disk never needs one huge answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute import models as cm
from azure.storage.blob import BlobClient
from pydantic import BaseModel, ConfigDict, Field

from shared.migration.resource_kinds import delete_resource, parse_arm_id
from shared.migration.resources import SnapshotRef, create_incremental_snapshot
from shared.migration.tags import ResourceTags
from shared.platform.arm_clients import ArmClients
from shared.platform.arm_errors import translate_arm_error

PAGE: Final = 512
# Long enough to list a diff and hand the SAS on; the caller asks for more when a transfer reads it.
DEFAULT_ACCESS_SECONDS: Final = 15 * 60
# The storage service returns at most 10,000 ranges per call whatever is asked.
DEFAULT_SEGMENT_RANGES: Final = 10_000

BlobClientFactory = Callable[[str], BlobClient]


class RangeOp(StrEnum):
    WRITE = "write"  # the bytes at these offsets of the newer snapshot are to be copied
    ZERO = "zero"  # cleared (trimmed) since the older snapshot: zeros on the copy


class ChangedRange(BaseModel):
    """`length` bytes at `offset` changed between the two snapshots; whole 512-byte pages."""

    model_config = ConfigDict(frozen=True)

    offset: int = Field(ge=0)
    length: int = Field(gt=0)
    op: RangeOp

    @property
    def end(self) -> int:
        return self.offset + self.length


def blob_client_from_sas(sas_url: str) -> BlobClient:
    return BlobClient.from_blob_url(sas_url)


def grant_read_access(clients: ArmClients, snapshot_id: str, *, duration_seconds: int) -> str:
    """A read SAS URL on a snapshot (waits for the disk RP's async grant)."""
    parsed = parse_arm_id(snapshot_id)
    try:
        granted = clients.compute.snapshots.begin_grant_access(
            parsed.resource_group,
            parsed.name,
            cm.GrantAccessData(access="Read", duration_in_seconds=duration_seconds),
        ).result()
    except HttpResponseError as exc:
        raise translate_arm_error(exc, operation=f"grant read access to snapshot {parsed.name}") from exc
    if granted is None or not granted.access_sas:
        raise RuntimeError(f"grant read access to snapshot {parsed.name}: no accessSAS in the answer")
    return str(granted.access_sas)


def end_read_access(clients: ArmClients, snapshot_id: str) -> None:
    """Revoke every SAS of a snapshot; a snapshot already gone has none."""
    parsed = parse_arm_id(snapshot_id)
    try:
        clients.compute.snapshots.begin_revoke_access(parsed.resource_group, parsed.name).result()
    except ResourceNotFoundError:
        return
    except HttpResponseError as exc:
        raise translate_arm_error(exc, operation=f"end access to snapshot {parsed.name}") from exc


@contextlib.contextmanager
def read_access(
    clients: ArmClients, snapshot_ids: Sequence[str], *, duration_seconds: int = DEFAULT_ACCESS_SECONDS
) -> Iterator[list[str]]:
    """Read SAS URLs on the snapshots, in their order; access to each is ended on the way out,
    whatever happened, including to those granted before a later grant failed."""
    granted: list[str] = []
    try:
        urls = []
        for snapshot_id in snapshot_ids:
            granted.append(snapshot_id)
            urls.append(grant_read_access(clients, snapshot_id, duration_seconds=duration_seconds))
        yield urls
    finally:
        failures: list[Exception] = []
        for snapshot_id in granted:
            try:
                end_read_access(clients, snapshot_id)
            except Exception as exc:  # end the others first; the first failure is raised after
                failures.append(exc)
        if failures:
            raise failures[0]


def _spans(page_ranges: Sequence[dict[str, int]], op: RangeOp) -> list[ChangedRange]:
    return [
        ChangedRange(offset=int(r["start"]), length=int(r["end"]) - int(r["start"]) + 1, op=op)
        for r in page_ranges
    ]


def diff_segments(
    current: BlobClient, previous_sas_url: str, *, segment_ranges: int = DEFAULT_SEGMENT_RANGES
) -> Iterator[list[ChangedRange]]:
    """The ranges changed from the previous snapshot to `current`, one service answer per segment,
    each in offset order (written and cleared ranges interleaved)."""
    continuation = _Continuation()
    while True:
        options: dict[str, Any] = {"maxresults": segment_ranges, "cls": continuation.keep}
        if continuation.marker:
            options["marker"] = continuation.marker
        written, cleared = current.get_page_range_diff_for_managed_disk(previous_sas_url, **options)
        segment = sorted(
            _spans(written, RangeOp.WRITE) + _spans(cleared, RangeOp.ZERO), key=lambda r: r.offset
        )
        if segment:
            yield segment
        if not continuation.marker:
            return


class _Continuation:
    """The SDK's diff call returns the ranges only; the marker to continue with is in the PageList it
    parsed, which a `cls` callback sees (and hands back unchanged)."""

    def __init__(self) -> None:
        self.marker: str | None = None

    def keep(self, response: Any, page_list: Any, headers: Any) -> Any:
        self.marker = getattr(page_list, "next_marker", None) or None
        return page_list


def changed_ranges(
    clients: ArmClients,
    previous_snapshot_id: str,
    current_snapshot_id: str,
    *,
    blob_client: BlobClientFactory = blob_client_from_sas,
    duration_seconds: int = DEFAULT_ACCESS_SECONDS,
    segment_ranges: int = DEFAULT_SEGMENT_RANGES,
) -> Generator[ChangedRange, None, None]:
    """Every range changed between two incremental snapshots of one disk, in offset order.

    Read access to both is granted for the iteration and ended when it finishes, fails or is closed
    (consume it fully, or close it: `contextlib.closing`). Azure refuses snapshots of different disks
    (409 `PreviousSnapshotOperationNotSupported`) and a previous snapshot that is newer (400
    `PreviousSnapshotCannotBeNewer`); those come out as the storage SDK's `HttpResponseError`.
    """
    with read_access(
        clients, [previous_snapshot_id, current_snapshot_id], duration_seconds=duration_seconds
    ) as (previous_sas, current_sas):
        current = blob_client(current_sas)
        for segment in diff_segments(current, previous_sas, segment_ranges=segment_ranges):
            yield from segment


def coalesce(ranges: Sequence[ChangedRange]) -> list[ChangedRange]:
    """Adjacent ranges of the same operation merged (segments may split one run of pages)."""
    merged: list[ChangedRange] = []
    for item in sorted(ranges, key=lambda r: r.offset):
        last = merged[-1] if merged else None
        if last is not None and last.op == item.op and last.end == item.offset:
            merged[-1] = ChangedRange(offset=last.offset, length=last.length + item.length, op=item.op)
        elif last is not None and item.offset < last.end:
            raise ValueError(f"overlapping changed ranges at {item.offset}: {last} and {item}")
        else:
            merged.append(item)
    return merged


# --- the snapshots themselves ------------------------------------------------------------------------


def take_incremental_snapshot(
    clients: ArmClients,
    resource_group: str,
    name: str,
    *,
    location: str,
    disk_id: str,
    tags: ResourceTags,
) -> SnapshotRef:
    """A new point of a disk's family (idempotent by name, as `create_incremental_snapshot` is)."""
    return create_incremental_snapshot(
        clients, resource_group, name, location=location, source_disk_id=disk_id, tags=tags
    )


def snapshots_before(
    clients: ArmClients, resource_group: str, *, disk_id: str, oldest_kept_id: str
) -> list[str]:
    """Ids of the incremental snapshots of `disk_id` in the group taken before `oldest_kept_id`."""
    kept = parse_arm_id(oldest_kept_id)
    try:
        pivot = clients.compute.snapshots.get(kept.resource_group, kept.name)
        listed = list(clients.compute.snapshots.list_by_resource_group(resource_group))
    except HttpResponseError as exc:
        raise translate_arm_error(exc, operation=f"list snapshots of {resource_group}") from exc
    pivot_time = _time_created(pivot)
    if pivot_time is None:
        return []
    older = []
    for snapshot in listed:
        props = snapshot.properties
        source = props.creation_data.source_resource_id if props and props.creation_data else None
        created = _time_created(snapshot)
        if (
            props is not None
            and props.incremental
            and (source or "").lower() == disk_id.lower()
            and created is not None
            and created < pivot_time
            and str(snapshot.id).lower() != oldest_kept_id.lower()
        ):
            older.append((created, str(snapshot.id)))
    return [snapshot_id for _, snapshot_id in sorted(older)]


def delete_snapshots_before(
    clients: ArmClients, resource_group: str, *, disk_id: str, oldest_kept_id: str
) -> list[str]:
    """Delete a disk's incremental snapshots older than the one kept (a reverse cycle keeps S_{k-1}),
    so the per-disk snapshot limits are never reached. Absent ones count as deleted; returns the ids."""
    doomed = snapshots_before(clients, resource_group, disk_id=disk_id, oldest_kept_id=oldest_kept_id)
    for snapshot_id in doomed:
        end_read_access(clients, snapshot_id)  # no SAS outlives its snapshot's deletion unnoticed
        delete_resource(clients, snapshot_id)
    return doomed


def _time_created(snapshot: cm.Snapshot) -> datetime | None:
    props = snapshot.properties
    return props.time_created if props is not None else None
