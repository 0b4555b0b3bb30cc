"""ManagedProcess.stop(): a process that exits on SIGTERM is waited for; one that lingers after its
shutdown work is ended as soon as its log says that work is done, not after the whole grace."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from devhost.processes import ManagedProcess

# Says it is done on SIGTERM, then stays (as Azurite does on its idle timers).
LINGERS = """
import signal, sys, time
def closing(*_):
    print("service successfully closed", flush=True)
signal.signal(signal.SIGTERM, closing)
print("ready", flush=True)
time.sleep(60)
time.sleep(60)
"""


def _start(tmp_path: Path, shut_down: Callable[[str], bool] | None = None) -> ManagedProcess:
    process = ManagedProcess(
        name="lingers",
        argv=[sys.executable, "-c", LINGERS],
        log_path=tmp_path / "lingers.log",
        shut_down=shut_down,
    ).start()
    process.wait_ready(lambda: "ready" in (tmp_path / "lingers.log").read_text(), timeout=10)
    return process


def test_a_process_that_lingers_after_its_shutdown_is_ended_once_its_log_says_so(tmp_path: Path) -> None:
    process = _start(tmp_path, shut_down=lambda logged: "successfully closed" in logged)
    began = time.monotonic()
    process.stop(grace=30)
    assert process.returncode is not None
    assert time.monotonic() - began < 10, "stop() waited for the grace instead of the log"


def test_without_a_shutdown_check_the_grace_is_waited_then_the_process_killed(tmp_path: Path) -> None:
    process = _start(tmp_path)
    began = time.monotonic()
    process.stop(grace=1)
    assert process.returncode == -9
    assert time.monotonic() - began >= 1


def test_only_what_was_logged_after_the_stop_counts(tmp_path: Path) -> None:
    # An earlier run's "closed" line in the same (appended) log must not end this one early.
    (tmp_path / "lingers.log").write_text("service successfully closed\n")
    process = _start(tmp_path, shut_down=lambda logged: logged.count("successfully closed") >= 2)
    began = time.monotonic()
    process.stop(grace=2)
    assert process.returncode == -9
    assert time.monotonic() - began >= 2
