"""An engine stopped mid-orchestration and a new one on the same store: nothing done is redone or lost."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from devhost.durable import ManualClock
from devhost.durable.history import EventType
from devhost.functions_host.index import FunctionIndex
from tests.contract.conftest import history_of, ids_of, run, running_engine, settle

pytestmark = pytest.mark.contract


def test_restart_resumes_with_earlier_results_and_no_rerun(
    durable_index: FunctionIndex, tmp_path: Path, app_module: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "executions.log"
    monkeypatch.setenv("DURABLE_APP_LOG", str(log))
    entered, release = app_module["gate_entered"], app_module["gate_release"]

    async def first_life() -> str:
        async with running_engine(durable_index, tmp_path / "store") as engine:
            instance_id = await engine.start_new("gated", "restart-1", None)
            # Wait until the gate activity runs (so "before gate" is committed and the gate is in flight).
            for _ in range(500):
                if entered.is_set():
                    break
                await asyncio.sleep(0.01)
            assert entered.is_set()
            status = await engine.get_status(instance_id)
            assert status is not None and status["runtimeStatus"] == "Running"
            return instance_id  # stop() abandons the blocked gate; its result is never persisted

    async def second_life(instance_id: str) -> None:
        async with running_engine(durable_index, tmp_path / "store") as engine:
            status = await engine.get_status(instance_id)
            assert status is not None and status["runtimeStatus"] == "Running"
            release.set()  # the re-run gate (and the abandoned one) may now pass
            status = await settle(engine, instance_id)
            assert status["runtimeStatus"] == "Completed"
            assert status["output"] == ["Hello before gate", "passed g1", "Hello after gate"]
            history = history_of(engine, instance_id)
            assert ids_of(history, EventType.TASK_SCHEDULED) == [0, 1, 2]
            assert ids_of(history, EventType.TASK_COMPLETED, "TaskScheduledId") == [0, 1, 2]

    instance_id = run(first_life())
    run(second_life(instance_id))
    lines = log.read_text().splitlines()
    assert lines.count("hello:before gate") == 1  # persisted before the stop, never re-executed
    assert lines.count("hello:after gate") == 1
    # At-least-once: the gate was in flight at the stop, so it ran once per engine life.
    assert lines.count("gate:g1") == 2


def test_restart_keeps_timers_events_and_entities(durable_index: FunctionIndex, tmp_path: Path) -> None:
    clock = ManualClock()

    async def first_life() -> tuple[str, str]:
        async with running_engine(durable_index, tmp_path, clock=clock) as engine:
            sleeper = await engine.start_new("sleeper", "restart-timer", 120)
            waiter = await engine.start_new("two_events", "restart-events", None)
            await engine.wait_for_idle(10)
            await engine.raise_event(waiter, "Step", "before restart")
            engine.signal_entity_json("counter", "restart", "add", "5")
            await engine.wait_for_idle(10)
            return sleeper, waiter

    async def second_life(sleeper: str, waiter: str) -> None:
        async with running_engine(durable_index, tmp_path, clock=clock) as engine:
            assert engine.read_entity_state_json("counter", "restart") == "5"
            await engine.raise_event(waiter, "Step", "after restart")
            clock.advance(120)
            assert (await settle(engine, sleeper))["output"] == 120.0
            assert (await settle(engine, waiter))["output"] == ["before restart", "after restart"]

    sleeper, waiter = run(first_life())
    run(second_life(sleeper, waiter))
