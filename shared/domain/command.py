"""Commands the control plane queues for an appliance, which polls for them, and the appliance's answers.

Forward replication asks for cycles (RunCycle, ResyncDisk) and the source's shutdown. Reverse protection
(the Azure VM replicated back to its on-premises machine) adds one typed request per step of its data
path (`ReverseRequest`): power the on-premises machine off or on, apply a reverse manifest read from a
snapshot's SAS URL, hash a disk's blocks, report the blocks changed since a forward cycle. A command is
stored flat (`ApplianceCommand`, the request's fields beside its kind), and the appliance acknowledges
it with a `CommandAnswer`: the typed result of the kind it ran, or an error, or both when only part of
the work was done.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Final, Literal, Self

from pydantic import Field, TypeAdapter, model_validator

from shared.domain.cycle import CycleKind
from shared.domain.errors import FieldValueError
from shared.domain.wire import ResourceId, WireModel

SECTOR_SIZE: Final = 512
MIB: Final = 1024 * 1024
# One Put Page / one ranged read per write: Azure's largest page write, and what the appliance holds in
# memory per range in flight.
MAX_RANGE_BYTES: Final = 4 * MIB
DEFAULT_HASH_BLOCK_SIZE: Final = 1 * MIB
# A command is one Cosmos document (2 MB at most) and travels in one poll: a longer manifest is split
# into several commands (shared.failback.manifest.split_manifest).
MAX_MANIFEST_RANGES: Final = 4096
# A block hash list inline in an answer (the HTTP body is 1 MiB at most); a longer one goes to a blob.
MAX_INLINE_HASH_BYTES: Final = 512 * 1024


class CommandKind(StrEnum):
    RUN_CYCLE = "RunCycle"  # on-demand cycle (e.g. the final cycle before cutover)
    RESYNC_DISK = "ResyncDisk"
    SHUT_DOWN_SOURCE = "ShutDownSource"
    POWER_OFF_MACHINE = "PowerOffMachine"
    POWER_ON_MACHINE = "PowerOnMachine"
    APPLY_REVERSE_MANIFEST = "ApplyReverseManifest"
    HASH_DISK_BLOCKS = "HashDiskBlocks"
    REPORT_CHANGED_BLOCKS = "ReportChangedBlocks"


class CommandStatus(StrEnum):
    PENDING = "Pending"
    ACKNOWLEDGED = "Acknowledged"


# What the model's validator requires, said in the schema too (JSON Schema cannot see the validator).
_RESYNC_NAMES_A_DISK = {
    "if": {"properties": {"kind": {"const": CommandKind.RESYNC_DISK.value}}, "required": ["kind"]},
    "then": {"required": ["diskId"], "properties": {"diskId": {"type": "string", "minLength": 1}}},
}


# --- the reverse manifest ---------------------------------------------------------------------------


class RangeOp(StrEnum):
    WRITE = "write"  # read the range from the snapshot and write it
    ZERO = "zero"  # the range was cleared in Azure: write zeros (or punch a hole); nothing is read


HexCrc64 = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-f]{16}$",
        description="Azure Storage CRC64 (the x-ms-content-crc64 polynomial) of the range's bytes, "
        "16 lowercase hex digits of the 64-bit value",
    ),
]


class ManifestRange(WireModel):
    """Disk bytes [offset, offset+length) become the snapshot's same bytes (write) or zeros (zero)."""

    offset: int = Field(ge=0, multiple_of=SECTOR_SIZE, description="byte offset, a multiple of 512")
    length: int = Field(
        gt=0, multiple_of=SECTOR_SIZE, description="bytes, a multiple of 512; at most 4 MiB for a write"
    )
    op: RangeOp
    crc64: HexCrc64 | None = Field(
        default=None,
        description="a write whose bytes the control plane read (the hash fallback): the appliance writes "
        "only bytes that match it; absent for a range read straight from the snapshot, checked against "
        "the storage service's transactional CRC64 (x-ms-content-crc64) of its ranged GET instead",
    )

    @model_validator(mode="after")
    def _crc_for_writes(self) -> Self:
        if self.op is RangeOp.WRITE and self.length > MAX_RANGE_BYTES:
            raise FieldValueError("length", f"a write range is at most {MAX_RANGE_BYTES} bytes (4 MiB)")
        if self.op is RangeOp.ZERO and self.crc64 is not None:
            raise FieldValueError("crc64", "a zero range has no data to check; leave crc64 out")
        return self

    @property
    def end(self) -> int:
        return self.offset + self.length


def check_manifest(ranges: list[ManifestRange]) -> list[ManifestRange]:
    """Ranges sorted by offset and not overlapping: applying them in any order gives the same disk."""
    for before, after in pairwise(ranges):
        if after.offset < before.end:
            raise FieldValueError(
                "manifest",
                f"ranges must be sorted and must not overlap: {after.offset} starts before {before.end}",
            )
    return ranges


