"""The operators' workbook has data: replicating a machine on the local stack emits every metric and span
the workbook's KQL reads about replication, with every dimension it filters, groups or shows by."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from appliance.replicator import MachineReplicator
from devhost.stack import LocalStack
from shared.domain.cycle import CycleKind
from shared.platform import telemetry as tm
from tests.e2e.conftest import Appliance, Operator, wait_for
from tests.support.telemetry import (
    FROM_MIGRATION,
    FROM_MOBILITY,
    Queried,
    failed,
    queried,
    wait_for_emitted,
)

pytestmark = [pytest.mark.e2e]
MIB = 1024 * 1024


def test_a_replicated_machine_fills_every_replication_tile_of_the_workbook(
    local_stack: LocalStack, new_appliance: Callable[[], Appliance], operator: Operator
) -> None:
    # Only a failed job carries an error code, and replicating a machine fails none: the failed-job tiles'
    # error code is checked against the emitter in tests/infra (test_workbook_telemetry, test_alerts).
    expected = {
        Queried(q.table, q.name, q.dimensions - {"migrate.error_code"})
        if q.name == tm.METRIC_JOBS_FINISHED
        else q
        for q in queried()
        if q.name not in FROM_MIGRATION | FROM_MOBILITY
    }
    assert len(expected) >= 6, expected
    appliance = new_appliance()
    replicator: MachineReplicator = appliance.machine(operator, disks={"os": 2 * MIB})
    [initial] = replicator.handle_commands(appliance.api)
    assert initial.kind is CycleKind.INITIAL
    operator.wait_applied(replicator.machine_id, initial.cycle_id)
    replicator.write("os", 4096, b"\x5a" * 8192)
    delta = replicator.run_cycle()
    operator.wait_applied(replicator.machine_id, delta.cycle_id)
    # A cycle the appliance could not finish: counted by error code, listed with its ids.
    appliance.events.cycle_failed(
        machine_id=replicator.machine_id,
        cycle_id="cycle-that-failed",
        error_code="0x80004005",
        message="An internal error occurred. [Generate snapshot hung]",
    )
    wait_for(
        lambda: any(e.get("cycleId") == "cycle-that-failed" for e in operator.events(replicator.machine_id)),
        what="the failure event",
    )

    # The appliance's heartbeat, then a health check: the health and heartbeat-age tiles (and alerts).
    appliance.events.heartbeat()
    wait_for(
        lambda: operator.call("GET", f"/appliances/{appliance.api.appliance_id}").json().get("lastHeartbeat"),
        what="the heartbeat recorded",
    )
    keys = json.loads((local_stack.data_dir / "host" / "keys.json").read_text())
    ran = httpx.post(
        f"{local_stack.functions_url}/admin/functions/health_monitor",
        headers={"x-functions-key": keys["master"]},
        json={"input": ""},
        timeout=60,
    )
    assert ran.status_code == 202, ran.text

    emitted = wait_for_emitted(local_stack.telemetry_file, expected, machine_id=replicator.machine_id)
    finished = emitted.metric_points(tm.METRIC_JOBS_FINISHED, **{"migrate.machine_id": replicator.machine_id})
    assert {(p["migrate.job.kind"], p["migrate.job.status"]) for p in finished} == {
        ("EnableReplication", "Succeeded")
    }
    assert emitted.metric_points(tm.METRIC_MACHINE_HEALTH, **{"migrate.machine_id": replicator.machine_id})
    assert emitted.metric_points(
        tm.METRIC_APPLIANCE_HEARTBEAT_AGE, **{"migrate.appliance_id": appliance.api.appliance_id}
    )

    mine = {"migrate.machine_id": replicator.machine_id}
    applied = list(emitted.spans_named(tm.SPAN_APPLY_CYCLE, **mine))
    assert {s["attributes"]["migrate.cycle_id"] for s in applied} == {initial.cycle_id, delta.cycle_id}
    assert {s["attributes"]["migrate.cycle.kind"] for s in applied} == {"initial", "delta"}
    assert all(s["attributes"].get("migrate.job_id") for s in applied), "the machine's job, for the list"
    kinds = {p["migrate.cycle.kind"] for p in emitted.metric_points(tm.METRIC_BYTES_APPLIED, **mine)}
    assert kinds == {"initial", "delta"}
    (failure,) = [s for s in emitted.spans_named(tm.SPAN_CYCLE_FAILURE, **mine) if failed(s)]
    assert failure["attributes"]["migrate.cycle_id"] == "cycle-that-failed"
    codes = {p["migrate.error_code"] for p in emitted.metric_points(tm.METRIC_CYCLE_FAILURES, **mine)}
    assert codes == {failure["attributes"]["migrate.error_code"]}
