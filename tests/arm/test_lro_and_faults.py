"""Long-running-operation wire behaviour and injected faults, seen through raw HTTP and the real SDK."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest
from azure.mgmt.compute import models as cm

from devhost.arm import LOCAL_SUBSCRIPTION_ID, start_local_arm
from devhost.emulators import EmulatorEndpoints
from devhost.processes import free_port
from devhost.waiting import wait_until
from shared.migration import resource_kinds as kinds
from shared.migration import resources as ops
from shared.migration.tags import ResourceTags
from shared.platform.arm_clients import ArmClients, build_arm_clients
from shared.platform.arm_errors import ArmConflict, ArmRequestFailed, PolicyDisallowed, QuotaExceeded
from tests.arm.conftest import LOCATION, TOKEN, LocalArmEndpoint, RecordingTransport, arm_settings

pytestmark = pytest.mark.integration

API = "api-version=2026-03-01"
NSG_TYPE = "Microsoft.Network/networkSecurityGroups"


def _nsg_url(local_arm: LocalArmEndpoint, rg: str, name: str) -> str:
    return (
        f"{local_arm.url}/subscriptions/{LOCAL_SUBSCRIPTION_ID}/resourceGroups/{rg}/providers/"
        f"{NSG_TYPE}/{name}?{API}"
    )


def _poll_until_done(http: httpx.Client, url: str) -> dict[str, object]:
    def finished() -> dict[str, object] | None:
        body: dict[str, object] = http.get(url).json()
        return body if body["status"] != "InProgress" else None

    return wait_until(finished, timeout=20, interval=0.1, what=f"operation {url} to finish")


def test_put_and_delete_are_async_operations_with_both_monitors(
    local_arm: LocalArmEndpoint, resource_group: str
) -> None:
    local_arm.set_latency({"scale": 1, "overrides": {NSG_TYPE: {"put": 1.5, "delete": 0.5}}})
    http = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    url = _nsg_url(local_arm, resource_group, "lro-nsg")

    created = http.put(url, json={"location": LOCATION, "properties": {}})
    assert created.status_code == 201
    assert created.json()["properties"]["provisioningState"] == "Creating"
    status_url = created.headers["Azure-AsyncOperation"]
    result_url = created.headers["Location"]
    assert created.headers["Retry-After"] == "2"  # 1.5 s left, in whole seconds
    assert http.get(url).json()["properties"]["provisioningState"] == "Creating"
    first = http.get(status_url)
    assert first.status_code == 200 and first.json()["status"] == "InProgress"
    assert "Retry-After" in first.headers
    assert http.get(result_url).status_code == 202

    done = _poll_until_done(http, status_url)
    assert done["status"] == "Succeeded" and "endTime" in done and "error" not in done
    final = http.get(result_url)
    assert final.status_code == 200 and final.json()["properties"]["provisioningState"] == "Succeeded"

    deleting = http.delete(url)
    assert deleting.status_code == 202 and "Azure-AsyncOperation" in deleting.headers
    assert http.get(url).json()["properties"]["provisioningState"] == "Deleting"
    assert _poll_until_done(http, deleting.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
    assert http.get(url).status_code == 404
    assert http.get(url).json()["error"]["code"] == "ResourceNotFound"
    assert http.delete(url).status_code == 204  # deleting what is gone


def test_the_sdk_waits_as_long_as_retry_after_says(
    local_arm: LocalArmEndpoint,
    clients: ArmClients,
    transport: RecordingTransport,
    resource_group: str,
    tags: ResourceTags,
) -> None:
    local_arm.set_latency({"scale": 1, "overrides": {NSG_TYPE: {"put": 1.5}}})
    ops.ensure_helper_network_security_group(
        clients,
        resource_group,
        "slow-nsg",
        location=LOCATION,
        storage=ops.StorageDestination(region=LOCATION),
        tags=tags,
    )
    # polling_interval is 0 in these tests: any wait the SDK asked for came from Retry-After.
    assert transport.sleeps and transport.sleeps[0] == 2


def test_requests_need_a_token_and_an_api_version(local_arm: LocalArmEndpoint) -> None:
    url = f"{local_arm.url}/subscriptions/{LOCAL_SUBSCRIPTION_ID}/resourcegroups"
    missing = httpx.get(f"{url}?{API}")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "AuthenticationFailed"
    wrong = httpx.get(f"{url}?{API}", headers={"Authorization": "Bearer nope"})
    assert wrong.json()["error"]["code"] == "InvalidAuthenticationToken"
    no_version = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert (
        no_version.status_code == 400 and no_version.json()["error"]["code"] == "MissingApiVersionParameter"
    )
    in_missing_group = httpx.get(
        _nsg_url(local_arm, "no-such-rg", "x"), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert in_missing_group.status_code == 404
    assert in_missing_group.json()["error"]["code"] == "ResourceGroupNotFound"


def test_throttling_is_retried_after_retry_after(
    local_arm: LocalArmEndpoint,
    clients: ArmClients,
    transport: RecordingTransport,
    resource_group: str,
    tags: ResourceTags,
) -> None:
    local_arm.add_fault(
        {
            "match": {"method": "PUT", "resourceType": NSG_TYPE},
            "fault": "throttle",
            "times": 2,
            "retryAfter": 1,
        }
    )
    nsg = ops.ensure_helper_network_security_group(
        clients,
        resource_group,
        "throttled",
        location=LOCATION,
        storage=ops.StorageDestination(region=LOCATION),
        tags=tags,
    )
    assert nsg.name == "throttled"
    assert transport.sleeps[:2] == [1.0, 1.0]
    assert local_arm.faults() == []


def test_internal_errors_are_retried(
    local_arm: LocalArmEndpoint, clients: ArmClients, resource_group: str, tags: ResourceTags
) -> None:
    local_arm.add_fault(
        {"match": {"method": "PUT", "resourceType": NSG_TYPE}, "fault": "internal", "times": 1}
    )
    ops.ensure_helper_network_security_group(
        clients,
        resource_group,
        "flaky",
        location=LOCATION,
        storage=ops.StorageDestination(region=LOCATION),
        tags=tags,
    )
    assert local_arm.faults() == []


def test_four_throttles_in_a_row_are_waited_out(
    local_arm: LocalArmEndpoint,
    clients: ArmClients,
    transport: RecordingTransport,
    resource_group: str,
    tags: ResourceTags,
) -> None:
    # More than azure-core's own status retries (3): the busy policy keeps going within its budget.
    local_arm.add_fault(
        {
            "match": {"method": "PUT", "resourceType": NSG_TYPE},
            "fault": "throttle",
            "times": 4,
            "retryAfter": 1,
        }
    )
    nsg = ops.ensure_helper_network_security_group(
        clients,
        resource_group,
        "throttled-4",
        location=LOCATION,
        storage=ops.StorageDestination(region=LOCATION),
        tags=tags,
    )
    assert nsg.name == "throttled-4"
    assert transport.sleeps[:4] == [1.0, 1.0, 1.0, 1.0]
    assert local_arm.faults() == []


def test_another_operation_in_progress_is_waited_out(
    local_arm: LocalArmEndpoint,
    clients: ArmClients,
    transport: RecordingTransport,
    resource_group: str,
    tags: ResourceTags,
) -> None:
    local_arm.add_fault({"match": {"method": "PUT", "nameRegex": "^busy"}, "fault": "conflict", "times": 2})
    nsg = ops.ensure_helper_network_security_group(
        clients,
        resource_group,
        "busy-then-free",
        location=LOCATION,
        storage=ops.StorageDestination(region=LOCATION),
        tags=tags,
    )
    assert nsg.name == "busy-then-free"
    assert transport.sleeps[:2] == [1.0, 2.0]  # no Retry-After on the 409: 1, 2, 4 ... s
    assert local_arm.faults() == []


def test_a_conflict_that_outlasts_the_budget_is_typed(
    local_arm: LocalArmEndpoint, resource_group: str, tags: ResourceTags
) -> None:
    settings = arm_settings(local_arm.url, ARM_RETRY_BUDGET_SECONDS="0")
    local_arm.add_fault({"match": {"method": "PUT", "nameRegex": "^busy"}, "fault": "conflict", "times": 2})
    with build_arm_clients(settings) as clients, pytest.raises(ArmConflict) as error:
        ops.ensure_helper_network_security_group(
            clients,
            resource_group,
            "busy-nsg",
            location=LOCATION,
            storage=ops.StorageDestination(region=LOCATION),
            tags=tags,
        )
    assert error.value.status_code == 409 and error.value.arm_code == "AnotherOperationInProgress"
    assert local_arm.faults()[0]["remaining"] == 1  # one request: the budget allowed no second
    local_arm.reset()


def test_policy_denial_names_the_policy(
    local_arm: LocalArmEndpoint, clients: ArmClients, resource_group: str, tags: ResourceTags
) -> None:
    local_arm.add_fault(
        {"match": {"method": "PUT", "resourceType": "Microsoft.Network/virtualNetworks"}, "fault": "policy"}
    )
    with pytest.raises(PolicyDisallowed) as error:
        ops.ensure_virtual_network(
            clients,
            resource_group,
            "denied",
            location=LOCATION,
            address_prefix="10.0.0.0/24",
            subnet_name="s",
            subnet_prefix="10.0.0.0/26",
            tags=tags,
        )
    assert error.value.status_code == 403
    assert error.value.policy_assignments == [
        "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.Authorization/"
        "policyAssignments/deny-network-artefacts"
    ]
    assert error.value.policy_definitions[0].endswith("6c112d4e-5bc7-47ae-a041-ea2d9dccd749")
    assert "was disallowed by policy" in error.value.message
    assert list(clients.network.virtual_networks.list(resource_group)) == []


def _disk(clients: ArmClients, rg: str, name: str) -> str:
    return str(
        clients.compute.disks.begin_create_or_update(
            rg,
            name,
            cm.Disk(
                location=LOCATION,
                properties=cm.DiskProperties(
                    creation_data=cm.CreationData(create_option="Empty"), disk_size_gb=1
                ),
            ),
        )
        .result()
        .id
    )


def _nic(clients: ArmClients, rg: str, tags: ResourceTags, name: str) -> str:
    vnet = ops.ensure_virtual_network(
        clients,
        rg,
        "vnet",
        location=LOCATION,
        address_prefix="10.30.0.0/24",
        subnet_name="default",
        subnet_prefix="10.30.0.0/26",
        tags=tags,
    )
    return ops.ensure_network_interface(
        clients,
        rg,
        name,
        location=LOCATION,
        subnet_id=vnet.subnet_id,
        network_security_group_id=None,
        tags=tags,
    ).id


def test_quota_errors_are_typed(
    local_arm: LocalArmEndpoint, clients: ArmClients, resource_group: str, tags: ResourceTags
) -> None:
    local_arm.add_fault(
        {
            "match": {"method": "PUT", "resourceType": "Microsoft.Compute/virtualMachines"},
            "fault": "quota",
            "quotaLimit": 4,
        }
    )
    nic, disk = _nic(clients, resource_group, tags, "nic-q"), _disk(clients, resource_group, "os-q")
    with pytest.raises(QuotaExceeded) as injected:
        ops.ensure_vm_from_disks(
            clients,
            resource_group,
            "vm-q",
            location=LOCATION,
            size="Standard_D2s_v3",
            nic_id=nic,
            os_disk_id=disk,
            os_type="Linux",
            data_disk_ids=[],
            tags=tags,
        )
    assert re.search(
        r"exceeding quota limits of Core\. Maximum allowed: 4, Current in use: \d+, "
        r"Additional requested: 2",
        injected.value.message,
    )

    # The regional quota itself: what is in use plus this VM's cores must fit.
    in_use = int(re.search(r"Current in use: (\d+)", injected.value.message).group(1))  # type: ignore[union-attr]
    local_arm.admin.put("/_admin/quota", json={"cores": in_use + 2}).raise_for_status()
    ops.ensure_vm_from_disks(
        clients,
        resource_group,
        "vm-q",
        location=LOCATION,
        size="Standard_D2s_v3",
        nic_id=nic,
        os_disk_id=disk,
        os_type="Linux",
        data_disk_ids=[],
        tags=tags,
    )
    nic2, disk2 = _nic(clients, resource_group, tags, "nic-q2"), _disk(clients, resource_group, "os-q2")
    with pytest.raises(QuotaExceeded) as real:
        ops.ensure_vm_from_disks(
            clients,
            resource_group,
            "vm-q2",
            location=LOCATION,
            size="Standard_D4s_v3",
            nic_id=nic2,
            os_disk_id=disk2,
            os_type="Linux",
            data_disk_ids=[],
            tags=tags,
        )
    assert (
        f"Maximum allowed: {in_use + 2}, Current in use: {in_use + 2}, Additional requested: 4"
        in real.value.message
    )
    kinds.delete_resource(
        clients, f"{nic.rsplit('/providers/', 1)[0]}/providers/Microsoft.Compute/virtualMachines/vm-q"
    )


def test_a_failed_operation_fails_the_poller(
    local_arm: LocalArmEndpoint, clients: ArmClients, resource_group: str, tags: ResourceTags
) -> None:
    local_arm.add_fault({"match": {"method": "PUT", "resourceType": NSG_TYPE}, "fault": "operationFailure"})
    with pytest.raises(ArmRequestFailed) as error:
        ops.ensure_helper_network_security_group(
            clients,
            resource_group,
            "broken",
            location=LOCATION,
            storage=ops.StorageDestination(region=LOCATION),
            tags=tags,
        )
    assert error.value.arm_code == "InternalOperationError"
    got = clients.network.network_security_groups.get(resource_group, "broken")
    assert got.properties.provisioning_state == "Failed"


def test_generic_listing_filters_by_tag_and_pages(
    clients: ArmClients, resource_group: str, tags: ResourceTags
) -> None:
    for index in range(3):
        ops.ensure_helper_network_security_group(
            clients,
            resource_group,
            f"listed-{index}",
            location=LOCATION,
            storage=ops.StorageDestination(region=LOCATION),
            tags=tags,
        )
    job_filter = f"tagName eq 'migrate-job-id' and tagValue eq '{tags.job_id}'"
    found = list(clients.resources.resources.list(filter=job_filter, top=2))  # two pages, nextLink followed
    assert sorted(r.name for r in found) == ["listed-0", "listed-1", "listed-2"]
    assert all(r.tags["migrate-machine-id"] == tags.machine_id for r in found)
    by_group = list(clients.resources.resources.list_by_resource_group(resource_group, expand="createdTime"))
    assert {r.name for r in by_group} == {"listed-0", "listed-1", "listed-2"}
    assert all(r.created_time is not None for r in by_group)
    assert (
        list(clients.resources.resources.list(filter="tagName eq 'migrate-job-id' and tagValue eq 'none'"))
        == []
    )


def test_state_survives_a_restart(emulators: EmulatorEndpoints, tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"

    def start() -> ArmClients:
        return build_arm_clients(arm_settings(f"http://127.0.0.1:{port}"))

    process = start_local_arm(
        data, port, emulators.storage_connection_string, tmp_path / "logs", token=TOKEN, latency_scale=0
    )
    try:
        with start() as clients:
            rg = f"rg-{uuid.uuid4().hex[:6]}"
            clients.resources.resource_groups.create_or_update(rg, {"location": LOCATION})
            tags = ResourceTags(
                machine_id="m", job_id="j", purpose="temporary", created_at="2026-01-01T00:00:00Z"
            )
            vnet = ops.ensure_virtual_network(
                clients,
                rg,
                "kept",
                location=LOCATION,
                address_prefix="10.0.0.0/24",
                subnet_name="s",
                subnet_prefix="10.0.0.0/26",
                tags=tags,
            )
    finally:
        process.stop()
    process = start_local_arm(
        data, port, emulators.storage_connection_string, tmp_path / "logs", token=TOKEN, latency_scale=0
    )
    try:
        with start() as clients:
            again = clients.network.virtual_networks.get(rg, "kept")
            assert again.id == vnet.id and again.tags == tags.to_arm()
            assert again.properties.subnets[0].id == vnet.subnet_id
    finally:
        process.stop()


def test_retries_are_counted_in_telemetry(
    local_arm: LocalArmEndpoint, resource_group: str, tags: ResourceTags
) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from shared.platform import telemetry as tm

    reader = InMemoryMetricReader()
    telemetry = tm.configure_telemetry(arm_settings(local_arm.url), metric_reader=reader, set_global=False)
    local_arm.add_fault(
        {
            "match": {"method": "PUT", "resourceType": NSG_TYPE},
            "fault": "throttle",
            "times": 2,
            "retryAfter": 0,
        }
    )
    try:
        with build_arm_clients(arm_settings(local_arm.url), telemetry=telemetry) as clients:
            ops.ensure_helper_network_security_group(
                clients,
                resource_group,
                "counted",
                location=LOCATION,
                storage=ops.StorageDestination(region=LOCATION),
                tags=tags,
            )
        data = reader.get_metrics_data()
        assert data is not None
        retries = [
            p
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == tm.METRIC_ARM_RETRIES
            for p in m.data.data_points
        ]
        assert [(dict(p.attributes), p.value) for p in retries] == [
            ({"migrate.arm.operation": f"PUT {NSG_TYPE}", "http.response.status_code": 429}, 2)
        ]
    finally:
        telemetry.shutdown()
