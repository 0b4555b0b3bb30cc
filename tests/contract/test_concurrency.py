"""Bounded activity concurrency, and instances that progress independently of each other."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from devhost.functions_host.index import FunctionIndex
from tests.contract.conftest import run, running_engine, settle

pytestmark = pytest.mark.contract


def test_activities_run_concurrently_up_to_the_bound(
    durable_index: FunctionIndex, tmp_path: Path, app_module: dict[str, Any]
) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path, max_concurrent_activities=3) as engine:
            instance_id = await engine.start_new("probe_fan_out", None, 12)
            status = await settle(engine, instance_id)
            assert status["output"] == 12
            assert app_module["probe_state"]["peak"] == 3

    run(scenario())


def test_a_blocked_instance_does_not_hold_back_others(
    durable_index: FunctionIndex, tmp_path: Path, app_module: dict[str, Any]
) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            blocked = await engine.start_new("gated", None, None)
            while not app_module["gate_entered"].is_set():
                await asyncio.sleep(0.01)
            others = [await engine.start_new("sequence", None, [f"n{i}"]) for i in range(5)]
            for instance_id in others:
                for _ in range(200):
                    status = await engine.get_status(instance_id)
                    if status and status["runtimeStatus"] == "Completed":
                        break
                    await asyncio.sleep(0.02)
                assert status and status["runtimeStatus"] == "Completed"
            still = await engine.get_status(blocked)
            assert still is not None and still["runtimeStatus"] == "Running"
            app_module["gate_release"].set()
            assert (await settle(engine, blocked))["runtimeStatus"] == "Completed"

    run(scenario())
