"""Commands the control plane queues for an appliance, which polls for them, and the appliance's answers.

Forward replication asks for cycles (RunCycle, ResyncDisk) and the source's shutdown. Reverse protection
(the Azure VM replicated back to its on-premises machine) adds one typed request per step of its data
path (`ReverseRequest`): power the on-premises machine off or on, apply a reverse manifest read from a
snapshot's SAS URL, hash a disk's blocks, report the blocks changed since a forward cycle. A planned
failover to on-premises adds a copy of the machine's disks taken before it is powered on, restored by a
cancel and deleted once it is no longer needed (SnapshotDisks, RevertDisks, DeleteDiskSnapshots). A command is
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
# The finer pass of the hash comparison: only the coarse blocks that differ are hashed again in pieces of
# this size, so a scattered small write costs its own 4 KiB pages, not a whole 1 MiB block.
REFINE_HASH_BLOCK_SIZE: Final = 4 * 1024


class CommandKind(StrEnum):
    RUN_CYCLE = "RunCycle"  # on-demand cycle (e.g. the final cycle before cutover)
    RESYNC_DISK = "ResyncDisk"
    SHUT_DOWN_SOURCE = "ShutDownSource"
    POWER_OFF_MACHINE = "PowerOffMachine"
    POWER_ON_MACHINE = "PowerOnMachine"
    APPLY_REVERSE_MANIFEST = "ApplyReverseManifest"
    HASH_DISK_BLOCKS = "HashDiskBlocks"
    REPORT_CHANGED_BLOCKS = "ReportChangedBlocks"
    INSTALL_MOBILITY_SERVICE = "InstallMobilityService"
    SNAPSHOT_DISKS = "SnapshotDisks"
    REVERT_DISKS = "RevertDisks"
    DELETE_DISK_SNAPSHOTS = "DeleteDiskSnapshots"


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
    """Power the on-premises machine on; the answer says when its guest's heartbeat was first seen."""

    kind: Literal[CommandKind.POWER_ON_MACHINE] = CommandKind.POWER_ON_MACHINE


SnapshotName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="names the copy of every disk of the machine (the planned failover's job id)",
    ),
]


class SnapshotDisks(WireModel):
    """Copy each of the machine's disks as it is now (before it is powered on), under `snapshotName`.
    A copy that exists already is kept as it is: taken again after power-on it would hold the wrong data."""

    kind: Literal[CommandKind.SNAPSHOT_DISKS] = CommandKind.SNAPSHOT_DISKS
    snapshot_name: SnapshotName


class RevertDisks(WireModel):
    """Make each disk byte for byte its copy `snapshotName` again (the machine must be off)."""

    kind: Literal[CommandKind.REVERT_DISKS] = CommandKind.REVERT_DISKS
    snapshot_name: SnapshotName


class DeleteDiskSnapshots(WireModel):
    kind: Literal[CommandKind.DELETE_DISK_SNAPSHOTS] = CommandKind.DELETE_DISK_SNAPSHOTS
    snapshot_name: SnapshotName


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


HashedRanges = Annotated[
    list[tuple[int, int]] | None,
    Field(
        default=None,
        max_length=MAX_MANIFEST_RANGES,
        description="[offset, length] byte ranges to hash, sorted, not overlapping, whole 512-byte sectors; "
        "each is hashed in blockSize pieces (a range's last piece clipped). Absent: the whole disk",
    ),
]


def check_hashed_ranges(ranges: list[tuple[int, int]] | None) -> list[tuple[int, int]] | None:
    if ranges is None:
        return None
    for offset, length in ranges:
        if offset < 0 or length <= 0 or offset % SECTOR_SIZE or length % SECTOR_SIZE:
            raise FieldValueError(
                "ranges", f"range [{offset}, {length}] is not a non-empty run of whole 512-byte sectors"
            )
    for (before, before_length), (after, _) in pairwise(ranges):
        if after < before + before_length:
            raise FieldValueError(
                "ranges",
                f"ranges must be sorted and must not overlap: {after} starts before {before + before_length}",
            )
    return ranges


def hashed_pieces(
    ranges: list[tuple[int, int]] | None, block_size: int, disk_size: int
) -> list[tuple[int, int]]:
    """The (offset, length) pieces a HashDiskBlocks answer has one digest for, in order: every block of
    the disk, or each range cut into blocks (the last piece of each clipped)."""
    spans = ranges if ranges is not None else [(0, disk_size)]
    return [
        (start, min(block_size, offset + length - start))
        for offset, length in spans
        for start in range(offset, offset + length, block_size)
    ]


