"""prepare_linux(): Azure's preparation of a machine for migration (Linux) as an ordered list of steps."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from hydration.devices import DiskSet, Volume
from hydration.guest import GuestFS
from hydration.linux import steps as s
from hydration.linux.inspect import (
    LINUX_FILESYSTEMS,
    NETWORK_FILESYSTEMS,
    SYSTEM_MOUNTS,
    GuestInspection,
    detect_distro,
    detect_network_stack,
    list_kernels,
    parse_fstab,
    resolve_spec,
    support_for,
)
from hydration.mounts import Mounts
from hydration.options import Options
from hydration.proc import CommandError, HydrationError
from hydration.report import Change, Report, RunStatus
from hydration.scan import Found
from hydration.steps import StepRunner
from hydration.support import SupportLevel

# The preparation steps after discovery, in Azure's documented order.
LINUX_STEPS: tuple[tuple[str, Callable[[s.LinuxContext], list[Change]]], ...] = (
    ("rebuild_initrd", s.rebuild_initrd),
    ("enable_serial_console", s.enable_serial_console),
    ("remove_persistent_net_rules", s.remove_persistent_net_rules),
    ("remove_network_manager", s.remove_network_manager),
    ("configure_eth0_dhcp", s.configure_eth0_dhcp),
    ("reset_sysconfig_network", s.reset_sysconfig_network),
    ("validate_fstab", s.validate_fstab),
    ("install_azure_linux_agent", s.install_azure_linux_agent),
)


def choose_root(candidates: list[Found], disks: DiskSet) -> Found:
    """Prefers the partition whose own fstab names it as "/" (several OS copies may be attached)."""
    for cand in candidates:
        root_entry = next((e for e in parse_fstab(cand.fstab_text) if e.mountpoint == "/"), None)
        if root_entry and resolve_spec(root_entry.spec, disks.volumes) is cand.volume:
            return cand
    return candidates[0]


def prepare_linux(found: Found, disks: DiskSet, opts: Options, report: Report, runner: StepRunner) -> None:
    if os.path.ismount(opts.work_root):
        raise HydrationError(
            f"{opts.work_root} is already a mount point (a previous run was interrupted?): "
            f"run 'umount -R {opts.work_root}' and retry"
        )
    with Mounts() as mounts:
        try:
            _prepare(found, disks, opts, report, runner, mounts)
        finally:
            runner.run("unmount_everything", lambda: _unmount(mounts, disks, report))


def _prepare(
    found: Found, disks: DiskSet, opts: Options, report: Report, runner: StepRunner, mounts: Mounts
) -> None:
    holder: dict[str, GuestInspection] = {}

    def discover_root_partition() -> str:
        mounts.mount(found.volume.device, opts.work_root, found.volume.fstype, readonly=True)
        return f"root filesystem is {found.volume.name} ({found.volume.fstype}, UUID {found.volume.uuid})"

    def detect_os_version() -> str:
        fs = GuestFS(opts.work_root, dry_run=True)
        distro = detect_distro(fs)
        if distro is None:
            raise HydrationError(
                "no release file found (etc/redhat-release, etc/oracle-release, "
                "etc/SuSE-release, etc/lsb-release, etc/debian_version, etc/os-release): "
                "prepare this VM manually"
            )
        family, level = support_for(distro)
        entries = parse_fstab(found.fstab_text)
        holder["gi"] = GuestInspection(distro, family, level, found.volume, entries, found.fstab_text)
        report.os = holder["gi"].describe()
        return f"{distro.name} ({distro.id} {distro.version}): {level}"

    if runner.run("discover_root_partition", discover_root_partition).status == "failed":
        return
    if runner.run("detect_os_version", detect_os_version).status == "failed":
        return
    gi = holder["gi"]
    manual = gi.support is SupportLevel.MANUAL or gi.family is None
    writable = not (manual or opts.dry_run)
    if writable:
        # A fresh mount, not a remount: XFS cannot go from ro,norecovery to read-write in place.
        mounts.unmount(opts.work_root)
        mounts.mount(found.volume.device, opts.work_root, found.volume.fstype, readonly=False)

    def mount_system_partitions() -> str:
        return _mount_system(gi, disks, opts, mounts, writable, runner)

    if runner.run("mount_system_partitions", mount_system_partitions).status == "failed":
        return
    fs = GuestFS(opts.work_root, dry_run=not writable)
    gi.kernels = list_kernels(fs)
    if gi.family is not None:
        gi.network_stack = detect_network_stack(fs, gi.family, gi.distro)
    report.os = gi.describe()
    if gi.family is None:
        report.manual_steps = _generic_manual_steps()
        report.status = RunStatus.MANUAL
        return
    ctx = s.LinuxContext(
        gi, gi.family, fs, not writable, mounts, disks, runner.warn, opts.payload_dir, opts.use_repos
    )
    for name, step in LINUX_STEPS:
        runner.run(name, functools.partial(step, ctx))
    if manual:
        report.status = RunStatus.MANUAL
        report.manual_steps = _manual_steps(report)


# Without these the steps would change files hidden under an empty mount point.
_NEEDED_MOUNTS = ("/boot", "/usr", "/etc", "/lib", "/lib64", "/var")


def _mount_system(
    gi: GuestInspection, disks: DiskSet, opts: Options, mounts: Mounts, writable: bool, runner: StepRunner
) -> str:
    wanted: list[tuple[str, Volume]] = []
    for e in gi.fstab:
        if e.mountpoint == "/" or e.fstype in NETWORK_FILESYSTEMS or e.fstype in ("swap", "none"):
            continue
        if not any(e.mountpoint == p or e.mountpoint.startswith(p + "/") for p in SYSTEM_MOUNTS):
            continue
        vol = resolve_spec(e.spec, disks.volumes)
        if e.mountpoint == "/boot" and vol is None:
            # Seed: otherwise the partition with the boot flag is /boot.
            vol = next(
                (
                    v
                    for v in disks.volumes
                    if v.partition
                    and v.partition.bootable
                    and v is not gi.root
                    and v.fstype in LINUX_FILESYSTEMS
                ),
                None,
            )
        if vol is None:
            runner.warn(f"fstab entry {e.spec} {e.mountpoint} matches no attached partition; not mounted")
            continue
        wanted.append((e.mountpoint, vol))
    fs = GuestFS(opts.work_root, dry_run=True)
    for mountpoint, vol in sorted(wanted, key=lambda mv: len(mv[0].rstrip("/").split("/"))):
        target = fs.path(mountpoint)
        if not os.path.isdir(target):
            runner.warn(
                f"mount point {mountpoint} does not exist in the root filesystem; {vol.name} not mounted"
            )
            continue
        try:
            mounts.mount(vol.device, target, vol.fstype, readonly=not writable)
        except CommandError as exc:
            if mountpoint in _NEEDED_MOUNTS:
                raise HydrationError(
                    f"cannot mount {vol.name} ({vol.fstype}) at {mountpoint}: {exc.output.strip()[:300]}; "
                    "check the filesystem (fsck) in the source VM and replicate again"
                ) from exc
            runner.warn(
                f"{vol.name} ({vol.fstype}) could not be mounted at {mountpoint}; files there are not changed"
            )
            continue
        gi.mounts.append((mountpoint, vol))
        if mountpoint == "/boot":
            gi.boot = vol
        if mountpoint == "/boot/efi":
            gi.firmware = "uefi"
    if gi.firmware != "uefi" and any(
        v.partition and v.partition.is_esp and v.disk_index == gi.root.disk_index for v in disks.volumes
    ):
        gi.firmware = "uefi"
    mounted = ", ".join(f"{mp}={v.name}" for mp, v in gi.mounts) or "no separate system partitions"
    return f"/={gi.root.name} ({'read-write' if writable else 'read-only'}); {mounted}"


def _unmount(mounts: Mounts, disks: DiskSet, report: Report) -> str:
    count = len(mounts.targets)
    mounts.unmount_all()
    for w in mounts.warnings:
        report.warn(w)
    vgs = ", ".join(disks.vgs) or "none"
    return f"unmounted {count} filesystems; volume groups to deactivate: {vgs}"


_MANUAL_HINTS = {
    "rebuild_initrd": "rebuild the initrd of every kernel with hv_vmbus, hv_storvsc and hv_netvsc "
    "(dracut --add-drivers / mkinitrd --preload / update-initramfs), keeping a .bak copy",
    "enable_serial_console": f"add '{' '.join(s.SERIAL_ARGS)}' to the GRUB kernel lines and remove "
    f"'{' '.join(s.REMOVED_ARGS)}'",
    "remove_persistent_net_rules": "remove /etc/udev/rules.d/70-persistent-net.rules and mask "
    "75-persistent-net-generator.rules",
    "remove_network_manager": "remove NetworkManager if it interferes with the Azure Linux agent",
    "configure_eth0_dhcp": "back up the NIC settings and configure eth0 for DHCP",
    "reset_sysconfig_network": "set /etc/sysconfig/network to NETWORKING=yes and HOSTNAME=localhost.localdomain",
    "validate_fstab": "use UUID= for root, /boot and partitions on their disk; comment out network filesystems",
    "install_azure_linux_agent": "install the Azure Linux agent (waagent/walinuxagent)",
}


def _manual_steps(report: Report) -> list[str]:
    """One line per change the dry run found, each with the instruction for its step."""
    out = []
    for record in report.steps:
        hint = _MANUAL_HINTS.get(record.name)
        if hint is None:
            continue
        for c in record.changes:
            if c.changed:
                detail = f" ({c.note})" if c.note else ""
                out.append(f"{record.name}: {c.target}{detail}: {hint}")
        if record.status == "warning":
            out.append(f"{record.name}: {record.message}")
    return out


def _generic_manual_steps() -> list[str]:
    return [f"{name}: {hint}" for name, hint in _MANUAL_HINTS.items()]
