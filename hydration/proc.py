"""Running helper-VM commands with errors that name the command and its output."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence


class HydrationError(Exception):
    """A failure the operator can act on; the message says what to do next."""


class CommandError(HydrationError):
    def __init__(self, argv: Sequence[str], code: int, output: str) -> None:
        tail = output.strip()[-1500:]
        super().__init__(f"command failed ({code}): {' '.join(argv)}\n{tail}".rstrip())
        self.argv = list(argv)
        self.code = code
        self.output = output


# The helper VM and the guests use sbin directories that a CSE shell may leave off PATH.
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input_bytes: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 1800,
) -> str:
    full_env = {"PATH": _PATH, "LC_ALL": "C", "LANG": "C"}
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run(
            list(argv),
            input=input_bytes,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **full_env},
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise HydrationError(
            f"{argv[0]} is not installed on the helper VM; install its Debian package and retry"
        ) from exc
    out = proc.stdout.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, out)
    return out


def have(tool: str) -> bool:
    return shutil.which(tool, path=_PATH) is not None


def chroot_run(root: str, argv: Sequence[str], *, check: bool = True, timeout: float | None = 1800) -> str:
    """Runs a guest tool with the guest's own libraries; the guest may lack /usr/bin/env."""
    env = {
        "HOME": "/root",
        "DEBIAN_FRONTEND": "noninteractive",
        "SYSTEMD_OFFLINE": "1",
        "TMPDIR": "/tmp",
    }
    return run(["chroot", root, *argv], check=check, env=env, timeout=timeout)
