"""The one poll-until-true helper: what it returns, when it gives up, and which exceptions mean "not yet"."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from devhost.waiting import wait_until


def answers(*values: object) -> Callable[[], object]:
    """A probe that returns `values` in turn, then keeps returning the last one."""
    remaining: Iterator[object] = iter(values)
    last: list[object] = [None]

    def probe() -> object:
        last[0] = next(remaining, last[0])
        if isinstance(last[0], Exception):
            raise last[0]
        return last[0]

    return probe


def test_returns_the_first_truthy_value_the_probe_gives() -> None:
    assert wait_until(answers(None, [], 0, {"id": 1}), timeout=5, interval=0.001, what="x") == {"id": 1}


def test_a_predicate_is_a_probe_that_returns_a_bool() -> None:
    assert wait_until(answers(False, True), timeout=5, interval=0.001, what="x") is True


def test_on_timeout_the_error_names_what_it_waited_for_and_the_last_value() -> None:
    with pytest.raises(TimeoutError) as raised:
        wait_until(answers(None, []), timeout=0.05, interval=0.001, what="the enable job")
    assert str(raised.value) == "gave up waiting for the enable job after 0.05 s; last value: []"


def test_the_hint_says_where_to_look_next() -> None:
    with pytest.raises(TimeoutError, match=r"last value: None; see the host log$"):
        wait_until(lambda: None, timeout=0.02, interval=0.001, what="x", hint="see the host log")


def test_an_exception_ends_the_wait_at_once_unless_it_is_retried() -> None:
    calls: list[int] = []

    def refused() -> bool:
        calls.append(1)
        raise ConnectionRefusedError("not listening yet")

    with pytest.raises(ConnectionRefusedError):
        wait_until(refused, timeout=5, interval=0.001, what="x")
    assert len(calls) == 1


def test_retried_exceptions_mean_not_yet() -> None:
    probe = answers(ConnectionRefusedError("starting"), ConnectionRefusedError("starting"), "up")
    assert wait_until(probe, timeout=5, interval=0.001, what="x", retry_on=(OSError,)) == "up"


def test_an_exception_outside_retry_on_still_ends_the_wait() -> None:
    with pytest.raises(KeyError):
        wait_until(answers(KeyError("bug")), timeout=5, interval=0.001, what="x", retry_on=(OSError,))


def test_a_timeout_after_retried_exceptions_names_and_chains_the_last_one() -> None:
    with pytest.raises(TimeoutError) as raised:
        wait_until(
            answers(None, ConnectionRefusedError("port 7071")),
            timeout=0.05,
            interval=0.001,
            what="the host",
            retry_on=(OSError,),
        )
    assert str(raised.value).endswith("last error: ConnectionRefusedError: port 7071")
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)


def test_a_value_after_a_retried_exception_is_what_the_timeout_reports() -> None:
    with pytest.raises(TimeoutError, match=r"last value: 0$") as raised:
        wait_until(answers(OSError("x"), 0), timeout=0.05, interval=0.001, what="x", retry_on=(OSError,))
    assert raised.value.__cause__ is None
