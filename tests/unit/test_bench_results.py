"""bench/__main__.py's merge: re-running some benchmarks replaces only their figures, keeps every other
module's with the record of the run that measured them, and works out the targets over the whole."""

from __future__ import annotations

from typing import Any

from bench.__main__ import merge_results


def _run(commit: str, *keys: str) -> dict[str, Any]:
    return {"generated_at": "t", "commit": commit, "azurite": "3.37.0", "load_average_at_end": [0.5],
            "seconds": 1.0, "metrics": list(keys)}  # fmt: skip


def test_a_partial_run_replaces_its_modules_figures_and_keeps_the_others_with_their_run_record() -> None:
    first = merge_results(
        None,
        ran=["fleet", "apply_throughput"],
        metrics={"fleet_machines": 1000, "fleet_errors": 0, "apply_throughput_ratio": 0.91, "old_key": 1},
        runs={
            "fleet": _run("aaa", "fleet_machines", "fleet_errors"),
            "apply_throughput": _run("aaa", "apply_throughput_ratio", "old_key"),
        },
        errors={},
        skipped={},
    )
    again = merge_results(
        first,
        ran=["apply_throughput"],
        metrics={"apply_throughput_ratio": 0.96},
        runs={"apply_throughput": _run("bbb", "apply_throughput_ratio")},
        errors={},
        skipped={},
    )
    assert again["metrics"] == {"fleet_machines": 1000, "fleet_errors": 0, "apply_throughput_ratio": 0.96}
    assert again["runs"]["fleet"]["commit"] == "aaa"
    assert again["runs"]["apply_throughput"]["commit"] == "bbb"
    assert again["targets"]["apply_throughput_ratio"] == {"target": ">= 0.95", "value": 0.96, "met": True}
    assert again["targets"]["fleet_machines"]["met"] is True
    assert "fleet_machines" not in again["pending"] and "cosmos_ops_per_cycle" in again["pending"]


def test_a_module_that_fails_now_keeps_no_stale_figure_and_its_error_is_reported() -> None:
    first = merge_results(
        None,
        ran=["fleet"],
        metrics={"fleet_machines": 1000},
        runs={"fleet": _run("aaa", "fleet_machines")},
        errors={"cycle_latency": "boom"},
        skipped={},
    )
    failed = merge_results(
        first, ran=["fleet"], metrics={}, runs={}, errors={"fleet": "Traceback ..."}, skipped={}
    )
    assert failed["metrics"] == {}
    assert "fleet" not in failed["runs"]
    assert failed["errors"] == {"cycle_latency": "boom", "fleet": "Traceback ..."}
    assert failed["targets"]["fleet_machines"]["met"] is None


def test_figures_of_a_results_file_without_run_records_are_not_kept_unattributed() -> None:
    legacy = {"metrics": {"apply_throughput_ratio": 0.9}, "errors": {}, "skipped": {}}
    merged = merge_results(
        legacy,
        ran=["fleet"],
        metrics={"fleet_machines": 100},
        runs={"fleet": _run("ccc", "fleet_machines")},
        errors={},
        skipped={},
    )
    assert merged["metrics"] == {"fleet_machines": 100}
