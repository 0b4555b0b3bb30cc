"""Running helper-VM commands with errors that name the command and its output."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
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


class Interrupted(BaseException):
    """SIGTERM/SIGINT: unwinds through every finally block so nothing stays mounted."""


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
        # Own process group: on timeout or interruption the whole tree (e.g. a guest's dracut and
        # its children inside the chroot) is killed, or it would keep the mounts busy.
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **full_env},
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise HydrationError(
            f"{argv[0]} is not installed on the helper VM; install its Debian package and retry"
        ) from exc
    try:
        raw, _ = proc.communicate(input=input_bytes, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_tree(proc)
        raise HydrationError(
            f"{' '.join(argv)} did not finish within {timeout:.0f} s and was stopped"
        ) from exc
    except BaseException:
        _kill_tree(proc)
        raise
    out = raw.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, out)
    return out


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


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
