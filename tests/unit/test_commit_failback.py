"""POST /api/machines/{id}/commit on a machine that failed back to on-premises, through the registered
function (in-memory store, fake Durable extension): the CommitFailback job in its own instance, its
refusals, and how it ends (FailbackCommitted; FailedBack when nothing was deleted; CommittingFailback,
committed again, once something was)."""

from __future__ import annotations

from typing import Any

from shared.bootstrap import Services
from shared.domain.failback import CommitFailbackStep
from shared.domain.job import JobStatus
from shared.domain.lifecycle import MachineState
from shared.domain.machine import Machine
from shared.failback import commit, planned
from shared.health import HealthSettings
from tests.unit.test_api_http import FakeDurableExtension, call, durable, services
from tests.unit.test_planned_failover import post, reverse_replicating
from tests.unit.test_reprotect import AZURE, NOW

__all__ = ["durable", "services"]  # the fixtures, used by name


def failed_back(services: Services, durable: FakeDurableExtension) -> str:
    machine_id = reverse_replicating(services, durable)
    repos = services.repos
    job_id = planned.start_planned_failover(repos, machine_id, job_id="job-pf1", now=NOW).job.id
    planned.record_final_snapshots(repos, machine_id, job_id, now=NOW)
    planned.record_pre_power_on_snapshots(repos, machine_id, job_id, {"op-0": "op-0.snap-job-pf1"}, now=NOW)
    outcome = planned.FailbackOutcome(machine_id=machine_id, job_id=job_id, succeeded=True)
    planned.end_planned_failover(repos, outcome, now=NOW, health=HealthSettings())
    assert repos.machines.require(machine_id).item.state is MachineState.FAILED_BACK
    return machine_id


def commit_started(durable: FakeDurableExtension) -> list[tuple[str, Any]]:
    return [(p, b) for p, b in durable.posts() if "/orchestrators/commit_failback_orchestrator" in p]


