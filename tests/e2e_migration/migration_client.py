"""The operator's side of migration on a local stack: HTTP API calls, the local ARM endpoint's admin API
(faults), listings by tag, and the target network an operator prepares before enabling replication.
Used by the tests and by `make demo` (devhost/demo_migration.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

import httpx

from devhost.local_appliance import register_local_appliance, stack_storage
from devhost.stack import LocalStack
from devhost.waiting import wait_until
from shared.migration import resources as ops
from shared.migration.tags import TAG_JOB_ID, TAG_MACHINE_ID, Purpose, ResourceTags
from shared.platform.arm_clients import ArmClients
from tests.support.arm_operations import arm_group_and_name

TARGET_GROUP: Final = "rg-target"
TARGET_VNET: Final = "vnet-target"
TEST_VNET: Final = "vnet-test"
SUBNET: Final = "default"
LOCATION: Final = "westeurope"
TARGET: Final = {
    "resourceGroup": TARGET_GROUP,
    "virtualNetwork": TARGET_VNET,
    "subnet": SUBNET,
    "testVirtualNetwork": TEST_VNET,
    "vmSize": "Standard_D2s_v3",
    "diskType": "Standard_LRS",
}
FINISHED: Final = ("Succeeded", "Warning", "Failed", "Cancelled")


def succeeded(job: dict[str, Any]) -> bool:
    """The job went through: Succeeded, or Warning exactly when one of its steps warned."""
    warned = any(s["status"] == "Warning" for s in job["steps"])
    return bool(job["status"] == ("Warning" if warned else "Succeeded"))


def ensure_operator_network(clients: ArmClients) -> None:
    """The operator's own resource group, target VNet and isolated test VNet (not ours: untagged for the
    sweeper, as a customer's network would be)."""
    clients.resources.resource_groups.create_or_update(TARGET_GROUP, {"location": LOCATION})
    owner = ResourceTags(
        machine_id="operator", job_id="operator-setup", purpose=Purpose.FINAL, created_at=datetime.now(UTC)
    )
    for name, prefix in ((TARGET_VNET, "10.1"), (TEST_VNET, "10.2")):
        ops.ensure_virtual_network(
            clients,
            TARGET_GROUP,
            name,
            location=LOCATION,
            address_prefix=f"{prefix}.0.0/16",
            subnet_name=SUBNET,
            subnet_prefix=f"{prefix}.0.0/24",
            tags=owner,
        )


wait_for = partial(wait_until, timeout=120.0, interval=0.3)


