"""The local Durable extension: schedules episodes, activities, timers and entity batches over the store.

Concurrency: everything touching the store runs on the event loop thread. Orchestrator and entity
handlers (the SDK's replay code plus user code) run on one worker thread, activities on daemon
threads bounded by a semaphore (or awaited, when async). An instance has at most one driver task
at a time, so its episodes are serialised; different instances progress concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import secrets
import threading
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from devhost.durable import history as h
from devhost.durable.clock import Clock, ManualClock, WallClock
from devhost.durable.entities import run_batch, scheduler_id, split_scheduler_id
from devhost.durable.episode import (
    Ledger,
    OrchestrationFailure,
    Outcome,
    Plan,
    Planner,
    run_handler,
)
from devhost.durable.history import Event, EventType
from devhost.durable.store import ActivityWork, InstanceRow, Message, Store

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from devhost.functions_host.index import FunctionIndex, IndexedFunction

log = logging.getLogger("devhost.durable")

WEBHOOK_PREFIX = "/runtime/webhooks/durabletask"
# The SDK client's keyless API. In Azure `rpcBaseUrl` is a loopback port that only the worker reaches;
# here everything is loopback, so the path carries a per-process secret instead (RPC_PREFIX/{token}/).
RPC_PREFIX = "/durabletask"
ENTITY_BATCH_LIMIT = 50
T = TypeVar("T")


class InstanceExists(Exception):
    """start_new with the id of an instance that has not finished."""


class UnknownFunction(Exception):
    """start_new of a name that is not an orchestrator function."""


class DurableEngine:
    def __init__(
        self,
        index: FunctionIndex,
        *,
        data_dir: Path,
        task_hub: str,
        base_url: str,
        clock: Clock | None = None,
        max_concurrent_activities: int = 8,
        system_key: str | None = None,
    ) -> None:
        self.index = index
        self.task_hub = task_hub
        self.base_url = base_url.rstrip("/")
        # The webhook routes take this key (the host's `durabletask_extension` system key) or the master
        # key, as in Azure; an engine without a host (tests) still guards them, with a key of its own.
        self.system_key = system_key or secrets.token_urlsafe(32)
        self.rpc_token = secrets.token_urlsafe(24)
        self.clock: Clock = clock or WallClock()
        self._db_path = Path(data_dir) / f"durable-{task_hub}.sqlite"
        self._max_activities = max_concurrent_activities
        self._orchestrators = {f.name: f for f in index.by_trigger("orchestrationTrigger")}
        self._activities = {f.name: f for f in index.by_trigger("activityTrigger")}
        self._entities = {f.name.lower(): f for f in index.by_trigger("entityTrigger")}
        self._store: Store | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handler_pool: ThreadPoolExecutor | None = None
        self._activity_slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._driving: set[str] = set()
        self._dirty: set[str] = set()
        self._entity_driving: set[str] = set()
        self._entity_dirty: set[str] = set()
        self._activities_in_flight: set[int] = set()
        # Activity invocations since this process started, by function name (what Azure bills and the
        # task hub's work-item queue carries): the fleet benchmark reads them to cost a cycle.
        self._activity_calls: Counter[str] = Counter()
        self._activity_failures: Counter[str] = Counter()
        self._wake: asyncio.Event | None = None
        self._unsubscribe_clock: Callable[[], None] | None = None
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._store = Store(self._db_path)
        self._stopping = False
        self._handler_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-replay")
        self._activity_slots = asyncio.Semaphore(self._max_activities)
        self._wake = asyncio.Event()
        if isinstance(self.clock, ManualClock):
            loop, wake = self._loop, self._wake

            def on_advance() -> None:
                loop.call_soon_threadsafe(wake.set)

            self._unsubscribe_clock = self.clock.subscribe(on_advance)
        store = self._store
        for work in store.pending_activities():
            self._dispatch_activity(work)
        for entity_id in store.entities_with_ops():
            self._kick_entity(entity_id)
        for instance_id in store.instances_with_visible_messages(self._now_iso()):
            self._kick(instance_id)
        self._spawn(self._timer_loop())
        log.info("durable engine started (task hub %s, store %s)", self.task_hub, self._db_path)

    async def stop(self) -> None:
        self._stopping = True
        if self._unsubscribe_clock:
            self._unsubscribe_clock()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._driving.clear()
        self._dirty.clear()
        self._entity_driving.clear()
        self._entity_dirty.clear()
        self._activities_in_flight.clear()
        if self._handler_pool:
            self._handler_pool.shutdown(wait=True, cancel_futures=True)
        if self._store:
            self._store.close()
            self._store = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the durable engine is not started")
        return self._store

    def routes(self, *, master_key: str | None = None) -> list[BaseRoute]:
        from devhost.durable.rpc import build_routes

        return build_routes(self, master_key=master_key)

    # -- client API -----------------------------------------------------------------------------
    @property
    def rpc_path(self) -> str:
        return f"{RPC_PREFIX}/{self.rpc_token}"

    @property
    def rpc_base_url(self) -> str:
        return f"{self.base_url}{self.rpc_path}"

    def client_binding_json(self) -> str:
        base = f"{self.base_url}{WEBHOOK_PREFIX}"
        query = f"taskHub={self.task_hub}&connection=Storage&code={self.system_key}"
        return json.dumps(
            {
                "taskHubName": self.task_hub,
                "creationUrls": {
                    "createNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]?{query}",
                    "createAndWaitOnNewInstancePostUri": (
                        f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
                        f"?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&{query}"
                    ),
                },
                "managementUrls": self.management_urls("INSTANCEID"),
                "baseUrl": base,
                "requiredQueryStringParameters": query,
                "rpcBaseUrl": f"{self.rpc_base_url}/",
                "httpBaseUrl": "",
                "maxGrpcMessageSizeInBytes": 0,
                "grpcHttpClientTimeout": "00:01:40",
            }
        )

    def management_urls(self, instance_id: str) -> dict[str, str]:
        """The webhook URLs a starter hands out, with the system key in `code=` as in Azure."""
        base = f"{self.base_url}{WEBHOOK_PREFIX}"
        query = f"taskHub={self.task_hub}&connection=Storage&code={self.system_key}"
        instance = f"{base}/instances/{instance_id}"
        return {
            "id": instance_id,
            "purgeHistoryDeleteUri": f"{instance}?{query}",
            "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
            "statusQueryGetUri": f"{instance}?{query}",
            "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
            "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
            "restartPostUri": f"{instance}/restart?{query}",
            "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
            "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
        }

    async def start_new(self, name: str, instance_id: str | None, input: Any) -> str:
        return self.start_new_json(name, instance_id, None if input is None else json.dumps(input))

    def start_new_json(self, name: str, instance_id: str | None, input_json: str | None) -> str:
        """Create an instance whose input is already JSON text (as the HTTP API receives it)."""
        if name not in self._orchestrators:
            raise UnknownFunction(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function. "
                f"Registered orchestrators: {', '.join(sorted(self._orchestrators)) or 'none'}"
            )
        instance_id = instance_id or uuid.uuid4().hex
        store = self.store
        with store.transaction():
            existing = store.get_instance(instance_id)
            if existing is not None and not existing.is_terminal:
                raise InstanceExists(
                    f"An Orchestration instance with the status {existing.status} already exists."
                )
            if existing is not None:
                # Starting over a finished instance replaces it, as the extension does for non-running states.
                store.delete_instance(instance_id)
            self._create_instance(instance_id, name, input_json, parent=None)
        self._kick(instance_id)
        return instance_id

    async def raise_event(self, instance_id: str, name: str, data: Any) -> None:
        self.raise_event_json(instance_id, name, json.dumps(data))

    def raise_event_json(self, instance_id: str, name: str, data_json: str | None) -> str:
        """Queue an external event; returns the instance status it was raised against ('' if unknown)."""
        store = self.store
        with store.transaction():
            row = store.get_instance(instance_id)
            if row is None:
                return ""
            if row.is_terminal:
                return row.status
            # No execution id: a client event goes to whichever execution is current when delivered,
            # so it survives continue-as-new while still queued, as DTFx messages do.
            store.enqueue(instance_id, h.event_raised(self.clock.now(), name, data_json), execution_id=None)
        self._kick(instance_id)
        return row.status

    def terminate(self, instance_id: str, reason: str) -> str:
        store = self.store
        with store.transaction():
            row = store.get_instance(instance_id)
            if row is None:
                return ""
            if row.is_terminal:
                return row.status
            store.enqueue(instance_id, h.execution_terminated(self.clock.now(), reason), execution_id=None)
        self._kick(instance_id)
        return row.status

    def purge(self, instance_id: str) -> int:
        store = self.store
        with store.transaction():
            row = store.get_instance(instance_id)
            if row is None or not row.is_terminal:
                return 0
            store.delete_instance(instance_id)
        return 1

    def purge_where(self, *, created_from: str | None, created_to: str | None, statuses: list[str]) -> int:
        store = self.store
        with store.transaction():
            rows = store.query_instances(created_from=created_from, created_to=created_to, statuses=statuses)
            doomed = [r.instance_id for r in rows if r.is_terminal]
            for instance_id in doomed:
                store.delete_instance(instance_id)
        return len(doomed)

    async def get_status(self, instance_id: str, *, show_history: bool = False) -> dict[str, Any] | None:
        row = self.store.get_instance(instance_id)
        return None if row is None else self.status_json(row, show_history=show_history)

    def status_json(
        self,
        row: InstanceRow,
        *,
        show_history: bool = False,
        show_history_output: bool = False,
        show_input: bool = True,
    ) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": row.name,
            "instanceId": row.instance_id,
            "runtimeStatus": row.status,
            "input": _loads(row.input) if show_input else None,
            "customStatus": _loads(row.custom_status),
            "output": _loads(row.output),
            "createdTime": _status_time(row.created_time),
            "lastUpdatedTime": _status_time(row.last_updated_time),
        }
        if show_history:
            status["history"] = h.for_status(
                self.store.load_history(row.instance_id), show_output=show_history_output
            )
        return status

    def query_status(
        self,
        *,
        created_from: str | None,
        created_to: str | None,
        statuses: list[str],
        prefix: str | None,
        show_input: bool,
    ) -> list[dict[str, Any]]:
        rows = self.store.query_instances(
            created_from=created_from, created_to=created_to, statuses=statuses, prefix=prefix
        )
        return [self.status_json(r, show_input=show_input) for r in rows]

    def signal_entity_json(self, name: str, key: str, operation: str, input_json: str | None) -> None:
        if name.lower() not in self._entities:
            raise UnknownFunction(
                f"The function '{name}' doesn't exist, is disabled, or is not an entity function."
            )
        entity_id = scheduler_id(name, key)
        request = {"id": str(uuid.uuid4()), "op": operation, "signal": True, "input": input_json}
        with self.store.transaction():
            self.store.enqueue_entity_op(entity_id, request)
        self._kick_entity(entity_id)

    def read_entity_state_json(self, name: str, key: str) -> str | None:
        return self.store.get_entity_state(scheduler_id(name, key))

    async def wait_for_idle(self, timeout: float) -> None:
        """Until nothing can make progress now; timers due later (by this clock) do not count."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet_polls = 0
        while True:
            busy = (
                self._driving
                or self._entity_driving
                or self._activities_in_flight
                or self.store.has_runnable_work(self._now_iso())
            )
            # Two quiet polls in a row: a completion may be between commit and kick on the first one.
            quiet_polls = 0 if busy else quiet_polls + 1
            if quiet_polls >= 2:
                return
            if loop.time() > deadline:
                raise TimeoutError(
                    f"durable engine still busy after {timeout}s: instances {sorted(self._driving)}, "
                    f"{len(self._activities_in_flight)} activities, entities {sorted(self._entity_driving)}"
                )
            await asyncio.sleep(0.005)

    # -- scheduling -----------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = (self._loop or asyncio.get_running_loop()).create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("durable engine task failed", exc_info=task.exception())

    def _kick(self, instance_id: str) -> None:
        if self._stopping:
            return
        if instance_id in self._driving:
            self._dirty.add(instance_id)
            return
        self._driving.add(instance_id)
        self._spawn(self._drive(instance_id))

    async def _drive(self, instance_id: str) -> None:
        try:
            while True:
                self._dirty.discard(instance_id)
                progressed = await self._episode(instance_id)
                if not progressed and instance_id not in self._dirty:
                    return
        finally:
            self._driving.discard(instance_id)

    async def _timer_loop(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            now = self._now_iso()
            for instance_id in self.store.instances_with_visible_messages(now):
                self._kick(instance_id)
            next_due = self.store.next_due(now)
            timeout: float | None = None
            if next_due is not None and not isinstance(self.clock, ManualClock):
                timeout = max(0.0, (h.parse_iso(next_due) - self.clock.now()).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _now_iso(self) -> str:
        return h.iso(self.clock.now())

    async def _in_handler_thread(self, fn: Callable[[], T]) -> T:
        assert self._handler_pool is not None
        return await asyncio.get_running_loop().run_in_executor(self._handler_pool, fn)

    # -- episodes -------------------------------------------------------------------------------
    async def _episode(self, instance_id: str) -> bool:
        """Run one episode if the instance has deliverable messages; False when there was nothing to do."""
        store = self.store
        row = store.get_instance(instance_id)
        messages = store.visible_messages(instance_id, self._now_iso())
        if not messages:
            return False
        if row is None or row.is_terminal:
            with store.transaction():
                store.delete_messages([m.msg_id for m in messages])
            return True
        stale = [m for m in messages if m.execution_id not in (None, row.execution_id)]
        live = [m for m in messages if m.execution_id in (None, row.execution_id)]
        terminate = next((m for m in live if m.event["EventType"] == EventType.EXECUTION_TERMINATED), None)
        if terminate is not None:
            with store.transaction():
                store.delete_messages([m.msg_id for m in messages])
                self._finish(
                    row,
                    status="Terminated",
                    output_json=json.dumps(terminate.event.get("Input")),
                    final_event=h.execution_terminated(self.clock.now(), terminate.event.get("Input") or ""),
                )
            return True
        ledger = Ledger.from_json(row.ledger)
        batch, retry_event = _select_batch(live, ledger)
        old = store.load_history(instance_id)
        if not batch or (not old and batch[0].event["EventType"] != EventType.EXECUTION_STARTED):
            if stale:
                with store.transaction():
                    store.delete_messages([m.msg_id for m in stale])
                return True
            return False

        started = self._episode_time(old)
        new_events = [h.orchestrator_started(started)] + [h.with_timestamp(m.event, started) for m in batch]
        context = {
            "history": [{**e, "IsPlayed": True} for e in old] + new_events,
            "instanceId": instance_id,
            "isReplaying": bool(old),
            "parentInstanceId": row.parent_instance_id,
            "input": row.input,
            "upperSchemaVersion": 1,
        }
        handler = self._orchestrators[row.name].user_function if row.name in self._orchestrators else None
        outcome: Outcome | None = None
        failure: str | None = None
        if handler is None:
            failure = (
                f"The function '{row.name}' doesn't exist, is disabled, or is not an orchestrator function."
            )
        else:
            try:
                outcome = await self._in_handler_thread(functools.partial(run_handler, handler, context))
            except OrchestrationFailure as exc:
                failure = str(exc)
        if self._stopping:
            return False

        planner = Planner(
            ledger,
            instance_id=instance_id,
            execution_id=row.execution_id,
            now=started,
            parent_instance_id=row.parent_instance_id,
            has_orchestrator=self._orchestrators.__contains__,
            has_activity=self._activities.__contains__,
            has_entity=lambda name: name.lower() in self._entities,
        )
        plan: Plan | None = None
        if outcome is not None:
            try:
                if outcome.error is not None:
                    planner.check_determinism(outcome.actions)  # a replay mismatch explains the error best
                    failure = outcome.error
                else:
                    plan = planner.apply(outcome.actions, retry_event, [m.event for m in batch])
            except OrchestrationFailure as exc:
                failure = str(exc)

        with store.transaction():
            store.delete_messages([m.msg_id for m in batch + stale])
            appended = new_events + (plan.scheduled if plan else [])
            if outcome is not None:
                row.custom_status = outcome.custom_status_json
            row.status = "Running"
            if failure is not None or plan is None:
                store.append_history(instance_id, len(old), appended)
                message = f"Orchestrator function '{row.name}' failed: {failure}"
                self._finish(
                    row,
                    status="Failed",
                    output_json=json.dumps(message),
                    final_event=h.execution_completed(
                        started, status="Failed", result_json=json.dumps(message)
                    ),
                    history_len=len(old) + len(appended),
                )
                return True
            assert outcome is not None
            appended.append(h.orchestrator_completed(started))
            store.append_history(instance_id, len(old), appended)
            row.ledger = ledger.to_json()
            works = self._commit_plan(row, plan)
            if plan.continued:
                self._continue_as_new(row, plan.continue_as_new)
            elif outcome.done:
                self._finish(
                    row,
                    status="Completed",
                    output_json=outcome.output_json,
                    final_event=h.execution_completed(
                        started, status="Completed", result_json=outcome.output_json
                    ),
                    history_len=len(old) + len(appended),
                )
            else:
                row.last_updated_time = h.iso(self.clock.now())
                store.put_instance(row)
        self._after_commit(plan, works)
        return True

    def _episode_time(self, old: list[Event]) -> datetime:
        # Never earlier than the previous episode: current_utc_datetime must not go backwards on replay.
        now = self.clock.now()
        if old:
            last = h.parse_iso(old[-1]["Timestamp"])
            if last > now:
                return last
        return now

    def _commit_plan(self, row: InstanceRow, plan: Plan) -> list[ActivityWork]:
        store = self.store
        works = []
        for activity in plan.activities:
            work_id = store.add_activity(
                row.instance_id, row.execution_id, activity.task_id, activity.name, activity.input
            )
            works.append(
                ActivityWork(
                    work_id,
                    row.instance_id,
                    row.execution_id,
                    activity.task_id,
                    activity.name,
                    activity.input,
                )
            )
        for timer in plan.timers:
            store.enqueue(
                row.instance_id,
                h.timer_fired(timer.fire_at, timer.timer_id, timer.fire_at),
                execution_id=row.execution_id,
                visible_at=h.iso(timer.fire_at),
            )
        if plan.cancelled_timers:
            store.cancel_timers(row.instance_id, row.execution_id, plan.cancelled_timers)
        for sub in plan.sub_orchestrations:
            existing = store.get_instance(sub.instance_id)
            if existing is not None and not existing.is_terminal:
                reason = f"An Orchestration instance with the status {existing.status} already exists."
                store.enqueue(
                    row.instance_id,
                    h.sub_orchestration_failed(self.clock.now(), sub.task_id, reason, ""),
                    execution_id=row.execution_id,
                )
                continue
            if existing is not None:
                store.delete_instance(sub.instance_id)
            self._create_instance(
                sub.instance_id,
                sub.name,
                sub.input,
                parent=(row.instance_id, row.execution_id, sub.task_id),
            )
        for op in plan.entity_ops:
            store.enqueue_entity_op(op.entity_id, op.request)
        return works

    def _after_commit(self, plan: Plan | None, works: list[ActivityWork]) -> None:
        if plan is None:
            return
        for sub in plan.sub_orchestrations:
            self._kick(sub.instance_id)
        for op in plan.entity_ops:
            self._kick_entity(op.entity_id)
        for work in works:
            self._dispatch_activity(work)
        if plan.timers and self._wake is not None:
            self._wake.set()

    def _create_instance(
        self, instance_id: str, name: str, input_json: str | None, *, parent: tuple[str, str, int] | None
    ) -> None:
        now = h.iso(self.clock.now())
        execution_id = uuid.uuid4().hex
        row = InstanceRow(
            instance_id=instance_id,
            name=name,
            execution_id=execution_id,
            status="Pending",
            input=input_json,
            output=None,
            custom_status=None,
            created_time=now,
            last_updated_time=now,
            parent_instance_id=parent[0] if parent else None,
            parent_execution_id=parent[1] if parent else None,
            parent_task_id=parent[2] if parent else None,
            ledger=Ledger().to_json(),
        )
        self.store.put_instance(row)
        self._enqueue_start(row)

    def _enqueue_start(self, row: InstanceRow) -> None:
        parent = None
        if row.parent_instance_id:
            parent = {
                "OrchestrationInstance": {
                    "InstanceId": row.parent_instance_id,
                    "ExecutionId": row.parent_execution_id,
                },
                "TaskScheduleId": row.parent_task_id,
            }
        self.store.enqueue(
            row.instance_id,
            h.execution_started(
                self.clock.now(),
                name=row.name,
                input_json=row.input,
                instance_id=row.instance_id,
                execution_id=row.execution_id,
                parent=parent,
            ),
            execution_id=row.execution_id,
        )

    def _continue_as_new(self, row: InstanceRow, input_json: str | None) -> None:
        """Start the next execution: fresh history and ledger, same instance id, the new input."""
        store = self.store
        store.clear_history(row.instance_id)
        # Timers and results of the old execution are addressed to its execution id and die with it;
        # client events (execution id NULL) still queued are delivered to the new execution.
        store.delete_timers(row.instance_id)
        row.execution_id = uuid.uuid4().hex
        row.input = input_json
        row.output = None
        row.status = "ContinuedAsNew"
        row.ledger = Ledger().to_json()
        row.last_updated_time = h.iso(self.clock.now())
        store.put_instance(row)
        self._enqueue_start(row)

    def _finish(
        self,
        row: InstanceRow,
        *,
        status: str,
        output_json: str | None,
        final_event: Event,
        history_len: int | None = None,
    ) -> None:
        store = self.store
        if history_len is None:
            history_len = len(store.load_history(row.instance_id))
        store.append_history(row.instance_id, history_len, [final_event])
        store.delete_timers(row.instance_id)
        row.status = status
        row.output = output_json
        row.last_updated_time = h.iso(self.clock.now())
        store.put_instance(row)
        if status == "Failed":
            log.warning("orchestration %s (%s) failed: %s", row.instance_id, row.name, _loads(output_json))
        else:
            log.info("orchestration %s (%s) %s", row.instance_id, row.name, status.lower())
        if row.parent_instance_id and row.parent_execution_id and row.parent_task_id is not None:
            now = self.clock.now()
            if status == "Completed":
                event = h.sub_orchestration_completed(now, row.parent_task_id, output_json)
            else:
                reason = _loads(output_json) if output_json else status
                event = h.sub_orchestration_failed(
                    now, row.parent_task_id, str(reason), f"{row.name} ended {status}"
                )
            store.enqueue(row.parent_instance_id, event, execution_id=row.parent_execution_id)
            parent_id = row.parent_instance_id
            assert self._loop is not None
            self._loop.call_soon(self._kick, parent_id)

    # -- activities -----------------------------------------------------------------------------
    def _dispatch_activity(self, work: ActivityWork) -> None:
        self._activities_in_flight.add(work.work_id)
        self._spawn(self._run_activity(work))

    async def _run_activity(self, work: ActivityWork) -> None:
        assert self._activity_slots is not None
        try:
            async with self._activity_slots:
                event = await self._invoke_activity(work)
            if self._stopping:
                return
            store = self.store
            with store.transaction():
                if store.get_activity(work.work_id) is None:
                    return
                # Result first, acknowledgement second, in one transaction: a crash before the commit
                # re-runs the activity; after it, the result is never lost.
                store.delete_activity(work.work_id)
                row = store.get_instance(work.instance_id)
                if row is not None and row.execution_id == work.execution_id and not row.is_terminal:
                    store.enqueue(work.instance_id, event, execution_id=work.execution_id)
            self._kick(work.instance_id)
        finally:
            self._activities_in_flight.discard(work.work_id)

    def activity_counts(self) -> dict[str, dict[str, int]]:
        """Activity invocations since the engine started (every attempt of a retried activity counts),
        and those that failed, by function name."""
        return {"calls": dict(self._activity_calls), "failures": dict(self._activity_failures)}

    async def _invoke_activity(self, work: ActivityWork) -> Event:
        fn = self._activities.get(work.name)
        now = self.clock.now
        self._activity_calls[work.name] += 1
        if fn is None:
            self._activity_failures[work.name] += 1
            return h.task_failed(now(), work.task_id, f"The function '{work.name}' doesn't exist.", "")
        try:
            result = await self._call_activity(fn, work.input)
            encoded = ActivityTriggerConverter.encode(result, expected_type=None).value
        except Exception as exc:
            self._activity_failures[work.name] += 1
            reason = f"Activity function '{work.name}' failed: {type(exc).__name__}: {exc}"
            return h.task_failed(now(), work.task_id, reason, "".join(traceback.format_exception(exc)))
        return h.task_completed(now(), work.task_id, encoded)

    async def _call_activity(self, fn: IndexedFunction, input_json: str | None) -> Any:
        # Decode as the Python worker does: the activityTrigger converter, argument named by the binding.
        argument = ActivityTriggerConverter.decode(
            meta.Datum(value=input_json or "null", type="json"), trigger_metadata={}
        )
        call = functools.partial(fn.user_function, **{fn.trigger["name"]: argument})
        if inspect.iscoroutinefunction(fn.user_function):
            return await call()
        return await _in_daemon_thread(call)

    # -- entities -------------------------------------------------------------------------------
    def _kick_entity(self, entity_id: str) -> None:
        if self._stopping:
            return
        if entity_id in self._entity_driving:
            self._entity_dirty.add(entity_id)
            return
        self._entity_driving.add(entity_id)
        self._spawn(self._drive_entity(entity_id))

    async def _drive_entity(self, entity_id: str) -> None:
        try:
            while True:
                self._entity_dirty.discard(entity_id)
                if not await self._entity_batch(entity_id) and entity_id not in self._entity_dirty:
                    return
        finally:
            self._entity_driving.discard(entity_id)

    async def _entity_batch(self, entity_id: str) -> bool:
        store = self.store
        ops = store.entity_ops(entity_id, ENTITY_BATCH_LIMIT)
        if not ops:
            return False
        name, _ = split_scheduler_id(entity_id)
        fn = self._entities.get(name)
        state = store.get_entity_state(entity_id)
        if fn is None:
            responses = [
                (
                    op.request,
                    {
                        "result": json.dumps(f"no entity function named '{name}'"),
                        "exceptionType": "Exception",
                    },
                )
                for op in ops
                if not op.request.get("signal")
            ]
            new_state = state
        else:
            result = await self._in_handler_thread(
                functools.partial(run_batch, fn.user_function, entity_id, state, ops)
            )
            responses, new_state = result.responses, result.state
        if self._stopping:
            return False
        parents: set[str] = set()
        with store.transaction():
            store.put_entity_state(entity_id, new_state, self._now_iso())
            store.delete_entity_ops([op.op_id for op in ops])
            for request, response in responses:
                parent = request.get("parent")
                if parent:
                    event = h.event_raised(self.clock.now(), request["id"], json.dumps(response))
                    store.enqueue(parent, event, execution_id=request.get("parentExecution"))
                    parents.add(parent)
        for parent in parents:
            self._kick(parent)
        return True


def _select_batch(messages: list[Message], ledger: Ledger) -> tuple[list[Message], Event | None]:
    """The messages for one episode: ExecutionStarted first, and at most one retry step, placed last.

    Messages are ordered by when they happened (a timer's Timestamp is its due time), not by when
    they were queued: a timer queued at creation must not overtake an event raised before it fell due.
    """
    ordered = sorted(
        messages,
        key=lambda m: (m.event["EventType"] != EventType.EXECUTION_STARTED, m.event["Timestamp"], m.msg_id),
    )
    batch: list[Message] = []
    for message in ordered:
        if ledger.chain_of(message.event) is not None:
            return [*batch, message], message.event
        batch.append(message)
    return batch, None


async def _in_daemon_thread(call: Callable[[], T]) -> T:
    """Run a sync activity on its own daemon thread: an abandoned activity never blocks process exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def post(setter: Callable[[Any], None], value: Any) -> None:
        # The engine may have stopped (and its loop closed) while the activity ran: drop the outcome;
        # the work item is still in the store and runs again on the next start.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver, setter, value)

    def target() -> None:
        try:
            result = call()
        except BaseException as exc:
            post(future.set_exception, exc)
            return
        post(future.set_result, result)

    threading.Thread(target=target, name="durable-activity", daemon=True).start()
    return await future


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _status_time(iso_text: str) -> str:
    # The extension reports whole seconds with a Z suffix.
    return iso_text.split(".")[0] + "Z"