# --- typed requests of reverse protection -----------------------------------------------------------


class PowerOffMachine(WireModel):
    """Power the on-premises machine off (it must not change while Azure's data is written to it)."""

    kind: Literal[CommandKind.POWER_OFF_MACHINE] = CommandKind.POWER_OFF_MACHINE


class PowerOnMachine(WireModel):
    kind: Literal[CommandKind.POWER_ON_MACHINE] = CommandKind.POWER_ON_MACHINE


class ApplyReverseManifest(WireModel):
    """Write `manifest` to the disk, reading each write range from the snapshot behind the SAS URL."""

    kind: Literal[CommandKind.APPLY_REVERSE_MANIFEST] = CommandKind.APPLY_REVERSE_MANIFEST
    disk_id: str = Field(min_length=1)
    snapshot_read_url: str = Field(
        min_length=1, description="the snapshot's read SAS (beginGetAccess); ranged GETs only"
    )
    reverse_cycle_id: ResourceId
    manifest: list[ManifestRange] = Field(max_length=MAX_MANIFEST_RANGES)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        check_manifest(self.manifest)
        return self


class HashDiskBlocks(WireModel):
    kind: Literal[CommandKind.HASH_DISK_BLOCKS] = CommandKind.HASH_DISK_BLOCKS
    disk_id: str = Field(min_length=1)
    block_size: int = Field(
        default=DEFAULT_HASH_BLOCK_SIZE, ge=SECTOR_SIZE, le=64 * MIB, multiple_of=SECTOR_SIZE
    )


class ReportChangedBlocks(WireModel):
    kind: Literal[CommandKind.REPORT_CHANGED_BLOCKS] = CommandKind.REPORT_CHANGED_BLOCKS
    disk_id: str = Field(min_length=1)
    since_cycle_id: str = Field(
        min_length=1, description="the forward cycle that made the recovery point Azure started from"
    )


ReverseRequest = Annotated[
    PowerOffMachine | PowerOnMachine | ApplyReverseManifest | HashDiskBlocks | ReportChangedBlocks,
    Field(discriminator="kind"),
]
_REVERSE_REQUEST: TypeAdapter[ReverseRequest] = TypeAdapter(ReverseRequest)
REVERSE_KINDS: Final = frozenset(
    {
        CommandKind.POWER_OFF_MACHINE,
        CommandKind.POWER_ON_MACHINE,
        CommandKind.APPLY_REVERSE_MANIFEST,
        CommandKind.HASH_DISK_BLOCKS,
        CommandKind.REPORT_CHANGED_BLOCKS,
    }
)


# --- answers ----------------------------------------------------------------------------------------


class PowerState(StrEnum):
    ON = "on"
    OFF = "off"


class PowerChanged(WireModel):
    """The machine's power state after a power command; ShutDownSource (the cutover's) answers with it
    too, so the flow knows the source is off rather than that the command was read."""

    kind: Literal[CommandKind.POWER_OFF_MACHINE, CommandKind.POWER_ON_MACHINE, CommandKind.SHUT_DOWN_SOURCE]
    power_state: PowerState
    changed: bool = Field(description="false: the machine already was in that state")


class RangeOutcome(WireModel):
    """One manifest range as the appliance found and wrote it."""

    offset: int
    length: int
    op: RangeOp
    crc64: HexCrc64 | None = Field(default=None, description="of the bytes read (write ranges)")
    verified: bool = Field(description="write: the bytes read matched the manifest's CRC64 and were written")
    already_applied: bool = Field(
        default=False, description="written by an earlier attempt at the same manifest, not read again"
    )


class ReverseManifestApplied(WireModel):
    kind: Literal[CommandKind.APPLY_REVERSE_MANIFEST] = CommandKind.APPLY_REVERSE_MANIFEST
    disk_id: str
    reverse_cycle_id: str
    bytes_read: int = Field(ge=0, description="read from the snapshot by this attempt")
    bytes_written: int = Field(ge=0, description="data written to the disk by this attempt")
    bytes_zeroed: int = Field(ge=0, description="zeroed by this attempt")
    ranges: list[RangeOutcome]

    @property
    def complete(self) -> bool:
        return all(r.verified for r in self.ranges)


class BlockHashes(WireModel):
    """SHA-256 of every `blockSize` block of the disk (the last one clipped), 32 bytes each, in order."""

    kind: Literal[CommandKind.HASH_DISK_BLOCKS] = CommandKind.HASH_DISK_BLOCKS
    disk_id: str
    block_size: int
    disk_size: int
    algorithm: Literal["sha256"] = "sha256"
    hashes: str | None = Field(default=None, description="base64 of the digests, when small enough")
    hashes_blob: str | None = Field(
        default=None, description="else the digests' blob in the appliance's cache container"
    )

    @model_validator(mode="after")
    def _one_place(self) -> Self:
        if (self.hashes is None) == (self.hashes_blob is None):
            raise FieldValueError("hashes", "give the digests inline (hashes) or as a blob (hashesBlob)")
        return self


