"""Disk layouts used by the Linux tests, each returning where every partition landed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.hydration.guests import GuestSpec, boot_tree, root_tree
from tests.hydration.images import Part, build_disk

ROOT_UUID = "0b6f7e5c-1111-4c3a-9d5e-6f7a8b9c0d1e"
BOOT_UUID = "2c7a8b9d-2222-4e1f-8a2b-3c4d5e6f7a8b"
SWAP_UUID = "3d8b9cae-3333-4f2a-9b3c-4d5e6f7a8b9c"
DATA_UUID = "4e9cadbf-4444-4a3b-8c4d-5e6f7a8b9cad"
ESP_UUID = "ABCD-1234"

NET_LINES = (
    "nas01:/export/home  /home/shared  nfs   defaults,_netdev  0 0\n"
    "//fs01/share        /mnt/share    cifs  username=svc,password=Secr3t!,_netdev 0 0\n"
    "/dev/mapper/vg_data-lv_data /data ext4 defaults 0 2\n"
    "LABEL=scratch       /scratch      ext4  defaults,nofail 0 2\n"
)


@dataclass
class Layout:
    disk: Path
    root_mb: int
    root_size: int
    boot_mb: int | None = None
    boot_size: int = 0
    extra: dict[str, tuple[int, int]] | None = None  # name -> (start_mb, size_mb)


def mbr_separate_boot(tmp: Path, spec: GuestSpec) -> Layout:
    """BIOS + MBR: /boot on sda1 (by name), / on sda2 (by UUID), swap on sda3 (by name), a
    logical sda5 /var by name, network and LVM lines."""
    fstab = (
        "# /etc/fstab created by anaconda\n"
        f"UUID={ROOT_UUID}  /      ext4  defaults  1 1\n"
        "/dev/sda1          /boot  ext4  defaults  1 2\n"
        "/dev/sda3          swap   swap  defaults  0 0\n"
        "/dev/sda5          /var/lib/extra ext4 defaults 0 2\n"
        "/dev/sdb1          /backup ext4 defaults 0 2\n" + NET_LINES
    )
    root = root_tree(spec, fstab)
    root["/boot"] = None
    root["/var/lib/extra"] = None
    parts = [
        Part(40, "ext4", boot_tree(spec, f"UUID={ROOT_UUID}", prefix=""), bootable=True, uuid=BOOT_UUID),
        Part(48, "ext4", root, uuid=ROOT_UUID),
        Part(8, "swap", kind="swap", uuid=SWAP_UUID),
        Part(18, "raw", kind="extended"),
        Part(16, "ext4", {"/marker": "extra"}, uuid=DATA_UUID),
    ]
    disk = tmp / "mbr.img"
    build_disk(str(disk), "mbr", parts)
    return Layout(
        disk,
        parts[1].start_mb,
        48,
        parts[0].start_mb,
        40,
        {"swap": (parts[2].start_mb, 8), "extra": (parts[4].start_mb, 16)},
    )


def gpt_uefi(tmp: Path, spec: GuestSpec) -> Layout:
    """UEFI + GPT: ESP (vfat, UUID), /boot (UUID), / on sda3 by name."""
    fstab = (
        "/dev/sda3          /          ext4  defaults  1 1\n"
        f"UUID={BOOT_UUID}   /boot      ext4  defaults  1 2\n"
        f"UUID={ESP_UUID}    /boot/efi  vfat  umask=0077 0 2\n" + NET_LINES
    )
    root = root_tree(spec, fstab)
    root["/boot"] = None
    boot = boot_tree(spec, "/dev/sda3", prefix="")
    boot["/efi"] = None
    vendor = "redhat" if spec.distro in ("rhel", "centos", "ol", "rocky", "almalinux") else spec.distro
    efi = {
        f"/EFI/{vendor}/grub.cfg": "".join(
            f"menuentry 'Linux {k}' {{\n\tlinuxefi /vmlinuz-{k} root=/dev/sda3 ro quiet\n}}\n"
            for k in spec.kernels
        )
    }
    parts = [
        Part(34, "vfat", efi, kind="esp", uuid=ESP_UUID),
        Part(40, "ext4", boot, uuid=BOOT_UUID),
        Part(48, "ext4", root, uuid=ROOT_UUID),
    ]
    disk = tmp / "gpt.img"
    build_disk(str(disk), "gpt", parts)
    return Layout(disk, parts[2].start_mb, 48, parts[1].start_mb, 40, {"esp": (parts[0].start_mb, 34)})


def single_root(tmp: Path, spec: GuestSpec) -> Layout:
    """One partition, /boot inside the root, named /dev/sda1 in fstab."""
    fstab = "/dev/sda1 / ext4 errors=remount-ro 0 1\n" + NET_LINES
    root = {**root_tree(spec, fstab), **boot_tree(spec, "/dev/sda1")}
    parts = [Part(64, "ext4", root, uuid=ROOT_UUID, bootable=True)]
    disk = tmp / "single.img"
    build_disk(str(disk), "mbr", parts)
    return Layout(disk, parts[0].start_mb, 64)
