"""The demo's Mobility story: push the agent onto a real Debian server and watch its first cycle.

A debootstrapped Debian with OpenSSH's sshd in a chroot (the end-to-end tests' server) gets the Mobility
service pushed by the appliance (job InstallMobilityService, its steps as they end), registers with the
passphrase, and, once replication is enabled, answers the initial copy itself: the cycle it uploads is
applied by the control plane like any appliance's, and its recovery point appears. Needs root, debootstrap
and a Debian mirror; without them the story is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from appliance.push import DirectorySecrets, PushInstaller
from appliance.replicator import MachineReplicator, SourceDisk
from devhost.local_appliance import function_key, register_local_appliance
from devhost.stack import LocalStack
from devhost.waiting import wait_until
from scripts.build_mobility_installer import build
from tests.e2e_mobility.server import ROOT_PASSWORD, SshServer, debootstrap

VERSION = "9.60.0.0"
INSTALLER_OS = "DEBIAN9-64"
MIB = 1024 * 1024
DATA_DISK = "/srv/disks/data.img"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot)"
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed: run scripts/install-system-deps.sh"
    return None


def run_mobility_demo(stack: LocalStack, workdir: Path, console: Console) -> dict[str, Any]:
    if reason := _skip_reason():
        console.print(f"[yellow]Mobility demo skipped: {reason}[/]")
        return {}
    started = time.perf_counter()
    console.print("debootstrapping a Debian server (a few minutes the first time)...")
    rootfs = debootstrap(Path(tempfile.mkdtemp(prefix="demo-server-", dir=workdir)) / "rootfs")
    server = SshServer(rootfs)
    server.start()
    try:
        result = _story(stack, workdir, console, server)
    finally:
        server.chroot(
            "/bin/sh",
            "-c",
            "[ -x /usr/local/ASR/Vx/bin/svagent ] && /usr/local/ASR/Vx/bin/svagent stop; true",
        )
        server.stop()
        shutil.rmtree(rootfs.parent, ignore_errors=True)
    console.print(f"Mobility story: {time.perf_counter() - started:.0f} s")
    return result


def _story(stack: LocalStack, workdir: Path, console: Console, server: SshServer) -> dict[str, Any]:
    key = function_key(stack)
    headers = {"x-functions-key": key, "Authorization": f"Bearer {stack.operator_token()}"}
    http = httpx.Client(base_url=f"{stack.functions_url}/api", headers=headers, timeout=60)
    installer = build(VERSION, INSTALLER_OS, "20261203", workdir / "dist")
    http.put(f"/mobility/installers/{installer.name}", content=installer.read_bytes()).raise_for_status()
    passphrase = http.post("/mobility/passphrase").json()["passphrase"]
    console.print(f"catalog: {installer.name}; registration passphrase set")

    secrets = workdir / "appliance-secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "root").write_text(json.dumps({"username": "root", "password": ROOT_PASSWORD}))
    (secrets / "mobility-passphrase").write_text(passphrase)
    (secrets / "mobility-agent-key").write_text(key)

    # The server's data disk: an image file inside it, some data at its start.
    disk = server.rootfs / DATA_DISK.lstrip("/")
    disk.parent.mkdir(parents=True, exist_ok=True)
    with disk.open("wb") as image:
        image.truncate(8 * MIB)
        image.write(random.Random(14).randbytes(MIB))

    appliance = register_local_appliance(stack, name=f"demo-mobility-{uuid.uuid4().hex[:4]}")
    machine_id = f"physical-{uuid.uuid4().hex[:6]}"
    reporter = MachineReplicator(
        machine_id,
        [SourceDisk("data", disk, is_os_disk=True)],
        appliance.uploads,
        appliance.events,
        push=PushInstaller(DirectorySecrets(secrets), connect_timeout=5),
    )
    appliance.api.report_machines(
        [reporter.inventory(os_type="linux", os_name="Debian GNU/Linux", os_version="9")]
    )

    pushed = http.post(
        f"/machines/{machine_id}/mobility/install",
        json={
            "credentialName": "root",
            "serverAddress": "127.0.0.1",
            "serverPort": server.port,
            "diskPaths": {"data": DATA_DISK},
        },
    )
    pushed.raise_for_status()
    job_id = pushed.json()["jobId"]
    push_started = time.perf_counter()

    def push_ended() -> dict[str, Any] | None:
        reporter.handle_commands(appliance.api)  # the appliance carries the push out
        job: dict[str, Any] = http.get(f"/jobs/{job_id}").json()
        return job if job["status"] not in ("NotStarted", "InProgress") else None

    job = wait_until(push_ended, timeout=180, interval=0.5, what=f"push job {job_id}")
    _show_job(console, job, time.perf_counter() - push_started)
    if job["status"] != "Succeeded":
        raise RuntimeError(f"the push ended {job['status']}: {job.get('error')}")
    agent = http.get(f"/machines/{machine_id}/mobility").json()["agent"]
    console.print(
        f"agent {agent['agentId']} {agent['version']}, {agent['health']}, heartbeat {agent['lastHeartbeatAt']}"
    )

    enabled = http.put(
        f"/machines/{machine_id}/replication",
        json={
            "resourceGroup": "rg-target",
            "virtualNetwork": "vnet-target",
            "subnet": "default",
            "vmSize": "Standard_D2s_v3",
        },
    )
    enabled.raise_for_status()
    console.print("replication enabled: the agent answers the initial copy (it polls every 15 s)")
    cycle_started = time.perf_counter()

    def first_point() -> dict[str, Any] | None:
        points = http.get(f"/machines/{machine_id}").json()["recoveryPointList"]
        return dict(points[0]) if points else None

    point = wait_until(first_point, timeout=240, interval=1.0, what="the agent's first cycle applied")
    machine = http.get(f"/machines/{machine_id}").json()
    log = (server.rootfs / "usr/local/ASR/Vx/var/svagent.log").read_text().strip().splitlines()
    cycle_line = next((line for line in reversed(log) if line.startswith("cycle ")), "")
    console.print(f"agent log: {cycle_line}")
    console.print(
        f"recovery point {point['id']} of cycle {point['cycleId']} ({point['consistency']}) in "
        f"{time.perf_counter() - cycle_started:.1f} s; machine {machine['state']}, "
        f"lastAppliedSequence {machine['lastAppliedSequence']}"
    )
    return {"machineId": machine_id, "jobId": job_id, "cycleId": point["cycleId"]}


def _show_job(console: Console, job: dict[str, Any], seconds: float) -> None:
    table = Table(title=f"{job['kind']} {job['id']}: {job['status']} in {seconds:.1f} s")
    table.add_column("step")
    table.add_column("status")
    table.add_column("note")
    for step in job["steps"]:
        note = (step.get("error") or {}).get("message") or step.get("message") or ""
        table.add_row(step["name"], step["status"], str(note)[:100])
    console.print(table)
