"""Run the local Functions host as a real child process for tests (so it can be killed like a crash)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

from devhost import waiting
from devhost.processes import ManagedProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunningHost:
    process: ManagedProcess
    base_url: str
    data_dir: Path

    @property
    def keys(self) -> dict[str, object]:
        return json.loads((self.data_dir / "keys.json").read_text())  # type: ignore[no-any-return]

    @property
    def function_key(self) -> str:
        return str(self.keys["function_default"])

    @property
    def master_key(self) -> str:
        return str(self.keys["master"])

    @property
    def durable_key(self) -> str:
        """The `durabletask_extension` system key the Durable webhook routes require."""
        system: dict[str, str] = self.keys["system"]  # type: ignore[assignment]
        return system["durabletask_extension"]


def start_host(
    app_dir: Path,
    data_dir: Path,
    env: dict[str, str] | None = None,
    *,
    port: int | None = None,
    extra_args: list[str] | None = None,
) -> RunningHost:
    port = port or free_port()
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO_ROOT)}
    process = ManagedProcess(
        name="functions-host",
        argv=[
            sys.executable,
            "-m",
            "devhost.functions_host",
            "--app-dir",
            str(app_dir),
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            *(extra_args or []),
        ],
        log_path=data_dir.parent / f"{data_dir.name}-host.log",
        env=full_env,
        cwd=REPO_ROOT,
    ).start()
    base_url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        # keys.json is written before the server listens; any HTTP answer means uvicorn is up.
        return (data_dir / "keys.json").exists() and httpx.get(
            base_url + "/admin/host/status", timeout=1
        ).status_code > 0

    process.wait_ready(ready, timeout=60)
    return RunningHost(process=process, base_url=base_url, data_dir=data_dir)


@contextmanager
def running_host(
    app_dir: Path, data_dir: Path, env: dict[str, str] | None = None, extra_args: list[str] | None = None
) -> Iterator[RunningHost]:
    host = start_host(app_dir, data_dir, env, extra_args=extra_args)
    try:
        yield host
    finally:
        host.process.stop()


# The host answers in milliseconds; a short interval keeps these tests fast.
wait_until = partial(waiting.wait_until, timeout=30.0, interval=0.05)
