"""POST /api/machines/{id}/reprotect through the registered function (in-memory store, fake Durable
extension), the prerequisites as a pure function, and the Reprotect job's end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.bootstrap import Services
from shared.domain.appliance import Appliance, ApplianceKind
from shared.domain.failback import ReprotectStep
from shared.domain.job import JobStatus
from shared.domain.lifecycle import MachineState
from shared.domain.machine import FailoverStatus, Machine
from shared.failback import service as failback
from shared.health import HealthSettings
from tests.unit.test_api_http import FakeDurableExtension, call, durable, services
from tests.unit.test_failover_settings_http import replicating, set_state

__all__ = ["durable", "services"]  # the fixtures, used by name

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
GIB = 1024**3
RG = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-fo/providers/Microsoft.Compute"
AZURE = [f"{RG}/disks/vm-1-os", f"{RG}/disks/vm-1-data"]
BASELINE = [f"{RG}/snapshots/os-fb", f"{RG}/snapshots/data-fb"]


def committed(services: Services, durable: FakeDurableExtension) -> tuple[str, str]:
    machine_id = replicating(services, durable)

    def commit(machine: Machine) -> None:
        machine.state = MachineState.FAILOVER_COMMITTED
        machine.failover = FailoverStatus(
            job_id="job-fo",
            recovery_point_choice="latest",
            recovery_point_id="p1",
            vm_id=f"{RG}/virtualMachines/vm-1",
            disk_ids=AZURE,
            failback_baseline_snapshot_ids=BASELINE,
        )

    stored, _ = services.repos.machines.update_with_retry(machine_id, commit)
    return machine_id, stored.item.appliance_id


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
    return [(path, body) for path, body in durable.posts() if "/orchestrators/reverse_orchestrator" in path]


def test_reprotect_answers_202_records_the_disks_and_starts_the_machines_reverse_orchestration(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id, appliance_id = committed(services, durable)
    status, body, response = post(durable, machine_id, {"applianceId": appliance_id})
    assert status == 202, body
    assert response.headers["Location"] == f"/api/jobs/{body['jobId']}"
    ((path, job_input),) = started(durable)
    assert path.endswith(f"/reverse-{machine_id}")
    assert job_input == {
        "machine_id": machine_id,
        "job_id": body["jobId"],
        "phase": "reprotect",
        "sequence": 0,
        "failures": 0,
    }
    machine = services.repos.machines.require(machine_id).item
    assert machine.state is MachineState.REVERSE_REPROTECTING and machine.active_job_id == body["jobId"]
    assert machine.reverse is not None and machine.reverse.appliance_id == appliance_id
    assert [(d.azure_disk_id, d.on_premises_disk_id) for d in machine.reverse.disks] == [
        (AZURE[0], "sda"),
        (AZURE[1], "sdb"),
    ]
    job = services.repos.jobs.require(body["jobId"]).item
    assert job.kind.value == "Reprotect"
    assert [s.name for s in job.steps] == [s.value for s in ReprotectStep]


def test_reprotect_is_refused_clearly_and_writes_nothing(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id, appliance_id = committed(services, durable)
    status, body, _ = post(durable, machine_id, {})
    assert status == 400 and "applianceId" in str(body)
    status, body, _ = post(durable, machine_id, {"applianceId": "no-such-appliance"})
    assert status == 404 and body["error"]["code"] == "ApplianceNotFound"
    set_state(services, machine_id, MachineState.REPLICATING)
    status, body, _ = post(durable, machine_id, {"applianceId": appliance_id})
    assert status == 409
    assert body["error"]["details"][0]["allowedOperations"]
    assert "reprotect" not in body["error"]["details"][0]["allowedOperations"]
    assert started(durable) == []
    assert services.repos.machines.require(machine_id).item.reverse is None


def _machine_for_checks(services: Services, durable: FakeDurableExtension) -> Machine:
    machine_id, appliance_id = committed(services, durable)
    started_ = failback.start_reprotect(
        services.repos,
        machine_id,
        failback.ReprotectRequest(appliance_id=appliance_id),
        job_id="job-rp1",
        now=NOW,
    )
    return started_.machine


def _appliance(
    kind: ApplianceKind = ApplianceKind.HYPERV, heard: timedelta | None = timedelta(minutes=1)
) -> Appliance:
    return Appliance(
        id="app-1",
        name="site-b",
        kind=kind,
        site="host",
        credential_hash="x",
        registered_at=NOW - timedelta(days=1),
        last_heartbeat=NOW - heard if heard is not None else None,
    )


def test_prerequisites_name_the_first_problem(services: Services, durable: FakeDurableExtension) -> None:
    machine = _machine_for_checks(services, durable)
    sizes = {AZURE[0]: 20 * GIB, AZURE[1]: 100 * GIB}

    def problem(**kw: Any) -> str | None:
        args: dict[str, Any] = {
            "machine_appliance": _appliance(),
            "azure_disk_sizes": sizes,
            "disks_on_appliance": 0,
            "now": NOW,
            "heartbeat_timeout": timedelta(minutes=15),
        }
        appliance = kw.pop("appliance", _appliance())
        found = failback.prerequisite_problem(machine, appliance, **(args | kw))
        return found.code if found else None

    assert problem() is None
    assert problem(appliance=None) == "ApplianceUnreachable"
    assert problem(appliance=_appliance(ApplianceKind.VMWARE)) == "ApplianceUnreachable"
    assert problem(appliance=_appliance(heard=timedelta(hours=1))) == "ApplianceUnreachable"
    assert problem(appliance=_appliance(heard=None)) == "ApplianceUnreachable"
    assert problem(disks_on_appliance=59) == "ReprotectStepFailed"
    assert problem(disks_on_appliance=58) is None
    assert problem(azure_disk_sizes={**sizes, AZURE[1]: 101 * GIB}) == "OnPremisesDiskTooSmall"


def test_a_failed_reprotect_returns_the_machine_to_failover_committed_with_the_catalogs_error(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine = _machine_for_checks(services, durable)
    outcome = failback.ReprotectOutcome(
        machine_id=machine.id,
        job_id="job-rp1",
        succeeded=False,
        failed_step=ReprotectStep.CHECK_PREREQUISITES.value,
        error_code="OnPremisesDiskTooSmall",
        error_message="on-premises disk sdb is 100 GiB; the Azure disk is 101 GiB",
    )
    job = failback.end_reprotect(services.repos, outcome, now=NOW, health=HealthSettings())
    assert job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "MCP-1603" and "Grow the on-premises disk" in job.error.message
    after = services.repos.machines.require(machine.id).item
    assert after.state is MachineState.FAILOVER_COMMITTED and after.reverse is None
    assert failback.end_reprotect(services.repos, outcome, now=NOW, health=HealthSettings()) == job


def test_a_reprotect_that_succeeds_replicates_back_and_counts_its_bytes(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine = _machine_for_checks(services, durable)
    snapshots = {d: f"{d}-rv-s1" for d in AZURE}
    totals = failback.ReverseTotals(
        bytes_processed=120 * GIB, bytes_transferred=3 << 20, bytes_matched=120 * GIB - (3 << 20)
    )
    point = failback.record_reverse_point(
        services.repos, machine.id, cycle_id="job-rp1-s1", snapshot_ids=snapshots, totals=totals, now=NOW
    )
    assert point is not None and point.snapshot_ids == [snapshots[AZURE[0]], snapshots[AZURE[1]]]
    again = failback.record_reverse_point(
        services.repos, machine.id, cycle_id="job-rp1-s1", snapshot_ids=snapshots, totals=totals, now=NOW
    )
    assert again is None  # idempotent by cycle
    job = failback.end_reprotect(
        services.repos,
        failback.ReprotectOutcome(machine_id=machine.id, job_id="job-rp1", succeeded=True),
        now=NOW,
        health=HealthSettings(),
    )
    assert job.status is JobStatus.SUCCEEDED
    after = services.repos.machines.require(machine.id).item
    assert after.state is MachineState.REVERSE_REPLICATING and after.reverse is not None
    assert [d.last_snapshot_id for d in after.reverse.disks] == [snapshots[d] for d in AZURE]
    assert after.reverse.bytes_transferred == 3 << 20 and after.reverse.cycle_sequence == 0


def test_a_reprotect_after_a_failed_one_restarts_the_reverse_instance(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id, appliance_id = committed(services, durable)
    status, first, _ = post(durable, machine_id, {"applianceId": appliance_id})
    assert status == 202, first
    failback.end_reprotect(
        services.repos,
        failback.ReprotectOutcome(
            machine_id=machine_id,
            job_id=first["jobId"],
            succeeded=False,
            failed_step=ReprotectStep.INITIAL_REVERSE_SYNC.value,
            error_code="SnapshotReadFailed",
            error_message="connection reset",
        ),
        now=NOW,
        health=HealthSettings(),
    )
    # The failed job's instance has not ended yet (it returns after its end is recorded): it is
    # terminated, then the new job's instance starts under the same id.
    status, second, _ = post(durable, machine_id, {"applianceId": appliance_id})
    assert status == 202, second
    assert second["jobId"] != first["jobId"]
    terminated = [path for path, _ in durable.posts() if path.endswith(f"/reverse-{machine_id}/terminate")]
    assert len(terminated) == 1
    assert [body["job_id"] for _, body in started(durable)] == [first["jobId"], second["jobId"]]
    machine = services.repos.machines.require(machine_id).item
    assert machine.state is MachineState.REVERSE_REPROTECTING and machine.active_job_id == second["jobId"]


def test_a_reprotect_after_one_whose_instance_ended_starts_without_terminating(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id, appliance_id = committed(services, durable)
    status, first, _ = post(durable, machine_id, {"applianceId": appliance_id})
    assert status == 202, first
    failback.end_reprotect(
        services.repos,
        failback.ReprotectOutcome(
            machine_id=machine_id,
            job_id=first["jobId"],
            succeeded=False,
            failed_step=ReprotectStep.CHECK_PREREQUISITES.value,
            error_code="OnPremisesDiskTooSmall",
            error_message="too small",
        ),
        now=NOW,
        health=HealthSettings(),
    )
    durable.runtime_status[f"reverse-{machine_id}"] = "Completed"
    status, second, _ = post(durable, machine_id, {"applianceId": appliance_id})
    assert status == 202, second
    assert not [path for path, _ in durable.posts() if path.endswith("/terminate")]
    assert len(started(durable)) == 2
