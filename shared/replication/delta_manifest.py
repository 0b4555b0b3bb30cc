"""The delta manifest: one per disk per cycle, the contract between the appliance and the apply engine.

A manifest lists the disk ranges (extents) a cycle changes and where each range's bytes are in the
cycle's data blobs in the cache storage account, each with a checksum. It is normative: see
docs/delta-format.md and the JSON schema in docs/schemas/delta-manifest.schema.json (generated from
this model by docs/schemas/generate.py; a test fails when the committed file is stale).

Blob layout in the cache container (all names relative to it):
    {machineId}/{cycleId}/{diskId}/data-00000.bin, data-00001.bin, ...   uploaded first
    {machineId}/{cycleId}/{diskId}/manifest.json                          uploaded last
An extent may only point at blobs under its own `{machineId}/{cycleId}/` prefix, so a manifest can
never make the control plane read another machine's (or another cycle's) data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Final, Literal, Self

from pydantic import Field, ValidationError, model_validator

from shared.domain.cycle import CycleKind
from shared.domain.errors import DomainError, FieldProblem, FieldValueError, ValidationFailed
from shared.domain.wire import ResourceId, WireModel
from shared.replication.checksums import ChecksumAlgorithm

SECTOR_SIZE: Final = 512
MANIFEST_FORMAT_VERSION: Final = 1
MANIFEST_FILE_NAME: Final = "manifest.json"
MAX_BLOB_NAME_LENGTH: Final = 1024
# Manifests are streamed (memory does not grow with them); this still caps the local copy well above
# any real delta (a 2 TiB disk changed everywhere in 4 MiB extents is ~524k extents, ~100 MB of JSON).
MAX_MANIFEST_BYTES: Final = 256 * 1024 * 1024

FULL_IMAGE_KINDS: Final = frozenset({CycleKind.INITIAL, CycleKind.RESYNC})


class CycleRejected(DomainError):
    """The uploaded cycle is unusable. Retrying the same upload cannot succeed.

    `replica_changed`: the one-pass engine had already written part of it when it found the damage (it
    verifies while writing), so the replica must be restored from the previous recovery point; otherwise
    nothing was written."""

    code = "CycleRejected"
    replica_changed: bool = False


class ManifestInvalid(CycleRejected):
    """The manifest does not satisfy the format; `problems` says which field and why. Nothing was applied."""

    code = "ManifestInvalid"

    def __init__(self, problems: list[FieldProblem], *, source: str = "manifest") -> None:
        self.problems = problems
        summary = "; ".join(f"{p.field}: {p.problem}" for p in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"{source} is invalid: {summary}{more}", details=[p.to_wire() for p in problems])


def cycle_prefix(machine_id: str, cycle_id: str) -> str:
    return f"{machine_id}/{cycle_id}/"


def disk_prefix(machine_id: str, cycle_id: str, disk_id: str) -> str:
    return f"{machine_id}/{cycle_id}/{disk_id}/"


def manifest_blob_name(machine_id: str, cycle_id: str, disk_id: str) -> str:
    return disk_prefix(machine_id, cycle_id, disk_id) + MANIFEST_FILE_NAME


def data_blob_name(machine_id: str, cycle_id: str, disk_id: str, index: int) -> str:
    return disk_prefix(machine_id, cycle_id, disk_id) + f"data-{index:05d}.bin"


HexSha256 = Field(
    default=None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the extent's bytes, lowercase hex"
)
HexCrc64 = Field(
    default=None,
    pattern=r"^[0-9a-f]{16}$",
    description="Azure Storage CRC64 (as in x-ms-content-crc64) of the extent's bytes, 16 lowercase hex digits",
)


class Extent(WireModel):
    """Disk bytes [offset, offset+length) are the bytes [blobOffset, blobOffset+length) of `blob`."""

    offset: int = Field(
        ge=0, multiple_of=SECTOR_SIZE, description="byte offset on the disk, a multiple of 512"
    )
    length: int = Field(gt=0, multiple_of=SECTOR_SIZE, description="bytes, a positive multiple of 512")
    blob: str = Field(
        min_length=1,
        max_length=MAX_BLOB_NAME_LENGTH,
        description="data blob name in the cache container, under {machineId}/{cycleId}/",
    )
    blob_offset: int = Field(ge=0, description="byte offset of the extent's data in the blob")
    crc64: str | None = HexCrc64
    sha256: str | None = HexSha256

    @model_validator(mode="after")
    def _has_checksum(self) -> Self:
        if self.crc64 is None and self.sha256 is None:
            raise FieldValueError(
                "sha256", "every extent needs a checksum: give crc64 (what the appliance writes) or sha256"
            )
        if self.blob.startswith("/") or ".." in self.blob.split("/") or "\\" in self.blob:
            raise FieldValueError(
                "blob", f"{self.blob!r} must be a plain relative blob name (no '/', '..' or '\\')"
            )
        return self

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def blob_end(self) -> int:
        return self.blob_offset + self.length

    def checksums(self) -> dict[ChecksumAlgorithm, str]:
        found: dict[ChecksumAlgorithm, str] = {}
        if self.sha256 is not None:
            found[ChecksumAlgorithm.SHA256] = self.sha256
        if self.crc64 is not None:
            found[ChecksumAlgorithm.CRC64] = self.crc64
        return found


class ManifestHeader(WireModel):
    """Everything in a manifest but its extents: what the streaming reader validates before the extents."""

    format_version: Literal[1] = Field(
        default=MANIFEST_FORMAT_VERSION, description="this document's format: 1"
    )
    machine_id: ResourceId
    disk_id: ResourceId
    cycle_id: ResourceId
    sequence: int = Field(ge=0, description="the cycle's position in the machine's cycle order")
    kind: CycleKind = Field(
        description="initial and resync describe the whole disk (bytes outside every extent are zero); "
        "delta and final change only the listed extents"
    )
    disk_size: int = Field(gt=0, multiple_of=SECTOR_SIZE, description="the source disk's size in bytes")
    sector_size: Literal[512] = SECTOR_SIZE

    @property
    def blob_name(self) -> str:
        return manifest_blob_name(self.machine_id, self.cycle_id, self.disk_id)

    @property
    def describes_whole_disk(self) -> bool:
        return self.kind in FULL_IMAGE_KINDS

    def extent_problem(self, index: int, extent: Extent, previous_end: int) -> FieldProblem | None:
        """The rule an extent breaks in this manifest given where the previous one ended, if any.

        One place for the rules the schema cannot say, shared by the in-memory model and the streaming
        reader (shared/replication/manifest_stream.py) so both refuse the same documents the same way."""
        where = f"extents.{index}"
        if extent.offset < previous_end:
            return FieldProblem(
                where,
                f"offset {extent.offset} overlaps or precedes the previous extent (which ends at {previous_end}): "
                "extents must be sorted by offset and must not overlap",
            )
        if extent.end > self.disk_size:
            return FieldProblem(where, f"ends at {extent.end}, beyond the disk's size {self.disk_size}")
        prefix = cycle_prefix(self.machine_id, self.cycle_id)
        if not extent.blob.startswith(prefix):
            return FieldProblem(
                f"{where}.blob", f"{extent.blob!r} is outside this cycle's data ({prefix}...)"
            )
        return None


class DeltaManifest(ManifestHeader):
    """One disk's share of one replication cycle, held in memory (small manifests, tests, the appliance).

    The control plane reads uploaded manifests with `manifest_stream.StreamedManifest` instead, whose
    memory does not grow with the number of extents."""

    extents: list[Extent] = Field(
        description="sorted by offset, non-overlapping, each within diskSize; adjacent extents are allowed"
    )

    @model_validator(mode="after")
    def _extents_are_ordered_and_inside(self) -> Self:
        previous_end = 0
        for i, extent in enumerate(self.extents):
            problem = self.extent_problem(i, extent, previous_end)
            if problem is not None:
                raise FieldValueError(problem.field, problem.problem)
            previous_end = extent.end
        return self

    @property
    def extent_count(self) -> int:
        return len(self.extents)

    def iter_extents(self) -> Iterator[Extent]:
        return iter(self.extents)

    @property
    def total_bytes(self) -> int:
        return sum(e.length for e in self.extents)

    def referenced_blob_sizes(self) -> dict[str, int]:
        """Each data blob's exact expected size: the end of the furthest extent that reads it."""
        sizes: dict[str, int] = {}
        for extent in self.extents:
            sizes[extent.blob] = max(sizes.get(extent.blob, 0), extent.blob_end)
        return sizes

    def to_json_bytes(self) -> bytes:
        body = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, data: bytes | str | dict[str, Any], *, source: str = "manifest") -> DeltaManifest:
        """Validate a manifest; raises ManifestInvalid listing every problem by field."""
        try:
            if isinstance(data, dict):
                return cls.model_validate(data)
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise ManifestInvalid(ValidationFailed.from_pydantic(exc).problems, source=source) from exc


def manifest_json_schema() -> dict[str, Any]:
    schema = DeltaManifest.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://schemas.migration-control-plane.local/delta-manifest.schema.json"
    schema["title"] = "Delta manifest"
    schema["description"] = (
        "One disk's share of one replication cycle (docs/delta-format.md). Rules the schema cannot say: "
        "extents are sorted by offset and do not overlap; offset+length <= diskSize; every extent has "
        "sha256 or crc64; every blob is under '{machineId}/{cycleId}/'."
    )
    return schema
