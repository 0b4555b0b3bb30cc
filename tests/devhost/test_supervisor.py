"""The stack's supervisor, with stand-in processes: a dead Functions host is started again and nothing
else is; any other child dying stops the supervision; a host that keeps dying is given up on."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.emulators import EmulatorPorts
from devhost.processes import ManagedProcess
from devhost.stack import LocalStack, StackPorts
from devhost.waiting import wait_until

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
EXIT_AT_ONCE = [sys.executable, "-c", "raise SystemExit(3)"]


class StandInStack(LocalStack):
    """A LocalStack whose host is a stand-in process: the supervision logic without the real host."""

    host_argv: list[str] = SLEEP
    host_starts: int = 0

    def start_functions_host(self) -> ManagedProcess:
        self.host_starts += 1
        host = ManagedProcess("functions-host", self.host_argv, self.data_dir / "logs" / "host.log").start()
        self.processes.append(host)
        return host


def _stack(tmp_path: Path) -> StandInStack:
    ports = StackPorts(functions=1, emulators=EmulatorPorts(1, 1, 1, 1), arm=1)
    stack = StandInStack(ports, data_dir=tmp_path)
    stack.processes.append(ManagedProcess("azurite", SLEEP, tmp_path / "logs" / "azurite.log").start())
    stack.start_functions_host()
    return stack


def _supervise(
    stack: LocalStack, stopping: threading.Event, reports: list[str], max_restarts: int = 5
) -> list[int]:
    """Supervise in a thread; the list gets the supervision's result when it ends."""
    result: list[int] = []

    def run() -> None:
        result.append(stack.supervise(stopping, poll=0.05, max_restarts=max_restarts, report=reports.append))

    threading.Thread(target=run, daemon=True).start()
    return result


@pytest.fixture()
def stack(tmp_path: Path) -> Iterator[StandInStack]:
    made = _stack(tmp_path)
    yield made
    made.stop()


def test_a_dead_host_is_started_again_and_only_it(stack: StandInStack) -> None:
    stopping, reports = threading.Event(), list[str]()
    azurite = next(p for p in stack.processes if p.name == "azurite")
    host = next(p for p in stack.processes if p.name == "functions-host")
    result = _supervise(stack, stopping, reports)
    host.kill()
    wait_until(lambda: stack.host_starts == 2, timeout=10, interval=0.05, what="the host started again")
    stopping.set()
    wait_until(lambda: result == [0], timeout=10, interval=0.05, what="the supervision to end")
    assert azurite.running() and [p for p in stack.processes if p.name == "azurite"] == [azurite]
    [restarted] = [p for p in stack.processes if p.name == "functions-host"]
    assert restarted is not host and restarted.running()
    assert any("exited with code -9; restarting it" in line for line in reports), reports
    assert (stack.data_dir / "stack.json").exists()  # with the new process id, for `down`


def test_another_child_dying_ends_the_supervision_without_a_restart(stack: StandInStack) -> None:
    stopping, reports = threading.Event(), list[str]()
    result = _supervise(stack, stopping, reports)
    next(p for p in stack.processes if p.name == "azurite").kill()
    wait_until(lambda: result == [1], timeout=10, interval=0.05, what="the supervision to end")
    assert stack.host_starts == 1
    assert reports == [f"error: azurite exited; stopping the stack. Logs: {stack.data_dir / 'logs'}"]


def test_a_host_that_keeps_dying_is_given_up_on(stack: StandInStack) -> None:
    stack.host_argv = EXIT_AT_ONCE
    stopping, reports = threading.Event(), list[str]()
    result = _supervise(stack, stopping, reports, max_restarts=3)
    next(p for p in stack.processes if p.name == "functions-host").kill()
    wait_until(lambda: result == [1], timeout=20, interval=0.05, what="the supervision to give up")
    assert stack.host_starts == 4  # the first start, then three restarts
    assert "exited 4 times" in reports[-1]
