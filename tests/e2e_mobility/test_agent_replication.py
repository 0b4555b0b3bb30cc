"""The pushed Mobility agent replicates its own server end to end: pushed from the API onto a real Debian
server (sshd in a chroot) with the server's disk images named in the push, registered with the passphrase,
it answers the initial-copy command of enable replication through its own routes (upload credentials,
Put Block with the SAS, the cycle posted to the API), then a delta found by block hashes; the control plane
applies both through the ordinary path, and a test migration from the delta's recovery point creates a VM
whose data disk is the source byte for byte (checked on the local ARM endpoint's disk image)."""

from __future__ import annotations

import json
import random
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.push import DirectorySecrets, PushInstaller
from appliance.replicator import MachineReplicator, SourceDisk
from scripts.build_mobility_installer import build
from tests.e2e.conftest import Appliance, Operator
from tests.e2e_migration.guest_images import linux_guest
from tests.e2e_migration.migration_client import MigrationClient, wait_for
from tests.e2e_mobility.server import ROOT_PASSWORD, SshServer
from tests.e2e_mobility.test_push_install import Pushing

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]

VERSION = "9.60.0.0"
DATA_SIZE = 8 * 1024 * 1024
AGENT = "/usr/local/ASR/Vx/bin/asr_agent.py"


def _recovery_point(client: MigrationClient, machine_id: str, cycle_id: str) -> dict[str, Any]:
    machine = client.wait_applied(machine_id, cycle_id, timeout=180)
    [point] = [p for p in machine["recoveryPointList"] if p["cycleId"] == cycle_id]
    return dict(point)


def test_the_pushed_agent_replicates_its_disks_and_a_recovery_point_test_migrates(
    operator: Operator,
    client: MigrationClient,
    new_appliance: Callable[[], Appliance],
    server: SshServer,
    tmp_path: Path,
) -> None:
    # The server's disks: a real Linux guest (hydration needs one) and a data disk, as image files.
    disks = server.rootfs / "srv/disks"
    disks.mkdir(parents=True, exist_ok=True)
    guest = linux_guest(tmp_path / "guest")
    shutil.copyfile(guest.path, disks / "os.img")
    rng = random.Random(14)
    data = bytearray(DATA_SIZE)
    data[0:65536] = rng.randbytes(65536)
    data[5 * 1024 * 1024 : 5 * 1024 * 1024 + 4096] = rng.randbytes(4096)
    (disks / "data.img").write_bytes(data)

    installer = build(VERSION, "UBUNTU-20.04-64", "20261203", tmp_path / "dist")
    uploaded = operator.call("PUT", f"/mobility/installers/{installer.name}", content=installer.read_bytes())
    assert uploaded.status_code == 201, uploaded.text
    passphrase = operator.call("POST", "/mobility/passphrase").json()["passphrase"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "root-ok").write_text(json.dumps({"username": "root", "password": ROOT_PASSWORD}))
    (secrets / "mobility-passphrase").write_text(passphrase)
    (secrets / "mobility-agent-key").write_text(operator.function_key)

    appliance = new_appliance()
    machine_id = f"pm-{uuid.uuid4().hex[:10]}"
    # The appliance reports the server and carries out the push; the agent replicates it.
    reporter = MachineReplicator(
        machine_id,
        [SourceDisk("os", disks / "os.img", is_os_disk=True), SourceDisk("data", disks / "data.img")],
        appliance.uploads,
        appliance.events,
        push=PushInstaller(DirectorySecrets(secrets), connect_timeout=5),
    )
    appliance.api.report_machines(
        [reporter.inventory(os_type="linux", os_name=guest.os_name, os_version=guest.os_version)]
    )
    pushing = Pushing(operator, server, reporter, appliance.api)
    job = pushing.push(
        credentialName="root-ok", diskPaths={"os": "/srv/disks/os.img", "data": "/srv/disks/data.img"}
    )
    try:
        assert job["status"] == "Succeeded", job
        config = json.loads((server.rootfs / "usr/local/ASR/Vx/etc/agent.json").read_text())
        assert config["disks"] == {"os": "/srv/disks/os.img", "data": "/srv/disks/data.img"}

        # Enabling replication queues the initial copy, which the running agent answers (it polls every 15 s).
        client.enable_replication(machine_id)
        # That RunCycle is the agent's alone: the appliance's own list never shows it, pending or answered.
        cycle_kinds = ("RunCycle", "ResyncDisk")
        assert not [
            c for c in appliance.api.commands() if c["machineId"] == machine_id and c["kind"] in cycle_kinds
        ]

        def initial_cycle() -> str | None:
            points = client.machine(machine_id)["recoveryPointList"]
            return str(points[0]["cycleId"]) if points else None

        initial = wait_for(initial_cycle, timeout=180, what="the agent's initial cycle applied")
        assert initial.startswith("agent-")
        machine = client.machine(machine_id)
        assert machine["lastAppliedSequence"] == int(initial.rsplit("-", 1)[1])

        # A change on the server, and one delta cycle taken by hand (the runner's schedule is minutes).
        changed = rng.randbytes(8192)
        with (disks / "data.img").open("r+b") as f:
            f.seek(3 * 1024 * 1024)
            f.write(changed)
        done = server.chroot("python3", AGENT, "cycle")
        line = done.strip().splitlines()[-1]
        assert " delta #" in line and "1 extents, 1048576 bytes" in line, done
        delta = line.split()[1].rstrip(":")
        point = _recovery_point(client, machine_id, delta)

        test = client.run(f"/machines/{machine_id}/test-migrate", {"recoveryPoint": point["id"]})
        assert test["status"] == "Succeeded", test
        vm_id = client.instance_status(test["id"])["customStatus"]["vmId"]
        _, data_disks = client.vm_disks(vm_id)
        assert len(data_disks) == 1
        image = client.disk_image(data_disks[0]).read_bytes()
        source = (disks / "data.img").read_bytes()
        assert image[: len(source)] == source
        assert not any(image[len(source) :])  # the 1 MiB rounding of the replica is zeros

        cleanup = client.run(f"/machines/{machine_id}/test-migrate/cleanup")
        assert cleanup["status"] == "Succeeded", cleanup
    finally:
        server.chroot("/usr/local/ASR/Vx/bin/svagent", "stop")
        server.chroot("/usr/local/ASR/Vx/bin/uninstall.sh")
        shutil.rmtree(disks, ignore_errors=True)


