"""The service layer end to end on the Cosmos emulator through the real SDK, with the number of Cosmos
round-trips of each main operation measured (docs/data-model.md quotes these numbers)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from azure.cosmos import CosmosClient

from devhost.emulators import EmulatorEndpoints
from shared.appliances import commands
from shared.appliances import registry as appliances
from shared.appliances.credentials import CredentialHasher
from shared.domain.api import RegisterApplianceRequest
from shared.domain.appliance import ApplianceKind
from shared.domain.command import CommandKind
from shared.domain.cycle import Consistency, RecoveryPoint
from shared.domain.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from shared.domain.event import Event, Severity
from shared.domain.inventory import DiscoveryReport
from shared.domain.lifecycle import ForbiddenTransition, MachineState, transition
from shared.domain.machine import Machine
from shared.domain.target import TargetSettings
from shared.failover import settings as failover_settings
from shared.health import events
from shared.health.rules import HealthRules
from shared.health.writer import flag_source_disks_changed
from shared.platform.cosmos_store import CosmosDocumentStore, ensure_containers
from shared.platform.repository import Repositories
from shared.platform.settings import Settings
from shared.replication import machines

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:Unverified HTTPS request")]

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
GIB = 1024**3
TARGET = TargetSettings.model_validate(
    {
        "resourceGroup": "rg-target",
        "virtualNetwork": "vnet-prod",
        "subnet": "app",
        "subnetAddressPrefix": "10.1.2.0/24",
        "vmSize": "Standard_D4s_v3",
        "diskType": "Premium_LRS",
        "staticIpAddress": "10.1.2.10",
        "testVirtualNetwork": "vnet-test",
        "autoRepairReplication": True,
    }
)
MEASURED: dict[str, int] = {}
NOTES: list[str] = []

# What functions/appliances.py passes: health's writer flags a changed disk layout.
report_machines = partial(
    appliances.report_machines,
    on_disks_changed=partial(flag_source_disks_changed, rules=HealthRules()),
)


def discovered(machine_id: str, name: str = "web01") -> dict[str, Any]:
    return {
        "id": machine_id,
        "displayName": name,
        "osType": "linux",
        "osName": "RHEL",
        "osVersion": "7.9",
        "firmware": "BIOS",
        "disks": [
            {"id": "sda", "sizeBytes": 32 * GIB, "isOsDisk": True},
            {"id": "sdb", "sizeBytes": 64 * GIB},
        ],
        "nics": [{"id": "nic0", "macAddress": "00:15:5d:01:02:03", "ipAddresses": ["192.168.1.20"]}],
    }


@pytest.fixture(scope="module")
def repos(emulators: EmulatorEndpoints) -> Iterator[Repositories]:
    client = CosmosClient(emulators.cosmos_endpoint, credential=emulators.cosmos_key, connection_verify=False)
    name = f"services-{uuid.uuid4().hex[:8]}"
    yield Repositories(CosmosDocumentStore(ensure_containers(client, name)))
    client.delete_database(name)


@pytest.fixture(scope="module")
def hasher() -> CredentialHasher:
    return CredentialHasher(b"integration-pepper-0123456789")  # production cost parameters


def measured(repos: Repositories, name: str) -> int:
    MEASURED[name] = repos.counter.total
    repos.counter.reset()
    return MEASURED[name]


def test_register_report_enable_get(repos: Repositories, hasher: CredentialHasher) -> None:
    repos.counter.reset()
    registered = appliances.register_appliance(
        repos,
        hasher,
        RegisterApplianceRequest(name="hv-host-01", kind=ApplianceKind.HYPERV, site="dc1"),
        now=NOW,
    )
    assert measured(repos, "register appliance") == 1

    me = appliances.authenticate_appliance(repos, hasher, registered.credential)
    assert me.id == registered.id
    assert measured(repos, "authenticate appliance (incl. its policy)") == 1

    suffix = uuid.uuid4().hex[:6]
    ids = [f"vm-{suffix}-{i}" for i in range(3)]
    report = DiscoveryReport.model_validate({"machines": [discovered(i) for i in ids]})
    result = report_machines(repos, me, report, now=NOW)
    assert [r.outcome for r in result.machines] == ["Created"] * 3
    assert measured(repos, "report 3 new machines") == 6
    report_machines(repos, me, report, now=NOW)
    assert measured(repos, "report 3 unchanged machines") == 3

    started = machines.enable_replication(
        repos, machines.EnableReplication(ids[0], TARGET, "job-" + suffix), now=NOW
    )
    assert started.machine.state is MachineState.ENABLING_REPLICATION
    # Read, replace with the pending start, the job, and the job's "Job started" event.
    assert measured(repos, "enable replication") == 4

    def initial_replication_done(m: Machine) -> None:  # what the orchestration's transitions do
        transition(m, MachineState.INITIAL_REPLICATION)
        transition(m, MachineState.REPLICATING)

    repos.machines.update_with_retry(ids[0], initial_replication_done)
    repos.counter.reset()
    point = RecoveryPoint(
        id="rp-1",
        cycle_id="cycle-1",
        time=NOW - timedelta(minutes=2),
        consistency=Consistency.APP,
        disk_snapshots={"sda": "2026-11-22T02:58:00.0000000Z", "sdb": "2026-11-22T02:58:00.0000000Z"},
    )

    def cycle_applied(m: Machine) -> None:  # what completing a cycle records on the machine
        m.replication.add_recovery_point(
            point,
            keep_count=me.policy.recovery_point_retention_count,
            keep_for=timedelta(hours=me.policy.recovery_point_retention_hours),
            now=point.time,
        )
        m.record_cycle_applied(1, point.time)

    repos.machines.update_with_retry(ids[0], cycle_applied)
    assert measured(repos, "record an applied cycle (watermark, recovery point, retention)") == 2

    events.record_event(
        repos,
        Event(
            id=f"ev-{suffix}",
            machine_id=ids[0],
            time=NOW,
            type="Replication cycle failed",
            severity=Severity.WARNING,
            message="An error occurred while trying to fetch changed blocks",
            recommendations=["Repair replication"],
        ),
    )
    assert measured(repos, "record an event") == 1
    # The enable job's own "Job started" event, then this one.
    assert [e.id for e in events.list_events(repos, ids[0])] == [f"job-{suffix}-started", f"ev-{suffix}"]
    assert measured(repos, "list a machine's events") == 1

    detail = machines.get_machine(repos, ids[0], now=NOW)
    # the machine's point read, and one single-partition query of its newest cycles (replicationStatistics)
    assert measured(repos, "get machine") == 2
    assert detail.state is MachineState.REPLICATING and detail.rpo_seconds == 120
    assert detail.recovery_points.latest_app_consistent == NOW - timedelta(minutes=2)
    assert detail.target == TARGET and detail.inventory.disks[1].size_bytes == 64 * GIB

    listing = machines.list_machines(repos, now=NOW, appliance_id=me.id, page_size=10)
    assert sorted(m.id for m in listing.machines) == ids
    assert measured(repos, "list an appliance's machines (one page)") == 1

    commands.queue_command(
        repos, command_id=f"cmd-{suffix}", machine_id=ids[0], kind=CommandKind.RUN_CYCLE, now=NOW
    )
    assert measured(repos, "queue a command") == 2
    assert [c.id for c in commands.pending_commands(repos, me.id)] == [f"cmd-{suffix}"]
    assert measured(repos, "poll pending commands") == 1
    commands.acknowledge_command(repos, me.id, f"cmd-{suffix}", now=NOW)
    assert measured(repos, "acknowledge a command") == 2
    assert commands.pending_commands(repos, me.id) == []

    with pytest.raises(ForbiddenTransition):
        machines.enable_replication(repos, machines.EnableReplication(ids[0], TARGET, "job-x"), now=NOW)
    repos.counter.reset()
    stopped = machines.stop_replication(
        repos, machines.StopReplication(ids[0], f"job-stop-{suffix}"), now=NOW
    )
    assert stopped.machine.state is MachineState.REPLICATION_STOPPED
    # A read to name the job (stop or complete migration), read, replace, the job, its "Job started" event.
    assert measured(repos, "stop replication") == 5


def test_a_large_discovery_report_runs_its_calls_concurrently(
    repos: Repositories, hasher: CredentialHasher
) -> None:
    registered = appliances.register_appliance(
        repos, hasher, RegisterApplianceRequest(name="vcenter", kind=ApplianceKind.VMWARE, site="s"), now=NOW
    )
    me = appliances.authenticate_appliance(repos, hasher, registered.credential)
    suffix = uuid.uuid4().hex[:6]
    report = DiscoveryReport.model_validate(
        {"machines": [discovered(f"big-{suffix}-{i}") for i in range(40)]}
    )
    repos.counter.reset()
    started = time.perf_counter()
    result = report_machines(repos, me, report, now=NOW)
    elapsed = time.perf_counter() - started
    assert [r.outcome for r in result.machines] == ["Created"] * 40
    assert [r.id for r in result.machines] == [m.id for m in report.machines]  # answer in report order
    assert measured(repos, "report 40 new machines") == 80
    NOTES.append(f"wall time to report 40 new machines: {elapsed:.2f} s")


def test_another_appliances_machine_is_forbidden(repos: Repositories, hasher: CredentialHasher) -> None:
    owner = appliances.register_appliance(
        repos, hasher, RegisterApplianceRequest(name="a", kind=ApplianceKind.VMWARE, site="s"), now=NOW
    )
    intruder = appliances.register_appliance(
        repos, hasher, RegisterApplianceRequest(name="b", kind=ApplianceKind.VMWARE, site="s"), now=NOW
    )
    machine_id = f"vm-{uuid.uuid4().hex[:6]}"
    owner_app = appliances.authenticate_appliance(repos, hasher, owner.credential)
    intruder_app = appliances.authenticate_appliance(repos, hasher, intruder.credential)
    report_machines(
        repos, owner_app, DiscoveryReport.model_validate({"machines": [discovered(machine_id)]}), now=NOW
    )
    with pytest.raises(Forbidden):
        report_machines(
            repos,
            intruder_app,
            DiscoveryReport.model_validate({"machines": [discovered(machine_id, "evil")]}),
            now=NOW,
        )
    with pytest.raises(Forbidden):
        appliances.authorize_appliance(intruder_app, owner.id)
    with pytest.raises(Unauthorized):
        # A different last character, whatever the random credential ends with.
        tampered = owner.credential[:-1] + ("1" if owner.credential.endswith("0") else "0")
        appliances.authenticate_appliance(repos, hasher, tampered)
    assert repos.machines.require(machine_id).item.inventory.display_name == "web01"


def test_validation_and_missing_machine_change_nothing(repos: Repositories, hasher: CredentialHasher) -> None:
    with pytest.raises(NotFound):
        machines.enable_replication(repos, machines.EnableReplication("nope", TARGET, "job-n"), now=NOW)
    registered = appliances.register_appliance(
        repos, hasher, RegisterApplianceRequest(name="c", kind=ApplianceKind.PHYSICAL, site="s"), now=NOW
    )
    me = appliances.authenticate_appliance(repos, hasher, registered.credential)
    machine_id = f"win-{uuid.uuid4().hex[:6]}"
    windows = {
        **discovered(machine_id, "FILESERVER-PRIMARY-01"),
        "osType": "windows",
        "osName": "Windows Server 2016",
    }
    report_machines(repos, me, DiscoveryReport.model_validate({"machines": [windows]}), now=NOW)
    with pytest.raises(ValidationFailed) as caught:
        machines.enable_replication(repos, machines.EnableReplication(machine_id, TARGET, "job-v"), now=NOW)
    assert caught.value.details[0]["field"] == "targetVmName"
    assert "set targetVmName" in caught.value.details[0]["problem"]
    stored = repos.machines.require(machine_id).item
    assert stored.state is MachineState.DISCOVERED and stored.target is None
    assert repos.jobs.get("job-v") is None


def test_failover_settings_are_patched_and_a_taken_address_is_found(
    repos: Repositories, hasher: CredentialHasher
) -> None:
    registered = appliances.register_appliance(
        repos, hasher, RegisterApplianceRequest(name="fo", kind=ApplianceKind.VMWARE, site="s"), now=NOW
    )
    me = appliances.authenticate_appliance(repos, hasher, registered.credential)
    suffix = uuid.uuid4().hex[:6]
    ids = [f"fo-{suffix}-{i}" for i in range(2)]
    report = DiscoveryReport.model_validate({"machines": [discovered(i, f"web{i}") for i in ids]})
    report_machines(repos, me, report, now=NOW)
    vnet = f"vnet-{suffix}"  # this test's own network: other tests' addresses are elsewhere
    for i, machine_id in enumerate(ids):
        target = TARGET.model_copy(
            update={"virtual_network": vnet, "static_ip_address": TARGET.static_ip_address + 20 + i}
        )
        machines.enable_replication(
            repos, machines.EnableReplication(machine_id, target, f"job-{machine_id}"), now=NOW
        )

        def replicating(m: Machine) -> None:
            m.state = MachineState.REPLICATING

        repos.machines.update_with_retry(machine_id, replicating)

    repos.counter.reset()
    assert (
        failover_settings.get_failover_settings(repos, ids[1]).static_ip_address
        == TARGET.static_ip_address + 21
    )
    assert measured(repos, "get failover settings") == 1
    with pytest.raises(ValidationFailed) as caught:
        failover_settings.update_failover_settings(repos, ids[1], {"staticIpAddress": "10.1.2.30"}, now=NOW)
    [problem] = caught.value.details
    assert problem["field"] == "staticIpAddress" and f"machine {ids[0]}" in problem["problem"]
    repos.counter.reset()
    updated = failover_settings.update_failover_settings(
        repos,
        ids[1],
        {"staticIpAddress": "10.1.2.40", "disks": {"sdb": {"diskType": "Standard_LRS"}}},
        now=NOW,
    )
    assert measured(repos, "change failover settings (with a static IP)") == 4
    assert str(updated.static_ip_address) == "10.1.2.40"
    stored = repos.machines.require(ids[1]).item.failover_settings
    assert stored is not None and stored.disks["sdb"].disk_type == "Standard_LRS"
    assert stored.disks["sda"].disk_type == "Premium_LRS"


def test_settings_built_services_work_against_the_emulator(emulators: EmulatorEndpoints) -> None:
    from shared.bootstrap import build_services

    settings = Settings.from_environ(
        {
            "COSMOS_ENDPOINT": emulators.cosmos_endpoint,
            "COSMOS_KEY": emulators.cosmos_key,
            "COSMOS_DATABASE": f"boot-{uuid.uuid4().hex[:8]}",
            "COSMOS_VERIFY_TLS": "false",
            "CACHE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
            "REPLICA_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
            "EVENTGRID_TOPIC_ENDPOINT": "http://127.0.0.1:1/api/events",
            "APPLIANCE_CREDENTIAL_PEPPER": "pepper-for-bootstrap-test",
        }
    )
    services = build_services(settings)
    registered = appliances.register_appliance(
        services.repos,
        services.hasher,
        RegisterApplianceRequest(name="boot", kind=ApplianceKind.VMWARE, site="s"),
        now=services.clock(),
    )
    assert (
        appliances.authenticate_appliance(services.repos, services.hasher, registered.credential).id
        == registered.id
    )


def test_zz_report_round_trips(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the measured table (run with -s to see it); the assertions live in the flow above."""
    with capsys.disabled():
        print("\nCosmos round-trips per operation (measured on the emulator):")
        for name, count in MEASURED.items():
            print(f"  {count:3d}  {name}")
        for note in NOTES:
            print(f"  {note}")
