"""POST /api/machines/{id}/failover, change-recovery-point and commit through the registered functions,
over the in-memory store with a fake Durable extension: 202 + Location with the job's orchestration
started, and the clear 409/404s, nothing started then."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.bootstrap import Services
from shared.domain.cycle import Consistency, Cycle, CycleKind, RecoveryPoint
from shared.domain.machine import Machine
from tests.unit.test_api_http import FakeDurableExtension, call, durable, services
from tests.unit.test_failover_settings_http import replicating

__all__ = ["durable", "services"]  # the fixtures, used by name

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def with_point(services: Services, machine_id: str) -> None:
    def add(machine: Machine) -> None:
        machine.replication.recovery_points = [
            RecoveryPoint(
                id="p1",
                cycle_id="c1",
                time=NOW,
                consistency=Consistency.CRASH,
                disk_snapshots={"sda": "s1", "sdb": "t1"},
            )
        ]
        machine.replication.last_applied_sequence = 1

    services.repos.machines.update_with_retry(machine_id, add)


def post(
    durable: FakeDurableExtension, machine_id: str, action: str, body: Any = None
) -> tuple[int, Any, Any]:
    names = {
        "failover": "fail_over",
        "change-recovery-point": "change_recovery_point",
        "commit": "commit_failover",
    }
    return call(
        names[action],
        "POST",
        f"/api/machines/{machine_id}/{action}",
        body=body,
        route={"machineId": machine_id},
        client=durable.client_json,
    )


def started(durable: FakeDurableExtension, orchestrator: str) -> list[Any]:
    return [body for path, body in durable.posts() if f"/orchestrators/{orchestrator}/" in path]


def test_failover_answers_202_with_the_job_and_starts_its_orchestration(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = replicating(services, durable)
    status, body, _ = post(durable, machine_id, "failover", {"recoveryPoint": "latest"})
    assert status == 409 and "no recovery point yet" in body["error"]["message"]
    assert started(durable, "failover_orchestrator") == []

    with_point(services, machine_id)
    services.repos.cycles.add(
        Cycle(
            id="c2",
            machine_id=machine_id,
            sequence=2,
            kind=CycleKind.DELTA,
            manifests={"sda": "m"},
            received_at=NOW,
        )
    )
    status, body, response = post(
        durable, machine_id, "failover", {"recoveryPoint": "latest", "shutdownSource": True}
    )
    assert status == 202, body
    assert response.headers["Location"] == f"/api/jobs/{body['jobId']}"
    assert body["job"]["kind"] == "Failover" and body["job"]["steps"][1]["name"] == "Shut down source"
    [job_input] = started(durable, "failover_orchestrator")
    assert job_input["job_id"] == body["jobId"] and job_input["recovery_point"] == "latest"
    assert job_input["shutdown_source"] is True
    machine = services.repos.machines.require(machine_id).item
    assert machine.state == "FailingOver"
    assert machine.failover is not None and machine.failover.drain_through_sequence == 2
    # 'latest': the machine's orchestration is woken to apply the waiting cycle now.
    assert any("machine-" in path for path, _ in durable.posts()), durable.posts()

    status, body, _ = post(durable, machine_id, "failover", {})
    assert status == 409, body
    assert len(started(durable, "failover_orchestrator")) == 1


def test_failover_refuses_unknown_points_and_missing_consistency(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = replicating(services, durable)
    with_point(services, machine_id)
    status, body, _ = post(durable, machine_id, "failover", {"recoveryPoint": "p9"})
    assert status == 404 and body["error"]["code"] == "RecoveryPointNotFound", body
    status, body, _ = post(durable, machine_id, "failover", {"recoveryPoint": "latestAppConsistent"})
    assert status == 409 and body["error"]["code"] == "NoRecoveryPoint", body
    status, body, _ = post(durable, machine_id, "failover", {"recoveryPoint": ""})
    assert status == 400, body
    assert started(durable, "failover_orchestrator") == []


def test_change_and_commit_need_a_failed_over_machine(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = replicating(services, durable)
    with_point(services, machine_id)
    status, body, _ = post(durable, machine_id, "change-recovery-point", {"recoveryPointId": "p1"})
    assert status == 409 and "only a failed-over machine" in body["error"]["message"], body
    status, body, _ = post(durable, machine_id, "commit")
    assert status == 409, body
    status, body, _ = post(durable, machine_id, "change-recovery-point", {})
    assert status == 400, body
