"""kill -9 the whole host mid-orchestration, restart it on the same data dir: same result, no result lost."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.contract.conftest import APP_DIR
from tests.support.host import start_host, wait_until

pytestmark = [pytest.mark.contract, pytest.mark.slow]

STEPS = 6


def _persisted_steps(store: Path) -> set[int]:
    """Steps whose results the store holds (in history or queued for the next episode)."""
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT event FROM history UNION ALL SELECT event FROM inbox").fetchall()
    completed = [json.loads(r[0]) for r in rows]
    return {json.loads(e["Result"]) // 10 for e in completed if e["EventType"] == 5}


def test_kill_9_mid_orchestration_then_restart(tmp_path: Path) -> None:
    log = tmp_path / "executions.log"
    data_dir = tmp_path / "host"
    env = {"DURABLE_APP_LOG": str(log), "DURABLE_APP_STEP_SECONDS": "0.4"}

    def executions() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    host = start_host(APP_DIR, data_dir, env)
    try:
        started = httpx.post(f"{host.base_url}/api/start/crash_steps", json=STEPS, timeout=10)
        assert started.status_code == 202, started.text
        instance_id = started.json()["id"]
        wait_until(lambda: len(executions()) >= 3, timeout=30, what="three steps executed")
    finally:
        os.kill(host.process.pid, signal.SIGKILL)
        assert host.process.popen is not None
        host.process.popen.wait(timeout=10)

    store = next((data_dir / "durable").glob("*.sqlite"))
    persisted = _persisted_steps(store)
    executed_before_kill = executions()
    assert persisted, "the kill came before any result was persisted; the test proves nothing"
    assert len(persisted) < STEPS, "the orchestration finished before the kill; the test proves nothing"

    host = start_host(APP_DIR, data_dir, env)
    try:
        status_url = f"{host.base_url}/runtime/webhooks/durabletask/instances/{instance_id}"

        key = {"code": host.durable_key}

        def finished() -> bool:
            answer = httpx.get(status_url, params=key, timeout=5).json()
            return answer["runtimeStatus"] in ("Completed", "Failed")

        wait_until(finished, timeout=60, what=f"{instance_id} finished after the restart")
        status = httpx.get(status_url, params=key, timeout=5).json()
    finally:
        host.process.stop()

    assert status["runtimeStatus"] == "Completed", status
    assert status["output"] == [step * 10 for step in range(STEPS)]
    counts = {step: executions().count(f"slow_step:{step}") for step in range(STEPS)}
    for step in persisted:
        assert counts[step] == 1, f"step {step} had a persisted result and still ran again: {counts}"
    # Sequential steps: at most the one in flight at the kill runs twice (at-least-once, as on Azure).
    assert sum(counts.values()) <= STEPS + 1, counts
    assert all(count >= 1 for count in counts.values()), counts
    assert len(executed_before_kill) >= 3


def test_the_host_s_durable_webhooks_take_its_system_key_or_master_key_only(tmp_path: Path) -> None:
    """Through the real host process: the keys are the host's (keys.json), a function key is not enough."""
    host = start_host(APP_DIR, tmp_path / "host", {"DURABLE_APP_LOG": str(tmp_path / "log")})
    try:
        started = httpx.post(f"{host.base_url}/api/start/sequence", json=["Lviv"], timeout=10)
        assert started.status_code == 202, started.text
        status_url = started.json()["statusQueryGetUri"]
        assert f"code={host.durable_key}" in status_url
        instances = f"{host.base_url}/runtime/webhooks/durabletask/instances"
        for refused in (None, host.function_key, "wrong"):
            params = {"code": refused} if refused else {}
            assert httpx.get(instances, params=params, timeout=5).status_code == 401, refused
        for accepted in (host.durable_key, host.master_key):
            answer = httpx.get(instances, headers={"x-functions-key": accepted}, timeout=5)
            assert answer.status_code == 200 and started.json()["id"] in {
                i["instanceId"] for i in answer.json()
            }
        assert httpx.get(status_url, timeout=5).status_code in (200, 202)
    finally:
        host.process.stop()
