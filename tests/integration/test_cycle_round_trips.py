"""Cosmos round-trips of one steady delta cycle, on the Cosmos emulator through the real SDK: every call
the control plane makes for it, in the order the appliance and the orchestration cause them (upload
credentials, CycleStarted, CycleUploaded, the completion). docs/replication.md and docs/scale.md quote
the total; `bench/cycle_latency.py` measures the same on the whole local stack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from azure.cosmos import CosmosClient
from azure.storage.blob import BlobSasPermissions

from devhost.emulators import EmulatorEndpoints
from shared.appliances import registry as appliances
from shared.appliances.credentials import CredentialHasher
from shared.appliances.events import CycleStarted, CycleUploaded, DiskUploadExpectation
from shared.appliances.upload_credentials import issue_upload_credentials
from shared.domain.api import RegisterApplianceRequest, UploadCredentialsRequest
from shared.domain.appliance import Appliance, ApplianceKind
from shared.domain.cycle import Consistency, CycleKind, RecoveryPoint
from shared.domain.inventory import DiscoveryReport
from shared.domain.lifecycle import MachineState
from shared.domain.machine import Machine
from shared.health.appliance_failures import record_cycle_started
from shared.health.settings import HealthSettings
from shared.health.writer import flag_source_disks_changed
from shared.platform.cosmos_store import CosmosDocumentStore, ensure_containers
from shared.platform.repository import Repositories
from shared.replication import cycles

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:Unverified HTTPS request")]

NOW = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
GIB = 1024**3
HEALTH = HealthSettings()


class UrlSigner:
    """Signing a SAS is local computation (no Cosmos): any URL does here."""

    def blob_url(
        self, blob_name: str, *, permission: BlobSasPermissions, expiry: datetime, now: datetime
    ) -> str:
        return f"https://cache.invalid/uploads/{blob_name}?sig=test"


@pytest.fixture(scope="module")
def repos(emulators: EmulatorEndpoints) -> Iterator[Repositories]:
    client = CosmosClient(emulators.cosmos_endpoint, credential=emulators.cosmos_key, connection_verify=False)
    name = f"cycle-ops-{uuid.uuid4().hex[:8]}"
    yield Repositories(CosmosDocumentStore(ensure_containers(client, name)))
    client.delete_database(name)


def replicating_machine(repos: Repositories) -> tuple[Appliance, str, str]:
    """A registered appliance and one of its machines, replicating with cycle 1 applied."""
    hasher = CredentialHasher(b"integration-pepper-0123456789", n=2**4)
    registered = appliances.register_appliance(
        repos,
        hasher,
        RegisterApplianceRequest(name="hv-01", kind=ApplianceKind.HYPERV, site="dc1"),
        now=NOW,
    )
    appliance = appliances.authenticate_appliance(repos, hasher, registered.credential)
    machine_id = f"vm-{uuid.uuid4().hex[:6]}"
    report = DiscoveryReport.model_validate(
        {
            "machines": [
                {
                    "id": machine_id,
                    "displayName": "web01",
                    "osType": "linux",
                    "osName": "RHEL",
                    "osVersion": "9.4",
                    "firmware": "BIOS",
                    "disks": [{"id": "sda", "sizeBytes": 32 * GIB, "isOsDisk": True}],
                    "nics": [],
                }
            ]
        }
    )
    appliances.report_machines(
        repos,
        appliance,
        report,
        now=NOW,
        on_disks_changed=partial(flag_source_disks_changed, rules=HEALTH.rules),
    )

    def replicating(m: Machine) -> None:
        m.state = MachineState.REPLICATING
        m.record_cycle_applied(1, NOW)

    repos.machines.update_with_retry(machine_id, replicating)
    return appliance, registered.credential, machine_id


def delta_cycle(repos: Repositories, appliance: Appliance, machine_id: str, sequence: int) -> dict[str, int]:
    """One delta, every Cosmos call of it but the appliance's authentication; returns the calls by kind."""
    cycle_id = f"{machine_id}-{sequence:06d}"
    manifest = f"{machine_id}/{cycle_id}/sda/manifest.json"
    at = NOW + timedelta(minutes=5 * sequence)
    repos.counter.reset()
    issue_upload_credentials(
        repos,
        UrlSigner(),
        appliance,
        UploadCredentialsRequest(machine_id=machine_id, cycle_id=cycle_id, blobs=[manifest]),
        now=at,
    )
    started = CycleStarted(
        appliance_id=appliance.id,
        machine_id=machine_id,
        cycle_id=cycle_id,
        sequence=sequence,
        kind=CycleKind.DELTA,
        disks=[DiskUploadExpectation(disk_id="sda")],
    )
    assert record_cycle_started(repos, started, reported_at=at, settings=HEALTH) is not None
    uploaded = CycleUploaded(
        appliance_id=appliance.id,
        machine_id=machine_id,
        cycle_id=cycle_id,
        sequence=sequence,
        kind=CycleKind.DELTA,
        manifests={"sda": manifest},
    )
    accepted = cycles.accept_cycle_upload(repos, uploaded, now=at)
    point = RecoveryPoint(
        id=f"{sequence:010d}-{cycle_id}",
        cycle_id=cycle_id,
        time=at,
        consistency=Consistency.CRASH,
        disk_snapshots={"sda": f"2026-12-03T03:{sequence:02d}:00.0000000Z"},
    )
    cycles.complete_cycle(
        repos,
        cycles.CycleOutcome(cycle=accepted.cycle, recovery_point=point, applied_at=at, bytes_applied=65536),
        appliance.policy,
        HEALTH.rules,
        seen=accepted.machine,  # as the orchestration hands it on from the upload's signal
    )
    return repos.counter.snapshot()


