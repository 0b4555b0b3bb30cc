"""The `migrate` client's failback and Mobility commands run as an operator runs them against the local
stack: the installer catalog and its OS resolution, a push installation started and followed, a
machine's agent view, and planned failover, its cancel and reprotect refused as the API refuses them for
a machine that never failed over (exit 1, the API's code and allowed operations, no traceback)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from appliance.control_plane import ApplianceApi, Registration
from appliance.replicator import MachineReplicator, SourceDisk
from devhost.local_appliance import local_appliance
from tests.e2e_cli.test_cli_e2e import Cli
from tests.e2e_migration.guest_images import GuestImage
from tests.e2e_migration.migration_client import MigrationClient

pytestmark = pytest.mark.e2e

INSTALLER = "Microsoft-ASR_UA_9.60.0.0_UBUNTU-20.04-64_GA_20240101_release.tar.gz"


def _discovered_machine(cli: Cli, client: MigrationClient, guest: GuestImage) -> tuple[str, str]:
    registered = cli.json(
        "appliances", "register", "--name", f"cli-{uuid.uuid4().hex[:6]}", "--kind", "vmware", "--site", "dc2"
    )
    api = ApplianceApi(
        client.stack.functions_url,
        client.function_key,
        appliance_id=registered["id"],
        credential=registered["credential"],
    )
    appliance = local_appliance(
        client.stack, api, Registration(appliance_id=registered["id"], credential=registered["credential"])
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
    return machine_id, registered["id"]


def test_failback_commands_are_refused_as_the_api_refuses_them(
    client: MigrationClient, guest: GuestImage, tmp_path: Path
) -> None:
    cli = Cli(client, tmp_path)
    machine_id, appliance_id = _discovered_machine(cli, client, guest)
    for argv in (
        ["planned-failover", machine_id, "--wait"],
        ["cancel-planned-failover", machine_id, "--wait"],
        ["reprotect", machine_id, "--appliance-id", appliance_id, "--wait"],
    ):
        refused = cli(*argv)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "HTTP 409" in refused.stderr and "Traceback" not in refused.stderr
        assert f"machine {machine_id} is Discovered; allowed now: enableReplication" in refused.stderr
    # The policy options travel as the reprotect's `policy` (the appliance's policy with the change), which
    # the API takes toward Azure only.
    with_policy = cli("reprotect", machine_id, "--appliance-id", appliance_id, "--upload-threads-per-vm", "8")
    assert with_policy.returncode == 1, with_policy.stdout + with_policy.stderr
    assert "HTTP 400" in with_policy.stderr and "only for a reprotect to Azure" in with_policy.stderr
    assert cli.json("appliances", "policy", "show", appliance_id)["uploadThreadsPerVm"] == 4
    # Refused means nothing was started.
    assert cli.json("jobs", "list", "--machine-id", machine_id)["jobs"] == []


def test_mobility_catalog_push_installation_and_agent_view(
    client: MigrationClient, guest: GuestImage, tmp_path: Path
) -> None:
    cli = Cli(client, tmp_path)
    machine_id, _ = _discovered_machine(cli, client, guest)
    installer = tmp_path / INSTALLER
    installer.write_bytes(b"\x1f\x8b" + uuid.uuid4().bytes * 64)
    uploaded = cli("mobility", "upload-installer", str(installer))
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert INSTALLER in uploaded.stdout

    listed = cli("mobility", "installers")
    assert listed.returncode == 0, listed.stderr
    assert INSTALLER in listed.stdout and "9.60.0.0" in listed.stdout
    resolved = cli.json("mobility", "installers", "--os", f"{guest.os_name} {guest.os_version}")
    assert resolved["installer"]["fileName"] == INSTALLER
    table = cli("mobility", "installers", "--os", "Windows Server 2016 Datacenter")
    assert table.returncode == 0 and "Windows" in table.stdout
    unsupported = cli("mobility", "installers", "--os", "Plan 9 4th edition")
    assert unsupported.returncode == 1 and "OsNotSupported" in unsupported.stderr

    shown = cli("mobility", "show", machine_id)
    assert shown.returncode == 0 and "no Mobility agent has registered" in shown.stdout

    # The push is carried out by the machine's appliance, which this test does not run: --wait shows the
    # job's steps live until its timeout, then says the job is still running (exit 1).
    no_address = cli("mobility", "install", machine_id, "--credential-name", "root-cred")
    assert no_address.returncode == 1 and "give serverAddress" in no_address.stderr
    # --disk-path reaches the API as diskPaths: a disk the machine does not have is its 400.
    unknown_disk = cli(
        "mobility",
        "install",
        machine_id,
        "--credential-name",
        "root-cred",
        "--server-address",
        "192.0.2.10",
        "--disk-path",
        "data=/dev/sdb",
    )
    assert unknown_disk.returncode == 1, unknown_disk.stdout + unknown_disk.stderr
    assert "HTTP 400" in unknown_disk.stderr and "unknown disk ids data" in unknown_disk.stderr
    pushed = cli(
        "mobility",
        "install",
        machine_id,
        "--credential-name",
        "root-cred",
        "--server-address",
        "192.0.2.10",
        "--disk-path",
        "os=/dev/sda",
        "--wait",
        "--timeout",
        "3",
    )
    assert pushed.returncode == 1, pushed.stdout + pushed.stderr
    assert f"InstallMobilityService on {machine_id}" in pushed.stdout
    assert "still InProgress" in pushed.stderr and "Traceback" not in pushed.stderr
    [job] = cli.json("jobs", "list", "--machine-id", machine_id, "--kind", "InstallMobilityService")["jobs"]
    for step in job["steps"]:
        assert step["name"] in pushed.stdout
    # A second installation while the first runs is refused.
    again = cli(
        "mobility", "update", machine_id, "--credential-name", "root-cred", "--server-address", "192.0.2.10"
    )
    assert again.returncode == 1 and "HTTP 409" in again.stderr
