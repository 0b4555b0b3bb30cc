"""Finding the OS: mount each filesystem read-only and look for the OS's marker files."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from hydration.devices import DiskSet, Volume
from hydration.linux.inspect import LINUX_FILESYSTEMS
from hydration.mounts import Mounts
from hydration.proc import CommandError

WINDOWS_HIVE = ("Windows", "System32", "config", "SYSTEM")


@dataclass
class Found:
    kind: str  # "linux" or "windows"
    volume: Volume
    fstab_text: str = ""


def find_ci(base: str, parts: tuple[str, ...]) -> str | None:
    """Case-insensitive lookup: NTFS names keep whatever case Windows setup used."""
    current = base
    for part in parts:
        try:
            names = os.listdir(current)
        except OSError:
            return None
        match = next((n for n in names if n.lower() == part.lower()), None)
        if match is None:
            return None
        current = os.path.join(current, match)
    return current


def scan(disks: DiskSet, hint: str | None, scratch: str, warnings: list[str]) -> list[Found]:
    found: list[Found] = []
    for n, vol in enumerate(disks.volumes):
        want_linux = hint in (None, "linux") and vol.fstype in LINUX_FILESYSTEMS
        want_windows = hint in (None, "windows") and vol.fstype == "ntfs"
        if not (want_linux or want_windows):
            continue
        target = os.path.join(scratch, f"scan{n}")
        with Mounts() as mounts:
            try:
                mounts.mount(vol.device, target, vol.fstype, readonly=True)
            except CommandError as exc:
                warnings.append(f"{vol.name} ({vol.fstype}) could not be mounted: {exc.output.strip()[:300]}")
                continue
            if want_linux:
                fstab = os.path.join(target, "etc", "fstab")
                if os.path.isfile(fstab) and not os.path.islink(fstab):
                    with open(fstab, encoding="utf-8", errors="surrogateescape") as f:
                        found.append(Found("linux", vol, f.read()))
            elif find_ci(target, WINDOWS_HIVE):
                found.append(Found("windows", vol))
        with contextlib.suppress(OSError):
            os.rmdir(target)
    return found
