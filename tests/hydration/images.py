"""Builds test disks from scratch: partition tables with sfdisk, filesystems with mkfs -d.

Nothing binary is committed: every guest is described here as a dict of paths to contents.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import shutil
import stat
import subprocess
import tempfile
import uuid as uuidlib
from dataclasses import dataclass, field

MiB = 1024 * 1024


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Exe:
    """An executable file (a fake guest tool or busybox)."""

    content: bytes | str


Tree = dict[str, "bytes | str | Symlink | Exe | None"]  # None: an empty directory


@dataclass
class Part:
    size_mb: int
    fstype: str  # ext4, ext3, xfs, vfat, swap, ntfs, raw
    tree: Tree = field(default_factory=dict)
    bootable: bool = False
    label: str = ""
    uuid: str = ""
    kind: str = "linux"  # linux, swap, esp, lvm, ntfs, extended
    start_mb: int = 0  # filled by build_disk


def run(*argv: str, input_bytes: bytes | None = None) -> str:
    proc = subprocess.run(
        argv, input=input_bytes, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stdout.decode(errors='replace')}")
    return proc.stdout.decode(errors="replace")


_MBR_TYPES = {"linux": "83", "swap": "82", "esp": "ef", "lvm": "8e", "ntfs": "7", "extended": "5"}
_GPT_TYPES = {
    "linux": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
    "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    "lvm": "E6D6D379-F507-44C2-A23C-238F2A3DF928",
    "ntfs": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
}


def write_tree(root: str, tree: Tree) -> None:
    for path, content in sorted(tree.items()):
        dest = os.path.join(root, path.lstrip("/"))
        if content is None:
            os.makedirs(dest, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if isinstance(content, Symlink):
            if os.path.lexists(dest):
                os.unlink(dest)
            os.symlink(content.target, dest)
            continue
        data = content.content if isinstance(content, Exe) else content
        with open(dest, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        if isinstance(content, Exe):
            os.chmod(dest, 0o755)


def make_fs(part: Part, workdir: str) -> str:
    """A filesystem image file for one partition."""
    img = os.path.join(workdir, f"fs-{uuidlib.uuid4().hex}.img")
    tree_dir = tempfile.mkdtemp(dir=workdir)
    write_tree(tree_dir, part.tree)
    size = f"{part.size_mb}M"
    if part.fstype in ("ext4", "ext3", "ext2"):
        args = ["mkfs." + part.fstype, "-q", "-F", "-d", tree_dir]
        if part.uuid:
            args += ["-U", part.uuid]
        if part.label:
            args += ["-L", part.label]
        run(*args, img, size)
    elif part.fstype == "vfat":
        run("truncate", "-s", size, img)
        args = ["mkfs.vfat"]
        if part.uuid:
            args += ["-i", part.uuid.replace("-", "")]
        run(*args, img)
        if os.listdir(tree_dir):
            run("mcopy", "-s", "-i", img, *[os.path.join(tree_dir, n) for n in os.listdir(tree_dir)], "::")
    elif part.fstype == "swap":
        run("truncate", "-s", size, img)
        args = ["mkswap"]
        if part.uuid:
            args += ["-U", part.uuid]
        run(*args, img)
    elif part.fstype == "ntfs":
        run("truncate", "-s", size, img)
        run("mkntfs", "-q", "-F", "-Q", img)
        if part.tree:
            mnt = tempfile.mkdtemp(dir=workdir)
            run("mount", "-t", "ntfs-3g", "-o", "loop", img, mnt)
            try:
                write_tree(mnt, part.tree)
            finally:
                run("umount", mnt)
    elif part.fstype == "xfs":
        run("truncate", "-s", size, img)
        args = ["mkfs.xfs", "-q", "-f"]
        if part.uuid:
            args += ["-m", f"uuid={part.uuid}"]
        run(*args, img)
        mnt = tempfile.mkdtemp(dir=workdir)
        run("mount", "-t", "xfs", "-o", "loop", img, mnt)
        try:
            write_tree(mnt, part.tree)
        finally:
            run("umount", mnt)
    elif part.fstype == "raw":
        run("truncate", "-s", size, img)
    else:
        raise ValueError(part.fstype)
    shutil.rmtree(tree_dir)
    return img


def build_disk(path: str, scheme: str, parts: list[Part], extra_mb: int = 2) -> list[Part]:
    """Writes a partitioned raw disk image; scheme is "mbr", "gpt" or "none" (one bare filesystem)."""
    workdir = tempfile.mkdtemp(dir=os.path.dirname(path))
    try:
        if scheme == "none":
            img = make_fs(parts[0], workdir)
            shutil.move(img, path)
            return parts
        total = 1 + sum(p.size_mb + (1 if p.kind == "extended" else 0) for p in parts) + extra_mb
        run("truncate", "-s", f"{total}M", path)
        lines = ["label: dos" if scheme == "mbr" else "label: gpt"]
        start = 1
        for p in parts:
            if p.kind == "extended":
                lines.append(f"start={start * 2048}, size={p.size_mb * 2048}, type=5")
                start += 1  # the EBR of the first logical partition
                continue
            p.start_mb = start
            ptype = _MBR_TYPES[p.kind] if scheme == "mbr" else _GPT_TYPES[p.kind]
            attrs = ""
            if p.bootable:
                attrs = ", bootable" if scheme == "mbr" else ', attrs="LegacyBIOSBootable"'
            lines.append(f"start={start * 2048}, size={p.size_mb * 2048}, type={ptype}{attrs}")
            start += p.size_mb + (1 if _next_is_logical(parts, p) else 0)
        run(
            "sfdisk",
            "-q",
            "--no-reread",
            "--no-tell-kernel",
            path,
            input_bytes="\n".join(lines).encode() + b"\n",
        )
        for p in parts:
            if p.kind == "extended":
                continue
            img = make_fs(p, workdir)
            run(
                "dd",
                f"if={img}",
                f"of={path}",
                "bs=1M",
                f"seek={p.start_mb}",
                "conv=notrunc,sparse",
                "status=none",
            )
            os.unlink(img)
        return parts
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _next_is_logical(parts: list[Part], p: Part) -> bool:
    # Each logical partition after the first needs one MiB for its EBR.
    idx = parts.index(p)
    seen_ext = any(q.kind == "extended" for q in parts[:idx])
    return seen_ext and idx + 1 < len(parts)


# ---- initrds --------------------------------------------------------------------------------


def newc(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    ino = 1

    def entry(name: str, mode: int, data: bytes) -> None:
        nonlocal ino
        nb = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0]
        hdr = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
        out.write(hdr + nb)
        out.write(b"\0" * ((4 - (len(hdr) + len(nb)) % 4) % 4))
        out.write(data)
        out.write(b"\0" * ((4 - len(data) % 4) % 4))
        ino += 1

    dirs: set[str] = set()
    for name in files:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    for d in sorted(dirs):
        entry(d, stat.S_IFDIR | 0o755, b"")
    for name, data in sorted(files.items()):
        entry(name, stat.S_IFREG | 0o644, data)
    entry("TRAILER!!!", 0, b"")
    return out.getvalue()


def make_initrd(kernel: str, hv: bool, compression: str = "gzip", early_microcode: bool = False) -> bytes:
    files = {
        "init": b"#!/bin/sh\n",
        f"usr/lib/modules/{kernel}/kernel/drivers/ata/ata_piix.ko.xz": b"ko",
        f"usr/lib/modules/{kernel}/kernel/drivers/scsi/vmw_pvscsi.ko.xz": b"ko",
    }
    if hv:
        for m in ("hv_vmbus", "hv_storvsc", "hv_netvsc"):
            sub = "hv" if m == "hv_vmbus" else "scsi" if m == "hv_storvsc" else "net/hyperv"
            files[f"usr/lib/modules/{kernel}/kernel/drivers/{sub}/{m}.ko.xz"] = b"ko"
    main = newc(files)
    if compression == "gzip":
        body = gzip.compress(main)
    elif compression == "xz":
        body = lzma.compress(main, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    elif compression == "zstd":
        body = subprocess.run(["zstd", "-q", "-c"], input=main, stdout=subprocess.PIPE, check=True).stdout
    else:
        body = main
    if early_microcode:
        early = newc({"kernel/x86/microcode/GenuineIntel.bin": b"\x01" * 100})
        pad = b"\0" * ((512 - len(early) % 512) % 512)
        return early + pad + body
    return body
