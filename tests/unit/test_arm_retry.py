"""Which ARM answers are waited out, and for how long (the pipeline policy itself is exercised against the
local ARM endpoint in tests/arm)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shared.platform.arm_retry import busy_wait, retry_after_seconds


class Answer:
    def __init__(self, status: int, code: str | None = None, retry_after: str | None = None) -> None:
        self.status_code = status
        self.headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self._body = json.dumps({"error": {"code": code, "message": "m"}}) if code else ""

    def text(self) -> str:
        return self._body


def wait(answer: Any, attempt: int = 0) -> float | None:
    return busy_wait(answer, attempt)


def test_throttling_waits_as_long_as_retry_after_says_else_backs_off() -> None:
    assert wait(Answer(429, "SubscriptionRequestsThrottled", "7")) == 7
    assert [wait(Answer(429), n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_a_busy_resource_is_waited_out_but_not_a_real_conflict() -> None:
    assert wait(Answer(409, "AnotherOperationInProgress")) == 1
    assert wait(Answer(409, "RetryableErrorDueToAnotherOperation", "3")) == 3
    assert wait(Answer(409, "Conflict")) is None
    assert wait(Answer(400, "NicInUse")) is None


def test_unavailable_only_with_retry_after() -> None:
    assert wait(Answer(503, None, "2")) == 2
    assert wait(Answer(503)) is None
    assert wait(Answer(500, "InternalServerError", "2")) is None
    assert wait(Answer(200)) is None


def test_retry_after_as_seconds_or_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now=lambda: now) == 30
    assert retry_after_seconds("1.5") == 1.5
    assert retry_after_seconds("-4") == 0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
