"""Health escalation and healing, sequence by sequence (the rules are in shared/health/rules.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from shared.domain.event import Severity
from shared.domain.health import HealthState
from shared.domain.inventory import MachineInventory
from shared.domain.machine import Health, Machine
from shared.health.catalog import (
    CATALOG,
    CatalogMatch,
    build_event,
    control_plane_error,
    match_appliance_error,
)
from shared.health.rules import (
    APPLIANCE_CODE,
    RPO_CODE,
    HealthRules,
    evaluate,
    record_failure,
    record_heartbeat,
    record_success,
)
from shared.health.writer import record_cycle_success

T0 = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
RULES = HealthRules()
HOUR = timedelta(hours=1)

UPLOAD_TIMEOUT = match_appliance_error(
    "1011",
    "The upload of data for disk [ds1] db/db.vmdk, disk-0 of virtual machine db01; 5012 did not complete "
    "within the expected time.",
)
CBT_RESET = match_appliance_error(None, "Encountered an error while trying to fetch change blocks")
CONSOLIDATE = match_appliance_error(
    None, "An internal error occurred. [Failed to consolidate the disks on VM x]"
)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def replicating(since: datetime = T0) -> HealthState:
    """A machine whose initial copy completed at `since`, its appliance heard from then."""
    return HealthState(last_success=since, last_heard=since)


def fail(
    state: HealthState, match: CatalogMatch, hours: float, cycle: str | None = None, **kw: object
) -> HealthState:
    return record_failure(state, match, at=at(hours), rules=RULES, cycle_id=cycle, **kw).state  # type: ignore[arg-type]


def test_the_first_failure_of_a_warning_error_is_a_warning_and_the_third_in_a_row_critical() -> None:
    state = replicating()
    healths = []
    for n in range(1, 4):
        step = record_failure(
            state, UPLOAD_TIMEOUT, at=at(n), rules=RULES, disk_id="disk-0", cycle_id=f"c{n}"
        )
        state = step.state
        healths.append(step.health)

    assert healths == [Health.WARNING, Health.WARNING, Health.CRITICAL]
    assert state.consecutive_failures == 3
    assert len(state.errors) == 1 and state.errors[0].occurrences == 3


def test_a_critical_error_is_critical_at_once() -> None:
    step = record_failure(replicating(), CONSOLIDATE, at=at(1), rules=RULES)
    assert (step.previous_health, step.health) == (Health.HEALTHY, Health.CRITICAL)
    assert step.raised[0].code == "MCP-1104"
    assert step.changed


def test_a_successful_cycle_heals_transient_errors_and_the_failure_count() -> None:
    state = fail(
        fail(fail(replicating(), UPLOAD_TIMEOUT, 1, "c1"), UPLOAD_TIMEOUT, 2, "c2"), UPLOAD_TIMEOUT, 3, "c3"
    )
    step = record_success(state, at=at(4), rules=RULES)

    assert step.previous_health is Health.CRITICAL
    assert step.health is Health.HEALTHY
    assert step.state.errors == ()
    assert step.state.consecutive_failures == 0
    assert [e.code for e in step.cleared] == ["1011"]


def test_a_vmware_error_needing_the_operator_still_clears_once_a_cycle_succeeds() -> None:
    # The operator fixed vCenter; the proof is an applied cycle.
    step = record_success(fail(replicating(), CONSOLIDATE, 1), at=at(2), rules=RULES)
    assert step.health is Health.HEALTHY


def test_cbt_reset_without_auto_repair_is_critical_until_a_resync() -> None:
    step = record_failure(replicating(), CBT_RESET, at=at(1), rules=RULES, auto_repair_enabled=False)
    assert step.health is Health.CRITICAL
    assert step.resync is None  # the operator runs "Repair replication"

    # A delta cycle alone does not heal it (it cannot have been applied anyway; the error stays).
    after_delta = record_success(step.state, at=at(2), rules=RULES)
    assert after_delta.health is Health.CRITICAL
    assert [e.code for e in after_delta.state.errors] == ["MCP-1001"]
    assert after_delta.state.errors[0].to_machine_error().clears_on_next_cycle is False

    after_resync = record_success(after_delta.state, at=at(3), rules=RULES, resync=True)
    assert after_resync.health is Health.HEALTHY


def test_cbt_reset_with_auto_repair_requests_a_resync_and_is_only_a_warning() -> None:
    step = record_failure(replicating(), CBT_RESET, at=at(1), rules=RULES, auto_repair_enabled=True)

    assert step.health is Health.WARNING
    assert step.resync is not None
    assert (step.resync.reason_code, step.resync.disk_id, step.resync.attempt) == ("MCP-1001", None, 1)
    assert record_success(step.state, at=at(2), rules=RULES, resync=True).health is Health.HEALTHY


def test_auto_repair_gives_up_after_its_budget_and_waits_for_the_operator() -> None:
    rules = HealthRules(max_auto_repairs=2, critical_after_failures=10)
    state = replicating()
    steps = []
    for n in range(1, 4):
        step = record_failure(
            state, CBT_RESET, at=at(n), rules=rules, cycle_id=f"c{n}", auto_repair_enabled=True
        )
        state = step.state
        steps.append(step)

    assert [s.resync.attempt if s.resync else None for s in steps] == [1, 2, None]
    assert [s.health for s in steps] == [Health.WARNING, Health.WARNING, Health.CRITICAL]
    assert [len(s.raised) for s in steps] == [1, 0, 1]  # raised when new, and again when it got worse


def test_control_plane_resync_needs_no_opt_in() -> None:
    gap = control_plane_error("CycleSequenceGap", expectedSequence=4, buffered=8, latestSequence=12, maxGap=8)
    step = record_failure(replicating(), gap, at=at(1), rules=RULES, auto_repair_enabled=False)
    assert step.resync is not None and step.health is Health.WARNING


def test_disk_errors_are_per_disk_and_one_cycle_counts_once() -> None:
    state = replicating()
    first = record_failure(state, UPLOAD_TIMEOUT, at=at(1), rules=RULES, disk_id="disk-0", cycle_id="c1")
    second = record_failure(
        first.state, UPLOAD_TIMEOUT, at=at(1.01), rules=RULES, disk_id="disk-1", cycle_id="c1"
    )

    assert {e.disk_id for e in second.state.errors} == {"disk-0", "disk-1"}
    assert second.state.consecutive_failures == 1
    assert len(second.raised) == 1


def test_a_redelivered_failure_changes_nothing() -> None:
    once = record_failure(
        replicating(), UPLOAD_TIMEOUT, at=at(1), rules=RULES, disk_id="disk-0", cycle_id="c1"
    )
    twice = record_failure(once.state, UPLOAD_TIMEOUT, at=at(1), rules=RULES, disk_id="disk-0", cycle_id="c1")
    assert twice.state == once.state
    assert twice.raised == () and twice.resync is None


def test_a_failure_older_than_the_last_success_is_ignored() -> None:
    state = replicating(since=at(5))
    step = record_failure(state, CONSOLIDATE, at=at(4), rules=RULES)
    assert step.state == state and step.health is Health.HEALTHY


def test_a_late_success_does_not_clear_a_newer_failure() -> None:
    state = fail(replicating(), UPLOAD_TIMEOUT, 3, "c3")
    step = record_success(state, at=at(2), rules=RULES)
    assert step.health is Health.WARNING
    assert step.state.consecutive_failures == 1


def test_unknown_errors_stay_distinct_by_their_reported_code() -> None:
    a = match_appliance_error("E1", "first unknown")
    b = match_appliance_error("E2", "second unknown")
    state = fail(fail(replicating(), a, 1, "c1"), b, 2, "c2")
    assert sorted(e.code for e in state.errors) == ["E1", "E2"]
    assert {e.entry_code for e in state.errors} == {CATALOG.generic.code}


def test_rpo_breach_raises_a_warning_once_then_critical() -> None:
    rules = HealthRules(heartbeat_timeout=timedelta(days=30))  # the appliance is not in question here
    state = replicating()
    quiet = evaluate(state, now=at(1.5), rules=rules)
    assert quiet.raised == () and quiet.health is Health.HEALTHY

    warned = evaluate(state, now=at(3), rules=rules)
    assert warned.health is Health.WARNING
    (error,) = warned.raised
    assert error.code == RPO_CODE
    assert error.message == (
        f"The latest recovery point is 180 minutes old (last sync {T0.isoformat()}); the threshold is 120 minutes."
    )

    again = evaluate(warned.state, now=at(4), rules=rules)
    assert again.raised == () and again.state == warned.state

    critical = evaluate(again.state, now=at(25), rules=rules)
    assert critical.health is Health.CRITICAL
    assert "threshold is 1440 minutes" in critical.raised[0].message
    assert critical.state.find(RPO_CODE).first_seen == at(3)  # type: ignore[union-attr]

    assert record_success(critical.state, at=at(26), rules=rules).health is Health.HEALTHY


def test_no_rpo_before_the_initial_copy_completes() -> None:
    assert evaluate(HealthState(last_heard=at(9.9)), now=at(10), rules=RULES).health is Health.HEALTHY


def test_a_silent_appliance_is_critical_until_it_is_heard_from() -> None:
    state = replicating()
    silent = evaluate(state, now=T0 + timedelta(minutes=20), rules=RULES, appliance_name="site-a")

    assert silent.health is Health.CRITICAL
    (error,) = silent.raised
    assert error.code == APPLIANCE_CODE
    assert error.message == (
        f"Appliance site-a has not been heard from since {T0.isoformat()} (more than 15 minutes)."
    )
    # A failure report does not heal it...
    assert record_failure(silent.state, UPLOAD_TIMEOUT, at=at(0.5), rules=RULES).health is Health.CRITICAL
    # ...a heartbeat does, and so does an uploaded cycle.
    assert record_heartbeat(silent.state, at=at(0.5), rules=RULES).health is Health.HEALTHY
    assert record_success(silent.state, at=at(0.5), rules=RULES).health is Health.HEALTHY


def test_a_heartbeat_keeps_the_appliance_alive_but_does_not_heal_cycle_errors() -> None:
    state = fail(replicating(), CONSOLIDATE, 0.1)
    beat = record_heartbeat(state, at=at(0.2), rules=RULES)
    assert beat.health is Health.CRITICAL
    assert evaluate(beat.state, now=at(0.4), rules=RULES).raised == ()


def test_errors_map_to_the_machine_document() -> None:
    state = fail(replicating(), UPLOAD_TIMEOUT, 1, "c1", disk_id="disk-0")
    (machine_error,) = [e.to_machine_error() for e in state.errors]
    assert (machine_error.code, machine_error.disk_id, machine_error.severity) == (
        "1011",
        "disk-0",
        Health.WARNING,
    )
    assert machine_error.clears_on_next_cycle
    assert machine_error.message == UPLOAD_TIMEOUT.message


def test_the_state_round_trips_as_json_for_durable_payloads() -> None:
    state = fail(fail(replicating(), CBT_RESET, 1, "c1", auto_repair_enabled=True), UPLOAD_TIMEOUT, 2, "c2")
    assert HealthState.model_validate_json(state.model_dump_json()) == state


@pytest.mark.parametrize(
    "rules",
    [
        {"warning_after_failures": 4, "critical_after_failures": 3},
        {"rpo_warning": timedelta(hours=5), "rpo_critical": timedelta(hours=5)},
        {"heartbeat_timeout": timedelta(0)},
        {"critical_after_failures": 0},
    ],
)
def test_inconsistent_rules_are_refused(rules: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        HealthRules.model_validate(rules)


def test_the_event_of_a_failure_carries_the_effective_severity() -> None:
    repaired = record_failure(replicating(), CBT_RESET, at=at(1), rules=RULES, auto_repair_enabled=True)
    manual = record_failure(replicating(), CBT_RESET, at=at(1), rules=RULES, auto_repair_enabled=False)
    assert repaired.event_severity is Severity.WARNING
    assert manual.event_severity is Severity.CRITICAL

    again = record_failure(repaired.state, CBT_RESET, at=at(1), rules=RULES, auto_repair_enabled=True)
    assert again.error == repaired.error  # a redelivery still names its error
    stale = record_failure(replicating(since=at(2)), CBT_RESET, at=at(1), rules=RULES)
    assert stale.error is None and stale.event_severity is None


def test_an_activity_can_record_a_failure_on_the_machine_and_its_event_log() -> None:
    """The glue the orchestration's activity needs: match, decide, write the machine and the event."""
    inventory = MachineInventory.model_validate(
        {
            "displayName": "db01",
            "osType": "windows",
            "osName": "Windows Server 2019",
            "osVersion": "10.0.17763",
            "firmware": "UEFI",
            "disks": [{"id": "disk-0", "sizeBytes": 1024**3, "isOsDisk": True}],
        }
    )
    machine = Machine(id="vm-1", appliance_id="appl-1", inventory=inventory, discovered_at=T0, updated_at=T0)
    match = match_appliance_error(None, CONSOLIDATE.message)

    step = record_failure(replicating(), match, at=at(1), rules=RULES, cycle_id="c1")
    machine.health = step.health
    machine.replication.health_state = step.state
    event = build_event(
        match, event_id="ev-1", machine_id=machine.id, time=at(1), cycle_id="c1", severity=step.event_severity
    )

    assert machine.health is Health.CRITICAL
    assert machine.replication.current_errors[0].code == event.error_code == "MCP-1104"
    assert event.type == "Replication cycle failed" and event.severity is Severity.CRITICAL
    assert event.message == CONSOLIDATE.message
    assert any("Consolidate" in line for line in event.recommendations)

    healed = record_success(step.state, at=at(2), rules=RULES)
    machine.record_cycle_applied(1, at(2))
    assert record_cycle_success(machine, at=at(2), resync=False, rules=RULES) == healed
    assert [e.to_machine_error() for e in healed.state.errors] == machine.replication.current_errors == []
