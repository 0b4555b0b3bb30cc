"""POST /api/machines/{id}/planned-failover and .../cancel-planned-failover through the registered
functions (in-memory store, fake Durable extension), the records the jobs keep on the machine, and how
each job ends: FailedBack, the automatic cancel, PlannedFailbackCancelFailed and a manual cancel."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from shared.bootstrap import Services
from shared.domain.failback import (
    PlannedFailoverStep,
    ReverseDisk,
    ReverseProtection,
    ReverseRecoveryPoint,
)
from shared.domain.health import Health
from shared.domain.job import Job, JobKind, JobStatus
from shared.domain.lifecycle import MachineState
from shared.domain.machine import Machine
from shared.domain.pending_start import PendingStart, StartOutcome, StartRunner
from shared.failback import planned
from shared.health import HealthSettings
from shared.jobs import starts
from tests.unit.test_api_http import FUNCTIONS, FakeDurableExtension, call, durable, services
from tests.unit.test_reprotect import AZURE, NOW, committed

__all__ = ["durable", "services"]  # the fixtures, used by name


def reverse_replicating(services: Services, durable: FakeDurableExtension, *, points: int = 1) -> str:
    machine_id, appliance_id = committed(services, durable)

    def protect(machine: Machine) -> None:
        machine.state = MachineState.REVERSE_REPLICATING
        machine.reverse = ReverseProtection(
            job_id="job-rp",
            appliance_id=appliance_id,
            disks=[
                ReverseDisk(azure_disk_id=d, on_premises_disk_id=f"op-{i}", last_snapshot_id=f"{d}-s{points}")
                for i, d in enumerate(AZURE)
            ],
            recovery_points=[
                ReverseRecoveryPoint(
                    id=f"rrp-{i}",
                    cycle_id=f"c{i}",
                    created_at=NOW,
                    snapshot_ids=[],
                    bytes_processed=0,
                    bytes_transferred=0,
                    bytes_matched=0,
                )
                for i in range(points)
            ],
        )

    services.repos.machines.update_with_retry(machine_id, protect)
    return machine_id


def post(durable: FakeDurableExtension, name: str, route: str, machine_id: str) -> tuple[int, Any, Any]:
    return call(
        name,
        "POST",
        f"/api/machines/{machine_id}/{route}",
        route={"machineId": machine_id},
        client=durable.client_json,
    )


def reverse_started(durable: FakeDurableExtension) -> list[tuple[str, Any]]:
    return [(path, body) for path, body in durable.posts() if "/orchestrators/reverse_orchestrator" in path]


def test_planned_failover_records_the_job_and_runs_it_in_the_reverse_orchestration(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = reverse_replicating(services, durable)
    status, body, response = post(durable, "planned_failover", "planned-failover", machine_id)
    assert status == 202, body
    assert response.headers["Location"] == f"/api/jobs/{body['jobId']}"
    assert body["job"]["kind"] == "PlannedFailover"
    assert [s["name"] for s in body["job"]["steps"]] == [s.value for s in PlannedFailoverStep]
    ((path, job_input),) = reverse_started(durable)
    assert path.endswith(f"/reverse-{machine_id}") and job_input["phase"] == "cycles"
    machine = services.repos.machines.require(machine_id).item
    assert machine.state is MachineState.PLANNED_FAILING_BACK and machine.active_job_id == body["jobId"]
    assert machine.failback is not None and machine.failback.job_id == body["jobId"]
    status, view, _ = call("get_machine", "GET", "/", route={"machineId": machine_id})
    assert view["plannedFailback"]["jobId"] == body["jobId"] and view["activeLocation"] == "azure"


def test_planned_failover_is_refused_clearly_and_writes_nothing(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = reverse_replicating(services, durable, points=0)
    repos = services.repos
    status, body, _ = post(durable, "planned_failover", "planned-failover", machine_id)
    assert status == 409 and body["error"]["code"] == "NoReverseRecoveryPoint"

    def change(**fields: Any) -> None:
        def apply(machine: Machine) -> None:
            for name, value in fields.items():
                setattr(machine, name, value)

        repos.machines.update_with_retry(machine_id, apply)

    machine = repos.machines.require(machine_id).item
    assert machine.reverse is not None
    point = ReverseRecoveryPoint(
        id="rrp-1",
        cycle_id="c1",
        created_at=NOW,
        snapshot_ids=[],
        bytes_processed=0,
        bytes_transferred=0,
        bytes_matched=0,
    )
    change(health=Health.CRITICAL, reverse=machine.reverse.model_copy(update={"recovery_points": [point]}))
    status, body, _ = post(durable, "planned_failover", "planned-failover", machine_id)
    assert status == 409 and body["error"]["code"] == "ReverseHealthCritical"

    change(health=Health.HEALTHY, state=MachineState.FAILOVER_COMMITTED)
    status, body, _ = post(durable, "planned_failover", "planned-failover", machine_id)
    assert status == 409 and body["error"]["code"] == "ForbiddenTransition"
    assert "plannedFailover" not in body["error"]["details"][0]["allowedOperations"]
    machine = repos.machines.require(machine_id).item
    assert machine.failback is None and machine.state is MachineState.FAILOVER_COMMITTED
    assert reverse_started(durable) == []

    # Cancel is only for a planned failover that waits for commit or whose cancel failed.
    change(state=MachineState.REVERSE_REPLICATING)
    status, body, _ = post(durable, "cancel_planned_failover", "cancel-planned-failover", machine_id)
    assert status == 409 and body["error"]["code"] == "ForbiddenTransition"


def _failed_over(services: Services, durable: FakeDurableExtension) -> tuple[str, str]:
    machine_id = reverse_replicating(services, durable)
    job_id = planned.start_planned_failover(services.repos, machine_id, job_id="job-pf1", now=NOW).job.id
    return machine_id, job_id


def test_a_planned_failover_records_its_downtime_and_waits_for_commit_or_cancel(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id, job_id = _failed_over(services, durable)
    repos = services.repos
    planned.record_azure_vm_stopped(repos, machine_id, job_id, at=NOW)
    planned.record_azure_vm_stopped(repos, machine_id, job_id, at=NOW + timedelta(minutes=5))  # a retry
    final = planned.record_final_snapshots(repos, machine_id, job_id, now=NOW)
    assert final == {d: f"{d}-s1" for d in AZURE}
    planned.record_pre_power_on_snapshots(repos, machine_id, job_id, {"op-0": "a.snap-job-pf1"}, now=NOW)
    downtime = planned.record_heartbeat(repos, machine_id, job_id, at=NOW + timedelta(seconds=95), now=NOW)
    assert downtime == 95
    outcome = planned.FailbackOutcome(machine_id=machine_id, job_id=job_id, succeeded=True)
    assert planned.end_planned_failover(repos, outcome, now=NOW, health=HealthSettings()) is None
    machine = repos.machines.require(machine_id).item
    assert machine.state is MachineState.FAILED_BACK
    assert machine.failback is not None and machine.failback.downtime_seconds == 95
    assert machine.failback.azure_vm_stopped_at == NOW and machine.failback.final_snapshot_ids == final
    status, view, _ = call("get_machine", "GET", "/", route={"machineId": machine_id})
    assert view["allowedOperations"] == ["commit", "cancelPlannedFailover"]
    assert view["activeLocation"] == "onPremises" and view["plannedFailback"]["downtimeSeconds"] == 95

    status, body, _ = post(durable, "cancel_planned_failover", "cancel-planned-failover", machine_id)
    assert status == 202 and body["job"]["kind"] == "CancelPlannedFailover"
    machine = repos.machines.require(machine_id).item
    assert machine.state is MachineState.CANCELLING_PLANNED_FAILBACK
    assert machine.failback is not None and machine.failback.cancel_job_id == body["jobId"]


def test_a_failed_planned_failover_starts_its_cancel_and_a_failed_cancel_can_be_run_again(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id, job_id = _failed_over(services, durable)
    repos = services.repos
    failed = planned.FailbackOutcome(
        machine_id=machine_id,
        job_id=job_id,
        succeeded=False,
        failed_step=PlannedFailoverStep.POWER_ON_ON_PREMISES.value,
        error_message="the hypervisor refused",
    )
    cancel_id = planned.end_planned_failover(repos, failed, now=NOW, health=HealthSettings())
    assert cancel_id == planned.end_planned_failover(repos, failed, now=NOW, health=HealthSettings())
    job = repos.jobs.require(job_id).item
    assert job.status is JobStatus.FAILED and job.error is not None
    assert "cancelled automatically" in job.error.message
    assert cancel_id is not None
    cancel = repos.jobs.require(cancel_id).item
    assert cancel.kind is JobKind.CANCEL_PLANNED_FAILOVER and not cancel.status.finished
    machine = repos.machines.require(machine_id).item
    assert machine.state is MachineState.CANCELLING_PLANNED_FAILBACK and machine.active_job_id == cancel_id

    cancel_failed = planned.FailbackOutcome(
        machine_id=machine_id,
        job_id=cancel_id,
        succeeded=False,
        failed_step="Start the Azure VM",
        error_message="QuotaExceeded",
    )
    ended = planned.end_cancel(repos, cancel_failed, now=NOW, health=HealthSettings())
    assert ended.status is JobStatus.FAILED and ended.error is not None
    assert "Run cancel again" in ended.error.message and "do not disable replication" in ended.error.message
    machine = repos.machines.require(machine_id).item
    assert machine.state is MachineState.PLANNED_FAILBACK_CANCEL_FAILED and machine.health is Health.CRITICAL
    _, view, _ = call("get_machine", "GET", "/", route={"machineId": machine_id})
    assert view["allowedOperations"] == ["cancelPlannedFailover"]

    again = planned.start_cancel(repos, machine_id, job_id="job-c2", now=NOW)
    assert again.machine.state is MachineState.CANCELLING_PLANNED_FAILBACK
    done = planned.FailbackOutcome(machine_id=machine_id, job_id="job-c2", succeeded=True)
    assert planned.end_cancel(repos, done, now=NOW, health=HealthSettings()).status is JobStatus.SUCCEEDED
    machine = repos.machines.require(machine_id).item
    assert machine.state is MachineState.REVERSE_REPLICATING and machine.failback is None
    assert machine.health is Health.HEALTHY
    assert machine.reverse is not None and [d.last_snapshot_id for d in machine.reverse.disks] == [
        f"{d}-s1" for d in AZURE
    ]


def test_a_planned_failover_job_cannot_be_cancelled_with_the_jobs_route_which_names_the_cancel_route(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id, job_id = _failed_over(services, durable)
    status, body, _ = call("cancel_job", "POST", "/", route={"jobId": job_id}, client=durable.client_json)
    assert status == 409 and body["error"]["code"] == "JobNotCancellable"
    assert f"/api/machines/{machine_id}/cancel-planned-failover" in body["error"]["message"]


def _cycle_settings(machine_id: str) -> dict[str, Any]:
    activity = FUNCTIONS["reverse_cycle_settings"].get_user_function()
    result: dict[str, Any] = activity(payload={"machine_id": machine_id, "job_id": "job-rp"})
    return result


def test_the_reverse_orchestration_acknowledges_the_planned_failover_it_picks_up(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = reverse_replicating(services, durable)
    status, body, _ = post(durable, "planned_failover", "planned-failover", machine_id)
    assert status == 202, body
    pending = services.repos.machines.require(machine_id).item.pending_start
    assert pending is not None and pending.open and pending.runner is StartRunner.REVERSE
    # Between two cycles the orchestration reads the job from the machine: the start is settled there.
    assert _cycle_settings(machine_id)["failback_job_id"] == body["jobId"]
    pending = services.repos.machines.require(machine_id).item.pending_start
    assert pending is not None and not pending.open and pending.outcome is StartOutcome.RUNNING


def test_a_planned_failover_rolled_back_before_it_was_picked_up_is_not_run(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = reverse_replicating(services, durable)
    status, body, _ = post(durable, "planned_failover", "planned-failover", machine_id)
    assert status == 202, body

    class Gone:
        async def exists(self, job: Job) -> bool:
            return False

        async def alive(self, machine_id: str, runner: StartRunner) -> bool:
            return False

        async def redeliver(self, machine_id: str, pending: PendingStart) -> None:
            raise AssertionError("the reverse orchestration is gone")

    later = services.clock() + timedelta(minutes=10)
    report = asyncio.run(starts.reconcile(services.repos, Gone(), now=later, grace=timedelta(minutes=5)))
    assert report.rolled_back == [body["jobId"]]
    assert services.repos.machines.require(machine_id).item.state is MachineState.REVERSE_REPLICATING
    # An orchestration woken late finds the machine replicating back and no job to run.
    settings = _cycle_settings(machine_id)
    assert settings["failback_job_id"] is None and settings["replicating"] is True