def test_an_agent_acts_only_for_its_own_machine(
    operator: Operator, new_appliance: Callable[[], Appliance]
) -> None:
    """Over real HTTP: a registered agent's routes answer for its machine only, and refusals change nothing."""
    appliance = new_appliance()
    ids = [f"pm-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    appliance.api.report_machines(
        [
            {
                "id": machine_id,
                "displayName": machine_id,
                "osType": "linux",
                "osName": "Ubuntu",
                "osVersion": "20.04",
                "firmware": "BIOS",
                "disks": [{"id": "sda", "sizeBytes": 1024 * 1024, "isOsDisk": True}],
            }
            for machine_id in ids
        ]
    )
    passphrase = operator.call("POST", "/mobility/passphrase").json()["passphrase"]
    registered = operator.call(
        "POST", "/mobility/agents/register", json={"passphrase": passphrase, "machineId": ids[0]}
    ).json()
    headers = {
        "x-functions-key": operator.function_key,
        "Authorization": f"Bearer {registered['credential']}",
    }
    api = f"{operator.stack.functions_url}/api/mobility/agents"

    work = httpx.get(f"{api}/commands", headers=headers, timeout=30)
    assert work.status_code == 200 and work.json() == {
        "machineId": ids[0],
        "lastAppliedSequence": None,
        "commands": [],
    }
    assert httpx.get(f"{api}/policy", headers=headers, timeout=30).json()["uploadThreadsPerVm"] == 4
    other = {"machineId": ids[1], "cycleId": "c-1", "blobs": [f"{ids[1]}/c-1/sda/manifest.json"]}
    refused = httpx.post(f"{api}/upload-credentials", headers=headers, json=other, timeout=30)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "Forbidden"
    cycle = {
        "machineId": ids[0],
        "cycleId": "c-1",
        "sequence": 1,
        "kind": "initial",
        "manifests": {"sda": f"{ids[0]}/c-1/sda/manifest.json"},
    }
    not_replicating = httpx.post(f"{api}/cycles", headers=headers, json=cycle, timeout=30)
    assert not_replicating.status_code == 409, not_replicating.text
    assert "Enable replication first" in not_replicating.json()["error"]["message"]
    misspelt = httpx.post(f"{api}/cycles", headers=headers, json={**cycle, "sequnce": 1}, timeout=30)
    assert misspelt.status_code == 400
    anonymous = httpx.get(f"{api}/commands", headers={"x-functions-key": operator.function_key}, timeout=30)
    assert anonymous.status_code == 401

    failure = {
        "reportId": "r-1",
        "machineId": ids[0],
        "failedAt": "2026-12-03T07:00:00Z",
        "diskId": "sda",
        "message": "disk sda (/dev/sdb): [Errno 5] Input/output error",
    }
    reported = httpx.post(f"{api}/cycle-failures", headers=headers, json=failure, timeout=30)
    assert reported.status_code == 201, reported.text
    code = reported.json()["errorCode"]
    events = operator.call("GET", f"/machines/{ids[0]}/events").json()["events"]
    assert any(e["errorCode"] == code and "Input/output error" in e["message"] for e in events), events
    foreign = httpx.post(
        f"{api}/cycle-failures", headers=headers, json={**failure, "machineId": ids[1]}, timeout=30
    )
    assert foreign.status_code == 403
    assert operator.call("GET", f"/machines/{ids[1]}/events").json()["events"] == []