def test_a_steady_delta_cycle_costs_8_round_trips(repos: Repositories) -> None:
    appliance, _, machine_id = replicating_machine(repos)
    for sequence in (2, 3):
        calls = delta_cycle(repos, appliance, machine_id, sequence)
        # + 1 read of the appliance, which authenticates its upload-credentials request
        assert sum(calls.values()) + 1 == 8, calls
        assert repos.counter.fallbacks() == {}, "no write took its fallback"
    machine = repos.machines.require(machine_id).item
    assert machine.replication.last_applied_sequence == 3
    assert machine.replication.upload_watch is None
    assert [p.cycle_id for p in machine.replication.recovery_points][-2:] == [
        f"{machine_id}-000002",
        f"{machine_id}-000003",
    ]


def test_a_completion_whose_machine_changed_since_the_upload_re_reads_it_and_loses_nothing(
    repos: Repositories,
) -> None:
    appliance, _, machine_id = replicating_machine(repos)
    cycle_id = f"{machine_id}-000002"
    accepted = cycles.accept_cycle_upload(
        repos,
        CycleUploaded(
            appliance_id=appliance.id,
            machine_id=machine_id,
            cycle_id=cycle_id,
            sequence=2,
            kind=CycleKind.DELTA,
            manifests={"sda": f"{machine_id}/{cycle_id}/sda/manifest.json"},
        ),
        now=NOW,
    )

    def operator_change(m: Machine) -> None:  # any write in between: the carried ETag is now stale
        m.inventory.display_name = "web01-renamed"

    repos.machines.update_with_retry(machine_id, operator_change)
    repos.counter.reset()
    cycles.complete_cycle(
        repos,
        cycles.CycleOutcome(cycle=accepted.cycle, recovery_point=None, applied_at=NOW, bytes_applied=1),
        appliance.policy,
        HEALTH.rules,
        seen=accepted.machine,
    )
    calls: dict[str, Any] = repos.counter.snapshot()
    # The conditional replace on the stale copy is refused (412), then the machine is read and written.
    assert calls["replace:machines"] == 2 and calls["read:machines"] == 1, calls
    # Counted by why, with what the other writer changed (found by comparing the two copies, no extra call).
    assert repos.counter.fallbacks() == {
        "machine update: carried copy, 412; changed: inventory.displayName": 1
    }
    machine = repos.machines.require(machine_id).item
    assert machine.inventory.display_name == "web01-renamed"
    assert machine.replication.last_applied_sequence == 2


def test_a_start_announced_after_its_cycle_was_applied_costs_a_read_and_is_counted_by_why(
    repos: Repositories,
) -> None:
    """Event Grid may deliver a cycle's CycleStarted after its CycleUploaded and after the cycle was applied:
    the guarded patch refuses it, the fallback's read finds why, and nothing is written."""
    appliance, _, machine_id = replicating_machine(repos)
    late = CycleStarted(
        appliance_id=appliance.id,
        machine_id=machine_id,
        cycle_id=f"{machine_id}-000001",
        sequence=1,
        kind=CycleKind.DELTA,
        disks=[DiskUploadExpectation(disk_id="sda")],
    )
    repos.counter.reset()
    assert record_cycle_started(repos, late, reported_at=NOW, settings=HEALTH) is None
    assert repos.counter.snapshot() == {"patch:machines": 1, "read:machines": 1}
    assert repos.counter.fallbacks() == {"cycle start patch: cycle already applied": 1}
    assert repos.machines.require(machine_id).item.replication.upload_watch is None