def test_commit_of_a_failed_back_machine_starts_the_commit_failback_job(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = failed_back(services, durable)
    status, body, response = post(durable, "commit_failover", "commit", machine_id)
    assert status == 202, body
    assert response.headers["Location"] == f"/api/jobs/{body['jobId']}"
    assert body["job"]["kind"] == "CommitFailback"
    assert [s["name"] for s in body["job"]["steps"]] == [s.value for s in CommitFailbackStep]
    ((path, job_input),) = commit_started(durable)
    assert path.endswith(f"/{body['jobId']}") and job_input == {
        "machine_id": machine_id,
        "job_id": body["jobId"],
        "cancel": False,
    }
    machine = services.repos.machines.require(machine_id).item
    assert machine.state is MachineState.COMMITTING_FAILBACK and machine.active_job_id == body["jobId"]
    assert machine.failback is not None and machine.failback.commit_job_id == body["jobId"]
    # Each disk's replica is brought to its final snapshot, the one the on-premises disk equals.
    assert [(s.on_premises_disk_id, s.snapshot_id) for s in commit.replica_syncs(machine)] == [
        (f"op-{i}", f"{d}-s1") for i, d in enumerate(AZURE)
    ]
    # The same request sent again while this one runs gets its job back and starts nothing more.
    status, again, _ = post(durable, "commit_failover", "commit", machine_id)
    assert status == 202 and again["jobId"] == body["jobId"], again
    assert len(commit_started(durable)) == 1
    assert services.repos.machines.require(machine_id).item.active_job_id == body["jobId"]


def test_a_commit_ends_on_premises_unprotected_with_the_azure_side_forgotten(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = failed_back(services, durable)
    repos = services.repos
    job_id = commit.start_commit_failback(repos, machine_id, job_id="job-cf1", now=NOW).job.id
    machine = repos.machines.require(machine_id).item
    # The deletions cover the VM, its disks and every reverse snapshot the machine records.
    recorded = commit.recorded_resources(machine)
    assert machine.failover is not None and machine.failover.vm_id in recorded
    assert set(machine.failover.disk_ids) <= set(recorded) and {f"{d}-s1" for d in AZURE} <= set(recorded)
    commit.record_replicas_synced(repos, machine_id, job_id, {"op-0": "s-0", "op-1": "s-1"}, 4096, now=NOW)
    done = commit.CommitOutcome(machine_id=machine_id, job_id=job_id, succeeded=True)
    assert (
        commit.end_commit_failback(repos, done, now=NOW, health=HealthSettings()).status
        is JobStatus.SUCCEEDED
    )
    commit.end_commit_failback(repos, done, now=NOW, health=HealthSettings())  # a retried end
    machine = repos.machines.require(machine_id).item
    assert machine.state is MachineState.FAILBACK_COMMITTED
    assert machine.failover is None and machine.reverse is None
    assert machine.failback is not None and machine.failback.committed_at == NOW
    assert machine.failback.replicas_synced == {"op-0": "s-0", "op-1": "s-1"}
    _, view, _ = call("get_machine", "GET", "/", route={"machineId": machine_id})
    assert view["activeLocation"] == "onPremises" and view["allowedOperations"] == [
        "stopReplication",
        "reprotect",
    ]
    # Committed: a second commit is a clear 409.
    status, body, _ = post(durable, "commit_failover", "commit", machine_id)
    assert status == 409 and "FailbackCommitted" in body["error"]["message"], body


def test_a_commit_that_fails_before_deleting_returns_to_failed_back_and_may_be_cancelled(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = failed_back(services, durable)
    repos = services.repos
    job_id = commit.start_commit_failback(repos, machine_id, job_id="job-cf1", now=NOW).job.id
    failed = commit.CommitOutcome(
        machine_id=machine_id,
        job_id=job_id,
        succeeded=False,
        failed_step=CommitFailbackStep.SYNC_REPLICAS.value,
        error_message="AuthorizationFailure on the replica account",
    )
    job = commit.end_commit_failback(repos, failed, now=NOW, health=HealthSettings())
    assert job.status is JobStatus.FAILED and job.error is not None and job.error.code == "MCP-3509"
    assert "Nothing was deleted" in job.error.message and "AuthorizationFailure" in job.error.message
    machine = repos.machines.require(machine_id).item
    assert machine.state is MachineState.FAILED_BACK and machine.failover is not None
    _, view, _ = call("get_machine", "GET", "/", route={"machineId": machine_id})
    assert view["allowedOperations"] == ["commit", "cancelPlannedFailover"]


def test_a_commit_that_fails_after_a_deletion_stays_committing_and_is_committed_again(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = failed_back(services, durable)
    repos = services.repos
    job_id = commit.start_commit_failback(repos, machine_id, job_id="job-cf1", now=NOW).job.id
    commit.record_deletions_started(repos, machine_id, job_id, now=NOW)
    failed = commit.CommitOutcome(
        machine_id=machine_id,
        job_id=job_id,
        succeeded=False,
        failed_step=CommitFailbackStep.DELETE_AZURE_DISKS.value,
        error_message="ScopeLocked",
    )
    job = commit.end_commit_failback(repos, failed, now=NOW, health=HealthSettings())
    assert job.error is not None and "commit again" in job.error.message
    machine = repos.machines.require(machine_id).item
    assert machine.state is MachineState.COMMITTING_FAILBACK
    _, view, _ = call("get_machine", "GET", "/", route={"machineId": machine_id})
    assert view["allowedOperations"] == ["commit"]
    events = call("list_machine_events", "GET", "/", route={"machineId": machine_id})[1]
    assert any(e.get("errorCode") == "MCP-3509" for e in events["events"]), events

    status, body, _ = post(durable, "commit_failover", "commit", machine_id)
    assert status == 202 and body["job"]["kind"] == "CommitFailback", body

    # A retried job that could not even start never pretends nothing was deleted.
    unstarted = commit.CommitOutcome(
        machine_id=machine_id, job_id=body["jobId"], succeeded=False, error_message="not started"
    )
    commit.end_commit_failback(repos, unstarted, now=NOW, health=HealthSettings())
    assert repos.machines.require(machine_id).item.state is MachineState.COMMITTING_FAILBACK


def test_a_failover_commit_still_goes_to_the_failover_commit(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = failed_back(services, durable)

    def failed_over(machine: Machine) -> None:
        machine.state = MachineState.FAILOVER_COMMITTED
        machine.failback = None

    services.repos.machines.update_with_retry(machine_id, failed_over)
    assert not commit.commits_failback(services.repos, machine_id)
    assert not commit.commits_failback(services.repos, "no-such-machine")
