"""Idempotency-Key on operator actions, through the registered functions over the in-memory store and a
fake Durable extension: a retried POST answers 202 with the same job and Location and starts nothing
more; a 409 for a running action names its job; a malformed key is a 400 that changes nothing."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from functions.starts import DurableOrchestrations
from orchestrators.failback.contracts import REVERSE_WAKE
from orchestrators.names import OPERATOR_REQUEST
from shared.bootstrap import Services
from shared.domain.job import JobKind, new_job
from shared.domain.pending_start import PendingStart, StartRunner
from tests.unit.test_api_http import FakeDurableExtension, call, durable, run, services
from tests.unit.test_failover_http import started, with_point
from tests.unit.test_failover_settings_http import replicating

__all__ = ["durable", "services"]  # the fixtures, used by name


def failover(durable: FakeDurableExtension, machine_id: str, key: str | None) -> tuple[int, Any, Any]:
    return call(
        "fail_over",
        "POST",
        f"/api/machines/{machine_id}/failover",
        body={"recoveryPoint": "latestProcessed"},
        route={"machineId": machine_id},
        client=durable.client_json,
        headers={"Idempotency-Key": key} if key is not None else None,
    )


def test_a_retried_post_with_the_same_key_gets_the_same_job(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = replicating(services, durable)
    with_point(services, machine_id)
    status, first, response = failover(durable, machine_id, "retry-1")
    assert status == 202, first
    status, again, again_response = failover(durable, machine_id, "retry-1")
    assert status == 202, again
    assert again["jobId"] == first["jobId"]
    assert again_response.headers["Location"] == response.headers["Location"] == f"/api/jobs/{first['jobId']}"
    # The orchestration runs once: the retry found it and started nothing.
    assert len(started(durable, "failover_orchestrator")) == 1

    status, refused, _ = failover(durable, machine_id, "another-key")
    assert status == 409
    assert first["jobId"] in refused["error"]["message"]
    assert {"activeJobId": first["jobId"], "kind": "Failover", "status": "InProgress"} in refused["error"][
        "details"
    ]


def test_a_retry_after_a_crash_before_the_orchestration_started_starts_it(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = replicating(services, durable)
    with_point(services, machine_id)
    status, first, _ = failover(durable, machine_id, "k")
    assert status == 202
    # As if the host had died after recording the start and before starting the orchestration.
    durable.running.discard(first["jobId"])
    durable.calls.clear()
    status, again, _ = failover(durable, machine_id, "k")
    assert status == 202 and again["jobId"] == first["jobId"]
    [job_input] = started(durable, "failover_orchestrator")
    assert job_input["job_id"] == first["jobId"]


def test_a_malformed_key_is_a_400_that_changes_nothing(
    services: Services, durable: FakeDurableExtension
) -> None:
    machine_id = replicating(services, durable)
    with_point(services, machine_id)
    status, body, _ = failover(durable, machine_id, "has spaces")
    assert status == 400 and body["error"]["details"][0]["field"] == "Idempotency-Key"
    assert services.repos.machines.require(machine_id).item.state == "Replicating"
    assert started(durable, "failover_orchestrator") == []


def test_the_reconcilers_adapter_asks_and_wakes_the_machines_long_lived_orchestrations(
    services: Services, durable: FakeDurableExtension
) -> None:
    adapter = DurableOrchestrations(df.DurableOrchestrationClient(durable.client_json))
    durable.running.add("machine-vm-9")
    assert run(adapter.alive("vm-9", StartRunner.MACHINE))
    assert not run(adapter.alive("vm-9", StartRunner.REVERSE))  # never started
    durable.runtime_status["machine-vm-9"] = "Completed"
    assert not run(adapter.alive("vm-9", StartRunner.MACHINE))
    assert run(adapter.alive("vm-9", StartRunner.COMMANDS))  # nothing to ask: the reconciler completes it

    durable.runtime_status.pop("machine-vm-9")
    durable.running.add("reverse-vm-9")
    now = services.clock()
    stop = new_job("job-s", JobKind.STOP_REPLICATION, "vm-9", ("Stop replication",), now)
    planned = new_job("job-p", JobKind.PLANNED_FAILOVER, "vm-9", ("Prerequisites",), now)
    durable.calls.clear()
    run(adapter.redeliver("vm-9", PendingStart(job=stop, runner=StartRunner.MACHINE, requested_at=now)))
    run(adapter.redeliver("vm-9", PendingStart(job=planned, runner=StartRunner.REVERSE, requested_at=now)))
    assert durable.posts() == [
        (
            f"/durabletask/instances/machine-vm-9/raiseEvent/{OPERATOR_REQUEST}",
            {"machineId": "vm-9", "jobId": "job-s", "kind": "StopReplication"},
        ),
        (f"/durabletask/instances/reverse-vm-9/raiseEvent/{REVERSE_WAKE}", {"jobId": "job-p"}),
    ]
