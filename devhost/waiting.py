"""Polling until something holds: the one wait the local stack, its demos, the bench and the tests use.

Everything outside the product that waits on the local stack (a process answering, a job finishing, a
cycle applied) waits through `wait_until`, so that every timeout says what it waited for and what it
saw last. Each caller keeps its own timeout and interval: those say how long that wait may reasonably
take, not how fast the stack must be.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_NOTHING_YET = object()


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float,
    what: str,
    retry_on: tuple[type[Exception], ...] = (),
    hint: str = "",
) -> T:
    """Call `probe` every `interval` seconds until it returns something truthy, and return that.

    A predicate is a probe that returns a bool. An exception from `probe` ends the wait at once,
    unless it is one of `retry_on`: those mean "not yet" (a server still starting refuses the
    connection) and the wait goes on. On timeout, raises `TimeoutError` naming `what`, the last value
    or exception seen, and `hint` (where to look next), chained to that last exception if any.
    """
    deadline = time.monotonic() + timeout
    last: object = _NOTHING_YET
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except retry_on as error:
            last_error = error
        else:
            last_error = None
            last = value
            if value:
                return value
        time.sleep(interval)
    if last_error is not None:
        seen = f"last error: {type(last_error).__name__}: {last_error}"
    elif last is _NOTHING_YET:
        seen = "never probed"
    else:
        seen = f"last value: {last!r}"
    message = f"gave up waiting for {what} after {timeout:g} s; {seen}"
    raise TimeoutError(f"{message}; {hint}" if hint else message) from last_error
