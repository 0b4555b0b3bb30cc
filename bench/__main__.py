"""`python -m bench [name ...]`: run the benchmarks, merge their metrics, write bench/results.json, print it.

Every module in this package that defines `run() -> dict` is a benchmark (helpers start with "_"),
so bench/durable_episode.py and later ones (cycle latency, Cosmos ops per cycle) join the run by
existing. A benchmark that fails is reported under "errors" and the others still run.

Naming modules re-runs only those: their figures replace the ones they produced before and every other
module's figures stay in results.json, so one slow benchmark (the 1,000-machine fleet) need not be run
again to refresh another. `runs` says, per module, when its figures were measured, at which commit and
under what load, so figures of different runs are never mistaken for one run's.
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
    produced_by: dict[str, list[str]] = {}
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
        produced_by[name] = list(produced)
    machine = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": _cpus(),
        # local-stack figures depend on the load of everything else on the machine
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    generated_at = datetime.now(UTC).isoformat(timespec="seconds")
    commit, azurite = _commit(), _azurite_version()
    runs = {
        name: {
            "generated_at": generated_at,
            "commit": commit,
            "azurite": azurite,
            "load_average_at_end": machine["load_average_at_end"],
            "seconds": timings[name],
            "metrics": keys,
        }
        for name, keys in produced_by.items()
    }
    results = merge_results(
        _previous_results(),
        ran=names,
        metrics=metrics,
        runs=runs,
        errors=errors,
        skipped=skipped,
    )
    results.update(
        {
            "generated_at": generated_at,
            "machine": machine,
            "commit": commit,
            "emulators": {"azurite": azurite},
        }
    )
    text = json.dumps(_ordered(results), indent=2, sort_keys=False)
    (HERE / "results.json").write_text(text + "\n")
    print(text)
    return 1 if errors else 0


def merge_results(
    previous: dict[str, Any] | None,
    *,
    ran: list[str],
    metrics: dict[str, Any],
    runs: dict[str, dict[str, Any]],
    errors: dict[str, str],
    skipped: dict[str, str],
) -> dict[str, Any]:
    """This run's figures over `previous` (an earlier results.json): every module in `ran` loses what it
    produced before (a module that now fails keeps no stale figure), every other module keeps its figures,
    its run record and its error; targets and pending are worked out again over the merged figures."""
    kept_runs: dict[str, dict[str, Any]] = {}
    kept_metrics: dict[str, Any] = {}
    kept_errors: dict[str, str] = {}
    kept_skipped: dict[str, str] = {}
    if previous is not None:
        old_runs = previous.get("runs", {})
        stale = {key for name in ran for key in old_runs.get(name, {}).get("metrics", [])}
        kept_runs = {name: run for name, run in old_runs.items() if name not in ran}
        # figures of a results.json written before runs were recorded cannot be attributed: dropped
        attributed = {key for run in kept_runs.values() for key in run.get("metrics", [])}
        kept_metrics = {
            key: value
            for key, value in previous.get("metrics", {}).items()
            if key in attributed and key not in stale
        }
        kept_errors = {k: v for k, v in previous.get("errors", {}).items() if k not in ran}
        kept_skipped = {k: v for k, v in previous.get("skipped", {}).items() if k not in ran}
    merged = {**kept_metrics, **metrics}
    targets = {
        metric: {
            "target": f"{comparison} {bound:g}",
            "value": merged.get(metric),
            "met": _meets(merged.get(metric), comparison, bound),
        }
        for metric, (comparison, bound) in TARGETS.items()
    }
    all_runs = {**kept_runs, **runs}
    return {
        "metrics": merged,
        "targets": targets,
        "pending": sorted(m for m in TARGETS if m not in merged),
        "runs": dict(sorted(all_runs.items())),
        "seconds": {name: run["seconds"] for name, run in sorted(all_runs.items())},
        "skipped": {**kept_skipped, **skipped},
        "errors": {**kept_errors, **errors},
    }


def _previous_results() -> dict[str, Any] | None:
    try:
        loaded = json.loads((HERE / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


_ORDER = ("generated_at", "machine", "commit", "emulators", "metrics", "targets", "pending", "runs")


def _ordered(results: dict[str, Any]) -> dict[str, Any]:
    return {**{k: results[k] for k in _ORDER if k in results}, **results}


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
