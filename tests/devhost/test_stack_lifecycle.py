"""`python -m devhost up --background` / `down` as a user runs them: health answers, nothing is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from devhost.emulators import REPO_ROOT
from devhost.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _devhost(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devhost", *command.split()],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_up_health_down_leaves_no_process() -> None:
    if (REPO_ROOT / ".devhost" / "stack.json").exists():
        pytest.skip("a developer's local stack is running in this checkout; `make down` first")
    env = {**os.environ}
    for name in ("FUNCTIONS", "BLOB", "QUEUE", "TABLE", "COSMOS", "ARM", "OIDC"):
        env[f"DEVHOST_{name}_PORT"] = str(free_port())
    up = _devhost("up --background", env)
    assert up.returncode == 0, up.stderr
    state = json.loads((REPO_ROOT / ".devhost" / "stack.json").read_text())
    pids = [state["supervisorPid"], *state["processes"].values()]
    try:
        health = httpx.get(f"{state['functionsUrl']}/api/health", timeout=5)
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        again = _devhost("up --background", env)
        assert "already up" in again.stdout
    finally:
        down = _devhost("down", env)
    assert down.returncode == 0, down.stderr
    assert not [pid for pid in pids if _alive(int(pid))]
    assert not (REPO_ROOT / ".devhost" / "stack.json").exists()


def test_busy_port_is_a_clear_error() -> None:
    env = {**os.environ, "DEVHOST_FUNCTIONS_PORT": "not-a-port"}
    result = _devhost("up", env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: DEVHOST_FUNCTIONS_PORT='not-a-port' is not a TCP port number" in result.stderr
