"""The health writer on a machine document: conditions, healing by an applied cycle, reset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.health import ClearedBy, Health, HealthState
from shared.domain.inventory import MachineInventory
from shared.domain.machine import Machine
from shared.health.rules import HealthRules
from shared.health.writer import record_cycle_success, record_machine_condition, reset_health

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
RULES = HealthRules()


def fresh_machine() -> Machine:
    inventory = MachineInventory.model_validate(
        {
            "displayName": "web01",
            "osType": "linux",
            "osName": "Ubuntu",
            "osVersion": "22.04",
            "firmware": "BIOS",
            "disks": [{"id": "sda", "sizeBytes": 1024**3, "isOsDisk": True}],
        }
    )
    return Machine(id="vm-1", appliance_id="appl-1", inventory=inventory, discovered_at=NOW, updated_at=NOW)


def condition(machine: Machine, code: str, severity: Health, at: datetime, cleared_by: ClearedBy) -> None:
    disk = "sda" if code == "1011" else None
    record_machine_condition(
        machine,
        code=code,
        message=code,
        severity=severity,
        at=at,
        rules=RULES,
        cleared_by=cleared_by,
        disk_id=disk,
    )


def test_errors_raise_health_and_transient_ones_clear_on_the_next_cycle() -> None:
    machine = fresh_machine()
    condition(machine, "1011", Health.WARNING, NOW, ClearedBy.NEXT_CYCLE)
    condition(machine, "1011", Health.CRITICAL, NOW + timedelta(minutes=5), ClearedBy.NEXT_CYCLE)
    condition(machine, "SourceDisksChanged", Health.WARNING, NOW, ClearedBy.RESYNC)
    [upload, disks] = machine.replication.current_errors
    assert (upload.first_seen, upload.last_seen) == (NOW, NOW + timedelta(minutes=5))
    assert machine.health is Health.CRITICAL
    machine.record_cycle_applied(7, NOW + timedelta(minutes=10))
    record_cycle_success(machine, at=NOW + timedelta(minutes=10), resync=False, rules=RULES)
    assert machine.replication.current_errors == [disks]
    assert machine.health is Health.WARNING
    assert machine.replication.last_applied_sequence == 7


def test_a_condition_that_needs_a_resync_heals_with_the_resync_cycle() -> None:
    machine = fresh_machine()
    condition(machine, "SourceDisksChanged", Health.WARNING, NOW, ClearedBy.RESYNC)
    assert machine.health is Health.WARNING
    assert machine.replication.health_state.consecutive_failures == 0  # not a failed cycle
    healed = record_cycle_success(machine, at=NOW + timedelta(minutes=10), resync=True, rules=RULES)
    assert healed.changed and machine.health is Health.HEALTHY
    assert machine.replication.current_errors == []


def test_stopping_replication_resets_health() -> None:
    machine = fresh_machine()
    condition(machine, "1011", Health.CRITICAL, NOW, ClearedBy.NEXT_CYCLE)
    reset_health(machine)
    assert machine.health is Health.HEALTHY and machine.replication.health_state == HealthState()
