# The SDK ships no type information, so its decorators are untyped for mypy.
# mypy: disable-error-code="untyped-decorator"
"""Test-only function app for the local Durable extension's contract tests (never product code).

Every orchestrator exercises one part of the out-of-process protocol through the real SDK replay.
Activities that tests count append one line per execution to the file named by the
DURABLE_APP_LOG environment variable, so executions can be counted across process restarts.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

# Test controls (module state: each test resets what it uses through reset()).
flaky_calls: Counter[str] = Counter()
replay_counter = {"value": 0}
gate_entered = threading.Event()
gate_release = threading.Event()
probe_lock = threading.Lock()
probe_state = {"active": 0, "peak": 0}


def reset() -> None:
    flaky_calls.clear()
    probe_state.update(active=0, peak=0)
    replay_counter["value"] = 0
    gate_entered.clear()
    gate_release.clear()


def _log_execution(line: str) -> None:
    path = os.environ.get("DURABLE_APP_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(line + "\n")
            log.flush()
            os.fsync(log.fileno())


# -- activities --------------------------------------------------------------------------------
@app.activity_trigger(input_name="name")
def hello(name: str) -> str:
    _log_execution(f"hello:{name}")
    return f"Hello {name}"


@app.activity_trigger(input_name="n")
def square(n: int) -> int:
    return n * n


@app.activity_trigger(input_name="n")
async def async_double(n: int) -> int:
    await asyncio.sleep(0)
    return 2 * n


@app.activity_trigger(input_name="payload")
def flaky(payload: dict[str, Any]) -> str:
    """Fails `failures` times for a key, then succeeds: counts attempts per key."""
    key = payload["key"]
    flaky_calls[key] += 1
    if flaky_calls[key] <= payload["failures"]:
        raise RuntimeError(f"flaky failure {flaky_calls[key]} for {key}")
    return f"{key} ok after {flaky_calls[key]} attempts"


@app.activity_trigger(input_name="reason")
def always_fails(reason: str) -> None:
    raise ValueError(f"always fails: {reason}")


@app.activity_trigger(input_name="label")
def gate(label: str) -> str:
    """Blocks until the test releases it (restart test)."""
    _log_execution(f"gate:{label}")
    gate_entered.set()
    if not gate_release.wait(timeout=60):
        raise TimeoutError("gate was never released")
    return f"passed {label}"


@app.activity_trigger(input_name="n")
def probe(n: int) -> int:
    """Records how many activities run at the same time."""
    with probe_lock:
        probe_state["active"] += 1
        probe_state["peak"] = max(probe_state["peak"], probe_state["active"])
    time.sleep(0.05)
    with probe_lock:
        probe_state["active"] -= 1
    return n


@app.activity_trigger(input_name="step")
def slow_step(step: int) -> int:
    """One step of the crash test: logged, then slow enough that a kill lands mid-orchestration."""
    _log_execution(f"slow_step:{step}")
    time.sleep(float(os.environ.get("DURABLE_APP_STEP_SECONDS", "0.4")))
    return step * 10


# -- orchestrators -----------------------------------------------------------------------------
@app.orchestration_trigger(context_name="context")
def sequence(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    names = context.get_input() or ["Tokyo", "Seattle", "London"]
    results = []
    for position, name in enumerate(names):
        context.set_custom_status({"done": position})
        results.append((yield context.call_activity(hello, name)))
    context.set_custom_status({"done": len(names)})
    doubled = yield context.call_activity(async_double, len(results))
    return {"greetings": results, "doubled": doubled}


@app.orchestration_trigger(context_name="context")
def retry_then_continue(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=3)
    first = yield context.call_activity_with_retry(flaky, options, context.get_input())
    second = yield context.call_activity(hello, "after retries")
    third = yield context.call_activity(square, 7)
    return [first, second, third]


@app.orchestration_trigger(context_name="context")
def retry_exhausted(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    options = df.RetryOptions(first_retry_interval_in_milliseconds=500, max_number_of_attempts=2)
    try:
        yield context.call_activity_with_retry(always_fails, options, "twice")
    except Exception as exc:  # the orchestrator sees the last attempt's failure
        after = yield context.call_activity(square, 3)
        return {"caught": str(exc), "after": after}
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def parallel_retries(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=4)
    tasks = [
        context.call_activity_with_retry(flaky, options, {"key": "p1", "failures": 1}),
        context.call_activity(square, 5),
        context.call_activity_with_retry(flaky, options, {"key": "p2", "failures": 2}),
    ]
    results = yield context.task_all(tasks)
    tail = yield context.call_activity(square, 6)
    return [*results, tail]


@app.orchestration_trigger(context_name="context")
def retry_in_flight(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    """A retry still running while new activities are scheduled: both take ids from one counter."""
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=3)
    retried = context.call_activity_with_retry(flaky, options, context.get_input())
    quick = context.call_activity(square, 2)
    first = yield context.task_any([retried, quick])
    middle = yield context.call_activity(hello, "while retrying")
    last = yield retried
    return [first.result, middle, last]


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    count = context.get_input()
    squares = yield context.task_all([context.call_activity(square, i) for i in range(count)])
    return sum(squares)


@app.orchestration_trigger(context_name="context")
def probe_fan_out(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    results = yield context.task_all([context.call_activity(probe, i) for i in range(context.get_input())])
    return len(results)


@app.orchestration_trigger(context_name="context")
def sleeper(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    started = context.current_utc_datetime
    yield context.create_timer(started + timedelta(seconds=context.get_input()))
    return (context.current_utc_datetime - started).total_seconds()


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    deadline = context.current_utc_datetime + timedelta(hours=1)
    timeout = context.create_timer(deadline)
    answer = context.wait_for_external_event("Approval")
    winner = yield context.task_any([answer, timeout])
    if winner == answer:
        timeout.cancel()
        return {"approved": answer.result}
    return "timed out"


@app.orchestration_trigger(context_name="context")
def early_event(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    greeting = yield context.call_activity(hello, "early")
    data = yield context.wait_for_external_event("Go")
    return [greeting, data]


@app.orchestration_trigger(context_name="context")
def two_events(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    first = yield context.wait_for_external_event("Step")
    second = yield context.wait_for_external_event("Step")
    return [first, second]


@app.orchestration_trigger(context_name="context")
def eternal(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    state = context.get_input()
    step = yield context.call_activity(square, state["n"])
    history = [*state["seen"], step]
    if state["n"] >= 3:
        return history
    context.continue_as_new({"n": state["n"] + 1, "seen": history})


@app.orchestration_trigger(context_name="context")
def counting_monitor(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    """Continue-as-new with events: each generation consumes one 'Tick' event."""
    total = context.get_input()
    tick = yield context.wait_for_external_event("Tick")
    total += tick
    context.set_custom_status({"total": total})
    if total >= 6:
        return total
    context.continue_as_new(total)


@app.orchestration_trigger(context_name="context")
def machine_monitor(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    """The product's per-machine shape: events or a deadline, two per generation, then continue-as-new."""
    state = context.get_input()
    for _ in range(2):
        timer = context.create_timer(context.current_utc_datetime + timedelta(minutes=30))
        cycle = context.wait_for_external_event("CycleUploaded")
        command = context.wait_for_external_event("Command")
        winner = yield context.task_any([cycle, command, timer])
        if winner == timer:
            state["missed"] += 1
            continue
        timer.cancel()
        if winner == cycle:
            state["cycles"].append((yield context.call_activity(square, cycle.result)))
        else:
            state["commands"].append(command.result)
        context.set_custom_status(state)
    if len(state["cycles"]) >= 3:
        return state
    context.continue_as_new(state)


