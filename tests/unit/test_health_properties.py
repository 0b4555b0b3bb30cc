"""Properties of health over arbitrary sequences of failures, successes, heartbeats and time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.health import ClearedBy, HealthState
from shared.domain.machine import Health
from shared.health.catalog import CATALOG, CatalogMatch, match_appliance_error
from shared.health.rules import (
    HealthRules,
    Transition,
    evaluate,
    record_failure,
    record_heartbeat,
    record_success,
)

T0 = datetime(2026, 11, 22, tzinfo=UTC)


def _match_for(code: str) -> CatalogMatch:
    entry = CATALOG[code]
    if entry.generic:
        return match_appliance_error("X-UNKNOWN", "something no entry knows")
    if entry.formats:
        return match_appliance_error(None, entry.formats[0].examples[0])
    return match_appliance_error(entry.code, f"{entry.title} (reported)")


MATCHES = [_match_for(entry.code) for entry in CATALOG.entries]

rules_st = st.builds(
    lambda warn, extra, repairs, hb: HealthRules(
        warning_after_failures=warn,
        critical_after_failures=warn + extra,
        max_auto_repairs=repairs,
        heartbeat_timeout=timedelta(minutes=hb),
    ),
    st.integers(1, 3),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(5, 120),
)


@dataclass(frozen=True)
class Fail:
    match: CatalogMatch
    minutes: int
    disk: str | None
    cycle: str | None
    auto_repair: bool


@dataclass(frozen=True)
class Success:
    minutes: int
    resync: bool


@dataclass(frozen=True)
class Heartbeat:
    minutes: int


@dataclass(frozen=True)
class Tick:
    minutes: int


# Times are offsets from T0 and may go backwards: reports arrive late and out of order.
minutes_st = st.integers(0, 3 * 24 * 60)
fail_st = st.builds(
    Fail,
    st.sampled_from(MATCHES),
    minutes_st,
    st.sampled_from([None, "disk-0", "disk-1"]),
    st.sampled_from([None, "c1", "c2", "c3", "c4"]),
    st.booleans(),
)
success_st = st.builds(Success, minutes_st, st.booleans())
heartbeat_st = st.builds(Heartbeat, minutes_st)
tick_st = st.builds(Tick, minutes_st)


def step(state: HealthState, op: object, rules: HealthRules) -> Transition:
    if isinstance(op, Fail):
        return record_failure(
            state,
            op.match,
            at=T0 + timedelta(minutes=op.minutes),
            rules=rules,
            disk_id=op.disk,
            cycle_id=op.cycle,
            auto_repair_enabled=op.auto_repair,
        )
    if isinstance(op, Success):
        return record_success(state, at=T0 + timedelta(minutes=op.minutes), rules=rules, resync=op.resync)
    if isinstance(op, Heartbeat):
        return record_heartbeat(state, at=T0 + timedelta(minutes=op.minutes), rules=rules)
    assert isinstance(op, Tick)
    return evaluate(state, now=T0 + timedelta(minutes=op.minutes), rules=rules, appliance_name="site-a")


def run(ops: list[object], rules: HealthRules, state: HealthState | None = None) -> HealthState:
    state = state or HealthState(last_success=T0, last_heard=T0)
    for op in ops:
        state = step(state, op, rules).state
    return state


@settings(max_examples=300)
@given(
    rules_st,
    st.lists(st.one_of(fail_st, success_st, heartbeat_st, tick_st), max_size=12),
    st.lists(st.one_of(fail_st, tick_st), min_size=1, max_size=15),
)
def test_health_never_improves_without_a_success_or_a_heartbeat(
    rules: HealthRules, history: list[object], ops: list[object]
) -> None:
    state = run(history, rules)
    for op in ops:
        transition = step(state, op, rules)
        assert transition.health.rank >= transition.previous_health.rank, op
        assert transition.cleared == ()
        state = transition.state


@settings(max_examples=300)
@given(rules_st, st.lists(st.one_of(fail_st, success_st, heartbeat_st, tick_st), max_size=20), st.booleans())
def test_a_success_after_everything_clears_every_retryable_error(
    rules: HealthRules, history: list[object], resync: bool
) -> None:
    state = run(history, rules)
    latest = max(
        [T0, *(e.last_seen for e in state.errors), *([state.last_failure] if state.last_failure else [])]
    )
    after = record_success(state, at=latest + timedelta(minutes=1), rules=rules, resync=resync).state

    assert after.consecutive_failures == 0
    assert not any(e.retryable for e in after.errors)
    assert all(e.cleared_by is ClearedBy.RESYNC for e in after.errors)
    if resync:
        assert after.errors == ()
        assert after.health(rules) is Health.HEALTHY
    else:
        worst = max((e.severity for e in after.errors), key=lambda h: h.rank, default=Health.HEALTHY)
        assert after.health(rules) is worst


@settings(max_examples=300)
@given(rules_st, st.lists(st.one_of(fail_st, success_st, heartbeat_st, tick_st), max_size=15), fail_st)
def test_the_same_failure_twice_is_the_same_as_once(
    rules: HealthRules, history: list[object], failure: Fail
) -> None:
    once = step(run(history, rules), failure, rules)
    twice = step(once.state, failure, rules)
    assert twice.state == once.state
    assert twice.raised == () and twice.resync is None


@settings(max_examples=300)
@given(rules_st, st.lists(st.one_of(fail_st, success_st, heartbeat_st, tick_st), max_size=25))
def test_health_is_at_least_every_current_errors_severity_and_repairs_stay_in_budget(
    rules: HealthRules, ops: list[object]
) -> None:
    state = HealthState(last_success=T0, last_heard=T0)
    for op in ops:
        transition = step(state, op, rules)
        state = transition.state
        for error in state.errors:
            assert transition.health.rank >= error.severity.rank
            assert error.repair_attempts <= rules.max_auto_repairs
            assert error.first_seen <= error.last_seen
        if transition.resync is not None:
            assert CATALOG[transition.resync.reason_code].auto_repairable
        keys = [e.key for e in state.errors]
        assert len(keys) == len(set(keys))  # one current error per code and disk


@settings(max_examples=200)
@given(rules_st, st.lists(fail_st, min_size=1, max_size=10))
def test_consecutive_failures_reach_critical_by_the_threshold(
    rules: HealthRules, failures: list[Fail]
) -> None:
    # Distinct cycles, strictly later each time: every one of them counts.
    state = HealthState(last_success=T0, last_heard=T0 + timedelta(days=9))
    for n, failure in enumerate(failures, start=1):
        op = Fail(failure.match, n, failure.disk, f"cycle-{n}", failure.auto_repair)
        state = step(state, op, rules).state
        assert state.consecutive_failures == n
        if n >= rules.critical_after_failures:
            assert state.health(rules) is Health.CRITICAL
        elif n >= rules.warning_after_failures:
            assert state.health(rules).rank >= Health.WARNING.rank
