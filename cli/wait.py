"""`--wait`: follow a job until it finishes, showing its steps live, and turn its end into an exit code.

Polls GET /api/jobs/{id} as often as the API's Retry-After says (a default when it says nothing), so a
busy control plane sets the pace. Exit codes: 0 Succeeded, 2 Warning, 1 Failed or Cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.live import Live

from cli import render
from cli.client import ApiClient, ApiError, EndpointUnreachable
from shared.domain.job import JobStatus

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_WARNING = 2
DEFAULT_POLL_SECONDS = 2.0
# Transient trouble while polling (a host restart, a 5xx) is retried this many times in a row.
POLL_RETRIES = 5

_FINISHED = {s.value for s in JobStatus if s.finished}


def exit_code(status: str) -> int:
    if status == JobStatus.SUCCEEDED.value:
        return EXIT_SUCCEEDED
    if status == JobStatus.WARNING.value:
        return EXIT_WARNING
    return EXIT_FAILED


def is_finished(job: dict[str, Any]) -> bool:
    return job.get("status") in _FINISHED


def recommendations(client: ApiClient, job: dict[str, Any]) -> dict[str, list[str]]:
    """The catalog's recommended steps for the job's errors, by error code, from the machine's events.

    Best effort: the job is what matters, so a machine whose events cannot be read shows the job alone.
    """
    codes = {(s.get("error") or {}).get("code") for s in job.get("steps", [])} | {
        (job.get("error") or {}).get("code")
    }
    codes.discard(None)
    if not codes:
        return {}
    try:
        events = client.get(f"/api/machines/{job['machineId']}/events", limit=50).get("events", [])
    except (ApiError, EndpointUnreachable, AttributeError):
        return {}
    found: dict[str, list[str]] = {}
    for event in events:
        code = event.get("errorCode")
        if code in codes and event.get("recommendations") and code not in found:
            found[code] = list(event["recommendations"])
    return found


def follow_job(
    client: ApiClient,
    job_id: str,
    console: Console,
    *,
    first: dict[str, Any] | None = None,
    live: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    timeout_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
) -> dict[str, Any]:
    """Poll the job until it finishes (or `timeout_seconds` pass: TimeoutError) and return it."""
    started = clock()
    job = first
    wait = 0.0 if first is None else poll_seconds
    with (
        Live(
            render.job_view(job) if job else "waiting for the job…",
            console=console,
            auto_refresh=False,
            transient=False,
        )
        if live
        else _NoLive() as view
    ):
        failures = 0
        while job is None or not is_finished(job):
            if timeout_seconds is not None and clock() - started > timeout_seconds:
                raise TimeoutError(
                    f"job {job_id} still {job['status'] if job else 'unknown'} after {timeout_seconds:.0f} s"
                )
            sleep(wait)
            try:
                answer = client.request("GET", f"/api/jobs/{job_id}")
            except (EndpointUnreachable, ApiError) as exc:
                if (isinstance(exc, ApiError) and exc.status < 500) or failures >= POLL_RETRIES:
                    raise
                failures += 1
                wait = poll_seconds * 2**failures
                continue
            failures = 0
            job = answer.body
            wait = answer.retry_after(poll_seconds)
            view.update(render.job_view(job), refresh=True)
        advice = recommendations(client, job)
        view.update(render.job_view(job, advice), refresh=True)
    if live and not console.is_terminal:
        # Off a terminal Live draws only its last frame, without ending the line.
        console.line()
    return job


class _NoLive:
    """Stands in for Live when the output is JSON: nothing is drawn."""

    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, renderable: object, *, refresh: bool = False) -> None:
        return None
