"""Reverse protection of one machine, its own orchestration instance `reverse-{machineId}`: the one
writer of the machine's reverse replication.

The first episode runs the Reprotect job, one job step each: check prerequisites; power the on-premises
machine off (PowerOffMachine, a bounded wait for its acknowledgement); determine the baseline (S1, a new
incremental snapshot of each Azure disk, and the appliance's change record since the failover point);
the initial reverse sync (per disk the page-range diff S0 -> S1 united with the on-premises changes, or,
without a change record or a diff, the block hashes compared; ApplyReverseManifest commands read from
S1; a failed answer is sent again from the same snapshot); start reverse replication. Any failure ends
read access and deletes the snapshots the job took, and the job's end returns the machine to
FailoverCommitted with the catalog's error.

Then one reverse cycle per episode (`continue_as_new`), every `reverseCycleMinutes` of the appliance's
policy: S_k, the diff since S_{k-1}, the manifests, the answers (a failed answer is sent again from the
same S_k), a reverse recovery point, access ended, the snapshots older than S_{k-1} deleted. A cycle
that fails deletes S_k and records the error; the next one starts again from S_{k-1}. The cycles stop
when the machine leaves ReverseReplicating.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

import azure.durable_functions as df

from orchestrators.blueprints import durable_blueprint
from orchestrators.failback.activities import (
    MAX_APPLY_ATTEMPTS,
    check_reprotect_prerequisites,
    delete_reverse_snapshots,
    end_reprotect_job,
    end_snapshot_access,
    prune_reverse_snapshots,
    read_command,
    record_reverse_cycle_failure,
    record_reverse_point,
    request_block_hashes,
    request_changed_blocks,
    request_power_off,
    resend_reverse_command,
    reverse_cycle_settings,
    send_reverse_disk,
    take_reverse_snapshots,
)
from orchestrators.failback.contracts import (
    FAILBACK_JOB,
    REVERSE_WAKE,
    ChangesRequest,
    CommandView,
    CommandWatch,
    CycleFailure,
    CycleSettings,
    DiskSend,
    DiskSent,
    FailbackRun,
    Fallback,
    PointRecord,
    Prune,
    Queued,
    ReprotectOutcome,
    Resend,
    ReverseInput,
    SnapshotIds,
    SnapshotsRequest,
    SnapshotsTaken,
    StepRef,
    StepResult,
)
from orchestrators.hydration.contracts import Payload
from orchestrators.hydration.itinerary import call_activity, record_progress
from orchestrators.polling import Wait
from shared.domain.failback import BaselineMethod
from shared.domain.failback import ReprotectStep as Step

REVERSE = "reverse_orchestrator"

Orchestration = Generator[Any, Any, Any]
# Azure takes at most 7 incremental snapshots of a disk in any 5 minutes (reverse cycles, a planned
# failover's pre and final cycles and other tools' snapshots all count): a refusal for a snapshot limit
# is asked again a minute later (REVERSE_SNAPSHOT_LIMIT_WAIT_SECONDS, which the activity reports) until
# those 5 minutes have passed, and only then stops the job (the 500-per-disk and 5-grants limits do not
# clear by waiting, so they still stop it, 6 minutes later).
SNAPSHOT_LIMIT_RETRIES: Final = 6
bp = durable_blueprint()


class ReverseStopped(Exception):
    def __init__(self, step: Step, code: str | None, message: str) -> None:
        super().__init__(message)
        self.step, self.code, self.message = step, code, message


@dataclass
class Where:
    step: Step = Step.CHECK_PREREQUISITES
    snapshots: list[str] = field(default_factory=list)


@dataclass
class Sent:
    """A cycle's bytes, summed over its disks."""

    processed: int = 0
    transferred: int = 0
    matched: int = 0
    hashed: bool = False


