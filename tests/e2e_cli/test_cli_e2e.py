"""The `migrate` client run as an operator runs it (a subprocess with MIGRATE_ENDPOINT and
MIGRATE_FUNCTION_KEY) against the local stack: register an appliance, list its machines, enable
replication, test-migrate a replicating machine with --wait, then find its jobs (tables and JSON)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from appliance.control_plane import ApplianceApi, Registration
from appliance.replicator import MachineReplicator, SourceDisk
from devhost.local_appliance import local_appliance
from devhost.oidc import ADMINISTRATOR_CLIENT, LOCAL_AUDIENCE, read_clients
from tests.e2e_migration.guest_images import GuestImage
from tests.e2e_migration.migration_client import TARGET, MigrationClient

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def migrate_command() -> list[str]:
    """The installed console script when `make` installed it, else the same entry point as a module."""
    script = Path(sys.executable).with_name("migrate")
    if script.exists():
        return [str(script)]
    found = shutil.which("migrate")
    return [found] if found else [sys.executable, "-m", "cli"]


class Cli:
    def __init__(self, client: MigrationClient, profile_dir: Path) -> None:
        administrator = read_clients(client.stack.oidc_dir)[ADMINISTRATOR_CLIENT]
        self.env = {
            **os.environ,
            "MIGRATE_ENDPOINT": client.stack.functions_url,
            "MIGRATE_FUNCTION_KEY": client.function_key,
            # The client-credentials grant against the stack's issuer, as with Entra ID in Azure; an
            # Administrator, since the tests register appliances.
            "MIGRATE_AUTHORITY": client.stack.operator_authority,
            "MIGRATE_CLIENT_ID": administrator.client_id,
            "MIGRATE_CLIENT_SECRET": administrator.client_secret,
            "MIGRATE_AUDIENCE": LOCAL_AUDIENCE,
            # No operator's own profile may leak in: the environment is the whole configuration.
            "MIGRATE_PROFILE": str(profile_dir / "absent.toml"),
            "COLUMNS": "220",
            # The console script imports `cli` through the editable install, which may point at another
            # checkout sharing the .venv: this checkout's code comes first.
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        }

    def __call__(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*migrate_command(), *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def json(self, *args: str) -> Any:
        done = self("--output", "json", *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def test_an_operator_drives_a_test_migration_with_the_cli(
    client: MigrationClient, guest: GuestImage, tmp_path: Path
) -> None:
    cli = Cli(client, tmp_path)

    # Register the appliance with the client; the appliance software gets the credential it printed.
    name = f"cli-{uuid.uuid4().hex[:6]}"
    registered = cli.json("appliances", "register", "--name", name, "--kind", "vmware", "--site", "dc1")
    appliance_id = registered["id"]
    api = ApplianceApi(
        client.stack.functions_url,
        client.function_key,
        appliance_id=appliance_id,
        credential=registered["credential"],
    )
    appliance = local_appliance(
        client.stack, api, Registration(appliance_id=appliance_id, credential=registered["credential"])
    )
    machine_id = f"vm-{uuid.uuid4().hex[:10]}"
    replicator = MachineReplicator(
        machine_id,
        [SourceDisk(disk_id="os", path=guest.path, is_os_disk=True)],
        appliance.uploads,
        appliance.events,
    )
    api.report_machines(
        [replicator.inventory(os_type=guest.os_type, os_name=guest.os_name, os_version=guest.os_version)]
    )

    listed = cli("machines", "list", "--appliance-id", appliance_id)
    assert listed.returncode == 0, listed.stderr
    assert machine_id in listed.stdout and "Discovered" in listed.stdout
    assert "enableReplication" in listed.stdout
    shown = cli("appliances", "show", appliance_id)
    assert shown.returncode == 0 and name in shown.stdout
    assert cli.json("appliances", "show", appliance_id)["machineCount"] == 1

    # Enable replication and wait for its job; the appliance then uploads the initial copy.
    target = tmp_path / "target.json"
    target.write_text(json.dumps(TARGET))
    enabled = cli("replication", "enable", machine_id, "--target", str(target), "--wait", "--timeout", "180")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    assert "EnableReplication" in enabled.stdout and "Succeeded" in enabled.stdout
    [initial] = replicator.handle_commands(api)
    client.wait_applied(machine_id, initial.cycle_id)
    assert cli.json("machines", "show", machine_id)["state"] == "Replicating"

    # The test migration, followed live to its end: every step shown, exit code 0.
    tested = cli("test-migrate", machine_id, "--wait", "--timeout", "200")
    assert "Traceback" not in tested.stderr
    job = cli.json("jobs", "list", "--machine-id", machine_id, "--kind", "TestMigration")["jobs"][0]
    # A step that warned (the toolkit's warnings) makes the job Warning: exit 2, else 0.
    warned = any(s["status"] == "Warning" for s in job["steps"])
    assert job["status"] == ("Warning" if warned else "Succeeded")
    assert tested.returncode == (2 if warned else 0), tested.stdout + tested.stderr
    for step in job["steps"]:
        assert step["name"] in tested.stdout
    assert f"TestMigration on {machine_id}" in tested.stdout

    # The machine's jobs, newest first, as a table and as JSON.
    jobs = cli.json("jobs", "list", "--machine-id", machine_id)["jobs"]
    assert [j["kind"] for j in jobs] == ["TestMigration", "EnableReplication"]
    assert all(j["machineId"] == machine_id for j in jobs)
    table = cli("jobs", "list", "--machine-id", machine_id)
    assert table.returncode == 0 and job["id"] in table.stdout

    # A second test migration is refused as the API says it, with an exit code of 1 and no traceback.
    refused = cli("test-migrate", machine_id)
    assert refused.returncode == 1
    assert "HTTP 409" in refused.stderr and "Traceback" not in refused.stderr

    cleaned = cli("test-migrate", "cleanup", machine_id, "--wait", "--timeout", "180")
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert cli.json("machines", "show", machine_id)["state"] == "Replicating"
