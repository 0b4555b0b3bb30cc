"""Timer triggers: NCRONTAB (six fields, seconds first) and TimeSpan schedules, as the Functions host reads them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter
from croniter import croniter

from devhost.functions_host.index import IndexedFunction
from devhost.functions_host.invoke import call_user_function, extra_binding_kwargs, resolve_binding_kwargs

log = logging.getLogger("devhost.timers")

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")


class InvalidSchedule(ValueError):
    pass


class Schedule:
    """Next occurrence after a given instant, in UTC (WEBSITE_TIME_ZONE is not emulated)."""

    def __init__(self, expression: str) -> None:
        self.expression = expression.strip()
        timespan = _TIMESPAN.match(self.expression)
        self._interval: timedelta | None = None
        self._cron: str | None = None
        if timespan:
            days, hours, minutes, seconds = (int(g or 0) for g in timespan.groups())
            self._interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
            if self._interval <= timedelta(0):
                raise InvalidSchedule(f"timer schedule {expression!r}: a TimeSpan must be positive")
            return
        fields = self.expression.split()
        if len(fields) != 6:
            raise InvalidSchedule(
                f"timer schedule {expression!r}: NCRONTAB needs six fields "
                "({second} {minute} {hour} {day} {month} {day-of-week}) or a TimeSpan like 00:05:00"
            )
        # croniter takes seconds as an optional sixth field at the end.
        self._cron = " ".join([*fields[1:], fields[0]])
        if not croniter.is_valid(self._cron):
            raise InvalidSchedule(f"timer schedule {expression!r} is not a valid NCRONTAB expression")

    def next_after(self, instant: datetime) -> datetime:
        if self._interval is not None:
            return instant + self._interval
        assert self._cron is not None
        nxt: datetime = croniter(self._cron, instant).get_next(datetime)
        return nxt


def timer_request_json(past_due: bool, last: datetime | None, nxt: datetime) -> str:
    return json.dumps(
        {
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": {
                "Last": (last or datetime.min.replace(tzinfo=UTC)).isoformat(),
                "Next": nxt.isoformat(),
                "LastUpdated": datetime.now(UTC).isoformat(),
            },
            "IsPastDue": past_due,
        }
    )


async def invoke_timer(fn: IndexedFunction, payload_json: str, extras: dict[str, Any] | None = None) -> None:
    request: func.TimerRequest = TimerRequestConverter.decode(
        meta.Datum(payload_json, "json"), trigger_metadata={}
    )
    await call_user_function(
        fn.user_function, {fn.trigger["name"]: request, **resolve_binding_kwargs(extras or {})}
    )


def disabled_functions(names: Iterable[str], app_settings: Mapping[str, str]) -> set[str]:
    """The functions an app setting `AzureWebJobs.<name>.Disabled` = true disables, as in Azure: their
    trigger is ignored, but the admin API still runs them with the master key (a test that must decide
    when a timer runs disables its schedule and runs it itself)."""
    return {name for name in names if app_settings.get(f"AzureWebJobs.{name}.Disabled", "").lower() == "true"}


class TimerScheduler:
    """One asyncio task per timer function that is not disabled; a failing run is logged and the schedule
    continues."""

    def __init__(
        self,
        functions: list[IndexedFunction],
        durable_client_json: Callable[[], str] | None = None,
        *,
        enabled: bool = True,
        disabled: Iterable[str] = (),
    ) -> None:
        self._functions = functions
        self._enabled = enabled
        self._disabled = set(disabled)
        self.extras = {fn.name: extra_binding_kwargs(fn, durable_client_json) for fn in functions}
        self._schedules = {fn.name: Schedule(str(fn.trigger["schedule"])) for fn in functions}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self._enabled:
            return
        for fn in self._functions:
            if fn.name in self._disabled:
                log.info(
                    "timer function %s is disabled (AzureWebJobs.%s.Disabled): not scheduled",
                    fn.name,
                    fn.name,
                )
                continue
            self._tasks.append(asyncio.create_task(self._run(fn), name=f"timer:{fn.name}"))

    @property
    def scheduled(self) -> list[str]:
        """The timer functions running on their schedule."""
        return [task.get_name().removeprefix("timer:") for task in self._tasks]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _run(self, fn: IndexedFunction) -> None:
        schedule = self._schedules[fn.name]
        last: datetime | None = None
        if fn.trigger.get("runOnStartup"):
            await self._fire(fn, last, schedule.next_after(datetime.now(UTC)), past_due=False)
            last = datetime.now(UTC)
        while True:
            due = schedule.next_after(datetime.now(UTC))
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            await self._fire(fn, last, schedule.next_after(due), past_due=False)
            last = due

    async def _fire(self, fn: IndexedFunction, last: datetime | None, nxt: datetime, past_due: bool) -> None:
        try:
            await invoke_timer(fn, timer_request_json(past_due, last, nxt), self.extras[fn.name])
        except Exception:
            log.exception("timer function %s failed", fn.name)
