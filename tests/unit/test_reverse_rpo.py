"""The reverse RPO: the pure rule, the health monitor raising ReverseRpoExceeded (MCP-3505) for a machine
protected back whose newest reverse recovery point is older than 3 x reverseCycleMinutes, the next
reverse recovery point clearing it, and `reverseProtection.rpoSeconds` in the machine view."""

from __future__ import annotations

from datetime import timedelta

from shared.bootstrap import Services
from shared.domain.health import ActiveError, ClearedBy, Health, HealthState
from shared.domain.lifecycle import MachineState
from shared.domain.machine import Machine
from shared.failback import service as failback
from shared.health import HealthSettings, monitor_health
from shared.health.catalog import CATALOG
from shared.health.event_texts import HEALTH_CHANGED
from shared.health.events import list_events
from shared.health.rules import (
    REVERSE_RPO_CODE,
    HealthRules,
    evaluate_reverse_rpo,
    record_reverse_success,
    reverse_rpo_threshold,
)
from tests.unit.test_api_http import NOW, FakeDurableExtension, call, durable, services
from tests.unit.test_reprotect import AZURE, committed

__all__ = ["durable", "services"]  # the fixtures, used by name

RULES = HealthRules()
SNAPSHOTS = {d: f"{d}-rv-s1" for d in AZURE}
TOTALS = failback.ReverseTotals(
    bytes_processed=1 << 30, bytes_transferred=1 << 20, bytes_matched=(1 << 30) - (1 << 20)
)


def _error(name: str, seen: timedelta) -> ActiveError:
    entry = CATALOG[name]
    return ActiveError(
        code=entry.code,
        entry_code=entry.code,
        message=name,
        severity=Health.WARNING,
        cleared_by=entry.cleared_by,
        retryable=entry.retryable,
        first_seen=NOW - seen,
        last_seen=NOW - seen,
    )


# --- the rule --------------------------------------------------------------------------------------


def test_the_reverse_rpo_is_exceeded_past_three_cycle_intervals_and_raised_once() -> None:
    threshold = reverse_rpo_threshold(15)
    assert threshold == timedelta(minutes=45)
    state = HealthState()
    on_time = evaluate_reverse_rpo(
        state, last_point_at=NOW - timedelta(minutes=45), now=NOW, threshold=threshold, rules=RULES
    )
    assert not on_time.raised and on_time.state == state
    assert not evaluate_reverse_rpo(
        state, last_point_at=None, now=NOW, threshold=threshold, rules=RULES
    ).raised

    late = evaluate_reverse_rpo(
        state, last_point_at=NOW - timedelta(minutes=46), now=NOW, threshold=threshold, rules=RULES
    )
    (error,) = late.raised
    assert error.code == REVERSE_RPO_CODE == "MCP-3505" and error.severity is Health.WARNING
    assert "46 minutes old, above the 45 minutes allowed (3 x reverseCycleMinutes)" in error.message
    assert late.health is Health.WARNING and late.previous_health is Health.HEALTHY
    again = evaluate_reverse_rpo(
        late.state, last_point_at=NOW - timedelta(hours=5), now=NOW, threshold=threshold, rules=RULES
    )
    assert not again.raised and again.state == late.state


def test_a_reverse_point_clears_the_reverse_errors_it_resolves_and_leaves_the_forward_ones() -> None:
    reverse_rpo = _error("ReverseRpoExceeded", timedelta(minutes=5))
    failed_cycle = _error("SnapshotReadFailed", timedelta(minutes=20))
    forward = _error("RpoThresholdExceeded", timedelta(minutes=20))
    later = _error("ReverseRpoExceeded", timedelta(minutes=-1)).model_copy(update={"code": "MCP-3505-later"})
    state = HealthState(
        errors=(reverse_rpo, failed_cycle, forward, later),
        consecutive_failures=2,
        failed_cycle_ids=("c1", "c2"),
        last_failure=NOW - timedelta(minutes=20),
        last_success=NOW - timedelta(days=2),
    )
    healed = record_reverse_success(state, at=NOW, rules=RULES)
    assert {e.code for e in healed.cleared} == {reverse_rpo.code, failed_cycle.code}
    # Seen after the point: not resolved by it. The forward direction's error and last sync: untouched.
    assert {e.code for e in healed.state.errors} == {forward.code, "MCP-3505-later"}
    assert healed.state.consecutive_failures == 0 and healed.state.failed_cycle_ids == ()
    assert healed.state.last_success == state.last_success
    assert all(e.cleared_by is ClearedBy.NEXT_CYCLE for e in healed.cleared)


