"""Per-cycle bookkeeping on the machine document: one update, idempotent, retention applied."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.memory_store import InMemoryDocumentStore
from shared.adapters.repository import Repositories
from shared.domain.cycle import Consistency, RecoveryPoint
from shared.domain.event import Event, Severity
from shared.domain.inventory import MachineInventory
from shared.domain.machine import Health, Machine
from shared.domain.policy import ReplicationPolicy
from shared.services.replication import CycleApplied, record_cycle_applied, record_cycle_failed

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
POLICY = ReplicationPolicy(recovery_point_retention_count=3, recovery_point_retention_hours=1)


def new_machine() -> Machine:
    inventory = MachineInventory.model_validate(
        {
            "displayName": "db01",
            "osType": "windows",
            "osName": "Windows Server 2019",
            "osVersion": "10.0.17763",
            "firmware": "UEFI",
            "disks": [{"id": "d0", "sizeBytes": 1024**3, "isOsDisk": True}],
        }
    )
    return Machine(id="vm-1", appliance_id="appl-1", inventory=inventory, discovered_at=NOW, updated_at=NOW)


@pytest.fixture
def repos() -> Repositories:
    repos = Repositories(InMemoryDocumentStore())
    repos.machines.add(new_machine())
    return repos


def cycle(sequence: int, minutes: int, consistency: Consistency = Consistency.CRASH) -> CycleApplied:
    at = NOW + timedelta(minutes=minutes)
    return CycleApplied(
        machine_id="vm-1",
        sequence=sequence,
        applied_at=at,
        recovery_point=RecoveryPoint(
            id=f"rp-{sequence}",
            cycle_id=f"c-{sequence}",
            time=at,
            consistency=consistency,
            disk_snapshots={"d0": "s"},
        ),
    )


def failure(minutes: int, code: str = "1011", severity: Severity = Severity.WARNING) -> Event:
    return Event(
        id=f"ev-{code}-{minutes}",
        machine_id="vm-1",
        time=NOW + timedelta(minutes=minutes),
        type="Replication cycle failed for disk",
        severity=severity,
        message="DiskUploadTimedOut",
        error_code=code,
        disk_id="d0",
    )


def test_a_cycle_is_one_update_and_a_duplicate_is_one_read(repos: Repositories) -> None:
    repos.counter.reset()
    assert record_cycle_applied(repos, cycle(1, 0), POLICY) == []
    assert repos.counter.snapshot() == {"read:machines": 1, "replace:machines": 1}
    repos.counter.reset()
    assert record_cycle_applied(repos, cycle(1, 0), POLICY) == []
    assert repos.counter.snapshot() == {"read:machines": 1}
    status = repos.machines.require("vm-1").item.replication
    assert status.last_applied_sequence == 1 and status.last_sync_time == NOW


def test_retention_returns_the_points_to_delete(repos: Repositories) -> None:
    dropped = [p.id for seq in range(1, 6) for p in record_cycle_applied(repos, cycle(seq, seq * 10), POLICY)]
    # All within the hour: the count (3) drops the oldest point on cycles 4 and 5.
    assert dropped == ["rp-1", "rp-2"]
    assert [p.id for p in repos.machines.require("vm-1").item.replication.recovery_points] == [
        "rp-3",
        "rp-4",
        "rp-5",
    ]


def test_initial_progress_never_goes_backwards(repos: Repositories) -> None:
    record_cycle_applied(repos, replace(cycle(1, 0), progress_percent=60.0), POLICY)
    record_cycle_applied(repos, replace(cycle(2, 1), progress_percent=40.0), POLICY)
    assert repos.machines.require("vm-1").item.replication.progress_percent == 60.0


def test_failure_raises_health_until_the_next_applied_cycle(repos: Repositories) -> None:
    record_cycle_failed(repos, failure(1, severity=Severity.CRITICAL))
    machine = repos.machines.require("vm-1").item
    assert machine.computed_health() is Health.CRITICAL
    assert repos.events.get("ev-1011-1", "vm-1") is not None
    record_cycle_applied(repos, cycle(2, 5), POLICY)
    assert repos.machines.require("vm-1").item.computed_health() is Health.HEALTHY


def test_a_failure_that_needs_resync_persists(repos: Repositories) -> None:
    record_cycle_failed(repos, failure(1, code="CbtReset", severity=Severity.CRITICAL), needs_resync=True)
    record_cycle_applied(repos, cycle(2, 5), POLICY)
    machine = repos.machines.require("vm-1").item
    assert [e.code for e in machine.replication.current_errors] == ["CbtReset"]
    assert machine.computed_health() is Health.CRITICAL


def test_a_redelivered_failure_is_recorded_once(repos: Repositories) -> None:
    repos.counter.reset()
    record_cycle_failed(repos, failure(1))
    assert repos.counter.snapshot() == {"read:machines": 1, "replace:machines": 1, "upsert:events": 1}
    record_cycle_failed(repos, failure(1))
    machine = repos.machines.require("vm-1").item
    assert len(machine.replication.current_errors) == 1
    assert repos.events.get("ev-1011-1", "vm-1") is not None


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=30, unique=True),
    keep_count=st.integers(min_value=1, max_value=8),
    keep_minutes=st.integers(min_value=1, max_value=240),
)
def test_retention_invariants(offsets: list[int], keep_count: int, keep_minutes: int) -> None:
    """Whatever the arrival order: nothing is lost unaccounted, the newest point always survives, and
    what is kept respects the count and (except the newest) the age limit."""
    machine = new_machine()
    keep_for = timedelta(minutes=keep_minutes)
    dropped: list[str] = []
    now = NOW
    for offset in offsets:
        at = NOW + timedelta(minutes=offset)
        now = max(now, at)
        point = RecoveryPoint(
            id=f"rp-{offset}", cycle_id="c", time=at, consistency=Consistency.CRASH, disk_snapshots={}
        )
        dropped += [
            p.id
            for p in machine.replication.add_recovery_point(
                point, keep_count=keep_count, keep_for=keep_for, now=now
            )
        ]
    kept = machine.replication.recovery_points
    kept_ids = [p.id for p in kept]
    assert sorted(kept_ids + dropped) == sorted(f"rp-{o}" for o in offsets)
    assert len(set(dropped)) == len(dropped)
    assert len(kept) <= keep_count
    assert f"rp-{max(offsets)}" in kept_ids
    assert [p.time for p in kept] == sorted(p.time for p in kept)
    assert all(now - p.time <= keep_for for p in kept[:-1])
