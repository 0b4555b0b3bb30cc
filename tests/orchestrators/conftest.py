"""Run the product's orchestrators in-process on the local Durable engine with stub activities.

The orchestrator functions are the real ones, indexed from their blueprints exactly as the Functions host
indexes them, so every episode goes through the real SDK replay. Each activity is replaced by a stub
registered under the real activity's name: the stubs decide what the world looks like (a view, a failure,
a late upload) and record what the orchestrator asked for, in order. An activity the test did not stub
fails the test rather than touching storage. Time is a ManualClock the test moves, so durable timers of
minutes or hours fire in milliseconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.durable_functions as df

from devhost.durable import DurableEngine, ManualClock
from devhost.functions_host.index import FunctionIndex, IndexedFunction

TERMINAL = {"Completed", "Failed", "Terminated"}
Stub = Callable[[Any], Any]

_indexed: dict[tuple[int, ...], FunctionIndex] = {}


def index_of(blueprints: Iterable[Any]) -> FunctionIndex:
    """The functions of these blueprints as the host indexes them (once per process: the SDK refuses to
    index one blueprint's functions twice)."""
    blueprints = tuple(blueprints)
    key = tuple(id(bp) for bp in blueprints)
    if key not in _indexed:
        app = df.DFApp()
        for bp in blueprints:
            app.register_functions(bp)
        index = FunctionIndex(app_dir=Path(__file__).parent)
        for function in app.get_functions():
            spec = json.loads(function.get_function_json())
            trigger = function.get_trigger()
            name = function.get_function_name()
            index.functions[name] = IndexedFunction(
                name=name,
                trigger_type=trigger.type,
                trigger=next(b for b in spec["bindings"] if b.get("type") == trigger.type),
                bindings=spec["bindings"],
                user_function=function.get_user_function(),
            )
        _indexed[key] = index
    return _indexed[key]


@dataclass
class Calls:
    """What the orchestrator asked of its activities, in the order the activities ran."""

    made: list[tuple[str, Any]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, name: str, payload: Any) -> None:
        with self._lock:
            self.made.append((name, payload))

    def names(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.made]

    def of(self, name: str) -> list[Any]:
        with self._lock:
            return [payload for called, payload in self.made if called == name]


def stubbed(index: FunctionIndex, stubs: dict[str, Stub], calls: Calls) -> FunctionIndex:
    """The index with every activity replaced: by its stub, or by one that records an unexpected call."""
    unknown = set(stubs) - {f.name for f in index.by_trigger("activityTrigger")}
    assert not unknown, f"stubs for activities the orchestrators do not have: {sorted(unknown)}"
    result = FunctionIndex(app_dir=index.app_dir)
    for name, function in index.functions.items():
        if function.trigger_type != "activityTrigger":
            result.functions[name] = function
            continue
        result.functions[name] = dataclasses.replace(
            function, user_function=_recording(name, stubs.get(name), calls, function.trigger["name"])
        )
    return result


def _recording(name: str, stub: Stub | None, calls: Calls, argument: str) -> Callable[..., Any]:
    def activity(**kwargs: Any) -> Any:
        payload = kwargs[argument]
        calls.record(name, payload)
        if stub is None:
            calls.unexpected.append(name)
            raise AssertionError(f"activity {name} was not expected in this test")
        return stub(payload)

    return activity


@dataclass
class Run:
    engine: DurableEngine
    clock: ManualClock
    calls: Calls

    async def start(self, orchestrator: str, instance_id: str, input: Any) -> str:
        return await self.engine.start_new(orchestrator, instance_id, input)

    async def idle(self) -> None:
        await self.engine.wait_for_idle(10)

    async def status(self, instance_id: str) -> dict[str, Any]:
        status = await self.engine.get_status(instance_id)
        assert status is not None
        return status

    async def advance(self, seconds: float) -> None:
        """Move time forward and let every timer that fell due run to the next wait."""
        self.clock.advance(seconds)
        await self.idle()

    async def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        await self.engine.raise_event(instance_id, name, data)
        await self.idle()

    async def finish(self, instance_id: str, *, step: float = 60.0, max_steps: int = 200) -> dict[str, Any]:
        """Run until the instance ends, moving the clock `step` seconds whenever nothing else can run."""
        for _ in range(max_steps):
            await self.idle()
            status = await self.status(instance_id)
            if status["runtimeStatus"] in TERMINAL:
                return status
            self.clock.advance(step)
        raise AssertionError(f"{instance_id} did not finish: {status}")


@asynccontextmanager
async def running(
    blueprints: Iterable[Any], stubs: dict[str, Stub], data_dir: Path, clock: ManualClock | None = None
) -> AsyncIterator[Run]:
    calls = Calls()
    clock = clock or ManualClock()
    engine = DurableEngine(
        stubbed(index_of(blueprints), stubs, calls),
        data_dir=data_dir,
        task_hub="orchestrators",
        base_url="http://127.0.0.1:9",
        clock=clock,
    )
    await engine.start()
    try:
        yield Run(engine, clock, calls)
    finally:
        await engine.stop()
    assert not calls.unexpected, f"activities called without a stub: {calls.unexpected}"


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