# --- the monitor, the point that clears, the view ---------------------------------------------------


def _reverse_replicating(services: Services, durable: FakeDurableExtension, *, minutes: int) -> Machine:
    machine_id, appliance_id = committed(services, durable)
    failback.start_reprotect(
        services.repos,
        machine_id,
        failback.ReprotectRequest(appliance_id=appliance_id),
        job_id="job-rp1",
        now=NOW - timedelta(hours=2),
    )

    appliance = services.repos.appliances.require(appliance_id).item
    appliance.policy = appliance.policy.model_copy(update={"reverse_cycle_minutes": minutes})
    services.repos.appliances.put(appliance)
    failback.record_reverse_point(
        services.repos,
        machine_id,
        cycle_id="job-rp1-s1",
        snapshot_ids=SNAPSHOTS,
        totals=TOTALS,
        now=NOW - timedelta(minutes=50),
        rules=RULES,
    )
    failback.end_reprotect(
        services.repos,
        failback.ReprotectOutcome(machine_id=machine_id, job_id="job-rp1", succeeded=True),
        now=NOW - timedelta(minutes=50),
        health=HealthSettings(),
    )
    machine = services.repos.machines.require(machine_id).item
    assert machine.state is MachineState.REVERSE_REPLICATING
    return machine


def _view(machine_id: str) -> dict[str, object]:
    status, body, _ = call("get_machine", "GET", "/", route={"machineId": machine_id})
    assert status == 200, body
    view: dict[str, object] = body
    return view


def test_the_monitor_raises_the_reverse_rpo_once_and_the_next_reverse_point_clears_it(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine = _reverse_replicating(services, durable, minutes=15)
    reverse = _view(machine.id)["reverseProtection"]
    assert isinstance(reverse, dict) and reverse["rpoSeconds"] == 50 * 60

    # 50 minutes without a reverse point, 45 allowed (3 x 15): Warning, with the catalog's texts.
    report = monitor_health(services.repos, now=NOW, settings=HealthSettings())
    assert report.machines_changed == [machine.id] and report.events_written == 2
    after = services.repos.machines.require(machine.id).item
    assert after.health is Health.WARNING
    (error,) = after.replication.health_state.errors
    assert error.code == "MCP-3505" and error.causes and error.recommendations
    events = list_events(services.repos, machine.id)
    assert [e.error_code for e in events if e.type == "Reprotect failed"] == ["MCP-3505"]
    # Raised once: the next run changes and writes nothing.
    again = monitor_health(services.repos, now=NOW + timedelta(minutes=5), settings=HealthSettings())
    assert again.machines_changed == [] and again.events_written == 0

    # A reverse cycle lands: the error is gone, health is back, an event says so, the RPO is fresh.
    failback.record_reverse_point(
        services.repos,
        machine.id,
        cycle_id="job-rp1-c1",
        snapshot_ids=SNAPSHOTS,
        totals=TOTALS,
        now=NOW,
        rules=RULES,
    )
    healed = services.repos.machines.require(machine.id).item
    assert healed.health is Health.HEALTHY and not healed.replication.health_state.errors
    assert any(
        e.type == HEALTH_CHANGED and e.details.get("health") == "Healthy"
        for e in list_events(services.repos, machine.id)
    )
    reverse = _view(machine.id)["reverseProtection"]
    assert isinstance(reverse, dict) and reverse["rpoSeconds"] == 0


def test_a_longer_reverse_cycle_interval_allows_an_older_point(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine = _reverse_replicating(services, durable, minutes=20)  # 60 minutes allowed
    report = monitor_health(services.repos, now=NOW, settings=HealthSettings())
    assert report.machines_changed == [] and report.machines_checked >= 1
    assert services.repos.machines.require(machine.id).item.health is Health.HEALTHY
