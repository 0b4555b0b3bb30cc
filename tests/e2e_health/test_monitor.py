"""The health monitor timer end to end: run through the host's admin API (`POST /admin/functions/...` with
the master key), on a stack whose thresholds are seconds instead of hours (app settings, HOST_ENV): RPO,
a silent appliance, a silent Mobility agent."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.platform import telemetry as tm
from tests.e2e_health.client import Stack, apply_delta, events, eventually, machine, replicating_machine
from tests.support.telemetry import METRIC_EXPORT_ENV, read_emitted

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RPO_WARNING_SECONDS = 2
HEARTBEAT_TIMEOUT_SECONDS = 8
HOST_ENV = {
    "HEALTH_RPO_WARNING_SECONDS": str(RPO_WARNING_SECONDS),
    "HEALTH_RPO_CRITICAL_SECONDS": "3600",
    "HEALTH_HEARTBEAT_TIMEOUT_SECONDS": str(HEARTBEAT_TIMEOUT_SECONDS),
    "HEALTH_AGENT_HEARTBEAT_TIMEOUT_SECONDS": str(HEARTBEAT_TIMEOUT_SECONDS),
    **METRIC_EXPORT_ENV,
}


def _codes(stack: Stack, machine_id: str) -> dict[str, str]:
    return {e["code"]: e["severity"] for e in machine(stack, machine_id)["currentErrors"]}


def test_rpo_and_a_silent_appliance_are_flagged_and_heal(stack: Stack) -> None:
    appliance = stack.register_appliance("gw-quiet")
    replicated = replicating_machine(stack, appliance, prefix="mon")
    # Let the RPO and the appliance's silence pass their thresholds (no assertion on time itself).
    time.sleep(HEARTBEAT_TIMEOUT_SECONDS + 1)

    ran = stack.run_timer("health_monitor")
    assert ran.status_code == 202, ran.text
    body = machine(stack, replicated.id)
    assert body["health"] == "Critical"
    assert _codes(stack, replicated.id) == {"MCP-3002": "Warning", "MCP-3003": "Critical"}
    assert body["rpoSeconds"] > RPO_WARNING_SECONDS
    # Newest of each type (events come newest first): the host's own 5-minute schedule may also have run
    # the monitor meanwhile (RPO already late, the appliance not yet silent) and logged Healthy -> Warning.
    by_type: dict[str, dict[str, Any]] = {}
    for event in events(stack, replicated.id):
        by_type.setdefault(event["type"], event)
    silent = by_type["Appliance not responding"]
    assert silent["severity"] == "Critical" and "gw-quiet" in silent["message"]
    assert silent["causes"] and silent["recommendations"]
    assert by_type["RPO threshold exceeded"]["severity"] == "Warning"
    assert by_type["Replication health changed"]["details"]["health"] == "Critical"

    # Running again finds nothing new: no write, no duplicate events.
    count = len(events(stack, replicated.id))
    assert stack.run_timer("health_monitor").status_code == 202
    assert len(events(stack, replicated.id)) == count

    # The appliance is heard from again: "not responding" clears; the RPO stays until a cycle applies.
    appliance.heartbeat()

    def heard() -> bool:
        stack.run_timer("health_monitor")
        return "MCP-3003" not in _codes(stack, replicated.id)

    eventually(heard, what="the heartbeat clearing 'appliance not responding'")
    assert _codes(stack, replicated.id) == {"MCP-3002": "Warning"}
    assert machine(stack, replicated.id)["health"] == "Warning"

    apply_delta(stack, appliance, replicated)
    body = machine(stack, replicated.id)
    assert body["health"] == "Healthy" and body["currentErrors"] == []
    assert body["lastSyncTime"] is not None


def test_a_silent_mobility_agent_is_flagged_and_only_its_heartbeat_clears_it(stack: Stack) -> None:
    appliance = stack.register_appliance("gw-agent")
    replicated = replicating_machine(stack, appliance, prefix="agt")
    issued = stack.post("/api/mobility/passphrase")
    assert issued.status_code == 201, issued.text
    registered = stack.post(
        "/api/mobility/agents/register",
        {"passphrase": issued.json()["passphrase"], "machineId": replicated.id},
    )
    assert registered.status_code == 201, registered.text
    agent_headers = {**stack.operator_headers, "Authorization": f"Bearer {registered.json()['credential']}"}

    def agent_heartbeat() -> None:
        beat = stack.http.post(
            "/api/mobility/agents/heartbeat", headers=agent_headers, json={"version": "9.60"}
        )
        assert beat.status_code == 200, beat.text

    agent_heartbeat()
    time.sleep(HEARTBEAT_TIMEOUT_SECONDS + 1)
    assert stack.run_timer("health_monitor").status_code == 202
    # The appliance went quiet too (same timeout): both silences are Critical errors of the machine.
    assert _codes(stack, replicated.id) == {
        "MCP-3002": "Warning",
        "MCP-3003": "Critical",
        "MCP-5101": "Critical",
    }
    assert machine(stack, replicated.id)["health"] == "Critical"
    flagged = next(e for e in events(stack, replicated.id) if e["type"] == "Mobility agent not responding")
    assert flagged["errorCode"] == "MCP-5101" and flagged["severity"] == "Critical"
    assert registered.json()["agentId"] in flagged["message"] and flagged["recommendations"]

    # What the "Mobility agent silent" alert (infra/modules/alerts.bicep) reads: the agent's heartbeat age
    # by machine, past the timeout.
    def age_recorded() -> bool:
        points = read_emitted(stack.local.telemetry_file).metric_points(
            tm.METRIC_MOBILITY_AGENT_HEARTBEAT_AGE, **{tm.ATTR_MACHINE_ID: replicated.id}
        )
        return bool(points)

    eventually(age_recorded, what="the agent's heartbeat age in the telemetry file")

    # The appliance's heartbeat clears only the appliance's silence.
    appliance.heartbeat()

    def appliance_heard() -> bool:
        stack.run_timer("health_monitor")
        return "MCP-3003" not in _codes(stack, replicated.id)

    eventually(appliance_heard, what="the appliance heartbeat clearing MCP-3003")
    assert "MCP-5101" in _codes(stack, replicated.id)

    agent_heartbeat()

    def heard() -> bool:
        stack.run_timer("health_monitor")
        return "MCP-5101" not in _codes(stack, replicated.id)

    eventually(heard, what="the agent heartbeat clearing MCP-5101")
    # Only MCP-5101 went: the RPO stays until a cycle applies (the appliance may have gone quiet again).
    assert "MCP-3002" in _codes(stack, replicated.id)