class ChangedBlocks(WireModel):
    kind: Literal[CommandKind.REPORT_CHANGED_BLOCKS] = CommandKind.REPORT_CHANGED_BLOCKS
    disk_id: str
    since_cycle_id: str
    available: bool = Field(description="false: no change record since that cycle (tracking was reset)")
    reason: str | None = Field(default=None, description="why the record is unavailable")
    ranges: list[tuple[int, int]] = Field(
        default_factory=list, description="[offset, length] pairs, sorted and coalesced"
    )

    @model_validator(mode="after")
    def _reason_when_unavailable(self) -> Self:
        if not self.available and not self.reason:
            raise FieldValueError("reason", "an unavailable change record says why")
        return self

    @property
    def bytes_changed(self) -> int:
        return sum(length for _, length in self.ranges)


CommandResult = Annotated[
    PowerChanged | ReverseManifestApplied | BlockHashes | ChangedBlocks, Field(discriminator="kind")
]


class CommandError(WireModel):
    code: str = Field(min_length=1)
    message: str


class CommandAnswer(WireModel):
    """The optional body of an acknowledgement: what the command produced and what went wrong."""

    result: CommandResult | None = None
    error: CommandError | None = None


# --- the stored command -----------------------------------------------------------------------------


class ApplianceCommand(WireModel, json_schema_extra=_RESYNC_NAMES_A_DISK):
    """Stored in `commands` (pk /applianceId): the appliance's poll is one single-partition query.

    RunCycle: upload a cycle of `cycleKind` (initial: every disk; final: the cutover's last cycle).
    ResyncDisk: upload a resync cycle that includes `diskId`. ShutDownSource: shut the source machine
    down, then acknowledge (the acknowledgement is the answer). Acknowledge each once carried out."""

    id: ResourceId = Field(description="deterministic per request: the same request is never queued twice")
    appliance_id: ResourceId
    machine_id: ResourceId
    kind: CommandKind
    disk_id: str | None = Field(
        default=None,
        description="ResyncDisk: the disk to copy in full; a reverse command: the disk it acts on",
    )
    cycle_kind: CycleKind | None = Field(
        default=None, description="the kind of the cycle that answers it (RunCycle and ResyncDisk)"
    )
    snapshot_read_url: str | None = Field(
        default=None, description="ApplyReverseManifest: the snapshot's read SAS (ranged GETs only)"
    )
    reverse_cycle_id: str | None = Field(default=None, description="ApplyReverseManifest: the reverse cycle")
    manifest: list[ManifestRange] | None = Field(
        default=None, description="ApplyReverseManifest: the ranges to write or zero, sorted, not overlapping"
    )
    block_size: int | None = Field(default=None, description="HashDiskBlocks: bytes per hashed block")
    since_cycle_id: str | None = Field(
        default=None, description="ReportChangedBlocks: the forward cycle the changes are counted from"
    )
    status: CommandStatus = CommandStatus.PENDING
    created_at: datetime
    acknowledged_at: datetime | None = None
    result: CommandResult | None = Field(default=None, description="the appliance's answer, when it gave one")
    error: CommandError | None = None
    # Cosmos's per-document TTL in seconds (-1 = keep); set on acknowledgement so done commands expire.
    ttl: int = Field(default=-1, ge=-1)

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> ApplianceCommand:
        if self.kind is CommandKind.RESYNC_DISK and not self.disk_id:
            raise FieldValueError("diskId", "a ResyncDisk command names the disk to resync")
        if self.kind in REVERSE_KINDS:
            self.request()  # the same checks as the typed request's
        return self

    def request(self) -> ReverseRequest:
        """The typed request a reverse-protection command carries."""
        if self.kind not in REVERSE_KINDS:
            raise ValueError(f"{self.kind} is not a reverse-protection command")
        fields = self.model_dump(
            include={"kind", "disk_id", "snapshot_read_url", "reverse_cycle_id", "manifest", "block_size"}
            | {"since_cycle_id"},
            exclude_none=True,
        )
        return _REVERSE_REQUEST.validate_python(fields)

    @classmethod
    def of(
        cls,
        request: ReverseRequest,
        *,
        command_id: str,
        appliance_id: str,
        machine_id: str,
        created_at: datetime,
    ) -> ApplianceCommand:
        return cls.model_validate(
            {
                **request.model_dump(),
                "id": command_id,
                "appliance_id": appliance_id,
                "machine_id": machine_id,
                "created_at": created_at,
            }
        )
