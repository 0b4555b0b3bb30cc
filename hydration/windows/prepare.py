"""prepare_windows(): Azure's preparation of a machine for migration (Windows) as an ordered list of steps."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from hydration.devices import DiskSet, Volume
from hydration.guest import GuestFS
from hydration.mounts import Mounts, is_readonly_mount
from hydration.options import Options
from hydration.proc import HydrationError, have, run
from hydration.report import Change, Report, RunStatus
from hydration.scan import WINDOWS_HIVE, Found, find_ci
from hydration.steps import StepRunner
from hydration.support import SupportLevel, WindowsRelease, windows_release
from hydration.windows import steps as s
from hydration.windows.hive import Hive, hive_is_dirty, open_hive

WINDOWS_STEPS: tuple[tuple[str, Callable[[s.WindowsContext], list[Change]]], ...] = (
    ("ensure_boot_drivers", s.ensure_boot_drivers),
    ("set_san_policy_online_all", s.set_san_policy_online_all),
    ("set_dhcp_automatic", s.set_dhcp_automatic),
    ("disable_vmware_tools", s.disable_vmware_tools),
    ("stage_azure_vm_agent", s.stage_azure_vm_agent),
)
_HIBERNATED = (b"hibr", b"HIBR", b"rstr", b"RSTR")
_FAST_STARTUP_FIX = (
    "start the source VM, run 'powercfg /h off' as administrator (turns off hibernation and "
    "Fast Startup), shut it down fully and replicate again"
)


@dataclass
class WindowsInspection:
    volume: Volume
    product: str
    version: tuple[int, int]
    build: int
    installation_type: str
    release: WindowsRelease
    control_set: str

    def describe(self) -> dict[str, object]:
        return {
            "family": "windows",
            "name": self.product,
            "release": self.release.name,
            "version": f"{self.version[0]}.{self.version[1]}.{self.build}",
            "installation_type": self.installation_type,
            "support": str(self.release.level),
            "os_volume": self.volume.name,
            "control_set": self.control_set,
        }


def prepare_windows(found: Found, disks: DiskSet, opts: Options, report: Report, runner: StepRunner) -> None:
    del disks  # Windows needs only the OS volume (the OS disk alone is attached)
    if os.path.ismount(opts.work_root):
        raise HydrationError(
            f"{opts.work_root} is already a mount point: run 'umount {opts.work_root}' and retry"
        )
    with Mounts() as mounts:
        try:
            _prepare(found, opts, report, runner, mounts)
        finally:
            runner.run("unmount_everything", lambda: _unmount(mounts, report))


def _prepare(found: Found, opts: Options, report: Report, runner: StepRunner, mounts: Mounts) -> None:
    vol = found.volume
    root = opts.work_root
    state: dict[str, WindowsInspection] = {}

    def find_os_volume() -> str:
        mounts.mount(vol.device, root, "ntfs", readonly=True)
        return f"Windows\\System32\\config\\SYSTEM found on {vol.name} (NTFS {vol.uuid})"

    def check_volume_state() -> str:
        hiberfil = find_ci(root, ("hiberfil.sys",))
        if hiberfil is not None:
            with open(hiberfil, "rb") as f:
                if f.read(4) in _HIBERNATED:
                    raise HydrationError(
                        "Windows is hibernated or was shut down with Fast Startup, so its "
                        f"volume holds unsaved state and cannot be changed safely: {_FAST_STARTUP_FIX}"
                    )
        if have("ntfsinfo"):
            info = run(["ntfsinfo", "-m", "-f", vol.device], check=False)
            m = re.search(r"Volume Flags:\s*0x([0-9a-fA-F]+)", info)
            if m and int(m.group(1), 16) & 0x1:
                raise HydrationError(
                    "the NTFS volume is marked dirty (not shut down cleanly or Fast Startup): "
                    f"{_FAST_STARTUP_FIX}; if it persists, run 'chkdsk C: /f' in the source VM"
                )
        return "volume is clean and not hibernated"

    def read_os_version() -> str:
        state["wi"] = _inspect(vol, root, runner)
        report.os = state["wi"].describe()
        wi = state["wi"]
        return f"{wi.product} ({wi.release.name}, build {wi.build}): {wi.release.level}"

    for name, fn in (
        ("find_os_volume", find_os_volume),
        ("read_os_version", read_os_version),  # first, so that a refused volume still names its OS
        ("check_volume_state", check_volume_state),
    ):
        if runner.run(name, fn).status == "failed":
            return
    wi = state["wi"]
    manual = wi.release.level is SupportLevel.MANUAL
    writable = not (manual or opts.dry_run)
    if writable:
        mounts.unmount(root)
        mounts.mount(vol.device, root, "ntfs", readonly=False)
        if is_readonly_mount(root):
            raise HydrationError(
                f"ntfs-3g mounted the volume read-only (unclean or hibernated): {_FAST_STARTUP_FIX}"
            )
    windows_dir = find_ci(root, ("Windows",))
    system = find_ci(root, WINDOWS_HIVE)
    if windows_dir is None or system is None:
        raise HydrationError(
            "Windows\\System32\\config\\SYSTEM vanished after remounting: the disk is unstable"
        )
    if hive_is_dirty(system):
        runner.warn(
            "the SYSTEM hive has unflushed transaction logs (Windows did not shut down cleanly); "
            "changes are made to the hive file and Windows may replay older logs over them"
        )
    fs = GuestFS(
        root, dry_run=not writable, backup_dir=f"/{os.path.basename(windows_dir)}/{s.STAGING_DIR}/backup"
    )
    with open(system, "rb") as f:
        original = f.read()
    with open_hive(system, write=writable) as hive:
        ctx = s.WindowsContext(
            hive,
            wi.control_set,
            windows_dir,
            fs,
            "/" + os.path.basename(windows_dir),
            wi.release,
            wi.version,
            not writable,
            runner.warn,
            opts.payload_dir,
        )
        for name, step in WINDOWS_STEPS:
            runner.run(name, functools.partial(step, ctx))
        dirty = hive.dirty
    if writable and dirty:
        backup = fs.backup_path_for("/SYSTEM")
        target = fs.path(backup)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as out:
            out.write(original)
        for record in report.steps:
            for change in record.changes:
                if change.changed and change.target.startswith("HKLM\\SYSTEM"):
                    change.backup = backup
    if manual:
        report.status = RunStatus.MANUAL
        report.manual_steps = [
            f"{c.step}: set {c.target} to {c.after} (now {c.before or 'missing'})"
            if c.target.startswith("HKLM")
            else f"{c.step}: {c.target} ({c.note or 'stage it'})"
            for r in report.steps
            for c in r.changes
            if c.changed
        ] or ["no registry change needed; install the Azure VM agent by hand"]


def _control_set(hive: Hive) -> str:
    current = hive.dword("Select", "Current")
    if current is None:
        raise HydrationError("SYSTEM hive has no Select\\Current value: the hive is corrupt")
    name = f"ControlSet{current:03d}"
    if hive.node(name) is None:
        raise HydrationError(f"Select\\Current names {name}, which does not exist: the hive is corrupt")
    return name


def _inspect(vol: Volume, root: str, runner: StepRunner) -> WindowsInspection:
    system = find_ci(root, WINDOWS_HIVE)
    assert system is not None
    with open_hive(system, write=False) as hive:
        control_set = _control_set(hive)
    software = find_ci(root, ("Windows", "System32", "config", "SOFTWARE"))
    product, major, minor, build, itype = "unknown Windows", 0, 0, 0, ""
    if software is None:
        runner.warn("no SOFTWARE hive: the Windows version cannot be read")
    else:
        key = "Microsoft\\Windows NT\\CurrentVersion"
        with open_hive(software, write=False) as sw:
            product = sw.string(key, "ProductName") or product
            itype = sw.string(key, "InstallationType") or ""
            major = sw.dword(key, "CurrentMajorVersionNumber") or 0
            minor = sw.dword(key, "CurrentMinorVersionNumber") or 0
            if not major:
                parts = (sw.string(key, "CurrentVersion") or "0.0").split(".")
                major, minor = int(parts[0] or 0), int(parts[1] if len(parts) > 1 else 0)
            build_text = sw.string(key, "CurrentBuildNumber") or sw.string(key, "CurrentBuild") or "0"
            build = int(re.sub(r"\D", "", build_text) or 0)
    server = itype.lower().startswith("server") or "server" in product.lower()
    release = (
        windows_release(major, minor, build, server)
        if major
        else WindowsRelease("unknown Windows version", SupportLevel.MANUAL)
    )
    return WindowsInspection(vol, product, (major, minor), build, itype, release, control_set)


def _unmount(mounts: Mounts, report: Report) -> str:
    count = len(mounts.targets)
    mounts.unmount_all()
    for w in mounts.warnings:
        report.warn(w)
    return f"unmounted {count} filesystems"
