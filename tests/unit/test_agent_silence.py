"""A Mobility agent silent past HEALTH_AGENT_HEARTBEAT_TIMEOUT_SECONDS: the pure rule (MCP-5101 raised once,
cleared only by the agent's own heartbeat), then the monitor over a registered agent in the in-memory store
(the machine's current error, its events, writes only on a change, cleared after the agent heartbeats)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared import health
from shared.appliances.credentials import CredentialHasher
from shared.domain.appliance import Appliance, ApplianceKind
from shared.domain.health import ClearedBy, Health, HealthState
from shared.domain.inventory import MachineInventory
from shared.domain.lifecycle import MachineState
from shared.domain.machine import Machine
from shared.health import event_texts
from shared.health.catalog import CATALOG, match_appliance_error
from shared.health.catalog.models import EventType
from shared.health.rules import (
    AGENT_CODE,
    AgentContact,
    HealthRules,
    evaluate_agent_silence,
    record_heartbeat,
    record_success,
)
from shared.mobility import registration
from shared.mobility.registration import AgentHeartbeat, RegisterAgentRequest
from shared.platform import telemetry as tm
from shared.platform.documents import Query
from shared.platform.repository import Repositories
from shared.platform.settings import Settings
from tests.support.memory_store import InMemoryDocumentStore
from tests.unit.test_telemetry import points
from tests.unit.test_telemetry_emitters import Recorded
from tests.unit.test_telemetry_emitters import current as current

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
# The appliance's own timeout far off, so that only the agent's silence is in play.
RULES = HealthRules(agent_heartbeat_timeout=timedelta(minutes=15), heartbeat_timeout=timedelta(hours=6))


def agent(minutes_ago: int) -> AgentContact:
    return AgentContact(agent_id="agent-1", last_heard=NOW - timedelta(minutes=minutes_ago))


# --- the rule ---------------------------------------------------------------------------------------------


def test_an_agent_heard_within_the_timeout_raises_nothing() -> None:
    state = HealthState()
    for contact in (agent(0), agent(15), None):
        change = evaluate_agent_silence(state, agent=contact, now=NOW, rules=RULES)
        assert change.state == state and change.raised == () and change.cleared == ()


def test_a_silent_agent_raises_critical_mcp_5101_once() -> None:
    change = evaluate_agent_silence(HealthState(), agent=agent(16), now=NOW, rules=RULES)
    (error,) = change.raised
    assert AGENT_CODE == "MCP-5101" and error.code == AGENT_CODE
    assert error.severity is Health.CRITICAL and change.health is Health.CRITICAL
    assert error.cleared_by is ClearedBy.AGENT_HEARTBEAT
    assert error.message == (
        "Mobility agent agent-1 has not sent a heartbeat since 2026-12-01T07:44:00+00:00 (more than 15 "
        "minutes)."
    )
    again = evaluate_agent_silence(change.state, agent=agent(30), now=NOW + timedelta(minutes=5), rules=RULES)
    assert again.raised == () and again.state == change.state


def test_only_the_agents_heartbeat_clears_it() -> None:
    raised = evaluate_agent_silence(HealthState(), agent=agent(20), now=NOW, rules=RULES).state
    later = NOW + timedelta(minutes=5)
    # The appliance's heartbeat and an applied cycle say nothing about the agent on the server.
    assert record_heartbeat(raised, at=later, rules=RULES).state.find(AGENT_CODE) is not None
    assert record_success(raised, at=later, rules=RULES, resync=True).state.find(AGENT_CODE) is not None
    # Still silent: waiting does not heal.
    assert evaluate_agent_silence(raised, agent=agent(25), now=later, rules=RULES).cleared == ()

    healed = evaluate_agent_silence(
        raised, agent=AgentContact(agent_id="agent-1", last_heard=later), now=later, rules=RULES
    )
    assert [e.code for e in healed.cleared] == [AGENT_CODE]
    assert healed.state.errors == () and healed.health is Health.HEALTHY


def test_an_agent_gone_leaves_nothing_to_be_silent() -> None:
    raised = evaluate_agent_silence(HealthState(), agent=agent(20), now=NOW, rules=RULES).state
    gone = evaluate_agent_silence(raised, agent=None, now=NOW + timedelta(minutes=5), rules=RULES)
    assert [e.code for e in gone.cleared] == [AGENT_CODE] and gone.state.errors == ()


def test_the_timeout_is_a_setting() -> None:
    env = {
        "COSMOS_ENDPOINT": "https://127.0.0.1:1/",
        "CACHE_STORAGE_ACCOUNT_URL": "https://cache.blob.core.windows.net",
        "REPLICA_STORAGE_ACCOUNT_URL": "https://replica.blob.core.windows.net",
        "EVENTGRID_TOPIC_ENDPOINT": "https://topic/api/events",
        "APPLIANCE_CREDENTIAL_PEPPER": "pepper",
    }
    default = health.HealthSettings.from_thresholds(Settings.from_environ(env).health)
    assert default.rules.agent_heartbeat_timeout == timedelta(minutes=15)
    tuned = health.HealthSettings.from_thresholds(
        Settings.from_environ({**env, "HEALTH_AGENT_HEARTBEAT_TIMEOUT_SECONDS": "45"}).health
    )
    assert tuned.rules.agent_heartbeat_timeout == timedelta(seconds=45)
    with pytest.raises(ValueError, match="agent_heartbeat_timeout"):
        HealthRules(agent_heartbeat_timeout=timedelta(0))


# --- the monitor --------------------------------------------------------------------------------------------

HASHER = CredentialHasher(b"agent-silence-pepper-0123456789", n=2**12)


def _machine(machine_id: str) -> Machine:
    inventory = MachineInventory.model_validate(
        {
            "displayName": machine_id,
            "osType": "linux",
            "osName": "Debian",
            "osVersion": "12",
            "firmware": "BIOS",
            "disks": [{"id": "d0", "sizeBytes": 1024**3, "isOsDisk": True}],
        }
    )
    return Machine(
        id=machine_id,
        appliance_id="appl-1",
        inventory=inventory,
        state=MachineState.REPLICATING,
        discovered_at=NOW,
        updated_at=NOW,
    )


@pytest.fixture
def repos() -> Repositories:
    repos = Repositories(InMemoryDocumentStore())
    repos.appliances.add(
        Appliance(
            id="appl-1",
            name="gw-east",
            kind=ApplianceKind.VMWARE,
            site="dc1",
            credential_hash="-",
            registered_at=NOW,
            last_heartbeat=NOW,
        )
    )
    for machine_id in ("m-agent", "m-plain"):
        repos.machines.add(_machine(machine_id))
    return repos


def _register(repos: Repositories, machine_id: str | None = None, **identity: object) -> str:
    passphrase = registration.rotate_passphrase(repos, HASHER, now=NOW).passphrase
    request = RegisterAgentRequest.model_validate(
        {"passphrase": passphrase, **({"machineId": machine_id} if machine_id else identity)}
    )
    return registration.register_agent(repos, HASHER, request, now=NOW).credential


def _monitor(repos: Repositories, at: datetime) -> health.MonitorReport:
    return health.monitor_health(
        repos,
        now=at,
        settings=health.HealthSettings(rules=RULES),
        agents=registration.agent_contacts(repos),
    )


def test_the_monitor_flags_a_silent_agents_machine_and_clears_it_after_a_heartbeat(
    repos: Repositories,
) -> None:
    credential = _register(repos, "m-agent")
    # An agent registered by hostname has no machine: nothing to flag.
    _register(repos, hostname="lonely", biosUuid="4c4c4544-0000-1000-8000-000000000001")
    beat = AgentHeartbeat(version="9.60.0.0")
    registration.record_heartbeat(repos, HASHER, credential, beat, now=NOW)
    contacts = registration.agent_contacts(repos)
    assert set(contacts) == {"m-agent"} and contacts["m-agent"].last_heard == NOW

    _monitor(repos, NOW)  # the first check records the appliance's heartbeat on both machines
    assert _monitor(repos, NOW + timedelta(minutes=15)).machines_changed == []

    silent_at = NOW + timedelta(minutes=16)
    report = _monitor(repos, silent_at)
    assert report.machines_changed == ["m-agent"]
    machine = repos.machines.require("m-agent").item
    (error,) = machine.replication.current_errors
    assert (error.code, error.severity) == ("MCP-5101", Health.CRITICAL)
    assert machine.health is Health.CRITICAL
    assert repos.machines.require("m-plain").item.replication.current_errors == []
    events = repos.events.query(Query(equals={"machineId": "m-agent"}), partition_key="m-agent")
    entry = CATALOG["MobilityAgentNotResponding"]
    (flagged,) = [e for e in events if e.type == EventType.MOBILITY_AGENT_NOT_RESPONDING.value]
    (changed,) = [e for e in events if e.type == event_texts.HEALTH_CHANGED]
    assert flagged.error_code == changed.error_code == "MCP-5101" and flagged.severity.value == "Critical"
    assert changed.details["health"] == "Critical" and "MCP-5101" in changed.details["reason"]
    assert flagged.causes == list(entry.causes) and flagged.recommendations == list(entry.recommendations)
    assert "since " + NOW.isoformat() in flagged.message

    # Still silent: a check writes nothing.
    repos.counter.reset()
    again = _monitor(repos, silent_at + timedelta(minutes=5))
    assert again.machines_changed == [] and again.events_written == 0
    assert set(repos.counter.snapshot()) == {"query:mobility", "query:machines", "read:appliances"}

    registration.record_heartbeat(repos, HASHER, credential, beat, now=silent_at + timedelta(minutes=8))
    healed = _monitor(repos, silent_at + timedelta(minutes=10))
    assert healed.machines_changed == ["m-agent"]
    machine = repos.machines.require("m-agent").item
    assert machine.replication.current_errors == [] and machine.health is Health.HEALTHY
    events = repos.events.query(Query(equals={"machineId": "m-agent"}), partition_key="m-agent")
    (recovered,) = [e for e in events if e.type == event_texts.HEALTH_CHANGED and e.time > silent_at]
    assert recovered.details["health"] == "Healthy" and recovered.details["reason"] == (
        "health monitor: MCP-5101 cleared"
    )


def test_each_check_records_the_agents_heartbeat_age_for_the_silent_agent_alert(
    repos: Repositories, current: Recorded
) -> None:
    _, _, reader = current
    credential = _register(repos, "m-agent")
    registration.record_heartbeat(repos, HASHER, credential, AgentHeartbeat(version="9.60.0.0"), now=NOW)
    _monitor(repos, NOW + timedelta(minutes=16))  # past the timeout: MCP-5101, and the age the alert reads
    (point,) = points(reader, tm.METRIC_MOBILITY_AGENT_HEARTBEAT_AGE)
    # Only the machine with an agent; the machine without one has no agent to be silent.
    assert dict(point.attributes or {}) == {tm.ATTR_MACHINE_ID: "m-agent"}
    assert point.max == 16 * 60 and point.count == 1
    assert "MCP-5101" in [e.code for e in repos.machines.require("m-agent").item.replication.current_errors]


def test_a_cycle_failure_naming_mcp_5101_is_not_taken_for_it() -> None:
    # Only the monitor raises it, so that only the agent's heartbeat clears it: a report naming the code is
    # kept verbatim under the generic entry instead.
    match = match_appliance_error("MCP-5101", "agent says it is silent")
    assert match.entry is CATALOG.generic and match.reported_code == "MCP-5101"
