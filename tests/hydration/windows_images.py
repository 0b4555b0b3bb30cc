"""Synthetic Windows OS disks: NTFS volumes holding SYSTEM and SOFTWARE hives built with hivex."""

from __future__ import annotations

import json
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.hydration.images import Part, Tree, build_disk

HERE = Path(__file__).resolve().parent
DRIVERS = ("intelide", "atapi", "storflt", "storvsc", "vmbus")


@dataclass
class WindowsSpec:
    name: str
    product: str
    version: str  # "6.1" or "10.0"
    build: int
    installation_type: str = "Server"
    current_control_set: int = 1
    missing_driver_files: tuple[str, ...] = ()
    missing_service_keys: tuple[str, ...] = ()
    vmware_tools: bool = True
    agent_installed: bool = False
    scheme: str = "mbr"
    extra_system: dict[str, dict[str, list[Any]]] = field(default_factory=dict)


def system_spec(spec: WindowsSpec) -> dict[str, dict[str, list[Any]]]:
    cs = f"ControlSet{spec.current_control_set:03d}"
    other = "ControlSet001" if spec.current_control_set != 1 else "ControlSet002"
    out: dict[str, dict[str, list[Any]]] = {
        "Select": {
            "Current": ["dword", spec.current_control_set],
            "Default": ["dword", spec.current_control_set],
            "LastKnownGood": ["dword", spec.current_control_set],
            "Failed": ["dword", 0],
        },
        f"{other}\\Services\\atapi": {"Start": ["dword", 3]},  # the stale set must stay untouched
        f"{cs}\\Control": {"SystemBootDevice": ["sz", "multi(0)disk(0)rdisk(0)partition(1)"]},
        f"{cs}\\Services\\Dhcp": {
            "Start": ["dword", 4],
            "Type": ["dword", 0x20],
            "ImagePath": [
                "expand_sz",
                "%SystemRoot%\\system32\\svchost.exe -k LocalServiceNetworkRestricted",
            ],
        },
        f"{cs}\\Services\\partmgr\\Parameters": {"SanPolicy": ["dword", 3]},
        f"{cs}\\Services\\Tcpip\\Parameters": {"Hostname": ["sz", "onprem-sql01"]},
    }
    for drv in DRIVERS:
        if drv in spec.missing_service_keys:
            continue
        out[f"{cs}\\Services\\{drv}"] = {
            "Start": ["dword", 3],
            "Type": ["dword", 1],
            "ErrorControl": ["dword", 1],
            "ImagePath": ["expand_sz", f"System32\\drivers\\{drv}.sys"],
        }
    if spec.vmware_tools:
        out[f"{cs}\\Services\\VMTools"] = {
            "Start": ["dword", 2],
            "Type": ["dword", 0x10],
            "DisplayName": ["sz", "VMware Tools"],
        }
    if spec.agent_installed:
        out[f"{cs}\\Services\\WindowsAzureGuestAgent"] = {"Start": ["dword", 2]}
    out.update(spec.extra_system)
    return out


def software_spec(spec: WindowsSpec) -> dict[str, dict[str, list[Any]]]:
    major, minor = (int(x) for x in spec.version.split("."))
    values: dict[str, list[Any]] = {
        "ProductName": ["sz", spec.product],
        "CurrentVersion": ["sz", "6.3" if major >= 10 else spec.version],
        "CurrentBuildNumber": ["sz", str(spec.build)],
        "CurrentBuild": ["sz", str(spec.build)],
        "EditionID": ["sz", "ServerStandard" if spec.installation_type == "Server" else "Professional"],
    }
    if (major >= 6 and minor >= 1) or major >= 10:
        values["InstallationType"] = ["sz", spec.installation_type]
    if major >= 10:
        values["CurrentMajorVersionNumber"] = ["dword", major]
        values["CurrentMinorVersionNumber"] = ["dword", minor]
    return {"Microsoft\\Windows NT\\CurrentVersion": values}


def build_hive(out: Path, spec: dict[str, dict[str, list[Any]]], name: str) -> bytes:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    subprocess.run(["/usr/bin/python3", str(HERE / "build_hive.py"), str(out), f.name, name], check=True)
    Path(f.name).unlink()
    return out.read_bytes()


