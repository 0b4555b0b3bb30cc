"""The on-premises side of a planned failover to on-premises: a copy of each disk image taken before
the machine is powered on, restored byte for byte by a cancel, deleted once it is not needed; and the
guest's heartbeat after power-on.

- A copy is `<image>.snap-<name>` beside the image. It is a reflink (`FICLONE`: the filesystem shares
  the blocks until either file changes, so taking it is instant and costs no space) where the
  filesystem supports one, else a sparse copy (only the data extents, found with SEEK_DATA/SEEK_HOLE,
  are copied with `copy_file_range`; holes stay holes). It is written under a temporary name and
  renamed, so a copy that exists is complete. A copy that exists is kept as it is: taken again after
  the machine ran it would hold the wrong data.
- Reverting clones (or copies) the snapshot to a temporary file beside the image and renames it over
  the image: the image is the snapshot byte for byte, size included, or unchanged if the revert fails.
- The guest's heartbeat (`.<machine>.heartbeat.json`, as a hypervisor's guest tools report it): the
  local hypervisor boots a powered-on guest at once, so the heartbeat is written with the power flag
  unless the machine is told not to boot (the tests of a guest that never comes up).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from shared.domain.command import (
    CommandError,
    DeleteDiskSnapshots,
    DiskSnapshot,
    DiskSnapshotsDeleted,
    DisksReverted,
    DisksSnapshotted,
    RevertDisks,
    SnapshotDisks,
    SnapshotMethod,
)

# linux/fs.h: _IOW(0x94, 9, int), clone a whole file onto another of the same filesystem.
FICLONE: Final = 0x40049409
_COPY_CHUNK: Final = 64 * 1024 * 1024
_NO_REFLINK: Final = frozenset(
    {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EPERM}
)
SNAPSHOT_NOT_FOUND: Final = "DiskSnapshotNotFound"
SNAPSHOT_FAILED: Final = "DiskSnapshotFailed"
REVERT_FAILED: Final = "DiskRevertFailed"


def snapshot_path(image: Path, name: str) -> Path:
    return image.with_name(f"{image.name}.snap-{name}")


# --- copying an image ---------------------------------------------------------------------------------


def clone_file(source: Path, target: Path) -> tuple[SnapshotMethod, int]:
    """`target` becomes `source` byte for byte (a new file, synced): a reflink where the filesystem can,
    else a sparse copy. Returns the method and the data bytes copied."""
    with source.open("rb") as src, target.open("wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            method, copied = SnapshotMethod.REFLINK, 0
        except OSError as exc:
            if exc.errno not in _NO_REFLINK:
                raise
            method, copied = SnapshotMethod.SPARSE, _sparse_copy(src.fileno(), dst.fileno())
        dst.flush()
        os.fsync(dst.fileno())
    return method, copied


def _sparse_copy(src: int, dst: int) -> int:
    size = os.fstat(src).st_size
    os.ftruncate(dst, size)
    copied = 0
    for start, end in _data_extents(src, size):
        offset = start
        while offset < end:
            done = _copy_range(src, dst, offset, min(_COPY_CHUNK, end - offset))
            offset += done
            copied += done
    return copied


def _data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """[start, end) of every data extent; the whole file where the filesystem cannot tell holes."""
    extents: list[tuple[int, int]] = []
    offset = 0
    try:
        while offset < size:
            start = os.lseek(fd, offset, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, min(end, size)))
            offset = end
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no data after offset: the rest is a hole
            return extents
        return [(0, size)] if size else []
    return extents


def _copy_range(src: int, dst: int, offset: int, length: int) -> int:
    try:
        done = os.copy_file_range(src, dst, length, offset, offset)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        done = 0
    if done > 0:
        return done
    data = os.pread(src, length, offset)
    if not data:
        raise OSError(errno.EIO, f"unexpected end of file at {offset}")
    if data.count(0) != len(data):  # an all-zero block stays a hole in the copy
        os.pwrite(dst, data, offset)
    return len(data)


# --- the machine's disks ------------------------------------------------------------------------------


class DiskSnapshots:
    """The copies of one machine's disk images, by disk id."""

    def __init__(self, images: dict[str, Path]) -> None:
        self.images = images

    def take(self, request: SnapshotDisks) -> tuple[DisksSnapshotted | None, CommandError | None]:
        taken: list[DiskSnapshot] = []
        for disk_id, image in self.images.items():
            copy = snapshot_path(image, request.snapshot_name)
            if copy.exists():
                taken.append(
                    DiskSnapshot(
                        disk_id=disk_id,
                        snapshot=copy.name,
                        method=SnapshotMethod.SPARSE,
                        bytes_copied=0,
                        already_taken=True,
                    )
                )
                continue
            tmp = copy.with_name(copy.name + ".tmp")
            try:
                method, copied = clone_file(image, tmp)
                os.replace(tmp, copy)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                return None, CommandError(
                    code=SNAPSHOT_FAILED, message=f"copying disk {disk_id} ({image.name}) failed: {exc}"
                )
            taken.append(
                DiskSnapshot(disk_id=disk_id, snapshot=copy.name, method=method, bytes_copied=copied)
            )
        return DisksSnapshotted(snapshot_name=request.snapshot_name, disks=taken), None

    def revert(self, request: RevertDisks) -> tuple[DisksReverted | None, CommandError | None]:
        missing = [
            disk_id
            for disk_id, image in self.images.items()
            if not snapshot_path(image, request.snapshot_name).exists()
        ]
        if missing:
            return None, CommandError(
                code=SNAPSHOT_NOT_FOUND,
                message=f"no copy {request.snapshot_name} of disk(s) {', '.join(missing)}: nothing was reverted",
            )
        copied = 0
        for disk_id, image in self.images.items():
            tmp = image.with_name(image.name + ".revert.tmp")
            try:
                _, done = clone_file(snapshot_path(image, request.snapshot_name), tmp)
                os.replace(tmp, image)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                return None, CommandError(
                    code=REVERT_FAILED, message=f"reverting disk {disk_id} failed: {exc}"
                )
            copied += done
        return DisksReverted(
            snapshot_name=request.snapshot_name, disk_ids=list(self.images), bytes_copied=copied
        ), None

    def delete(self, request: DeleteDiskSnapshots) -> DiskSnapshotsDeleted:
        deleted = []
        for disk_id, image in self.images.items():
            copy = snapshot_path(image, request.snapshot_name)
            if copy.exists():
                copy.unlink()
                deleted.append(disk_id)
        return DiskSnapshotsDeleted(snapshot_name=request.snapshot_name, deleted=deleted)


# --- the guest's heartbeat ----------------------------------------------------------------------------


class GuestHeartbeat:
    """When the guest was last heard after power-on, as the hypervisor's guest tools report it."""

    def __init__(self, directory: Path, machine_id: str) -> None:
        self.path = Path(directory) / f".{machine_id}.heartbeat.json"

    def beat(self, at: datetime | None = None) -> datetime:
        when = at or datetime.now(UTC)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"heartbeatAt": when.isoformat()}))
        os.replace(tmp, self.path)
        return when

    def last(self) -> datetime | None:
        try:
            return datetime.fromisoformat(json.loads(self.path.read_text())["heartbeatAt"])
        except FileNotFoundError:
            return None

    def stop(self) -> None:
        self.path.unlink(missing_ok=True)
