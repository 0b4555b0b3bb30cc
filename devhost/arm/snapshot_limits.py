"""Azure's limits on the incremental snapshots of one managed disk: at most 7 taken in any 5 minutes,
and at most 500 of them at a time.

Azure documents both limits (the incremental snapshots page of the managed-disk documentation) but not
the error it answers with; the endpoint answers as the disk RP answers other refused operations,
409 `OperationNotAllowed`, with a message naming the limit. A snapshot taken and deleted again still
counts in its 5 minutes: the limit is on taking them. The times are kept on the source disk
(`_incrementalTaken`), so a disk created again under the same name starts afresh, as its family does.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from devhost.arm import ids
from devhost.arm.errors import ArmError
from devhost.arm.store import Doc

if TYPE_CHECKING:
    from devhost.arm.service import LocalArm

PER_WINDOW: Final = 7
WINDOW: Final = timedelta(minutes=5)
PER_DISK: Final = 500
TAKEN: Final = "_incrementalTaken"


def refusal(disk_name: str, taken: Iterable[datetime], existing: int, now: datetime) -> ArmError | None:
    """The error for one more incremental snapshot of the disk, or None when it may be taken."""
    if existing >= PER_DISK:
        return ArmError(
            409,
            "OperationNotAllowed",
            f"The disk '{disk_name}' has reached the limit of {PER_DISK} incremental snapshots per disk. Delete "
            "the incremental snapshots of the disk you no longer need and retry.",
        )
    recent = sorted(t for t in taken if now - t < WINDOW)
    if len(recent) >= PER_WINDOW:
        retry_at = recent[-PER_WINDOW] + WINDOW
        return ArmError(
            409,
            "OperationNotAllowed",
            f"The disk '{disk_name}' has reached the limit of {PER_WINDOW} incremental snapshots in "
            f"{int(WINDOW.total_seconds() // 60)} minutes. Retry after "
            f"{retry_at.isoformat().replace('+00:00', 'Z')}.",
        )
    return None


def take(arm: LocalArm, family: str, source: Doc, now: datetime) -> None:
    """Count one more incremental snapshot of the family's disk, or refuse it."""
    disk = source if source.get("type") == ids.DISK else _family_disk(arm, family)
    existing = sum(
        1
        for _, snapshot in arm.of_type(ids.SNAPSHOT)
        if (snapshot.get("properties") or {}).get("incrementalSnapshotFamilyId") == family
    )
    taken = [datetime.fromisoformat(t) for t in (disk or {}).get(TAKEN) or []]
    error = refusal(str((disk or source)["name"]), taken, existing, now)
    if error is not None:
        raise error
    if disk is not None:
        kept = [t.isoformat() for t in taken if now - t < WINDOW] + [now.isoformat()]
        key = str(disk["id"]).lower()
        with arm.store.lock:
            stored = arm.store.get(key)
            if stored is not None:
                stored[TAKEN] = kept
                arm.store.put(key, stored)


def _family_disk(arm: LocalArm, family: str) -> Doc | None:
    from devhost.arm.compute import snapshot_family  # compute imports this module

    return next((d for _, d in arm.of_type(ids.DISK) if snapshot_family(d) == family), None)
