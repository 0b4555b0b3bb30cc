"""The machine replication orchestration: one instance per machine (`machine-{id}`), the only writer of
its replicas.

Each generation reads the machine's view (state, watermark, inbox of uploaded cycles, unfinished job),
does what is due, and continues as new, so history stays a few dozen events however many cycles
run. Runbook of one generation:

1. Run the machine's own job if one is waiting: enable replication (create replica disks, start the
   initial copy) or stop replication / complete migration (remove the replica data, then end).
2. Drop cycles that can never apply (older than the watermark, or before a newer whole-disk copy).
3. Before a cycle, the previous cycle's artefacts (its cached uploads) must be gone: retry their
   disposal until they are; each time the wait exceeds the disposal timeout, raise 181008
   DisposeArtefactsTimedOut (Azure Migrate's WaitingForArtefactsDisposalPreCycle).
4. Apply ready cycles strictly in sequence: every disk's extents (a whole-disk copy as bounded units, a
   batch at a time; a delta's disks in parallel, each verified while written), then one recovery point
   (a blob snapshot per disk), then record it (which heals health). A rejected upload puts every
   replica it wrote back to the previous recovery point (server-side copies, waited for with durable
   timers), then raises the catalog's error and asks for a resync.
5. If a sequence number is missing, wait for it; after the policy's limit (buffered cycles or time),
   raise CycleSequenceGap, whose automatic repair resyncs every disk.
6. Otherwise sleep until a cycle or an operator request signals, or a timer fires: the idle wake-up, or
   the upload deadline of a cycle the appliance started, after which its missing disks raise 1011
   DiskUploadTimedOut (the durable timer races the upload's CycleUploaded signal).

Signals are only wake-ups: the inbox and the job live in Cosmos, so a signal lost to continue-as-new
or a crash costs at most one idle period, never a cycle.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models import TaskBase
from pydantic import ValidationError

from orchestrators.names import (
    CYCLE_STARTED_SIGNAL,
    CYCLE_UPLOADED_SIGNAL,
    MACHINE_REPLICATION,
    OPERATOR_REQUEST,
)
from orchestrators.replication.activities import (
    apply_cycle_disk,
    apply_disk_unit,
    bp,
    complete_cycle,
    create_replica_disks,
    dispose_artefacts,
    fail_job,
    load_replication_view,
    plan_cycle_disk_units,
    reject_cycle,
    remove_replication_data,
    report_dispose_timeout,
    report_progress,
    request_resync,
    restore_replicas,
    snapshot_recovery_point,
    start_initial_replication,
    supersede_cycles,
    time_out_uploads,
)
from orchestrators.replication.contracts import (
    CycleCompleted,
    CycleCompletion,
    CycleRejection,
    DiskApplied,
    DiskApply,
    DiskUnitPlan,
    DisposalRequest,
    DisposalResult,
    DisposeTimeout,
    FollowState,
    GenerationView,
    HealthTimings,
    JobFailure,
    JobRef,
    MachineRef,
    OrchestrationState,
    Payload,
    PendingDisposal,
    ProgressUpdate,
    RestoreRequest,
    RestoreState,
    ResyncRequest,
    SnapshotRequest,
    SnapshotTaken,
    SupersededCycles,
    UnitApply,
    UploadDeadline,
)
from shared.domain.api import CycleSignal
from shared.domain.cycle import Consistency, Cycle
from shared.domain.job import JobKind
from shared.domain.lifecycle import MachineState
from shared.domain.machine import MachineSnapshot, UploadWatch
from shared.replication.cycles import (
    ACCEPTING_STATES,
    BASE_KINDS,
    CHAIN_START_KINDS,
    MachineAfterCycle,
    ReplicationView,
    plan_ready_cycles,
)

# Storage and Cosmos hiccups are retried; a verdict on the data is a value, not an exception.
STORAGE_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2_000, max_number_of_attempts=6)
MAX_CYCLES_PER_GENERATION = 8  # inbox cycles applied per generation: keeps each generation's history small
# While replication runs steadily the view is carried from generation to generation; it (and with it the
# appliance's policy) is re-read at least this often.
VIEW_REFRESH = timedelta(minutes=10)
IDLE_WAKE_UP = timedelta(minutes=10)  # a lost signal costs at most this
GAP_TIMEOUT = timedelta(minutes=30)
# A restore still copying after this is left to finish on its own; the rejection (and its resync) go on.
RESTORE_WAIT_LIMIT = timedelta(hours=2)  # a missing sequence number is waited for at most this long
# States in which a signalled delta is applied without the generation's planning: replication runs
# freely (not held by a failover, no job of the orchestration's own, not ended).
FOLLOWING_STATES = ACCEPTING_STATES - {MachineState.INITIAL_REPLICATION, MachineState.REPROTECTING}
ENDED_STATES = frozenset(
    {MachineState.REPLICATION_STOPPED, MachineState.MIGRATION_COMPLETED, MachineState.DISCOVERED}
)

Orchestration = Generator[Any, Any, Any]


@bp.orchestration_trigger(context_name="context", orchestration=MACHINE_REPLICATION)
def machine_replication_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    state = OrchestrationState.model_validate(context.get_input())
    follow = state.follow
    if follow is not None and _still_fresh(context, follow):
        if follow.next_cycle is None:
            # Woken by nothing to apply (a redelivered upload of an applied cycle): sleep on.
            state = yield from _sleep_following(context, state, follow)
            _continue(context, state)
            return None
        if _follows(follow.machine, follow.next_cycle):
            state = yield from _apply_followed(context, state, follow, follow.next_cycle)
            _continue(context, state)
            return None
    state = state.model_copy(update={"follow": None})
    view_read_at = context.current_utc_datetime
    view, timings = yield from _load_view(context, state.machine_id)

    if view.job is not None:
        finished = yield from _run_job(context, view)
        if finished:
            return f"{view.job.kind.value} done"
        view, timings = yield from _load_view(context, state.machine_id)
    if view.state in ENDED_STATES:
        return f"replication ended ({view.state.value})"

    plan = view.plan
    if plan.superseded:
        yield context.call_activity_with_retry(
            supersede_cycles,
            STORAGE_RETRY,
            _dump(SupersededCycles(machine_id=view.machine_id, cycle_ids=plan.superseded)),
        )
    if plan.ready and state.pending_disposal is not None:
        state = yield from _dispose_before_cycle(context, view, timings, state, plan.ready[0])
        if state.pending_disposal is not None:
            retry = timedelta(seconds=timings.dispose_retry_seconds)
            yield from _sleep_until_signalled(context, context.current_utc_datetime + retry)
            _continue(context, state)
            return None
    if plan.ready:
        after: MachineAfterCycle | None = None
        stopped_early = len(plan.ready) > MAX_CYCLES_PER_GENERATION
        for cycle in plan.ready[:MAX_CYCLES_PER_GENERATION]:
            completed = yield from _apply_cycle(context, view, cycle)
            if completed is None:
                # Rejected: what follows it in sequence waits for the resync (the next generation's plan).
                stopped_early = True
                break
            state = _after_disposal(context, state, cycle, completed)
            after = completed.machine
            if state.pending_disposal is not None:
                break  # the next cycle may start only once these are gone (step 3, next generation)
        state = state.model_copy(update={"gap_since": None, "resync_requested_for": None})
        if stopped_early or state.pending_disposal is not None:
            _continue(context, state)
            return None
        if after is None:  # an activity of an older release answered: sleep, then re-read the view
            yield from _sleep_until_signalled(context, context.current_utc_datetime + IDLE_WAKE_UP)
            _continue(context, state)
            return None
        # Everything known was applied. Follow the cycles the appliance signals from here without
        # re-reading the view: their signals carry what the inbox holds.
        follow = FollowState(machine=after, policy=view.policy, view_read_at=view_read_at)
        state = yield from _sleep_following(context, state, follow)
        _continue(context, state)
        return None

    now = context.current_utc_datetime
    if plan.waiting_for is not None:
        gap_since = state.gap_since or now
        gap_too_long = (
            now - gap_since >= GAP_TIMEOUT or plan.buffered >= view.policy.max_cycle_gap_before_resync
        )
        if gap_too_long and state.resync_requested_for != plan.waiting_for:
            yield context.call_activity_with_retry(
                request_resync,
                STORAGE_RETRY,
                _dump(
                    ResyncRequest(
                        machine_id=view.machine_id,
                        missing_sequence=plan.waiting_for,
                        buffered=plan.buffered,
                        max_gap=view.policy.max_cycle_gap_before_resync,
                        request_id=f"gap-{plan.waiting_for}-{context.instance_id}",
                        reason=f"Cycle {plan.waiting_for} never arrived while {plan.buffered} later cycle(s) waited "
                        f"(since {gap_since:%Y-%m-%d %H:%M:%S} UTC); every disk will be resynchronized.",
                    )
                ),
            )
            state = state.model_copy(update={"resync_requested_for": plan.waiting_for})
        state = state.model_copy(update={"gap_since": gap_since})
        deadline = max(gap_since + GAP_TIMEOUT, now + timedelta(seconds=5))
    else:
        state = state.model_copy(update={"gap_since": None})
        deadline = now + IDLE_WAKE_UP

    watch = view.upload_watch
    watched = watch is not None and (
        view.last_applied_sequence is None or watch.sequence > view.last_applied_sequence
    )
    if watch is not None and watched and set(watch.disk_ids) - set(watch.timed_out_disks):
        if now >= watch.deadline:
            # The timer won the race against the upload: the missing disks raise 1011 (once).
            yield context.call_activity_with_retry(
                time_out_uploads,
                STORAGE_RETRY,
                _dump(UploadDeadline(machine_id=view.machine_id, cycle_id=watch.cycle_id)),
            )
            deadline = now + timedelta(seconds=1)  # re-read the view: the watch has changed
        else:
            deadline = min(deadline, watch.deadline)

    yield from _sleep_until_signalled(context, deadline)
    _continue(context, state)
    return None


def _dispose_before_cycle(
    context: df.DurableOrchestrationContext,
    view: ReplicationView,
    timings: HealthTimings,
    state: OrchestrationState,
    next_cycle: Cycle,
) -> Orchestration:
    """Azure Migrate's WaitingForArtefactsDisposalPreCycle: retry disposing of the previous cycle's artefacts;
    after each full timeout period without success, raise 181008 once."""
    pending = state.pending_disposal
    assert pending is not None
    result = DisposalResult.model_validate(
        (
            yield context.call_activity_with_retry(
                dispose_artefacts,
                STORAGE_RETRY,
                _dump(
                    DisposalRequest(
                        machine_id=view.machine_id, cycle_id=pending.cycle_id, blobs=pending.blobs
                    )
                ),
            )
        )
    )
    if not result.remaining:
        return state.model_copy(update={"pending_disposal": None})
    now = context.current_utc_datetime
    timeout = timedelta(seconds=timings.dispose_timeout_seconds)
    if now - pending.since >= timeout * (pending.reports + 1):
        yield context.call_activity_with_retry(
            report_dispose_timeout,
            STORAGE_RETRY,
            _dump(
                DisposeTimeout(
                    machine_id=view.machine_id,
                    blocked_cycle_id=next_cycle.id,
                    previous_cycle_id=pending.cycle_id,
                    remaining=len(result.remaining),
                    waited_seconds=(now - pending.since).total_seconds(),
                    attempt=pending.reports + 1,
                )
            ),
        )
        pending = pending.model_copy(update={"reports": pending.reports + 1})
    return state.model_copy(
        update={"pending_disposal": pending.model_copy(update={"blobs": result.remaining})}
    )


def _load_view(context: df.DurableOrchestrationContext, machine_id: str) -> Orchestration:
    raw = yield context.call_activity_with_retry(
        load_replication_view, STORAGE_RETRY, _dump(MachineRef(machine_id=machine_id))
    )
    loaded = GenerationView.model_validate(raw)
    return loaded.view, loaded.timings


def _run_job(context: df.DurableOrchestrationContext, view: ReplicationView) -> Orchestration:
    """True when the job ends the orchestration (stop replication, complete migration)."""
    assert view.job is not None
    job = JobRef(machine_id=view.machine_id, job_id=view.job.id)
    try:
        if view.job.kind is JobKind.ENABLE_REPLICATION:
            yield context.call_activity_with_retry(create_replica_disks, STORAGE_RETRY, _dump(job))
            yield context.call_activity_with_retry(start_initial_replication, STORAGE_RETRY, _dump(job))
            return False
        if view.job.kind in (JobKind.STOP_REPLICATION, JobKind.COMPLETE_MIGRATION):
            yield context.call_activity_with_retry(remove_replication_data, STORAGE_RETRY, _dump(job))
            return True
    except Exception as exc:
        # Retries exhausted: the job says why and the orchestration ends; the operator's retry of the
        # request starts a fresh one.
        failure = JobFailure(machine_id=job.machine_id, job_id=job.job_id, message=str(exc))
        yield context.call_activity(fail_job, _dump(failure))
        return True
    return False


def _apply_cycle(
    context: df.DurableOrchestrationContext,
    view: ReplicationView,
    cycle: Cycle,
    machine_seen: MachineSnapshot | None = None,
    start_wait: TaskBase | None = None,
) -> Orchestration:
    """Returns the cycle's `CycleCompleted`, or None when the cycle was rejected (nothing written).
    `machine_seen`: a copy of the machine the cycle's signals carried (as its upload's acceptance read it
    or its start's watch left it), which its completion writes on, conditional on its ETag, instead of
    reading the machine again. `start_wait`: a wait for a cycle start, watched while the cycle is applied:
    the cycle's own start, signalled after its upload (Event Grid keeps no order), carries a copy that
    saw the start's watch, which `machine_seen` (read before it) did not."""
    started_at = context.current_utc_datetime
    disks = {d.id: d for d in view.disks}
    requests = [
        DiskApply(
            machine_id=view.machine_id,
            cycle_id=cycle.id,
            disk_id=disk_id,
            manifest_blob=blob,
            disk_size=disks[disk_id].size_bytes,
            base=cycle.kind in BASE_KINDS,
        )
        for disk_id, blob in sorted(cycle.manifests.items())
    ]
    if cycle.kind in BASE_KINDS:
        copied = yield from _apply_whole_disk_copy(context, view, cycle, requests)
        if copied is None:
            return None
        results = copied
    else:
        # Every disk in one pass, in parallel: each is verified while it is written (one read of the data).
        applies = context.task_all(
            [context.call_activity_with_retry(apply_cycle_disk, STORAGE_RETRY, _dump(r)) for r in requests]
        )
        if start_wait is not None:
            # Waited for alongside from the start, so a start raised meanwhile completes this wait.
            yield context.task_any([applies, start_wait])
        raw = yield applies
        results = [DiskApplied.model_validate(r) for r in raw]
        if any(not r.ok for r in results):
            # A rejected cycle never leaves a replica changed: every disk it wrote (the good ones, and a
            # damaged one found after a write) goes back to the previous recovery point first.
            written = sorted(r.disk_id for r in results if r.ok or r.replica_changed)
            if written:
                yield from _restore(context, view.machine_id, cycle.id, written)

    rejected = [r for r in results if not r.ok]
    if rejected:
        yield from _reject(context, view, cycle, rejected)
        return None

    # Every disk of the machine, not only those the cycle carried (a resync of one disk, a cycle that
    # skipped an idle disk): a recovery point that lacks a disk cannot bring the machine back.
    snapshot = context.call_activity_with_retry(
        snapshot_recovery_point,
        STORAGE_RETRY,
        _dump(
            SnapshotRequest(
                machine_id=view.machine_id,
                cycle_id=cycle.id,
                sequence=cycle.sequence,
                consistency=Consistency.APP if cycle.app_consistent else Consistency.CRASH,
                disk_ids=sorted(d.id for d in view.disks),
            )
        ),
    )
    if start_wait is not None and not start_wait.is_completed:
        yield context.task_any([snapshot, start_wait])
    taken = SnapshotTaken.model_validate((yield snapshot))
    if start_wait is not None and start_wait.is_completed:
        machine_seen = _newer_copy(machine_seen, _cycle_signal(start_wait.result), cycle.id)
    completed = CycleCompleted.model_validate(
        (
            yield context.call_activity_with_retry(
                complete_cycle,
                STORAGE_RETRY,
                _dump(
                    CycleCompletion(
                        cycle=cycle,
                        recovery_point=taken.recovery_point,
                        missing_disks=taken.missing_disks,
                        bytes_applied=sum(r.bytes_applied for r in results),
                        policy=view.policy,
                        artefacts=sorted({b for r in results for b in r.data_blobs}),
                        started_at=started_at,
                        machine_seen=machine_seen,
                    )
                ),
            )
        )
    )
    return completed


