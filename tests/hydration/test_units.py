"""Pure logic of the toolkit, without root: parsers, command-line edits, the support matrix."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import pytest

from hydration.guest import GuestFS
from hydration.initrd import list_files, modules_in
from hydration.linux.inspect import Distro, parse_fstab, standard_device
from hydration.linux.steps import fix_cmdline
from hydration.partitions import read_partitions
from hydration.support import SupportLevel, linux_support, windows_release
from tests.hydration.images import make_initrd, newc


def test_fix_cmdline_adds_serial_console_and_removes_the_boot_splash_arguments() -> None:
    out = fix_cmdline("root=/dev/sda2 ro crashkernel=auto rhgb quiet console=ttyS0,9600")
    assert out == "root=/dev/sda2 ro console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300"
    assert fix_cmdline(out) == out
    assert fix_cmdline("ro crashkernel=256M") == (
        "ro crashkernel=256M console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300"
    )


@pytest.mark.parametrize("compression", ["gzip", "xz", "zstd", "none"])
@pytest.mark.parametrize("early", [False, True])
def test_initrd_reader_handles_compressions_and_concatenated_archives(compression: str, early: bool) -> None:
    if compression == "zstd" and subprocess.run(["which", "zstd"], capture_output=True).returncode:
        pytest.skip("zstd not installed")
    with_hv = modules_in(list_files(make_initrd("5.4.0", True, compression, early)))
    assert {"hv_vmbus", "hv_storvsc", "hv_netvsc"} <= with_hv
    without = modules_in(list_files(make_initrd("5.4.0", False, compression, early)))
    assert "hv_vmbus" not in without and "ata_piix" in without


def test_initrd_reader_accepts_two_compressed_segments() -> None:
    data = gzip.compress(newc({"a/hv_vmbus.ko": b"x"})) + gzip.compress(newc({"b/hv_storvsc.ko.zst": b"y"}))
    assert modules_in(list_files(data)) == {"hv_vmbus", "hv_storvsc"}


def test_standard_device_names() -> None:
    assert standard_device("/dev/sda1") == ("sd", 0, 1)
    assert standard_device("/dev/sdb") == ("sd", 1, 0)
    assert standard_device("/dev/xvdaa3") == ("xvd", 26, 3)
    assert standard_device("/dev/mapper/vg-root") is None
    assert standard_device("UUID=1234") is None


def test_fstab_parser_skips_comments_and_keeps_line_numbers() -> None:
    entries = parse_fstab("# c\n\n/dev/sda1 / ext4 defaults 0 1\nnas:/x /mnt nfs\n")
    assert [(e.line_no, e.spec, e.fstype) for e in entries] == [
        (2, "/dev/sda1", "ext4"),
        (3, "nas:/x", "nfs"),
    ]


@pytest.mark.parametrize(
    ("distro", "version", "level"),
    [
        ("rhel", "7.9", SupportLevel.LISTED),
        ("rhel", "7.2", SupportLevel.MANUAL),
        ("rhel", "9.4", SupportLevel.NEWER),
        ("centos", "7.8", SupportLevel.MANUAL),
        ("centos", "6.10", SupportLevel.LISTED),
        ("ol", "7.7", SupportLevel.LISTED),
        ("ol", "8.6", SupportLevel.MANUAL),
        ("sles", "15.1", SupportLevel.LISTED),
        ("sles", "15.5", SupportLevel.NEWER),
        ("ubuntu", "19.10", SupportLevel.LISTED),
        ("ubuntu", "24.04", SupportLevel.NEWER),
        ("ubuntu", "23.10", SupportLevel.MANUAL),
        ("debian", "12.5", SupportLevel.NEWER),
        ("debian", "13", SupportLevel.MANUAL),
        ("rocky", "9.3", SupportLevel.NEWER),
    ],
)
def test_linux_support_matrix(distro: str, version: str, level: SupportLevel) -> None:
    d = Distro(distro, version, "", "")
    assert linux_support(distro, d.major, d.minor) is level


def test_windows_support_matrix() -> None:
    assert windows_release(6, 1, 7601, True).name == "Windows Server 2008 R2"
    assert windows_release(10, 0, 17763, True).name == "Windows Server 2019"
    assert windows_release(10, 0, 26100, True).level is SupportLevel.NEWER
    assert windows_release(10, 0, 14393, True).level is SupportLevel.LISTED
    assert windows_release(10, 0, 19045, False).level is SupportLevel.MANUAL
    assert windows_release(5, 2, 3790, True).level is SupportLevel.MANUAL


def test_guest_paths_never_escape_the_guest_root(tmp_path: Path) -> None:
    root = tmp_path / "guest"
    (root / "etc").mkdir(parents=True)
    (root / "run").mkdir()
    os.symlink("/run/systemd/resolve/stub-resolv.conf", root / "etc/resolv.conf")
    os.symlink("../../../../../../etc", root / "etc/up")
    fs = GuestFS(str(root), dry_run=True)
    assert fs.path("/etc/resolv.conf") == str(root / "run/systemd/resolve/stub-resolv.conf")
    assert fs.path("/etc/up/passwd") == str(root / "etc/passwd")


def test_partition_tables(tmp_path: Path) -> None:
    disk = tmp_path / "d.img"
    with open(disk, "wb") as f:
        f.truncate(40 << 20)
    script = "label: dos\nstart=2048, size=20480, type=83, bootable\nstart=22528, size=40000, type=5\n"
    script += "start=24576, size=8192, type=83\nstart=34816, size=8192, type=82\n"
    proc = subprocess.run(["sfdisk", "-q", str(disk)], input=script.encode(), capture_output=True)
    if proc.returncode:
        pytest.skip("sfdisk not available")
    parts = read_partitions(str(disk))
    assert [(p.number, p.start, p.bootable, p.type_id) for p in parts] == [
        (1, 2048 * 512, True, "83"),
        (5, 24576 * 512, False, "83"),
        (6, 34816 * 512, False, "82"),
    ]
    gpt = "label: gpt\nstart=2048, size=8192, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
    gpt += 'start=10240, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, attrs="LegacyBIOSBootable"\n'
    subprocess.run(["sfdisk", "-q", str(disk)], input=gpt.encode(), capture_output=True, check=True)
    parts = read_partitions(str(disk))
    assert parts[0].is_esp and not parts[0].bootable
    assert parts[1].bootable and parts[1].number == 2 and parts[1].start == 10240 * 512