@bp.orchestration_trigger(context_name="context", orchestration=REVERSE)
def reverse_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    job = ReverseInput.model_validate(context.get_input())
    if job.phase == "reprotect":
        succeeded = yield from _reprotect_job(context, job)
        if succeeded:
            context.continue_as_new(job.model_copy(update={"phase": "cycles"}).model_dump(mode="json"))
        return None
    ref = StepRef(machine_id=job.machine_id, job_id=job.job_id)
    settings = CycleSettings.model_validate((yield _call(context, reverse_cycle_settings, ref)))
    if settings.failback_job_id is not None:
        # A planned failover or its cancel runs here, between two cycles, so that no cycle writes the
        # on-premises disks meanwhile. The next episode reads where it left the machine; cycles after it
        # are named after it, so no cycle reuses an earlier one's name.
        yield context.call_sub_orchestrator(
            FAILBACK_JOB,
            FailbackRun(
                machine_id=job.machine_id, job_id=settings.failback_job_id, cancel=settings.failback_cancel
            ).model_dump(mode="json"),
            f"{context.instance_id}-{settings.failback_job_id}",
        )
        after = ReverseInput(machine_id=job.machine_id, job_id=settings.failback_job_id, phase="cycles")
        context.continue_as_new(after.model_dump(mode="json"))
        return None
    if not settings.active or not settings.replicating:
        return None
    timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=settings.interval_seconds))
    wake = context.wait_for_external_event(REVERSE_WAKE)
    if (yield context.task_any([timer, wake])) is wake:
        # An operator's job waits (it is read from the machine, not from the event).
        timer.cancel()
        context.continue_as_new(job.model_dump(mode="json"))
        return None
    sequence = job.sequence + 1
    cycle_id = f"{job.job_id[-40:]}-c{sequence}"
    try:
        yield from _cycle(context, job, settings, cycle_id)
        job = job.model_copy(update={"sequence": sequence, "failures": 0})
    except ReverseStopped as stop:
        yield _call(
            context,
            record_reverse_cycle_failure,
            CycleFailure(
                machine_id=job.machine_id, cycle_id=cycle_id, error_code=stop.code, message=stop.message
            ),
        )
        # The next episode takes a new snapshot: a failed cycle's is deleted, so its name is not reused.
        job = job.model_copy(update={"sequence": sequence, "failures": job.failures + 1})
    context.continue_as_new(job.model_dump(mode="json"))
    return None


# --- the Reprotect job ----------------------------------------------------------------------------


def _reprotect_job(context: df.DurableOrchestrationContext, job: ReverseInput) -> Orchestration:
    where = Where()
    try:
        yield from _reprotect(context, job, where)
        outcome = ReprotectOutcome(machine_id=job.machine_id, job_id=job.job_id, succeeded=True)
    except ReverseStopped as stop:
        outcome = ReprotectOutcome(
            machine_id=job.machine_id,
            job_id=job.job_id,
            succeeded=False,
            failed_step=stop.step.value,
            error_code=stop.code,
            error_message=stop.message,
        )
    except Exception as exc:  # an activity that exhausted its retries
        outcome = ReprotectOutcome(
            machine_id=job.machine_id,
            job_id=job.job_id,
            succeeded=False,
            failed_step=where.step.value,
            error_code="ReprotectStepFailed",
            error_message=str(exc),
        )
    if not outcome.succeeded:
        if where.snapshots:
            yield _call(context, delete_reverse_snapshots, SnapshotIds(snapshot_ids=where.snapshots))
        yield _progress(context, job, (where.step, "Failed", outcome.error_message))
    yield _call(context, end_reprotect_job, outcome)
    return outcome.succeeded