def windows_tree(spec: WindowsSpec, tmp: Path) -> Tree:
    tree: Tree = {
        "/Windows/System32/config/SYSTEM": build_hive(tmp / "SYSTEM", system_spec(spec), "SYSTEM"),
        "/Windows/System32/config/SOFTWARE": build_hive(tmp / "SOFTWARE", software_spec(spec), "SOFTWARE"),
        "/Windows/System32/config/SYSTEM.LOG1": b"",
        "/Windows/System32/cmd.exe": b"MZ",
        "/Users/Public/desktop.ini": b"",
        "/pagefile.sys": b"\0" * 4096,
    }
    for drv in DRIVERS:
        if drv not in spec.missing_driver_files:
            tree[f"/Windows/System32/drivers/{drv}.sys"] = b"MZ driver"
    return tree


@dataclass
class WindowsDisk:
    disk: Path
    os_start_mb: int
    os_size_mb: int


def build_windows_disk(tmp: Path, spec: WindowsSpec, hiberfil: bytes | None = None) -> WindowsDisk:
    tree = windows_tree(spec, tmp)
    if hiberfil is not None:
        tree["/hiberfil.sys"] = hiberfil
    if spec.scheme == "gpt":
        parts = [
            Part(34, "vfat", {"/EFI/Microsoft/Boot/bootmgfw.efi": b"MZ"}, kind="esp"),
            Part(40, "ntfs", tree, kind="ntfs"),
        ]
    else:
        parts = [
            Part(16, "ntfs", {"/bootmgr": b"bootmgr"}, kind="ntfs", bootable=True),
            Part(40, "ntfs", tree, kind="ntfs"),
        ]
    disk = tmp / f"windows-{spec.scheme}.img"
    build_disk(str(disk), spec.scheme, parts)
    return WindowsDisk(disk, parts[1].start_mb, parts[1].size_mb)


def extract_partition(disk: WindowsDisk, dest: Path) -> Path:
    subprocess.run(
        [
            "dd",
            f"if={disk.disk}",
            f"of={dest}",
            "bs=1M",
            f"skip={disk.os_start_mb}",
            f"count={disk.os_size_mb}",
            "status=none",
        ],
        check=True,
    )
    return dest


def ntfscat(volume: Path, path: str, dest: Path) -> Path | None:
    proc = subprocess.run(["ntfscat", "-f", str(volume), path], capture_output=True, check=False)
    if proc.returncode != 0:
        return None
    dest.write_bytes(proc.stdout)
    return dest


def set_ntfs_dirty(disk: WindowsDisk) -> None:
    """Sets VOLUME_IS_DIRTY in $Volume's VOLUME_INFORMATION, as an unclean Windows shutdown does."""
    base = disk.os_start_mb * 1024 * 1024
    with open(disk.disk, "r+b") as f:
        f.seek(base)
        boot = f.read(512)
        bps = struct.unpack_from("<H", boot, 0x0B)[0]
        spc = boot[0x0D]
        mft_lcn, mirr_lcn = struct.unpack_from("<QQ", boot, 0x30)
        cpr = struct.unpack_from("<b", boot, 0x40)[0]
        cluster = bps * spc
        rec_size = 2 ** (-cpr) if cpr < 0 else cpr * cluster
        rec_off = base + mft_lcn * cluster + 3 * rec_size
        f.seek(rec_off)
        rec = bytearray(f.read(rec_size))
        assert rec[:4] == b"FILE"
        usa_off, usa_count = struct.unpack_from("<HH", rec, 4)
        usn = rec[usa_off : usa_off + 2]
        for i in range(1, usa_count):  # undo the fixups
            end = i * bps - 2
            rec[end : end + 2] = rec[usa_off + 2 * i : usa_off + 2 * i + 2]
        attr = struct.unpack_from("<H", rec, 0x14)[0]
        while True:
            atype, alen = struct.unpack_from("<II", rec, attr)
            if atype == 0xFFFFFFFF:
                raise AssertionError("no VOLUME_INFORMATION attribute")
            if atype == 0x70:
                voff = struct.unpack_from("<H", rec, attr + 0x14)[0]
                flags_at = attr + voff + 0x0A
                struct.pack_into("<H", rec, flags_at, struct.unpack_from("<H", rec, flags_at)[0] | 0x1)
                break
            attr += alen
        for i in range(1, usa_count):  # redo the fixups
            end = i * bps - 2
            rec[usa_off + 2 * i : usa_off + 2 * i + 2] = rec[end : end + 2]
            rec[end : end + 2] = usn
        for lcn in (mft_lcn, mirr_lcn):  # $MFTMirr mirrors the first records; chkdsk compares them
            f.seek(base + lcn * cluster + 3 * rec_size)
            f.write(rec)
