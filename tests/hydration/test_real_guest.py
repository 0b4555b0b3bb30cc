"""A real Debian guest: debootstrapped from the Debian archive, its initrd stripped of the Hyper-V
drivers, then prepared by the toolkit; the rebuilt initrd is checked with lsinitramfs."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.hydration.conftest import REPO, debugfs_cat, debugfs_dump, debugfs_exists, lsinitramfs
from tests.hydration.images import Part, build_disk

pytestmark = [pytest.mark.root, pytest.mark.slow]

MIRROR = os.environ.get("HYDRATION_TEST_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
HV = ("hv_vmbus.ko", "hv_storvsc.ko", "hv_netvsc.ko")


def _run(*argv: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _strip_hv_modules(initrd: Path, work: Path) -> None:
    """Repacks the initrd without the Hyper-V drivers, as a VMware-built initrd would be."""
    unpacked = work / "unpacked"
    _run("unmkinitramfs", str(initrd), str(unpacked))
    main = unpacked / "main" if (unpacked / "main").is_dir() else unpacked
    for path in list(main.rglob("hv_*.ko*")):
        path.unlink()
    early = b""
    if (unpacked / "early").is_dir():
        early = subprocess.run(
            "find . | sort | cpio -o -H newc -R 0:0 --quiet",
            shell=True,
            cwd=unpacked / "early",
            capture_output=True,
            check=True,
        ).stdout
    body = subprocess.run(
        "find . | sort | cpio -o -H newc -R 0:0 --quiet | zstd -q -c",
        shell=True,
        cwd=main,
        capture_output=True,
        check=True,
    ).stdout
    initrd.write_bytes(early + body)
    shutil.rmtree(unpacked)


@pytest.fixture(scope="module")
def debootstrapped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One minimal Debian 12 from the archive, shared by both initrd tools (nothing is cached)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for debootstrap, loop devices and chroot")
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed: run scripts/install-system-deps.sh")
    rootfs = tmp_path_factory.mktemp("debian") / "rootfs"
    _run(
        "debootstrap",
        "--variant=minbase",
        # python3, openssl and ca-certificates: on every Debian server, and what the bundled agent needs
        "--include=linux-image-cloud-amd64,initramfs-tools,zstd,systemd-sysv,python3,openssl,ca-certificates",
        SUITE,
        str(rootfs),
        MIRROR,
    )
    return rootfs


def _switch_to_dracut(rootfs: Path) -> None:
    """Replaces initramfs-tools with dracut in the guest, as some Debian users do."""
    mounted: list[Path] = []
    try:
        for kind, target in (("proc", "proc"), ("sysfs", "sys")):
            subprocess.run(["mount", "-t", kind, kind, str(rootfs / target)], check=True)
            mounted.append(rootfs / target)
        subprocess.run(["mount", "--bind", "/dev", str(rootfs / "dev")], check=True)
        mounted.append(rootfs / "dev")
        shutil.copyfile("/etc/resolv.conf", rootfs / "etc/resolv.conf")
        _run(
            "chroot",
            str(rootfs),
            "/usr/bin/env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "dracut",
        )
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", str(target)], check=False)
    assert not (rootfs / "usr/sbin/update-initramfs").exists()


def _bundle_agent_packages(payload: Path) -> None:
    """The agent packages the toolkit ships (`make` fetches them; fetched here if this runs alone)."""
    toolkit_payload = REPO / "hydration" / "payload"
    _run(str(REPO / "scripts" / "fetch-agent-packages.sh"))
    payload.mkdir(exist_ok=True)
    for deb in sorted(toolkit_payload.glob("*.deb")):
        shutil.copy2(deb, payload / deb.name)


@pytest.mark.parametrize("tool", ["initramfs-tools", "dracut"])
def test_real_debian_guest_gets_hyperv_drivers_in_its_initrd(
    tool: str, debootstrapped: Path, tmp_path: Path, hydrate: Any
) -> None:
    started = time.monotonic()
    rootfs = tmp_path / "rootfs"
    _run("cp", "-a", str(debootstrapped), str(rootfs))
    if tool == "dracut":
        _switch_to_dracut(rootfs)
    kernels = sorted(p.name for p in (rootfs / "lib/modules").iterdir())
    assert len(kernels) == 1
    kernel = kernels[0]
    initrd = rootfs / "boot" / f"initrd.img-{kernel}"
    assert any(line.endswith("hv_vmbus.ko") for line in lsinitramfs(initrd))
    _strip_hv_modules(initrd, tmp_path)
    assert not any("hv_" in line for line in lsinitramfs(initrd))

    # What a VMware-era guest carries: a device-named fstab, a static NIC, udev NIC rules, GRUB.
    (rootfs / "etc/fstab").write_text("/dev/sda1 / ext4 errors=remount-ro 0 1\n")
    (rootfs / "etc/network").mkdir(exist_ok=True)
    (rootfs / "etc/network/interfaces").write_text(
        "auto lo\niface lo inet loopback\n\nauto ens192\niface ens192 inet static\n  address 10.1.2.3/24\n"
    )
    (rootfs / "etc/udev/rules.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/udev/rules.d/70-persistent-net.rules").write_text('SUBSYSTEM=="net", NAME="eth0"\n')
    (rootfs / "etc/default").mkdir(exist_ok=True)
    (rootfs / "etc/default/grub").write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n')
    (rootfs / "boot/grub").mkdir(exist_ok=True)
    (rootfs / "boot/grub/grub.cfg").write_text(
        f"menuentry 'Debian' {{\n\tlinux\t/boot/vmlinuz-{kernel} root=/dev/sda1 ro quiet\n"
        f"\tinitrd\t/boot/initrd.img-{kernel}\n}}\n"
    )
    (rootfs / "etc/hostname").write_text("onprem-debian\n")
    (rootfs / "etc/resolv.conf").write_text("nameserver 10.0.0.53\n")  # the on-premises DNS server

    disk = tmp_path / "debian.img"
    parts = build_disk(str(disk), "mbr", [Part(1400, "ext4", {}, bootable=True)])
    start = parts[0].start_mb
    # mkfs.ext4 -d straight from the debootstrapped tree (device nodes and owners included).
    part_img = tmp_path / "root.ext4"
    _run("mkfs.ext4", "-q", "-F", "-d", str(rootfs), str(part_img), "1400M")
    _run("dd", f"if={part_img}", f"of={disk}", "bs=1M", f"seek={start}", "conv=notrunc,sparse", "status=none")
    part_img.unlink()
    shutil.rmtree(rootfs)
    built = time.monotonic() - started

    prep_started = time.monotonic()
    # The agent comes from the guest's repositories in one run; in the other, as on the temporary VM
    # (no repositories), from the packages bundled with the toolkit.
    if tool == "dracut":
        _bundle_agent_packages(tmp_path / "payload")
    first = hydrate(disk, repos=tool == "initramfs-tools")
    prep = time.monotonic() - prep_started
    rep = first.report
    steps = ", ".join(f"{s['name']} {s['seconds']:.1f}s" for s in rep["steps"])
    print(f"\nreal Debian guest: built in {built:.1f}s, prepared in {prep:.1f}s ({steps})")
    assert rep["status"] == "succeeded", rep["errors"]
    assert rep["os"]["distribution"] == "debian" and rep["os"]["version"].startswith("12")
    step = first.step("rebuild_initrd")
    assert step["status"] == "changed", step

    rebuilt = lsinitramfs(debugfs_dump(disk, start, f"/boot/initrd.img-{kernel}", tmp_path / "rebuilt"))
    for mod in HV:
        assert any(line.endswith(mod) for line in rebuilt), mod
    backup = lsinitramfs(debugfs_dump(disk, start, f"/boot/initrd.img-{kernel}.bak", tmp_path / "backup"))
    assert not any("hv_" in line for line in backup)
    if tool == "dracut":
        conf = debugfs_cat(disk, start, "/etc/dracut.conf.d/90-azure-hyperv-drivers.conf") or ""
        assert "hv_vmbus hv_storvsc hv_netvsc" in conf
        assert "rebuilt with dracut" in step["changes"][-1]["note"]
    else:
        modules = debugfs_cat(disk, start, "/etc/initramfs-tools/modules") or ""
        assert all(m in modules for m in ("hv_vmbus", "hv_storvsc", "hv_netvsc"))
        assert "rebuilt with update-initramfs" in step["changes"][-1]["note"]

    grub = debugfs_cat(disk, start, "/boot/grub/grub.cfg") or ""
    assert "console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300" in grub and " quiet" not in grub
    fstab = debugfs_cat(disk, start, "/etc/fstab") or ""
    assert fstab.startswith("UUID=")
    interfaces = debugfs_cat(disk, start, "/etc/network/interfaces") or ""
    assert "iface eth0 inet dhcp" in interfaces
    assert not debugfs_exists(disk, start, "/etc/udev/rules.d/70-persistent-net.rules")

    agent = first.step("install_azure_linux_agent")
    assert agent["status"] == "changed", agent
    assert not any("agent" in warning for warning in rep["warnings"]), rep["warnings"]
    assert debugfs_exists(disk, start, "/usr/sbin/waagent")
    status = debugfs_cat(disk, start, "/var/lib/dpkg/status") or ""
    assert "Package: waagent\nStatus: install ok installed" in status
    if tool == "dracut":
        assert "installed from waagent_" in agent["changes"][0]["note"]
        for dependency in ("python3-distro", "lsb-release", "python3-pkg-resources"):
            assert f"Package: {dependency}\nStatus: install ok installed" in status, dependency
        assert hydrate(disk).report["changes"] == []
        return
    assert debugfs_cat(disk, start, "/etc/resolv.conf") == "nameserver 10.0.0.53\n"  # the guest's DNS is back
    assert not debugfs_exists(disk, start, "/usr/sbin/policy-rc.d")

    second = hydrate(disk, repos=True)  # the agent is installed now: nothing to fetch
    assert second.report["changes"] == []
