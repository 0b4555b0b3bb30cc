"""Push installation of the Mobility service end to end: the API records job InstallMobilityService, the
appliance carries it out over SSH/SFTP on a real Debian server (sshd in a chroot), the agent the project
builds installs, registers and heartbeats its version, which the machine's mobility view shows; an update
moves it to the newest catalog installer. The
errors are tried for real, each ending the job with its catalog error and nothing left on the server:
a wrong password, a non-root account, an unreachable server, less than 100 MB free. The install and the
update each run through a host killed at one of two seeded points (tests.support.host_kills)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.push import DirectorySecrets, PushInstaller
from appliance.replicator import MachineReplicator, SourceDisk
from devhost.processes import free_port
from scripts.build_mobility_installer import build
from tests.e2e.conftest import Appliance, Operator
from tests.e2e_mobility.server import OPS_PASSWORD, ROOT_PASSWORD, SshServer
from tests.support.host_kills import POINTS, HostKiller

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]

VERSION = "9.60.0.0"
STEPS = ["Copy agent", "Check prerequisites", "Install agent", "Install VSS provider", "Register"]


@dataclass
class Pushing:
    operator: Operator
    server: SshServer
    replicator: MachineReplicator
    api: Any

    @property
    def machine_id(self) -> str:
        return self.replicator.machine_id

    def payload(self, **body: Any) -> dict[str, Any]:
        return {"serverAddress": "127.0.0.1", "serverPort": self.server.port, **body}

    def push(self, route: str = "install", **body: Any) -> dict[str, Any]:
        """POST the push, act as the appliance until the job ends, and return the job."""
        path = f"/machines/{self.machine_id}/mobility/{route}"
        started = self.operator.call("POST", path, json=self.payload(**body))
        assert started.status_code == 202, started.text
        return self.finish(started.json()["jobId"])

    def push_killed(self, killer: HostKiller, route: str = "install", **body: Any) -> dict[str, Any]:
        """The push through the killer's next kill: the job that did it, ended."""
        path = f"/machines/{self.machine_id}/mobility/{route}"
        return killer.run_next(self.machine_id, path, self.payload(**body), finish=self.finish)

    def finish(self, job_id: str) -> dict[str, Any]:
        """Act as the appliance until the job ends; the job."""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            self.replicator.handle_commands(self.api)
            job: dict[str, Any] = self.operator.call("GET", f"/jobs/{job_id}").json()
            if job["status"] not in ("NotStarted", "InProgress"):
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} did not end")

    def nothing_left(self, location: str = "/usr/local/ASR") -> None:
        assert not (self.server.rootfs / location.lstrip("/") / "Vx").exists()
        assert not list((self.server.rootfs / "tmp").glob("asr-push-*"))


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("appliance-secrets")


@pytest.fixture
def pushing(
    operator: Operator,
    new_appliance: Callable[[], Appliance],
    server: SshServer,
    secrets: Path,
    tmp_path: Path,
) -> Pushing:
    installer = build(VERSION, "DEBIAN9-64", "20261202", tmp_path / "dist")
    uploaded = httpx.put(
        f"{operator.stack.functions_url}/api/mobility/installers/{installer.name}",
        content=installer.read_bytes(),
        headers=operator.headers(),
        timeout=30,
    )
    assert uploaded.status_code == 201, uploaded.text
    passphrase = operator.call("POST", "/mobility/passphrase").json()["passphrase"]
    for name, value in {
        "root-ok": json.dumps({"username": "root", "password": ROOT_PASSWORD}),
        "root-wrong": json.dumps({"username": "root", "password": "not-it"}),
        "ops-user": json.dumps({"username": "ops", "password": OPS_PASSWORD}),
        "mobility-passphrase": passphrase,
        "mobility-agent-key": operator.function_key,
    }.items():
        (secrets / name).write_text(value)
    appliance = new_appliance()
    disk = tmp_path / "disk-0.img"
    disk.write_bytes(b"\0" * 1024 * 1024)
    replicator = MachineReplicator(
        f"vm-{uuid.uuid4().hex[:10]}",
        [SourceDisk("disk-0", disk, is_os_disk=True)],
        appliance.uploads,
        appliance.events,
        push=PushInstaller(DirectorySecrets(secrets), connect_timeout=5),
    )
    appliance.api.report_machines(
        [replicator.inventory(os_type="linux", os_name="Debian GNU/Linux", os_version="9")]
    )
    return Pushing(operator, server, replicator, appliance.api)


