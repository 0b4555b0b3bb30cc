"""`python -m bench [name ...]`: run the benchmarks, merge their metrics, write bench/results.json, print it.

Every module in this package that defines `run() -> dict` is a benchmark (helpers start with "_"),
so bench/durable_episode.py and later ones (cycle latency, Cosmos ops per cycle) join the run by
existing. A benchmark that fails is reported under "errors" and the others still run.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# The performance targets the control plane is held to (comparison, bound); metrics not measured yet are listed
# so results.json shows them as pending rather than silently missing.
TARGETS: dict[str, tuple[str, float]] = {
    "apply_throughput_ratio": (">=", 0.95),
    "bytes_through_worker_per_gib": ("<=", 0.0),  # Put Page From URL: no data through the worker
    "apply_peak_rss_mib": ("<", 256.0),
    "apply_peak_rss_mib_by_extents": ("<", 256.0),
    "cycle_latency_p50_s": ("<", 2.0),
    "cosmos_ops_per_cycle": ("<=", 8.0),
    "fleet_machines": (">=", 1000.0),  # the largest fleet (bench/fleet.py) that ran without an error
    "fleet_errors": ("<=", 0.0),
}


def discover() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))


def _meets(value: Any, comparison: str, bound: float) -> bool | None:
    if isinstance(value, dict) and value:  # a figure per size (e.g. per extent count): every one must meet it
        verdicts = [_meets(v, comparison, bound) for v in value.values()]
        return None if None in verdicts else all(verdicts)
    if not isinstance(value, int | float):
        return None
    checks: dict[str, Callable[[float, float], bool]] = {
        ">=": lambda v, b: v >= b,
        "<": lambda v, b: v < b,
        "<=": lambda v, b: v <= b,
    }
    return checks[comparison](float(value), bound)


def main(argv: list[str]) -> int:
    names = argv or discover()
    metrics: dict[str, Any] = {}
    timings: dict[str, float] = {}
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except Exception:
            errors[name] = traceback.format_exc(limit=5)
            continue
        runner = getattr(module, "run", None)
        if not callable(runner):
            skipped[name] = "defines no run() -> dict"
            continue
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            produced = runner()
        except Exception:
            errors[name] = traceback.format_exc(limit=8)
            print(f"bench: {name} failed", file=sys.stderr, flush=True)
            continue
        finally:
            timings[name] = round(time.perf_counter() - started, 1)
        metrics.update(produced)
    targets = {
        metric: {
            "target": f"{comparison} {bound:g}",
            "value": metrics.get(metric),
            "met": _meets(metrics.get(metric), comparison, bound),
        }
        for metric, (comparison, bound) in TARGETS.items()
    }
    results = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": _cpus(),
            # local-stack figures depend on the load of everything else on the machine
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "commit": _commit(),
        "emulators": {"azurite": _azurite_version()},
        "metrics": metrics,
        "targets": targets,
        "pending": sorted(m for m in TARGETS if m not in metrics),
        "seconds": timings,
        "skipped": skipped,
        "errors": errors,
    }
    text = json.dumps(results, indent=2, sort_keys=False)
    (HERE / "results.json").write_text(text + "\n")
    print(text)
    return 1 if errors else 0


def _commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, check=False, timeout=10
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def _azurite_version() -> str | None:
    package = HERE.parent / "node_modules" / "azurite" / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _cpus() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
