"""Pins the out-of-process protocol facts the engine relies on; an SDK upgrade that changes them fails here."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any

import azure.durable_functions as df
import pytest
from azure.durable_functions.models.actions.ActionType import ActionType
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType

from devhost.durable import episode
from devhost.durable import history as h
from devhost.durable.episode import Ledger, OrchestrationFailure, Planner, RetryPolicy
from devhost.durable.history import EventType
from devhost.functions_host.index import FunctionIndex

pytestmark = pytest.mark.contract


def test_pinned_sdk_version() -> None:
    assert version("azure-functions-durable") == "1.7.0"
    assert version("azure-functions") == "1.26.0"


def test_action_types_match_the_sdk() -> None:
    engine_codes = {
        "CALL_ACTIVITY": episode.CALL_ACTIVITY,
        "CALL_ACTIVITY_WITH_RETRY": episode.CALL_ACTIVITY_WITH_RETRY,
        "CALL_SUB_ORCHESTRATOR": episode.CALL_SUB_ORCHESTRATOR,
        "CALL_SUB_ORCHESTRATOR_WITH_RETRY": episode.CALL_SUB_ORCHESTRATOR_WITH_RETRY,
        "CONTINUE_AS_NEW": episode.CONTINUE_AS_NEW,
        "CREATE_TIMER": episode.CREATE_TIMER,
        "WAIT_FOR_EXTERNAL_EVENT": episode.WAIT_FOR_EXTERNAL_EVENT,
        "CALL_ENTITY": episode.CALL_ENTITY,
        "CALL_HTTP": episode.CALL_HTTP,
        "SIGNAL_ENTITY": episode.SIGNAL_ENTITY,
        "WHEN_ANY": episode.WHEN_ANY,
        "WHEN_ALL": episode.WHEN_ALL,
    }
    assert {m.name: m.value for m in ActionType} == engine_codes


def test_history_event_types_match_the_sdk() -> None:
    sdk = {m.name: m.value for m in HistoryEventType}
    renamed = {
        "SUB_ORCHESTRATION_CREATED": "SUB_ORCHESTRATION_INSTANCE_CREATED",
        "SUB_ORCHESTRATION_COMPLETED": "SUB_ORCHESTRATION_INSTANCE_COMPLETED",
        "SUB_ORCHESTRATION_FAILED": "SUB_ORCHESTRATION_INSTANCE_FAILED",
    }
    for member in EventType:
        assert sdk[renamed.get(member.name, member.name)] == member.value, member


def test_retry_options_carry_only_interval_and_attempts() -> None:
    # The engine also reads backoffCoefficient/maxRetryInterval/retryTimeout (the extension's names);
    # if the SDK ever sends them, the RetryPolicy tests below cover their meaning.
    assert df.RetryOptions(1000, 3).to_json() == {
        "firstRetryIntervalInMilliseconds": 1000,
        "maxNumberOfAttempts": 3,
    }


def test_handler_answers_schema_v2_with_cumulative_compound_actions(durable_index: FunctionIndex) -> None:
    handler = durable_index.functions["parallel_retries"].user_function
    now = datetime(2030, 1, 1, tzinfo=UTC)
    context = {
        "history": [
            h.orchestrator_started(now),
            h.execution_started(
                now, name="parallel_retries", input_json=None, instance_id="x", execution_id="e", parent=None
            ),
        ],
        "instanceId": "x",
        "isReplaying": False,
        "parentInstanceId": None,
        "input": None,
        "upperSchemaVersion": 1,
    }
    state = json.loads(handler(json.dumps(context)))
    assert state["schemaVersion"] == 1
    assert state["isDone"] is False
    (actions,) = state["actions"]
    (when_all,) = actions
    assert when_all["actionType"] == ActionType.WHEN_ALL
    leaves = episode.flatten(state["actions"])
    assert [a["actionType"] for a in leaves] == [1, 0, 1]
    assert leaves[0]["retryOptions"] == {"firstRetryIntervalInMilliseconds": 1000, "maxNumberOfAttempts": 4}
    assert leaves[0]["input"] == json.dumps({"key": "p1", "failures": 1})  # JSON text, not a value


def test_orchestrator_failure_is_raised_with_the_out_of_proc_state(durable_index: FunctionIndex) -> None:
    handler = durable_index.functions["failing_child"].user_function
    now = datetime(2030, 1, 1, tzinfo=UTC)
    history = [
        h.orchestrator_started(now),
        h.execution_started(
            now, name="failing_child", input_json=None, instance_id="x", execution_id="e", parent=None
        ),
        h.task_scheduled(now, 0, "always_fails", '"inside child"'),
        h.orchestrator_completed(now),
        h.orchestrator_started(now),
        h.task_failed(now, 0, "boom", "details"),
    ]
    outcome = episode.run_handler(
        handler,
        {
            "history": history,
            "instanceId": "x",
            "isReplaying": True,
            "parentInstanceId": None,
            "input": None,
            "upperSchemaVersion": 1,
        },
    )
    assert outcome.error is not None and "boom" in outcome.error
    assert [a["functionName"] for a in outcome.actions] == ["always_fails"]


def test_retry_policy_follows_dtfx_compute_next_delay() -> None:
    first = datetime(2030, 1, 1, tzinfo=UTC)
    policy = RetryPolicy(
        first_interval_ms=1000,
        max_attempts=5,
        backoff_coefficient=2.0,
        max_interval_ms=3000,
        timeout_ms=10_000,
    )
    assert policy.next_delay(0, first, first) == timedelta(seconds=1)
    assert policy.next_delay(1, first, first) == timedelta(seconds=2)
    assert policy.next_delay(2, first, first) == timedelta(seconds=3)  # capped by the max interval
    assert policy.next_delay(1, first, first + timedelta(seconds=10)) is None  # retry timeout reached
    sdk_default = RetryPolicy.from_action({"firstRetryIntervalInMilliseconds": 500, "maxNumberOfAttempts": 2})
    assert sdk_default.next_delay(5, first, first + timedelta(days=365)) == timedelta(milliseconds=500)


def _planner(ledger: Ledger) -> Planner:
    return Planner(
        ledger,
        instance_id="i",
        execution_id="e",
        now=datetime(2030, 1, 1, tzinfo=UTC),
        has_orchestrator=lambda _: True,
        has_activity=lambda _: True,
        has_entity=lambda _: True,
    )


def test_a_replay_that_schedules_fewer_actions_is_non_deterministic() -> None:
    ledger = Ledger()
    activity = {"actionType": 0, "functionName": "a", "input": "null"}
    _planner(ledger).apply([activity, {**activity, "functionName": "b"}], None)
    assert ledger.next_id == 2
    with pytest.raises(OrchestrationFailure, match=r"activity task named 'b' with sequence ID 1.*hasn't"):
        _planner(ledger).apply([activity], None)


def test_waiting_for_events_takes_no_id_but_timers_and_signals_do() -> None:
    ledger = Ledger()
    plan = _planner(ledger).apply(
        [
            {"actionType": 6, "externalEventName": "E", "reason": "r"},
            {"actionType": 5, "fireAt": "2030-01-01T00:01:00.000000Z", "isCanceled": False},
            {"actionType": 9, "instanceId": "@counter@k", "operation": "add", "input": "1"},
        ],
        None,
    )
    assert ledger.primaries == [(6, "E", None), (5, None, 0), (9, "@counter@k:add", 1)]
    assert [e["EventType"] for e in plan.scheduled] == [EventType.TIMER_CREATED, EventType.EVENT_SENT]


def test_sub_orchestration_ids_are_checked_like_the_extension() -> None:
    for bad in ("i", "I", "@counter@k"):
        with pytest.raises(
            OrchestrationFailure, match=r"sub-orchestration must be different|must not start with @"
        ):
            _planner(Ledger()).apply(
                [{"actionType": 2, "functionName": "child", "input": "null", "instanceId": bad}], None
            )
    plan = _planner(Ledger()).apply(
        [{"actionType": 2, "functionName": "child", "input": "1", "instanceId": None}], None
    )
    assert [s.instance_id for s in plan.sub_orchestrations] == ["e:0"]  # DTFx: {executionId}:{taskId}


def test_retry_chain_with_backoff_cap_and_timeout_from_the_extension_options() -> None:
    """Options the extension accepts but SDK 1.7.0 never sends, driven through the planner episode by episode."""
    start = datetime(2030, 1, 1, tzinfo=UTC)
    action = {
        "actionType": 1,
        "functionName": "a",
        "input": "null",
        "retryOptions": {
            "firstRetryIntervalInMilliseconds": 1000,
            "maxNumberOfAttempts": 5,
            "backoffCoefficient": 2,
            "maxRetryIntervalInMilliseconds": 3000,
            "retryTimeoutInMilliseconds": 9000,
        },
    }
    ledger = Ledger()

    def episode_at(seconds: float, event: dict[str, Any] | None) -> list[dict[str, Any]]:
        planner = Planner(
            ledger,
            instance_id="i",
            execution_id="e",
            now=start + timedelta(seconds=seconds),
            has_orchestrator=lambda _: True,
            has_activity=lambda _: True,
            has_entity=lambda _: True,
        )
        return planner.apply([action], event).scheduled

    assert [e["EventId"] for e in episode_at(0, None)] == [0]
    now = start
    fired_at = []
    attempt = 0
    for _ in range(3):
        failed = h.task_failed(now, attempt, "boom", "")
        (timer,) = episode_at((now - start).total_seconds(), failed)
        fire_at = h.parse_iso(timer["FireAt"])
        fired_at.append((fire_at - now).total_seconds())
        now = fire_at
        (next_attempt,) = episode_at((now - start).total_seconds(), h.timer_fired(now, timer["EventId"], now))
        assert (
            next_attempt["EventType"] == EventType.TASK_SCHEDULED
            and next_attempt["EventId"] == timer["EventId"] + 1
        )
        attempt = next_attempt["EventId"]
    assert fired_at == [1.0, 2.0, 3.0]  # 1 s, doubled, then capped at 3 s
    with pytest.raises(OrchestrationFailure, match="retry timeout expired after 4 attempt"):
        episode_at(9.5, h.task_failed(now, attempt, "boom", ""))
