"""Fixtures for the hydration toolkit tests: root check, the CLI as a subprocess, leak checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
NEEDED_TOOLS = ("losetup", "sfdisk", "mkfs.ext4", "debugfs", "blkid", "busybox", "mkfs.vfat", "mcopy")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for loop devices, mount and chroot"
    missing = [t for t in NEEDED_TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing tools {missing}: run scripts/install-system-deps.sh"
    if not os.path.exists(SYSTEM_PYTHON):
        return "needs Debian's /usr/bin/python3 (the helper VM's interpreter)"
    return None


@dataclass
class Result:
    rc: int
    stdout: str
    report: dict[str, Any]

    def step(self, name: str) -> dict[str, Any]:
        return next(s for s in self.report["steps"] if s["name"] == name)

    @property
    def changed_targets(self) -> list[str]:
        return [c["target"] for c in self.report["changes"]]


def _loops_for(paths: list[str]) -> list[str]:
    out = subprocess.run(["losetup", "-a"], stdout=subprocess.PIPE, text=True, check=False).stdout
    return [line for line in out.splitlines() if any(p in line for p in paths)]


def _mounts_under(prefix: str) -> list[str]:
    with open("/proc/self/mounts", encoding="utf-8") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(prefix)]


@pytest.fixture
def hydrate(tmp_path: Path) -> Iterator[Any]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    runs = {"n": 0}

    def run(
        *disks: Path | str, args: tuple[str, ...] = (), expect_rc: int | None = 0, repos: bool = False
    ) -> Result:
        runs["n"] += 1
        report = tmp_path / f"report{runs['n']}.json"
        argv = [
            SYSTEM_PYTHON,
            "-m",
            "hydration",
            "prepare",
            "--report",
            str(report),
            "--work-root",
            str(tmp_path / "azure_sms_root"),
            "--payload-dir",
            str(tmp_path / "payload"),
        ]
        if not repos:
            argv.append("--no-repos")
        for d in disks:
            argv += ["--disk", str(d)]
        argv += list(args)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.run(
            argv,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=900,
            check=False,
        )
        data = json.loads(report.read_text()) if report.exists() else {}
        result = Result(proc.returncode, proc.stdout, data)
        if expect_rc is not None:
            assert proc.returncode == expect_rc, proc.stdout + "\n" + json.dumps(data, indent=1)[:6000]
        return result

    yield run
    leaked_mounts = _mounts_under(str(tmp_path))
    leaked_loops = _loops_for([str(tmp_path)])
    for m in reversed(leaked_mounts):
        subprocess.run(["umount", "-l", m], check=False)
    for line in leaked_loops:
        subprocess.run(["losetup", "-d", line.split(":")[0]], check=False)
    assert not leaked_mounts, f"mounts leaked: {leaked_mounts}"
    assert not leaked_loops, f"loop devices leaked: {leaked_loops}"


# ---- independent readers: nothing here uses the code under test -------------------------------


def part_spec(image: Path, start_mb: int) -> str:
    return f"{image}?offset={start_mb * 1024 * 1024}"


def debugfs_cat(image: Path, start_mb: int, path: str) -> str | None:
    proc = subprocess.run(
        ["debugfs", "-R", f"cat {path}", part_spec(image, start_mb)], capture_output=True, check=False
    )
    err = proc.stderr.decode(errors="replace")
    if "File not found" in err or proc.returncode != 0:
        return None
    return proc.stdout.decode(errors="replace")


def debugfs_stat(image: Path, start_mb: int, path: str) -> str:
    return subprocess.run(
        ["debugfs", "-R", f"stat {path}", part_spec(image, start_mb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    ).stdout.decode()


def debugfs_exists(image: Path, start_mb: int, path: str) -> bool:
    return "File not found" not in debugfs_stat(image, start_mb, path)


def debugfs_dump(image: Path, start_mb: int, path: str, dest: Path) -> Path:
    subprocess.run(
        ["debugfs", "-R", f"dump {path} {dest}", part_spec(image, start_mb)], capture_output=True, check=True
    )
    return dest


def lsinitramfs(initrd: Path) -> list[str]:
    out = subprocess.run(["lsinitramfs", str(initrd)], capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def blkid_uuid(image: Path, start_mb: int, size_mb: int, tmp: Path) -> str:
    part = tmp / f"part-{start_mb}.img"
    subprocess.run(
        ["dd", f"if={image}", f"of={part}", "bs=1M", f"skip={start_mb}", f"count={size_mb}", "status=none"],
        check=True,
    )
    out = subprocess.run(
        ["blkid", "-p", "-s", "UUID", "-o", "value", str(part)],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    ).stdout.strip()
    part.unlink()
    return out


def image_digest(image: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(image, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
