"""Linux hydration on synthetic guests: every family, several versions, three disk layouts.

Results are read back after the toolkit unmounted everything, with debugfs, lsinitramfs, blkid
and mtools, never with the toolkit's own readers.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.hydration.conftest import (
    blkid_uuid,
    debugfs_cat,
    debugfs_dump,
    debugfs_exists,
    image_digest,
    lsinitramfs,
)
from tests.hydration.guests import GuestSpec, family_of, initrd_name
from tests.hydration.layouts import (
    BOOT_UUID,
    DATA_UUID,
    ROOT_UUID,
    SWAP_UUID,
    Layout,
    gpt_uefi,
    mbr_separate_boot,
    single_root,
)

pytestmark = [pytest.mark.root]

SERIAL = "console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300"
HV = ("hv_vmbus", "hv_storvsc", "hv_netvsc")


class Guest:
    """Reads files of the prepared guest from the right partition of the image."""

    def __init__(self, layout: Layout, tmp: Path) -> None:
        self.layout = layout
        self.tmp = tmp

    def _where(self, path: str) -> tuple[int, str]:
        if self.layout.boot_mb is not None and (path == "/boot" or path.startswith("/boot/")):
            return self.layout.boot_mb, path[len("/boot") :] or "/"
        return self.layout.root_mb, path

    def read(self, path: str) -> str | None:
        if path.startswith("/boot/efi/"):
            start, _ = (self.layout.extra or {})["esp"]
            proc = subprocess.run(
                ["mtype", "-i", f"{self.layout.disk}@@{start}M", "::" + path[len("/boot/efi") :]],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
            )
            return proc.stdout if proc.returncode == 0 else None
        start, inner = self._where(path)
        return debugfs_cat(self.layout.disk, start, inner)

    def exists(self, path: str) -> bool:
        start, inner = self._where(path)
        return debugfs_exists(self.layout.disk, start, inner)

    def initrd_files(self, path: str) -> list[str]:
        start, inner = self._where(path)
        dest = self.tmp / f"initrd-{abs(hash(path))}"
        debugfs_dump(self.layout.disk, start, inner, dest)
        return lsinitramfs(dest)


LAYOUTS = {"mbr": mbr_separate_boot, "gpt": gpt_uefi, "single": single_root}

CASES = [
    # (distro, version, layout, spec options)
    ("rhel", "7.9", "mbr", {"network_manager": True}),
    ("rhel", "7.0", "single", {"compression": "xz"}),
    ("rhel", "8.6", "gpt", {"bls": True, "compression": "xz", "network_manager": True}),
    ("rhel", "9.2", "gpt", {"compression": "zstd"}),
    ("rhel", "6.10", "single", {"grub_legacy": True}),
    ("centos", "7.7", "mbr", {"early_microcode": True, "compression": "xz"}),
    ("centos", "6.9", "single", {"grub_legacy": True}),
    ("centos", "8.4", "single", {"bls": True}),
    ("ol", "7.7", "mbr", {}),
    ("ol", "6.10", "single", {"grub_legacy": True}),
    ("rocky", "9.3", "gpt", {"compression": "zstd", "early_microcode": True}),
    ("almalinux", "9.2", "single", {}),
    ("sles", "12.5", "mbr", {}),
    ("sles", "15.1", "gpt", {"compression": "xz"}),
    ("sles", "15.4", "single", {"compression": "zstd"}),
    ("ubuntu", "16.04", "single", {}),
    ("ubuntu", "18.04", "mbr", {"network_manager": True}),
    ("ubuntu", "20.04", "gpt", {"compression": "zstd"}),
    ("ubuntu", "22.04", "single", {"compression": "zstd"}),
    ("ubuntu", "24.04", "gpt", {"compression": "zstd"}),
    ("debian", "9.13", "mbr", {}),
    ("debian", "10.13", "single", {"hv_in_initrd": True}),
    ("debian", "11.9", "gpt", {}),
    ("debian", "12.5", "single", {"compression": "zstd"}),
]


def _id(case: tuple[str, str, str, dict[str, Any]]) -> str:
    return f"{case[0]}-{case[1]}-{case[2]}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_prepares_guest_and_second_run_changes_nothing(
    case: tuple[str, str, str, dict[str, Any]], tmp_path: Path, hydrate: Any
) -> None:
    distro, version, layout_name, opts = case
    kernels = ("4.18.0-372.el8.x86_64", "4.18.0-425.el8.x86_64") if distro == "rhel" else ("5.10.0-1",)
    spec = GuestSpec(distro, version, kernels=kernels, **opts)
    layout = LAYOUTS[layout_name](tmp_path, spec)
    guest = Guest(layout, tmp_path)

    first = hydrate(layout.disk)
    rep = first.report
    assert rep["status"] == "succeeded"
    assert rep["os"]["distribution"] == distro
    assert rep["os"]["version"].startswith(version.split(".")[0])
    assert rep["os"]["support"].startswith("automatic")
    assert first.step("install_azure_linux_agent")["status"] == "warning"  # no package, no repos
    assert "Secr3t!" not in json.dumps(rep) and "password=***" in json.dumps(rep)  # CIFS secret redacted
    assert "could not be installed" in " ".join(rep["warnings"])

    # initrds: rebuilt with the Hyper-V drivers by the guest's tool, original kept as .bak
    for k in kernels:
        initrd = initrd_name(spec, k)
        names = " ".join(guest.initrd_files(initrd))
        for mod in HV:
            assert f"{mod}.ko" in names, (initrd, names)
        if not spec.hv_in_initrd:
            assert guest.exists(initrd + ".bak")
            assert "hv_vmbus" not in " ".join(guest.initrd_files(initrd + ".bak"))
        else:
            assert not guest.exists(initrd + ".bak")
    fam = family_of(distro)
    if not spec.hv_in_initrd:
        if fam in ("redhat", "suse"):
            assert "hv_vmbus" in (guest.read("/etc/dracut.conf.d/90-azure-hyperv-drivers.conf") or "")
            log = guest.read("/var/log/fake-tools.log") or ""
            assert "--add-drivers" in log and "--no-hostonly" in log
        else:
            assert "hv_storvsc" in (guest.read("/etc/initramfs-tools/modules") or "")

    _check_serial_console(guest, spec, layout_name)
    _check_network(guest, spec)
    _check_fstab(guest, layout, layout_name, tmp_path)

    second = hydrate(layout.disk)
    assert second.report["changes"] == [], second.report["changes"]
    assert all(s["status"] in ("ok", "unchanged", "skipped", "warning") for s in second.report["steps"])


def _check_serial_console(guest: Guest, spec: GuestSpec, layout_name: str) -> None:
    configs: list[str] = []
    if spec.grub_legacy:
        configs.append("/boot/grub/grub.conf")
    elif spec.bls:
        env = guest.read("/boot/grub2/grubenv") or ""
        line = next(line for line in env.splitlines() if line.startswith("kernelopts="))
        assert SERIAL in line and "rhgb" not in line and "quiet" not in line
        assert len(env.encode()) == 1024
    else:
        configs.append(
            "/boot/grub2/grub.cfg" if family_of(spec.distro) in ("redhat", "suse") else "/boot/grub/grub.cfg"
        )
    if layout_name == "gpt":
        vendor = "redhat" if family_of(spec.distro) == "redhat" else spec.distro
        configs.append(f"/boot/efi/EFI/{vendor}/grub.cfg")
    for cfg in configs:
        text = guest.read(cfg)
        assert text is not None, cfg
        kernel_lines = [line for line in text.splitlines() if line.strip().startswith(("linux", "kernel"))]
        assert kernel_lines, cfg
        for line in kernel_lines:
            assert SERIAL in line, (cfg, line)
            for bad in ("rhgb", " quiet", "crashkernel=auto"):
                assert bad not in line, (cfg, line)
    if spec.distro == "ubuntu":
        dropin = guest.read("/etc/default/grub.d/50-cloudimg-settings.cfg") or ""
        assert dropin == 'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1"\n'
    if family_of(spec.distro) == "redhat" and int(spec.version.split(".")[0]) >= 9:
        assert guest.read("/etc/kernel/cmdline") == f"root=UUID=x ro {SERIAL}\n"
    if not spec.grub_legacy:
        default = guest.read("/etc/default/grub") or ""
        assert f"{SERIAL}" in default
        assert "rhgb" not in default and "quiet" not in default and "crashkernel=auto" not in default


def _check_network(guest: Guest, spec: GuestSpec) -> None:
    fam = family_of(spec.distro)
    assert not guest.exists("/etc/udev/rules.d/70-persistent-net.rules")
    assert guest.exists("/var/lib/azure-migrate/hydration-backup/etc/udev/rules.d/70-persistent-net.rules")
    if fam == "redhat":
        eth0 = guest.read("/etc/sysconfig/network-scripts/ifcfg-eth0")
        assert eth0 == (
            "DEVICE=eth0\nONBOOT=yes\nBOOTPROTO=dhcp\nTYPE=Ethernet\nUSERCTL=no\nPEERDNS=yes\n"
            "IPV6INIT=no\nPERSISTENT_DHCLIENT=yes\nNM_CONTROLLED=yes\n"
        )
        assert not guest.exists("/etc/sysconfig/network-scripts/ifcfg-ens192")
        assert guest.exists("/etc/sysconfig/network-scripts/ifcfg-lo")
        assert guest.read("/etc/sysconfig/network") == "NETWORKING=yes\nHOSTNAME=localhost.localdomain\n"
        assert "GATEWAY" in (
            guest.read("/var/lib/azure-migrate/hydration-backup/etc/sysconfig/network") or ""
        )
        stat = subprocess.run(["true"], check=True)
        del stat
        assert guest.exists("/etc/udev/rules.d/75-persistent-net-generator.rules")
        if spec.network_manager:
            major = int(spec.version.split(".")[0])
            assert guest.exists("/usr/sbin/NetworkManager") == (major >= 8)
    elif fam == "suse":
        assert "BOOTPROTO='dhcp'" in (guest.read("/etc/sysconfig/network/ifcfg-eth0") or "")
        assert not guest.exists("/etc/sysconfig/network/ifcfg-eth1")
        assert guest.exists("/etc/sysconfig/network/config")
    elif spec.distro == "ubuntu" and spec.version >= "18":
        assert "dhcp4: true" in (guest.read("/etc/netplan/50-azure-eth0.yaml") or "")
        assert not guest.exists("/etc/netplan/01-netcfg.yaml")
        if spec.network_manager:
            assert not guest.exists("/usr/sbin/NetworkManager")
    else:
        interfaces = guest.read("/etc/network/interfaces") or ""
        assert "iface eth0 inet dhcp" in interfaces and "static" not in interfaces
        assert "source /etc/network/interfaces.d/*" in interfaces
        assert "ens192" in (
            guest.read("/var/lib/azure-migrate/hydration-backup/etc/network/interfaces") or ""
        )


def _check_fstab(guest: Guest, layout: Layout, layout_name: str, tmp: Path) -> None:
    fstab = guest.read("/etc/fstab") or ""
    lines = [line for line in fstab.splitlines() if line.strip()]
    real_root = blkid_uuid(layout.disk, layout.root_mb, layout.root_size, tmp)
    assert real_root == ROOT_UUID
    root_line = next(line for line in lines if line.split()[1] == "/" and not line.startswith("#"))
    assert root_line.split()[0] == f"UUID={real_root}"
    assert any(line.startswith("#nas01:/export/home") for line in lines)
    assert any(line.startswith("#//fs01/share") for line in lines)
    assert any(line.startswith("/dev/mapper/vg_data-lv_data") for line in lines)  # LVM untouched
    assert any(line.startswith("LABEL=scratch") for line in lines)  # LABEL untouched
    if layout_name == "mbr":
        assert layout.boot_mb is not None and layout.extra
        assert blkid_uuid(layout.disk, layout.boot_mb, layout.boot_size, tmp) == BOOT_UUID
        swap_start, swap_size = layout.extra["swap"]
        assert blkid_uuid(layout.disk, swap_start, swap_size, tmp) == SWAP_UUID
        by_mp = {line.split()[1]: line.split()[0] for line in lines if not line.startswith("#")}
        assert by_mp["/boot"] == f"UUID={BOOT_UUID}"
        assert by_mp["swap"] == f"UUID={SWAP_UUID}"  # same disk as root and /boot
        assert by_mp["/var/lib/extra"] == f"UUID={DATA_UUID}"  # a logical partition on that disk
        assert by_mp["/backup"] == "/dev/sdb1"  # another disk: left as it is


def test_dry_run_changes_nothing(tmp_path: Path, hydrate: Any) -> None:
    layout = mbr_separate_boot(tmp_path, GuestSpec("centos", "7.6", network_manager=True))
    before = image_digest(layout.disk)
    result = hydrate(layout.disk, args=("--dry-run",))
    assert result.report["dry_run"] is True
    assert image_digest(layout.disk) == before
    statuses = {s["name"]: s["status"] for s in result.report["steps"]}
    assert statuses["rebuild_initrd"] == "would_change"
    assert statuses["validate_fstab"] == "would_change"
    assert statuses["remove_network_manager"] == "would_change"
    assert any(c["target"] == "/etc/fstab" for c in result.report["changes"])


@pytest.mark.parametrize(
    ("distro", "version"),
    [("centos", "7.2"), ("ubuntu", "21.04"), ("debian", "6.0.10"), ("archlinux", "2024")],
)
def test_unsupported_version_is_manual_and_untouched(
    distro: str, version: str, tmp_path: Path, hydrate: Any
) -> None:
    layout = single_root(tmp_path, GuestSpec(distro, version))
    before = image_digest(layout.disk)
    result = hydrate(layout.disk, expect_rc=3)
    assert result.report["status"] == "manual_preparation_required"
    assert image_digest(layout.disk) == before
    manual = "\n".join(result.report["manual_steps"])
    assert "hv_vmbus" in manual and "console=ttyS0,115200n8" in manual and "UUID=" in manual
    assert "manual" in result.stdout


def test_wrong_disk_fails_with_clear_message(tmp_path: Path, hydrate: Any) -> None:
    from tests.hydration.images import Part, build_disk

    disk = tmp_path / "data.img"
    build_disk(str(disk), "gpt", [Part(16, "ext4", {"/data/file": "x"})])
    result = hydrate(disk, expect_rc=1)
    assert "no partition holds etc/fstab" in result.report["errors"][0]
    assert "wrong OS disk" in result.stdout


def test_missing_hv_modules_in_kernel_is_an_error(tmp_path: Path, hydrate: Any) -> None:
    from tests.hydration.guests import boot_tree, root_tree
    from tests.hydration.images import Part, build_disk

    spec = GuestSpec("centos", "7.7", kernels=("3.10.0-old",))
    root = {**root_tree(spec, "/dev/sda1 / ext4 defaults 0 0\n"), **boot_tree(spec, "/dev/sda1")}
    for name in list(root):
        if "/hv" in name or "hv_" in name:
            del root[name]
    disk = tmp_path / "nohv.img"
    build_disk(str(disk), "mbr", [Part(64, "ext4", root)])
    result = hydrate(disk, expect_rc=1)
    step = result.step("rebuild_initrd")
    assert step["status"] == "failed"
    assert "Linux Integration Services" in step["message"]


def test_xfs_root_with_separate_boot(tmp_path: Path, hydrate: Any) -> None:
    """RHEL's default: XFS root (mounted with nouuid), ext4 /boot by device name."""
    from tests.hydration.guests import boot_tree, root_tree
    from tests.hydration.images import Part, build_disk

    spec = GuestSpec("rhel", "7.9", kernels=("3.10.0-1160.el7.x86_64",))
    fstab = f"UUID={ROOT_UUID} / xfs defaults 0 0\n/dev/sda1 /boot ext4 defaults 1 2\n"
    root = root_tree(spec, fstab)
    root["/boot"] = None
    disk = tmp_path / "xfs.img"
    parts = build_disk(
        str(disk),
        "mbr",
        [
            Part(40, "ext4", boot_tree(spec, f"UUID={ROOT_UUID}", prefix=""), bootable=True, uuid=BOOT_UUID),
            Part(320, "xfs", root, uuid=ROOT_UUID),
        ],
    )
    first = hydrate(disk)
    assert first.report["os"]["mounts"] == {"/boot": "disk0p1"}
    assert first.step("rebuild_initrd")["status"] == "changed"
    layout = Layout(disk, parts[1].start_mb, 320, parts[0].start_mb, 40)
    assert blkid_uuid(disk, parts[1].start_mb, 320, tmp_path) == ROOT_UUID
    names = " ".join(Guest(layout, tmp_path).initrd_files("/boot/initramfs-3.10.0-1160.el7.x86_64.img"))
    assert all(f"{m}.ko" in names for m in HV)
    # XFS has no debugfs: read it back through a read-only kernel mount (not the toolkit's code).
    mnt = tmp_path / "check"
    mnt.mkdir()
    loop = subprocess.run(
        [
            "losetup",
            "--show",
            "-f",
            "-r",
            "-o",
            str(parts[1].start_mb << 20),
            "--sizelimit",
            str(320 << 20),
            str(disk),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        subprocess.run(["mount", "-t", "xfs", "-o", "ro,norecovery", loop, str(mnt)], check=True)
        try:
            fstab_after = (mnt / "etc/fstab").read_text()
            eth0 = (mnt / "etc/sysconfig/network-scripts/ifcfg-eth0").read_text()
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
    assert f"UUID={BOOT_UUID} /boot" in fstab_after
    assert "BOOTPROTO=dhcp" in eth0
    assert hydrate(disk).report["changes"] == []
