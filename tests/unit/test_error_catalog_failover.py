"""A failed failover step and its error code, mapped to Site Recovery's failover errors (28031, 28092,
170010) or to the catalog's own failover entry, with texts an operator can act on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.failover import FailoverStep
from shared.health.catalog import MatchedBy, build_event, failover_error, match_appliance_error

STEP = FailoverStep
NIC = "Microsoft.Network/networkInterfaces"
VM = "Microsoft.Compute/virtualMachines"


@pytest.mark.parametrize(
    ("step", "code", "resource_type", "expected", "matched_by"),
    [
        # The VM: quota, a size not offered or without capacity, a policy, or anything while creating it.
        (STEP.CREATE_VM, "QuotaExceeded", None, "28031", MatchedBy.CODE),
        (STEP.CREATE_VM, "PolicyDisallowed", None, "28031", MatchedBy.CODE),
        (STEP.CREATE_VM, "SkuNotAvailable", None, "28031", MatchedBy.CODE),
        (STEP.CREATE_VM, "skunotavailable", VM, "28031", MatchedBy.CODE),
        (STEP.CREATE_VM, "AllocationFailed", None, "28031", MatchedBy.CODE),
        (STEP.CREATE_VM, "VmFailed", None, "28031", MatchedBy.CODE),
        (STEP.CREATE_VM, "ArmRequestFailed", None, "28031", MatchedBy.STEP),
        (STEP.CREATE_VM, None, None, "28031", MatchedBy.STEP),
        (STEP.START_VM, "AllocationFailed", None, "28031", MatchedBy.CODE),
        # The temporary VM of hydration refused for quota, size or policy is the same remedy.
        (STEP.HYDRATE, "QuotaExceeded", VM, "28031", MatchedBy.CODE),
        # The network interface: by its type, or by the network provider's code, at any step.
        (STEP.CREATE_VM, "QuotaExceeded", NIC, "28092", MatchedBy.CODE),
        (STEP.CREATE_VM, "ArmConflict", NIC, "28092", MatchedBy.CODE),
        (STEP.CREATE_VM, "PrivateIPAddressInUse", None, "28092", MatchedBy.CODE),
        (STEP.CREATE_VM, "SubnetIsFull", None, "28092", MatchedBy.CODE),
        (STEP.HYDRATE, "NicFailed", None, "28092", MatchedBy.CODE),
        # Hydration itself: the boot drivers, DHCP, the toolkit's steps.
        (STEP.HYDRATE, "ExtensionFailed", None, "170010", MatchedBy.STEP),
        (STEP.HYDRATE, "HelperVmFailed", None, "170010", MatchedBy.STEP),
        (STEP.HYDRATE, None, None, "170010", MatchedBy.STEP),
        # Steps Site Recovery publishes no id for; a quota there is not a VM's.
        (STEP.COPY_AND_IMPORT_DISKS, "QuotaExceeded", None, "MCP-4001", MatchedBy.STEP),
        (STEP.COPY_AND_IMPORT_DISKS, "DiskImportFailed", None, "MCP-4001", MatchedBy.STEP),
        (STEP.TAKE_FAILBACK_BASELINE, "ArmRequestFailed", None, "MCP-4001", MatchedBy.STEP),
        (STEP.STOP_REPLICATION, "ConcurrencyConflict", None, "MCP-4001", MatchedBy.STEP),
        ("Some step of a later flow", "Error", None, "MCP-4001", MatchedBy.STEP),
    ],
)
def test_each_failure_maps_to_its_failover_error(
    step: str, code: str | None, resource_type: str | None, expected: str, matched_by: MatchedBy
) -> None:
    match = failover_error(step, code, reason="it failed", resource_type=resource_type)
    assert match.entry.code == expected
    assert match.error_code == expected
    assert match.matched_by is matched_by
    assert match.reported_code == code


def test_the_message_names_the_step_the_vm_and_keeps_azures_reason() -> None:
    reason = (
        "create VM web01-dr: OperationNotAllowed: Operation could not be completed as it results in "
        "exceeding approved standardDSv3Family Cores quota. Maximum allowed: 4, Current in use: 4, "
        "Additional requested: 2."
    )
    match = failover_error(
        STEP.CREATE_VM,
        "QuotaExceeded",
        reason=reason,
        vmName="web01-dr",
        vmSize="Standard_D2s_v3",
        resourceGroup="rg-dr",
        subnet="app",  # not a placeholder of 28031: ignored
        staticIpAddress=None,
    )
    assert match.message == (
        f"Failover failed at step 'Create VM': virtual machine web01-dr could not be created in Azure. {reason}"
    )
    rendered = match.render()
    assert rendered.missing == ()
    assert any("--size Standard_D2s_v3" in step for step in rendered.recommendations)
    assert any("resource group rg-dr" in step for step in rendered.recommendations)
    assert match.values["step"] == "Create VM" and "subnet" not in match.values


def test_a_nic_error_names_the_address_to_check() -> None:
    match = failover_error(
        STEP.CREATE_VM,
        "PrivateIPAddressInUse",
        reason="IP address 10.1.2.10 is already in use",
        vmName="web01",
        subnet="app",
        virtualNetwork="vnet-prod",
        staticIpAddress="10.1.2.10",
    )
    rendered = match.render()
    assert rendered.message.startswith(
        "Failover failed at step 'Create VM': the network interface of virtual machine web01 could not be "
        "created in subnet app."
    )
    assert any(
        "check-ip-address --resource-group <vnet's resource group> --name vnet-prod --ip-address 10.1.2.10"
        in step
        for step in rendered.recommendations
    )


def test_the_failover_event_is_critical_and_carries_causes_and_steps() -> None:
    match = failover_error(STEP.HYDRATE, "ExtensionFailed", reason="dracut exited with 1", vmName="web01")
    event = build_event(
        match, event_id="ev-1", machine_id="vm-1", time=datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    )
    assert event.type == "Failover failed"
    assert event.error_code == "170010"
    assert event.severity.value == "Critical"
    assert event.message.endswith("dracut exited with 1")
    assert any("storvsc" in cause for cause in event.causes)
    assert any("Script-no-hydration.ps1" in step for step in event.recommendations)


@pytest.mark.parametrize("code", ["28031", "28092", "170010", "FailoverStepFailed"])
def test_an_appliance_reporting_a_failover_code_does_not_get_a_failover_error(code: str) -> None:
    match = match_appliance_error(code, "snapshot upload failed")
    assert match.entry.event_type.value != "Failover failed"
    assert match.error_code == code  # unknown to replication: kept as reported