def _apply_whole_disk_copy(
    context: df.DurableOrchestrationContext,
    view: ReplicationView,
    cycle: Cycle,
    requests: list[DiskApply],
) -> Orchestration:
    """An initial copy or resync of any size: each disk is cut into bounded units, and the units of every
    disk are applied a batch of `parallelism` at a time, each verified and written by its own activity,
    with progress recorded after each batch. A finished unit is history: after a crash the orchestration
    replays them and resumes at the units that were running. Returns one `DiskApplied` per disk, or None
    when the upload was rejected (reported; the replica needs the resync that the rejection asks for).

    Unlike a delta, disks are not verified whole before the first write: that would be a second read of
    the whole disk, and a whole-disk copy replaces the replica anyway; recovery points (snapshots) are
    untouched by it."""
    raw_plans = yield context.task_all(
        [context.call_activity_with_retry(plan_cycle_disk_units, STORAGE_RETRY, _dump(r)) for r in requests]
    )
    plans = [DiskUnitPlan.model_validate(p) for p in raw_plans]
    refused = [
        DiskApplied(
            disk_id=p.disk_id,
            ok=False,
            error_code=p.error_code,
            error_message=p.error_message,
            error_details=p.error_details,
        )
        for p in plans
        if not p.ok
    ]
    if refused:
        yield from _reject(context, view, cycle, refused)
        return None
    work = [(plan.disk_id, unit) for plan in plans for unit in plan.units]
    disk_bytes = {p.disk_id: sum(u.bytes for u in p.units) for p in plans}
    before: dict[tuple[str, int], int] = {}
    for plan in plans:
        so_far = 0
        for unit in plan.units:
            before[(plan.disk_id, unit.index)] = so_far
            so_far += unit.bytes
    parallelism = min((p.parallelism for p in plans), default=1)
    total_bytes = sum(unit.bytes for _, unit in work)
    applied: dict[str, int] = {p.disk_id: 0 for p in plans}
    done_bytes = done_units = 0
    for first in range(0, len(work), parallelism):
        batch = work[first : first + parallelism]
        raw = yield context.task_all(
            [
                context.call_activity_with_retry(
                    apply_disk_unit,
                    STORAGE_RETRY,
                    _dump(
                        UnitApply(
                            machine_id=view.machine_id,
                            cycle_id=cycle.id,
                            disk_id=disk_id,
                            unit=unit,
                            bytes_before=before[(disk_id, unit.index)],
                            disk_bytes=disk_bytes[disk_id],
                        )
                    ),
                )
                for disk_id, unit in batch
            ]
        )
        outcomes = [DiskApplied.model_validate(r) for r in raw]
        bad = [o for o in outcomes if not o.ok]
        if bad:
            yield from _reject(context, view, cycle, bad)
            return None
        for outcome in outcomes:
            applied[outcome.disk_id] += outcome.bytes_applied
        done_bytes += sum(unit.bytes for _, unit in batch)
        done_units += len(batch)
        share = done_bytes / total_bytes if total_bytes else done_units / len(work)
        yield context.call_activity_with_retry(
            report_progress,
            STORAGE_RETRY,
            _dump(ProgressUpdate(machine_id=view.machine_id, percent=round(99.0 * share, 1))),
        )
    return [
        DiskApplied(disk_id=p.disk_id, ok=True, bytes_applied=applied[p.disk_id], data_blobs=p.data_blobs)
        for p in plans
    ]