class HashDiskBlocks(WireModel):
    """Hash the disk's blocks: all of them, or (the finer pass) only the pieces of `ranges`."""

    kind: Literal[CommandKind.HASH_DISK_BLOCKS] = CommandKind.HASH_DISK_BLOCKS
    disk_id: str = Field(min_length=1)
    block_size: int = Field(
        default=DEFAULT_HASH_BLOCK_SIZE, ge=SECTOR_SIZE, le=64 * MIB, multiple_of=SECTOR_SIZE
    )
    ranges: HashedRanges

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        check_hashed_ranges(self.ranges)
        return self


class ReportChangedBlocks(WireModel):
    kind: Literal[CommandKind.REPORT_CHANGED_BLOCKS] = CommandKind.REPORT_CHANGED_BLOCKS
    disk_id: str = Field(min_length=1)
    since_cycle_id: str = Field(
        min_length=1, description="the forward cycle that made the recovery point Azure started from"
    )


ReverseRequest = Annotated[
    PowerOffMachine
    | PowerOnMachine
    | ApplyReverseManifest
    | HashDiskBlocks
    | ReportChangedBlocks
    | SnapshotDisks
    | RevertDisks
    | DeleteDiskSnapshots,
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
        CommandKind.SNAPSHOT_DISKS,
        CommandKind.REVERT_DISKS,
        CommandKind.DELETE_DISK_SNAPSHOTS,
    }
)


# --- the push installation of the Mobility service -------------------------------------------------


class PushStep(StrEnum):
    """The push installation's steps, in order."""

    COPY_AGENT = "Copy agent"
    CHECK_PREREQUISITES = "Check prerequisites"
    INSTALL_AGENT = "Install agent"
    INSTALL_VSS_PROVIDER = "Install VSS provider"
    REGISTER = "Register"


class PushStepStatus(StrEnum):
    SUCCEEDED = "Succeeded"
    WARNING = "Warning"
    FAILED = "Failed"
    SKIPPED = "Skipped"  # the VSS provider on Linux; every step after a failed one
    NOT_RUN = "NotRun"


# From this agent version a VSS provider that fails to install leaves the installation in Warning
# (crash-consistent points still work); before it, the installation fails and is undone.
VSS_WARNING_FROM: Final = (9, 23)


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def vss_failure_is_warning(agent_version: str) -> bool:
    """The VSS provider rule: the control plane ends the job by it (shared.mobility.push.push_outcome). It
    lives in the wire module so that a Windows push path in the appliance, which is not built, can decide
    by the same rule whether to undo the installation or keep it."""
    return version_key(agent_version)[:2] >= VSS_WARNING_FROM


# Absolute, and plain enough to travel on the configurator's command line unquoted.
DISK_PATH_PATTERN: Final = r"^/[A-Za-z0-9._/-]{1,255}$"
DiskPath = Annotated[str, Field(pattern=DISK_PATH_PATTERN, max_length=256)]
# A key that is not a disk id is refused by the schema too (patternProperties alone would let it through).
DiskPaths = Annotated[dict[ResourceId, DiskPath], Field(json_schema_extra={"additionalProperties": False})]


class PushInstallRequest(WireModel):
    """Install (or update) the Mobility service on a source server from a catalog installer.

    The credential is a secret's name in the appliance's own secret store, never the secret: the
    control plane never holds the server's password. So is the registration passphrase."""

    installer_name: str = Field(min_length=1)
    installer_url: str = Field(min_length=1, description="the installer blob's short-lived read SAS")
    installer_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    agent_version: str = Field(min_length=1, description="from the installer's name")
    windows: bool = Field(description="a Windows server (WMI/SMB); else Linux over SSH/SFTP")
    server_address: str = Field(min_length=1, description="where the appliance reaches the server")
    server_port: int = Field(default=22, ge=1, le=65535)
    credential_name: str = Field(min_length=1, max_length=127)
    passphrase_name: str = Field(min_length=1, max_length=127)
    install_location: str = Field(min_length=1)
    control_plane_url: str = Field(min_length=1, description="what the agent registers with")
    update: bool = False
    disk_paths: dict[str, str] = Field(
        default_factory=dict,
        description="disk id -> the block device or raw image the agent replicates it from (passed to the "
        "configurator as -d <diskId>=<path>); empty: the agent only heartbeats",
    )


class PushStepReport(WireModel):
    step: PushStep
    status: PushStepStatus
    code: str | None = Field(default=None, description="the catalog code of a failed or warning step")
    message: str = ""
    exit_code: int | None = Field(default=None, description="the installer's, when it ran")
    log_path: str | None = Field(default=None, description="the installer's log on the server")


