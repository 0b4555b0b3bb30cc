"""Mounts made by the toolkit, always undone in reverse order."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from types import TracebackType

from hydration.proc import CommandError, have, run

# Read-only must really mean read-only: skip journal replay so a dry run leaves the disk bit-identical.
_RO_EXTRA = {"ext3": "noload", "ext4": "noload", "xfs": "norecovery"}


def mount_options(fstype: str, readonly: bool) -> str:
    opts = ["ro" if readonly else "rw"]
    if readonly and fstype in _RO_EXTRA:
        opts.append(_RO_EXTRA[fstype])
    if fstype == "xfs":
        # Copies of the same disk share a UUID; XFS refuses a second mount of it without this.
        opts.append("nouuid")
    return ",".join(opts)


def fs_driver(fstype: str) -> str:
    return "ntfs-3g" if fstype == "ntfs" else fstype


@dataclass
class Mounts:
    targets: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __enter__(self) -> Mounts:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unmount_all()

    def mount(self, device: str, target: str, fstype: str, readonly: bool) -> None:
        os.makedirs(target, exist_ok=True)
        if fstype == "vfat" and not kernel_supports("vfat") and have("fusefat"):
            # Some helper kernels (containers, minimal builds) lack vfat; the ESP still needs editing.
            run(["fusefat", "-o", "ro" if readonly else "rw+", device, target])
        else:
            run(["mount", "-t", fs_driver(fstype), "-o", mount_options(fstype, readonly), device, target])
        self.targets.append(target)

    def bind(self, source: str, target: str) -> None:
        os.makedirs(target, exist_ok=True)
        run(["mount", "--bind", source, target])
        self.targets.append(target)

    def special(self, fstype: str, target: str) -> None:
        os.makedirs(target, exist_ok=True)
        run(["mount", "-t", fstype, fstype, target])
        self.targets.append(target)

    def unmount(self, target: str) -> None:
        if target in self.targets:
            self.targets.remove(target)
        self._umount(target)

    def unmount_all(self) -> None:
        while self.targets:
            self._umount(self.targets.pop())

    def _umount(self, target: str) -> None:
        for attempt in range(5):
            try:
                run(["umount", target])
                return
            except CommandError as exc:
                if "not mounted" in exc.output:
                    return
                time.sleep(0.2 * (attempt + 1))
        # A process left in the chroot keeps it busy; detach lazily rather than leak the loop device.
        run(["umount", "-l", target], check=False)
        self.warnings.append(f"{target} was busy; unmounted lazily")


def is_readonly_mount(target: str) -> bool:
    real = os.path.realpath(target)
    readonly = False
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4 and parts[1].replace("\\040", " ") == real:
                readonly = "ro" in parts[3].split(",")
    return readonly


def kernel_supports(fstype: str) -> bool:
    with open("/proc/filesystems", encoding="utf-8") as f:
        return any(line.split()[-1] == fstype for line in f if line.strip())
