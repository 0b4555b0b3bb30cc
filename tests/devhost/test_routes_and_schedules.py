"""Unit tests: route templates and timer schedules as the Functions host reads them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from devhost.functions_host.http_triggers import starlette_paths
from devhost.functions_host.index import IndexedFunction
from devhost.functions_host.timers import InvalidSchedule, Schedule, TimerScheduler, disabled_functions


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("health", ["/api/health"]),
        ("machines/{id}", ["/api/machines/{id}"]),
        ("items/{n:int}", ["/api/items/{n:int}"]),
        ("items/{n:int:min(1)}", ["/api/items/{n:int}"]),
        ("files/{*rest}", ["/api/files/{rest:path}"]),
        ("a/{b?}", ["/api/a/{b}", "/api/a"]),
    ],
)
def test_route_templates(template: str, expected: list[str]) -> None:
    assert starlette_paths("api", template) == expected


def test_empty_route_prefix() -> None:
    assert starlette_paths("", "x/{y}") == ["/x/{y}"]


def test_ncrontab_has_seconds_first() -> None:
    every_five_minutes = Schedule("0 */5 * * * *")
    start = datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)
    assert every_five_minutes.next_after(start) == datetime(2026, 1, 1, 0, 5, 0, tzinfo=UTC)
    assert Schedule("30 0 9 * * 1-5").next_after(start) == datetime(2026, 1, 1, 9, 0, 30, tzinfo=UTC)


def test_timespan_schedule() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert Schedule("00:05:00").next_after(start) == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert Schedule("1.00:00:00").next_after(start) == datetime(2026, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize("expression", ["*/5 * * * *", "61 * * * * *", "00:00:00", "nonsense"])
def test_invalid_schedules_are_refused_with_the_expected_form(expression: str) -> None:
    with pytest.raises(InvalidSchedule, match="timer schedule"):
        Schedule(expression)


def test_an_app_setting_disables_a_timer_as_in_azure() -> None:
    settings = {
        "AzureWebJobs.start_reconciler.Disabled": "True",
        "AzureWebJobs.arm_sweeper.Disabled": "false",
        "AzureWebJobs.health_monitor.Enabled": "true",
    }
    names = ["start_reconciler", "arm_sweeper", "health_monitor"]
    assert disabled_functions(names, settings) == {"start_reconciler"}


def _timer(name: str) -> IndexedFunction:
    trigger = {"type": "timerTrigger", "name": "timer", "schedule": "0 * * * * *"}
    return IndexedFunction(name, "timerTrigger", trigger, [trigger], lambda timer: None)


def test_a_disabled_timer_is_not_scheduled_the_others_are() -> None:
    async def scheduled() -> list[str]:
        scheduler = TimerScheduler(
            [_timer("start_reconciler"), _timer("arm_sweeper")], disabled={"start_reconciler"}
        )
        scheduler.start()
        names = scheduler.scheduled
        await scheduler.stop()
        return names

    assert asyncio.run(scheduled()) == ["arm_sweeper"]
