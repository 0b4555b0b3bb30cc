"""Builds a registry hive for tests: a minimal valid regf written here, then filled with hivex.

Run with Debian's /usr/bin/python3 (python3-hivex lives there):
    /usr/bin/python3 build_hive.py OUT.hive SPEC.json
SPEC: {"Key\\\\Sub": {"Value": ["dword", 1] | ["sz", "text"] | ["expand_sz", "text"] | ["multi_sz", [..]]}}
No empty hive file ships anywhere; the base block and the one hbin are composed below.
"""

from __future__ import annotations

import json
import struct
import sys

REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD, REG_MULTI_SZ = 1, 2, 3, 4, 7


def _sid(revision: int, authority: int, subs: list[int]) -> bytes:
    return (
        struct.pack("<BB", revision, len(subs))
        + authority.to_bytes(6, "big")
        + b"".join(struct.pack("<I", s) for s in subs)
    )


def _security_descriptor() -> bytes:
    """Self-relative SD: owner/group Administrators, DACL granting Everyone full control."""
    admins = _sid(1, 5, [32, 544])
    everyone = _sid(1, 1, [0])
    ace = struct.pack("<BBHI", 0, 0, 8 + len(everyone), 0x10000000) + everyone
    acl = struct.pack("<BBHHH", 2, 0, 8 + len(ace), 1, 0) + ace
    header_len = 20
    owner_off = header_len
    group_off = owner_off + len(admins)
    dacl_off = group_off + len(admins)
    header = struct.pack("<BBHIIII", 1, 0, 0x8004, owner_off, group_off, 0, dacl_off)
    return header + admins + admins + acl


def _cell(payload: bytes) -> bytes:
    size = (4 + len(payload) + 7) // 8 * 8
    return struct.pack("<i", -size) + payload + b"\0" * (size - 4 - len(payload))


def minimal_hive(name: str = "SYSTEM") -> bytes:
    """A regf file with one hbin holding the root key (nk) and its security cell (sk)."""
    root_off = 0x20
    nk_name = b"ROOT"
    nk_len = (4 + 0x4C + len(nk_name) + 7) // 8 * 8
    sk_off = root_off + nk_len
    nk = (
        struct.pack(
            "<2sHQ" + "I" * 15 + "HH",
            b"nk",
            0x2C,
            0,
            0,
            0xFFFFFFFF,  # signature, flags (root|no-delete|ascii), time, access, parent
            0,
            0,
            0xFFFFFFFF,
            0xFFFFFFFF,  # subkeys, volatile subkeys, their lists
            0,
            0xFFFFFFFF,  # values, value list
            sk_off,
            0xFFFFFFFF,  # security cell, class name
            0,
            0,
            0,
            0,
            0,  # max subkey name, max class, max value name, max value data, workvar
            len(nk_name),
            0,
        )
        + nk_name
    )
    sd = _security_descriptor()
    sk = struct.pack("<2sHIIII", b"sk", 0, sk_off, sk_off, 1, len(sd)) + sd
    cells = _cell(nk) + _cell(sk)
    assert len(_cell(nk)) == nk_len
    hbin_size = 0x1000
    free = hbin_size - 0x20 - len(cells)
    hbin = struct.pack("<4sIIQQI", b"hbin", 0, hbin_size, 0, 0, 0) + cells + struct.pack("<i", free)
    hbin += b"\0" * (hbin_size - len(hbin))
    base = bytearray(0x1000)
    struct.pack_into("<4sIIQIIIIIII", base, 0, b"regf", 1, 1, 0, 1, 5, 0, 1, root_off, hbin_size, 1)
    fname = ("\\SystemRoot\\System32\\Config\\" + name).encode("utf-16-le")[:64]
    base[0x30 : 0x30 + len(fname)] = fname
    checksum = 0
    for i in range(0, 0x1FC, 4):
        checksum ^= struct.unpack_from("<I", base, i)[0]
    struct.pack_into("<I", base, 0x1FC, checksum)
    return bytes(base) + hbin


def _value(kind: str, data: object) -> tuple[int, bytes]:
    if kind == "dword":
        assert isinstance(data, int)
        return REG_DWORD, struct.pack("<I", data)
    if kind in ("sz", "expand_sz"):
        assert isinstance(data, str)
        return (REG_SZ if kind == "sz" else REG_EXPAND_SZ), (data + "\0").encode("utf-16-le")
    if kind == "multi_sz":
        assert isinstance(data, list)
        return REG_MULTI_SZ, ("".join(s + "\0" for s in data) + "\0").encode("utf-16-le")
    if kind == "binary":
        assert isinstance(data, str)
        return REG_BINARY, bytes.fromhex(data)
    raise ValueError(kind)


def build(out: str, spec: dict[str, dict[str, list[object]]], name: str = "SYSTEM") -> None:
    import hivex  # only on the system python3

    with open(out, "wb") as f:
        f.write(minimal_hive(name))
    h = hivex.Hivex(out, write=True)
    for path, values in spec.items():
        node = h.root()
        for part in [p for p in path.split("\\") if p]:
            child = h.node_get_child(node, part)
            node = child if child else h.node_add_child(node, part)
        for key, (kind, data) in values.items():
            t, raw = _value(str(kind), data)
            h.node_set_value(node, {"key": key, "t": t, "value": raw})
    h.commit(None)


if __name__ == "__main__":
    with open(sys.argv[2], encoding="utf-8") as fh:
        build(sys.argv[1], json.load(fh), sys.argv[3] if len(sys.argv) > 3 else "SYSTEM")
