"""Streaming checksums for replication data: SHA-256 (default) and Azure Storage's CRC64.

CRC64 is the polynomial Azure Storage uses for `x-ms-content-crc64`; its C implementation ships in
Microsoft's `azure-storage-extensions` (the `azure-storage-blob[ext-checksums]` extra). A manifest
writes the CRC as 16 lowercase hex digits of the 64-bit value, the SHA-256 as 64 hex digits.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Protocol

from azure.storage.extensions.checksums import crc64 as _crc64


class ChecksumAlgorithm(StrEnum):
    SHA256 = "sha256"
    CRC64 = "crc64"


class StreamingChecksum(Protocol):
    algorithm: ChecksumAlgorithm

    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


class Sha256Checksum:
    algorithm = ChecksumAlgorithm.SHA256

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, data: bytes | memoryview, /) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class Crc64Checksum:
    algorithm = ChecksumAlgorithm.CRC64

    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: bytes | memoryview, /) -> None:
        # The C extension accepts bytes only (not memoryview), so a view costs one copy here.
        self._crc = _crc64.compute(data if isinstance(data, bytes) else bytes(data), self._crc)

    def hexdigest(self) -> str:
        return f"{self._crc:016x}"


def crc64_combine(crc_a: int, crc_b: int, length_b: int) -> int:
    """The CRC64 of A||B, given CRC64(A), CRC64(B) and len(B): what a Put Page of several adjacent extents
    must carry, made from the extents' own CRCs in the manifest without reading their bytes. The C
    extension's `concat` does it in O(log len(B)); with zero initial values the length of A plays no part."""
    return int(_crc64.concat(0, 0, crc_a, 0, 0, crc_b, length_b))


def new_checksum(algorithm: ChecksumAlgorithm) -> StreamingChecksum:
    if algorithm is ChecksumAlgorithm.SHA256:
        return Sha256Checksum()
    return Crc64Checksum()


def checksum_hex(algorithm: ChecksumAlgorithm, data: bytes | memoryview) -> str:
    c = new_checksum(algorithm)
    c.update(data)
    return c.hexdigest()
