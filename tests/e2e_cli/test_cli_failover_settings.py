"""`migrate failover-settings show|set` (and `appliances policy show|set`) run as an operator runs them
against the local stack: failover settings refused before replication is enabled, the target settings
once it is, then changed from flags and a file (the API checks the size and the address with the local
ARM endpoint), and a bad address refused as the API says it with the settings left as they were. No
failover runs: the settings may change in any state before one."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.e2e_cli.test_cli_e2e import Cli
from tests.e2e_cli.test_cli_failback_mobility import _discovered_machine
from tests.e2e_migration.guest_images import GuestImage
from tests.e2e_migration.migration_client import SUBNET, TARGET, TARGET_GROUP, TARGET_VNET, MigrationClient

pytestmark = pytest.mark.e2e


def test_an_operator_sets_and_shows_failover_settings_with_the_cli(
    client: MigrationClient, guest: GuestImage, tmp_path: Path
) -> None:
    cli = Cli(client, tmp_path)
    machine_id, appliance_id = _discovered_machine(cli, client, guest)

    # The appliance's policy: one member changed, the others kept.
    policy = cli.json("appliances", "policy", "show", appliance_id)
    changed_policy = cli.json("appliances", "policy", "set", appliance_id, "--reverse-cycle-minutes", "5")
    assert changed_policy == {**policy, "reverseCycleMinutes": 5}
    assert cli.json("appliances", "policy", "show", appliance_id) == changed_policy

    # Nothing to fail over yet: the API's 409 and what to do, exit 1.
    early = cli("failover-settings", "show", machine_id)
    assert early.returncode == 1, early.stdout + early.stderr
    assert "ReplicationNotEnabled (HTTP 409)" in early.stderr and "enable replication first" in early.stderr
    assert "Traceback" not in early.stderr

    target = tmp_path / "target.json"
    target.write_text(json.dumps(TARGET))
    enabled = cli("replication", "enable", machine_id, "--target", str(target), "--wait", "--timeout", "120")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr

    # Until changed, the settings are the target's.
    settings = cli.json("failover-settings", "show", machine_id)
    assert (settings["resourceGroup"], settings["virtualNetwork"], settings["subnet"]) == (
        TARGET_GROUP,
        TARGET_VNET,
        SUBNET,
    )
    assert settings["vmSize"] == TARGET["vmSize"] and settings["staticIpAddress"] is None
    assert settings["disks"] == {"os": {"diskType": TARGET["diskType"]}}

    # Flags and a file in one merge patch; the flags win over the file.
    address = f"10.1.0.{random.randint(100, 250)}"
    patch = tmp_path / "settings.json"
    patch.write_text(json.dumps({"vmSize": "Standard_D2s_v3", "disks": {"os": {"diskType": "Premium_LRS"}}}))
    changed = cli(
        "failover-settings",
        "set",
        machine_id,
        "--vm-name",
        f"fo-{machine_id[3:11]}",
        "--vm-size",
        "Standard_D4s_v3",
        "--subnet-address-prefix",
        "10.1.0.0/24",
        "--static-ip",
        address,
        "--from-file",
        str(patch),
    )
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert f"Failover settings of {machine_id}" in changed.stdout
    assert (
        "Standard_D4s_v3" in changed.stdout and address in changed.stdout and "Premium_LRS" in changed.stdout
    )
    stored = cli.json("failover-settings", "show", machine_id)
    assert stored == {
        **settings,
        "vmName": f"fo-{machine_id[3:11]}",
        "vmSize": "Standard_D4s_v3",
        "subnetAddressPrefix": "10.1.0.0/24",
        "staticIpAddress": address,
        "disks": {"os": {"diskType": "Premium_LRS"}},
    }

    # An address outside the subnet: the API's field and what to do, exit 1, nothing changed.
    refused = cli(
        "failover-settings", "set", machine_id, "--static-ip", "10.9.0.4", "--vm-size", "Standard_D2s_v3"
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "ValidationFailed (HTTP 400)" in refused.stderr and "staticIpAddress: " in refused.stderr
    assert "Traceback" not in refused.stderr
    assert cli.json("failover-settings", "show", machine_id) == stored

    # Back to an address Azure assigns.
    dynamic = cli("failover-settings", "set", machine_id, "--dynamic-ip")
    assert dynamic.returncode == 0, dynamic.stdout + dynamic.stderr
    assert "dynamic (Azure assigns one)" in dynamic.stdout
    assert cli.json("failover-settings", "show", machine_id)["staticIpAddress"] is None
