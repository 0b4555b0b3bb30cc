"""Throttling and busy resources absorbed: every ARM request retried while ARM says "not now".

ARM answers "not now" three ways: 429 (the subscription's or the resource provider's request budget
is spent), 409 `AnotherOperationInProgress` (another operation holds the resource or one it depends
on: a NIC being attached, an extension still running) and 503 with `Retry-After`. None of them says
the request is wrong, so failing the step on them would fail a whole hydration for a few seconds of
contention. This policy resends the request after the `Retry-After` ARM gave (else 1, 2, 4 ... s, at
most a minute), within a budget of time per request; when the budget is spent the last answer goes to
the caller, which turns it into the typed error with ARM's code (`shared.platform.arm_errors`).

It sits outside azure-core's `RetryPolicy` (a per-call policy), which handles the transport's own
failures and its few status retries; this one keeps going where that one gives up, for as long as the
budget allows. Because it is a pipeline policy, it covers every call made with the clients
`shared.platform.arm_clients` builds: the creates, deletes and reads of hydration, test migration,
migration, failover, failback and the sweeper, and the polls of their async operations.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy
from azure.core.rest import HttpRequest

# 409 codes that mean "the resource is busy", not "the request conflicts with its state".
BUSY_CODES: Final = frozenset({"AnotherOperationInProgress", "RetryableErrorDueToAnotherOperation"})
FIRST_WAIT_SECONDS: Final = 1.0
MAX_WAIT_SECONDS: Final = 60.0


def retry_after_seconds(
    value: str | None, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> float | None:
    """Seconds of a `Retry-After` header (a number of seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


def _error_code(response: Any) -> str | None:
    try:
        # A response of azure.core.rest must be read before its text is there; reading twice is harmless.
        read = getattr(response, "read", None)
        if callable(read):
            read()
        body = json.loads(response.text())
    except Exception:  # an unreadable body is simply not a busy answer
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code) if code else None


def busy_wait(response: Any, attempt: int) -> float | None:
    """How long to wait before resending, when the answer means "not now"; None when it does not."""
    status = response.status_code
    given = retry_after_seconds(response.headers.get("Retry-After"))
    backoff = min(MAX_WAIT_SECONDS, FIRST_WAIT_SECONDS * 2**attempt)
    if status == 429:
        return given if given is not None else backoff
    if status == 503 and given is not None:
        return given
    if status == 409 and _error_code(response) in BUSY_CODES:
        return given if given is not None else backoff
    return None


class ArmBusyRetryPolicy(HTTPPolicy[HttpRequest, Any]):
    """Resend a request ARM answered 429, 409 AnotherOperationInProgress or 503 + Retry-After, honouring
    Retry-After, until `budget_seconds` after the first send; then hand over the last answer."""

    def __init__(self, budget_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.budget_seconds = budget_seconds
        self._clock = clock

    def send(self, request: PipelineRequest[HttpRequest]) -> PipelineResponse[HttpRequest, Any]:
        deadline = self._clock() + self.budget_seconds
        attempt = 0
        while True:
            response = self.next.send(request)
            wait = busy_wait(response.http_response, attempt)
            if wait is None or self._clock() + wait > deadline:
                return response
            transport = request.context.transport
            if transport is not None:
                transport.sleep(wait)
            else:
                time.sleep(wait)
            attempt += 1
