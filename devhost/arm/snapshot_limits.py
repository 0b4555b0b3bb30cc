"""Azure's limits on the incremental snapshots of one managed disk: at most 7 taken in any 5 minutes,
and at most 500 of them at a time.

Azure documents both limits (the incremental snapshots page of the managed-disk documentation) but not
the error it answers with; the endpoint answers as the disk RP answers other refused operations,
409 `OperationNotAllowed`, with a message naming the limit. A snapshot taken and deleted again still
counts in its 5 minutes: the limit is on taking them. The times are kept on the source disk
(`_incrementalTaken`), so a disk created again under the same name starts afresh, as its family does.

The window's length is Azure's 5 minutes unless `DEVHOST_ARM_SNAPSHOT_WINDOW_SECONDS` (or the endpoint's
`--snapshot-window-seconds`) shortens it: end-to-end tests that take many snapshots of one disk then
meet the same refusal and wait it out in seconds, as `reverseCycleMinutes: 1` compresses the cycle.
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
WINDOW_ENV: Final = "DEVHOST_ARM_SNAPSHOT_WINDOW_SECONDS"
PER_DISK: Final = 500
TAKEN: Final = "_incrementalTaken"


def refusal(
    disk_name: str, taken: Iterable[datetime], existing: int, now: datetime, window: timedelta = WINDOW
) -> ArmError | None:
    """The error for one more incremental snapshot of the disk, or None when it may be taken."""
    if existing >= PER_DISK:
        return ArmError(
            409,
            "OperationNotAllowed",
            f"The disk '{disk_name}' has reached the limit of {PER_DISK} incremental snapshots per disk. Delete "
            "the incremental snapshots of the disk you no longer need and retry.",
        )
    recent = sorted(t for t in taken if now - t < window)
    if len(recent) >= PER_WINDOW:
        retry_at = recent[-PER_WINDOW] + window
        return ArmError(
            409,
            "OperationNotAllowed",
            f"The disk '{disk_name}' has reached the limit of {PER_WINDOW} incremental snapshots in "
            f"{_span(window)}. Retry after {retry_at.isoformat().replace('+00:00', 'Z')}.",
        )
    return None


def _span(window: timedelta) -> str:
    """Azure's "5 minutes"; a shortened window (tests) in its own words, so the message stays true."""
    seconds = window.total_seconds()
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} minutes"
    return f"{seconds:g} seconds"


def window_from(value: str | None) -> timedelta:
    """The window for a `DEVHOST_ARM_SNAPSHOT_WINDOW_SECONDS` value: Azure's when unset."""
    if value is None or not value.strip():
        return WINDOW
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= WINDOW.total_seconds():
        raise ValueError(
            f"{WINDOW_ENV} must be more than 0 and at most {WINDOW.total_seconds():g} seconds (Azure's), "
            f"not {value!r}"
        )
    return timedelta(seconds=seconds)


def take(arm: LocalArm, family: str, source: Doc, now: datetime) -> None:
    """Count one more incremental snapshot of the family's disk, or refuse it."""
    disk = source if source.get("type") == ids.DISK else _family_disk(arm, family)
    existing = sum(
        1
        for _, snapshot in arm.of_type(ids.SNAPSHOT)
        if (snapshot.get("properties") or {}).get("incrementalSnapshotFamilyId") == family
    )
    taken = [datetime.fromisoformat(t) for t in (disk or {}).get(TAKEN) or []]
    error = refusal(str((disk or source)["name"]), taken, existing, now, arm.snapshot_window)
    if error is not None:
        raise error
    if disk is not None:
        kept = [t.isoformat() for t in taken if now - t < arm.snapshot_window] + [now.isoformat()]
        key = str(disk["id"]).lower()
        with arm.store.lock:
            stored = arm.store.get(key)
            if stored is not None:
                stored[TAKEN] = kept
                arm.store.put(key, stored)


def _family_disk(arm: LocalArm, family: str) -> Doc | None:
    from devhost.arm.compute import snapshot_family  # compute imports this module

    return next((d for _, d in arm.of_type(ids.DISK) if snapshot_family(d) == family), None)