def _restore(
    context: df.DurableOrchestrationContext, machine_id: str, cycle_id: str, disk_ids: list[str]
) -> Orchestration:
    """Put replicas back to the latest recovery point: the activity starts the server-side copies and
    answers whether they are done; the orchestration waits between asks with a durable timer."""
    request = _dump(RestoreRequest(machine_id=machine_id, cycle_id=cycle_id, disk_ids=disk_ids))
    deadline = context.current_utc_datetime + RESTORE_WAIT_LIMIT
    while True:
        state = RestoreState.model_validate(
            (yield context.call_activity_with_retry(restore_replicas, STORAGE_RETRY, request))
        )
        if state.done or context.current_utc_datetime >= deadline:
            return state
        yield context.create_timer(
            context.current_utc_datetime + timedelta(seconds=state.retry_after_seconds)
        )


def _reject(
    context: df.DurableOrchestrationContext, view: ReplicationView, cycle: Cycle, rejected: list[DiskApplied]
) -> Orchestration:
    yield context.call_activity_with_retry(
        reject_cycle,
        STORAGE_RETRY,
        _dump(
            CycleRejection(
                machine_id=view.machine_id,
                cycle_id=cycle.id,
                rejected_disks=rejected,
                carried_disk_ids=sorted(cycle.manifests),
            )
        ),
    )