@app.orchestration_trigger(context_name="context")
def nondeterministic(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    # Deliberately wrong: a module-level counter differs between the first run and the replays.
    replay_counter["value"] += 1
    if replay_counter["value"] == 1:
        yield context.call_activity(hello, "first run")
    else:
        yield context.call_activity(square, 4)
    return "should not complete"


@app.orchestration_trigger(context_name="context")
def child(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    value = context.get_input()
    doubled = yield context.call_activity(async_double, value)
    return {"child": context.instance_id, "parent": context.parent_instance_id, "value": doubled}


@app.orchestration_trigger(context_name="context")
def failing_child(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    yield context.call_activity(always_fails, "inside child")
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def flaky_child(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    # Not via the flaky activity: a sub-orchestration retry needs the *orchestration* to fail.
    result = yield context.call_activity(flaky, context.get_input())
    return result


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    first = yield context.call_sub_orchestrator(child, 21)
    named = yield context.call_sub_orchestrator(child, 5, instance_id=f"{context.instance_id}-named")
    try:
        yield context.call_sub_orchestrator(failing_child, None)
        caught = None
    except Exception as exc:  # the child's failure surfaces here
        caught = str(exc)
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=3)
    retried = yield context.call_sub_orchestrator_with_retry(
        flaky_child, options, {"key": f"{context.instance_id}-sub", "failures": 1}
    )
    return {"first": first, "named": named, "caught": caught, "retried": retried}


@app.orchestration_trigger(context_name="context")
def uses_entity(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    counter = df.EntityId("counter", context.get_input())
    context.signal_entity(counter, "add", 5)
    context.signal_entity(counter, "add", 2)
    value = yield context.call_entity(counter, "get")
    try:
        yield context.call_entity(counter, "explode")
        error = None
    except Exception as exc:
        error = str(exc)
    return {"value": value, "error": error}


@app.orchestration_trigger(context_name="context")
def waits_forever(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    context.set_custom_status("waiting for Never")
    yield context.wait_for_external_event("Never")
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def gated(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    before = yield context.call_activity(hello, "before gate")
    passed = yield context.call_activity(gate, "g1")
    after = yield context.call_activity(hello, "after gate")
    return [before, passed, after]


@app.orchestration_trigger(context_name="context")
def crash_steps(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    results = []
    for step in range(context.get_input()):
        results.append((yield context.call_activity(slow_step, step)))
    return results


@app.orchestration_trigger(context_name="context")
def calls_missing(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    return (yield context.call_activity("no_such_activity", 1))


@app.orchestration_trigger(context_name="context")
def calls_http(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    return (yield context.call_http("GET", "https://example.invalid/"))


@app.orchestration_trigger(context_name="context")
def trivial(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    return (yield context.call_activity(square, context.get_input()))


# -- entities ----------------------------------------------------------------------------------
@app.entity_trigger(context_name="context")
def counter(context: df.DurableEntityContext) -> None:
    value = context.get_state(lambda: 0)
    operation = context.operation_name
    if operation == "add":
        value += context.get_input()
    elif operation == "reset":
        value = 0
    elif operation == "get":
        context.set_result(value)
    elif operation == "explode":
        raise RuntimeError("counter exploded on purpose")
    elif operation == "delete":
        context.destruct_on_exit()
        return
    context.set_state(value)


# -- HTTP starters (unchanged SDK client code, as product starters look) ------------------------
@app.route(route="start/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(req.route_params["name"], None, req.get_json() if body else None)
    response: func.HttpResponse = client.create_check_status_response(req, instance_id)
    return response


@app.route(route="run/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(req.route_params["name"], None, req.get_json() if body else None)
    response: func.HttpResponse = await client.wait_for_completion_or_create_check_status_response(
        req, instance_id, 20000, 100
    )
    return response
