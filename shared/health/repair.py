"""Repair replication: the operator asks for every disk to be resynced; recovery points are kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.domain.errors import Conflict
from shared.domain.health import Health
from shared.domain.job import Job, JobKind, JobStatus, StepChange, new_job
from shared.domain.lifecycle import MachineState, transition
from shared.domain.machine import Machine
from shared.domain.pending_start import StartRunner
from shared.health.writer import RESYNC_FROM, queue_resync
from shared.jobs import lifecycle as jobs
from shared.jobs import starts
from shared.platform.repository import Repositories

REPAIR_STEPS = ("Request a resync of every disk from the appliance", "Apply the resync cycle")


@dataclass(frozen=True)
class RepairStarted:
    machine: Machine
    job: Job
    is_retry: bool


def start_repair(
    repos: Repositories,
    machine_id: str,
    *,
    job_id: str,
    now: datetime,
    idempotency_key: starts.RetryOf | str | None = None,
) -> RepairStarted:
    """ "Repair replication": resync every disk from a fresh snapshot; recovery points are kept.

    409 ForbiddenTransition when the state does not allow a resync; 409 Conflict when the machine has no
    replication error to repair. A repair already under way (Resyncing with a RepairReplication job) is
    returned again (is_retry) rather than started twice. Crash-safe (`shared.jobs.starts`, runner
    COMMANDS): the move to Resyncing and the job are one machine write; the rest (the job document, the
    commands, the event) is `complete_repair_start`, which a retry or the reconciler finishes if the
    request died half-way. Round-trips: 2 (machine) + 1 (job) + 2 per disk (commands) + 1 (event) + 2
    (job steps) + 2 (acknowledgement).
    """

    def begin(machine: Machine) -> str:
        if machine.state is MachineState.RESYNCING and machine.active_job_id:
            return machine.active_job_id
        nothing_wrong = not machine.replication.current_errors and machine.health is Health.HEALTHY
        if nothing_wrong and machine.state in RESYNC_FROM:
            raise Conflict(
                f"machine {machine.id} has no replication error to repair: it is {machine.state.value} "
                "and Healthy. Repair resyncs every disk; run it when the machine shows an error.",
                details=[{"machineId": machine.id, "health": machine.health.value}],
            )
        # Any other state is refused by the lifecycle (409 naming the allowed transitions).
        transition(machine, MachineState.RESYNCING, action="repair replication")
        machine.active_job_id = job_id
        machine.updated_at = now
        return job_id

    job = new_job(job_id, JobKind.REPAIR_REPLICATION, machine_id, REPAIR_STEPS, now)
    started = starts.begin(
        repos, machine_id, begin, job, now=now, idempotency_key=idempotency_key, runner=StartRunner.COMMANDS
    )
    active_job = started.job.id if started.replayed else str(started.result)
    if active_job != job_id or started.replayed:
        existing = jobs.get(repos, active_job)
        pending = started.machine.pending_start
        if pending is not None and pending.job.id == active_job and pending.open:
            # A repair whose request died before it was delivered: this request finishes it.
            existing = complete_repair_start(repos, machine_id, active_job, now=now)
        if existing is not None:
            return RepairStarted(started.machine, existing, True)
    return RepairStarted(
        started.machine, complete_repair_start(repos, machine_id, active_job, now=now), False
    )


def complete_repair_start(repos: Repositories, machine_id: str, job_id: str, *, now: datetime) -> Job:
    """What a repair's start does after its machine write, each part idempotent (commands and event by
    the job id, the steps only while the request step is open), then the start is acknowledged: run by the
    request, by a retry of it, or by the reconciler (re-delivery of a repair whose request died)."""
    machine = repos.machines.require(machine_id).item
    pending = machine.pending_start
    recorded = pending.job if pending is not None and pending.job.id == job_id else None
    job = jobs.get(repos, job_id) or jobs.create(
        repos, recorded or new_job(job_id, JobKind.REPAIR_REPLICATION, machine_id, REPAIR_STEPS, now)
    )
    if job.steps[0].status is not JobStatus.SUCCEEDED and not job.status.finished:
        disks = [d.id for d in machine.inventory.disks]
        event = queue_resync(
            repos, machine, disks, request_id=job_id, at=now, why="the operator's request", automatic=False
        )
        repos.events.put(event)
        job = jobs.update_steps(
            repos,
            job_id,
            [
                StepChange(REPAIR_STEPS[0], JobStatus.SUCCEEDED),
                StepChange(REPAIR_STEPS[1], JobStatus.IN_PROGRESS),
            ],
            now=now,
        )
    starts.acknowledge(repos, machine_id, job_id)
    return job
