"""bench/fleet.py's readers: the Cosmos metric read incrementally from the telemetry file (a line being
written is not read half), and the document bytes written from the emulator's journal (a replace, which
the emulator journals as a delete and a set, is one write)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.fleet import JournalTail, TelemetryTail
from shared.platform.telemetry import METRIC_COSMOS_OPERATIONS


def _export(points: dict[tuple[str, str], float]) -> str:
    data_points = [
        {"attributes": {"db.operation": op, "db.cosmosdb.container": container}, "value": value}
        for (op, container), value in points.items()
    ]
    metric = {"name": METRIC_COSMOS_OPERATIONS, "data": {"data_points": data_points}}
    return json.dumps({"resource_metrics": [{"scope_metrics": [{"metrics": [metric]}]}]})


def test_the_telemetry_tail_keeps_the_latest_total_and_skips_a_half_written_line(tmp_path: Path) -> None:
    log = tmp_path / "telemetry.jsonl"
    log.write_text('{"span": 1}\n' + _export({("read", "machines"): 4}) + "\n")
    tail = TelemetryTail(log)
    assert tail.total() == {"read machines": 4.0}
    later = _export({("read", "machines"): 9, ("replace", "machines"): 2})
    with log.open("a") as handle:
        handle.write(later[:20])  # the exporter is still writing this line
    assert tail.total() == {"read machines": 4.0}
    with log.open("a") as handle:
        handle.write(later[20:] + "\n")
    assert tail.total() == {"read machines": 9.0, "replace machines": 2.0}


def test_the_journal_tail_counts_sets_of_documents_only_since_the_last_read(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    doc = {"id": "m-1", "state": "Replicating"}
    size = len(json.dumps(doc, separators=(",", ":")))
    lines = [
        {"op": "set", "kind": "colls", "path": ["migration"], "data": {"id": "machines"}},
        {"op": "set", "kind": "docs", "path": ["migration", "machines"], "data": doc},
    ]
    journal.write_text("".join(json.dumps(line) + "\n" for line in lines))
    tail = JournalTail(journal)
    assert tail.since_last() == {"machines": {"writes": 1, "bytes": size}}
    replace = [
        {"op": "del", "kind": "docs", "path": ["migration", "machines"], "rid": "x"},
        {"op": "set", "kind": "docs", "path": ["migration", "machines"], "data": doc},
    ]
    with journal.open("a") as handle:
        handle.write("".join(json.dumps(line) + "\n" for line in replace) + '{"op": "set", "ki')
    assert tail.since_last() == {"machines": {"writes": 1, "bytes": size}}
    assert tail.since_last() == {}