class MigrationClient:
    def __init__(self, stack: LocalStack, clients: ArmClients) -> None:
        self.stack = stack
        self.arm = clients
        keys = json.loads((stack.data_dir / "host" / "keys.json").read_text())
        self.function_key = str(keys["function_default"])
        self.master_key = str(keys.get("master") or keys["function_default"])
        settings = stack.settings
        self.http = httpx.Client(
            base_url=f"{stack.functions_url}/api",
            timeout=60,
            headers={
                "x-functions-key": self.function_key,
                "Authorization": f"Bearer {stack.operator_token()}",
            },
        )
        self.arm_admin = httpx.Client(
            base_url=settings["ARM_ENDPOINT"],
            timeout=30,
            headers={"Authorization": f"Bearer {settings['ARM_STATIC_TOKEN']}"},
        )

    # -- the appliance and replication

    def new_appliance(self, workdir: Path) -> Any:
        from tests.e2e.conftest import appliance_of

        local = register_local_appliance(self.stack, name=f"appliance-{uuid.uuid4().hex[:6]}")
        workdir.mkdir(parents=True, exist_ok=True)
        return appliance_of(local, stack_storage(self.stack), workdir)

    def enable_replication(self, machine_id: str) -> dict[str, Any]:
        response = self.http.put(f"/machines/{machine_id}/replication", json=TARGET)
        assert response.status_code == 202, response.text
        job = self.wait_job(response.json()["jobId"])
        assert job["status"] == "Succeeded", job
        return job

    def machine(self, machine_id: str) -> dict[str, Any]:
        response = self.http.get(f"/machines/{machine_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_applied(self, machine_id: str, cycle_id: str, timeout: float = 120) -> dict[str, Any]:
        def applied() -> dict[str, Any] | None:
            machine = self.machine(machine_id)
            return machine if cycle_id in [p["cycleId"] for p in machine["recoveryPointList"]] else None

        result: dict[str, Any] = wait_for(applied, timeout=timeout, what=f"cycle {cycle_id} applied")
        return result

    # -- jobs

    def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.post(path, json=body) if body is not None else self.http.post(path)

    def start(self, path: str, body: dict[str, Any] | None = None) -> str:
        response = self.post(path, body)
        assert response.status_code == 202, response.text
        assert response.headers["Location"] == f"/api/jobs/{response.json()['jobId']}"
        return str(response.json()["jobId"])

    def job(self, job_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get(f"/jobs/{job_id}").json()
        return body

    def wait_job(self, job_id: str, timeout: float = 300) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in FINISHED else None

        result: dict[str, Any] = wait_for(finished, timeout=timeout, what=f"job {job_id} finished")
        return result

    def run(self, path: str, body: dict[str, Any] | None = None, timeout: float = 300) -> dict[str, Any]:
        return self.wait_job(self.start(path, body), timeout=timeout)

    def instance_status(self, job_id: str) -> dict[str, Any]:
        """The job orchestration's Durable status (custom status: ARM waits, hydration time, VM id)."""
        url = f"{self.stack.functions_url}/runtime/webhooks/durabletask/instances/{job_id}"
        response = httpx.get(url, params={"code": self.master_key}, timeout=30)
        assert response.status_code in (200, 202), response.text
        body: dict[str, Any] = response.json()
        return body

    def run_timer(self, function_name: str) -> None:
        """Run a timer function now through the host's admin API (as `POST /admin/functions/{name}` in Azure)."""
        response = httpx.post(
            f"{self.stack.functions_url}/admin/functions/{function_name}",
            headers={"x-functions-key": self.master_key},
            json={},
            timeout=300,
        )
        assert response.status_code == 202, response.text

    # -- ARM

    def tagged(self, tag: str, value: str) -> list[Any]:
        return list(self.arm.resources.resources.list(filter=f"tagName eq '{tag}' and tagValue eq '{value}'"))

    def resources_of_job(self, job_id: str) -> list[str]:
        return sorted(str(r.id) for r in self.tagged(TAG_JOB_ID, job_id))

    def resources_of_machine(self, machine_id: str) -> list[str]:
        return sorted(str(r.id) for r in self.tagged(TAG_MACHINE_ID, machine_id))

    def disk_image(self, disk_id: str) -> Path:
        """The local ARM endpoint's image file of a managed disk (a sparse raw file without footer)."""
        group, name = arm_group_and_name(disk_id)
        properties = self.arm.compute.disks.get(group, name).properties
        assert properties is not None
        return self.stack.data_dir / "arm" / "disks" / f"{properties.unique_id}.raw"

    def vm_disks(self, vm_id: str) -> tuple[str, list[str]]:
        """(OS disk id, data disk ids in LUN order) of a VM."""
        group, name = arm_group_and_name(vm_id)
        vm = self.arm.compute.virtual_machines.get(group, name)
        storage = vm.properties.storage_profile if vm.properties else None
        assert (
            storage is not None and storage.os_disk is not None and storage.os_disk.managed_disk is not None
        )
        data = sorted(storage.data_disks or [], key=lambda d: d.lun)
        return str(storage.os_disk.managed_disk.id), [str(d.managed_disk.id) for d in data if d.managed_disk]

    def add_fault(self, rule: dict[str, Any]) -> None:
        self.arm_admin.post("/_admin/faults", json=rule).raise_for_status()

    def clear_faults(self) -> None:
        self.arm_admin.delete("/_admin/faults").raise_for_status()

    def set_latency(self, scale: float) -> None:
        self.arm_admin.put("/_admin/latency", json={"scale": scale}).raise_for_status()
