"""Streaming checksums for replication data: SHA-256 (default) and Azure Storage's CRC64.

CRC64 is the polynomial Azure Storage uses for `x-ms-content-crc64`; its C implementation ships in
Microsoft's `azure-storage-extensions` (the `azure-storage-blob[ext-checksums]` extra). A manifest
writes the CRC as 16 lowercase hex digits of the 64-bit value, the SHA-256 as 64 hex digits.
"""

from __future__ import annotations

import hashlib
import threading
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


class _Crc64Shift:
    """Advance a CRC64 over n zero bytes in O(log n) table lookups, never touching n bytes.

    What `crc64_combine` needs: the CRC of A||B from the CRCs of A and B. Continuing a CRC over B is affine
    in the starting value, `compute(B, c) == compute(B, 0) ^ S_len(B)(c)`, and S_n (the effect of n zero
    bytes) is linear over GF(2); its matrix for one byte is read off the C extension itself, so the result
    is that implementation's CRC64 by construction. S_(2^k) comes from squaring S_(2^(k-1)); each is kept
    as eight 256-entry tables (one per byte of the value), built the first time a length needs it.
    """

    def __init__(self) -> None:
        zero = _crc64.compute(b"\0", 0)
        one_byte = [_crc64.compute(b"\0", 1 << bit) ^ zero for bit in range(64)]
        self._powers = [self._tables(one_byte)]
        self._lock = threading.Lock()

    @staticmethod
    def _tables(columns: list[int]) -> list[list[int]]:
        tables = []
        for byte in range(8):
            table = [0] * 256
            for value in range(1, 256):
                low = value & -value
                table[value] = table[value ^ low] ^ columns[8 * byte + low.bit_length() - 1]
            tables.append(table)
        return tables

    @staticmethod
    def _apply(t: list[list[int]], v: int) -> int:
        return (
            t[0][v & 255]
            ^ t[1][(v >> 8) & 255]
            ^ t[2][(v >> 16) & 255]
            ^ t[3][(v >> 24) & 255]
            ^ t[4][(v >> 32) & 255]
            ^ t[5][(v >> 40) & 255]
            ^ t[6][(v >> 48) & 255]
            ^ t[7][v >> 56]
        )

    def _power(self, k: int) -> list[list[int]]:
        if k >= len(self._powers):
            with self._lock:
                while k >= len(self._powers):
                    last = self._powers[-1]
                    columns = [self._apply(last, self._apply(last, 1 << bit)) for bit in range(64)]
                    self._powers.append(self._tables(columns))
        return self._powers[k]

    def shift(self, crc: int, length: int) -> int:
        k = 0
        while length:
            if length & 1:
                crc = self._apply(self._power(k), crc)
            length >>= 1
            k += 1
        return crc


_shift = _Crc64Shift()


def crc64_combine(crc_a: int, crc_b: int, length_b: int) -> int:
    """The CRC64 of A||B, given CRC64(A), CRC64(B) and len(B): what a Put Page of several adjacent extents
    must carry, made from the extents' own CRCs in the manifest without reading their bytes."""
    return _shift.shift(crc_a, length_b) ^ crc_b


def new_checksum(algorithm: ChecksumAlgorithm) -> StreamingChecksum:
    if algorithm is ChecksumAlgorithm.SHA256:
        return Sha256Checksum()
    return Crc64Checksum()


def checksum_hex(algorithm: ChecksumAlgorithm, data: bytes | memoryview) -> str:
    c = new_checksum(algorithm)
    c.update(data)
    return c.hexdigest()
