"""Reprotect end to end on the local stack: a real Ubuntu guest replicated by the appliance client,
failed over and committed through the HTTP API; the Azure VM's guest writes (the local ARM endpoint's
disk-write hook) and writes on the on-premises image after the failover point; then reprotect, where
the real appliance client answers every command (power off, change record, manifests read from the
snapshot's SAS with the storage service's transactional CRC64), and one reverse cycle."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.domain.command import ApplianceCommand, CommandAnswer, CommandError
from tests.e2e.conftest import Appliance
from tests.e2e_migration.conftest import GuestMachine, http_ok, replicate_guest
from tests.e2e_migration.guest_images import GuestImage
from tests.e2e_migration.migration_client import MigrationClient
from tests.support.guest_disk import guest_write
from tests.support.host_kills import HostKiller, wait_job_ended

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]

KIB = 1024
MIB = 1024 * KIB
DATA_DISK_BYTES = 16 * MIB
CHUNK = 64 * KIB
PAGE = 4 * KIB


def _image(path: Path, size: int) -> bytes:
    data = path.read_bytes()[:size]
    return data + bytes(size - len(data))


def _differing(a: bytes, b: bytes, unit: int) -> int:
    """The bytes of the `unit`-sized blocks in which `a` and `b` differ."""
    return unit * sum(a[i : i + unit] != b[i : i + unit] for i in range(0, max(len(a), len(b)), unit))


def _scattered(rng: random.Random, size: int, count: int, length: int) -> list[int]:
    """`count` offsets of `length`-byte writes (a multiple of 64 KiB), aligned to it: none overlaps."""
    slots = rng.sample(range(size // length), count)
    return sorted(slot * length for slot in slots)


def _run_with_appliance(
    client: MigrationClient, machine: GuestMachine, job_id: str, timeout: float
) -> dict[str, Any]:
    """Wait for a job while the appliance client answers its commands, as its poll loop would."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        machine.replicator.handle_commands(machine.appliance.api)
        job = client.job(job_id)
        if job["status"] not in ("NotStarted", "InProgress"):
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not finish: {client.job(job_id)}")


def _answer_until_points(client: MigrationClient, machine: GuestMachine, count: int, timeout: float) -> None:
    """Answer commands, as the appliance's poll loop would, until the machine has `count` reverse points."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        machine.replicator.handle_commands(machine.appliance.api)
        if len(_reverse_points(client, machine)) >= count:
            return
        time.sleep(2)
    raise AssertionError(f"fewer than {count} reverse recovery points after {timeout} s")


def _reverse_points(client: MigrationClient, machine: GuestMachine) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = client.machine(machine.id)["reverseProtection"]["recoveryPoints"]
    return points


def _committed(
    client: MigrationClient, appliance: Appliance, guest: GuestImage, killer: HostKiller | None = None
) -> tuple[GuestMachine, str, str]:
    """A replicated guest failed over and committed: the machine, its Azure OS and data disks. With
    `killer`, the host is killed during the failover (its next planned kill)."""
    machine = replicate_guest(appliance, client, guest, extra_disks={"data": DATA_DISK_BYTES})
    http_ok(
        client.http.patch(
            f"/machines/{machine.id}/failover-settings",
            json={"vmName": f"rp-{uuid.uuid4().hex[:8]}"},
            headers={"Content-Type": "application/merge-patch+json"},
        )
    )
    failover, body = f"/machines/{machine.id}/failover", {"recoveryPoint": "latestProcessed"}
    if killer is None:
        failed_over = client.run(failover, body, timeout=600)
    else:
        failed_over = killer.run_next(
            machine.id, failover, body, finish=lambda job_id: wait_job_ended(client, job_id, timeout=600)
        )
    assert failed_over["status"] in ("Succeeded", "Warning"), failed_over
    assert client.run(f"/machines/{machine.id}/commit", timeout=300)["status"] == "Succeeded"
    azure_os, (azure_data,) = client.vm_disks(client.machine(machine.id)["failoverVmId"])
    return machine, azure_os, azure_data


def _reprotect(
    client: MigrationClient, machine: GuestMachine, killer: HostKiller | None = None
) -> dict[str, Any]:
    appliance_id = machine.appliance.events.appliance_id
    http_ok(client.http.put(f"/appliances/{appliance_id}/policy", json={"reverseCycleMinutes": 1}))
    machine.appliance.events.heartbeat()
    time.sleep(3)  # the heartbeat arrives through Event Grid
    return _run_action(
        client, machine, f"/machines/{machine.id}/reprotect", {"applianceId": appliance_id}, killer
    )


def _run_action(
    client: MigrationClient,
    machine: GuestMachine,
    path: str,
    body: dict[str, Any] | None = None,
    killer: HostKiller | None = None,
) -> dict[str, Any]:
    """Start an operator action and wait for its job while the appliance answers its commands; with
    `killer`, through the host's next planned kill."""

    def finish(job_id: str) -> dict[str, Any]:
        return _run_with_appliance(client, machine, job_id, timeout=300)

    if killer is not None:
        return killer.run_next(machine.id, path, body, finish=finish)
    return finish(client.start(path, body))


