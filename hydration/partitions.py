"""MBR and GPT partition tables, read directly so that raw images need no kernel partition scan."""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import BinaryIO

SECTOR = 512

GPT_ESP = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
GPT_LVM = "e6d6d379-f507-44c2-a23c-238f2a3df928"
GPT_BIOS_BOOT = "21686148-6449-6e6f-744e-656564454649"
GPT_MS_RESERVED = "e3c9e316-0b5c-4db8-817d-f92df00215ae"
MBR_EXTENDED = {0x05, 0x0F, 0x85}
MBR_LVM = 0x8E
MBR_ESP = 0xEF
MBR_PROTECTIVE = 0xEE


@dataclass(frozen=True)
class Partition:
    number: int  # as the guest kernel numbers it: 1-4 primary, 5+ logical, GPT entry index + 1
    start: int  # bytes
    size: int  # bytes
    scheme: str  # "mbr", "gpt" or "none" for a filesystem on the whole disk
    type_id: str  # MBR type as two hex digits, GPT type GUID
    bootable: bool  # MBR active flag or GPT legacy-BIOS-bootable attribute
    name: str = ""
    part_uuid: str = ""  # what the guest's fstab may call PARTUUID=

    @property
    def is_extended(self) -> bool:
        return self.scheme == "mbr" and int(self.type_id, 16) in MBR_EXTENDED

    @property
    def is_esp(self) -> bool:
        return self.type_id in (GPT_ESP, f"{MBR_ESP:02x}")


class PartitionTableError(Exception):
    pass


def disk_size(path: str) -> int:
    with open(path, "rb") as f:
        return f.seek(0, os.SEEK_END)


def read_partitions(path: str) -> list[Partition]:
    """Partitions of a disk; a disk without a table is one partition spanning the disk."""
    size = disk_size(path)
    with open(path, "rb") as f:
        mbr = f.read(SECTOR)
        if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa" or _looks_like_boot_sector(mbr):
            return [Partition(0, 0, size, "none", "", False)]
        entries = _mbr_entries(mbr)
        if any(int(e[1], 16) == MBR_PROTECTIVE for e in entries):
            return _read_gpt(f, size)
        parts: list[Partition] = []
        signature = struct.unpack_from("<I", mbr, 440)[0]
        for idx, (boot, type_id, lba, count) in enumerate(entries, start=1):
            if count == 0 or type_id == "00":
                continue
            part = Partition(
                idx, lba * SECTOR, count * SECTOR, "mbr", type_id, boot, "", f"{signature:08x}-{idx:02x}"
            )
            if part.is_extended:
                parts.extend(_read_logical(f, lba, signature))
            else:
                parts.append(part)
        _check_bounds(parts, size)
        return parts


def _check_bounds(parts: list[Partition], size: int) -> None:
    for part in parts:
        if part.start + part.size > size:
            raise _truncated(part, size)


def _truncated(part: Partition, size: int) -> PartitionTableError:
    return PartitionTableError(
        f"partition {part.number} ends beyond the disk ({part.start + part.size} > {size} bytes): "
        "the disk copy is truncated; recreate it from the recovery point"
    )


def _looks_like_boot_sector(sector: bytes) -> bool:
    # A FAT or NTFS boot sector also ends in 55aa; it is a filesystem, not a partition table.
    return sector[3:11] in (b"NTFS    ", b"MSDOS5.0", b"mkfs.fat", b"EXFAT   ") or sector[82:87] == b"FAT32"


def _mbr_entries(sector: bytes) -> list[tuple[bool, str, int, int]]:
    out = []
    for i in range(4):
        raw = sector[446 + 16 * i : 446 + 16 * (i + 1)]
        boot = raw[0] == 0x80
        ptype = raw[4]
        lba, count = struct.unpack_from("<II", raw, 8)
        out.append((boot, f"{ptype:02x}", lba, count))
    return out


def _read_logical(f: BinaryIO, ext_lba: int, signature: int) -> list[Partition]:
    parts: list[Partition] = []
    ebr_lba = ext_lba
    number = 5
    seen: set[int] = set()
    while ebr_lba not in seen and len(parts) < 128:
        seen.add(ebr_lba)
        f.seek(ebr_lba * SECTOR)
        ebr = f.read(SECTOR)
        if len(ebr) < SECTOR or ebr[510:512] != b"\x55\xaa":
            break
        entries = _mbr_entries(ebr)
        boot, type_id, rel, count = entries[0]
        if count and type_id != "00":
            parts.append(
                Partition(
                    number,
                    (ebr_lba + rel) * SECTOR,
                    count * SECTOR,
                    "mbr",
                    type_id,
                    boot,
                    "",
                    f"{signature:08x}-{number:02x}",
                )
            )
            number += 1
        _, next_type, next_rel, next_count = entries[1]
        if next_count == 0 or int(next_type, 16) not in MBR_EXTENDED:
            break
        ebr_lba = ext_lba + next_rel
    return parts


def _read_gpt(f: BinaryIO, size: int) -> list[Partition]:
    f.seek(SECTOR)
    hdr = f.read(SECTOR)
    if hdr[:8] != b"EFI PART":
        raise PartitionTableError("protective MBR without a GPT header: the disk is corrupt")
    hdr_size = struct.unpack_from("<I", hdr, 12)[0]
    crc = struct.unpack_from("<I", hdr, 16)[0]
    check = bytearray(hdr[:hdr_size])
    check[16:20] = b"\0\0\0\0"
    if zlib.crc32(bytes(check)) & 0xFFFFFFFF != crc:
        raise PartitionTableError("GPT header checksum mismatch: the disk is corrupt")
    entries_lba, n_entries, entry_size = struct.unpack_from("<QII", hdr, 72)
    f.seek(entries_lba * SECTOR)
    table = f.read(n_entries * entry_size)
    parts: list[Partition] = []
    for i in range(n_entries):
        raw = table[i * entry_size : (i + 1) * entry_size]
        type_guid = uuid.UUID(bytes_le=raw[0:16])
        if type_guid.int == 0:
            continue
        first, last, attrs = struct.unpack_from("<QQQ", raw, 32)
        name = raw[56:128].decode("utf-16-le", "ignore").rstrip("\0")
        parts.append(
            Partition(
                number=i + 1,
                start=first * SECTOR,
                size=(last - first + 1) * SECTOR,
                scheme="gpt",
                type_id=str(type_guid),
                bootable=bool(attrs & 0x4),
                name=name,
                part_uuid=str(uuid.UUID(bytes_le=raw[16:32])),
            )
        )
    _check_bounds(parts, size)
    return parts
