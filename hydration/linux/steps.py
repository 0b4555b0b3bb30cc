"""One function per step of Azure's preparation of a machine for migration (Linux), in Azure's documented order.

Every step checks first and changes only what differs, backing up before it writes, so a
second run returns only unchanged records.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from hydration.devices import DiskSet, Volume, probe
from hydration.guest import GuestFS
from hydration.initrd import HV_MODULES, InitrdError, read_initrd_modules
from hydration.linux.families import NETPLAN_ETH0, Family
from hydration.linux.inspect import (
    NETWORK_FILESYSTEMS,
    GuestInspection,
    parse_fstab,
    standard_device,
)
from hydration.mounts import Mounts
from hydration.proc import CommandError, HydrationError, chroot_run
from hydration.report import Change
from hydration.steps import StepSkipped

SERIAL_ARGS = ("console=ttyS0,115200n8", "earlyprintk=ttyS0,115200", "rootdelay=300")
REMOVED_ARGS = ("rhgb", "quiet", "crashkernel=auto")
_KERNEL_LINE = re.compile(r"^(\s*)(linux|linux16|linuxefi|kernel)(\s+)(\S+)(.*?)(\s*)$")
_OPTIONS_LINE = re.compile(r"^(options)(\s+)(.*?)(\s*)$")
_DRACUT_CONF = "/etc/dracut.conf.d/90-azure-hyperv-drivers.conf"
_INITRAMFS_MODULES = "/etc/initramfs-tools/modules"


@dataclass
class LinuxContext:
    gi: GuestInspection
    family: Family
    fs: GuestFS
    dry_run: bool
    mounts: Mounts
    disks: DiskSet
    warn: Callable[[str], None]
    payload_dir: str
    use_repos: bool = True
    _chroot_ready: bool = field(default=False)

    @property
    def root(self) -> str:
        return self.fs.root

    def chroot(self, argv: list[str], *, check: bool = True, timeout: float = 1800) -> str:
        if self.dry_run:
            raise HydrationError("internal: a dry run must not run guest tools")
        self._prepare_chroot()
        return chroot_run(self.root, argv, check=check, timeout=timeout)

    def _prepare_chroot(self) -> None:
        if self._chroot_ready:
            return
        # The guest's own tools need the kernel's views, as they would when booted.
        self.mounts.bind("/dev", self.fs.path("/dev"))
        self.mounts.bind("/dev/pts", self.fs.path("/dev/pts"))
        self.mounts.special("proc", self.fs.path("/proc"))
        self.mounts.special("sysfs", self.fs.path("/sys"))
        if self.fs.isdir("/run"):
            self.mounts.special("tmpfs", self.fs.path("/run"))
        self._chroot_ready = True

    def guest_has(self, *names: str) -> str | None:
        for name in names:
            for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"):
                if self.fs.exists(f"{d}/{name}"):
                    return f"{d}/{name}"
        return None


# ---- step 3: Hyper-V drivers in the initrd ------------------------------------------------


def find_initrd(ctx: LinuxContext, kernel: str) -> str | None:
    for pattern in ctx.family.initrd_names:
        path = pattern.format(k=kernel)
        if ctx.fs.isfile(path):
            return path
    return None


def builtin_modules(ctx: LinuxContext, kernel: str) -> set[str]:
    text = ctx.fs.read_text(f"/lib/modules/{kernel}/modules.builtin") or ""
    return {os.path.basename(line.strip()).split(".ko")[0].replace("-", "_") for line in text.splitlines()}


def available_modules(ctx: LinuxContext, kernel: str) -> set[str]:
    base = ctx.fs.path(f"/lib/modules/{kernel}")
    found = set()
    for _dirpath, _dirs, files in os.walk(base):
        for name in files:
            stem = name.split(".ko")[0]
            if ".ko" in name and stem in HV_MODULES:
                found.add(stem)
    return found | builtin_modules(ctx, kernel)


def rebuild_initrd(ctx: LinuxContext) -> list[Change]:
    if not ctx.gi.kernels:
        raise HydrationError(
            "no installed kernel found (lib/modules/<version> with boot/vmlinuz-<version>): "
            "check that /boot and / are on the attached disks"
        )
    changes: list[Change] = []
    needs: list[tuple[str, str, list[str]]] = []
    for kernel in ctx.gi.kernels:
        builtin = builtin_modules(ctx, kernel)
        initrd = find_initrd(ctx, kernel)
        if initrd is None:
            if {"hv_vmbus", "hv_storvsc"} <= builtin:
                changes.append(Change("rebuild_initrd", f"kernel {kernel}", False, "drivers built in", None))
                continue
            raise HydrationError(
                f"kernel {kernel} has no initrd in /boot and its Hyper-V drivers are modules: "
                "create the initrd in the guest and migrate again"
            )
        try:
            present = read_initrd_modules(ctx.fs.path(initrd)) | builtin
        except (InitrdError, OSError) as exc:
            raise HydrationError(f"cannot read {initrd}: {exc}") from exc
        missing = [m for m in HV_MODULES if m not in present]
        if not missing:
            changes.append(Change("rebuild_initrd", initrd, False, _mods(HV_MODULES, "present"), None))
            continue
        unavailable = [m for m in missing if m not in available_modules(ctx, kernel)]
        if {"hv_vmbus", "hv_storvsc"} & set(unavailable):
            raise HydrationError(
                f"kernel {kernel} has no {', '.join(unavailable)} module: install Hyper-V drivers "
                "(Linux Integration Services or a newer kernel) in the source VM, then migrate again"
            )
        if unavailable:
            ctx.warn(f"kernel {kernel} has no {', '.join(unavailable)}: the VM may boot without a network")
            missing = [m for m in missing if m not in unavailable]
            if not missing:
                changes.append(Change("rebuild_initrd", initrd, False, "boot drivers present", None))
                continue
        needs.append((kernel, initrd, missing))
    if not needs:
        return changes
    tool = next((t for t in ctx.family.initrd_tools if ctx.guest_has(t)), None)
    if tool is None:
        raise HydrationError(
            f"the guest has none of {', '.join(ctx.family.initrd_tools)}: "
            "install its initrd tool in the source VM and migrate again"
        )
    changes.extend(_persist_driver_list(ctx, tool))
    for kernel, initrd, missing in needs:
        changes.append(_rebuild_one(ctx, tool, kernel, initrd, missing))
    return changes


def _mods(mods: tuple[str, ...] | list[str], state: str) -> str:
    return f"{' '.join(mods)} {state}"


def _persist_driver_list(ctx: LinuxContext, tool: str) -> list[Change]:
    """Keeps the drivers in future initrds too, so a kernel update in Azure still boots."""
    step = "rebuild_initrd"
    if tool == "dracut":
        content = f'add_drivers+=" {" ".join(HV_MODULES)} "\n'
        return [ctx.fs.write_text(step, _DRACUT_CONF, content, note="dracut adds the Hyper-V drivers")]
    if tool == "update-initramfs":
        current = ctx.fs.read_text(_INITRAMFS_MODULES) or ""
        listed = {
            line.split()[0] for line in current.splitlines() if line.strip() and not line.startswith("#")
        }
        extra = [m for m in HV_MODULES if m not in listed]
        if not extra:
            return [Change(step, _INITRAMFS_MODULES, False, current, current)]
        text = current + ("" if current.endswith("\n") or not current else "\n") + "\n".join(extra) + "\n"
        return [ctx.fs.write_text(step, _INITRAMFS_MODULES, text)]
    return []


def _rebuild_one(ctx: LinuxContext, tool: str, kernel: str, initrd: str, missing: list[str]) -> Change:
    backup = f"{initrd}.bak"
    n = 1
    while ctx.fs.exists(backup):
        backup = f"{initrd}.bak{n}"
        n += 1
    before = _mods(missing, "missing")
    if ctx.dry_run:
        return Change(
            "rebuild_initrd",
            initrd,
            True,
            before,
            _mods(HV_MODULES, "present"),
            backup,
            f"would rebuild with {tool}",
        )
    shutil.copy2(ctx.fs.path(initrd), ctx.fs.path(backup))
    if tool == "dracut":
        help_text = ctx.chroot(["dracut", "--help"], check=False)
        argv = ["dracut", "-f", "--add-drivers", " ".join(HV_MODULES)]
        if "--no-hostonly" in help_text:
            # Host-only mode would size the initrd for the helper VM, not for the guest.
            argv.append("--no-hostonly")
        argv += [initrd, kernel]
    elif tool == "mkinitrd":
        argv = ["mkinitrd", *[f"--preload={m}" for m in missing], "-v", "-f", initrd, kernel]
    elif initrd == f"/boot/initrd.img-{kernel}":
        argv = ["update-initramfs", "-u", "-k", kernel]
    else:
        argv = ["mkinitramfs", "-o", initrd, kernel]
    try:
        ctx.chroot(argv)
    except CommandError as exc:
        shutil.copy2(ctx.fs.path(backup), ctx.fs.path(initrd))
        raise HydrationError(
            f"{tool} failed for kernel {kernel}; the original initrd was restored: {exc}"
        ) from exc
    still = [
        m for m in missing if m not in read_initrd_modules(ctx.fs.path(initrd)) | builtin_modules(ctx, kernel)
    ]
    if still:
        raise HydrationError(
            f"{tool} ran but {initrd} still lacks {', '.join(still)}; the previous initrd is kept as {backup}"
        )
    return Change(
        "rebuild_initrd", initrd, True, before, _mods(HV_MODULES, "present"), backup, f"rebuilt with {tool}"
    )


# ---- step 4: serial console ----------------------------------------------------------------


def fix_cmdline(args: str) -> str:
    tokens = args.split()
    keys = {a.split(",")[0] if a.startswith("console=ttyS0") else a.split("=")[0]: a for a in SERIAL_ARGS}
    kept = []
    for tok in tokens:
        if tok in REMOVED_ARGS:
            continue
        key = tok.split(",")[0] if tok.startswith("console=ttyS0") else tok.split("=")[0]
        if key in keys and tok != keys[key]:
            continue  # a different value of one of our arguments (e.g. console=ttyS0,9600)
        kept.append(tok)
    kept += [a for a in SERIAL_ARGS if a not in kept]
    return " ".join(kept)


def strip_cmdline(args: str) -> str:
    return " ".join(t for t in args.split() if t not in REMOVED_ARGS)


def _edit_kernel_lines(text: str) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        m = _KERNEL_LINE.match(body)
        if m and not body.lstrip().startswith("#"):
            ind, kw, sp, image, args, _trail = m.groups()
            args = fix_cmdline(args)
            body = f"{ind}{kw}{sp}{image}{' ' + args if args else ''}"
        out.append(body + ("\n" if line.endswith("\n") else ""))
    return "".join(out)


def _edit_default_grub(text: str, add: bool = True) -> str:
    lines = text.splitlines()
    seen = False
    for i, line in enumerate(lines):
        m = re.match(r"^(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=(\"|')?(.*?)(\"|')?\s*$", line)
        if not m:
            continue
        name, q1, value, _q2 = m.groups()
        quote = q1 or '"'
        if name == "GRUB_CMDLINE_LINUX" and add:
            seen = True
            value = fix_cmdline(value)
        else:
            value = strip_cmdline(value)
        lines[i] = f"{name}={quote}{value}{quote}"
    if add and not seen:
        lines.append(f'GRUB_CMDLINE_LINUX="{" ".join(SERIAL_ARGS)}"')
    return "\n".join(lines) + "\n"


def _edit_grubenv(raw: bytes) -> bytes | None:
    text = raw.decode("utf-8", "replace")
    m = re.search(r"^kernelopts=(.*)$", text, re.M)
    if not m:
        return None
    body = text[: m.start(1)] + fix_cmdline(m.group(1)) + text[m.end(1) :]
    body = body.rstrip("#")
    if len(body.encode()) > 1024:
        raise HydrationError("boot/grub2/grubenv would exceed 1024 bytes; edit kernelopts by hand")
    # The environment block is a fixed 1 KiB file padded with '#'.
    return body.encode() + b"#" * (1024 - len(body.encode()))


def enable_serial_console(ctx: LinuxContext) -> list[Change]:
    step = "enable_serial_console"
    changes: list[Change] = []
    configs = list(ctx.family.grub_configs)
    for pattern in ("/boot/efi/EFI/*/grub.cfg", "/boot/efi/EFI/*/grub.conf"):
        host = ctx.fs.path(os.path.dirname(os.path.dirname(pattern)))
        for found in sorted(glob.glob(os.path.join(host, "*", os.path.basename(pattern)))):
            configs.append("/" + os.path.relpath(found, ctx.root))
    for path in dict.fromkeys(configs):
        text = ctx.fs.read_text(path)
        if text is None or (
            not _KERNEL_LINE.search(text) and not any(_KERNEL_LINE.match(line) for line in text.splitlines())
        ):
            continue
        changes.append(ctx.fs.write_text(step, path, _edit_kernel_lines(text)))
    for entry in ctx.fs.listdir("/boot/loader/entries"):
        path = f"/boot/loader/entries/{entry}"
        text = ctx.fs.read_text(path)
        if text is None or not entry.endswith(".conf"):
            continue
        out = []
        for line in text.splitlines():
            m = _OPTIONS_LINE.match(line)
            if m and "$kernelopts" not in m.group(3):
                line = f"{m.group(1)}{m.group(2)}{fix_cmdline(m.group(3))}"
            out.append(line)
        changes.append(ctx.fs.write_text(step, path, "\n".join(out) + "\n"))
    raw = ctx.fs.read_bytes("/boot/grub2/grubenv")
    if raw is not None:
        edited = _edit_grubenv(raw)
        if edited is not None:
            changes.append(ctx.fs.write_bytes(step, "/boot/grub2/grubenv", edited))
    default = ctx.fs.read_text("/etc/default/grub")
    if default is not None:
        changes.append(ctx.fs.write_text(step, "/etc/default/grub", _edit_default_grub(default)))
    # Drop-ins (Ubuntu cloud images) are read after /etc/default/grub and may bring "quiet" back.
    for name in ctx.fs.listdir("/etc/default/grub.d"):
        path = f"/etc/default/grub.d/{name}"
        text = ctx.fs.read_text(path)
        if text is not None and name.endswith(".cfg") and "GRUB_CMDLINE_LINUX" in text:
            changes.append(ctx.fs.write_text(step, path, _edit_default_grub(text, add=False)))
    # kernel-install (RHEL 9, BLS) builds the entries of future kernels from this file.
    cmdline = ctx.fs.read_text("/etc/kernel/cmdline")
    if cmdline is not None and cmdline.strip():
        changes.append(ctx.fs.write_text(step, "/etc/kernel/cmdline", fix_cmdline(cmdline) + "\n"))
    if not changes:
        ctx.warn(
            "no GRUB or GRUB2 configuration with kernel lines found: add "
            f"'{' '.join(SERIAL_ARGS)}' to the kernel command line by hand"
        )
    return changes


# ---- step 5: network -------------------------------------------------------------------


def remove_persistent_net_rules(ctx: LinuxContext) -> list[Change]:
    step = "remove_persistent_net_rules"
    changes = [
        ctx.fs.move_away(
            step,
            "/etc/udev/rules.d/70-persistent-net.rules",
            "static NIC naming would keep the on-premises MAC addresses",
        )
    ]
    generator = "75-persistent-net-generator.rules"
    # Azure's preparation masks the generator on RHEL; elsewhere only where the generator exists.
    if (
        ctx.family.name == "redhat"
        or ctx.fs.exists(f"/lib/udev/rules.d/{generator}")
        or ctx.fs.exists(f"/etc/udev/rules.d/{generator}")
    ):
        changes.append(
            ctx.fs.symlink(
                step,
                f"/etc/udev/rules.d/{generator}",
                "/dev/null",
                "masks the generator so new rules are not written",
            )
        )
    return changes


def remove_network_manager(ctx: LinuxContext) -> list[Change]:
    step = "remove_network_manager"
    limit = ctx.family.remove_network_manager_up_to
    distro = ctx.gi.distro
    if limit is None or distro.major > limit:
        raise StepSkipped(f"NetworkManager is kept on {distro.name}")
    binary = ctx.guest_has("NetworkManager")
    if binary is None:
        return [Change(step, ctx.family.network_manager_package, False, "not installed", "not installed")]
    pkg = ctx.family.network_manager_package
    if not ctx.dry_run:
        with _offline_service_policy(ctx):
            if ctx.family.package_manager == "apt":
                ctx.chroot(["dpkg", "--purge", "--force-depends", pkg])
            else:
                ctx.chroot(["rpm", "-e", "--nodeps", pkg])
    return [
        Change(step, pkg, True, "installed", "removed", None, "it can interfere with the Azure Linux agent")
    ]


def configure_eth0_dhcp(ctx: LinuxContext) -> list[Change]:
    step = "configure_eth0_dhcp"
    stack = ctx.gi.network_stack
    fs = ctx.fs
    changes: list[Change] = []
    if stack == "ifcfg-rh":
        cfg_dir = "/etc/sysconfig/network-scripts"
        for name in fs.listdir(cfg_dir):
            if (
                name.startswith("ifcfg-")
                and name not in ("ifcfg-lo", "ifcfg-eth0")
                and fs.isfile(f"{cfg_dir}/{name}")
            ):
                changes.append(fs.move_away(step, f"{cfg_dir}/{name}", "on-premises NIC settings backed up"))
        changes.append(fs.write_text(step, f"{cfg_dir}/ifcfg-eth0", ctx.family.eth0_config))
    elif stack == "ifcfg-suse":
        cfg_dir = "/etc/sysconfig/network"
        for name in fs.listdir(cfg_dir):
            if (
                name.startswith("ifcfg-")
                and name not in ("ifcfg-lo", "ifcfg-eth0")
                and fs.isfile(f"{cfg_dir}/{name}")
            ):
                changes.append(fs.move_away(step, f"{cfg_dir}/{name}", "on-premises NIC settings backed up"))
        changes.append(fs.write_text(step, f"{cfg_dir}/ifcfg-eth0", ctx.family.eth0_config))
    elif stack == "netplan":
        target = "/etc/netplan/50-azure-eth0.yaml"
        for name in fs.listdir("/etc/netplan"):
            path = f"/etc/netplan/{name}"
            if name.endswith((".yaml", ".yml")) and path != target:
                changes.append(fs.move_away(step, path, "on-premises NIC settings backed up"))
        changes.append(fs.write_text(step, target, NETPLAN_ETH0, mode=0o600))
    else:
        text = fs.read_text("/etc/network/interfaces") or ""
        wanted = ctx.family.eth0_config
        sources = [line.strip() for line in text.splitlines() if re.match(r"^\s*source(-directory)?\s", line)]
        if sources:
            wanted += "\n" + "\n".join(sources) + "\n"
        if not _has_eth0_dhcp(text) or _has_static(text):
            changes.append(fs.write_text(step, "/etc/network/interfaces", wanted))
        else:
            changes.append(Change(step, "/etc/network/interfaces", False, text, text))
    return changes


def _has_eth0_dhcp(text: str) -> bool:
    return bool(re.search(r"^\s*iface\s+eth0\s+inet\s+dhcp", text, re.M)) and bool(
        re.search(r"^\s*(auto|allow-hotplug)\s+.*\beth0\b", text, re.M)
    )


def _has_static(text: str) -> bool:
    return bool(re.search(r"^\s*iface\s+\S+\s+inet6?\s+static", text, re.M))


def reset_sysconfig_network(ctx: LinuxContext) -> list[Change]:
    content = ctx.family.sysconfig_network
    if content is None:
        raise StepSkipped(f"no etc/sysconfig/network file on the {ctx.family.name} family")
    return [ctx.fs.write_text("reset_sysconfig_network", "/etc/sysconfig/network", content)]


# ---- step 6: fstab ---------------------------------------------------------------------------


def validate_fstab(ctx: LinuxContext) -> list[Change]:
    step = "validate_fstab"
    text = ctx.fs.read_text("/etc/fstab")
    if text is None:
        raise HydrationError("etc/fstab disappeared after discovery: the disk is being modified concurrently")
    entries = parse_fstab(text)
    volumes = ctx.disks.volumes
    # The guest named its disks sda, sdb...; map the letters of root and /boot to the disks they
    # were found on here, and assume --disk order for the other letters.
    letter_map: dict[tuple[str, int], int] = {}
    for e in entries:
        std = standard_device(e.spec)
        anchor = ctx.gi.root if e.mountpoint == "/" else ctx.gi.boot if e.mountpoint == "/boot" else None
        if std and anchor is not None:
            letter_map[(std[0], std[1])] = anchor.disk_index
    system_disks = {ctx.gi.root.disk_index} | ({ctx.gi.boot.disk_index} if ctx.gi.boot else set())
    lines = text.splitlines()
    notes: list[str] = []
    for e in entries:
        if e.fstype.lower() in NETWORK_FILESYSTEMS:
            lines[e.line_no] = "#" + lines[e.line_no]
            notes.append(
                f"line {e.line_no + 1}: network filesystem {e.spec} commented out "
                "(remove the # and reboot in Azure to use it again)"
            )
            continue
        std = standard_device(e.spec)
        if std is None:
            continue  # UUID=, LABEL=, LVM and other persistent names are left alone
        prefix, disk_letter_index, number = std
        vol: Volume | None = None
        if e.mountpoint == "/":
            vol = ctx.gi.root
        elif e.mountpoint == "/boot" and ctx.gi.boot is not None:
            vol = ctx.gi.boot
        else:
            disk_index = letter_map.get((prefix, disk_letter_index), disk_letter_index)
            if disk_index not in system_disks:
                continue  # another disk: only root, /boot and partitions on their disk are replaced
            vol = next(
                (
                    v
                    for v in volumes
                    if v.disk_index == disk_index and v.partition is not None and v.partition.number == number
                ),
                None,
            )
        if vol is None:
            ctx.warn(f"fstab line {e.line_no + 1}: {e.spec} matches no partition on the attached disks")
            continue
        uuid = probe(vol.device).get("UUID", "") or vol.uuid
        if not uuid:
            ctx.warn(f"fstab line {e.line_no + 1}: {e.spec} has no filesystem UUID; left as it is")
            continue
        lines[e.line_no] = lines[e.line_no].replace(e.spec, f"UUID={uuid}", 1)
        notes.append(f"line {e.line_no + 1}: {e.spec} -> UUID={uuid}")
    new_text = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    return [ctx.fs.write_text(step, "/etc/fstab", new_text, note="; ".join(notes))]


# ---- step 7: Azure Linux agent -----------------------------------------------------------------


def _agent_installed(ctx: LinuxContext) -> str | None:
    return ctx.guest_has("waagent")


def install_azure_linux_agent(ctx: LinuxContext) -> list[Change]:
    step = "install_azure_linux_agent"
    found = _agent_installed(ctx)
    if found:
        return [Change(step, "Azure Linux agent", False, f"installed ({found})", f"installed ({found})")]
    bundled = _bundled_agent(ctx)
    if ctx.dry_run:
        source = bundled or ("the guest's repositories" if ctx.use_repos else None)
        if source is None:
            ctx.warn(_no_agent_message(ctx))
            source = "nowhere: no bundled package and repositories disabled"
        return [
            Change(
                step,
                "Azure Linux agent",
                True,
                "not installed",
                "installed",
                None,
                f"would install from {source}",
            )
        ]
    errors: list[str] = []
    with _offline_service_policy(ctx):
        if bundled:
            try:
                _install_bundled(ctx, bundled)
                if not _agent_installed(ctx):
                    errors.append(f"bundled package {os.path.basename(bundled)} installed no waagent")
            except HydrationError as exc:
                errors.append(f"bundled package {os.path.basename(bundled)}: {exc}")
        if not _agent_installed(ctx) and ctx.use_repos:
            try:
                _install_from_repos(ctx)
            except HydrationError as exc:
                errors.append(f"guest repositories: {exc}")
    found = _agent_installed(ctx)
    if not found:
        ctx.warn(_no_agent_message(ctx) + ("; tried " + "; ".join(errors) if errors else ""))
        return [Change(step, "Azure Linux agent", False, "not installed", "not installed")]
    _enable_agent_service(ctx)
    source = os.path.basename(bundled) if bundled and not errors else "the guest's repositories"
    return [
        Change(
            step,
            "Azure Linux agent",
            True,
            "not installed",
            f"installed ({found})",
            None,
            f"installed from {source}",
        )
    ]


def _no_agent_message(ctx: LinuxContext) -> str:
    bundled = _bundled_agent(ctx)
    return (
        "the Azure Linux agent could not be installed: "
        + (
            f"bundled {os.path.basename(bundled)} failed"
            if bundled
            else f"no bundled package for {ctx.family.name} ({ctx.family.package_ext}) in {ctx.payload_dir}"
        )
        + ("" if ctx.use_repos else " and repositories are disabled")
        + f"; install {' or '.join(ctx.family.agent_packages)} in the VM after migration "
        "(https://learn.microsoft.com/azure/virtual-machines/extensions/agent-linux)"
    )


def _bundled_agent(ctx: LinuxContext) -> str | None:
    if not os.path.isdir(ctx.payload_dir):
        return None
    for name in sorted(os.listdir(ctx.payload_dir)):
        low = name.lower()
        if low.endswith(ctx.family.package_ext) and any(
            key in low for key in ("walinuxagent", "waagent", "azure-agent")
        ):
            return os.path.join(ctx.payload_dir, name)
    return None


class _offline_service_policy:
    """Stops Debian maintainer scripts from starting daemons inside the chroot."""

    def __init__(self, ctx: LinuxContext) -> None:
        self.ctx = ctx
        self.path = ctx.fs.path("/usr/sbin/policy-rc.d")
        self.created = False

    def __enter__(self) -> None:
        if self.ctx.family.package_manager == "apt" and not os.path.lexists(self.path):
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path, "w", encoding="utf-8") as f:
                f.write("#!/bin/sh\nexit 101\n")
            os.chmod(self.path, 0o755)
            self.created = True

    def __exit__(self, *exc: object) -> None:
        if self.created and os.path.lexists(self.path):
            os.unlink(self.path)


def _install_bundled(ctx: LinuxContext, package: str) -> None:
    # A .deb goes in with the bundled dependencies the guest lacks, in one dpkg call so dpkg orders them.
    packages = [package, *(_missing_bundled_dependencies(ctx, package) if package.endswith(".deb") else [])]
    names = [os.path.basename(p) for p in packages]
    copies = [ctx.fs.path(f"/tmp/{name}") for name in names]
    os.makedirs(os.path.dirname(copies[0]), exist_ok=True)
    for source, dest in zip(packages, copies, strict=True):
        shutil.copy2(source, dest)
    try:
        if ctx.family.package_manager == "apt":
            out = ctx.chroot(["dpkg", "-i", *(f"/tmp/{name}" for name in names)], check=False)
            if not _agent_installed(ctx) or "dependency problems" in out:
                if not ctx.use_repos:
                    # Leave no half-configured package behind: the guest's apt would refuse to work.
                    ctx.chroot(["dpkg", "--remove", *(_deb_package(n) for n in names)], check=False)
                    raise HydrationError(f"dpkg could not install it: {out.strip()[-400:]}")
                _with_resolver(ctx, lambda: ctx.chroot([*_apt(), "-f", "install"], timeout=900))
        else:
            ctx.chroot(["rpm", "-Uvh", "--replacepkgs", f"/tmp/{names[0]}"])
    finally:
        for dest in copies:
            if os.path.exists(dest):
                os.unlink(dest)


def _deb_package(file_name: str) -> str:
    """The package name of a Debian archive named the Debian way (`name_version_arch.deb`)."""
    return file_name.split("_", 1)[0]


def _guest_dpkg_packages(ctx: LinuxContext) -> set[str]:
    """Packages dpkg records as installed in the guest (read from its status file, no chroot)."""
    text = ctx.fs.read_text("/var/lib/dpkg/status") or ""
    installed = set()
    for stanza in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" ")
        )
        if "Package" in fields and fields.get("Status", "").endswith(" installed"):
            installed.add(fields["Package"])
    return installed


def _missing_bundled_dependencies(ctx: LinuxContext, agent: str) -> list[str]:
    """The other bundled .debs whose package the guest does not have at any version (never a downgrade
    or a replacement of the guest's own)."""
    installed = _guest_dpkg_packages(ctx)
    return [
        os.path.join(ctx.payload_dir, name)
        for name in sorted(os.listdir(ctx.payload_dir))
        if name.endswith(".deb")
        and os.path.join(ctx.payload_dir, name) != agent
        and _deb_package(name) not in installed
    ]


def _apt() -> list[str]:
    return [
        "apt-get",
        "-y",
        "-q",
        "--no-install-recommends",
        "-o",
        "Acquire::Retries=1",
        "-o",
        "Acquire::http::Timeout=30",
        "-o",
        "Dpkg::Options::=--force-confold",
    ]


def _install_from_repos(ctx: LinuxContext) -> None:
    pkgs = list(ctx.family.agent_packages)
    pm = ctx.family.package_manager

    def go() -> None:
        if pm == "apt":
            ctx.chroot([*_apt(), "update"], timeout=600)
            ctx.chroot([*_apt(), "install", *pkgs], timeout=900)
        elif pm == "zypper":
            ctx.chroot(["zypper", "--non-interactive", "install", *pkgs], timeout=900)
        else:
            yum = "dnf" if ctx.guest_has("dnf") else "yum"
            ctx.chroot(
                [yum, "-y", "--setopt=timeout=30", "--setopt=retries=1", "install", *pkgs], timeout=900
            )

    _with_resolver(ctx, go)


def _with_resolver(ctx: LinuxContext, fn: Callable[[], object]) -> None:
    """Lends the helper's DNS settings to the chroot and puts the guest's back afterwards."""
    link = ctx.fs.path("/etc/resolv.conf", follow_last=False)
    saved_link = os.readlink(link) if os.path.islink(link) else None
    saved_data = None
    if saved_link is None and os.path.isfile(link):
        with open(link, "rb") as f:
            saved_data = f.read()
    try:
        if os.path.lexists(link):
            os.unlink(link)
        if os.path.exists("/etc/resolv.conf"):
            shutil.copyfile("/etc/resolv.conf", link)
        fn()
    except CommandError as exc:
        raise HydrationError(str(exc)) from exc
    finally:
        if os.path.lexists(link):
            os.unlink(link)
        if saved_link is not None:
            os.symlink(saved_link, link)
        elif saved_data is not None:
            with open(link, "wb") as f:
                f.write(saved_data)


def _enable_agent_service(ctx: LinuxContext) -> None:
    for service in ctx.family.agent_services:
        if ctx.guest_has("systemctl") and (
            ctx.fs.exists(f"/lib/systemd/system/{service}.service")
            or ctx.fs.exists(f"/usr/lib/systemd/system/{service}.service")
        ):
            ctx.chroot(["systemctl", "enable", f"{service}.service"], check=False)
            return
        if ctx.guest_has("chkconfig") and ctx.fs.exists(f"/etc/init.d/{service}"):
            ctx.chroot(["chkconfig", service, "on"], check=False)
            return