def test_reprotect_sends_only_what_differs_then_a_reverse_cycle_sends_what_changed(
    client: MigrationClient, module_appliance: Appliance, guest: GuestImage
) -> None:
    machine, azure_os, azure_data = _committed(client, module_appliance, guest)
    on_premises = next(d.path for d in machine.replicator.disks if d.disk_id == "data")
    on_premises_os = next(d.path for d in machine.replicator.disks if d.disk_id == "os")
    os_size = on_premises_os.stat().st_size
    # Hydration prepared the Azure OS disk after the failback baseline: its changes travel too.
    hydrated = _differing(_image(on_premises_os, os_size), _image(client.disk_image(azure_os), os_size), 512)
    assert hydrated > 0, "hydration changed nothing on the OS disk"

    # The Azure VM writes a few MiB at scattered offsets; on-premises changes too after the failover point.
    rng = random.Random(12)
    offsets = _scattered(rng, DATA_DISK_BYTES, 12, 4 * CHUNK)
    azure_offsets, local_offsets = offsets[:8], offsets[8:]
    for offset in azure_offsets:
        guest_write(client.arm_admin, azure_data, offset, rng.randbytes(4 * CHUNK))
    for offset in local_offsets:
        machine.replicator.write("data", offset, rng.randbytes(4 * CHUNK))
    changed = len(offsets) * 4 * CHUNK

    job = _reprotect(client, machine)
    assert job["status"] == "Succeeded", job
    assert [s["name"] for s in job["steps"]] == [
        "Check prerequisites",
        "Power off on-premises VM",
        "Determine baseline",
        "Initial reverse sync",
        "Start reverse replication",
    ]
    assert client.machine(machine.id)["state"] == "ReverseReplicating"
    # After the initial sync the on-premises image is the Azure disk at S1 byte for byte.
    azure_image = client.disk_image(azure_data)
    assert _image(on_premises, DATA_DISK_BYTES) == _image(azure_image, DATA_DISK_BYTES)
    azure_os_image = client.disk_image(azure_os)
    assert _image(on_premises_os, os_size) == _image(azure_os_image, os_size)
    # Only what differs travelled: both sides' changes and hydration's, within 10%.
    (initial,) = _reverse_points(client, machine)
    transferred = initial["bytesTransferred"]
    assert changed + hydrated <= transferred <= (changed + hydrated) * 1.1, (transferred, changed, hydrated)
    assert initial["bytesProcessed"] == initial["bytesTransferred"] + initial["bytesMatched"]

    # More Azure writes; one reverse cycle (every minute by the policy) brings them on-premises.
    more = _scattered(rng, DATA_DISK_BYTES, 4, 2 * CHUNK)
    for offset in more:
        guest_write(client.arm_admin, azure_data, offset, rng.randbytes(2 * CHUNK))
    _answer_until_points(client, machine, 2, timeout=180)
    assert _image(on_premises, DATA_DISK_BYTES) == _image(azure_image, DATA_DISK_BYTES)
    assert _image(on_premises_os, os_size) == _image(azure_os_image, os_size)
    cycle = _reverse_points(client, machine)[1]
    changed = len(more) * 2 * CHUNK
    assert changed <= cycle["bytesTransferred"] <= changed * 1.1, (cycle, changed)


