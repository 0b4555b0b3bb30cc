"""Fixtures for the local Durable extension's contract tests: the test app, an engine, a clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from devhost.durable import DurableEngine, ManualClock
from devhost.durable.clock import Clock
from devhost.functions_host.index import FunctionIndex, load_function_app

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "durable_app"
TERMINAL = {"Completed", "Failed", "Terminated"}
T = TypeVar("T")


@pytest.fixture(scope="session")
def durable_index() -> FunctionIndex:
    return load_function_app(APP_DIR)


@pytest.fixture
def app_module(durable_index: FunctionIndex) -> dict[str, Any]:
    """The test app's module globals (counters, gates), reset for each test."""
    module_globals: dict[str, Any] = durable_index.functions["hello"].user_function.__globals__
    module_globals["reset"]()
    return module_globals


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@asynccontextmanager
async def running_engine(
    index: FunctionIndex,
    data_dir: Path,
    *,
    clock: Clock | None = None,
    base_url: str = "http://127.0.0.1:9",
    max_concurrent_activities: int = 8,
) -> AsyncIterator[DurableEngine]:
    engine = DurableEngine(
        index,
        data_dir=data_dir,
        task_hub="contract",
        base_url=base_url,
        clock=clock,
        max_concurrent_activities=max_concurrent_activities,
    )
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


async def settle(
    engine: DurableEngine,
    instance_id: str,
    clock: ManualClock | None = None,
    *,
    step: float = 1.0,
    max_steps: int = 50,
) -> dict[str, Any]:
    """Run until the instance ends, moving the manual clock `step` seconds whenever the engine is idle."""
    for _ in range(max_steps):
        await engine.wait_for_idle(20)
        status = await engine.get_status(instance_id)
        assert status is not None
        if status["runtimeStatus"] in TERMINAL:
            return status
        if clock is None:
            await asyncio.sleep(0.05)
        else:
            clock.advance(step)
    raise AssertionError(f"{instance_id} did not finish: {status}")


def history_of(engine: DurableEngine, instance_id: str) -> list[dict[str, Any]]:
    return engine.store.load_history(instance_id)


def ids_of(history: list[dict[str, Any]], event_type: int, field: str = "EventId") -> list[Any]:
    return [e[field] for e in history if e["EventType"] == event_type]


Check = Callable[[DurableEngine], Coroutine[Any, Any, None]]
