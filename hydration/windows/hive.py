"""Offline registry hives, opened only inside a `with` block and committed when it succeeds."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hydration.proc import HydrationError

REG_SZ = 1
REG_EXPAND_SZ = 2
REG_BINARY = 3
REG_DWORD = 4
REG_MULTI_SZ = 7

TYPE_NAMES = {
    REG_SZ: "REG_SZ",
    REG_EXPAND_SZ: "REG_EXPAND_SZ",
    REG_BINARY: "REG_BINARY",
    REG_DWORD: "REG_DWORD",
    REG_MULTI_SZ: "REG_MULTI_SZ",
}


class HiveError(HydrationError):
    pass


def hive_is_dirty(path: str) -> bool:
    """Primary and secondary sequence numbers differ when the hive has unflushed log entries."""
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] != b"regf":
        raise HiveError(f"{path} is not a registry hive: the Windows volume may be corrupt")
    primary, secondary = struct.unpack_from("<II", head, 4)
    return bool(primary != secondary)


class Hive:
    """A thin typed layer over hivex; key paths use backslashes and are case-insensitive."""

    def __init__(self, handle: Any, path: str, write: bool) -> None:
        self._h = handle
        self.path = path
        self.write = write
        self.dirty = False

    def node(self, key: str) -> int | None:
        node: int = self._h.root()
        for part in [p for p in key.split("\\") if p]:
            child = self._h.node_get_child(node, part)
            if not child:
                return None
            node = child
        return node

    def ensure(self, key: str) -> tuple[int, bool]:
        """The node for key, creating missing keys; returns (node, created)."""
        node: int = self._h.root()
        created = False
        for part in [p for p in key.split("\\") if p]:
            child = self._h.node_get_child(node, part)
            if not child:
                if not self.write:
                    raise HiveError("internal: a read-only hive cannot create keys")
                child = self._h.node_add_child(node, part)
                created = True
                self.dirty = True
            node = child
        return node, created

    def children(self, key: str) -> list[str]:
        node = self.node(key)
        if node is None:
            return []
        return [str(self._h.node_name(c)) for c in self._h.node_children(node)]

    def value(self, key: str, name: str) -> tuple[int, bytes] | None:
        node = self.node(key)
        if node is None:
            return None
        for val in self._h.node_values(node):
            if str(self._h.value_key(val)).lower() == name.lower():
                vtype, data = self._h.value_value(val)
                return int(vtype), bytes(data)
        return None

    def dword(self, key: str, name: str) -> int | None:
        val = self.value(key, name)
        if val is None or val[0] != REG_DWORD or len(val[1]) < 4:
            return None
        return int(struct.unpack_from("<I", val[1])[0])

    def string(self, key: str, name: str) -> str | None:
        val = self.value(key, name)
        if val is None or val[0] not in (REG_SZ, REG_EXPAND_SZ):
            return None
        return val[1].decode("utf-16-le", "replace").split("\0")[0]

    def set_value(self, key: str, name: str, vtype: int, data: bytes) -> None:
        if not self.write:
            raise HiveError("internal: the hive is open read-only")
        node, _ = self.ensure(key)
        self._h.node_set_value(node, {"key": name, "t": vtype, "value": data})
        self.dirty = True


def encode_dword(value: int) -> bytes:
    return struct.pack("<I", value)


def encode_string(value: str) -> bytes:
    return (value + "\0").encode("utf-16-le")


def show(vtype: int, data: bytes) -> str:
    if vtype == REG_DWORD and len(data) >= 4:
        return f"REG_DWORD {struct.unpack_from('<I', data)[0]}"
    if vtype in (REG_SZ, REG_EXPAND_SZ):
        return f"{TYPE_NAMES[vtype]} {data.decode('utf-16-le', 'replace').split(chr(0))[0]}"
    return f"{TYPE_NAMES.get(vtype, vtype)} {data.hex()}"


@contextmanager
def open_hive(path: str, write: bool) -> Iterator[Hive]:
    """Commits only if the block finishes without an exception and something changed."""
    try:
        import hivex
    except ImportError as exc:
        raise HiveError(
            "python3-hivex is not installed on the helper VM: apt-get install python3-hivex"
        ) from exc
    try:
        handle = hivex.Hivex(path, write=write)
    except RuntimeError as exc:
        raise HiveError(
            f"cannot open the registry hive {path}: {exc}; the Windows volume may be corrupt"
        ) from exc
    hive = Hive(handle, path, write)
    yield hive
    if write and hive.dirty:
        handle.commit(None)
