"""Fixed VHD footer: what makes a page blob importable as a managed disk (`createOption: Import`).

A fixed VHD is the raw disk followed by one 512-byte footer, all fields big-endian (Virtual Hard
Disk Image Format Specification, "Hard Disk Footer Format"). Azure accepts only fixed VHDs whose
virtual size is a whole number of MiB, so a replica's data area is the source disk's size rounded
up to 1 MiB and the footer sits right after it.
"""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Final, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

SECTOR_SIZE: Final = 512
FOOTER_SIZE: Final = 512
MIB: Final = 1024 * 1024

COOKIE: Final = b"conectix"
FEATURES_RESERVED: Final = 0x00000002  # "always set" per the spec, even with no features in use
FORMAT_VERSION: Final = 0x00010000
FIXED_DATA_OFFSET: Final = (
    0xFFFFFFFFFFFFFFFF  # fixed disks have no dynamic header: 64-bit all-ones, as qemu writes
)
DISK_TYPE_FIXED: Final = 2
HOST_OS_WINDOWS: Final = b"Wi2k"

# Readers disagree on a fixed VHD's size: Virtual PC and qemu's "qemu" images are sized by the CHS
# geometry (which cannot express most sizes exactly), Hyper-V and Azure by the current size. qemu picks
# by creator application and reads the current size only for creators it knows do so; `qem2` is what
# `qemu-img convert -O vpc -o subformat=fixed,force_size` (Azure's documented conversion) writes, so
# qemu, Hyper-V and Azure all see the replica at its full current size. Our replicas are told apart by
# their unique id (derived from machine and disk) and the blob's metadata, not by the creator.
CREATOR_APPLICATION: Final = b"qem2"
CREATOR_VERSION: Final = 0x00010000
# Footers written before the creator changed: the size they record is right, but CHS-sizing readers
# (qemu among them) lose the disk's tail. `upgraded()` rewrites only the creator.
LEGACY_CREATOR_APPLICATIONS: Final = frozenset({b"mgcp"})

VHD_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)

# The largest geometry the footer can express; bigger disks are described by current_size alone
# (the CHS field is informational for them, and the spec's algorithm caps it here).
MAX_CHS_SECTORS: Final = 65535 * 16 * 255

# Azure's limits for a page blob holding a VHD: page blobs top out at 8 TiB; the footer lives inside that.
MAX_PAGE_BLOB_SIZE: Final = 8 * 1024**4
MAX_VIRTUAL_SIZE: Final = MAX_PAGE_BLOB_SIZE - MIB

# cookie, features, version, data offset, timestamp, creator app, creator version, creator OS,
# original size, current size, cylinders, heads, sectors/track, disk type, checksum, unique id, saved state.
_LAYOUT: Final = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427x")
_CHECKSUM_OFFSET: Final = 64
assert _LAYOUT.size == FOOTER_SIZE


class VhdFormatError(ValueError):
    """The bytes are not a valid fixed-VHD footer; the message names the field and what was expected."""


class DiskGeometry(BaseModel):
    model_config = ConfigDict(frozen=True)

    cylinders: int = Field(ge=0, le=65535)
    heads: int = Field(ge=0, le=255)
    sectors_per_track: int = Field(ge=0, le=255)

    @property
    def total_sectors(self) -> int:
        return self.cylinders * self.heads * self.sectors_per_track


