"""Replication end to end: the appliance client uploads cycles and publishes events; the control plane
applies them through Event Grid, the Functions host, the Durable orchestration, Cosmos and Azurite."""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx
import pytest
from azure.storage.blob import ContainerClient

from appliance.control_plane import ControlPlaneError
from appliance.replicator import CycleReport, MachineReplicator
from shared.domain.cycle import CycleKind
from shared.replication.delta_manifest import DeltaManifest
from tests.e2e.conftest import Appliance, Operator, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MIB = 1024 * 1024


def random_writes(replicator: MachineReplicator, rng: random.Random, count: int) -> None:
    for _ in range(count):
        disk = rng.choice(replicator.disks)
        length = rng.choice([512, 4096, 65536, 512 * rng.randint(1, 300)])
        offset = rng.randrange(0, (disk.size - length) // 512) * 512
        data = rng.randbytes(length) if rng.random() > 0.2 else bytes(length)  # zeros too
        replicator.write(disk.disk_id, offset, data)


def _server_side_copies(operator: Operator) -> int:
    """Put Page From URL calls the stack's storage has carried out (the blob front counts them)."""
    stats = httpx.get(f"http://127.0.0.1:{operator.stack.ports.emulators.blob}/.front/stats", timeout=10)
    return int(stats.json()["copyCalls"])


def initial_copy(appliance: Appliance, replicator: MachineReplicator) -> CycleReport:
    """The appliance starts the initial copy when the control plane asks for it (a RunCycle command)."""
    [report] = replicator.handle_commands(appliance.api)
    assert report.kind is CycleKind.INITIAL
    return report


def assert_replicas_match(appliance: Appliance, replicator: MachineReplicator) -> None:
    for disk in replicator.disks:
        source = disk.path.read_bytes()
        assert appliance.replica_bytes(replicator.machine_id, disk.disk_id, disk.size) == source, disk.disk_id


@pytest.mark.parametrize("flavour", ["vmware", "hyperv"])
def test_initial_copy_then_deltas_keep_the_replica_identical(
    new_appliance: Callable[[], Appliance], operator: Operator, flavour: str
) -> None:
    appliance = new_appliance()
    # 3 MiB + 1.5 KiB: not a whole MiB, so the replica is rounded up and carries a VHD footer.
    replicator = appliance.machine(operator, disks={"os": 6 * MIB, "data": 3 * MIB + 1536}, flavour=flavour)  # type: ignore[arg-type]
    assert operator.machine(replicator.machine_id)["state"] == "InitialReplication"
    initial = initial_copy(appliance, replicator)
    machine = operator.wait_applied(replicator.machine_id, initial.cycle_id)
    assert machine["state"] == "Replicating"
    assert machine["progressPercent"] == 100.0
    assert machine["lastAppliedSequence"] == initial.sequence
    assert_replicas_match(appliance, replicator)
    assert appliance.replica_size(replicator.machine_id, "data") == 4 * MIB + 512

    rng = random.Random(7)
    copied_before = _server_side_copies(operator)
    for _ in range(4):
        random_writes(replicator, rng, 12)
        report = replicator.run_cycle()
        # The watermark moves in the same machine update as the recovery point wait_applied waits for.
        assert operator.wait_applied(replicator.machine_id, report.cycle_id)["lastAppliedSequence"] == (
            report.sequence
        )
        assert_replicas_match(appliance, replicator)
    # The deltas went the way production's do: Put Page From URL, the storage service (here the stack's
    # blob front) reading the cache blobs; the control plane carried none of their bytes.
    assert _server_side_copies(operator) > copied_before
    machine = operator.machine(replicator.machine_id)
    assert machine["recoveryPoints"]["count"] == 5
    assert machine["health"] == "Healthy"
    assert machine["rpoSeconds"] is not None
    # Applied cycles' uploads are disposed of.
    assert not list(appliance.cache.list_blobs(name_starts_with=f"{replicator.machine_id}/"))


def test_duplicate_and_out_of_order_events_apply_once_in_order(
    new_appliance: Callable[[], Appliance], operator: Operator
) -> None:
    appliance = new_appliance()
    replicator = appliance.machine(operator, disks={"os": 4 * MIB})
    operator.wait_applied(replicator.machine_id, initial_copy(appliance, replicator).cycle_id)

    # Cycle 1 and 2 are uploaded, but their events arrive 2 first, then 1, then 1 again.
    replicator.write("os", 0, b"\x11" * 4096)
    one = _upload_without_event(replicator)
    replicator.write("os", 0, b"\x22" * 4096)  # overwrites cycle 1's change: order matters
    two = _upload_without_event(replicator)
    for report in (two, one, one):
        appliance.events.cycle_uploaded(
            machine_id=replicator.machine_id,
            cycle_id=report.cycle_id,
            sequence=report.sequence,
            kind="delta",
            app_consistent=False,
            manifests=report.manifests,
        )
    assert operator.wait_applied(replicator.machine_id, two.cycle_id)["lastAppliedSequence"] == two.sequence
    assert operator.applied_cycles(replicator.machine_id)[-2:] == [one.cycle_id, two.cycle_id]
    assert appliance.replica_bytes(replicator.machine_id, "os", 4096) == b"\x22" * 4096
    assert_replicas_match(appliance, replicator)
    assert operator.machine(replicator.machine_id)["recoveryPoints"]["count"] == 3


def _upload_without_event(replicator: MachineReplicator) -> object:
    """Upload a cycle but hold its event back (the appliance's publish is captured, not sent)."""
    sent: list[dict[str, object]] = []
    original = replicator.events.cycle_uploaded

    def capture(**kwargs: object) -> str:
        sent.append(kwargs)
        return "held"

    replicator.events.cycle_uploaded = capture  # type: ignore[method-assign]
    try:
        report = replicator.run_cycle()
    finally:
        replicator.events.cycle_uploaded = original  # type: ignore[method-assign]
    return report


@pytest.mark.parametrize(
    "damage", ["corrupt", "corrupt-after-a-write", "truncated", "oversized", "missing", "manifest-missing"]
)
def test_damaged_upload_is_rejected_and_leaves_the_replica_unchanged(
    new_appliance: Callable[[], Appliance], operator: Operator, damage: str
) -> None:
    appliance = new_appliance()
    replicator = appliance.machine(operator, disks={"os": 4 * MIB, "data": 2 * MIB})
    operator.wait_applied(replicator.machine_id, initial_copy(appliance, replicator).cycle_id)
    before = {
        d.disk_id: appliance.replica_bytes(replicator.machine_id, d.disk_id, d.size) for d in replicator.disks
    }

    replicator.write("os", 8192, b"\x33" * 65536)
    replicator.write("data", 0, b"\x44" * 4096)
    if damage == "corrupt-after-a-write":
        # A second extent, not adjacent to the first: the one-pass engine writes the first before it reads
        # the second and finds it corrupt, so both disks must be put back from the recovery point.
        replicator.write("data", MIB, b"\x55" * 4096)
    held = _upload_without_event(replicator)
    _damage(appliance.cache, held.manifests["data"], damage)  # type: ignore[attr-defined]
    appliance.events.cycle_uploaded(
        machine_id=replicator.machine_id,
        cycle_id=held.cycle_id,  # type: ignore[attr-defined]
        sequence=held.sequence,
        kind="delta",
        app_consistent=False,  # type: ignore[attr-defined]
        manifests=held.manifests,
    )  # type: ignore[attr-defined]

    rejected = wait_for(
        lambda: [
            e
            for e in operator.events(replicator.machine_id)
            if e["type"] == "Replication cycle failed for disk"
        ],
        what="rejection event",
    )
    assert rejected[0]["diskId"] == "data"
    assert rejected[0]["cycleId"] == held.cycle_id  # type: ignore[attr-defined]
    assert rejected[0]["recommendations"]
    if damage == "manifest-missing":
        # MCP-2001 names the blob that is missing for what it is: the manifest the event named.
        assert rejected[0]["errorCode"] == "MCP-2001"
        assert f"manifest {held.manifests['data']} named by the CycleUploaded event" in rejected[0]["message"]  # type: ignore[attr-defined]
    elif damage == "missing":
        assert "named by the manifest does not exist" in rejected[0]["message"]
    # Neither disk changed: the whole cycle is refused, not just the damaged disk.
    for disk in replicator.disks:
        assert appliance.replica_bytes(replicator.machine_id, disk.disk_id, disk.size) == before[disk.disk_id]
    assert held.cycle_id not in operator.applied_cycles(replicator.machine_id)  # type: ignore[attr-defined]
    # The healthy disk's changes were refused with the cycle: it is resynced too, or they would be lost.
    # (The commands are queued just after the rejection event is written.)
    wait_for(
        lambda: (
            {c["diskId"] for c in appliance.api.commands() if c["kind"] == "ResyncDisk"} == {"os", "data"}
        ),
        what="a ResyncDisk command for each disk of the refused cycle",
    )

    # The appliance obeys the resync: the replica converges on the source again.
    reports = replicator.handle_commands(appliance.api)
    assert [r.kind for r in reports] == [CycleKind.RESYNC]
    operator.wait_applied(replicator.machine_id, reports[0].cycle_id)
    assert_replicas_match(appliance, replicator)


def _damage(cache: ContainerClient, manifest_blob: str, damage: str) -> None:
    if damage == "manifest-missing":
        cache.delete_blob(manifest_blob)
        return
    manifest = DeltaManifest.model_validate_json(cache.download_blob(manifest_blob).readall())
    data_blob = manifest.extents[0].blob
    content = cache.download_blob(data_blob).readall()
    if damage == "corrupt":
        flipped = bytes([content[0] ^ 0xFF]) + content[1:]
        cache.upload_blob(data_blob, flipped, overwrite=True)
    elif damage == "corrupt-after-a-write":
        last = manifest.extents[-1]
        assert len(manifest.extents) == 2 and last.blob == data_blob
        at = last.blob_offset
        cache.upload_blob(
            data_blob, content[:at] + bytes([content[at] ^ 0xFF]) + content[at + 1 :], overwrite=True
        )
    elif damage == "truncated":
        cache.upload_blob(data_blob, content[:-512], overwrite=True)
    elif damage == "oversized":
        cache.upload_blob(data_blob, content + b"\0" * 512, overwrite=True)
    else:
        cache.delete_blob(data_blob)


def test_missing_cycle_is_detected_and_resynced(
    new_appliance: Callable[[], Appliance], operator: Operator
) -> None:
    appliance = new_appliance()
    response = operator.call(
        "PUT", f"/appliances/{appliance.api.appliance_id}/policy", json={"maxCycleGapBeforeResync": 1}
    )
    assert response.status_code == 200, response.text
    replicator = appliance.machine(operator, disks={"os": 4 * MIB})
    operator.wait_applied(replicator.machine_id, initial_copy(appliance, replicator).cycle_id)

    replicator.write("os", 0, b"\x55" * 4096)
    _upload_without_event(replicator)  # cycle 1 is lost on the way
    replicator.write("os", 4096, b"\x66" * 4096)
    two = replicator.run_cycle()
    assert two.sequence == 2
    wait_for(lambda: any(c["kind"] == "ResyncDisk" for c in appliance.api.commands()), what="resync command")
    events = operator.events(replicator.machine_id)
    assert any(e["errorCode"] == "CycleSequenceGap" or "never arrived" in e["message"] for e in events)
    assert two.cycle_id not in operator.applied_cycles(replicator.machine_id)

    resync = replicator.handle_commands(appliance.api)
    operator.wait_applied(replicator.machine_id, resync[0].cycle_id)
    assert_replicas_match(appliance, replicator)
    # Replication carries on after the resync.
    replicator.write("os", 8192, b"\x77" * 512)
    operator.wait_applied(replicator.machine_id, replicator.run_cycle().cycle_id)
    assert_replicas_match(appliance, replicator)


def test_an_appliance_cannot_touch_another_appliances_machine(
    new_appliance: Callable[[], Appliance], operator: Operator
) -> None:
    owner, intruder = new_appliance(), new_appliance()
    replicator = owner.machine(operator, disks={"os": 2 * MIB})
    with pytest.raises(ControlPlaneError) as refused:
        intruder.api.report_machines([replicator.inventory(os_type="linux", os_name="x", os_version="1")])
    assert refused.value.status == 403
    # An event naming someone else's machine is refused too: nothing is applied.
    initial = initial_copy(owner, replicator)
    operator.wait_applied(replicator.machine_id, initial.cycle_id)
    replicator.write("os", 0, b"\x99" * 512)
    held = _upload_without_event(replicator)
    intruder.events.cycle_uploaded(
        machine_id=replicator.machine_id,
        cycle_id=held.cycle_id,  # type: ignore[attr-defined]
        sequence=held.sequence,
        kind="delta",
        app_consistent=False,  # type: ignore[attr-defined]
        manifests=held.manifests,
    )  # type: ignore[attr-defined]
    owner.events.heartbeat()  # a later event from the owner, to know the intruder's was processed
    wait_for(lambda: owner.api.policy(), what="policy")
    assert held.cycle_id not in operator.applied_cycles(replicator.machine_id)  # type: ignore[attr-defined]


def test_host_killed_while_applying_a_cycle_recovers_with_a_correct_replica(
    local_stack: object, new_appliance: Callable[[], Appliance], operator: Operator
) -> None:
    from devhost.stack import LocalStack

    assert isinstance(local_stack, LocalStack)
    appliance = new_appliance()
    replicator = appliance.machine(operator, disks={"os": 48 * MIB})
    operator.wait_applied(replicator.machine_id, initial_copy(appliance, replicator).cycle_id)
    rng = random.Random(11)
    for block in range(0, 40 * MIB, MIB):  # 40 MiB of changes: long enough to be caught mid-apply
        replicator.write("os", block, rng.randbytes(MIB))
    report = replicator.run_cycle()
    wait_for(lambda: any(p.name.startswith("functions-host") for p in local_stack.processes), what="host")
    local_stack.kill_functions_host()
    local_stack.start_functions_host()
    operator.wait_applied(replicator.machine_id, report.cycle_id, timeout=120)
    assert_replicas_match(appliance, replicator)
    assert operator.applied_cycles(replicator.machine_id).count(report.cycle_id) == 1