def test_an_appliance_failing_mid_cycle_gets_the_cycle_again_from_the_same_snapshot(
    client: MigrationClient, module_appliance: Appliance, guest: GuestImage
) -> None:
    machine, _, azure_data = _committed(client, module_appliance, guest)
    assert _reprotect(client, machine)["status"] == "Succeeded"
    on_premises = next(d.path for d in machine.replicator.disks if d.disk_id == "data")
    rng = random.Random(5)
    for offset in _scattered(rng, DATA_DISK_BYTES, 6, 2 * CHUNK):
        guest_write(client.arm_admin, azure_data, offset, rng.randbytes(2 * CHUNK))

    # The appliance writes half of the cycle's data disk manifest, then fails (its read broke off).
    api = machine.appliance.api
    failed: list[dict[str, Any]] = []
    deadline = time.monotonic() + 180
    while not failed and time.monotonic() < deadline:
        for command in api.commands():
            if command["machineId"] != machine.id:
                continue
            stored = ApplianceCommand.model_validate(command)
            is_data = command.get("diskId") == "data" and command.get("reverseCycleId")
            if is_data and command["manifest"] and str(command["reverseCycleId"]).endswith("-c1"):
                half = ApplianceCommand.model_validate({**command, "manifest": command["manifest"][:1]})
                machine.replicator.answer(half)
                api.acknowledge(
                    command["id"],
                    CommandAnswer(error=CommandError(code="SnapshotReadFailed", message="connection reset")),
                )
                failed.append(command)
                break
            # Only the commands seen here are answered, so the one to fail is never applied unseen.
            api.acknowledge(command["id"], machine.replicator.answer(stored))
        time.sleep(2)
    assert failed and failed[0]["id"].endswith("-a1"), failed
    # Sent again under the next attempt's id, from the same snapshot (the same read SAS's blob).
    resent: list[dict[str, Any]] = []
    while not resent and time.monotonic() < deadline:
        resent = [c for c in api.commands() if c["id"] == failed[0]["id"][: -len("-a1")] + "-a2"]
        time.sleep(1)
    assert resent, "the failed manifest was not sent again"
    assert resent[0]["snapshotReadUrl"].split("?")[0] == failed[0]["snapshotReadUrl"].split("?")[0]
    assert resent[0]["manifest"] == failed[0]["manifest"]
    _answer_until_points(client, machine, 2, timeout=120)
    assert _image(on_premises, DATA_DISK_BYTES) == _image(client.disk_image(azure_data), DATA_DISK_BYTES)
    assert _reverse_points(client, machine)[1]["cycleId"].endswith("-c1")


