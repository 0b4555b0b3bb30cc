"""POST /api/machines/{id}/reprotect on a machine whose failback is committed, through the registered
function (in-memory store, fake Durable extension): the Reprotect job toward Azure in its own instance,
its refusals, the reprotect cycle's move to Replicating with what it sent, and the job's ends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.bootstrap import Services
from shared.domain.failback import ForwardReprotectStep
from shared.domain.job import JobStatus
from shared.domain.lifecycle import MachineState
from shared.domain.machine import Machine
from shared.failback import commit, forward
from shared.health import HealthSettings
from tests.unit.test_api_http import FakeDurableExtension, call, durable, services
from tests.unit.test_commit_failback import failed_back
from tests.unit.test_reprotect import NOW

__all__ = ["durable", "services"]  # the fixtures, used by name


def failback_committed(services: Services, durable: FakeDurableExtension) -> tuple[str, str]:
    machine_id = failed_back(services, durable)
    repos = services.repos
    machine = repos.machines.require(machine_id).item
    assert machine.reverse is not None
    appliance_id = machine.reverse.appliance_id
    job_id = commit.start_commit_failback(repos, machine_id, job_id="job-cf1", now=NOW).job.id
    synced = {d.id: f"snap-{d.id}" for d in machine.inventory.disks}
    commit.record_replicas_synced(repos, machine_id, job_id, synced, 1024, now=NOW)
    done = commit.CommitOutcome(machine_id=machine_id, job_id=job_id, succeeded=True)
    commit.end_commit_failback(repos, done, now=NOW, health=HealthSettings())
    assert repos.machines.require(machine_id).item.state is MachineState.FAILBACK_COMMITTED
    return machine_id, appliance_id


def post(durable: FakeDurableExtension, machine_id: str, body: Any) -> tuple[int, Any, Any]:
    return call(
        "reprotect",
        "POST",
        f"/api/machines/{machine_id}/reprotect",
        body=body,
        route={"machineId": machine_id},
        client=durable.client_json,
    )


def started(durable: FakeDurableExtension) -> list[tuple[str, Any]]:
    return [(p, b) for p, b in durable.posts() if "/orchestrators/reprotect_to_azure_orchestrator" in p]


def test_reprotect_of_a_committed_failback_starts_the_job_toward_azure(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id, appliance_id = failback_committed(services, durable)
    policy = {"uploadThreadsPerVm": 8}
    status, body, response = post(durable, machine_id, {"applianceId": appliance_id, "policy": policy})
    assert status == 202, body
    assert response.headers["Location"] == f"/api/jobs/{body['jobId']}"
    assert body["job"]["kind"] == "Reprotect"
    assert [s["name"] for s in body["job"]["steps"]] == [s.value for s in ForwardReprotectStep]
    ((path, job_input),) = started(durable)
    assert path.endswith(f"/{body['jobId']}") and job_input["job_id"] == body["jobId"]
    machine = services.repos.machines.require(machine_id).item
    assert machine.state is MachineState.REPROTECTING and machine.appliance_id == appliance_id
    assert machine.failback is not None and machine.failback.reprotect_job_id == body["jobId"]
    assert services.repos.appliances.require(appliance_id).item.policy.upload_threads_per_vm == 8
    # The appliance is asked for the changes since its copy, once however often the step runs.
    for _ in range(2):
        command_id = forward.request_reprotect_cycle(services.repos, machine_id, body["jobId"], now=NOW)
    command = services.repos.commands.require(command_id, appliance_id).item
    assert command.kind.value == "RunCycle" and command.cycle_kind is not None
    assert command.cycle_kind.value == "reprotect"


def test_reprotect_to_azure_is_refused_clearly_and_writes_nothing(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id, appliance_id = failback_committed(services, durable)
    status, body, _ = post(durable, machine_id, {"applianceId": "no-such-appliance"})
    assert status == 404 and body["error"]["code"] == "ApplianceNotFound"
    status, body, _ = post(durable, machine_id, {"applianceId": appliance_id, "policy": {"bogus": 1}})
    assert status == 400, body
    other = services.repos.machines.require(machine_id).item.appliance_id

    def forget_copy(machine: Machine) -> None:
        assert machine.failback is not None
        machine.failback = machine.failback.model_copy(update={"tracking_appliance_id": f"{other}-x"})

    services.repos.machines.update_with_retry(machine_id, forget_copy)
    status, body, _ = post(durable, machine_id, {"applianceId": appliance_id})
    assert status == 409 and body["error"]["code"] == "NoChangeTracking", body
    assert f"{other}-x" in body["error"]["message"]
    assert services.repos.machines.require(machine_id).item.state is MachineState.FAILBACK_COMMITTED
    assert started(durable) == []


def test_the_reprotect_cycle_moves_the_machine_to_replicating_and_the_job_ends(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id, appliance_id = failback_committed(services, durable)
    repos = services.repos
    request = forward.ForwardReprotectRequest(appliance_id=appliance_id)
    job_id = forward.start_reprotect_to_azure(repos, machine_id, request, job_id="job-rta", now=NOW).job.id
    appliance = repos.appliances.require(appliance_id).item
    machine = repos.machines.require(machine_id).item
    timeout = timedelta(minutes=30)
    silent = appliance.model_copy(update={"last_heartbeat": NOW - timedelta(hours=2)})
    problem = forward.prerequisite_problem(machine, silent, now=NOW, heartbeat_timeout=timeout)
    assert problem is not None and "heartbeat" in problem.message
    healthy = appliance.model_copy(update={"last_heartbeat": NOW})
    assert forward.prerequisite_problem(machine, healthy, now=NOW, heartbeat_timeout=timeout) is None
    unsynced = machine.model_copy(
        update={"failback": machine.failback.model_copy(update={"replicas_synced": {}})}  # type: ignore[union-attr]
    )
    problem = forward.prerequisite_problem(unsynced, healthy, now=NOW, heartbeat_timeout=timeout)
    assert problem is not None and "no replica brought to the final snapshot" in problem.message

    def applied(m: Machine) -> None:
        # What shared.replication.cycles.complete_cycle records for a reprotect cycle.
        m.state = MachineState.REPLICATING
        assert m.failback is not None
        m.failback = m.failback.model_copy(
            update={
                "reprotect_cycle_id": "c9",
                "reprotect_bytes_sent": 3 * 65536,
                "reprotect_disk_bytes": 1 << 30,
            }
        )

    repos.machines.update_with_retry(machine_id, applied)
    job = forward.end_reprotect_to_azure(
        repos,
        machine_id,
        job_id,
        succeeded=True,
        failed_step=None,
        error_message=None,
        now=NOW,
        health=HealthSettings(),
    )
    assert job.status is JobStatus.SUCCEEDED
    _, view, _ = call("get_machine", "GET", "/", route={"machineId": machine_id})
    assert view["state"] == "Replicating" and view["plannedFailback"]["reprotectBytesSent"] == 3 * 65536


def test_a_reprotect_whose_cycle_never_comes_returns_to_failback_committed(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id, appliance_id = failback_committed(services, durable)
    repos = services.repos
    request = forward.ForwardReprotectRequest(appliance_id=appliance_id)
    job_id = forward.start_reprotect_to_azure(repos, machine_id, request, job_id="job-rta", now=NOW).job.id
    job = forward.end_reprotect_to_azure(
        repos,
        machine_id,
        job_id,
        succeeded=False,
        failed_step=ForwardReprotectStep.SEND_CHANGES.value,
        error_message="the appliance sent no reprotect cycle within 30 minutes",
        now=NOW,
        health=HealthSettings(),
    )
    assert job.status is JobStatus.FAILED and job.error is not None and job.error.code == "MCP-3510"
    assert "not protected" in job.error.message
    machine = repos.machines.require(machine_id).item
    assert machine.state is MachineState.FAILBACK_COMMITTED
    # Nothing was changed in Azure: the same reprotect can run again.
    status, body, _ = post(durable, machine_id, {"applianceId": appliance_id})
    assert status == 202, body
