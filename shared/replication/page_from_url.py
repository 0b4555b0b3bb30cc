"""Put Page From URL with the service verifying each range: what the apply engine needs for that path.

With `x-ms-source-content-crc64` the storage service reads the source range from the cache blob, computes
its CRC64 and writes the destination range only if it matches: the manifest's per-unit CRC64 is checked
where the data is, and no byte passes through the worker. This module holds the pieces of that path that
are not the engine's general machinery (apply_engine.py):

- which manifests the service can verify (`service_verifiable`): every extent carries a CRC64, no SHA-256
  (which only the worker could check) and is one write unit (at most 4 MiB), as the appliance writes them;
- the CRC64 of a run of extents coalesced into one call (`Crc64Run`: CRC64s concatenate without the data);
- which extents are all zeros without reading them (`is_zero_extent`: its CRC64 is that of zeros of its
  length; writing zeros is then exactly what the manifest describes, so Clear Pages is right whatever the
  blob holds);
- what the service's refusals mean for the cycle (`is_checksum_mismatch`, `is_source_changed`,
  `is_source_missing`; the engine raises accordingly): a CRC mismatch is a damaged upload
  (`ExtentChecksumMismatch`, as the worker's own verification says it), a source changed or gone is
  `CycleDataChanged` / `CycleDataMissing`; anything else is not the upload's fault and is raised as is.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Final

from azure.core.exceptions import HttpResponseError
from azure.storage.extensions.checksums import crc64 as _crc64

from shared.replication.checksums import crc64_combine
from shared.replication.delta_manifest import Extent

MAX_UNIT: Final = 4 * 1024 * 1024
CHECKSUM_MISMATCH_CODES: Final = frozenset({"Crc64Mismatch", "Md5Mismatch"})
SOURCE_CHANGED_CODES: Final = frozenset({"SourceConditionNotMet", "ConditionNotMet"})
SOURCE_UNVERIFIABLE: Final = "CannotVerifyCopySource"


def service_verifiable(extents: Iterable[Extent]) -> str | None:
    """None when the service can verify every extent on its own; else why not (the engine streams then)."""
    for index, extent in enumerate(extents):
        if extent.crc64 is None:
            return f"extent {index} has no crc64 (only the worker can check a sha256)"
        if extent.sha256 is not None:
            return f"extent {index} has a sha256 too, which only the worker can check"
        if extent.length > MAX_UNIT:
            return f"extent {index} is {extent.length} bytes, more than one 4 MiB write unit"
    return None


@functools.lru_cache(maxsize=128)
def zero_crc64(length: int) -> int:
    """The CRC64 of `length` zero bytes (lengths repeat: extents are mostly the same few sizes)."""
    return int(_crc64.compute(bytes(length), 0))


def is_zero_extent(extent: Extent) -> bool:
    return extent.crc64 is not None and int(extent.crc64, 16) == zero_crc64(extent.length)


class Crc64Run:
    """The CRC64 of consecutive byte ranges, from each range's CRC64 and length (no data needed)."""

    def __init__(self) -> None:
        self.crc = 0
        self.length = 0

    def add(self, crc: int, length: int) -> None:
        self.crc = crc64_combine(self.crc, crc, length) if self.length else crc
        self.length += length

    def header(self) -> bytearray:
        """As `x-ms-source-content-crc64` carries it: the 64-bit value's 8 bytes, little-endian (base64
        on the wire, which the SDK does)."""
        return bytearray(self.crc.to_bytes(8, "little"))


def error_code(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def is_checksum_mismatch(exc: HttpResponseError) -> bool:
    return exc.status_code == 400 and error_code(exc) in CHECKSUM_MISMATCH_CODES


def is_source_changed(exc: HttpResponseError) -> bool:
    return exc.status_code == 412 and error_code(exc) in SOURCE_CHANGED_CODES | {SOURCE_UNVERIFIABLE}


def is_source_missing(exc: HttpResponseError) -> bool:
    return exc.status_code == 404 and error_code(exc) in {SOURCE_UNVERIFIABLE, "BlobNotFound"}
