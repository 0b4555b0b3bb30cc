"""The PlannedFailover and CancelPlannedFailover jobs: a sub-orchestration of the machine's reverse
orchestration, which runs it between two reverse cycles (so no cycle writes the on-premises disks
meanwhile) and reads, in its next episode, where the job left the machine.

Planned failover (Azure -> on-premises), one job step each: check prerequisites; pre-sync (a reverse
cycle while the Azure VM still runs, so that the final one is short); shut down the Azure VM (the
downtime starts); final snapshot and final sync (a last reverse cycle of the stopped VM's disks: nothing
written in Azure is lost; its snapshots are kept until commit or cancel); detach the disks from the
appliance; snapshot the on-premises disks before power-on (SnapshotDisks); power on the on-premises VM;
verify its heartbeat (a bounded wait; the downtime ends). The reverse cycles are the reverse
orchestration's own (`_cycle`), called with this job's cycle names.

A failed step ends the job Failed and starts its cancel at once (the reverse orchestration runs it
next). The cancel undoes only what was done, each step checking first: power the on-premises VM off,
revert its disks to the copies taken before power-on (if they were taken), re-attach them, start the
Azure VM (a running VM is left as it is), resume reverse replication (the copies are deleted; the next
cycle applies from the final snapshot). A cancel that fails leaves PlannedFailbackCancelFailed for the
operator to cancel again.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from orchestrators.blueprints import durable_blueprint
from orchestrators.failback.activities import reverse_cycle_settings
from orchestrators.failback.contracts import (
    FAILBACK_JOB,
    CommandView,
    CommandWatch,
    CycleSettings,
    FailbackRun,
    Queued,
    ReverseInput,
    StepRef,
    StepResult,
)
from orchestrators.failback.job_steps import At, Stopped, begin, progress, run_job
from orchestrators.failback.orchestrator import Orchestration, _answer, _cycle
from orchestrators.failback.planned_activities import (
    Attachment,
    CommandName,
    FailbackCommand,
    Recorded,
    check_planned_failover_prerequisites,
    end_cancel_job,
    end_planned_failover_job,
    keep_disk_copies,
    keep_final_snapshots,
    queue_failback_command,
    read_failback_record,
    record_power_on,
    set_disks_detached,
    start_azure_vm,
    stop_azure_vm,
)
from orchestrators.hydration.itinerary import call_activity
from orchestrators.polling import Wait
from shared.domain.failback import CancelPlannedFailoverStep as Undo
from shared.domain.failback import PlannedFailoverStep as Step
from shared.domain.failback import ReprotectStep
from shared.failback.planned import FailbackOutcome

bp = durable_blueprint()
# The shared command wait names a Reprotect step in its error; these jobs report their own step instead.
_ANY_STEP = ReprotectStep.START_REVERSE_REPLICATION


@bp.orchestration_trigger(context_name="context", orchestration=FAILBACK_JOB)
def failback_job_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    run = FailbackRun.model_validate(context.get_input())
    at = At(step=Undo.POWER_OFF_ON_PREMISES if run.cancel else Step.CHECK_PREREQUISITES)
    end = end_cancel_job if run.cancel else end_planned_failover_job
    succeeded: bool = yield from run_job(
        context, run, at, _cancel if run.cancel else _planned_failover, outcome=FailbackOutcome, end=end
    )
    return succeeded


# --- planned failover -----------------------------------------------------------------------------


def _planned_failover(context: df.DurableOrchestrationContext, run: FailbackRun, at: At) -> Orchestration:
    ref = StepRef(machine_id=run.machine_id, job_id=run.job_id)

    yield from begin(context, run, at, Step.CHECK_PREREQUISITES)
    checked = StepResult.model_validate((yield _call(context, check_planned_failover_prerequisites, ref)))
    if not checked.ok:
        raise Stopped(checked.error_code, checked.message)
    yield progress(context, run, (Step.CHECK_PREREQUISITES, "Succeeded", checked.message))

    yield from begin(context, run, at, Step.PRE_SYNC)
    yield from _reverse_cycle(context, run, "pre")
    yield progress(context, run, (Step.PRE_SYNC, "Succeeded", "a reverse cycle while the Azure VM ran"))

    yield from begin(context, run, at, Step.SHUT_DOWN_AZURE_VM)
    stopped = StepResult.model_validate((yield _call(context, stop_azure_vm, ref)))
    if not stopped.ok:
        raise Stopped(stopped.error_code, stopped.message)
    yield progress(context, run, (Step.SHUT_DOWN_AZURE_VM, "Succeeded", stopped.message))

    yield from begin(context, run, at, Step.FINAL_SYNC)
    yield from _reverse_cycle(context, run, "final")
    final = Recorded.model_validate((yield _call(context, keep_final_snapshots, ref)))
    yield progress(
        context,
        run,
        (
            Step.FINAL_SYNC,
            "Succeeded",
            f"the on-premises disks equal the final snapshots: {', '.join(final.values.values())}",
        ),
    )

    yield from begin(context, run, at, Step.DETACH_DISKS)
    yield _call(
        context, set_disks_detached, Attachment(machine_id=run.machine_id, job_id=run.job_id, detached=True)
    )
    yield progress(
        context, run, (Step.DETACH_DISKS, "Succeeded", "no reverse manifest is sent to the disks any more")
    )

    yield from begin(context, run, at, Step.SNAPSHOT_ON_PREMISES)
    copied = yield from command(context, run, "snapshotDisks")
    copies = Recorded.model_validate(
        (yield _call(context, keep_disk_copies, CommandWatch(machine_id=run.machine_id, command_id=copied)))
    )
    if not copies.done:
        raise Stopped(None, copies.message)
    yield progress(context, run, (Step.SNAPSHOT_ON_PREMISES, "Succeeded", copies.message))

    yield from begin(context, run, at, Step.POWER_ON_ON_PREMISES)
    powered = yield from command(context, run, "powerOn")
    yield progress(context, run, (Step.POWER_ON_ON_PREMISES, "Succeeded", "the on-premises VM is on"))

    yield from begin(context, run, at, Step.VERIFY_HEARTBEAT)
    polling = CycleSettings.model_validate((yield _call(context, reverse_cycle_settings, ref)))
    wait = Wait.starting(
        context.current_utc_datetime,
        timeout_seconds=polling.timeout_seconds,
        poll_seconds=polling.poll_seconds,
    )
    attempt = 0
    while True:
        heard = Recorded.model_validate(
            (
                yield _call(
                    context, record_power_on, CommandWatch(machine_id=run.machine_id, command_id=powered)
                )
            )
        )
        if heard.done:
            break
        if wait.over(context.current_utc_datetime):
            raise Stopped(
                "OnPremisesHeartbeatMissing",
                f"the on-premises VM sent no heartbeat within {polling.timeout_seconds / 60:.0f} minutes of power-on",
            )
        yield context.create_timer(wait.next_ask(context.current_utc_datetime))
        attempt += 1
        # Asked again: the answer of a powered-on machine says whether its guest has been heard since.
        powered = yield from command(context, run, "powerOn", attempt=attempt)
    yield progress(context, run, (Step.VERIFY_HEARTBEAT, "Succeeded", heard.message))


def _reverse_cycle(context: df.DurableOrchestrationContext, run: FailbackRun, name: str) -> Orchestration:
    """One reverse cycle, the reverse orchestration's own, under this job's cycle name."""
    ref = StepRef(machine_id=run.machine_id, job_id=run.job_id)
    settings = CycleSettings.model_validate((yield _call(context, reverse_cycle_settings, ref)))
    if not settings.active:
        raise Stopped(None, "the machine is no longer protected back")
    job = ReverseInput(machine_id=run.machine_id, job_id=run.job_id, phase="cycles")
    yield from _cycle(context, job, settings, f"{run.job_id[-40:]}-{name}")


# --- cancel ---------------------------------------------------------------------------------------


def _cancel(context: df.DurableOrchestrationContext, run: FailbackRun, at: At) -> Orchestration:
    ref = StepRef(machine_id=run.machine_id, job_id=run.job_id)

    yield from begin(context, run, at, Undo.POWER_OFF_ON_PREMISES)
    yield from command(context, run, "powerOff")
    yield progress(context, run, (Undo.POWER_OFF_ON_PREMISES, "Succeeded", "the on-premises VM is off"))

    yield from begin(context, run, at, Undo.REVERT_DISKS)
    record = Recorded.model_validate((yield _call(context, read_failback_record, ref)))
    if record.done:
        yield from command(context, run, "revertDisks")
        reverted = "the disks are their copies taken before power-on again"
    else:
        reverted = "no copy was taken: the disks were not changed by a power-on"
    yield progress(context, run, (Undo.REVERT_DISKS, "Succeeded", reverted))

    yield from begin(context, run, at, Undo.REATTACH_DISKS)
    yield _call(
        context, set_disks_detached, Attachment(machine_id=run.machine_id, job_id=run.job_id, detached=False)
    )
    yield progress(context, run, (Undo.REATTACH_DISKS, "Succeeded", "the appliance writes the disks again"))

    yield from begin(context, run, at, Undo.START_AZURE_VM)
    started = StepResult.model_validate((yield _call(context, start_azure_vm, ref)))
    if not started.ok:
        raise Stopped(started.error_code, started.message)
    yield progress(context, run, (Undo.START_AZURE_VM, "Succeeded", started.message))

    yield from begin(context, run, at, Undo.RESUME_REVERSE_REPLICATION)
    if record.done:
        yield from command(context, run, "deleteDiskSnapshots")
    yield progress(
        context,
        run,
        (
            Undo.RESUME_REVERSE_REPLICATION,
            "Succeeded",
            "the next reverse cycle applies from the final snapshot",
        ),
    )


# --- helpers --------------------------------------------------------------------------------------


def command(
    context: df.DurableOrchestrationContext, run: FailbackRun, command: CommandName, *, attempt: int = 0
) -> Orchestration:
    """Queue an appliance command and wait (bounded) for its answer; an error answer stops the job."""
    queued = Queued.model_validate(
        (
            yield _call(
                context,
                queue_failback_command,
                FailbackCommand(
                    machine_id=run.machine_id, job_id=run.job_id, command=command, attempt=attempt
                ),
            )
        )
    )
    command_id = queued.command_ids[0]
    job = ReverseInput(machine_id=run.machine_id, job_id=run.job_id, phase="cycles")
    view: CommandView = yield from _answer(context, job, queued, command_id, _ANY_STEP)
    if view.error_code:
        raise Stopped(view.error_code, view.error_message or f"the appliance could not carry out {command}")
    return command_id


def _call(context: df.DurableOrchestrationContext, activity: Any, payload: Any) -> Any:
    return call_activity(context, activity, payload)
