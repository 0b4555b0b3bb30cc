"""Guest file access resolved inside the guest root, with check-then-change writes and backups."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from dataclasses import dataclass

from hydration.report import Change

BACKUP_DIR = "/var/lib/azure-migrate/hydration-backup"


class GuestPathError(Exception):
    pass


@dataclass
class GuestFS:
    root: str
    dry_run: bool
    backup_dir: str = BACKUP_DIR

    def path(self, guest_path: str, *, follow_last: bool = True) -> str:
        """Host path of a guest path, following guest symlinks as the guest would see them.

        An absolute guest symlink (e.g. /etc/resolv.conf -> /run/...) must not escape into the
        helper VM's own filesystem, so links are resolved by hand against the guest root.
        """
        parts = [p for p in guest_path.split("/") if p and p != "."]
        resolved: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = os.path.join(self.root, *resolved, part)
            is_last = not parts
            if os.path.islink(candidate) and (follow_last or not is_last):
                hops += 1
                if hops > 40:
                    raise GuestPathError(f"too many symlinks resolving {guest_path}")
                target = os.readlink(candidate)
                if target.startswith("/"):
                    resolved = []
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            resolved.append(part)
        return os.path.join(self.root, *resolved)

    def exists(self, guest_path: str) -> bool:
        return os.path.lexists(self.path(guest_path, follow_last=False))

    def isfile(self, guest_path: str) -> bool:
        return os.path.isfile(self.path(guest_path))

    def isdir(self, guest_path: str) -> bool:
        return os.path.isdir(self.path(guest_path))

    def listdir(self, guest_path: str) -> list[str]:
        p = self.path(guest_path)
        return sorted(os.listdir(p)) if os.path.isdir(p) else []

    def read_text(self, guest_path: str) -> str | None:
        p = self.path(guest_path)
        if not os.path.isfile(p):
            return None
        with open(p, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()

    def read_bytes(self, guest_path: str) -> bytes | None:
        p = self.path(guest_path)
        if not os.path.isfile(p):
            return None
        with open(p, "rb") as f:
            return f.read()

    def backup_path_for(self, guest_path: str) -> str:
        base = os.path.join(self.backup_dir, guest_path.lstrip("/"))
        candidate = base
        n = 1
        while os.path.lexists(self.path(candidate, follow_last=False)):
            candidate = f"{base}.{n}"
            n += 1
        return candidate

    def backup(self, guest_path: str, backup: str | None = None) -> str:
        """Copies a file (or symlink) to the backup area; returns the backup's guest path."""
        src = self.path(guest_path, follow_last=False)
        dest_guest = backup or self.backup_path_for(guest_path)
        if self.dry_run:
            return dest_guest
        dest = self.path(dest_guest, follow_last=False)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dest)
        else:
            shutil.copy2(src, dest)
        return dest_guest

    def write_text(
        self,
        step: str,
        guest_path: str,
        content: str,
        *,
        mode: int = 0o644,
        backup: bool = True,
        note: str = "",
    ) -> Change:
        return self.write_bytes(
            step, guest_path, content.encode("utf-8", "surrogateescape"), mode=mode, backup=backup, note=note
        )

    def write_bytes(
        self,
        step: str,
        guest_path: str,
        content: bytes,
        *,
        mode: int = 0o644,
        backup: bool = True,
        note: str = "",
    ) -> Change:
        current = self.read_bytes(guest_path)
        before = _show(current)
        if current == content:
            return Change(step, guest_path, False, before, before, note=note)
        saved = self.backup(guest_path) if (backup and current is not None) else None
        if not self.dry_run:
            target = self.path(guest_path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            keep_mode = stat.S_IMODE(os.stat(target).st_mode) if os.path.exists(target) else mode
            tmp = f"{target}.hydration-tmp"
            with open(tmp, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            # FAT (the ESP) has no owners or modes; its FUSE driver answers ENOSYS.
            with contextlib.suppress(OSError):
                os.chmod(tmp, keep_mode)
                if os.path.exists(target):
                    st = os.stat(target)
                    os.chown(tmp, st.st_uid, st.st_gid)
            os.replace(tmp, target)
        return Change(step, guest_path, True, before, _show(content), saved, note)

    def move_away(self, step: str, guest_path: str, note: str = "") -> Change:
        """Moves a file into the backup area (the preparation's "move or remove")."""
        src = self.path(guest_path, follow_last=False)
        if not os.path.lexists(src):
            return Change(step, guest_path, False, None, None, note=note)
        before = os.readlink(src) if os.path.islink(src) else _show(self.read_bytes(guest_path))
        if os.path.islink(src):
            before = f"symlink -> {before}"
        dest_guest = self.backup_path_for(guest_path)
        if not self.dry_run:
            dest = self.path(dest_guest, follow_last=False)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.move(src, dest)
        return Change(step, guest_path, True, before, None, dest_guest, note)

    def symlink(self, step: str, guest_path: str, target: str, note: str = "") -> Change:
        link = self.path(guest_path, follow_last=False)
        if os.path.islink(link) and os.readlink(link) == target:
            return Change(step, guest_path, False, f"symlink -> {target}", f"symlink -> {target}", note=note)
        before = None
        saved = None
        if os.path.lexists(link):
            before = (
                f"symlink -> {os.readlink(link)}"
                if os.path.islink(link)
                else _show(self.read_bytes(guest_path))
            )
            saved = self.backup(guest_path)
        if not self.dry_run:
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(target, link)
        return Change(step, guest_path, True, before, f"symlink -> {target}", saved, note)


def _show(content: bytes | None, limit: int = 4000) -> str | None:
    if content is None:
        return None
    text = content.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters)"
