"""Child processes of the local stack: start in their own process group, wait until ready, stop cleanly."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from devhost.waiting import wait_until


class ProcessFailedToStart(RuntimeError):
    """A child process exited or did not become ready in time; the message points at its log."""


def open_private_log(path: Path, mode: str = "ab") -> IO[Any]:
    """A log file only its owner reads (0600), even one an older run created with the umask's mode:
    logs hold request paths, ids and errors, which are nobody else's business on a shared machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, mode)


# The kernel gives outgoing connections local ports from this range (any client on the machine: the
# tests' own HTTP clients, the SDKs, another stack). A server port picked inside it can be taken by one of
# them between the pick and the server's bind, or between a stack's stop and its restart on the same ports
# (`up --keep-data`, a supervisor's restart): so servers get ports below it.
_EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_SERVER_PORT = 10000
_pick = random.SystemRandom()  # not the seeded global generator tests and Hypothesis reset


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_PORTS.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A local TCP port nobody listens on, outside the ephemeral range when there is room below it."""
    low = _ephemeral_low()
    if low - _LOWEST_SERVER_PORT >= 1000:
        for _ in range(100):
            port = _pick.randrange(_LOWEST_SERVER_PORT, low)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@dataclass
class ManagedProcess:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    # Given what the process logged since it was asked to stop: whether its shutdown work is done, for a
    # process that lingers after it (stop() then ends it at once instead of waiting out the grace).
    shut_down: Callable[[str], bool] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        log = open_private_log(self.log_path, "ab")
        # A new session makes the child a process-group leader, so stop() reaches its grandchildren too
        # and a Ctrl-C in the terminal is handled once, by the supervisor.
        self.popen = subprocess.Popen(
            list(self.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(self, ready: Callable[[], bool], timeout: float = 60.0) -> None:
        """Until `ready()` holds; an exception from it means "not yet" (a server still starting refuses
        connections). A process that exits meanwhile fails at once rather than at the timeout."""

        def exited_or_ready() -> str | None:
            if not self.running():
                return "exited"
            return "ready" if ready() else None

        try:
            outcome = wait_until(
                exited_or_ready,
                timeout=timeout,
                interval=0.1,
                what=f"{self.name} to be ready",
                retry_on=(Exception,),
            )
        except TimeoutError as timed_out:
            self.stop()
            raise ProcessFailedToStart(
                f"{self.name} was not ready after {timeout:.0f}s; see its log: {self.log_path}\n{self.log_tail()}"
            ) from timed_out
        if outcome == "exited":
            raise ProcessFailedToStart(
                f"{self.name} exited with code {self.popen.returncode if self.popen else '?'}; "
                f"see its log: {self.log_path}\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        logged_before = self._log_size()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while True:
            try:
                self.popen.wait(timeout=0.1)
                return
            except subprocess.TimeoutExpired:
                pass
            if self.shut_down is not None and self.shut_down(self._log_since(logged_before)):
                break
            if time.monotonic() >= deadline:
                break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=grace)

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode if self.popen is not None else None

    def kill_group(self) -> None:
        """SIGKILL whatever is left in the process group, its leader dead or alive (a crashed leader's
        children would otherwise outlive it)."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL the whole group at once: what a crash looks like to the rest of the stack."""
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
