"""Hyper-V Replica style change logs (`.hrl`): every write to the disk is also appended to a log.

Seed 001: changes are tracked in log files (hrl) beside the disk, one per disk, and the Recovery
Services agent uploads them periodically. Here the tracker writes through to the image and appends
each write (offset, length, CRC32, data) to `<image>.hrl`; `switch_log()` freezes the current log as
`<image>.<n>.hrl` and starts a new one, as Hyper-V switches logs at each replication interval.

A frozen log is a point-in-time source for the cycle: `ReplicationLog.open()` replays it
(last writer wins per byte), and serves `changed_ranges()` and `read()` from the log's own bytes, so
the cycle is consistent even though the live image keeps changing.

On-disk format (little-endian):
    header  "HRL1" | u16 version=1 | u16 reserved | u64 disk size | u64 log number | u64 reserved
    record  "WREC" | u64 sequence | u64 disk offset | u32 length | u32 crc32(data) | data[length]
"""

from __future__ import annotations

import bisect
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from appliance.blocks import ImageFile, Range, check_aligned, merge_ranges

_HEADER: Final = struct.Struct("<4sHHQQQ")
_RECORD: Final = struct.Struct("<4sQQII")
HEADER_MAGIC: Final = b"HRL1"
RECORD_MAGIC: Final = b"WREC"
VERSION: Final = 1


class ReplicationLogCorrupt(ValueError):
    """A log cannot be replayed: torn or corrupt record, or not an .hrl file."""


def live_log_path(image: Path) -> Path:
    return image.with_name(image.name + ".hrl")


def frozen_log_path(image: Path, number: int) -> Path:
    return image.with_name(f"{image.name}.{number:06d}.hrl")


