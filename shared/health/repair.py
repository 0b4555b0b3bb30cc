"""Repair replication: the operator asks for every disk to be resynced; recovery points are kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.domain.errors import Conflict
from shared.domain.health import Health
from shared.domain.job import Job, JobKind, JobStatus, StepChange, new_job
from shared.domain.lifecycle import MachineState, transition
from shared.domain.machine import Machine
from shared.health.writer import RESYNC_FROM, queue_resync
from shared.jobs import lifecycle as jobs
from shared.platform.repository import Repositories

REPAIR_STEPS = ("Request a resync of every disk from the appliance", "Apply the resync cycle")


@dataclass(frozen=True)
class RepairStarted:
    machine: Machine
    job: Job
    is_retry: bool


def start_repair(repos: Repositories, machine_id: str, *, job_id: str, now: datetime) -> RepairStarted:
    """ "Repair replication": resync every disk from a fresh snapshot; recovery points are kept.

    409 ForbiddenTransition when the state does not allow a resync; 409 Conflict when the machine has no
    replication error to repair. A repair already under way (Resyncing with a RepairReplication job) is
    returned again (is_retry) rather than started twice. Round-trips: 2 (machine) + 3 (job: create, then
    an If-Match step update) + 2 per disk (commands) + 1 (event).
    """

    def begin(machine: Machine) -> tuple[str, bool]:
        if machine.state is MachineState.RESYNCING and machine.active_job_id:
            return machine.active_job_id, True
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
        return job_id, False

    stored, (active_job, is_retry) = repos.machines.update_with_retry(machine_id, begin)
    machine = stored.item
    if is_retry:
        existing = jobs.get(repos, active_job)
        if existing is not None:
            return RepairStarted(machine, existing, True)
    jobs.create(repos, new_job(job_id, JobKind.REPAIR_REPLICATION, machine.id, REPAIR_STEPS, now))
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
    return RepairStarted(machine, job, False)
