"""Commit of a planned failover to on-premises: the use case behind POST /api/machines/{id}/commit on a
FailedBack machine, what its CommitFailback job does in Azure and in the replica storage, and how it ends.

The request moves the machine FailedBack -> CommittingFailback and records the job (409 with
`allowedOperations` in any other state, nothing written then). The job first brings each replica page
blob to its disk's final reverse snapshot (server side: Put Page From URL where the storage endpoint has
it, else streamed through the worker), because the snapshots go next and a later reprotect to Azure
starts from those replicas; then deletes the Azure VM and its NICs, the Azure disks and every reverse
snapshot (every resource tagged with the machine, plus those the machine records by id), and tells the
appliance to delete its pre-power-on copy of the disks. It ends FailbackCommitted: active on-premises, not
protected. A failure before anything was deleted returns to FailedBack (still cancellable); after that
the machine stays CommittingFailback and the operator commits again, which deletes only what is left.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from azure.core.exceptions import HttpResponseError
from pydantic import BaseModel, ConfigDict

from shared.domain.errors import Conflict
from shared.domain.failback import COMMIT_DELETING_STEPS, CommitFailbackStep
from shared.domain.health import Health
from shared.domain.job import Job, JobError, JobKind, JobStatus, new_job
from shared.domain.lifecycle import OPERATIONS, ForbiddenTransition, MachineState, Operation, transition
from shared.domain.machine import Machine
from shared.failback.planned import FailbackOutcome, FailbackStarted
from shared.health import Failure, HealthSettings, record_failures, reset_health
from shared.health.catalog import commit_failback_error
from shared.jobs import lifecycle as jobs
from shared.jobs import starts
from shared.migration.resource_kinds import (
    ResourceKind,
    delete_resource,
    deletion_rank,
    kind_of,
    kind_of_type,
)
from shared.migration.tags import TAG_MACHINE_ID
from shared.platform.arm_clients import ArmClients
from shared.platform.arm_errors import translate_arm_error
from shared.platform.repository import Repositories

S = MachineState

# What each deleting step removes: the kinds of the machine's resources, in deletion order.
STEP_KINDS: Final[dict[CommitFailbackStep, frozenset[ResourceKind]]] = {
    # The VM first (a NIC or disk attached to it cannot go), and any network helper left with it.
    CommitFailbackStep.DELETE_AZURE_VM: frozenset(
        {ResourceKind.VM, ResourceKind.NIC, ResourceKind.NSG, ResourceKind.VNET}
    ),
    CommitFailbackStep.DELETE_AZURE_DISKS: frozenset({ResourceKind.DISK}),
    CommitFailbackStep.DELETE_REVERSE_SNAPSHOTS: frozenset({ResourceKind.SNAPSHOT}),
}


def commit_steps() -> tuple[str, ...]:
    return tuple(step.value for step in CommitFailbackStep)


def commits_failback(repos: Repositories, machine_id: str) -> bool:
    """Whether POST /commit on this machine commits a planned failover to on-premises (the machine runs
    on-premises and waits for commit, or a commit of it failed) rather than a failover to Azure."""
    machine = repos.machines.get(machine_id)
    return machine is not None and machine.item.state in (S.FAILED_BACK, S.COMMITTING_FAILBACK)


def start_commit_failback(
    repos: Repositories,
    machine_id: str,
    *,
    job_id: str,
    now: datetime,
    idempotency_key: starts.RetryOf | str | None = None,
) -> FailbackStarted:
    """FailedBack -> CommittingFailback and a CommitFailback job; or, after a commit that failed past its
    first deletion, the same state again with a new job. 409 while a commit runs or in any other state."""

    def apply(machine: Machine) -> None:
        action = "commit the planned failover to on-premises"
        if not OPERATIONS[Operation.COMMIT].allows(machine.state):
            raise ForbiddenTransition(machine.id, machine.state, S.COMMITTING_FAILBACK, action)
        if machine.failback is None:
            raise Conflict(
                f"machine {machine.id} has no planned failover to on-premises to commit",
                details=[{"machineId": machine.id}],
            )
        if machine.state is S.COMMITTING_FAILBACK:
            running = jobs.get(repos, machine.active_job_id) if machine.active_job_id else None
            if running is not None and not running.status.finished:
                raise Conflict(
                    f"machine {machine.id}'s commit (job {running.id}) is still running: poll "
                    f"/api/jobs/{running.id} and commit again only if it fails",
                    details=[{"machineId": machine.id, "jobId": running.id}],
                )
        transition(machine, S.COMMITTING_FAILBACK, action=action)
        machine.failback = machine.failback.model_copy(update={"commit_job_id": job_id})
        machine.active_job_id = job_id
        machine.updated_at = now

    job = new_job(job_id, JobKind.COMMIT_FAILBACK, machine_id, commit_steps(), now)
    started = starts.begin(repos, machine_id, apply, job, now=now, idempotency_key=idempotency_key)
    return FailbackStarted(started.machine, started.job)


def committing(repos: Repositories, machine_id: str, job_id: str) -> Machine:
    """The machine while `job_id` is its running commit."""
    machine = repos.machines.require(machine_id).item
    if (
        machine.state is not S.COMMITTING_FAILBACK
        or machine.failback is None
        or machine.active_job_id != job_id
    ):
        raise Conflict(f"machine {machine_id} is {machine.state}; job {job_id} is not its running commit")
    return machine


class ReplicaSync(BaseModel):
    """One replica page blob and the final snapshot of the Azure disk it is brought to."""

    model_config = ConfigDict(frozen=True)

    on_premises_disk_id: str
    azure_disk_id: str
    snapshot_id: str


def replica_syncs(machine: Machine) -> list[ReplicaSync]:
    """Each on-premises disk's replica with its Azure disk's final snapshot (the one the on-premises disk
    equals since the final sync). Empty when the planned failover recorded none."""
    if machine.failback is None or machine.reverse is None:
        return []
    final = machine.failback.final_snapshot_ids
    return [
        ReplicaSync(
            on_premises_disk_id=d.on_premises_disk_id,
            azure_disk_id=d.azure_disk_id,
            snapshot_id=final[d.azure_disk_id],
        )
        for d in machine.reverse.disks
        if d.azure_disk_id in final and d.on_premises_disk_id
    ]


# --- the replicas (brought to the final snapshots by shared.replication.replica_disks) -------------


def record_replicas_synced(
    repos: Repositories, machine_id: str, job_id: str, synced: dict[str, str], copied: int, *, now: datetime
) -> None:
    def apply(machine: Machine) -> None:
        if machine.failback is None or machine.active_job_id != job_id:
            return
        machine.failback = machine.failback.model_copy(
            update={"replicas_synced": synced, "bytes_copied_in_azure": copied}
        )
        machine.updated_at = now

    repos.machines.update_with_retry(machine_id, apply)


# --- Azure ----------------------------------------------------------------------------------------


def record_deletions_started(repos: Repositories, machine_id: str, job_id: str, *, now: datetime) -> None:
    """Recorded before the first deletion: a commit that fails from here on cannot return to FailedBack."""

    def apply(machine: Machine) -> None:
        if machine.failback is None or machine.active_job_id != job_id or machine.failback.deletions_started:
            return
        machine.failback = machine.failback.model_copy(update={"deletions_started": True})
        machine.updated_at = now

    repos.machines.update_with_retry(machine_id, apply)


def recorded_resources(machine: Machine) -> list[str]:
    """What the machine's records name in Azure: the VM, its disks, the failback baselines and every
    reverse snapshot still listed (tags find the rest)."""
    ids: list[str] = []
    if machine.failover is not None:
        ids += [machine.failover.vm_id] if machine.failover.vm_id else []
        ids += machine.failover.disk_ids + machine.failover.failback_baseline_snapshot_ids
    if machine.reverse is not None:
        ids += [d.last_snapshot_id for d in machine.reverse.disks if d.last_snapshot_id]
        ids += [s for p in machine.reverse.recovery_points for s in p.snapshot_ids]
    if machine.failback is not None:
        ids += list(machine.failback.final_snapshot_ids.values())
    return ids


def resources_of(clients: ArmClients, machine_id: str) -> list[str]:
    """Every resource tagged with the machine (any purpose), as ARM ids."""
    try:
        listing = list(
            clients.resources.resources.list(
                filter=f"tagName eq '{TAG_MACHINE_ID}' and tagValue eq '{machine_id}'"
            )
        )
    except HttpResponseError as exc:
        raise translate_arm_error(exc, operation=f"list the resources of machine {machine_id}") from exc
    return [str(r.id) for r in listing if kind_of_type(str(r.type).lower()) is not None]


def delete_machine_resources(
    clients: ArmClients, machine: Machine, kinds: frozenset[ResourceKind]
) -> list[str]:
    """Delete the machine's resources of these kinds, found by tag and by its records, in deletion order;
    an absent one counts as deleted. Returns the ids deleted (or found gone)."""
    candidates = {i.lower(): i for i in [*recorded_resources(machine), *resources_of(clients, machine.id)]}
    doomed = [(kind_of(i), i) for i in candidates.values()]
    ordered = sorted(((deletion_rank(k), i) for k, i in doomed if k is not None and k in kinds))
    for _, arm_id in ordered:
        delete_resource(clients, arm_id)
    return [arm_id for _, arm_id in ordered]


# --- the job's end --------------------------------------------------------------------------------


class CommitOutcome(FailbackOutcome):
    """How a CommitFailback job ends."""


def end_commit_failback(
    repos: Repositories, outcome: CommitOutcome, *, now: datetime, health: HealthSettings
) -> Job:
    """FailbackCommitted (the Azure side forgotten: no failover, no reverse protection; the failback record
    keeps what a reprotect to Azure starts from); or the job Failed with the catalog's error and the machine
    FailedBack (nothing deleted yet) or still CommittingFailback (commit again). Idempotent."""
    job = jobs.require(repos, outcome.job_id)
    if job.status.finished:
        return job
    if outcome.succeeded:

        def done(m: Machine) -> None:
            if m.state is S.COMMITTING_FAILBACK and m.active_job_id == job.id:
                transition(m, S.FAILBACK_COMMITTED, action="end the commit")
                assert m.failback is not None
                tracking = m.reverse.appliance_id if m.reverse is not None else m.appliance_id
                m.failback = m.failback.model_copy(
                    update={"committed_at": now, "tracking_appliance_id": tracking}
                )
                m.failover = None
                m.reverse = None
                if m.health is Health.CRITICAL:
                    reset_health(m)
                m.updated_at = now

        repos.machines.update_with_retry(outcome.machine_id, done)
        return jobs.finish(repos, job.id, JobStatus.SUCCEEDED, now=now)

    step = outcome.failed_step or CommitFailbackStep.CHECK_PREREQUISITES.value
    machine = repos.machines.require(outcome.machine_id).item
    deleted_some = step in {s.value for s in COMMIT_DELETING_STEPS} or bool(
        machine.failback is not None and machine.failback.deletions_started
    )
    left = (
        "Some of the machine's Azure resources may already be deleted: the planned failover can no longer be "
        "cancelled; commit again to delete the rest."
        if deleted_some
        else "Nothing was deleted: the machine is FailedBack as before; commit again or cancel."
    )
    match = commit_failback_error(step, reason=outcome.error_message or "the step failed", left=left)

    def failed(m: Machine) -> None:
        if m.state is S.COMMITTING_FAILBACK and m.active_job_id == job.id and not deleted_some:
            transition(m, S.FAILED_BACK, action="end the failed commit")
            m.updated_at = now

    if machine.state is S.COMMITTING_FAILBACK and machine.active_job_id == job.id:
        record_failures(
            repos,
            outcome.machine_id,
            [Failure(match=match, at=now, event_id=f"{job.id}-failed"[-200:], values=dict(match.values))],
            settings=health,
            also=failed,
        )
    rendered = match.render()
    steps = " ".join(f"({i}) {r}" for i, r in enumerate(rendered.recommendations, start=1))
    error = JobError(code=match.error_code, message=f"{match.message} Recommended steps: {steps}")
    return jobs.finish(repos, job.id, JobStatus.FAILED, now=now, error=error, failed_step=step)
