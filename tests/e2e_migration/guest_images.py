"""Source machines with a real guest OS on their disks, for migration tests and the demo.

The images come from the hydration tests' builders (tests/hydration/layouts.py, windows_images.py):
partition tables, filesystems, release files, fstab, GRUB, initrds. They need root and the tools the
hydration tests need; `missing_requirements()` says what is missing.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.hydration.conftest import NEEDED_TOOLS, SYSTEM_PYTHON, debugfs_cat
from tests.hydration.guests import GuestSpec
from tests.hydration.layouts import single_root


@dataclass(frozen=True)
class GuestImage:
    path: Path
    os_type: str  # "linux" | "windows"
    os_name: str
    os_version: str
    root_mb: int  # where the filesystem holding /etc/fstab (Linux) or Windows starts

    def fstab(self, image: Path | None = None) -> str | None:
        """/etc/fstab of this guest read from `image` (default: the source) without mounting it."""
        return debugfs_cat(image or self.path, self.root_mb, "/etc/fstab")

    def file(self, path: str, image: Path | None = None) -> str | None:
        return debugfs_cat(image or self.path, self.root_mb, path)


def missing_requirements() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the local ARM endpoint attaches disks as loop devices for the toolkit"
    missing = [tool for tool in NEEDED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing tools {missing}: run scripts/install-system-deps.sh"
    if not os.path.exists(SYSTEM_PYTHON):
        return "needs Debian's /usr/bin/python3 (the helper VM's interpreter)"
    return None


_NAMES = {"ubuntu": "Ubuntu", "centos": "CentOS Linux", "rhel": "Red Hat Enterprise Linux", "debian": "Debian"}


def linux_guest(workdir: Path, distro: str = "ubuntu", version: str = "20.04") -> GuestImage:
    """A one-partition Linux guest whose fstab names its root /dev/sda1 and mounts NFS/CIFS shares:
    hydration changes both, so a prepared copy is easy to tell from the source."""
    target = workdir / f"{distro}-{version}"
    target.mkdir(parents=True, exist_ok=True)
    layout = single_root(target, GuestSpec(distro, version))
    return GuestImage(path=layout.disk, os_type="linux", os_name=_NAMES.get(distro, distro), os_version=version,
                      root_mb=layout.root_mb)
