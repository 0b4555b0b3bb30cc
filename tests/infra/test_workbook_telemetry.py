"""The workbook's KQL, parsed, against what shared/platform/telemetry.py's emitters record: every metric
and span the workbook reads, with every dimension it filters, groups or shows by. (That product code
calls these emitters on the local stack is checked end to end: tests/e2e/test_telemetry.py and the
migration fault tests.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.platform import telemetry as tm
from shared.platform.settings import Settings
from tests.support.telemetry import FROM_MIGRATION, Queried, missing_from, queried, read_emitted
from tests.unit.test_telemetry import BASE_ENV

AT = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def test_the_workbook_reads_every_metric_and_the_cycle_spans() -> None:
    found = queried()
    assert {q.name for q in found if q.table == "customMetrics"} == set(tm.METRIC_NAMES)
    assert (
        Queried("dependencies", tm.SPAN_APPLY_CYCLE, frozenset({"migrate.machine_id", "migrate.cycle.kind"}))
        in found
    )
    (failures,) = [q for q in found if q.name is None]
    assert failures.dimensions == {
        "migrate.machine_id",
        "migrate.cycle_id",
        "migrate.job_id",
        "migrate.error_code",
    }
    assert {q.name for q in found} >= FROM_MIGRATION


def test_the_emitters_record_every_dimension_the_workbook_reads(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    telemetry = tm.configure_telemetry(
        Settings.from_environ({**BASE_ENV, "TELEMETRY_FILE": str(path)}), set_global=False
    )
    telemetry.cycle_applied(
        machine_id="m-1",
        cycle_id="c-1",
        kind="delta",
        started_at=AT,
        received_at=AT - timedelta(seconds=5),
        applied_at=AT + timedelta(seconds=3),
        bytes_applied=512,
        job_id="job-1",
    )
    telemetry.cycle_failed(machine_id="m-1", cycle_id="c-2", error_code="1011", job_id="job-1")
    telemetry.record_hydration_duration(60.0, machine_id="m-1", os_family="linux", outcome="succeeded")
    telemetry.record_arm_retry(operation="PUT Microsoft.Compute/disks", status_code=429)
    telemetry.record_job_finished(
        machine_id="m-1", job_id="job-2", kind="Failover", status="Failed", error_code="HydrationFailed"
    )
    telemetry.record_machine_health("Critical", machine_id="m-1")
    telemetry.record_appliance_heartbeat_age(1200.0, appliance_id="appl-1")
    telemetry.record_mobility_agent_heartbeat_age(1200.0, machine_id="m-1")
    telemetry.shutdown()
    assert missing_from(read_emitted(path), queried(), machine_id="m-1") == []