def _fail_data_disk_applies(client: MigrationClient, machine: GuestMachine, job_id: str) -> dict[str, Any]:
    """Answer the job's commands, except that every manifest of the data disk is written only in part,
    then refused (its reads broke off): the job fails after its last attempt."""
    api = machine.appliance.api
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for command in api.commands():
            if command["machineId"] != machine.id:
                continue
            stored = ApplianceCommand.model_validate(command)
            if command["kind"] == "ApplyReverseManifest" and command.get("diskId") == "data":
                half = command["manifest"][: max(1, len(command["manifest"]) // 2)]
                machine.replicator.answer(ApplianceCommand.model_validate({**command, "manifest": half}))
                answer = CommandAnswer(
                    error=CommandError(code="SnapshotReadFailed", message="connection reset")
                )
                api.acknowledge(command["id"], answer)
            else:
                api.acknowledge(command["id"], machine.replicator.answer(stored))
        job = client.job(job_id)
        if job["status"] not in ("NotStarted", "InProgress"):
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not finish: {client.job(job_id)}")


def test_a_second_reprotect_after_a_failed_one_protects_the_machine_back(
    client: MigrationClient, module_appliance: Appliance, guest: GuestImage
) -> None:
    machine, azure_os, azure_data = _committed(client, module_appliance, guest)
    on_premises = {d.disk_id: d.path for d in machine.replicator.disks}
    os_size = on_premises["os"].stat().st_size
    hydrated = _differing(
        _image(on_premises["os"], os_size), _image(client.disk_image(azure_os), os_size), 512
    )
    rng = random.Random(13)
    offsets = _scattered(rng, DATA_DISK_BYTES, 10, 4 * CHUNK)
    for offset in offsets[:7]:
        guest_write(client.arm_admin, azure_data, offset, rng.randbytes(4 * CHUNK))
    for offset in offsets[7:]:
        machine.replicator.write("data", offset, rng.randbytes(4 * CHUNK))

    # The first reprotect fails in its initial sync, after the data disk was written in part.
    appliance_id = machine.appliance.events.appliance_id
    http_ok(client.http.put(f"/appliances/{appliance_id}/policy", json={"reverseCycleMinutes": 1}))
    machine.appliance.events.heartbeat()
    time.sleep(3)
    first_id = client.start(f"/machines/{machine.id}/reprotect", {"applianceId": appliance_id})
    first = _fail_data_disk_applies(client, machine, first_id)
    assert first["status"] == "Failed", first
    assert first["error"]["code"] == "MCP-1602", first
    view = client.machine(machine.id)
    assert view["state"] == "FailoverCommitted" and view.get("reverseProtection") is None, view
    assert "reprotect" in view["allowedOperations"]
    group = azure_data.split("/resourceGroups/")[1].split("/")[0]
    # (the group is shared with the module's other machines: only this machine's disks' snapshots count)
    disks = (azure_os.rsplit("/", 1)[-1][:50], azure_data.rsplit("/", 1)[-1][:50])  # as data_path names them
    assert not [
        s.name
        for s in client.arm.compute.snapshots.list_by_resource_group(group)
        if "-rv-" in s.name and s.name.startswith(disks)
    ]

    # The Azure VM goes on writing; the operator reprotects again at once: the same instance id
    # (reverse-{machineId}) starts over, and only what differs travels.
    more = _scattered(rng, DATA_DISK_BYTES, 4, 4 * CHUNK)
    more = [o for o in more if o not in offsets]
    for offset in more:
        guest_write(client.arm_admin, azure_data, offset, rng.randbytes(4 * CHUNK))
    changed = (len(offsets) + len(more)) * 4 * CHUNK
    second_id = client.start(f"/machines/{machine.id}/reprotect", {"applianceId": appliance_id})
    second = _run_with_appliance(client, machine, second_id, timeout=300)
    assert second["status"] == "Succeeded", second
    view = client.machine(machine.id)
    assert view["state"] == "ReverseReplicating" and view["reverseProtection"]["jobId"] == second_id
    # The first attempt's failure is healed by the reverse point that the second one recorded.
    assert view["health"] == "Healthy" and not view["currentErrors"], view
    azure_image = client.disk_image(azure_data)
    assert _image(on_premises["data"], DATA_DISK_BYTES) == _image(azure_image, DATA_DISK_BYTES)
    assert _image(on_premises["os"], os_size) == _image(client.disk_image(azure_os), os_size)
    (initial,) = _reverse_points(client, machine)
    transferred = initial["bytesTransferred"]
    assert changed + hydrated <= transferred <= (changed + hydrated) * 1.1, (transferred, changed, hydrated)

    # Reverse cycles run from the second job's snapshots.
    for offset in _scattered(rng, DATA_DISK_BYTES, 3, 2 * CHUNK):
        guest_write(client.arm_admin, azure_data, offset, rng.randbytes(2 * CHUNK))
    _answer_until_points(client, machine, 2, timeout=180)
    assert _image(on_premises["data"], DATA_DISK_BYTES) == _image(azure_image, DATA_DISK_BYTES)
    assert _reverse_points(client, machine)[1]["cycleId"].startswith(second_id[-40:])


def test_without_a_change_record_block_hashes_are_compared_and_an_event_says_why(
    client: MigrationClient,
    module_appliance: Appliance,
    guest: GuestImage,
    arm_faults: Callable[[dict[str, Any]], None],
) -> None:
    """Last in the module: the hash comparison too brings hydration's changes to the shared OS image.

    Scattered small writes cost their own 4 KiB pages, not whole 1 MiB blocks (the finer pass), in the
    initial sync and in a reverse cycle whose diff is unavailable."""
    machine, azure_os, azure_data = _committed(client, module_appliance, guest)
    on_premises = {d.disk_id: d.path for d in machine.replicator.disks}
    os_size = on_premises["os"].stat().st_size
    rng = random.Random(9)
    # 256 KiB writes on 256 KiB boundaries, and 4 KiB ones: at 1 MiB blocks these would cost 4x and 256x.
    for offset in _scattered(rng, DATA_DISK_BYTES, 6, 4 * CHUNK):
        guest_write(client.arm_admin, azure_data, offset, rng.randbytes(4 * CHUNK))
    for offset in _scattered(rng, DATA_DISK_BYTES, 24, 4 * KIB):
        guest_write(client.arm_admin, azure_data, offset, rng.randbytes(4 * KIB))
    data_changed = _differing(
        _image(on_premises["data"], DATA_DISK_BYTES),
        _image(client.disk_image(azure_data), DATA_DISK_BYTES),
        PAGE,
    )
    before_os, azure_os_bytes = (
        _image(on_premises["os"], os_size),
        _image(client.disk_image(azure_os), os_size),
    )
    os_changed, os_changed_sectors = (
        _differing(before_os, azure_os_bytes, PAGE),
        _differing(before_os, azure_os_bytes, 512),
    )
    # The appliance lost its record of the cycles it sent (as after a CBT reset).
    history = machine.replicator.disks[0].path.with_name(f".{machine.id}.history.jsonl")
    history.unlink()

    job = _reprotect(client, machine)
    assert job["status"] == "Succeeded", job
    view = client.machine(machine.id)
    assert view["reverseProtection"]["baseline"] == "blockHashes"
    assert _image(on_premises["data"], DATA_DISK_BYTES) == _image(
        client.disk_image(azure_data), DATA_DISK_BYTES
    )
    assert _image(on_premises["os"], os_size) == _image(client.disk_image(azure_os), os_size)
    events = http_ok(client.http.get(f"/machines/{machine.id}/events"))
    reasons = [e for e in events["events"] if e.get("errorCode") == "MCP-3503"]
    assert reasons and "no change record" in str(reasons[0]), events
    # Within 10% of the 4 KiB pages that differ (never less than the changed sectors).
    (initial,) = _reverse_points(client, machine)
    changed = data_changed + os_changed
    transferred = initial["bytesTransferred"]
    assert data_changed + os_changed_sectors <= transferred <= changed * 1.1, (
        transferred,
        data_changed,
        os_changed,
    )
    disk_bytes = DATA_DISK_BYTES + os_size
    print(
        f"\nhash path, initial sync: transferred {transferred} B, changed {changed} B "
        f"(data {data_changed}, OS {os_changed} in 4 KiB pages, {os_changed_sectors} in sectors): "
        f"sent/changed {transferred / changed:.3f}, sent/disk {transferred / disk_bytes:.5f}"
    )

    # A reverse cycle whose diff cannot be read (no read access to S1): hashes again, the same bound.
    for _ in range(2):
        arm_faults(
            {
                "match": {"method": "POST", "action": "beginGetAccess", "nameRegex": "-s1$"},
                "fault": "operationFailure",
            }
        )
    before_data = client.disk_image(azure_data).read_bytes()[:DATA_DISK_BYTES]
    for offset in _scattered(rng, DATA_DISK_BYTES, 16, 4 * KIB):
        guest_write(client.arm_admin, azure_data, offset, rng.randbytes(4 * KIB))
    cycle_changed = _differing(before_data, _image(client.disk_image(azure_data), DATA_DISK_BYTES), PAGE)
    _answer_until_points(client, machine, 2, timeout=240)
    assert _image(on_premises["data"], DATA_DISK_BYTES) == _image(
        client.disk_image(azure_data), DATA_DISK_BYTES
    )
    assert _image(on_premises["os"], os_size) == _image(client.disk_image(azure_os), os_size)
    cycle = _reverse_points(client, machine)[1]
    assert cycle_changed <= cycle["bytesTransferred"] <= cycle_changed * 1.1, (cycle, cycle_changed)
    events = http_ok(client.http.get(f"/machines/{machine.id}/events"))
    assert any(e.get("errorCode") == "MCP-3503" and "-c1" in str(e) for e in events["events"]), (
        "no event says why the cycle compared hashes"
    )
    print(
        f"hash path, reverse cycle: transferred {cycle['bytesTransferred']} B, changed {cycle_changed} B: "
        f"sent/changed {cycle['bytesTransferred'] / cycle_changed:.3f}, "
        f"sent/disk {cycle['bytesTransferred'] / disk_bytes:.5f}"
    )

    # Reverse RPO: with reverseCycleMinutes 1, three minutes without a reverse point is too old. The
    # appliance stops answering; the health monitor raises MCP-3505; the next point clears it.
    rpo = client.machine(machine.id)["reverseProtection"]["rpoSeconds"]
    assert rpo < 3 * 60
    time.sleep(3 * 60 + 5 - rpo)  # the newest point is already `rpo` seconds old
    assert client.machine(machine.id)["reverseProtection"]["rpoSeconds"] > 3 * 60
    client.run_timer("health_monitor")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view = client.machine(machine.id)
        if any(e["code"] == "MCP-3505" for e in view["currentErrors"]):
            break
        time.sleep(2)
    assert view["health"] == "Warning" and [e["code"] for e in view["currentErrors"]] == ["MCP-3505"], view
    _answer_until_points(client, machine, 3, timeout=240)
    view = client.machine(machine.id)
    assert view["health"] == "Healthy" and not view["currentErrors"], view
    assert view["reverseProtection"]["rpoSeconds"] < 3 * 60