class HyperVChangeTracker:
    """Writes through to a disk image and logs every write to the live `.hrl` file."""

    def __init__(self, image_path: Path) -> None:
        self.image_path = Path(image_path)
        self.image = ImageFile(self.image_path, writable=True)
        self._number = self._last_frozen_number() + 1
        self._sequence = 0
        self._log = self._open_live()

    def _last_frozen_number(self) -> int:
        numbers = []
        for path in self.image_path.parent.glob(self.image_path.name + ".*.hrl"):
            middle = path.name[len(self.image_path.name) + 1 : -len(".hrl")]
            if middle.isdigit():
                numbers.append(int(middle))
        return max(numbers, default=0)

    def _open_live(self) -> int:
        path = live_log_path(self.image_path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        os.write(fd, _HEADER.pack(HEADER_MAGIC, VERSION, 0, self.image.size, self._number, 0))
        return fd

    def write(self, offset: int, data: bytes) -> None:
        check_aligned(offset, len(data))
        self.image.write(offset, data)
        self._sequence += 1
        record = _RECORD.pack(RECORD_MAGIC, self._sequence, offset, len(data), zlib.crc32(data))
        os.write(self._log, record + data)

    def switch_log(self) -> Path:
        """Freeze the current log for upload and start a new one; returns the frozen log's path."""
        os.fsync(self._log)
        os.close(self._log)
        frozen = frozen_log_path(self.image_path, self._number)
        os.replace(live_log_path(self.image_path), frozen)
        self._number += 1
        self._sequence = 0  # records are numbered per log: a gap inside one log means a lost write
        self._log = self._open_live()
        return frozen

    def close(self) -> None:
        os.close(self._log)
        self.image.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(slots=True)
class _Segment:
    start: int
    end: int
    log_offset: int  # where disk byte `start` is in the log file


class ReplicationLog:
    """A frozen `.hrl` replayed into its final state: which bytes changed, and their latest contents."""

    def __init__(self, path: Path, fd: int, disk_size: int, number: int, segments: list[_Segment]) -> None:
        self.path = path
        self._fd = fd
        self.disk_size = disk_size
        self.number = number
        self._segments = segments
        self._starts = [s.start for s in segments]

    @property
    def size(self) -> int:
        return self.disk_size

    @classmethod
    def open(cls, path: Path) -> ReplicationLog:
        fd = os.open(path, os.O_RDONLY)
        try:
            disk_size, number, segments = _replay(path, fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(Path(path), fd, disk_size, number, segments)

    def changed_ranges(self) -> list[Range]:
        return merge_ranges((s.start, s.end - s.start) for s in self._segments)

    def read(self, offset: int, length: int) -> bytes:
        """Latest logged bytes for [offset, offset+length); every byte must have been written in this log."""
        end = offset + length
        parts = []
        position = offset
        i = max(0, bisect.bisect_right(self._starts, offset) - 1)
        while position < end:
            if (
                i >= len(self._segments)
                or self._segments[i].start > position
                or self._segments[i].end <= position
            ):
                raise ValueError(f"disk bytes at {position} were not written in {self.path.name}")
            seg = self._segments[i]
            n = min(end, seg.end) - position
            parts.append(os.pread(self._fd, n, seg.log_offset + (position - seg.start)))
            position += n
            i += 1
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _replay(path: Path, fd: int) -> tuple[int, int, list[_Segment]]:
    header = os.pread(fd, _HEADER.size, 0)
    if len(header) != _HEADER.size:
        raise ReplicationLogCorrupt(f"{path.name} is too short to be a replication log")
    magic, version, _, disk_size, number, _ = _HEADER.unpack(header)
    if magic != HEADER_MAGIC or version != VERSION:
        raise ReplicationLogCorrupt(f"{path.name} is not a version-{VERSION} .hrl log")
    size = os.fstat(fd).st_size
    position = _HEADER.size
    segments: list[_Segment] = []
    expected_sequence = 1
    while position < size:
        raw = os.pread(fd, _RECORD.size, position)
        if len(raw) != _RECORD.size:
            raise ReplicationLogCorrupt(f"{path.name}: torn record header at byte {position}")
        magic, sequence, offset, length, crc = _RECORD.unpack(raw)
        data_at = position + _RECORD.size
        if magic != RECORD_MAGIC or sequence != expected_sequence:
            raise ReplicationLogCorrupt(f"{path.name}: bad record at byte {position} (sequence {sequence})")
        if data_at + length > size or offset + length > disk_size:
            raise ReplicationLogCorrupt(f"{path.name}: record {sequence} runs past the log or the disk")
        if zlib.crc32(_read_exact(fd, length, data_at)) != crc:
            raise ReplicationLogCorrupt(f"{path.name}: record {sequence} fails its CRC32")
        _paint(segments, _Segment(offset, offset + length, data_at))
        position = data_at + length
        expected_sequence += 1
    return disk_size, number, segments


def _read_exact(fd: int, length: int, offset: int) -> bytes:
    parts = []
    done = 0
    while done < length:
        chunk = os.pread(fd, min(length - done, 16 * 1024 * 1024), offset + done)
        if not chunk:
            break
        parts.append(chunk)
        done += len(chunk)
    return b"".join(parts)


def _paint(segments: list[_Segment], new: _Segment) -> None:
    """Lay `new` over the sorted, disjoint segments: later writes win byte for byte."""
    starts = [s.start for s in segments]
    i = max(0, bisect.bisect_right(starts, new.start) - 1)
    replaced: list[_Segment] = []
    j = i
    while j < len(segments) and segments[j].start < new.end:
        seg = segments[j]
        if seg.end <= new.start:
            replaced.append(seg)  # entirely before: keep
        else:
            if seg.start < new.start:
                replaced.append(_Segment(seg.start, new.start, seg.log_offset))
            if seg.end > new.end:
                replaced.append(_Segment(new.end, seg.end, seg.log_offset + (new.end - seg.start)))
        j += 1
    replaced.append(new)
    replaced.sort(key=lambda s: s.start)
    segments[i:j] = replaced
