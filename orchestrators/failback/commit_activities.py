"""Activities of the CommitFailback job (orchestrators/failback/commit.py): the check, the replicas
brought to the final snapshots, the deletions in Azure, and the job's end. Each is idempotent: a copy
writes the same bytes again, a deletion of what is gone is a success."""

from __future__ import annotations

from typing import Any

from orchestrators.blueprints import durable_blueprint
from orchestrators.failback.contracts import StepRef, StepResult
from orchestrators.failback.planned_activities import Recorded
from orchestrators.hydration.activities import arm_clients
from orchestrators.hydration.contracts import Done, Payload
from shared.bootstrap import get_services
from shared.domain.errors import DomainError
from shared.domain.failback import CommitFailbackStep
from shared.failback import commit, snapshot_diff
from shared.failback.commit import CommitOutcome
from shared.replication.replica_disks import replica_blob_name
from shared.replication.replica_sync import sync_replica_from_snapshot

bp = durable_blueprint()
# Long enough to copy a large disk's written ranges; access ends as soon as the copy does.
SYNC_ACCESS_SECONDS = 4 * 60 * 60


class DeleteStep(Payload):
    machine_id: str
    job_id: str
    step: CommitFailbackStep


def _json(payload: Payload) -> dict[str, Any]:
    result: dict[str, Any] = payload.model_dump(mode="json")
    return result


@bp.activity_trigger(input_name="payload")
def check_commit_prerequisites(payload: dict[str, Any]) -> dict[str, Any]:
    ref = StepRef.model_validate(payload)
    services = get_services()
    try:
        machine = commit.committing(services.repos, ref.machine_id, ref.job_id)
    except DomainError as exc:
        return _json(StepResult(ok=False, message=str(exc), error_code=exc.code))
    syncs = commit.replica_syncs(machine)
    expected = len(machine.reverse.disks) if machine.reverse is not None else 0
    if not syncs or len(syncs) != expected:
        return _json(
            StepResult(
                ok=False,
                message="the planned failover recorded no final snapshot for every disk: nothing can be kept "
                "for a later reprotect, so nothing is deleted",
            )
        )
    return _json(StepResult(ok=True, message=f"{len(syncs)} final snapshot(s) to keep in the replicas"))


@bp.activity_trigger(input_name="payload")
def sync_replicas(payload: dict[str, Any]) -> dict[str, Any]:
    """Each replica page blob becomes its disk's final snapshot (what the on-premises disk was just
    before power-on), copied inside Azure: no byte crosses to or from on-premises."""
    ref = StepRef.model_validate(payload)
    services = get_services()
    machine = commit.committing(services.repos, ref.machine_id, ref.job_id)
    synced: dict[str, str] = {}
    copied = cleared = 0
    from_url = False
    with arm_clients() as clients:
        for sync in commit.replica_syncs(machine):
            replica = services.replicas.get_blob_client(
                replica_blob_name(machine.id, sync.on_premises_disk_id)
            )
            with snapshot_diff.read_access(
                clients, [sync.snapshot_id], duration_seconds=SYNC_ACCESS_SECONDS
            ) as (sas,):
                totals = sync_replica_from_snapshot(replica, sas)
            synced[sync.on_premises_disk_id] = sync.snapshot_id
            copied += totals.bytes_copied
            cleared += totals.bytes_cleared
            from_url = from_url or totals.from_url
    commit.record_replicas_synced(
        services.repos, machine.id, ref.job_id, synced, copied, now=services.clock()
    )
    how = "Put Page From URL" if from_url else "streamed through the worker (no Put Page From URL here)"
    return _json(
        Recorded(
            done=True,
            values=synced,
            message=f"{len(synced)} replica(s) equal the final snapshots: {copied} bytes copied, "
            f"{cleared} cleared, {how}",
        )
    )


@bp.activity_trigger(input_name="payload")
def delete_commit_resources(payload: dict[str, Any]) -> dict[str, Any]:
    request = DeleteStep.model_validate(payload)
    services = get_services()
    machine = commit.committing(services.repos, request.machine_id, request.job_id)
    commit.record_deletions_started(services.repos, machine.id, request.job_id, now=services.clock())
    with arm_clients() as clients:
        deleted = commit.delete_machine_resources(clients, machine, commit.STEP_KINDS[request.step])
    names = ", ".join(d.rsplit("/", 1)[-1] for d in deleted) or "nothing left"
    return _json(Recorded(done=bool(deleted), message=f"deleted: {names}"))


@bp.activity_trigger(input_name="payload")
def end_commit_failback_job(payload: dict[str, Any]) -> dict[str, Any]:
    outcome = CommitOutcome.model_validate(payload)
    services = get_services()
    commit.end_commit_failback(services.repos, outcome, now=services.clock(), health=services.health)
    return _json(Done())