def _after_disposal(
    context: df.DurableOrchestrationContext,
    state: OrchestrationState,
    cycle: Cycle,
    completed: CycleCompleted,
) -> OrchestrationState:
    if not completed.undisposed:
        return state
    pending = PendingDisposal(
        cycle_id=cycle.id, blobs=completed.undisposed, since=context.current_utc_datetime
    )
    return state.model_copy(update={"pending_disposal": pending})


def _still_fresh(context: df.DurableOrchestrationContext, follow: FollowState) -> bool:
    now: datetime = context.current_utc_datetime
    return now < follow.view_read_at + VIEW_REFRESH


def _apply_followed(
    context: df.DurableOrchestrationContext, state: OrchestrationState, follow: FollowState, cycle: Cycle
) -> Orchestration:
    """Apply the signalled next delta with the carried machine and policy; returns the state to continue
    with (following on, or not after a rejection or an undisposed upload: the next generation plans)."""
    view = ReplicationView(
        machine_id=state.machine_id,
        appliance_id="",  # not used to apply
        state=follow.machine.state,
        disks=follow.machine.disks,
        last_applied_sequence=follow.machine.last_applied_sequence,
        policy=follow.policy,
        plan=plan_ready_cycles([cycle], follow.machine.last_applied_sequence),
        job=None,
    )
    start_wait = context.wait_for_external_event(CYCLE_STARTED_SIGNAL)
    completed = yield from _apply_cycle(context, view, cycle, follow.next_machine, start_wait)
    if completed is None or completed.machine is None:
        return state.model_copy(update={"follow": None})
    state = _after_disposal(context, state, cycle, completed)
    if state.pending_disposal is not None:
        return state.model_copy(update={"follow": None})
    following = follow.model_copy(
        update={
            "machine": completed.machine,
            "next_cycle": None,
            "next_machine": None,
            "upload_watch": completed.machine.upload_watch,
        }
    )
    earlier_start = _cycle_signal(start_wait.result) if start_wait.is_completed else None
    return (yield from _sleep_following(context, state, following, earlier_start))


