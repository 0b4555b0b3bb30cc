"""Idempotency-Key on operator actions, through the registered functions over the in-memory store and a
fake Durable extension: a retried POST answers 202 with the same job and Location and starts nothing
more; a 409 for a running action names its job; a malformed key is a 400 that changes nothing."""

from __future__ import annotations

from typing import Any

from shared.bootstrap import Services
from tests.unit.test_api_http import FakeDurableExtension, call, durable, services
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
