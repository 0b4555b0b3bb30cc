"""Benchmark the local Durable extension in-process; prints one JSON object.

    .venv/bin/python bench/durable_episode.py [--instances 1000] [--fan-out 100]

* episode: the cost of one orchestrator episode as the engine runs it (load history and
  messages, the SDK replay on the worker thread, plan, one SQLite transaction), median and p95,
  measured on trivial instances run one at a time so nothing queues in front of the episode;
* throughput: 1,000 trivial instances (an orchestrator calling one activity, so two episodes
  and one activity each) started at once, until the engine is idle; the episode latency there
  includes waiting for the single replay thread;
* fan_out_s: one orchestration fanning out to N activities with task_all (N+1 episodes whose
  replayed history grows with N).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from devhost.durable.engine import DurableEngine  # noqa: E402
from devhost.functions_host.index import FunctionIndex, load_function_app  # noqa: E402

APP_DIR = REPO_ROOT / "tests" / "apps" / "durable_app"


class TimedEngine(DurableEngine):
    """Records the wall time of every episode that did work."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.episode_seconds: list[float] = []

    async def _episode(self, instance_id: str) -> bool:
        started = time.perf_counter()
        progressed = await super()._episode(instance_id)
        if progressed:
            self.episode_seconds.append(time.perf_counter() - started)
        return progressed


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "ms_median": round(statistics.median(ordered) * 1000, 3),
        "ms_p95": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 3),
    }


async def episode_cost(index: FunctionIndex, data_dir: Path, samples: int) -> dict[str, float]:
    engine = TimedEngine(index, data_dir=data_dir, task_hub="episode", base_url="http://127.0.0.1:9")
    await engine.start()
    try:
        for i in range(samples):
            await engine.start_new("trivial", f"one-{i}", i)
            await engine.wait_for_idle(60)
        return {"episodes": len(engine.episode_seconds), **_percentiles(engine.episode_seconds)}
    finally:
        await engine.stop()


async def throughput(index: FunctionIndex, data_dir: Path, instances: int) -> dict[str, float]:
    engine = TimedEngine(index, data_dir=data_dir, task_hub="bench", base_url="http://127.0.0.1:9")
    await engine.start()
    try:
        started = time.perf_counter()
        ids = [await engine.start_new("trivial", f"bench-{i}", i) for i in range(instances)]
        await engine.wait_for_idle(600)
        elapsed = time.perf_counter() - started
        statuses = [await engine.get_status(i) for i in ids]
        completed = sum(1 for s in statuses if s and s["runtimeStatus"] == "Completed")
        if completed != instances:
            raise RuntimeError(f"only {completed}/{instances} instances completed")
        latency = _percentiles(engine.episode_seconds)
        return {
            "instances": instances,
            "elapsed_s": round(elapsed, 3),
            "orchestrations_per_s": round(instances / elapsed, 1),
            "episodes": len(engine.episode_seconds),
            "episode_latency_ms_median": latency["ms_median"],
            "episode_latency_ms_p95": latency["ms_p95"],
        }
    finally:
        await engine.stop()


async def fan_out(index: FunctionIndex, data_dir: Path, width: int) -> dict[str, float]:
    engine = TimedEngine(index, data_dir=data_dir, task_hub="fanout", base_url="http://127.0.0.1:9")
    await engine.start()
    try:
        started = time.perf_counter()
        instance_id = await engine.start_new("fan_out", None, width)
        await engine.wait_for_idle(600)
        elapsed = time.perf_counter() - started
        status = await engine.get_status(instance_id)
        if not status or status["output"] != sum(i * i for i in range(width)):
            raise RuntimeError(f"fan-out gave {status}")
        return {
            "width": width,
            "fan_out_s": round(elapsed, 3),
            "episodes": len(engine.episode_seconds),
            "episode_ms_max": round(max(engine.episode_seconds) * 1000, 3),
        }
    finally:
        await engine.stop()


def run() -> dict[str, Any]:
    """`python -m bench` entry: the local Durable extension's own costs, flattened into metrics."""
    index = load_function_app(APP_DIR)
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        episode = asyncio.run(episode_cost(index, Path(tmp) / "episode", 200))
        throughput_result = asyncio.run(throughput(index, Path(tmp) / "throughput", 1000))
    return {
        "durable_episode": episode,
        "durable_throughput": throughput_result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--fan-out", type=int, default=100)
    parser.add_argument("--episode-samples", type=int, default=200)
    args = parser.parse_args()
    index = load_function_app(APP_DIR)
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        result = {
            "episode": asyncio.run(episode_cost(index, Path(tmp) / "episode", args.episode_samples)),
            "throughput": asyncio.run(throughput(index, Path(tmp) / "throughput", args.instances)),
            "fan_out": asyncio.run(fan_out(index, Path(tmp) / "fan_out", args.fan_out)),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
