"""Changed blocks by comparing block hashes with the last cycle's: the fallback when tracking is reset.

After a CBT reset the appliance cannot know what changed, but it kept the hash of every block it
uploaded last time; a resync then sends only blocks whose hash differs, not the whole disk.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Final

from appliance.blocks import MIB, SECTOR, BlockSource, Range, block_ranges

DIGEST_SIZE: Final = 16  # truncated SHA-256: a 2 TiB disk at 1 MiB blocks is a 32 MiB index
DEFAULT_HASH_BLOCK: Final = 1 * MIB
_HEADER: Final = struct.Struct("<4sIQ")
_MAGIC: Final = b"BHI1"


class BlockHashIndex:
    def __init__(self, block_size: int, disk_size: int, digests: bytes) -> None:
        if block_size % SECTOR:
            raise ValueError("block_size must be a multiple of 512")
        if len(digests) != self.blocks_for(disk_size, block_size) * DIGEST_SIZE:
            raise ValueError("digest table does not match the disk size")
        self.block_size = block_size
        self.disk_size = disk_size
        self.digests = digests

    @staticmethod
    def blocks_for(disk_size: int, block_size: int) -> int:
        return -(-disk_size // block_size)

    def digest(self, block: int) -> bytes:
        return self.digests[block * DIGEST_SIZE : (block + 1) * DIGEST_SIZE]

    @classmethod
    def compute(cls, source: BlockSource, *, block_size: int = DEFAULT_HASH_BLOCK) -> BlockHashIndex:
        index, _ = diff_blocks(source, None, block_size=block_size)
        return index

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(_HEADER.pack(_MAGIC, self.block_size, self.disk_size) + self.digests)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> BlockHashIndex:
        raw = path.read_bytes()
        magic, block_size, disk_size = _HEADER.unpack_from(raw)
        if magic != _MAGIC:
            raise ValueError(f"{path} is not a block hash index")
        return cls(block_size, disk_size, raw[_HEADER.size :])


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:DIGEST_SIZE]


def diff_blocks(
    source: BlockSource, previous: BlockHashIndex | None, *, block_size: int = DEFAULT_HASH_BLOCK
) -> tuple[BlockHashIndex, list[Range]]:
    """Hash every block of `source` (one streaming pass) and list the blocks that differ from `previous`.

    With no usable previous index (none, other block size, other disk size) every block is "changed".
    """
    if previous is not None and (previous.block_size != block_size or previous.disk_size != source.size):
        previous = None
    digests = bytearray()
    changed = []
    for block in range(BlockHashIndex.blocks_for(source.size, block_size)):
        start = block * block_size
        digest = _digest(source.read(start, min(block_size, source.size - start)))
        digests += digest
        if previous is None or previous.digest(block) != digest:
            changed.append(block)
    return BlockHashIndex(block_size, source.size, bytes(digests)), block_ranges(
        changed, block_size, source.size
    )
