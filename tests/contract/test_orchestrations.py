"""Orchestrations of the test app driven through the real SDK replay by the local engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devhost.durable import DurableEngine, ManualClock
from devhost.durable.episode import Ledger
from devhost.durable.history import EventType
from devhost.functions_host.index import FunctionIndex
from tests.contract.conftest import history_of, ids_of, run, running_engine, settle

pytestmark = pytest.mark.contract


def assert_no_open_retry_chains(engine: DurableEngine, instance_id: str) -> None:
    row = engine.store.get_instance(instance_id)
    assert row is not None
    ledger = Ledger.from_json(row.ledger)
    assert ledger.chains == {} and ledger.owner == {}


def test_activity_sequence_with_custom_status_and_async_activity(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            instance_id = await engine.start_new("sequence", "seq-1", ["Tokyo", "Lima"])
            status = await settle(engine, instance_id)
            assert status["runtimeStatus"] == "Completed"
            assert status["output"] == {"greetings": ["Hello Tokyo", "Hello Lima"], "doubled": 4}
            assert status["customStatus"] == {"done": 2}
            assert status["input"] == ["Tokyo", "Lima"]
            history = history_of(engine, instance_id)
            assert ids_of(history, EventType.TASK_SCHEDULED) == [0, 1, 2]
            assert ids_of(history, EventType.TASK_COMPLETED, "TaskScheduledId") == [0, 1, 2]
            assert [e["Name"] for e in history if e["EventType"] == EventType.TASK_SCHEDULED] == [
                "hello",
                "hello",
                "async_double",
            ]
            # One episode per completion: each opens with OrchestratorStarted and closes with OrchestratorCompleted.
            assert len(ids_of(history, EventType.ORCHESTRATOR_STARTED)) == 4
            assert len(ids_of(history, EventType.ORCHESTRATOR_COMPLETED)) == 4
            assert history[-1]["EventType"] == EventType.EXECUTION_COMPLETED
            stamps = [e["Timestamp"] for e in history]
            assert stamps == sorted(stamps)

    run(scenario())


def test_retry_ids_follow_the_sdk_counter_and_later_activities_get_their_results(
    durable_index: FunctionIndex, tmp_path: Path, app_module: dict[str, Any]
) -> None:
    clock = ManualClock()

    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path, clock=clock) as engine:
            instance_id = await engine.start_new("retry_then_continue", None, {"key": "r1", "failures": 2})
            await engine.wait_for_idle(10)
            status = await engine.get_status(instance_id)
            assert (
                status is not None and status["runtimeStatus"] == "Running"
            )  # waiting on the first retry timer
            status = await settle(engine, instance_id, clock, step=1.0)
            assert status["runtimeStatus"] == "Completed", status
            assert status["output"] == ["r1 ok after 3 attempts", "Hello after retries", 49]
            assert app_module["flaky_calls"]["r1"] == 3
            history = history_of(engine, instance_id)
            # attempt 0, timer 1, attempt 2, timer 3, attempt 4, then the later activities 5 and 6.
            assert ids_of(history, EventType.TASK_SCHEDULED) == [0, 2, 4, 5, 6]
            assert ids_of(history, EventType.TIMER_CREATED) == [1, 3]
            assert ids_of(history, EventType.TASK_FAILED, "TaskScheduledId") == [0, 2]
            assert ids_of(history, EventType.TIMER_FIRED, "TimerId") == [1, 3]
            created = [e for e in history if e["EventType"] == EventType.TIMER_CREATED]
            # firstRetryInterval 1000 ms after the failing episode's time.
            assert all(e["FireAt"] > e["Timestamp"] for e in created)
            assert_no_open_retry_chains(engine, instance_id)

    run(scenario())


def test_retry_exhausted_raises_the_last_failure_in_the_orchestrator(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    clock = ManualClock()

    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path, clock=clock) as engine:
            instance_id = await engine.start_new("retry_exhausted", None, None)
            status = await settle(engine, instance_id, clock, step=0.5)
            assert status["runtimeStatus"] == "Completed", status
            assert "always fails: twice" in status["output"]["caught"]
            assert status["output"]["after"] == 9
            history = history_of(engine, instance_id)
            # Two attempts, and DTFx's trailing timer after the last one before the task fails.
            assert ids_of(history, EventType.TASK_SCHEDULED) == [0, 2, 4]
            assert ids_of(history, EventType.TIMER_CREATED) == [1, 3]
            assert_no_open_retry_chains(engine, instance_id)

    run(scenario())


def test_parallel_retries_interleave_ids_in_history_order(
    durable_index: FunctionIndex, tmp_path: Path, app_module: dict[str, Any]
) -> None:
    clock = ManualClock()

    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path, clock=clock) as engine:
            instance_id = await engine.start_new("parallel_retries", None, None)
            status = await settle(engine, instance_id, clock, step=1.0)
            assert status["runtimeStatus"] == "Completed", status
            assert status["output"] == ["p1 ok after 2 attempts", 25, "p2 ok after 3 attempts", 36]
            history = history_of(engine, instance_id)
            scheduled = ids_of(history, EventType.TASK_SCHEDULED)
            timers = ids_of(history, EventType.TIMER_CREATED)
            # Every id used exactly once, no gaps: the engine and the SDK agree on the counter.
            assert sorted(scheduled + timers) == list(range(len(scheduled) + len(timers)))
            assert len(timers) == 3 and len(scheduled) == 7
            assert_no_open_retry_chains(engine, instance_id)

    run(scenario())


def test_retry_in_flight_while_new_activities_are_scheduled(
    durable_index: FunctionIndex, tmp_path: Path, app_module: dict[str, Any]
) -> None:
    clock = ManualClock()

    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path, clock=clock) as engine:
            for run_number in range(5):  # the first failure and the quick result race; every order must hold
                instance_id = await engine.start_new(
                    "retry_in_flight", None, {"key": f"f{run_number}", "failures": 1}
                )
                status = await settle(engine, instance_id, clock, step=1.0)
                assert status["runtimeStatus"] == "Completed", status
                assert status["output"][1:] == ["Hello while retrying", f"f{run_number} ok after 2 attempts"]
                history = history_of(engine, instance_id)
                used = ids_of(history, EventType.TASK_SCHEDULED) + ids_of(history, EventType.TIMER_CREATED)
                assert sorted(used) == list(range(5))

    run(scenario())


def test_fan_out_of_100_with_task_all(durable_index: FunctionIndex, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            instance_id = await engine.start_new("fan_out", None, 100)
            status = await settle(engine, instance_id)
            assert status["runtimeStatus"] == "Completed"
            assert status["output"] == sum(i * i for i in range(100))
            history = history_of(engine, instance_id)
            assert ids_of(history, EventType.TASK_SCHEDULED) == list(range(100))
            assert sorted(ids_of(history, EventType.TASK_COMPLETED, "TaskScheduledId")) == list(range(100))

    run(scenario())


def test_durable_timer_fires_only_when_the_manual_clock_reaches_it(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    clock = ManualClock()

    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path, clock=clock) as engine:
            instance_id = await engine.start_new("sleeper", None, 60)
            await engine.wait_for_idle(10)
            clock.advance(59)
            await engine.wait_for_idle(10)
            status = await engine.get_status(instance_id)
            assert status is not None and status["runtimeStatus"] == "Running"
            clock.advance(1)
            status = await settle(engine, instance_id)
            assert status["runtimeStatus"] == "Completed"
            assert status["output"] == 60.0  # current_utc_datetime moved to the firing episode
            history = history_of(engine, instance_id)
            assert ids_of(history, EventType.TIMER_CREATED) == [0]
            assert ids_of(history, EventType.TIMER_FIRED, "TimerId") == [0]

    run(scenario())


def test_wall_clock_timer(durable_index: FunctionIndex, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            instance_id = await engine.start_new("sleeper", None, 0.3)
            status = await settle(engine, instance_id)
            assert status["runtimeStatus"] == "Completed"
            assert status["output"] >= 0.3

    run(scenario())


def test_task_any_event_wins_and_the_cancelled_timer_never_fires(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    clock = ManualClock()

    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path, clock=clock) as engine:
            instance_id = await engine.start_new("approval", None, None)
            await engine.wait_for_idle(10)
            await engine.raise_event(instance_id, "Approval", {"by": "ops"})
            status = await settle(engine, instance_id)
            assert status["output"] == {"approved": {"by": "ops"}}
            clock.advance(7200)
            await engine.wait_for_idle(10)
            history = history_of(engine, instance_id)
            assert ids_of(history, EventType.TIMER_CREATED) == [0]
            assert ids_of(history, EventType.TIMER_FIRED, "TimerId") == []
            assert engine.store.next_due("") is None  # no timer left queued

    run(scenario())


def test_event_raised_before_the_deadline_beats_a_timer_delivered_with_it(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    clock = ManualClock()

    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path, clock=clock) as engine:
            instance_id = await engine.start_new("approval", None, None)
            await engine.wait_for_idle(10)
            await engine.raise_event(instance_id, "Approval", "just in time")
            clock.advance(3600)  # the timer falls due before the episode that receives the event runs
            status = await settle(engine, instance_id)
            assert status["output"] == {"approved": "just in time"}

    run(scenario())


def test_task_any_timer_wins(durable_index: FunctionIndex, tmp_path: Path) -> None:
    clock = ManualClock()

    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path, clock=clock) as engine:
            instance_id = await engine.start_new("approval", None, None)
            await engine.wait_for_idle(10)
            clock.advance(3600)
            status = await settle(engine, instance_id)
            assert status["output"] == "timed out"

    run(scenario())


@pytest.mark.filterwarnings("ignore:Potential duplicate Task completion:UserWarning")  # the SDK buffering it
def test_event_raised_before_the_orchestrator_waits_is_delivered(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            instance_id = await engine.start_new("early_event", None, None)
            await engine.raise_event(instance_id, "Go", {"n": 1})  # before the first episode even ran
            status = await settle(engine, instance_id)
            assert status["output"] == ["Hello early", {"n": 1}]
            history = history_of(engine, instance_id)
            kinds = [e["EventType"] for e in history]
            # Buffered by the SDK: the EventRaised sits in history before the wait that consumes it.
            assert kinds.index(EventType.EVENT_RAISED) < kinds.index(EventType.TASK_COMPLETED)

    run(scenario())


def test_two_events_of_one_name_are_consumed_in_order(durable_index: FunctionIndex, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            instance_id = await engine.start_new("two_events", None, None)
            await engine.wait_for_idle(10)
            await engine.raise_event(instance_id, "Step", "one")
            await engine.raise_event(instance_id, "Step", "two")
            status = await settle(engine, instance_id)
            assert status["output"] == ["one", "two"]

    run(scenario())


def test_continue_as_new_resets_history_and_carries_input(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            instance_id = await engine.start_new("eternal", "eternal-1", {"n": 1, "seen": []})
            status = await settle(engine, instance_id)
            assert status["runtimeStatus"] == "Completed"
            assert status["output"] == [1, 4, 9]
            assert status["input"] == {"n": 3, "seen": [1, 4]}
            history = history_of(engine, instance_id)
            # Only the last generation's history remains, numbered from zero again.
            assert ids_of(history, EventType.TASK_SCHEDULED) == [0]
            assert len(ids_of(history, EventType.EXECUTION_STARTED)) == 1

    run(scenario())


def test_continue_as_new_with_events_one_generation_each(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            instance_id = await engine.start_new("counting_monitor", None, 0)
            for tick in (1, 2, 3):
                await engine.wait_for_idle(10)
                await engine.raise_event(instance_id, "Tick", tick)
            status = await settle(engine, instance_id)
            assert status["output"] == 6
            assert status["customStatus"] == {"total": 6}

    run(scenario())


def test_monitor_with_events_deadlines_and_continue_as_new(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    clock = ManualClock()

    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path, clock=clock) as engine:
            instance_id = await engine.start_new(
                "machine_monitor", "machine-1", {"cycles": [], "commands": [], "missed": 0}
            )
            steps: list[tuple[str, Any]] = [
                ("CycleUploaded", 1),
                ("clock", 1800),  # generation 1: a cycle, then a missed deadline
                ("Command", "pause"),
                ("CycleUploaded", 2),  # generation 2
                ("CycleUploaded", 3),
                ("Command", "resume"),  # generation 3 ends the instance
            ]
            for name, value in steps:
                await engine.wait_for_idle(10)
                if name == "clock":
                    clock.advance(value)
                else:
                    await engine.raise_event(instance_id, name, value)
            status = await settle(engine, instance_id)
            assert status["runtimeStatus"] == "Completed", status
            assert status["output"] == {"cycles": [1, 4, 9], "commands": ["pause", "resume"], "missed": 1}
            assert status["customStatus"] == status["output"]
            history = history_of(engine, instance_id)
            # Last generation: two timers (cancelled) and one activity, numbered from zero again.
            assert ids_of(history, EventType.TIMER_CREATED) + ids_of(history, EventType.TASK_SCHEDULED) == [
                0,
                2,
                1,
            ]
            assert ids_of(history, EventType.TIMER_FIRED, "TimerId") == []

    run(scenario())


def test_continue_as_new_drops_delivered_unconsumed_events_like_the_extension(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    """The extension calls ContinueAsNew(input) (preserveUnprocessedEvents=false) for out-of-proc SDKs."""

    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            instance_id = await engine.start_new("counting_monitor", None, 0)
            await engine.raise_event(instance_id, "Tick", 1)
            await engine.raise_event(instance_id, "Tick", 2)  # delivered in the same episode, never awaited
            await engine.wait_for_idle(10)
            status = await engine.get_status(instance_id)
            assert status is not None
            assert status["runtimeStatus"] == "Running" and status["input"] == 1
            await engine.raise_event(instance_id, "Tick", 5)
            status = await settle(engine, instance_id)
            assert status["output"] == 6

    run(scenario())


def test_non_deterministic_orchestrator_fails_with_a_clear_message(
    durable_index: FunctionIndex, tmp_path: Path, app_module: dict[str, Any]
) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            instance_id = await engine.start_new("nondeterministic", None, None)
            status = await settle(engine, instance_id)
            assert status["runtimeStatus"] == "Failed"
            assert status["output"].startswith(
                "Orchestrator function 'nondeterministic' failed: Non-Deterministic"
            )
            assert "activity task named 'hello' with sequence ID 0" in status["output"]
            assert "activity task named 'square'" in status["output"]

    run(scenario())


def test_sub_orchestrations_results_failure_and_retry(durable_index: FunctionIndex, tmp_path: Path) -> None:
    clock = ManualClock()

    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path, clock=clock) as engine:
            instance_id = await engine.start_new("parent", "parent-1", None)
            status = await settle(engine, instance_id, clock)
            assert status["runtimeStatus"] == "Completed", status
            output = status["output"]
            parent_execution = history_of(engine, instance_id)[1]["OrchestrationInstance"]["ExecutionId"]
            assert output["first"] == {"child": f"{parent_execution}:0", "parent": "parent-1", "value": 42}
            assert output["named"] == {"child": "parent-1-named", "parent": "parent-1", "value": 10}
            assert "Orchestrator function 'failing_child' failed" in output["caught"]
            assert "always fails: inside child" in output["caught"]
            assert output["retried"] == "parent-1-sub ok after 2 attempts"
            history = history_of(engine, instance_id)
            assert ids_of(history, EventType.SUB_ORCHESTRATION_CREATED) == [0, 1, 2, 3, 5]
            assert ids_of(history, EventType.TIMER_CREATED) == [4]
            assert ids_of(history, EventType.SUB_ORCHESTRATION_FAILED, "TaskScheduledId") == [2, 3]
            assert ids_of(history, EventType.SUB_ORCHESTRATION_COMPLETED, "TaskScheduledId") == [0, 1, 5]
            failed_child = await engine.get_status(f"{parent_execution}:2")
            assert failed_child is not None and failed_child["runtimeStatus"] == "Failed"

    run(scenario())


def test_entity_signal_and_call_from_an_orchestration(durable_index: FunctionIndex, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            instance_id = await engine.start_new("uses_entity", None, "k1")
            status = await settle(engine, instance_id)
            assert status["runtimeStatus"] == "Completed", status
            assert status["output"]["value"] == 7
            assert "counter exploded on purpose" in status["output"]["error"]
            assert engine.read_entity_state_json("counter", "k1") == "7"
            history = history_of(engine, instance_id)
            sent = [e for e in history if e["EventType"] == EventType.EVENT_SENT]
            assert [e["EventId"] for e in sent] == [0, 1, 2, 3]
            assert {e["InstanceId"] for e in sent} == {"@counter@k1"}
            assert len(ids_of(history, EventType.EVENT_RAISED)) == 2  # the two call responses

    run(scenario())


def test_entity_signal_delete_and_state_from_the_engine_api(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            for amount in (1, 2, 3):
                engine.signal_entity_json("Counter", "k2", "add", str(amount))
            await engine.wait_for_idle(10)
            assert engine.read_entity_state_json("counter", "k2") == "6"
            engine.signal_entity_json("counter", "k2", "delete", None)
            await engine.wait_for_idle(10)
            assert engine.read_entity_state_json("counter", "k2") is None

    run(scenario())


def test_terminate_then_raise_and_purge(durable_index: FunctionIndex, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            instance_id = await engine.start_new("waits_forever", None, None)
            await engine.wait_for_idle(10)
            status = await engine.get_status(instance_id)
            assert status is not None
            assert status["runtimeStatus"] == "Running" and status["customStatus"] == "waiting for Never"
            assert engine.purge(instance_id) == 0  # a running instance is not purged
            assert engine.terminate(instance_id, "operator said so") == "Running"
            status = await settle(engine, instance_id)
            assert status["runtimeStatus"] == "Terminated"
            assert status["output"] == "operator said so"
            assert history_of(engine, instance_id)[-1]["EventType"] == EventType.EXECUTION_TERMINATED
            assert engine.raise_event_json(instance_id, "Never", "1") == "Terminated"
            assert engine.terminate(instance_id, "again") == "Terminated"
            assert engine.purge(instance_id) == 1
            assert await engine.get_status(instance_id) is None
            assert history_of(engine, instance_id) == []

    run(scenario())


def test_status_history_and_pending_state(durable_index: FunctionIndex, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            instance_id = engine.start_new_json("sequence", "shown", '["Oslo"]')
            pending = await engine.get_status(instance_id)
            assert pending is not None and pending["runtimeStatus"] == "Pending"
            status = await settle(engine, instance_id)
            shown = await engine.get_status(instance_id, show_history=True)
            assert shown is not None and status["runtimeStatus"] == "Completed"
            kinds = [e["EventType"] for e in shown["history"]]
            assert kinds == ["ExecutionStarted", "TaskCompleted", "TaskCompleted", "ExecutionCompleted"]
            assert shown["history"][1]["FunctionName"] == "hello"

    run(scenario())


def test_starting_a_running_instance_id_again_is_refused(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    from devhost.durable.engine import InstanceExists, UnknownFunction

    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            await engine.start_new("waits_forever", "only-one", None)
            with pytest.raises(InstanceExists):
                await engine.start_new("waits_forever", "only-one", None)
            with pytest.raises(UnknownFunction):
                await engine.start_new("hello", None, None)  # an activity, not an orchestrator

    run(scenario())


def test_unknown_activity_and_durable_http_fail_the_instance(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path) as engine:
            instance_id = await engine.start_new("calls_missing", None, None)
            status = await settle(engine, instance_id)
            assert status["runtimeStatus"] == "Failed"
            assert "The function 'no_such_activity' doesn't exist" in status["output"]
            durable_http = await engine.start_new("calls_http", None, None)
            status = await settle(engine, durable_http)
            assert status["runtimeStatus"] == "Failed"
            assert "call_http (durable HTTP) is not supported" in status["output"]

    run(scenario())


@pytest.mark.filterwarnings("ignore:Potential duplicate Task completion:UserWarning")
def test_every_event_type_the_engine_emits_is_replayed_by_the_sdk(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    """One place that lists the event types sent to the SDK; each scenario above checks their meaning."""
    clock = ManualClock()
    emitted: set[int] = set()

    async def scenario() -> None:
        async with running_engine(durable_index, tmp_path, clock=clock) as engine:
            finished = []
            for name, input_ in [
                ("sequence", ["x"]),
                ("retry_exhausted", None),
                ("parent", None),
                ("sleeper", 5),
                ("uses_entity", "types"),
                ("early_event", None),
            ]:
                instance_id = await engine.start_new(name, None, input_)
                if name == "early_event":
                    await engine.raise_event(instance_id, "Go", 1)
                status = await settle(engine, instance_id, clock)
                assert status["runtimeStatus"] == "Completed", status
                finished.append(instance_id)
            stopped = await engine.start_new("waits_forever", None, None)
            await engine.wait_for_idle(10)
            engine.terminate(stopped, "types")
            await settle(engine, stopped)
            for instance_id in [*finished, stopped]:
                emitted.update(e["EventType"] for e in history_of(engine, instance_id))

    run(scenario())
    assert emitted == {
        EventType.EXECUTION_STARTED,
        EventType.EXECUTION_COMPLETED,
        EventType.EXECUTION_TERMINATED,
        EventType.TASK_SCHEDULED,
        EventType.TASK_COMPLETED,
        EventType.TASK_FAILED,
        EventType.SUB_ORCHESTRATION_CREATED,
        EventType.SUB_ORCHESTRATION_COMPLETED,
        EventType.SUB_ORCHESTRATION_FAILED,
        EventType.TIMER_CREATED,
        EventType.TIMER_FIRED,
        EventType.ORCHESTRATOR_STARTED,
        EventType.ORCHESTRATOR_COMPLETED,
        EventType.EVENT_SENT,
        EventType.EVENT_RAISED,
    }
