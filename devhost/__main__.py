"""`python -m devhost up [--background] [--keep-data] | down | status | demo` — the local stack's one command."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from devhost.emulators import REPO_ROOT
from devhost.processes import open_private_log
from devhost.stack import LocalStack, StackError, StackPorts, read_state
from devhost.waiting import wait_until

DATA_DIR = REPO_ROOT / ".devhost"
SUPERVISOR_LOG = DATA_DIR / "supervisor.log"


def _print_summary(state: dict[str, object]) -> None:
    ports = state["ports"]
    print(
        f"local stack is up: Functions host {state['functionsUrl']} (health: {state['functionsUrl']}/api/health)"
    )
    print(
        f"  Azurite blob/queue/table ports {ports['blob']}/{ports['queue']}/{ports['table']}, "  # type: ignore[index]
        f"cosmosdb-server https://127.0.0.1:{ports['cosmos']}/"
    )  # type: ignore[index]
    print(f"  function keys: {state['keysFile']}; logs: {state['logs']}")
    print(
        f"  operator tokens: {state['operatorAuthority']} (client-credentials; clients and secrets in "
        f"{state['operatorClientsFile']}, docs/local-stack.md#operator-tokens)"
    )


def up(background: bool, keep_data: bool) -> int:
    if background:
        return _up_in_background(keep_data)
    stack = LocalStack(StackPorts.from_env(), data_dir=DATA_DIR, keep_data=keep_data)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        state = stack.start()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_summary(state)
    try:
        return stack.supervise(stopping, report=lambda line: print(line, flush=True))
    finally:
        stack.stop()
        print("local stack stopped")


def _up_in_background(keep_data: bool) -> int:
    if read_state(DATA_DIR):
        print("the local stack is already up (make down to stop it)")
        return 0
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "devhost", "up", *(["--keep-data"] if keep_data else [])]
    with open_private_log(SUPERVISOR_LOG, "w") as log:
        child = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )

    def supervising() -> dict[str, object] | bool:
        state = read_state(DATA_DIR)
        if state and state.get("supervisorPid") == child.pid:
            return state
        return child.poll() is not None  # True ends the wait too: the supervisor exited

    try:
        outcome = wait_until(supervising, timeout=180, interval=0.2, what="the local stack to start")
    except TimeoutError:
        os.killpg(child.pid, signal.SIGTERM)
        print(f"error: the local stack was not ready in 180 s; see {SUPERVISOR_LOG}", file=sys.stderr)
        return 1
    if not isinstance(outcome, dict):
        print(f"error: the local stack did not start:\n{SUPERVISOR_LOG.read_text()}", file=sys.stderr)
        return 1
    _print_summary(outcome)
    return 0


def down() -> int:
    state = read_state(DATA_DIR)
    if not state:
        print("the local stack is not running")
        return 0
    pid = int(state["supervisorPid"])  # type: ignore[call-overload]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    # A supervisor slow to exit is no error: whatever it leaves is killed below.
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not _alive(pid), timeout=30, interval=0.1, what=f"the supervisor ({pid}) to exit")
    # Whatever survived a crashed supervisor is killed by process group: each child leads its own.
    for child_pid in dict(state["processes"]).values():  # type: ignore[call-overload]
        if _alive(int(child_pid)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(child_pid), signal.SIGKILL)
    (DATA_DIR / "stack.json").unlink(missing_ok=True)
    print("local stack stopped")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is ours.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return (
            Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
        )


def status() -> int:
    import httpx

    state = read_state(DATA_DIR)
    if not state:
        print("the local stack is not running (make up)")
        return 1
    try:
        health = httpx.get(f"{state['functionsUrl']}/api/health", timeout=5)
        print(
            json.dumps(
                {"functionsHost": health.json(), **{k: state[k] for k in ("ports", "processes")}}, indent=2
            )
        )
        return 0 if health.status_code == 200 else 1
    except httpx.HTTPError as exc:
        print(f"the Functions host does not answer: {exc}", file=sys.stderr)
        return 1


def demo() -> int:
    from devhost.demo import run_demo

    stack = LocalStack(StackPorts.from_env(), data_dir=DATA_DIR)
    try:
        state = stack.start()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        _print_summary(state)
        return run_demo(stack)
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="start the local stack (foreground unless --background)")
    up_parser.add_argument("--background", action="store_true")
    up_parser.add_argument(
        "--keep-data",
        action="store_true",
        help="reuse the previous run's data: blobs, Cosmos, host state, keys and secrets",
    )
    sub.add_parser("down", help="stop a background stack and everything it started")
    sub.add_parser("status", help="show whether the stack answers")
    sub.add_parser("demo", help="start the stack, run the product's main scenario, stop")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return up(args.background, args.keep_data)
        if args.command == "down":
            return down()
        if args.command == "status":
            return status()
        return demo()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