def _sleep_following(
    context: df.DurableOrchestrationContext,
    state: OrchestrationState,
    follow: FollowState,
    earlier_start: CycleSignal | None = None,
) -> Orchestration:
    """Sleep until a signal or a timer, and say what the next generation does: apply the next delta from
    its signal, or (anything else: an operator request, a cycle out of sequence, a whole-disk copy, the
    timer, a missed upload deadline) re-read the view and plan. A cycle start taken during the sleep
    re-arms its deadline without ending it (`_sleep_until_signalled`).

    One sleep per generation (see `_sleep_until_signalled`), so the loop is continue-as-new, never a
    loop inside one execution. `earlier_start`: a cycle start taken while the last cycle was applied; if
    it is of a later cycle, the sleep keeps its deadline and its machine copy as if taken now."""
    now: datetime = context.current_utc_datetime
    applied = follow.machine.last_applied_sequence
    watched = earlier_start.upload_watch if earlier_start is not None else None
    if earlier_start is None or watched is None or (applied is not None and watched.sequence <= applied):
        earlier_start = None
    else:
        follow = follow.model_copy(update={"upload_watch": watched})

    def deadline_for(watch: UploadWatch | None) -> datetime:
        deadline = min(now + IDLE_WAKE_UP, follow.view_read_at + VIEW_REFRESH)
        if watch is not None and (applied is None or watch.sequence > applied):
            deadline = min(deadline, watch.deadline)  # the next generation raises 1011 if it is missed
        return max(deadline, now)

    wake = yield from _sleep_until_signalled(context, deadline_for(follow.upload_watch), deadline_for)
    if wake.upload_watch is None and earlier_start is not None:
        wake = Wake(cycle=wake.cycle, start=earlier_start)
    if wake.upload_watch is not None:
        follow = follow.model_copy(update={"upload_watch": wake.upload_watch})
    signal = wake.cycle
    if signal is None:
        return state.model_copy(update={"follow": None})
    cycle = signal.cycle
    if cycle is not None and applied is not None and cycle.sequence <= applied:
        return state.model_copy(update={"follow": follow})  # a redelivered upload of an applied cycle
    if cycle is None or not _follows(follow.machine, cycle):
        return state.model_copy(update={"follow": None})
    next_machine = _newer_copy(signal.machine, wake.start, signal.cycle_id)
    following = follow.model_copy(update={"next_cycle": cycle, "next_machine": next_machine})
    return state.model_copy(update={"follow": following})


