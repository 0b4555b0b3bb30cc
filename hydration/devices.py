"""Disks attached as loop devices, one per partition, plus logical volumes found on them."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from hydration.partitions import (
    GPT_BIOS_BOOT,
    GPT_MS_RESERVED,
    Partition,
    PartitionTableError,
    read_partitions,
)
from hydration.proc import CommandError, HydrationError, have, run

# Without udev in the helper (or a container) LVM would wait forever for udev cookies.
_LVM_CONFIG = (
    "activation { udev_sync = 0 udev_rules = 0 verify_udev_operations = 1 } devices { use_devicesfile = 0 }"
)


@dataclass
class Volume:
    """Something that may hold a filesystem: a partition (through its loop device) or an LV."""

    device: str
    disk_index: int
    disk_path: str
    partition: Partition | None
    fstype: str = ""
    uuid: str = ""
    label: str = ""
    lv: str = ""  # "vg/lv" for logical volumes

    @property
    def name(self) -> str:
        if self.lv:
            return self.lv
        if self.partition is None or self.partition.number == 0:
            return f"disk{self.disk_index}"
        return f"disk{self.disk_index}p{self.partition.number}"

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "disk": self.disk_path,
            "fstype": self.fstype,
            "uuid": self.uuid,
            "label": self.label,
        }
        if self.partition is not None:
            out.update(
                number=self.partition.number,
                scheme=self.partition.scheme,
                start=self.partition.start,
                size=self.partition.size,
                type=self.partition.type_id,
                bootable=self.partition.bootable,
            )
        if self.lv:
            out["lv"] = self.lv
        return out


# How long close() waits for a loop device to be gone once asked to detach it (see wait_detached).
LOOP_DETACH_SECONDS = 10.0


def wait_detached(loop: str, timeout: float) -> bool:
    """Whether `loop` is detached within `timeout` seconds. `losetup -d` on a loop device another process
    has open (anything scanning every block device: an LVM scan, blkid, udev) only marks it to detach when
    that process closes it, and still succeeds; until then the image stays attached, and a caller told
    "everything released" could find it busy. The device's `loop/` attributes in sysfs exist only while it
    is bound to a file."""
    bound = Path("/sys/block") / Path(loop).name / "loop"
    deadline = time.monotonic() + timeout
    while bound.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def probe(device: str) -> dict[str, str]:
    """Filesystem identity read from the device itself (blkid -p bypasses the stale cache)."""
    out = run(["blkid", "-p", "-o", "export", device], check=False)
    values: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


@dataclass
class DiskSet:
    disks: list[str]
    readonly: bool
    volumes: list[Volume] = field(default_factory=list)
    loops: list[str] = field(default_factory=list)
    vgs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __enter__(self) -> DiskSet:
        try:
            self.attach()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def attach(self) -> None:
        for index, path in enumerate(self.disks):
            if not os.path.exists(path):
                raise HydrationError(f"disk {path} does not exist: check the --disk paths (LUNs attached?)")
            mode = os.stat(path).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
                raise HydrationError(f"disk {path} is neither a block device nor an image file")
            try:
                parts = read_partitions(path)
            except PartitionTableError as exc:
                raise HydrationError(f"{path}: {exc}") from exc
            for part in parts:
                if part.is_extended or part.type_id in (GPT_BIOS_BOOT, GPT_MS_RESERVED):
                    continue
                loop = self._losetup(path, part)
                vol = Volume(device=loop, disk_index=index, disk_path=path, partition=part)
                self._identify(vol)
                self.volumes.append(vol)
        self._activate_lvm()

    def _losetup(self, path: str, part: Partition) -> str:
        argv = ["losetup", "--find", "--show", "--offset", str(part.start)]
        if part.scheme != "none":
            argv += ["--sizelimit", str(part.size)]
        if self.readonly:
            argv.append("--read-only")
        loop = run([*argv, path]).strip()
        self.loops.append(loop)
        return loop

    def _identify(self, vol: Volume) -> None:
        info = probe(vol.device)
        vol.fstype = info.get("TYPE", "")
        vol.uuid = info.get("UUID", "")
        vol.label = info.get("LABEL", "")

    def _activate_lvm(self) -> None:
        pvs = [v.device for v in self.volumes if v.fstype == "LVM2_member"]
        if not pvs:
            return
        if not have("vgchange"):
            self.warnings.append("LVM physical volumes found but lvm2 is not installed on the helper VM")
            return
        devs = [arg for pv in pvs for arg in ("--devices", pv)]
        cfg = ["--config", _LVM_CONFIG]
        try:
            out = run(["vgs", *cfg, *devs, "--noheadings", "-o", "vg_name"])
            vgs = sorted({line.strip() for line in out.splitlines() if line.strip()})
            for vg in vgs:
                run(["vgchange", *cfg, *devs, "-ay", vg])
                self.vgs.append(vg)
            out = run(["lvs", *cfg, *devs, "--noheadings", "--separator", "|", "-o", "vg_name,lv_name"])
        except CommandError as exc:
            self.warnings.append(f"could not activate LVM volume groups: {exc}")
            return
        for line in out.splitlines():
            vg, sep, lv = line.strip().partition("|")
            if not sep:
                continue
            device = f"/dev/mapper/{vg.replace('-', '--')}-{lv.replace('-', '--')}"
            owner = next(v for v in self.volumes if v.fstype == "LVM2_member")
            vol = Volume(
                device=device,
                disk_index=owner.disk_index,
                disk_path=owner.disk_path,
                partition=None,
                lv=f"{vg}/{lv}",
            )
            self._identify(vol)
            self.volumes.append(vol)

    def close(self) -> None:
        """Deactivates VGs, flushes buffers and detaches loops; never raises (runs in finally)."""
        for vg in reversed(self.vgs):
            try:
                run(["vgchange", "--config", _LVM_CONFIG, "-an", vg])
            except (CommandError, HydrationError) as exc:
                self.warnings.append(f"vgchange -an {vg} failed: {exc}")
        self.vgs.clear()
        for loop in reversed(self.loops):
            run(["blockdev", "--flushbufs", loop], check=False)
            if run(["losetup", "-d", loop], check=False).strip():
                self.warnings.append(f"could not detach {loop}")
            elif not wait_detached(loop, LOOP_DETACH_SECONDS):
                self.warnings.append(
                    f"{loop} was still attached {LOOP_DETACH_SECONDS:g} s after its detach: another process "
                    "holds it open, and the kernel detaches it when that process closes it"
                )
        self.loops.clear()
        for disk in self.disks:
            if os.path.exists(disk) and stat.S_ISBLK(os.stat(disk).st_mode):
                run(["blockdev", "--flushbufs", disk], check=False)
        os.sync()
