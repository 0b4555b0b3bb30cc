"""The schedule of a wait for an appliance's answer (orchestrators/polling.py): steady at first, then
growing with the time waited, capped, and never past the deadline."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from orchestrators.polling import LONGEST_INTERVAL, STEADY_PHASE, Wait, poll_interval

START = datetime(2030, 1, 1, tzinfo=UTC)


def _asks(wait: Wait) -> list[datetime]:
    asks = [wait.started]
    while not wait.over(asks[-1]):
        asks.append(wait.next_ask(asks[-1]))
    return asks


def test_the_first_minutes_are_asked_at_the_requested_interval() -> None:
    assert poll_interval(timedelta(0), 15) == timedelta(seconds=15)
    assert poll_interval(STEADY_PHASE - timedelta(seconds=1), 15) == timedelta(seconds=15)


def test_then_the_interval_grows_with_the_time_waited_up_to_the_cap() -> None:
    assert poll_interval(timedelta(minutes=16), 15) == timedelta(minutes=2)
    assert poll_interval(timedelta(hours=3), 15) == LONGEST_INTERVAL


def test_a_requested_interval_longer_than_the_cap_is_kept() -> None:
    assert poll_interval(timedelta(hours=3), 600) == timedelta(minutes=10)


def test_a_four_hour_wait_asks_a_bounded_number_of_times_and_last_at_the_deadline() -> None:
    asks = _asks(Wait.starting(START, timeout_seconds=4 * 3600, poll_seconds=15))
    assert len(asks) == 75  # 961 at a fixed 15 s
    assert asks[-1] == START + timedelta(hours=4)
    assert all(b - a <= LONGEST_INTERVAL for a, b in itertools.pairwise(asks))


def test_a_short_wait_is_asked_as_before() -> None:
    asks = _asks(Wait.starting(START, timeout_seconds=60, poll_seconds=5))
    assert asks == [START + timedelta(seconds=s) for s in range(0, 61, 5)]
