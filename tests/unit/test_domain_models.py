"""Domain records: camelCase on the wire, strict on input, derived values (health, latest points)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from shared.domain.command import ApplianceCommand
from shared.domain.cycle import Consistency, RecoveryPoint
from shared.domain.errors import ValidationFailed
from shared.domain.health import ActiveError, ClearedBy, HealthState
from shared.domain.inventory import DiscoveryReport, MachineInventory
from shared.domain.machine import Health, Machine
from shared.health.rules import HealthRules

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
GIB = 1024**3


def machine_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "vm-1",
        "displayName": "web01",
        "osType": "linux",
        "osName": "Ubuntu",
        "osVersion": "20.04",
        "firmware": "BIOS",
        "disks": [{"id": "sda", "sizeBytes": 20 * GIB, "isOsDisk": True}],
        "nics": [{"id": "nic0", "macAddress": "00:50:56:aa:bb:cc", "ipAddresses": ["10.0.0.5"]}],
    }
    body.update(changes)
    return body


def report_problems(*machines: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        DiscoveryReport.model_validate({"machines": list(machines)})
    return ValidationFailed.from_pydantic(caught.value).details


def test_discovery_report_parses_camel_case() -> None:
    report = DiscoveryReport.model_validate({"machines": [machine_body()]})
    machine = report.machines[0]
    assert machine.os_disk.id == "sda"
    assert machine.model_dump(mode="json", by_alias=True)["disks"][0] == {
        "id": "sda",
        "sizeBytes": 20 * GIB,
        "isOsDisk": True,
        "name": None,
    }


def test_exactly_one_os_disk() -> None:
    two = machine_body(
        disks=[
            {"id": "a", "sizeBytes": GIB, "isOsDisk": True},
            {"id": "b", "sizeBytes": GIB, "isOsDisk": True},
        ]
    )
    assert report_problems(two) == [
        {"field": "machines.0.disks", "problem": "exactly one disk must have isOsDisk=true; found 2"}
    ]


def test_disk_sizes_are_whole_sectors() -> None:
    [problem] = report_problems(machine_body(disks=[{"id": "a", "sizeBytes": GIB + 1, "isOsDisk": True}]))
    assert problem["field"] == "machines.0.disks.0.sizeBytes"


def test_repeated_machine_ids_are_refused() -> None:
    [problem] = report_problems(machine_body(), machine_body())
    assert problem["field"] == "machines"


@pytest.mark.parametrize("bad_id", ["a/b", "../x", "", "x" * 129, "a?b"])
def test_ids_are_safe_for_cosmos_and_urls(bad_id: str) -> None:
    [problem] = report_problems(machine_body(id=bad_id))
    assert problem["field"] == "machines.0.id"


def test_unknown_fields_in_nested_records_are_refused() -> None:
    [problem] = report_problems(machine_body(disks=[{"id": "a", "sizeBytes": GIB, "isOSDisk": True}]))
    assert problem["field"] == "machines.0.disks.0.isOSDisk"


def test_health_is_the_worst_of_the_failure_count_and_the_errors() -> None:
    inventory = MachineInventory.model_validate({k: v for k, v in machine_body().items() if k != "id"})
    machine = Machine(
        id="vm-1", appliance_id="appl-1", inventory=inventory, discovered_at=NOW, updated_at=NOW
    )
    rules = HealthRules()
    assert machine.replication.health_state.health(rules) is Health.HEALTHY
    machine.replication.health_state = HealthState(
        errors=(
            ActiveError(
                code="1011",
                entry_code="1011",
                message="DiskUploadTimedOut",
                severity=Health.CRITICAL,
                cleared_by=ClearedBy.NEXT_CYCLE,
                retryable=True,
                first_seen=NOW,
                last_seen=NOW,
            ),
        ),
        consecutive_failures=1,
    )
    assert machine.replication.health_state.health(rules) is Health.CRITICAL
    assert [e.code for e in machine.replication.current_errors] == ["1011"]


def test_a_machine_stored_with_the_untyped_health_state_loads() -> None:
    """Documents written before the typed health state: the rules' state as a snake_case dict, the errors'
    texts and the errors raised outside the rules in `currentErrors`, and a `health` that ignored those."""
    body = fresh_machine().to_wire()
    del body["replication"]["healthState"]
    seen = NOW.isoformat()
    body["health"] = "Healthy"
    body["replication"]["healthState"] = {
        "errors": [
            {
                "code": "MCP-1104",
                "entry_code": "MCP-1104",
                "message": "consolidate the disks",
                "severity": "Warning",
                "disk_id": None,
                "cleared_by": "nextCycle",
                "retryable": True,
                "first_seen": seen,
                "last_seen": seen,
                "occurrences": 1,
                "repair_attempts": 0,
            }
        ],
        "consecutive_failures": 1,
        "last_failed_cycle_id": "c1",
        "last_failure": seen,
        "last_success": None,
        "last_heard": None,
    }
    body["replication"]["currentErrors"] = [
        {
            "code": "MCP-1104",
            "message": "consolidate the disks",
            "severity": "Warning",
            "diskId": None,
            "firstSeen": seen,
            "lastSeen": seen,
            "clearsOnNextCycle": True,
            "title": "Disks need consolidation",
            "causes": ["snapshots left behind"],
            "recommendations": ["Consolidate the disks"],
        },
        {
            "code": "SourceDisksChanged",
            "message": "resync needed",
            "severity": "Critical",
            "diskId": None,
            "firstSeen": seen,
            "lastSeen": seen,
            "clearsOnNextCycle": False,
            "title": None,
            "causes": [],
            "recommendations": [],
        },
    ]
    machine = Machine.model_validate(body)
    state = machine.replication.health_state
    assert machine.health is Health.CRITICAL
    assert state.consecutive_failures == 1 and state.failed_cycle_ids == ("c1",)
    consolidate, disks = state.errors
    assert consolidate.title == "Disks need consolidation" and consolidate.causes == (
        "snapshots left behind",
    )
    assert (disks.code, disks.cleared_by, disks.severity) == (
        "SourceDisksChanged",
        ClearedBy.RESYNC,
        Health.CRITICAL,
    )
    assert [e.code for e in machine.replication.current_errors] == ["MCP-1104", "SourceDisksChanged"]
    # Written back in the current shape, and read again unchanged.
    stored = machine.to_wire()
    assert "currentErrors" not in stored["replication"]
    assert stored["replication"]["healthState"]["errors"][0]["entryCode"] == "MCP-1104"
    assert Machine.model_validate(stored) == machine
    # A document whose health state was never written (null) loads with an empty one.
    body["replication"] = {**body["replication"], "healthState": None, "currentErrors": []}
    body["health"] = "Healthy"
    assert Machine.model_validate(body).replication.health_state == HealthState()


def test_latest_point_by_consistency() -> None:
    inventory = MachineInventory.model_validate({k: v for k, v in machine_body().items() if k != "id"})
    machine = Machine(
        id="vm-1", appliance_id="appl-1", inventory=inventory, discovered_at=NOW, updated_at=NOW
    )
    for minutes, consistency in ((30, Consistency.APP), (20, Consistency.CRASH), (10, Consistency.CRASH)):
        machine.replication.recovery_points.append(
            RecoveryPoint(
                id=f"rp{minutes}",
                cycle_id=f"c{minutes}",
                time=NOW - timedelta(minutes=minutes),
                consistency=consistency,
                disk_snapshots={"sda": "2026-11-22T02:50:00Z"},
            )
        )
    assert machine.replication.latest_point().id == "rp10"  # type: ignore[union-attr]
    assert machine.replication.latest_point(Consistency.APP).id == "rp30"  # type: ignore[union-attr]


def test_resync_command_needs_a_disk() -> None:
    with pytest.raises(ValidationError, match="names the disk"):
        ApplianceCommand.model_validate(
            {
                "id": "c1",
                "applianceId": "a1",
                "machineId": "m1",
                "kind": "ResyncDisk",
                "createdAt": NOW.isoformat(),
            }
        )


def fresh_machine() -> Machine:
    inventory = MachineInventory.model_validate({k: v for k, v in machine_body().items() if k != "id"})
    return Machine(id="vm-1", appliance_id="appl-1", inventory=inventory, discovered_at=NOW, updated_at=NOW)


def point(minutes_ago: int, consistency: Consistency = Consistency.CRASH) -> RecoveryPoint:
    return RecoveryPoint(
        id=f"rp-{minutes_ago}",
        cycle_id=f"c-{minutes_ago}",
        time=NOW - timedelta(minutes=minutes_ago),
        consistency=consistency,
        disk_snapshots={"sda": f"snap-{minutes_ago}"},
    )


def test_recovery_points_are_pruned_by_count_oldest_first() -> None:
    machine = fresh_machine()
    dropped: list[str] = []
    for minutes_ago in (50, 40, 30, 20, 10):
        dropped += [
            p.id
            for p in machine.replication.add_recovery_point(
                point(minutes_ago), keep_count=3, keep_for=timedelta(hours=24), now=NOW
            )
        ]
    assert [p.id for p in machine.replication.recovery_points] == ["rp-30", "rp-20", "rp-10"]
    assert dropped == ["rp-50", "rp-40"]


def test_recovery_points_are_pruned_by_age_but_the_newest_is_always_kept() -> None:
    machine = fresh_machine()
    machine.replication.add_recovery_point(point(600), keep_count=10, keep_for=timedelta(hours=1), now=NOW)
    assert [p.id for p in machine.replication.recovery_points] == ["rp-600"]  # stale, but the only one
    dropped = machine.replication.add_recovery_point(
        point(5), keep_count=10, keep_for=timedelta(hours=1), now=NOW
    )
    assert [p.id for p in dropped] == ["rp-600"]
    assert [p.id for p in machine.replication.recovery_points] == ["rp-5"]


def test_adding_the_same_point_twice_changes_nothing() -> None:
    machine = fresh_machine()
    machine.replication.add_recovery_point(point(5), keep_count=1, keep_for=timedelta(hours=1), now=NOW)
    before = machine.model_copy(deep=True)
    assert (
        machine.replication.add_recovery_point(point(5), keep_count=1, keep_for=timedelta(hours=1), now=NOW)
        == []
    )
    assert machine == before


def test_an_applied_cycle_advances_the_watermark() -> None:
    machine = fresh_machine()
    machine.record_cycle_applied(7, NOW + timedelta(minutes=10))
    assert machine.replication.last_applied_sequence == 7
    assert machine.replication.last_sync_time == NOW + timedelta(minutes=10)


def test_late_cycle_completion_never_moves_the_watermark_back() -> None:
    machine = fresh_machine()
    machine.record_cycle_applied(8, NOW)
    machine.record_cycle_applied(7, NOW - timedelta(minutes=1))
    assert machine.replication.last_applied_sequence == 8
    assert machine.replication.last_sync_time == NOW
