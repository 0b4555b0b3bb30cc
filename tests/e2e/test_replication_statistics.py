"""The machine view's replication statistics on the local stack: during an initial copy a disk's bytes
applied advance (read while the copy runs), and after it the last cycle, throughput and an empty backlog."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Appliance, Operator
from tests.e2e.test_replication import initial_copy

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024


def test_bytes_applied_advance_during_an_initial_copy(
    new_appliance: Callable[[], Appliance], operator: Operator
) -> None:
    appliance = new_appliance()
    # Random data in the first half: 96 MiB to write, applied in 4 MiB calls over a second or more.
    replicator = appliance.machine(operator, disks={"os": 192 * MIB})
    machine_id = replicator.machine_id
    seen: list[tuple[str, int, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            view = operator.machine(machine_id)
            for disk in view["replicationStatistics"]["disks"]:
                seen.append((view["state"], disk["bytesApplied"], disk["bytesToCopy"]))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        report = initial_copy(appliance, replicator)
        machine = operator.wait_applied(machine_id, report.cycle_id, timeout=120)
    finally:
        stop.set()
        watcher.join(timeout=10)

    to_copy = report.bytes_uploaded
    during = sorted({applied for state, applied, total in seen if state == "InitialReplication" and total})
    assert all(total == to_copy for _, _, total in seen), seen
    # Read while the copy ran: at least two different figures short of the whole, never going back.
    partial = [a for a in during if 0 < a < to_copy]
    assert len(partial) >= 2, f"bytes applied did not advance during the copy: {during}"
    applied_in_order = [applied for state, applied, _ in seen if state == "InitialReplication"]
    assert applied_in_order == sorted(applied_in_order)

    stats = machine["replicationStatistics"]
    [disk] = stats["disks"]
    assert (disk["diskId"], disk["bytesApplied"], disk["bytesToCopy"], disk["percent"]) == (
        "os",
        to_copy,
        to_copy,
        100.0,
    )
    assert disk["cycleId"] == report.cycle_id
    last = stats["lastCycle"]
    assert (last["cycleId"], last["kind"], last["bytesApplied"]) == (report.cycle_id, "initial", to_copy)
    assert last["durationSeconds"] > 0
    assert stats["throughputCycles"] == 1 and stats["throughputBytesPerSecond"] > 0
    assert (stats["backlogCycles"], stats["backlogBytes"]) == (0, 0)
    assert stats["initialCopyEtaSeconds"] is None and machine["progressPercent"] == 100.0
