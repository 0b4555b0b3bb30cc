"""Builders for the history events the Durable extension sends to out-of-process SDKs.

Field names follow the DTFx history event classes as the extension serialises them (PascalCase);
payloads (Input, Result) are JSON text, never decoded values. Every builder returns a plain dict
so the same object is persisted in SQLite and sent to the SDK without translation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import IntEnum
from typing import Any


class EventType(IntEnum):
    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_CREATED = 7
    SUB_ORCHESTRATION_COMPLETED = 8
    SUB_ORCHESTRATION_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16


Event = dict[str, Any]


def iso(ts: datetime) -> str:
    """Round-trip UTC timestamp with microseconds, as dateutil (used by the SDK) parses it."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    ts = datetime.fromisoformat(text)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _event(kind: EventType, ts: datetime, event_id: int = -1, **fields: Any) -> Event:
    return {"EventType": int(kind), "EventId": event_id, "IsPlayed": False, "Timestamp": iso(ts), **fields}


def orchestrator_started(ts: datetime) -> Event:
    return _event(EventType.ORCHESTRATOR_STARTED, ts)


def orchestrator_completed(ts: datetime) -> Event:
    return _event(EventType.ORCHESTRATOR_COMPLETED, ts)


def execution_started(
    ts: datetime,
    *,
    name: str,
    input_json: str | None,
    instance_id: str,
    execution_id: str,
    parent: dict[str, Any] | None,
) -> Event:
    return _event(
        EventType.EXECUTION_STARTED,
        ts,
        Name=name,
        Input=input_json,
        Version="",
        OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
        ParentInstance=parent,
    )


def execution_completed(ts: datetime, *, status: str, result_json: str | None) -> Event:
    return _event(EventType.EXECUTION_COMPLETED, ts, OrchestrationStatus=status, Result=result_json)


def execution_terminated(ts: datetime, reason: str) -> Event:
    return _event(EventType.EXECUTION_TERMINATED, ts, Input=reason)


def task_scheduled(ts: datetime, task_id: int, name: str, input_json: str | None) -> Event:
    return _event(EventType.TASK_SCHEDULED, ts, task_id, Name=name, Version="", Input=input_json)


def task_completed(ts: datetime, task_id: int, result_json: str | None) -> Event:
    return _event(EventType.TASK_COMPLETED, ts, TaskScheduledId=task_id, Result=result_json)


def task_failed(ts: datetime, task_id: int, reason: str, details: str) -> Event:
    return _event(EventType.TASK_FAILED, ts, TaskScheduledId=task_id, Reason=reason, Details=details)


def sub_orchestration_created(
    ts: datetime, task_id: int, name: str, instance_id: str, input_json: str | None
) -> Event:
    return _event(
        EventType.SUB_ORCHESTRATION_CREATED,
        ts,
        task_id,
        Name=name,
        Version="",
        InstanceId=instance_id,
        Input=input_json,
    )


def sub_orchestration_completed(ts: datetime, task_id: int, result_json: str | None) -> Event:
    return _event(EventType.SUB_ORCHESTRATION_COMPLETED, ts, TaskScheduledId=task_id, Result=result_json)


def sub_orchestration_failed(ts: datetime, task_id: int, reason: str, details: str) -> Event:
    return _event(
        EventType.SUB_ORCHESTRATION_FAILED, ts, TaskScheduledId=task_id, Reason=reason, Details=details
    )


def timer_created(ts: datetime, timer_id: int, fire_at: datetime) -> Event:
    return _event(EventType.TIMER_CREATED, ts, timer_id, FireAt=iso(fire_at))


def timer_fired(ts: datetime, timer_id: int, fire_at: datetime) -> Event:
    return _event(EventType.TIMER_FIRED, ts, TimerId=timer_id, FireAt=iso(fire_at))


def event_sent(ts: datetime, event_id: int, target_instance: str, name: str, input_json: str) -> Event:
    return _event(EventType.EVENT_SENT, ts, event_id, InstanceId=target_instance, Name=name, Input=input_json)


def event_raised(ts: datetime, name: str, input_json: str | None) -> Event:
    return _event(EventType.EVENT_RAISED, ts, Name=name, Input=input_json)


def with_timestamp(event: Event, ts: datetime) -> Event:
    """A copy of a queued message stamped with the time it enters the history."""
    return {**event, "Timestamp": iso(ts)}


_DISPLAY_SKIP = {EventType.ORCHESTRATOR_STARTED, EventType.ORCHESTRATOR_COMPLETED}


def for_status(events: list[Event], *, show_output: bool) -> list[dict[str, Any]]:
    """The history shape of the extension's status API: event names, scheduled events folded into completions."""
    scheduled: dict[int, Event] = {}
    shown: list[dict[str, Any]] = []
    for event in events:
        kind = EventType(event["EventType"])
        if kind in _DISPLAY_SKIP:
            continue
        if kind in (EventType.TASK_SCHEDULED, EventType.SUB_ORCHESTRATION_CREATED, EventType.TIMER_CREATED):
            scheduled[event["EventId"]] = event
            continue
        item: dict[str, Any] = {
            "EventType": _DISPLAY_NAMES.get(kind, kind.name.title()),
            "Timestamp": event["Timestamp"],
        }
        origin_id = event.get("TaskScheduledId", event.get("TimerId"))
        origin = scheduled.get(origin_id) if isinstance(origin_id, int) else None
        if kind == EventType.EXECUTION_STARTED:
            item["FunctionName"] = event.get("Name")
            if show_output:
                item["Input"] = event.get("Input")
        elif origin is not None:
            item["ScheduledTime"] = origin["Timestamp"]
            if kind == EventType.TIMER_FIRED:
                item["FireAt"] = event.get("FireAt")
            else:
                item["FunctionName"] = origin.get("Name")
        if kind == EventType.EVENT_RAISED:
            item["Name"] = event.get("Name")
        if kind in (EventType.TASK_FAILED, EventType.SUB_ORCHESTRATION_FAILED):
            item["Reason"] = event.get("Reason")
            item["Details"] = event.get("Details")
        if kind == EventType.EXECUTION_COMPLETED:
            item["OrchestrationStatus"] = event.get("OrchestrationStatus")
        if kind == EventType.EXECUTION_TERMINATED:
            item["Reason"] = event.get("Input")
        if show_output and "Result" in event:
            item["Result"] = event.get("Result")
        shown.append(item)
    return shown


_DISPLAY_NAMES = {
    EventType.EXECUTION_STARTED: "ExecutionStarted",
    EventType.EXECUTION_COMPLETED: "ExecutionCompleted",
    EventType.EXECUTION_FAILED: "ExecutionFailed",
    EventType.EXECUTION_TERMINATED: "ExecutionTerminated",
    EventType.TASK_COMPLETED: "TaskCompleted",
    EventType.TASK_FAILED: "TaskFailed",
    EventType.SUB_ORCHESTRATION_COMPLETED: "SubOrchestrationInstanceCompleted",
    EventType.SUB_ORCHESTRATION_FAILED: "SubOrchestrationInstanceFailed",
    EventType.TIMER_FIRED: "TimerFired",
    EventType.EVENT_SENT: "EventSent",
    EventType.EVENT_RAISED: "EventRaised",
    EventType.CONTINUE_AS_NEW: "ContinueAsNew",
}
