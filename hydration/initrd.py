"""Lists the files in an initrd: concatenated cpio archives, each plain or compressed."""

from __future__ import annotations

import bz2
import lzma
import re
import subprocess
import zlib

from hydration.proc import HydrationError

_GZIP = b"\x1f\x8b"
_XZ = b"\xfd7zXZ\x00"
_ZSTD = b"\x28\xb5\x2f\xfd"
_BZIP2 = b"BZh"
_LZ4 = b"\x02\x21\x4c\x18"
_LZMA = b"\x5d\x00\x00"

HV_MODULES = ("hv_vmbus", "hv_storvsc", "hv_netvsc")
_MODULE_RE = re.compile(r"(?:^|/)([A-Za-z0-9_-]+)\.ko(?:\.(?:xz|zst|gz))?$")


class InitrdError(HydrationError):
    pass


def list_files(data: bytes) -> list[str]:
    names: list[str] = []
    _walk(data, names, depth=0)
    return names


def modules_in(names: list[str]) -> set[str]:
    found = set()
    for name in names:
        m = _MODULE_RE.search(name)
        if m:
            found.add(m.group(1).replace("-", "_"))
    return found


def read_initrd_modules(path: str) -> set[str]:
    with open(path, "rb") as f:
        return modules_in(list_files(f.read()))


def _walk(data: bytes, names: list[str], depth: int) -> None:
    if depth > 4:
        raise InitrdError("initrd nests compressed archives too deeply")
    pos = 0
    while pos < len(data):
        # Archives are padded (to 4 or 512 bytes) before the next one starts.
        while pos < len(data) and data[pos] == 0:
            pos += 1
        if pos >= len(data):
            return
        head = data[pos : pos + 6]
        if head.startswith(b"0707"):
            pos = _cpio(data, pos, names)
        elif head.startswith((_GZIP, _XZ, _ZSTD, _BZIP2, _LZ4, _LZMA)):
            inner, used = _decompress(data[pos:])
            _walk(inner, names, depth + 1)
            pos += used
        else:
            raise InitrdError(f"unrecognised data at offset {pos} of the initrd (magic {head.hex()})")


def _cpio(data: bytes, pos: int, names: list[str]) -> int:
    """Parses one cpio archive starting at pos; returns the offset just after its trailer."""
    while True:
        magic = data[pos : pos + 6]
        if magic in (b"070701", b"070702"):
            hdr = data[pos : pos + 110]
            if len(hdr) < 110:
                raise InitrdError("truncated cpio header in initrd")
            fields = [int(hdr[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
            filesize, namesize = fields[6], fields[11]
            name_start = pos + 110
            name = data[name_start : name_start + namesize - 1].decode("utf-8", "replace")
            data_start = _align(name_start + namesize, 4)
            pos = _align(data_start + filesize, 4)
        elif magic == b"070707":
            hdr = data[pos : pos + 76]
            namesize = int(hdr[59:65], 8)
            filesize = int(hdr[65:76], 8)
            name_start = pos + 76
            name = data[name_start : name_start + namesize - 1].decode("utf-8", "replace")
            pos = name_start + namesize + filesize
        else:
            raise InitrdError(f"corrupt cpio archive in initrd at offset {pos}")
        if name == "TRAILER!!!":
            return pos
        names.append(name[2:] if name.startswith("./") else name)


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _decompress(blob: bytes) -> tuple[bytes, int]:
    """Decompresses one stream; returns its data and how many input bytes it used."""
    if blob.startswith(_GZIP):
        d = zlib.decompressobj(wbits=31)
        out = d.decompress(blob)
        return out, len(blob) - len(d.unused_data)
    if blob.startswith(_XZ):
        x = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        out = x.decompress(blob)
        return out, len(blob) - len(x.unused_data)
    if blob.startswith(_LZMA):
        x = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
        out = x.decompress(blob)
        return out, len(blob) - len(x.unused_data)
    if blob.startswith(_BZIP2):
        b = bz2.BZ2Decompressor()
        out = b.decompress(blob)
        return out, len(blob) - len(b.unused_data)
    # zstd and lz4 have no stdlib module; the compressed part is the last one in practice.
    tool = ["zstd", "-dcq"] if blob.startswith(_ZSTD) else ["lz4", "-dcq"]
    try:
        proc = subprocess.run(tool, input=blob, capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise InitrdError(f"{tool[0]} is needed to read this initrd; install it on the helper VM") from exc
    if proc.returncode != 0 and not proc.stdout:
        raise InitrdError(f"{tool[0]} could not decompress the initrd: {proc.stderr.decode()[:300]}")
    return proc.stdout, len(blob)