def _reprotect(context: df.DurableOrchestrationContext, job: ReverseInput, where: Where) -> Orchestration:
    ref = StepRef(machine_id=job.machine_id, job_id=job.job_id)

    yield _progress(context, job, (Step.CHECK_PREREQUISITES, "InProgress", None))
    checked = StepResult.model_validate((yield _call(context, check_reprotect_prerequisites, ref)))
    if not checked.ok:
        raise ReverseStopped(Step.CHECK_PREREQUISITES, checked.error_code, checked.message)
    yield _progress(context, job, (Step.CHECK_PREREQUISITES, "Succeeded", checked.message))

    where.step = Step.POWER_OFF_ON_PREMISES
    yield _progress(context, job, (Step.POWER_OFF_ON_PREMISES, "InProgress", None))
    queued = Queued.model_validate((yield _call(context, request_power_off, ref)))
    answer = yield from _answer(context, job, queued, queued.command_ids[0], Step.POWER_OFF_ON_PREMISES)
    if answer.error_code:
        code = "OnPremisesMachineNotFound" if "notfound" in answer.error_code.lower() else answer.error_code
        raise ReverseStopped(Step.POWER_OFF_ON_PREMISES, code, answer.error_message or "power off failed")
    yield _progress(context, job, (Step.POWER_OFF_ON_PREMISES, "Succeeded", "the on-premises VM is off"))

    where.step = Step.DETERMINE_BASELINE
    yield _progress(context, job, (Step.DETERMINE_BASELINE, "InProgress", None))
    settings = CycleSettings.model_validate((yield _call(context, reverse_cycle_settings, ref)))
    cycle_id = f"{job.job_id[-40:]}-s1"
    taken = yield from _take_snapshots(
        context, SnapshotsRequest(machine_id=job.machine_id, job_id=job.job_id, cycle_id=cycle_id)
    )
    where.snapshots = list(taken.snapshot_ids.values())
    if not taken.ok:
        raise ReverseStopped(Step.DETERMINE_BASELINE, taken.error_code, taken.message)
    changes = Queued.model_validate(
        (
            yield _call(
                context, request_changed_blocks, ChangesRequest(machine_id=job.machine_id, job_id=job.job_id)
            )
        )
    )
    for command_id in changes.command_ids:
        yield from _answer(context, job, changes, command_id, Step.DETERMINE_BASELINE)
    has_records = len(changes.command_ids) == len(settings.disks)
    yield _progress(
        context,
        job,
        (
            Step.DETERMINE_BASELINE,
            "Succeeded",
            "S1 taken of every disk; changes since the failover point from "
            + (
                "Azure's page-range diff and the appliance's change record" if has_records else "block hashes"
            ),
        ),
    )

    where.step = Step.INITIAL_REVERSE_SYNC
    yield _progress(context, job, (Step.INITIAL_REVERSE_SYNC, "InProgress", None))
    sent = Sent()
    for i, disk in enumerate(settings.disks):
        send = DiskSend(
            machine_id=job.machine_id,
            cycle_id=cycle_id,
            azure_disk_id=disk.azure_disk_id,
            on_premises_disk_id=disk.on_premises_disk_id,
            previous_snapshot_id=settings.previous_snapshot_ids.get(disk.azure_disk_id),
            current_snapshot_id=taken.snapshot_ids[disk.azure_disk_id],
            disk_size=taken.disk_sizes.get(disk.azure_disk_id, 0),
            changes_command_id=changes.command_ids[i] if has_records else None,
        )
        yield from _send_disk(context, job, send, sent, Step.INITIAL_REVERSE_SYNC)
    yield _call(context, end_snapshot_access, SnapshotIds(snapshot_ids=where.snapshots))
    yield _call(
        context,
        record_reverse_point,
        PointRecord(
            machine_id=job.machine_id,
            cycle_id=cycle_id,
            snapshot_ids=taken.snapshot_ids,
            bytes_processed=sent.processed,
            bytes_transferred=sent.transferred,
            bytes_matched=sent.matched,
            baseline=(BaselineMethod.BLOCK_HASHES if sent.hashed else BaselineMethod.CHANGE_RECORDS).value,
        ),
    )
    yield _progress(
        context,
        job,
        (
            Step.INITIAL_REVERSE_SYNC,
            "Succeeded",
            f"processed {sent.processed} bytes: transferred {sent.transferred}, matched {sent.matched}",
        ),
        (Step.START_REVERSE_REPLICATION, "Succeeded", "reverse cycles run every reverseCycleMinutes"),
    )


# --- one disk, one cycle --------------------------------------------------------------------------


def _send_disk(
    context: df.DurableOrchestrationContext, job: ReverseInput, send: DiskSend, sent: Sent, step: Step
) -> Orchestration:
    """Plan, queue and wait for one disk's manifests; the hash fallback when no diff can tell (whole
    blocks first, then the differing ones in small pieces)."""
    result = DiskSent.model_validate((yield _call(context, send_reverse_disk, send)))
    if result.ok and result.fallback_reason is not None:
        hashes = Queued.model_validate(
            (
                yield _call(
                    context,
                    request_block_hashes,
                    Fallback(
                        machine_id=job.machine_id,
                        job_id=send.cycle_id,
                        azure_disk_id=send.azure_disk_id,
                        on_premises_disk_id=send.on_premises_disk_id,
                        reason=result.fallback_reason,
                    ),
                )
            )
        )
        answer = yield from _answer(context, job, hashes, hashes.command_ids[0], step)
        if answer.error_code:
            raise ReverseStopped(step, answer.error_code, answer.error_message or "hashing failed")
        hashed = send.model_copy(
            update={"hashes_command_id": hashes.command_ids[0], "changes_command_id": None}
        )
        result = DiskSent.model_validate((yield _call(context, send_reverse_disk, hashed)))
        sent.hashed = True
    if result.ok and result.refine is not None:
        # The finer pass: the appliance hashes the differing blocks again in small pieces.
        refine_id = result.refine.command_ids[0]
        answer = yield from _answer(context, job, result.refine, refine_id, step)
        if answer.error_code:
            raise ReverseStopped(step, answer.error_code, answer.error_message or "hashing failed")
        refined = send.model_copy(update={"hashes_command_id": refine_id, "changes_command_id": None})
        result = DiskSent.model_validate((yield _call(context, send_reverse_disk, refined)))
    if not result.ok:
        raise ReverseStopped(step, result.error_code, result.message)
    for command_id in result.command_ids:
        yield from _applied(context, job, command_id, step)
    sent.processed += result.bytes_processed
    sent.transferred += result.bytes_transferred
    sent.matched += result.bytes_matched