def _newer_copy(
    uploaded: MachineSnapshot | None, started: CycleSignal | None, cycle_id: str
) -> MachineSnapshot | None:
    """Of the upload's copy of the machine and a start's, the one the cycle's completion writes on. The
    upload's acceptance read the machine and the cycle's start patched its watch in, in either order
    (Event Grid delivers in no order): a read that shows the watch came after the patch, else the patch
    came after the read. Only the cycle's own start counts: a late start of an earlier cycle carries a
    copy from before that cycle was recorded. A wrong guess only costs the completion a 412 and a read."""
    watch = started.upload_watch if started is not None else None
    if started is None or started.machine is None or watch is None or watch.cycle_id != cycle_id:
        return uploaded
    if uploaded is None:
        return started.machine
    shown = uploaded.machine.replication.upload_watch
    return uploaded if shown is not None and shown.cycle_id == cycle_id else started.machine


def _follows(after: MachineAfterCycle, cycle: Cycle) -> bool:
    """A delta the generation may apply from a signal alone: the very next sequence number of a machine
    that replicates freely. Anything else goes through the next generation's plan."""
    return (
        after.state in FOLLOWING_STATES
        and cycle.kind not in CHAIN_START_KINDS
        and after.last_applied_sequence is not None
        and cycle.sequence == after.last_applied_sequence + 1
    )


