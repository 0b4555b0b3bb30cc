"""The fixed-VHD footer against the VHD specification's field table, its geometry algorithm, and qemu-img."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.replication.vhd import (
    FOOTER_SIZE,
    MIB,
    DiskGeometry,
    VhdFooter,
    VhdFormatError,
    compute_geometry,
    fixed_vhd_size,
    round_up_to_mib,
    vhd_timestamp,
)

UID = uuid.UUID("0123456789abcdef0123456789abcdef")
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def spec_checksum(footer: bytes) -> int:
    """The spec's checksum, written out independently: one's complement of the byte sum without bytes 64-67."""
    total = 0
    for i, byte in enumerate(footer):
        if not 64 <= i < 68:
            total += byte
    return (~total) & 0xFFFFFFFF


def test_every_field_sits_at_its_spec_offset_big_endian() -> None:
    size = 20 * MIB
    raw = VhdFooter.for_size(size, unique_id=UID, timestamp=WHEN).to_bytes()

    assert len(raw) == 512
    assert raw[0:8] == b"conectix"
    assert raw[8:12] == bytes.fromhex("00000002")  # features: reserved bit always set
    assert raw[12:16] == bytes.fromhex("00010000")  # file format version 1.0
    assert raw[16:24] == b"\xff" * 8  # data offset: fixed disks have no dynamic header
    assert struct.unpack(">I", raw[24:28])[0] == int(
        (WHEN - datetime(2000, 1, 1, tzinfo=UTC)).total_seconds()
    )
    assert raw[28:32] == b"qem2"  # a creator qemu sizes by current size, as Hyper-V and Azure do
    assert struct.unpack(">I", raw[32:36])[0] == 0x00010000
    assert raw[36:40] == b"Wi2k"
    assert struct.unpack(">Q", raw[40:48])[0] == size  # original size
    assert struct.unpack(">Q", raw[48:56])[0] == size  # current size
    cylinders, heads, sectors = struct.unpack(">HBB", raw[56:60])
    assert (cylinders, heads, sectors) == (602, 4, 17)
    assert struct.unpack(">I", raw[60:64])[0] == 2  # disk type: fixed
    assert struct.unpack(">I", raw[64:68])[0] == spec_checksum(raw)
    assert raw[68:84] == UID.bytes
    assert raw[84] == 0  # saved state
    assert raw[85:] == bytes(427)  # reserved


def test_checksum_changes_with_any_field_and_parse_rejects_a_flipped_byte() -> None:
    raw = bytearray(VhdFooter.for_size(MIB, unique_id=UID, timestamp=WHEN).to_bytes())
    raw[100] ^= 0x01  # a reserved byte: only the checksum can notice
    with pytest.raises(VhdFormatError, match="checksum"):
        VhdFooter.parse(bytes(raw))


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        # Worked by hand from the spec's algorithm (integer division throughout).
        (1 * MIB, (30, 4, 17)),  # 2048 sectors: spt 17, cth 120, heads max(4, 1) = 4
        (20 * MIB, (602, 4, 17)),
        (127 * MIB, (1019, 15, 17)),  # heads (15299+1023)/1024 = 15, still spt 17
        (128 * MIB, (963, 16, 17)),  # heads 16, cth 15420 < 16*1024, cylinders 15420/16
        (200 * MIB, (825, 16, 31)),  # spt 17 would need 24 heads -> spt 31, heads 16
        (1000 * MIB, (2031, 16, 63)),  # spt 31 still too many cylinders -> spt 63
        (4096 * MIB, (8322, 16, 63)),
        (40000 * MIB, (20078, 16, 255)),  # >= 65535*16*63 sectors -> spt 255
        (65535 * 16 * 255 * 512, (65535, 16, 255)),  # the largest CHS
        (2 * 1024 * 1024 * MIB, (65535, 16, 255)),  # beyond CHS: capped
    ],
)
def test_geometry_follows_the_spec_algorithm(size: int, expected: tuple[int, int, int]) -> None:
    g = compute_geometry(size)
    assert (g.cylinders, g.heads, g.sectors_per_track) == expected
    assert g.total_sectors * 512 <= size  # the geometry never claims more than the disk has


def test_sizes_round_up_to_whole_mib_plus_footer() -> None:
    assert round_up_to_mib(1) == MIB
    assert round_up_to_mib(MIB) == MIB
    assert round_up_to_mib(MIB + 512) == 2 * MIB
    assert fixed_vhd_size(10 * MIB + 512) == 11 * MIB + FOOTER_SIZE
    with pytest.raises(ValueError):
        round_up_to_mib(0)
    with pytest.raises(ValueError, match="whole number of MiB"):
        VhdFooter.for_size(MIB + 512, unique_id=UID)


def test_timestamp_is_seconds_since_2000() -> None:
    assert vhd_timestamp(datetime(2000, 1, 1, tzinfo=UTC)) == 0
    assert vhd_timestamp(datetime(2000, 1, 2, tzinfo=UTC)) == 86400
    with pytest.raises(ValueError):
        vhd_timestamp(datetime(1999, 12, 31, tzinfo=UTC))
    with pytest.raises(ValueError):
        vhd_timestamp(datetime(2020, 1, 1))  # naive: ambiguous


def test_parse_round_trips_and_names_the_bad_field() -> None:
    footer = VhdFooter.for_size(64 * MIB, unique_id=UID, timestamp=WHEN)
    assert VhdFooter.parse(footer.to_bytes()) == footer
    assert footer.created_at == WHEN

    dynamic = footer.model_copy(update={"disk_type": 3}).to_bytes()
    with pytest.raises(VhdFormatError, match="disk type 3"):
        VhdFooter.parse(dynamic)
    with pytest.raises(VhdFormatError, match="cookie"):
        VhdFooter.parse(bytes(512))
    with pytest.raises(VhdFormatError, match="512 bytes"):
        VhdFooter.parse(footer.to_bytes()[:511])
    no_reserved_bit = footer.model_copy(update={"features": 0}).to_bytes()
    with pytest.raises(VhdFormatError, match="reserved bit"):
        VhdFooter.parse(no_reserved_bit)


def test_spec_prose_32_bit_data_offset_is_accepted() -> None:
    footer = VhdFooter.for_size(MIB, unique_id=UID, timestamp=WHEN).model_copy(
        update={"data_offset": 0xFFFFFFFF}
    )
    assert VhdFooter.parse(footer.to_bytes()).data_offset == 0xFFFFFFFF


QEMU = shutil.which("qemu-img")
needs_qemu = pytest.mark.skipif(
    QEMU is None, reason="qemu-img not installed (scripts/apt-packages.txt: qemu-utils)"
)


def _qemu_vhd(tmp_path: Path, size: int, *, force_size: bool) -> bytes:
    raw = tmp_path / "disk.raw"
    out = tmp_path / "disk.vhd"
    with raw.open("wb") as f:
        f.truncate(size)
    options = "subformat=fixed,force_size" if force_size else "subformat=fixed"
    assert QEMU is not None
    subprocess.run([QEMU, "convert", "-f", "raw", "-O", "vpc", "-o", options, str(raw), str(out)], check=True)
    data = out.read_bytes()[-FOOTER_SIZE:]
    raw.unlink()
    out.unlink()
    return data


@needs_qemu
@pytest.mark.parametrize("size_mib", [1, 20, 200])
def test_qemu_force_size_footer_parses_and_matches_ours_field_for_field(
    tmp_path: Path, size_mib: int
) -> None:
    qemu_raw = _qemu_vhd(tmp_path, size_mib * MIB, force_size=True)
    qemu = VhdFooter.parse(qemu_raw)  # qemu's checksum agrees with our checksum code
    ours = VhdFooter.for_size(size_mib * MIB, unique_id=qemu.unique_id, timestamp=qemu.created_at)

    assert qemu.to_bytes() == qemu_raw  # serialising what we parsed reproduces qemu's bytes exactly
    for name in (
        "cookie",
        "features",
        "format_version",
        "data_offset",
        "original_size",
        "current_size",
        "disk_type",
    ):
        assert getattr(ours, name) == getattr(qemu, name), name
    assert qemu.creator_application == b"qem2"  # force_size: qemu marks "use current_size, not CHS"
    assert qemu.creator_host_os == ours.creator_host_os == b"Wi2k"


@needs_qemu
@pytest.mark.parametrize("size_mib", [3, 20, 127, 200, 600])
def test_qemu_chs_geometry_agrees_with_ours(tmp_path: Path, size_mib: int) -> None:
    # Without force_size qemu rounds the disk to a CHS-representable size and records that geometry;
    # the spec algorithm applied to qemu's size must give qemu's geometry back.
    qemu = VhdFooter.parse(_qemu_vhd(tmp_path, size_mib * MIB, force_size=False))
    assert compute_geometry(qemu.current_size) == qemu.geometry
    assert qemu.geometry.total_sectors * 512 == qemu.current_size


def test_geometry_model_bounds() -> None:
    with pytest.raises(ValueError):
        DiskGeometry(cylinders=65536, heads=16, sectors_per_track=255)


def test_a_legacy_footer_still_parses_and_upgrades_only_its_creator() -> None:
    legacy = VhdFooter.for_size(20 * MIB, unique_id=UID, timestamp=WHEN).model_copy(
        update={"creator_application": b"mgcp"}
    )
    parsed = VhdFooter.parse(legacy.to_bytes())
    assert parsed.is_legacy
    upgraded = parsed.upgraded()
    assert not upgraded.is_legacy and upgraded.creator_application == b"qem2"
    assert upgraded == VhdFooter.for_size(20 * MIB, unique_id=UID, timestamp=WHEN)
    raw = upgraded.to_bytes()
    assert VhdFooter.parse(raw) == upgraded  # the checksum is recomputed for the new creator
    assert raw[:28] == legacy.to_bytes()[:28] and raw[68:] == legacy.to_bytes()[68:]


@needs_qemu
@pytest.mark.parametrize("size_mib", [1, 3, 20, 64, 127, 200, 600])
def test_qemu_reads_our_replica_at_its_current_size(tmp_path: Path, size_mib: int) -> None:
    # Most whole-MiB sizes have no exact CHS geometry (64 MiB reads as 67,055,616 bytes by CHS): a
    # reader that sized by geometry would lose the disk's tail.
    size = size_mib * MIB
    image = tmp_path / "replica.vhd"
    with image.open("wb") as f:
        f.truncate(size)
        f.seek(size)
        f.write(VhdFooter.for_size(size, unique_id=UID, timestamp=WHEN).to_bytes())
    assert QEMU is not None
    info = subprocess.run(
        [QEMU, "info", "-f", "vpc", "--output=json", str(image)], check=True, capture_output=True, text=True
    )
    assert json.loads(info.stdout)["virtual-size"] == size
