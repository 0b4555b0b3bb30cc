"""Disk images as block sources, and the range arithmetic every change tracker shares.

A range is `(offset, length)` in bytes, 512-aligned. Lists of ranges are kept sorted and coalesced.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol, Self

SECTOR: Final = 512
KIB: Final = 1024
MIB: Final = 1024 * 1024
DEFAULT_BLOCK_SIZE: Final = 64 * KIB  # VMware CBT's usual granularity
MAX_EXTENT: Final = 4 * MIB  # one Put Page on the control plane's side

Range = tuple[int, int]


class BlockSource(Protocol):
    """Point-in-time disk contents the uploader reads changed ranges from."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


class ImageFile:
    """A raw disk image file opened for reading (or read-write for the trackers). Reads are pread()s."""

    def __init__(self, path: Path, *, writable: bool = False) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR if writable else os.O_RDONLY)
        size = os.fstat(self._fd).st_size
        if size % SECTOR:
            os.close(self._fd)
            raise ValueError(f"{self.path} is {size} bytes, not a whole number of 512-byte sectors")
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    @property
    def fd(self) -> int:
        return self._fd

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset + length > self._size:
            raise ValueError(f"read {offset}+{length} is outside {self.path} ({self._size} bytes)")
        parts = []
        done = 0
        while done < length:
            chunk = os.pread(self._fd, length - done, offset + done)
            if not chunk:
                raise OSError(f"{self.path} ended at {offset + done} while reading {offset}+{length}")
            parts.append(chunk)
            done += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def write(self, offset: int, data: bytes) -> None:
        if offset < 0 or offset + len(data) > self._size:
            raise ValueError(f"write {offset}+{len(data)} is outside {self.path} ({self._size} bytes)")
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, offset)
            view, offset = view[n:], offset + n

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def check_aligned(offset: int, length: int) -> None:
    if offset % SECTOR or length % SECTOR or offset < 0 or length <= 0:
        raise ValueError(f"disk I/O must be whole 512-byte sectors: offset {offset}, length {length}")


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Sort and coalesce overlapping or adjacent ranges."""
    out: list[Range] = []
    for offset, length in sorted(r for r in ranges if r[1] > 0):
        if out and offset <= out[-1][0] + out[-1][1]:
            start = out[-1][0]
            out[-1] = (start, max(out[-1][0] + out[-1][1], offset + length) - start)
        else:
            out.append((offset, length))
    return out


def split_ranges(ranges: Iterable[Range], max_length: int) -> Iterator[Range]:
    for offset, length in ranges:
        while length > 0:
            n = min(length, max_length)
            yield offset, n
            offset, length = offset + n, length - n


def block_ranges(blocks: Iterable[int], block_size: int, disk_size: int) -> list[Range]:
    """Block indexes -> coalesced byte ranges, the last block clipped to the disk."""
    ranges = []
    for block in blocks:
        start = block * block_size
        ranges.append((start, min(block_size, disk_size - start)))
    return merge_ranges(ranges)


def is_zero(data: bytes, start: int = 0, end: int | None = None) -> bool:
    """Whether data[start:end] is all zero bytes, without copying it."""
    end = len(data) if end is None else end
    if start >= end:
        return True
    # Real data is rarely zero at both ends, so most blocks are rejected without a scan.
    if data[start] or data[end - 1]:
        return False
    return data.count(0, start, end) == end - start


def nonzero_ranges(
    source: BlockSource, *, block_size: int = DEFAULT_BLOCK_SIZE, read_size: int = 4 * MIB
) -> list[Range]:
    """The blocks of `source` holding any non-zero byte: what an initial copy must send (a new replica is zeros)."""
    if block_size % SECTOR or read_size % block_size:
        raise ValueError("block_size must be a multiple of 512 and read_size a multiple of block_size")
    found: list[Range] = []
    size = source.size
    for offset in range(0, size, read_size):
        data = source.read(offset, min(read_size, size - offset))
        for start in range(0, len(data), block_size):
            end = min(start + block_size, len(data))
            if not is_zero(data, start, end):
                found.append((offset + start, end - start))
    return merge_ranges(found)