def _steps(job: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in job["steps"]}


def test_push_installs_registers_and_the_agent_heartbeats_its_version(
    pushing: Pushing, tmp_path: Path, host_killer: HostKiller
) -> None:
    host_killer.plan(tuple(host_killer.rng.sample(POINTS, 2)))
    job = pushing.push_killed(host_killer, credentialName="root-ok")
    assert job["status"] == "Succeeded", job
    assert job["kind"] == "InstallMobilityService"
    assert [s["name"] for s in job["steps"]] == STEPS
    assert set(_steps(job).values()) == {"Succeeded"}
    installed = pushing.server.rootfs / "usr/local/ASR/Vx"
    assert (installed / "etc/version").read_text().strip() == VERSION
    assert (installed / "etc/agent.json").stat().st_mode & 0o077 == 0
    assert not list((pushing.server.rootfs / "tmp").glob("asr-push-*"))

    view = pushing.operator.call("GET", f"/machines/{pushing.machine_id}/mobility")
    assert view.status_code == 200, view.text
    agent = view.json()["agent"]
    assert agent["version"] == VERSION and agent["health"] == "Healthy"
    assert agent["lastHeartbeatAt"] is not None

    # The update takes the newest catalog installer and leaves the agent running at its version.
    newer = build("9.61.0.0", "DEBIAN9-64", "20261203", tmp_path / "newer")
    uploaded = pushing.operator.call("PUT", f"/mobility/installers/{newer.name}", content=newer.read_bytes())
    assert uploaded.status_code == 201, uploaded.text
    updated = pushing.push_killed(host_killer, "update", credentialName="root-ok")
    assert updated["status"] == "Succeeded", updated
    assert (installed / "etc/version").read_text().strip() == "9.61.0.0"
    view = pushing.operator.call("GET", f"/machines/{pushing.machine_id}/mobility")
    assert view.json()["agent"]["version"] == "9.61.0.0"
    pushing.server.chroot("/usr/local/ASR/Vx/bin/svagent", "stop")
    pushing.server.chroot("/usr/local/ASR/Vx/bin/uninstall.sh")


@pytest.mark.parametrize(
    ("body", "step", "code"),
    [
        ({"credentialName": "root-wrong"}, "Copy agent", "95108"),
        ({"credentialName": "ops-user"}, "Check prerequisites", "95108"),
        ({"credentialName": "root-ok", "serverPort": "closed"}, "Copy agent", "95117"),
    ],
    ids=["wrong-password", "not-root", "unreachable"],
)
def test_a_failed_push_ends_with_the_catalog_error_and_leaves_nothing(
    pushing: Pushing, body: dict[str, Any], step: str, code: str
) -> None:
    if body.get("serverPort") == "closed":
        body = {**body, "serverPort": free_port()}
    job = pushing.push(**body)
    assert job["status"] == "Failed", job
    assert job["error"]["code"] == code, job["error"]
    assert _steps(job)[step] == "Failed"
    assert pushing.operator.call("GET", f"/machines/{pushing.machine_id}/mobility").json()["agent"] is None
    pushing.nothing_left()


def test_less_than_100_mb_free_at_the_install_location_fails_before_installing(pushing: Pushing) -> None:
    with pushing.server.small_mount("/mnt/small"):
        job = pushing.push(credentialName="root-ok", installLocation="/mnt/small/ASR")
        assert job["status"] == "Failed", job
        assert job["error"]["code"] == "95524"
        assert "100 MB" in job["error"]["message"] or "102400" in job["error"]["message"]
        assert _steps(job)["Check prerequisites"] == "Failed"
        assert _steps(job)["Install agent"] == "Cancelled"
        pushing.nothing_left("/mnt/small/ASR")
        assert not (pushing.server.rootfs / "mnt/small/ASR").exists()