def _applied(
    context: df.DurableOrchestrationContext, job: ReverseInput, command_id: str, step: Step
) -> Orchestration:
    """Wait for an ApplyReverseManifest's answer; a failed one is sent again from the same snapshot."""
    polling = CycleSettings.model_validate((yield _call(context, reverse_cycle_settings, _ref(job))))
    current = command_id
    for attempt in range(1, MAX_APPLY_ATTEMPTS + 1):
        queued = Queued(
            command_ids=[current], poll_seconds=polling.poll_seconds, timeout_seconds=polling.timeout_seconds
        )
        answer = yield from _answer(context, job, queued, current, step)
        if not answer.error_code and answer.complete:
            return
        if attempt == MAX_APPLY_ATTEMPTS:
            raise ReverseStopped(
                step,
                answer.error_code,
                f"{answer.error_message or 'not every range was written'} (after {attempt} attempts)",
            )
        again = Queued.model_validate(
            (
                yield _call(
                    context,
                    resend_reverse_command,
                    Resend(machine_id=job.machine_id, command_id=current, attempt=attempt + 1),
                )
            )
        )
        current = again.command_ids[0]


def _answer(
    context: df.DurableOrchestrationContext, job: ReverseInput, polling: Queued, command_id: str, step: Step
) -> Orchestration:
    """The command's acknowledgement, polled with durable timers at a growing interval (orchestrators/
    polling.py); ApplianceUnreachable after the timeout."""
    wait = Wait.starting(
        context.current_utc_datetime,
        timeout_seconds=polling.timeout_seconds,
        poll_seconds=polling.poll_seconds,
    )
    watch = CommandWatch(machine_id=job.machine_id, command_id=command_id)
    while True:
        view = CommandView.model_validate((yield _call(context, read_command, watch)))
        if view.acknowledged:
            return view
        if wait.over(context.current_utc_datetime):
            raise ReverseStopped(
                step,
                "ApplianceUnreachable",
                f"the appliance did not answer command {command_id} within {polling.timeout_seconds / 60:.0f} minutes",
            )
        yield context.create_timer(wait.next_ask(context.current_utc_datetime))


def _take_snapshots(context: df.DurableOrchestrationContext, request: SnapshotsRequest) -> Orchestration:
    """The cycle's snapshot of every disk, waited for while Azure's snapshot limit refuses it."""
    waits = 0
    while True:
        taken = SnapshotsTaken.model_validate((yield _call(context, take_reverse_snapshots, request)))
        if taken.ok or taken.error_code != "SnapshotLimitReached" or waits == SNAPSHOT_LIMIT_RETRIES:
            return taken
        waits += 1
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=taken.limit_wait_seconds))


def _cycle(
    context: df.DurableOrchestrationContext, job: ReverseInput, settings: CycleSettings, cycle_id: str
) -> Orchestration:
    taken = yield from _take_snapshots(
        context, SnapshotsRequest(machine_id=job.machine_id, job_id=job.job_id, cycle_id=cycle_id)
    )
    made = list(taken.snapshot_ids.values())
    sent = Sent()
    try:
        if not taken.ok:
            raise ReverseStopped(Step.START_REVERSE_REPLICATION, taken.error_code, taken.message)
        for disk in settings.disks:
            send = DiskSend(
                machine_id=job.machine_id,
                cycle_id=cycle_id,
                azure_disk_id=disk.azure_disk_id,
                on_premises_disk_id=disk.on_premises_disk_id,
                previous_snapshot_id=settings.previous_snapshot_ids.get(disk.azure_disk_id),
                current_snapshot_id=taken.snapshot_ids[disk.azure_disk_id],
                disk_size=taken.disk_sizes.get(disk.azure_disk_id, 0),
            )
            yield from _send_disk(context, job, send, sent, Step.START_REVERSE_REPLICATION)
    except ReverseStopped:
        if made:
            yield _call(context, delete_reverse_snapshots, SnapshotIds(snapshot_ids=made))
        raise
    yield _call(context, end_snapshot_access, SnapshotIds(snapshot_ids=made))
    yield _call(
        context,
        record_reverse_point,
        PointRecord(
            machine_id=job.machine_id,
            cycle_id=cycle_id,
            snapshot_ids=taken.snapshot_ids,
            bytes_processed=sent.processed,
            bytes_transferred=sent.transferred,
            bytes_matched=sent.matched,
        ),
    )
    # S_k is now what on-premises equals; S_{k-1} is kept one cycle more, everything older goes.
    yield _call(context, prune_reverse_snapshots, Prune(kept=settings.previous_snapshot_ids))


def _ref(job: ReverseInput) -> StepRef:
    return StepRef(machine_id=job.machine_id, job_id=job.job_id)


def _call(context: df.DurableOrchestrationContext, activity: Any, payload: Payload | ReprotectOutcome) -> Any:
    return call_activity(context, activity, payload)


def _progress(
    context: df.DurableOrchestrationContext, job: ReverseInput, *updates: tuple[Step, str, str | None]
) -> Any:
    return record_progress(context, job.job_id, *updates)
