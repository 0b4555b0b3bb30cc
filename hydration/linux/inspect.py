"""Reading the guest once: root discovery, fstab, distribution detection, kernels, network stack."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from hydration.devices import Volume
from hydration.guest import GuestFS
from hydration.linux.families import BY_DISTRO, Family
from hydration.support import SupportLevel, linux_support

LINUX_FILESYSTEMS = ("ext2", "ext3", "ext4", "xfs", "btrfs", "reiserfs", "jfs")
NETWORK_FILESYSTEMS = (
    "nfs",
    "nfs4",
    "cifs",
    "smbfs",
    "smb3",
    "ncpfs",
    "glusterfs",
    "ceph",
    "davfs",
    "fuse.sshfs",
    "sshfs",
    "afs",
    "9p",
    "lustre",
    "ocfs2",
)
# Mount points that belong to the OS (/boot, /boot/efi, /var, /lib, /etc, /usr ...).
SYSTEM_MOUNTS = ("/boot", "/usr", "/var", "/lib", "/lib64", "/etc", "/opt")
_STD_DEVICE = re.compile(r"^/dev/(sd|hd|vd|xvd)([a-z]+)(\d*)$")


@dataclass(frozen=True)
class FstabEntry:
    line_no: int
    spec: str
    mountpoint: str
    fstype: str
    options: str
    raw: str


def parse_fstab(text: str) -> list[FstabEntry]:
    entries = []
    for no, line in enumerate(text.splitlines()):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split()
        if len(fields) < 3:
            continue
        opts = fields[3] if len(fields) > 3 else "defaults"
        entries.append(FstabEntry(no, fields[0], fields[1].replace("\\040", " "), fields[2], opts, line))
    return entries


def standard_device(spec: str) -> tuple[str, int, int] | None:
    """(driver prefix, disk index, partition number) of /dev/sdb1-style names."""
    m = _STD_DEVICE.match(spec)
    if not m:
        return None
    index = 0
    for ch in m.group(2):
        index = index * 26 + (ord(ch) - ord("a") + 1)
    return m.group(1), index - 1, int(m.group(3) or 0)


def resolve_spec(spec: str, volumes: list[Volume]) -> Volume | None:
    """The volume an fstab device refers to, by UUID/LABEL/PARTUUID/LV path or standard name."""
    key, value = "", spec
    for prefix, k in (
        ("UUID=", "uuid"),
        ("LABEL=", "label"),
        ("PARTUUID=", "partuuid"),
        ("/dev/disk/by-uuid/", "uuid"),
        ("/dev/disk/by-label/", "label"),
        ("/dev/disk/by-partuuid/", "partuuid"),
    ):
        if spec.startswith(prefix):
            key, value = k, spec[len(prefix) :].strip('"')
            break
    for vol in volumes:
        if key == "uuid" and vol.uuid and vol.uuid.lower() == value.lower():
            return vol
        if key == "label" and vol.label and vol.label == value:
            return vol
        if key == "partuuid" and vol.partition and vol.partition.part_uuid.lower() == value.lower():
            return vol
        if not key and vol.lv and spec in _lv_paths(vol.lv):
            return vol
    std = standard_device(spec)
    if std is not None:
        _, disk, number = std
        for vol in volumes:
            if vol.disk_index == disk and vol.partition is not None and vol.partition.number == number:
                return vol
    return None


def _lv_paths(lv: str) -> tuple[str, ...]:
    vg, _, name = lv.partition("/")
    mapper = f"/dev/mapper/{vg.replace('-', '--')}-{name.replace('-', '--')}"
    return (f"/dev/{vg}/{name}", mapper)


# ---- distribution detection: ordered detectors, os-release last ---------------------------


@dataclass(frozen=True)
class Distro:
    id: str
    version: str
    name: str
    source: str

    @property
    def major(self) -> int:
        return _int_at(self.version, 0)

    @property
    def minor(self) -> int:
        return _int_at(self.version, 1)


def _int_at(version: str, index: int) -> int:
    nums = re.findall(r"\d+", version)
    return int(nums[index]) if len(nums) > index else 0


def _detect_oracle(fs: GuestFS) -> Distro | None:
    text = fs.read_text("/etc/oracle-release")
    if text is None:
        return None
    m = re.search(r"release\s+([\d.]+)", text)
    return Distro("ol", m.group(1) if m else "", text.strip(), "etc/oracle-release")


_REDHAT_NAMES = (
    ("red hat enterprise linux", "rhel"),
    ("centos", "centos"),
    ("rocky", "rocky"),
    ("almalinux", "almalinux"),
    ("oracle", "ol"),
)


def _detect_redhat(fs: GuestFS) -> Distro | None:
    text = fs.read_text("/etc/redhat-release")
    if text is None:
        return None
    low = text.lower()
    distro = next((d for name, d in _REDHAT_NAMES if name in low), None)
    if distro is None:
        return None
    m = re.search(r"release\s+([\d.]+)", text)
    version = m.group(1) if m else ""
    if distro == "centos" and "stream" in low:
        distro = "centos-stream"
    return Distro(distro, version, text.strip().splitlines()[0], "etc/redhat-release")


def _detect_suse(fs: GuestFS) -> Distro | None:
    text = fs.read_text("/etc/SuSE-release")
    if text is None or "enterprise server" not in text.lower():
        return None
    version = re.search(r"VERSION\s*=\s*(\d+)", text)
    patch = re.search(r"PATCHLEVEL\s*=\s*(\d+)", text)
    v = f"{version.group(1) if version else ''}.{patch.group(1) if patch else '0'}"
    return Distro("sles", v, text.strip().splitlines()[0], "etc/SuSE-release")


def _detect_lsb(fs: GuestFS) -> Distro | None:
    values = _shell_vars(fs.read_text("/etc/lsb-release") or "")
    if values.get("DISTRIB_ID", "").lower() != "ubuntu":
        return None
    return Distro(
        "ubuntu",
        values.get("DISTRIB_RELEASE", ""),
        values.get("DISTRIB_DESCRIPTION", "Ubuntu"),
        "etc/lsb-release",
    )


def _detect_debian(fs: GuestFS) -> Distro | None:
    text = fs.read_text("/etc/debian_version")
    if text is None:
        return None
    version = text.strip()
    if not re.match(r"^\d", version):
        # "bookworm/sid" on testing: the release number only appears in os-release.
        osr = _shell_vars(fs.read_text("/etc/os-release") or "")
        version = osr.get("VERSION_ID", version)
    return Distro("debian", version, f"Debian {version}", "etc/debian_version")


def _detect_os_release(fs: GuestFS) -> Distro | None:
    text = fs.read_text("/etc/os-release") or fs.read_text("/usr/lib/os-release")
    if text is None:
        return None
    values = _shell_vars(text)
    distro = values.get("ID", "").lower()
    version = values.get("VERSION_ID", "")
    if distro in ("sles", "sled") and "-SP" in values.get("VERSION", ""):
        version = values["VERSION"].replace("-SP", ".")
    return Distro(distro, version, values.get("PRETTY_NAME", distro), "etc/os-release")


def _shell_vars(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            out[key.strip()] = value.strip().strip('"').strip("'")
    return out


DETECTORS: tuple[Callable[[GuestFS], Distro | None], ...] = (
    _detect_oracle,  # before redhat-release: Oracle Linux ships both files
    _detect_redhat,
    _detect_suse,
    _detect_lsb,  # before debian_version: Ubuntu ships both files
    _detect_debian,
    _detect_os_release,
)


def detect_distro(fs: GuestFS) -> Distro | None:
    for detector in DETECTORS:
        found = detector(fs)
        if found is not None:
            return found
    return None


# ---- network stack: ordered detectors, the family's default last --------------------------


def detect_network_stack(fs: GuestFS, family: Family, distro: Distro) -> str:
    if fs.exists("/usr/sbin/netplan") or any(n.endswith(".yaml") for n in fs.listdir("/etc/netplan")):
        return "netplan"
    if family.name == "redhat":
        return "ifcfg-rh"
    if family.name == "suse" or fs.isdir("/etc/sysconfig/network"):
        return "ifcfg-suse"
    if fs.exists("/etc/network/interfaces") or fs.exists("/sbin/ifup"):
        return "ifupdown"
    if family.name == "ubuntu" and (distro.major, distro.minor) < (17, 10):
        return "ifupdown"
    return family.default_network_stack


# ---- the one record everything else dispatches on ------------------------------------------


@dataclass
class GuestInspection:
    distro: Distro
    family: Family | None
    support: SupportLevel
    root: Volume
    fstab: list[FstabEntry]
    fstab_text: str
    mounts: list[tuple[str, Volume]] = field(default_factory=list)
    boot: Volume | None = None
    firmware: str = "bios"
    kernels: list[str] = field(default_factory=list)
    network_stack: str = ""

    def describe(self) -> dict[str, object]:
        return {
            "family": "linux",
            "distribution": self.distro.id,
            "version": self.distro.version,
            "name": self.distro.name,
            "detected_from": self.distro.source,
            "distribution_family": self.family.name if self.family else None,
            "support": str(self.support),
            "root": self.root.name,
            "boot": self.boot.name if self.boot else None,
            "mounts": {mp: v.name for mp, v in self.mounts},
            "firmware": self.firmware,
            "kernels": self.kernels,
            "network_stack": self.network_stack,
        }


def support_for(distro: Distro) -> tuple[Family | None, SupportLevel]:
    family = BY_DISTRO.get(distro.id)
    if family is None:
        return None, SupportLevel.MANUAL
    return family, linux_support(distro.id, distro.major, distro.minor)


def list_kernels(fs: GuestFS) -> list[str]:
    """Kernel versions with modules whose image is installed in /boot."""
    kernels = []
    for k in fs.listdir("/lib/modules"):
        if not fs.isdir(f"/lib/modules/{k}"):
            continue
        if any(fs.exists(f"/boot/{img}-{k}") for img in ("vmlinuz", "vmlinux", "Image", "bzImage")):
            kernels.append(k)
    return kernels
