"""Cancel requests: which jobs can be stopped, when, and a clear 409 for the others.

Only the cutover (a `Migration` job) can be cancelled, and only while it waits for the source's
shutdown and its final cycle: nothing exists in Azure then, and rolling back is what a failure does
already (replication resumes, the machine goes back to Replicating). Its orchestration says when it is
in that wait; the trigger asks it and raises the cancel event, or answers `past_the_point`. Every other
job either builds something in Azure (a half-built VM or replica is worse than a finished one or none,
and every job already rolls back by itself when it fails) or only deletes (stopping a delete half-way
leaves resources behind): a cancel request answers with the reason for its kind and what to do instead,
and changes nothing.
"""

from __future__ import annotations

from typing import NoReturn

from shared.domain.errors import Conflict
from shared.domain.job import Job, JobKind
from shared.jobs import lifecycle
from shared.platform.repository import Repositories


class JobNotCancellable(Conflict):
    code = "JobNotCancellable"


class JobAlreadyFinished(Conflict):
    code = "JobAlreadyFinished"


_FAILOVER = (
    "a failover to Azure cannot be cancelled: stopping it half-way would leave a half-built VM, which is "
    "worse than a finished one or none"
)
_WAIT = "wait for it to finish (GET /api/jobs/{job}); if it fails it rolls back by itself"

# Why each kind cannot be cancelled, and what the operator does instead ({job} and {machine} filled in).
REASONS: dict[JobKind, str] = {
    JobKind.FAILOVER: f"{_FAILOVER}; {_WAIT}: what it created is deleted and the machine returns to "
    "Replicating, replication resuming where it was",
    JobKind.CHANGE_RECOVERY_POINT: f"{_FAILOVER}, and a change of recovery point swaps the running VM's "
    f"disks; {_WAIT}: the VM keeps (or gets back) the disks of one recovery point",
    JobKind.COMMIT: f"{_FAILOVER}, and a commit has already started deleting the other recovery points; "
    "wait for it to finish; if it fails, commit again (POST /api/machines/{machine}/commit) to retry",
    JobKind.TEST_MIGRATION: "a test migration cannot be cancelled half-way (it builds a VM in Azure); "
    "wait for it to finish, then delete its resources with POST /api/machines/{machine}/test-migrate/"
    "cleanup; if it fails it deletes what it created by itself",
    JobKind.TEST_MIGRATION_CLEANUP: "a clean-up only deletes resources, and stopping it half-way would "
    "leave some of them behind; wait for it to finish; if it fails, run the clean-up again",
    JobKind.ENABLE_REPLICATION: "enabling replication cannot be cancelled half-way (it creates the "
    "replica); wait for it to finish, then disable replication with DELETE "
    "/api/machines/{machine}/replication if the machine should not replicate",
    JobKind.STOP_REPLICATION: "disabling replication deletes the replica and its recovery points, and "
    "stopping it half-way would leave some of them behind; wait for it to finish, then enable replication "
    "again (PUT /api/machines/{machine}/replication) if needed",
    JobKind.REPAIR_REPLICATION: "a repair resynchronises the machine's disks with the replica, and "
    "stopping it half-way would leave the replica partly resynchronised; wait for it to finish "
    "(replication goes on meanwhile)",
    JobKind.PLANNED_FAILOVER: "a planned failover to on-premises is not stopped with this route: wait for it "
    "to finish, then undo it with POST /api/machines/{machine}/cancel-planned-failover (the Azure VM runs "
    "again and reverse replication resumes); if it fails it is cancelled by itself",
    JobKind.CANCEL_PLANNED_FAILOVER: "cancelling a planned failover cannot itself be cancelled (it is "
    "restoring the machine); wait for it to finish; if it fails, run POST "
    "/api/machines/{machine}/cancel-planned-failover again",
    JobKind.COMPLETE_MIGRATION: "completing a migration deletes the replica data, and stopping it "
    "half-way would leave some of it behind; wait for it to finish; if it fails, complete the migration "
    "again",
}
_DEFAULT = f"a {{kind}} job cannot be cancelled; {_WAIT}"

# Kinds whose orchestration may be stopped while it says so, and what is said once it no longer can.
PAST_THE_POINT: dict[JobKind, str] = {
    JobKind.MIGRATION: "the cutover is past the point where it can be cancelled: it could be while it "
    "waited for the source's shutdown and its final cycle, and it is now building the VM in Azure (a "
    f"half-built VM is worse than a finished one or none); {_WAIT}: the machine returns to Replicating "
    "and replication resumes",
}


def cancellable_job(repos: Repositories, job_id: str) -> Job:
    """The job, if its kind may be cancelled at some point (the trigger then asks its orchestration).

    404 unknown job; 409 `JobAlreadyFinished` for a finished job (naming its status); 409
    `JobNotCancellable` with the kind's reason and what to do instead. Nothing is written."""
    job = lifecycle.require(repos, job_id)
    if job.status.finished:
        raise JobAlreadyFinished(
            f"job {job.id} ({job.kind}) has already finished with status {job.status}: there is nothing "
            "to cancel",
            details=_details(job),
        )
    if job.kind not in PAST_THE_POINT:
        _refuse(job, REASONS.get(job.kind, _DEFAULT))
    return job


def past_the_point(job: Job) -> NoReturn:
    """409 `JobNotCancellable`: the job's orchestration is past the point where it could stop."""
    _refuse(job, PAST_THE_POINT.get(job.kind, _DEFAULT))


def _refuse(job: Job, reason: str) -> NoReturn:
    text = reason.format(job=job.id, machine=job.machine_id, kind=job.kind)
    raise JobNotCancellable(f"job {job.id} ({job.kind}) cannot be cancelled: {text}", details=_details(job))


def _details(job: Job) -> list[dict[str, str]]:
    return [{"jobId": job.id, "kind": job.kind.value, "status": job.status.value}]