def round_up_to_mib(size: int) -> int:
    """The virtual size Azure requires: the source disk's size rounded up to a whole MiB."""
    if size <= 0:
        raise ValueError(f"disk size must be positive, got {size}")
    return -(-size // MIB) * MIB


def compute_geometry(virtual_size: int) -> DiskGeometry:
    """CHS geometry per the VHD specification's algorithm (as azure-vhd-utils' diskGeometry.go).

    Integer division throughout: the result describes at most `virtual_size`, never more.
    """
    total = min(virtual_size // SECTOR_SIZE, MAX_CHS_SECTORS)
    if total >= 65535 * 16 * 63:
        sectors_per_track, heads = 255, 16
        cylinder_times_heads = total // sectors_per_track
    else:
        sectors_per_track = 17
        cylinder_times_heads = total // sectors_per_track
        heads = max(4, (cylinder_times_heads + 1023) // 1024)
        if cylinder_times_heads >= heads * 1024 or heads > 16:
            sectors_per_track, heads = 31, 16
            cylinder_times_heads = total // sectors_per_track
        if cylinder_times_heads >= heads * 1024:
            sectors_per_track, heads = 63, 16
            cylinder_times_heads = total // sectors_per_track
    return DiskGeometry(
        cylinders=cylinder_times_heads // heads, heads=heads, sectors_per_track=sectors_per_track
    )


def vhd_timestamp(moment: datetime) -> int:
    """Seconds since 2000-01-01 00:00:00 UTC, the footer's clock."""
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    seconds = int((moment - VHD_EPOCH).total_seconds())
    if not 0 <= seconds <= 0xFFFFFFFF:
        raise ValueError(f"{moment.isoformat()} cannot be expressed as a VHD timestamp")
    return seconds


def _checksum(footer_without_checksum: bytes) -> int:
    """One's complement of the byte sum with the checksum field counted as zero."""
    total = sum(footer_without_checksum[:_CHECKSUM_OFFSET]) + sum(
        footer_without_checksum[_CHECKSUM_OFFSET + 4 :]
    )
    return ~total & 0xFFFFFFFF


class VhdFooter(BaseModel):
    """A fixed-VHD footer. Build with `VhdFooter.for_size(...)`, serialise with `to_bytes()`, read with `parse()`."""

    model_config = ConfigDict(frozen=True)

    cookie: bytes = COOKIE
    features: int = FEATURES_RESERVED
    format_version: int = FORMAT_VERSION
    data_offset: int = FIXED_DATA_OFFSET
    timestamp: int = Field(ge=0, le=0xFFFFFFFF, description="seconds since 2000-01-01 UTC")
    creator_application: bytes = CREATOR_APPLICATION
    creator_version: int = CREATOR_VERSION
    creator_host_os: bytes = HOST_OS_WINDOWS
    original_size: int = Field(gt=0)
    current_size: int = Field(gt=0)
    geometry: DiskGeometry
    disk_type: int = DISK_TYPE_FIXED
    unique_id: uuid.UUID
    saved_state: int = 0

    @model_validator(mode="after")
    def _fields_fit(self) -> Self:
        for name in ("cookie", "creator_application", "creator_host_os"):
            expected = 8 if name == "cookie" else 4
            if len(getattr(self, name)) != expected:
                raise ValueError(f"{name} must be exactly {expected} bytes")
        return self

    @classmethod
    def for_size(
        cls, virtual_size: int, *, unique_id: uuid.UUID, timestamp: datetime | None = None
    ) -> VhdFooter:
        """The footer for a fixed VHD whose data area is `virtual_size` bytes (a whole number of MiB)."""
        if virtual_size % MIB:
            raise ValueError(
                f"a fixed VHD for Azure must have a whole number of MiB, got {virtual_size} bytes; "
                "use round_up_to_mib()"
            )
        if virtual_size > MAX_VIRTUAL_SIZE:
            raise ValueError(
                f"{virtual_size} bytes exceeds the largest page blob VHD ({MAX_VIRTUAL_SIZE} bytes)"
            )
        return cls(
            timestamp=vhd_timestamp(timestamp or datetime.now(UTC)),
            original_size=virtual_size,
            current_size=virtual_size,
            geometry=compute_geometry(virtual_size),
            unique_id=unique_id,
        )

    def to_bytes(self) -> bytes:
        g = self.geometry
        raw = _LAYOUT.pack(
            self.cookie,
            self.features,
            self.format_version,
            self.data_offset,
            self.timestamp,
            self.creator_application,
            self.creator_version,
            self.creator_host_os,
            self.original_size,
            self.current_size,
            g.cylinders,
            g.heads,
            g.sectors_per_track,
            self.disk_type,
            0,
            self.unique_id.bytes,
            self.saved_state,
        )
        checksum = _checksum(raw)
        return raw[:_CHECKSUM_OFFSET] + checksum.to_bytes(4, "big") + raw[_CHECKSUM_OFFSET + 4 :]

    @classmethod
    def parse(cls, data: bytes) -> VhdFooter:
        """Read and check a fixed-VHD footer; raises VhdFormatError naming the first bad field."""
        if len(data) != FOOTER_SIZE:
            raise VhdFormatError(f"a VHD footer is {FOOTER_SIZE} bytes, got {len(data)}")
        (
            cookie,
            features,
            version,
            data_offset,
            timestamp,
            app,
            app_version,
            host_os,
            original_size,
            current_size,
            cylinders,
            heads,
            sectors,
            disk_type,
            checksum,
            unique_id,
            saved_state,
        ) = _LAYOUT.unpack(data)
        if cookie != COOKIE:
            raise VhdFormatError(f"cookie is {cookie!r}, expected {COOKIE!r}: not a VHD footer")
        expected_checksum = _checksum(data)
        if checksum != expected_checksum:
            raise VhdFormatError(
                f"checksum is {checksum:#010x}, the footer's bytes give {expected_checksum:#010x}"
            )
        if not features & FEATURES_RESERVED:
            raise VhdFormatError(
                f"features {features:#010x} lacks the reserved bit 0x2 that must always be set"
            )
        if version != FORMAT_VERSION:
            raise VhdFormatError(f"file format version {version:#010x}, expected {FORMAT_VERSION:#010x}")
        if disk_type != DISK_TYPE_FIXED:
            raise VhdFormatError(
                f"disk type {disk_type}, expected {DISK_TYPE_FIXED} (fixed): Azure imports only fixed VHDs"
            )
        # Fixed disks have no header; the spec's prose says 0xFFFFFFFF, tools write 64-bit all-ones. Accept both.
        if data_offset not in (FIXED_DATA_OFFSET, 0xFFFFFFFF):
            raise VhdFormatError(f"data offset {data_offset:#x}, expected all-ones for a fixed disk")
        if current_size <= 0 or current_size % SECTOR_SIZE:
            raise VhdFormatError(f"current size {current_size} is not a positive multiple of {SECTOR_SIZE}")
        return cls(
            cookie=cookie,
            features=features,
            format_version=version,
            data_offset=data_offset,
            timestamp=timestamp,
            creator_application=app,
            creator_version=app_version,
            creator_host_os=host_os,
            original_size=original_size,
            current_size=current_size,
            geometry=DiskGeometry(cylinders=cylinders, heads=heads, sectors_per_track=sectors),
            disk_type=disk_type,
            unique_id=uuid.UUID(bytes=unique_id),
            saved_state=saved_state,
        )

    @property
    def is_legacy(self) -> bool:
        """Written by an earlier version with a creator that CHS-sizing readers do not trust."""
        return self.creator_application in LEGACY_CREATOR_APPLICATIONS

    def upgraded(self) -> VhdFooter:
        """The same footer (sizes, geometry, unique id, timestamp) with today's creator application."""
        return self.model_copy(update={"creator_application": CREATOR_APPLICATION})

    @property
    def created_at(self) -> datetime:
        return VHD_EPOCH + timedelta(seconds=self.timestamp)


def fixed_vhd_size(disk_size: int) -> int:
    """Bytes of a fixed VHD (page blob) for a source disk of `disk_size` bytes: rounded data + footer."""
    return round_up_to_mib(disk_size) + FOOTER_SIZE
