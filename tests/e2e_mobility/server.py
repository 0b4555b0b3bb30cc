"""A real Linux source server for push installation: a debootstrapped Debian with OpenSSH's sshd,
started in a chroot on a loopback port (the chroot shares the host's network, so the agent inside
reaches the local stack on 127.0.0.1 too).

Accounts: root and a non-root `ops`, both with passwords. `small_mount` mounts a 16 MB loop ext4
filesystem inside it, for the "less than 100 MB free" case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from devhost.processes import free_port

MIRROR = os.environ.get("HYDRATION_TEST_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
ROOT_PASSWORD = "root-Pa55word"
OPS_PASSWORD = "ops-Pa55word"


def _run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def debootstrap(rootfs: Path) -> Path:
    _run(
        "debootstrap",
        "--variant=minbase",
        "--include=openssh-server,openssh-sftp-server,python3,ca-certificates,passwd,procps",
        SUITE,
        str(rootfs),
        MIRROR,
    )
    return rootfs


@dataclass
class SshServer:
    rootfs: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    mounted: list[Path] = field(default_factory=list)

    def chroot(self, *argv: str, stdin: str | None = None) -> str:
        return _run(
            "chroot",
            str(self.rootfs),
            "/usr/bin/env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            *argv,
            stdin=stdin,
        )

    def start(self) -> None:
        for kind, target in (("proc", "proc"), ("sysfs", "sys")):
            _run("mount", "-t", kind, kind, str(self.rootfs / target))
            self.mounted.append(self.rootfs / target)
        _run("mount", "--bind", "/dev", str(self.rootfs / "dev"))
        self.mounted.append(self.rootfs / "dev")
        self.chroot("ssh-keygen", "-A")
        self.chroot("chpasswd", stdin=f"root:{ROOT_PASSWORD}\n")
        if "ops:" not in (self.rootfs / "etc/passwd").read_text():
            self.chroot("useradd", "-m", "-s", "/bin/sh", "ops")
        self.chroot("chpasswd", stdin=f"ops:{OPS_PASSWORD}\n")
        (self.rootfs / "run/sshd").mkdir(parents=True, exist_ok=True)
        config = self.rootfs / "etc/ssh/sshd_config.d/push-test.conf"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nPermitRootLogin yes\nPasswordAuthentication yes\n"
            "UsePAM no\n"
        )
        self.process = subprocess.Popen(
            ["chroot", str(self.rootfs), "/usr/sbin/sshd", "-D", "-e"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{self.port}"], capture_output=True, check=False
            )
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError("sshd did not start in the chroot")

    def stop(self) -> None:
        # The agent's runner, if a test left one: it lives in the chroot, outside sshd's session.
        subprocess.run(
            [
                "chroot",
                str(self.rootfs),
                "/bin/sh",
                "-c",
                "for f in /*/*/ASR/Vx/bin/svagent /usr/local/ASR/Vx/bin/svagent; do [ -x $f ] && $f stop; done; true",
            ],
            capture_output=True,
            check=False,
        )
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        for target in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(target)], check=False)
        self.mounted.clear()

    @contextmanager
    def small_mount(self, where: str, size_mb: int = 16) -> Iterator[Path]:
        """A loop ext4 filesystem of `size_mb` mounted at `where` inside the server."""
        image = self.rootfs.parent / f"small-{size_mb}.img"
        with image.open("wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        _run("mkfs.ext4", "-q", "-F", str(image))
        target = self.rootfs / where.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        _run("mount", "-o", "loop", str(image), str(target))
        try:
            yield target
        finally:
            subprocess.run(["umount", str(target)], check=False)
            image.unlink(missing_ok=True)
            shutil.rmtree(target, ignore_errors=True)