@dataclass(frozen=True)
class Wake:
    """Why a sleep ended: the upload signal that ended it (None for a timer or an operator request), and
    the signal of a cycle start taken during it (its upload watch, the machine as that start left it)."""

    cycle: CycleSignal | None = None
    start: CycleSignal | None = None

    @property
    def upload_watch(self) -> UploadWatch | None:
        return self.start.upload_watch if self.start is not None else None


def _sleep_until_signalled(
    context: df.DurableOrchestrationContext,
    deadline: datetime,
    rearm: Callable[[UploadWatch], datetime] | None = None,
) -> Orchestration:
    """Sleep until an upload signal, an operator request or the deadline; returns the `Wake`.

    A cycle start does not end the sleep: it moves the deadline (`rearm`, by default the earlier of the
    two) and the sleep goes on in the same execution, on the same CycleUploaded task. The appliance
    signals a small delta's upload a moment after its start, often into the same episode, and an event
    delivered but not consumed is discarded by continue-as-new. Each name is waited for once per
    execution: the SDK hands an event that arrived before its wait to every later wait of the same name
    (azure-functions-durable-python#507). A second start in one sleep is therefore not seen; its deadline
    is found when the view is next read."""
    timer = context.create_timer(deadline)
    cycle_signal = context.wait_for_external_event(CYCLE_UPLOADED_SIGNAL)
    cycle_start = context.wait_for_external_event(CYCLE_STARTED_SIGNAL)
    operator_request = context.wait_for_external_event(OPERATOR_REQUEST)
    winner = yield context.task_any([cycle_signal, cycle_start, operator_request, timer])
    started: CycleSignal | None = None
    if winner is cycle_start:
        timer.cancel()
        started = _cycle_signal(winner.result)
        watch = started.upload_watch if started is not None else None
        if watch is not None:
            deadline = rearm(watch) if rearm is not None else min(deadline, watch.deadline)
        timer = context.create_timer(max(deadline, context.current_utc_datetime))
        winner = yield context.task_any([cycle_signal, operator_request, timer])
    if winner is not timer:
        timer.cancel()
    if winner is not cycle_signal:
        return Wake(start=started)
    return Wake(cycle=_cycle_signal(winner.result), start=started)


def _cycle_signal(raw: Any) -> CycleSignal | None:
    # The event's data arrives as the JSON the trigger raised (a string or already decoded).
    data = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(data, dict):
        return None
    try:
        return CycleSignal.model_validate(data)
    except ValidationError:
        return None  # an older trigger's shape: the next generation re-reads the inbox


def _continue(context: df.DurableOrchestrationContext, state: OrchestrationState) -> None:
    context.continue_as_new(state.model_copy(update={"generation": state.generation + 1}).to_input())


def _dump(payload: Payload) -> dict[str, Any]:
    dumped: dict[str, Any] = payload.model_dump(mode="json")
    return dumped
