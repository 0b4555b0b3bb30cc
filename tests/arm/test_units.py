"""Pure logic of the local ARM endpoint and of shared/arm: latency, faults, filters, footers, tags, settings."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devhost.arm import api_versions, cse, ids, validation
from devhost.arm.control import DEFAULT_LATENCY, FaultRegistry, FaultRule, LatencyConfig, retry_after_for
from devhost.arm.cse import output_message, resolve_command
from devhost.arm.disks import check_fixed_vhd_footer
from devhost.arm.errors import ArmError
from devhost.arm.service import parse_filter
from shared.migration.resource_kinds import ResourceKind, kind_of, parse_arm_id, resource_id
from shared.migration.resources import lun_device_path, parse_script_message
from shared.migration.tags import Purpose, ResourceTags
from shared.platform.arm_clients import build_arm_clients
from shared.platform.settings import SettingsError
from shared.replication.vhd import MIB, VhdFooter
from tests.arm.conftest import arm_settings

# --- latency model -----------------------------------------------------------------------------------


def test_latency_defaults_are_in_azures_order_of_magnitude() -> None:
    model = LatencyConfig()
    assert 2 <= model.duration(ids.NSG, "put") <= 10
    assert 2 <= model.duration(ids.NIC, "put") <= 10
    assert 10 <= model.duration(ids.DISK, "put:import") <= 30
    assert 30 <= model.duration(ids.VIRTUAL_MACHINE, "put") <= 60
    assert model.duration(ids.VIRTUAL_MACHINE, "put:update") < model.duration(ids.VIRTUAL_MACHINE, "put")


def test_latency_scale_and_overrides() -> None:
    model = LatencyConfig(scale=0.01, overrides={"microsoft.network/NETWORKSECURITYGROUPS": {"PUT": 100}})
    assert model.duration(ids.NSG, "put") == pytest.approx(1.0)
    assert model.duration(ids.NSG, "delete") == pytest.approx(DEFAULT_LATENCY[ids.NSG]["delete"] * 0.01)
    # A refined action falls back to its verb.
    assert model.duration(ids.DISK, "put:empty") == pytest.approx(DEFAULT_LATENCY[ids.DISK]["put"] * 0.01)
    assert LatencyConfig(scale=0).duration(ids.VIRTUAL_MACHINE, "put") == 0


def test_latency_rejects_unknown_types_and_negative_durations() -> None:
    with pytest.raises(ValueError, match="unknown resource type"):
        LatencyConfig(overrides={"Microsoft.Web/sites": {"put": 1}})
    with pytest.raises(ValueError, match="negative"):
        LatencyConfig(overrides={ids.NIC: {"put": -1}})


@given(st.floats(min_value=-5, max_value=10_000, allow_nan=False))
def test_retry_after_is_whole_seconds_covering_the_time_left(remaining: float) -> None:
    value = retry_after_for(remaining)
    assert isinstance(value, int) and 0 <= value <= 60
    if remaining > 0:
        assert value >= min(remaining, 60)
    else:
        assert value == 0


# --- fault matching ----------------------------------------------------------------------------------


def test_faults_match_on_every_given_field_and_are_consumed() -> None:
    registry = FaultRegistry()
    registry.add(
        FaultRule.model_validate(
            {
                "match": {
                    "method": "put",
                    "resourceType": "microsoft.network/networksecuritygroups",
                    "nameRegex": "^hyd-",
                },
                "fault": "policy",
                "times": 2,
            }
        )
    )
    assert registry.take("GET", ids.NSG, "hyd-nsg", None, asynchronous=False) is None
    assert registry.take("PUT", ids.NIC, "hyd-nic", None, asynchronous=False) is None
    assert registry.take("PUT", ids.NSG, "other", None, asynchronous=False) is None
    assert registry.take("PUT", ids.NSG, "HYD-nsg", None, asynchronous=False) is not None
    assert registry.list()[0]["remaining"] == 1
    assert registry.take("PUT", ids.NSG, "hyd-nsg", None, asynchronous=False) is not None
    assert registry.take("PUT", ids.NSG, "hyd-nsg", None, asynchronous=False) is None
    assert registry.list() == []


def test_async_faults_are_taken_only_by_the_operation_phase() -> None:
    registry = FaultRegistry()
    registry.add(FaultRule(fault="extensionFailure"))
    registry.add(FaultRule(fault="throttle", match={"action": "powerOff"}))
    assert registry.take("PUT", ids.VM_EXTENSION, "cse", None, asynchronous=False) is None
    assert registry.take("PUT", ids.VM_EXTENSION, "cse", None, asynchronous=True) is not None
    assert registry.take("POST", ids.VIRTUAL_MACHINE, "vm", "deallocate", asynchronous=False) is None
    rule = registry.take("POST", ids.VIRTUAL_MACHINE, "vm", "POWEROFF", asynchronous=False)
    assert rule is not None and rule.fault == "throttle"


def test_fault_rules_are_validated() -> None:
    with pytest.raises(ValueError):
        FaultRule.model_validate({"fault": "meteor"})
    with pytest.raises(ValueError):
        FaultRule.model_validate({"fault": "conflict", "match": {"nameRegex": "("}})
    with pytest.raises(ValueError):
        FaultRule.model_validate({"fault": "conflict", "times": 0})


# --- tag filters --------------------------------------------------------------------------------------


def _doc(name: str, tags: dict[str, str], resource_type: str = ids.DISK) -> dict[str, object]:
    return {"name": name, "type": resource_type, "tags": tags}


def test_tag_filter_as_arm_evaluates_it() -> None:
    match = parse_filter("tagName eq 'migrate-purpose' and tagValue eq 'temporary'")
    assert match(_doc("a", {"Migrate-Purpose": "temporary"}))  # tag names are case-insensitive
    assert not match(_doc("b", {"migrate-purpose": "Temporary"}))  # values are not
    assert not match(_doc("c", {"migrate-purpose": "final"}))
    assert not match(_doc("d", {}))
    assert parse_filter("tagName eq 'migrate-job-id'")(_doc("e", {"migrate-job-id": "x"}))
    assert parse_filter("tagName eq 'quote' and tagValue eq 'it''s'")(_doc("f", {"quote": "it's"}))


def test_other_filters_and_combinations() -> None:
    by_type = parse_filter("resourceType eq 'microsoft.compute/disks' and substringof('hyd', name)")
    assert by_type(_doc("hyd-os", {}))
    assert not by_type(_doc("hyd-os", {}, ids.SNAPSHOT))
    assert not by_type(_doc("final-os", {}))
    assert parse_filter(None)(_doc("any", {}))
    for bad in (
        "tagName eq 'a' and name eq 'b'",
        "tagValue eq 'x'",
        "location eq 'westeurope'",
        "name = 'x'",
    ):
        with pytest.raises(ArmError) as error:
            parse_filter(bad)
        assert error.value.status == 400 and error.value.code == "InvalidFilterInQueryString"


# --- VHD footers --------------------------------------------------------------------------------------


def _footer(size: int) -> bytes:
    return VhdFooter.for_size(size, unique_id=uuid.uuid4()).to_bytes()


def test_footer_check_accepts_what_the_replica_writer_writes() -> None:
    info = check_fixed_vhd_footer(_footer(5 * MIB), 5 * MIB + 512, "u")
    assert info.virtual_size == 5 * MIB


@pytest.mark.parametrize(
    ("mutate", "blob_size", "code", "text"),
    [
        (lambda f: b"x" * 8 + f[8:], 2 * MIB + 512, "BadRequest", "cookie"),
        (lambda f: f[:64] + bytes(4) + f[68:], 2 * MIB + 512, "BadRequest", "checksum"),
        (lambda f: f, 3 * MIB + 512, "BadRequest", "virtual size"),
        (lambda f: f, 2 * MIB + 100, "InvalidParameter", "whole"),
    ],
)
def test_footer_check_rejects(mutate: object, blob_size: int, code: str, text: str) -> None:
    footer = mutate(_footer(2 * MIB))  # type: ignore[operator]
    with pytest.raises(ArmError) as error:
        check_fixed_vhd_footer(footer, blob_size, "https://a/c/b.vhd")
    assert (error.value.status, error.value.code, error.value.target) == (400, code, "sourceUri")
    assert text in error.value.message


# --- custom script handler rules ----------------------------------------------------------------------


def test_custom_script_settings_rules(tmp_path: object) -> None:
    from pathlib import Path

    work = Path(str(tmp_path))
    assert resolve_command({"commandToExecute": "a"}, {}, work) == "a"
    assert resolve_command({}, {"commandToExecute": "b"}, work) == "b"
    with pytest.raises(Exception, match="both public and protected"):
        resolve_command({"commandToExecute": "a"}, {"commandToExecute": "b"}, work)
    with pytest.raises(Exception, match="either 'script' or 'commandToExecute'"):
        resolve_command({"fileUris": []}, {}, work)
    import base64

    script = resolve_command({"script": base64.b64encode(b"echo hi\r\n").decode()}, {}, work)
    assert Path(script).read_bytes() == b"echo hi\n"  # dos2unix unless skipDos2Unix


def test_script_message_round_trip() -> None:
    message = "Enable succeeded: " + output_message("line 1\nline 2\n", "warn\n")
    assert message == "Enable succeeded: \n[stdout]\nline 1\nline 2\n\n[stderr]\nwarn\n"
    assert parse_script_message(message) == ("line 1\nline 2\n", "warn\n")
    assert parse_script_message("Enable failed: failed to get configuration: x") == ("", "")


def test_the_command_names_azures_lun_path_and_the_local_vm_links_it(tmp_path: Path) -> None:
    # What the agent's udev rules provide on a VM; the local extension provides the same path.
    assert lun_device_path(2) == "/dev/disk/azure/scsi1/lun2"
    links = cse.lun_links([(cse.ScriptDisk(2, tmp_path / "d.raw"), "/dev/loop7")], tmp_path / "vm")
    assert os.readlink(links / "scsi1" / "lun2") == "/dev/loop7"
    assert cse.script_argv("true", "file", links) == ["/bin/sh", "-c", "true"]


# --- tags, ids, settings ------------------------------------------------------------------------------


def test_tags_round_trip_and_ours_win() -> None:
    created = datetime(2026, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    tags = ResourceTags(machine_id="m", job_id="j", purpose=Purpose.TEMPORARY, created_at=created)
    arm = tags.to_arm({"migrate-purpose": "final", "owner": "ops"})
    assert arm == {
        "owner": "ops",
        "migrate-machine-id": "m",
        "migrate-job-id": "j",
        "migrate-purpose": "temporary",
        "migrate-created-at": "2026-05-01T10:30:00Z",
    }
    assert ResourceTags.from_arm(arm) == tags.model_copy(update={"created_at": created.astimezone(UTC)})
    assert ResourceTags.from_arm({**arm, "migrate-purpose": "other"}) is None
    assert ResourceTags.from_arm({**arm, "migrate-created-at": "yesterday"}) is None
    with pytest.raises(ValueError):
        ResourceTags(machine_id="m", job_id="j", purpose=Purpose.FINAL, created_at=datetime(2026, 1, 1))


def test_arm_id_parsing() -> None:
    arm_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d1"
    parsed = parse_arm_id(arm_id)
    assert (parsed.resource_group, parsed.provider_type, parsed.name) == (
        "rg",
        "Microsoft.Compute/disks",
        "d1",
    )
    assert kind_of(arm_id) is ResourceKind.DISK
    assert resource_id(ResourceKind.DISK, "s", "rg", "d1") == arm_id
    # Not a resource of a kind we manage: never deleted by id.
    assert kind_of(arm_id + "/extensions/x") is None
    with pytest.raises(ValueError):
        parse_arm_id(arm_id + "/extensions/x/more/y")
    with pytest.raises(ValueError):
        parse_arm_id("not-an-id")
    subnet = resource_id(ResourceKind.SUBNET, "s", "rg", "v", "s1")
    assert kind_of(subnet) is ResourceKind.SUBNET
    assert parse_arm_id(subnet).names == ("v", "s1")
    parsed = ids.parse_resource_id(
        "/SUBSCRIPTIONS/s/resourcegroups/RG/providers/microsoft.network/VIRTUALNETWORKS/v/SUBNETS/s1"
    )
    assert parsed is not None and parsed.type == ids.SUBNET and parsed.names == ("v", "s1")
    assert parsed.parent is not None and parsed.parent.type == ids.VIRTUAL_NETWORK
    assert ids.parse_resource_id("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/x") is None


def test_clients_refuse_the_static_token_against_azure_and_need_a_subscription() -> None:
    with pytest.raises(SettingsError, match="ARM_STATIC_TOKEN"):
        build_arm_clients(arm_settings("https://management.azure.com"))
    settings = arm_settings("http://127.0.0.1:1").model_copy(update={"azure_subscription_id": None})
    with pytest.raises(SettingsError, match="AZURE_SUBSCRIPTION_ID"):
        build_arm_clients(settings)
    defaults = arm_settings("http://127.0.0.1:1")
    assert defaults.arm_polling_interval_seconds == 0


# --- PATCH ---------------------------------------------------------------------------------------------


def test_merge_patch_merges_objects_and_replaces_arrays() -> None:
    from devhost.arm.service import merge_patch

    stored = {
        "tags": {"a": "1"},
        "properties": {
            "hardwareProfile": {"vmSize": "x"},
            "storageProfile": {
                "osDisk": {"name": "os", "caching": "ReadWrite"},
                "dataDisks": [{"lun": 0}, {"lun": 1}],
            },
        },
    }
    patch = {"properties": {"storageProfile": {"osDisk": {"caching": None}, "dataDisks": [{"lun": 2}]}}}
    assert merge_patch(stored, patch) == {
        "tags": {"a": "1"},
        "properties": {
            "hardwareProfile": {"vmSize": "x"},
            "storageProfile": {"osDisk": {"name": "os"}, "dataDisks": [{"lun": 2}]},
        },
    }
    assert stored["properties"]["storageProfile"]["osDisk"]["caching"] == "ReadWrite"  # not mutated


# --- api-versions, names, unemulated features ---------------------------------------------------------


def test_api_versions_are_the_providers_own() -> None:
    api_versions.check(ids.DISK, "2026-03-02", None)  # what azure-mgmt-compute 39 sends
    api_versions.check(ids.VIRTUAL_MACHINE, "2026-04-01", None)
    api_versions.check(ids.NIC, "2026-03-01", None)
    api_versions.check(ids.RESOURCE_GROUP, "2025-04-01", None)
    with pytest.raises(ArmError) as other_rp:
        api_versions.check(ids.VIRTUAL_MACHINE, "2025-01-02", "West Europe")  # a disk RP version
    assert other_rp.value.code == "NoRegisteredProviderFound"
    assert "location 'westeurope'" in other_rp.value.message and "'virtualMachines'" in other_rp.value.message
    with pytest.raises(ArmError) as not_a_date:
        api_versions.check(ids.DISK, "banana", None)
    assert not_a_date.value.code == "InvalidApiVersionParameter" and "2025-04-01" in not_a_date.value.message
    api_versions.check_namespace("Microsoft.Compute", "2025-01-02")
    with pytest.raises(ArmError):
        api_versions.check_namespace("Microsoft.Network", "2099-01-01")


@pytest.mark.parametrize("name", ["rg", "a", "RG_(1).x-y", "gruppe-ä", "x" * 90])
def test_resource_group_names_azure_allows(name: str) -> None:
    validation.check_resource_group_name(name)


@pytest.mark.parametrize("name", ["", "x" * 91, "ends.", "sp ace", "a/b", "a#b", "a:b"])
def test_resource_group_names_azure_refuses(name: str) -> None:
    with pytest.raises(ArmError) as refused:
        validation.check_resource_group_name(name)
    assert refused.value.status == 400 and refused.value.code == "InvalidResourceGroup"


def test_unemulated_features_are_refused_and_empty_asks_are_not() -> None:
    with pytest.raises(ArmError) as zones:
        validation.refuse_unemulated(ids.DISK, {"zones": ["1"], "properties": {}})
    assert zones.value.code == "NotSupported" and zones.value.target == "zones"
    with pytest.raises(ArmError) as ipv6:
        validation.refuse_unemulated(
            ids.NIC,
            {"properties": {"ipConfigurations": [{"properties": {"privateIPAddressVersion": "IPv6"}}]}},
        )
    assert ipv6.value.target == "properties.ipConfigurations[0].properties.privateIPAddressVersion"
    validation.refuse_unemulated(ids.NIC, {"properties": {"dnsSettings": {"dnsServers": []}}})
    validation.refuse_unemulated(ids.VIRTUAL_NETWORK, {"properties": {"enableDdosProtection": False}})
    validation.refuse_unemulated(
        ids.DISK, {"properties": {"encryption": {"type": "EncryptionAtRestWithPlatformKey"}}}
    )
