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
    size_mb: int = 0  # its size (Windows: to extract the volume)

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


_NAMES = {
    "ubuntu": "Ubuntu",
    "centos": "CentOS Linux",
    "rhel": "Red Hat Enterprise Linux",
    "debian": "Debian",
}


def linux_guest(workdir: Path, distro: str = "ubuntu", version: str = "20.04") -> GuestImage:
    """A one-partition Linux guest whose fstab names its root /dev/sda1 and mounts NFS/CIFS shares:
    hydration changes both, so a prepared copy is easy to tell from the source."""
    target = workdir / f"{distro}-{version}"
    target.mkdir(parents=True, exist_ok=True)
    layout = single_root(target, GuestSpec(distro, version))
    return GuestImage(
        path=layout.disk,
        os_type="linux",
        os_name=_NAMES.get(distro, distro),
        os_version=version,
        root_mb=layout.root_mb,
        size_mb=layout.root_size,
    )


def windows_guest(workdir: Path) -> GuestImage:
    """A Windows Server 2019 OS disk (MBR: a system partition, then the NTFS volume with the hives)."""
    from tests.hydration.windows_images import WindowsSpec, build_windows_disk

    target = workdir / "windows-2019"
    target.mkdir(parents=True, exist_ok=True)
    disk = build_windows_disk(target, WindowsSpec("2019", "Windows Server 2019 Datacenter", "10.0", 17763))
    return GuestImage(
        path=disk.disk,
        os_type="windows",
        os_name="Windows Server 2019 Datacenter",
        os_version="10.0.17763",
        root_mb=disk.os_start_mb,
        size_mb=disk.os_size_mb,
    )


def windows_settings(guest: GuestImage, image: Path, workdir: Path) -> dict[str, object]:
    """What hydration sets on Windows, read from a disk image with independent tools (ntfscat, regipy):
    the boot-start of vmbus/storvsc, the SAN policy, DHCP, and whether the agent's first-boot script is staged."""
    from regipy.registry import RegistryHive

    from tests.hydration.windows_images import WindowsDisk, extract_partition, ntfscat

    workdir.mkdir(parents=True, exist_ok=True)
    volume = extract_partition(WindowsDisk(image, guest.root_mb, guest.size_mb), workdir / "volume.img")
    hive_file = ntfscat(volume, "Windows/System32/config/SYSTEM", workdir / "SYSTEM")
    assert hive_file is not None, "no SYSTEM hive on the image"
    hive = RegistryHive(str(hive_file))

    def value(key: str, name: str) -> object:
        return next(v.value for v in hive.get_key(key).iter_values() if v.name == name)

    services = "\\ControlSet001\\Services"
    return {
        "vmbusStart": value(f"{services}\\vmbus", "Start"),
        "storvscStart": value(f"{services}\\storvsc", "Start"),
        "sanPolicy": value(f"{services}\\partmgr\\Parameters", "SanPolicy"),
        "dhcpStart": value(f"{services}\\Dhcp", "Start"),
        "firstBootStaged": ntfscat(volume, "Windows/AzureMigrate/firstboot.cmd", workdir / "firstboot.cmd")
        is not None,
    }
