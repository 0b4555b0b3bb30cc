"""One orchestrator episode: call the SDK's replay handler, then translate its actions as DTFx would.

The SDK (azure-functions-durable 1.7.0, replay schema V2) returns the *cumulative* list of actions
the generator has yielded in this execution. The real extension replays that list through DTFx,
which numbers every scheduled task, timer, sub-orchestration and sent event with one counter and
matches the numbers against the history. This module keeps that numbering in a small `Ledger`
persisted with the instance:

* `primaries` are the flattened actions seen so far, with the id each one took. A replay whose
  action list disagrees with this prefix (another kind or name at the same position, or fewer
  actions) is the non-determinism DTFx reports, and the instance fails.
* A `Chain` follows one call-with-retry. The SDK takes the next ids from its counter when it
  *processes* a failure (retry timer) or the retry timer firing (next attempt); so does DTFx's
  RetryInterceptor. The engine delivers at most one such event per episode, as the last new
  event, so the ids the SDK takes while handling it come after every action yielded earlier in
  the same episode: new primaries first, then the retry's id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from devhost.durable import history as h
from devhost.durable.history import Event, EventType

OUT_OF_PROC_LABEL = "\n\n$OutOfProcData$:"
REPLAY_SCHEMA_V2 = 1

# Action types of the out-of-proc protocol (azure/durable_functions/models/actions/ActionType.py).
CALL_ACTIVITY = 0
CALL_ACTIVITY_WITH_RETRY = 1
CALL_SUB_ORCHESTRATOR = 2
CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
CONTINUE_AS_NEW = 4
CREATE_TIMER = 5
WAIT_FOR_EXTERNAL_EVENT = 6
CALL_ENTITY = 7
CALL_HTTP = 8
SIGNAL_ENTITY = 9
WHEN_ANY = 11
WHEN_ALL = 12

_TAKES_ID = {
    CALL_ACTIVITY,
    CALL_ACTIVITY_WITH_RETRY,
    CALL_SUB_ORCHESTRATOR,
    CALL_SUB_ORCHESTRATOR_WITH_RETRY,
    CONTINUE_AS_NEW,
    CREATE_TIMER,
    CALL_ENTITY,
    CALL_HTTP,
    SIGNAL_ENTITY,
}
_ACTION_NOUNS = {
    CALL_ACTIVITY: "an activity task",
    CALL_ACTIVITY_WITH_RETRY: "an activity task (with retry)",
    CALL_SUB_ORCHESTRATOR: "a sub-orchestration",
    CALL_SUB_ORCHESTRATOR_WITH_RETRY: "a sub-orchestration (with retry)",
    CONTINUE_AS_NEW: "continue-as-new",
    CREATE_TIMER: "a durable timer",
    WAIT_FOR_EXTERNAL_EVENT: "a wait for an event",
    CALL_ENTITY: "an entity call",
    CALL_HTTP: "a durable HTTP call",
    SIGNAL_ENTITY: "an entity signal",
}


class OrchestrationFailure(Exception):
    """The instance must end Failed with this message (the extension's own checks, not user errors)."""


@dataclass
class RetryPolicy:
    """The extension's RetryOptions; SDK 1.7.0 only sends the first two, the rest keep .NET defaults."""

    first_interval_ms: float
    max_attempts: int
    backoff_coefficient: float = 1.0
    max_interval_ms: float | None = None
    timeout_ms: float | None = None

    @classmethod
    def from_action(cls, options: dict[str, Any]) -> RetryPolicy:
        return cls(
            first_interval_ms=float(options["firstRetryIntervalInMilliseconds"]),
            max_attempts=int(options["maxNumberOfAttempts"]),
            backoff_coefficient=float(options.get("backoffCoefficient") or 1.0),
            max_interval_ms=_optional_float(options.get("maxRetryIntervalInMilliseconds")),
            timeout_ms=_optional_float(options.get("retryTimeoutInMilliseconds")),
        )

    def next_delay(self, retry_count: int, first_attempt: datetime, now: datetime) -> timedelta | None:
        """DTFx RetryInterceptor.ComputeNextDelay: None once the retry timeout has passed."""
        if self.timeout_ms is not None and now >= first_attempt + timedelta(milliseconds=self.timeout_ms):
            return None
        delay_ms = self.first_interval_ms * self.backoff_coefficient**retry_count
        if self.max_interval_ms is not None:
            delay_ms = min(delay_ms, self.max_interval_ms)
        return timedelta(milliseconds=delay_ms)


def _optional_float(value: Any) -> float | None:
    return None if value in (None, 0) else float(value)


@dataclass
class Chain:
    """A call-with-retry in flight: which id is the current attempt or the retry timer."""

    action_type: int
    name: str
    input: str | None
    sub_instance_id: str | None
    policy: RetryPolicy
    first_attempt: str
    attempts: int = 1
    attempt_id: int = -1
    timer_id: int | None = None


@dataclass
class Ledger:
    primaries: list[tuple[int, str | None, int | None]] = field(default_factory=list)
    next_id: int = 0
    chains: dict[int, Chain] = field(default_factory=dict)
    owner: dict[int, int] = field(default_factory=dict)  # attempt/timer id -> chain key

    def to_json(self) -> str:
        return json.dumps(
            {
                "primaries": self.primaries,
                "next_id": self.next_id,
                "chains": {str(k): asdict(c) for k, c in self.chains.items()},
                "owner": {str(k): v for k, v in self.owner.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Ledger:
        data = json.loads(text)
        chains = {}
        for key, raw in data["chains"].items():
            raw["policy"] = RetryPolicy(**raw["policy"])
            chains[int(key)] = Chain(**raw)
        return cls(
            primaries=[(p[0], p[1], p[2]) for p in data["primaries"]],
            next_id=data["next_id"],
            chains=chains,
            owner={int(k): v for k, v in data["owner"].items()},
        )

    def take_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def chain_of(self, event: Event) -> Chain | None:
        """The retry chain a delivered event advances (a failed attempt or its retry timer), if any."""
        kind = event["EventType"]
        if kind in (EventType.TASK_FAILED, EventType.SUB_ORCHESTRATION_FAILED):
            key = self.owner.get(event["TaskScheduledId"])
        elif kind == EventType.TIMER_FIRED:
            key = self.owner.get(event["TimerId"])
        else:
            return None
        return self.chains.get(key) if key is not None else None


@dataclass
class Outcome:
    """What the SDK handler returned for one episode."""

    actions: list[dict[str, Any]]
    done: bool
    output_json: str | None
    custom_status_json: str | None
    error: str | None


def run_handler(handler: Callable[[str], str], context: dict[str, Any]) -> Outcome:
    """Call the SDK's orchestrator handler; user exceptions come back wrapped with the state JSON."""
    try:
        raw = handler(json.dumps(context))
    except Exception as exc:  # the SDK signals orchestrator failure by raising
        message = str(exc)
        if OUT_OF_PROC_LABEL in message:
            error, _, state_text = message.partition(OUT_OF_PROC_LABEL)
            state = json.loads(state_text)
            return Outcome(
                actions=flatten(state.get("actions", [])),
                done=False,
                output_json=None,
                custom_status_json=_json_or_none(state, "customStatus"),
                error=state.get("error") or error,
            )
        return Outcome([], False, None, None, f"{type(exc).__name__}: {exc}")
    state = json.loads(raw)
    if state.get("schemaVersion", 0) < REPLAY_SCHEMA_V2:
        raise OrchestrationFailure(
            f"the SDK answered with replay schema {state.get('schemaVersion')}; expected V2"
        )
    return Outcome(
        actions=flatten(state.get("actions", [])),
        done=bool(state.get("isDone")),
        output_json=_json_or_none(state, "output"),
        custom_status_json=_json_or_none(state, "customStatus"),
        error=state.get("error"),
    )


def _json_or_none(state: dict[str, Any], key: str) -> str | None:
    return json.dumps(state[key]) if key in state else None


def flatten(actions: list[Any]) -> list[dict[str, Any]]:
    """Depth-first, in yield order: the order in which the SDK numbers the leaves."""

    def walk(items: list[Any]) -> Iterator[dict[str, Any]]:
        for item in items:
            if isinstance(item, list):
                yield from walk(item)
            elif item["actionType"] in (WHEN_ANY, WHEN_ALL):
                yield from walk(item["compoundActions"])
            else:
                yield item

    return list(walk(actions))


def signature(action: dict[str, Any]) -> tuple[int, str | None]:
    kind = action["actionType"]
    if kind in (
        CALL_ACTIVITY,
        CALL_ACTIVITY_WITH_RETRY,
        CALL_SUB_ORCHESTRATOR,
        CALL_SUB_ORCHESTRATOR_WITH_RETRY,
    ):
        return kind, action["functionName"]
    if kind == WAIT_FOR_EXTERNAL_EVENT:
        return kind, action["externalEventName"]
    if kind in (CALL_ENTITY, SIGNAL_ENTITY):
        return kind, f"{action['instanceId']}:{action['operation']}"
    return kind, None


# -- the plan an episode produces ------------------------------------------------------------------


@dataclass
class NewActivity:
    task_id: int
    name: str
    input: str | None


@dataclass
class NewTimer:
    timer_id: int
    fire_at: datetime


@dataclass
class NewSubOrchestration:
    task_id: int
    name: str
    instance_id: str
    input: str | None


@dataclass
class NewEntityOp:
    entity_id: str
    request: dict[str, Any]


@dataclass
class Plan:
    scheduled: list[Event] = field(default_factory=list)
    activities: list[NewActivity] = field(default_factory=list)
    timers: list[NewTimer] = field(default_factory=list)
    cancelled_timers: list[int] = field(default_factory=list)
    sub_orchestrations: list[NewSubOrchestration] = field(default_factory=list)
    entity_ops: list[NewEntityOp] = field(default_factory=list)
    continue_as_new: str | None = None  # the next execution's input JSON
    continued: bool = False


class Planner:
    """Turns an Outcome into history events and work, keeping DTFx's id numbering (see module doc)."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        instance_id: str,
        execution_id: str,
        now: datetime,
        parent_instance_id: str | None = None,
        has_orchestrator: Callable[[str], bool],
        has_activity: Callable[[str], bool],
        has_entity: Callable[[str], bool],
    ) -> None:
        self.ledger = ledger
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.parent_instance_id = parent_instance_id
        self.now = now
        self._has_orchestrator = has_orchestrator
        self._has_activity = has_activity
        self._has_entity = has_entity
        self.plan = Plan()

    def check_determinism(self, actions: list[dict[str, Any]]) -> None:
        known = self.ledger.primaries
        for position, (kind, name, task_id) in enumerate(known):
            if position >= len(actions):
                raise OrchestrationFailure(
                    _nondeterminism(
                        kind, name, task_id, "the current replay execution hasn't (yet?) scheduled it"
                    )
                )
            now_kind, now_name = signature(actions[position])
            if (now_kind, now_name) != (kind, name):
                raise OrchestrationFailure(
                    _nondeterminism(
                        kind,
                        name,
                        task_id,
                        f"the current replay execution scheduled {_describe(now_kind, now_name)} in its place",
                    )
                )

    def apply(
        self, actions: list[dict[str, Any]], retry_event: Event | None, delivered: Sequence[Event] = ()
    ) -> Plan:
        """Plan the work for this episode's actions; `delivered` are the new events it consumed."""
        self.check_determinism(actions)
        self._close_succeeded_chains(delivered)
        known = len(self.ledger.primaries)
        # Cancelled timers: an action's isCanceled flag flips on a later replay, so look at all of them.
        for position, action in enumerate(actions[:known]):
            timer_id = self.ledger.primaries[position][2]
            if action["actionType"] == CREATE_TIMER and action.get("isCanceled") and timer_id is not None:
                self.plan.cancelled_timers.append(timer_id)
        for action in actions[known:]:
            self._schedule_primary(action)
            if self.plan.continued:
                break
        if retry_event is not None:
            self._advance_chain(retry_event)
        return self.plan

    # -- primaries ------------------------------------------------------------------------------
    def _schedule_primary(self, action: dict[str, Any]) -> None:
        kind, name = signature(action)
        task_id = self.ledger.take_id() if kind in _TAKES_ID else None
        self.ledger.primaries.append((kind, name, task_id))
        if kind in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY):
            assert task_id is not None
            if not self._has_activity(action["functionName"]):
                raise OrchestrationFailure(
                    f"The function '{action['functionName']}' doesn't exist, is disabled, or is not an activity function."
                )
            self._schedule_activity(task_id, action["functionName"], action.get("input"))
            if kind == CALL_ACTIVITY_WITH_RETRY:
                self._open_chain(task_id, action, None)
        elif kind in (CALL_SUB_ORCHESTRATOR, CALL_SUB_ORCHESTRATOR_WITH_RETRY):
            assert task_id is not None
            if not self._has_orchestrator(action["functionName"]):
                raise OrchestrationFailure(
                    f"The function '{action['functionName']}' doesn't exist, is disabled, or is not an orchestrator function."
                )
            explicit_id = action.get("instanceId") or None
            if explicit_id is not None:
                self._check_sub_instance_id(explicit_id)
            self._schedule_sub_orchestration(
                task_id, action["functionName"], action.get("input"), explicit_id
            )
            if kind == CALL_SUB_ORCHESTRATOR_WITH_RETRY:
                self._open_chain(task_id, action, explicit_id)
        elif kind == CREATE_TIMER:
            assert task_id is not None
            fire_at = h.parse_iso(action["fireAt"])
            self.plan.scheduled.append(h.timer_created(self.now, task_id, fire_at))
            if action.get("isCanceled"):
                return
            self.plan.timers.append(NewTimer(task_id, fire_at))
        elif kind in (CALL_ENTITY, SIGNAL_ENTITY):
            assert task_id is not None
            self._send_entity_operation(task_id, action, signal=kind == SIGNAL_ENTITY)
        elif kind == CONTINUE_AS_NEW:
            self.plan.continued = True
            self.plan.continue_as_new = action.get("input")
        elif kind == CALL_HTTP:
            raise OrchestrationFailure(
                "call_http (durable HTTP) is not supported by the local Durable extension"
            )

    def _check_sub_instance_id(self, instance_id: str) -> None:
        # The extension's own argument checks (DurableOrchestrationContext.CallDurableTaskFunctionAsync).
        if instance_id.lower() in (self.instance_id.lower(), (self.parent_instance_id or "").lower()):
            raise OrchestrationFailure(
                "The instance ID of a sub-orchestration must be different than the instance ID of a parent orchestration."
            )
        if instance_id.startswith("@"):
            raise OrchestrationFailure("Orchestration instance ids must not start with @")

    def _schedule_activity(self, task_id: int, name: str, input_json: str | None) -> None:
        self.plan.scheduled.append(h.task_scheduled(self.now, task_id, name, input_json))
        self.plan.activities.append(NewActivity(task_id, name, input_json))

    def _schedule_sub_orchestration(
        self, task_id: int, name: str, input_json: str | None, explicit_id: str | None
    ) -> None:
        # DTFx names an unnamed sub-orchestration after the parent's execution and the task id.
        child_id = explicit_id or f"{self.execution_id}:{task_id}"
        self.plan.scheduled.append(h.sub_orchestration_created(self.now, task_id, name, child_id, input_json))
        self.plan.sub_orchestrations.append(NewSubOrchestration(task_id, name, child_id, input_json))

    def _send_entity_operation(self, task_id: int, action: dict[str, Any], *, signal: bool) -> None:
        entity_id = action["instanceId"]
        entity_name = entity_id[1:].split("@", 1)[0]
        if not self._has_entity(entity_name):
            raise OrchestrationFailure(
                f"The function '{entity_name}' doesn't exist, is disabled, or is not an entity function."
            )
        request = {
            "id": str(uuid.uuid4()),
            "op": action["operation"],
            "signal": signal,
            "input": action.get("input"),
            "parent": None if signal else self.instance_id,
            "parentExecution": None if signal else self.execution_id,
        }
        self.plan.scheduled.append(
            h.event_sent(self.now, task_id, entity_id, action["operation"], json.dumps(request))
        )
        self.plan.entity_ops.append(NewEntityOp(entity_id, request))

    # -- retries --------------------------------------------------------------------------------
    def _open_chain(self, task_id: int, action: dict[str, Any], explicit_id: str | None) -> None:
        self.ledger.chains[task_id] = Chain(
            action_type=action["actionType"],
            name=action["functionName"],
            input=action.get("input"),
            sub_instance_id=explicit_id,
            policy=RetryPolicy.from_action(action["retryOptions"]),
            first_attempt=h.iso(self.now),
            attempt_id=task_id,
        )
        self.ledger.owner[task_id] = task_id

    def _advance_chain(self, event: Event) -> None:
        key = self._chain_key(event)
        chain = self.ledger.chains[key]
        if event["EventType"] == EventType.TIMER_FIRED:
            chain.timer_id = None
            if chain.attempts >= chain.policy.max_attempts:
                # The SDK fails the task itself after this last timer (DTFx's trailing retry timer).
                self._forget_chain(key)
                return
            attempt_id = self.ledger.take_id()
            chain.attempts += 1
            chain.attempt_id = attempt_id
            self.ledger.owner[attempt_id] = key
            if chain.action_type == CALL_ACTIVITY_WITH_RETRY:
                self._schedule_activity(attempt_id, chain.name, chain.input)
            else:
                self._schedule_sub_orchestration(attempt_id, chain.name, chain.input, chain.sub_instance_id)
            return
        delay = chain.policy.next_delay(chain.attempts - 1, h.parse_iso(chain.first_attempt), self.now)
        if delay is None:
            # DTFx stops retrying without a timer; SDK 1.7.0 only counts attempts and would wait for
            # one forever, so end the instance with the reason instead of leaving it hanging.
            raise OrchestrationFailure(
                f"{_describe(chain.action_type, chain.name)} failed and its retry timeout expired after "
                f"{chain.attempts} attempt(s): {event.get('Reason')}"
            )
        timer_id = self.ledger.take_id()
        chain.timer_id = timer_id
        self.ledger.owner[timer_id] = key
        fire_at = self.now + delay
        self.plan.scheduled.append(h.timer_created(self.now, timer_id, fire_at))
        self.plan.timers.append(NewTimer(timer_id, fire_at))

    def _close_succeeded_chains(self, delivered: Sequence[Event]) -> None:
        for event in delivered:
            if event["EventType"] in (EventType.TASK_COMPLETED, EventType.SUB_ORCHESTRATION_COMPLETED):
                key = self.ledger.owner.get(event["TaskScheduledId"])
                if key is not None:
                    self._forget_chain(key)

    def _forget_chain(self, key: int) -> None:
        self.ledger.chains.pop(key, None)
        for task_id in [t for t, owner in self.ledger.owner.items() if owner == key]:
            del self.ledger.owner[task_id]

    def _chain_key(self, event: Event) -> int:
        id_field = "TimerId" if event["EventType"] == EventType.TIMER_FIRED else "TaskScheduledId"
        return self.ledger.owner[int(event[id_field])]


def _describe(kind: int, name: str | None) -> str:
    noun = _ACTION_NOUNS.get(kind, f"action type {kind}")
    return f"{noun} named '{name}'" if name else noun


def _nondeterminism(kind: int, name: str | None, task_id: int | None, what: str) -> str:
    where = f" with sequence ID {task_id}" if task_id is not None else ""
    return (
        f"Non-Deterministic workflow detected: a previous execution of this orchestration scheduled "
        f"{_describe(kind, name)}{where}, but {what}. Was a change made to the orchestrator code after this "
        "instance had already started running, or does it depend on state that changes between replays "
        "(globals, clock, random, I/O)?"
    )