class PushInstallReport(WireModel):
    kind: Literal[CommandKind.INSTALL_MOBILITY_SERVICE] = CommandKind.INSTALL_MOBILITY_SERVICE
    steps: list[PushStepReport]
    agent_version: str | None = Field(default=None, description="the version the agent reports, installed")
    agent_id: str | None = None


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
    guest_heartbeat_at: datetime | None = Field(
        default=None,
        description="powered on: when the guest's heartbeat was first seen after power-on (absent: not yet)",
    )


class SnapshotMethod(StrEnum):
    REFLINK = "reflink"  # the filesystem shares the blocks until either copy changes (FICLONE)
    SPARSE = "sparse"  # a copy of the data extents only; holes stay holes


class DiskSnapshot(WireModel):
    disk_id: str
    snapshot: str = Field(description="the copy's name on the appliance")
    method: SnapshotMethod
    bytes_copied: int = Field(ge=0, description="data bytes copied (0 for a reflink)")
    already_taken: bool = Field(default=False, description="the copy existed: kept, not taken again")


class DisksSnapshotted(WireModel):
    kind: Literal[CommandKind.SNAPSHOT_DISKS] = CommandKind.SNAPSHOT_DISKS
    snapshot_name: str
    disks: list[DiskSnapshot]


class DisksReverted(WireModel):
    kind: Literal[CommandKind.REVERT_DISKS] = CommandKind.REVERT_DISKS
    snapshot_name: str
    disk_ids: list[str]
    bytes_copied: int = Field(ge=0, description="data bytes copied (0 where reflinked)")


class DiskSnapshotsDeleted(WireModel):
    kind: Literal[CommandKind.DELETE_DISK_SNAPSHOTS] = CommandKind.DELETE_DISK_SNAPSHOTS
    snapshot_name: str
    deleted: list[str] = Field(description="the disks whose copy was deleted (none left: already gone)")


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
    """SHA-256 of every `blockSize` block of the disk (the last one clipped), 32 bytes each, in order;
    with `ranges`, of each `blockSize` piece of those ranges instead (`hashed_pieces`)."""

    kind: Literal[CommandKind.HASH_DISK_BLOCKS] = CommandKind.HASH_DISK_BLOCKS
    disk_id: str
    block_size: int
    disk_size: int
    ranges: HashedRanges
    algorithm: Literal["sha256"] = "sha256"
    hashes: str | None = Field(default=None, description="base64 of the digests, when small enough")
    hashes_blob: str | None = Field(
        default=None, description="else the digests' blob in the appliance's cache container"
    )

    @model_validator(mode="after")
    def _one_place(self) -> Self:
        if (self.hashes is None) == (self.hashes_blob is None):
            raise FieldValueError("hashes", "give the digests inline (hashes) or as a blob (hashesBlob)")
        check_hashed_ranges(self.ranges)
        return self

    def pieces(self) -> list[tuple[int, int]]:
        return hashed_pieces(self.ranges, self.block_size, self.disk_size)


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
    PowerChanged
    | ReverseManifestApplied
    | BlockHashes
    | ChangedBlocks
    | PushInstallReport
    | DisksSnapshotted
    | DisksReverted
    | DiskSnapshotsDeleted,
    Field(discriminator="kind"),
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
    """A command the appliance polls for and carries out.

    RunCycle: upload a cycle of `cycleKind` (initial: every disk; final: the cutover's last cycle).
    ResyncDisk: upload a resync cycle that includes `diskId`. ShutDownSource: shut the source machine
    down, then acknowledge (the acknowledgement is the answer). Acknowledge each once carried out."""

    # Stored in `commands` (pk /applianceId): the appliance's poll is one single-partition query.

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
    ranges: list[tuple[int, int]] | None = Field(
        default=None,
        description="HashDiskBlocks: only these [offset, length] ranges (absent: the whole disk)",
    )
    since_cycle_id: str | None = Field(
        default=None, description="ReportChangedBlocks: the forward cycle the changes are counted from"
    )
    push: PushInstallRequest | None = Field(
        default=None, description="InstallMobilityService: what to install"
    )
    snapshot_name: str | None = Field(
        default=None, description="SnapshotDisks, RevertDisks, DeleteDiskSnapshots: the disks' copy"
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
        if (self.kind is CommandKind.INSTALL_MOBILITY_SERVICE) != (self.push is not None):
            raise FieldValueError("push", "an InstallMobilityService command, and only it, carries push")
        return self

    def request(self) -> ReverseRequest:
        """The typed request a reverse-protection command carries."""
        if self.kind not in REVERSE_KINDS:
            raise ValueError(f"{self.kind} is not a reverse-protection command")
        fields = self.model_dump(
            include={"kind", "disk_id", "snapshot_read_url", "reverse_cycle_id", "manifest", "block_size"}
            | {"since_cycle_id", "snapshot_name", "ranges"},
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
