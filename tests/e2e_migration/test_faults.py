"""Every step of a test migration with an injected ARM fault: the job fails with a clear error and ZERO
resources are left (listed by the job's tag in the local ARM endpoint, and the recovery-point copies in
storage); the machine is Replicating again and its replica untouched. Transient faults (throttling,
a 500, a failed delete) are absorbed by the SDK's or Durable's retries and the job succeeds.

One replicating Ubuntu machine serves the whole module: each case leaves it Replicating.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from devhost.stack import LocalStack
from shared.platform import telemetry as tm
from tests.e2e_migration.conftest import GuestMachine, machine_state
from tests.e2e_migration.migration_client import MigrationClient, succeeded, wait_for
from tests.support.telemetry import Emitted, queried, wait_for_emitted

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]

NETWORK = "Microsoft.Network"
COMPUTE = "Microsoft.Compute"

# A 409 AnotherOperationInProgress is waited out for ARM_RETRY_BUDGET_SECONDS (5 s in the stack): sent
# at 0, 1 and 3 s, the next wait (4 s) would pass the budget, so three answers fail the step.
BUSY_PAST_THE_BUDGET = 3

# (case, fault rule, expected job error code, words the error message must contain)
FAILING: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "import the OS disk",
        {
            "match": {"method": "PUT", "resourceType": f"{COMPUTE}/disks", "nameRegex": "-osdisk-"},
            "fault": "operationFailure",
        },
        "InternalOperationError",
        "importing disk os",
    ),
    (
        "import a data disk",
        {
            "match": {"method": "PUT", "resourceType": f"{COMPUTE}/disks", "nameRegex": "-datadisk1-"},
            "fault": "conflict",
            "times": BUSY_PAST_THE_BUDGET,
        },
        "AnotherOperationInProgress",
        "importing disk data",
    ),
    (
        "create the temporary VNet",
        {
            "match": {"method": "PUT", "resourceType": f"{NETWORK}/virtualNetworks", "nameRegex": "^hyd-"},
            "fault": "operationFailure",
        },
        "InternalOperationError",
        "temporary virtual network",
    ),
    (
        "create the NSG",
        {
            "match": {
                "method": "PUT",
                "resourceType": f"{NETWORK}/networkSecurityGroups",
                "nameRegex": "^hyd-",
            },
            "fault": "conflict",
            "times": BUSY_PAST_THE_BUDGET,
        },
        "AnotherOperationInProgress",
        "network security group",
    ),
    (
        "create the helper's NIC",
        {
            "match": {"method": "PUT", "resourceType": f"{NETWORK}/networkInterfaces", "nameRegex": "^hyd-"},
            "fault": "operationFailure",
        },
        "InternalOperationError",
        "helper's network interface",
    ),
    (
        "create the VM's NIC",
        {
            "match": {
                "method": "PUT",
                "resourceType": f"{NETWORK}/networkInterfaces",
                "nameRegex": "-test-[0-9a-f]{6}-nic-",
            },
            "fault": "operationFailure",
        },
        "InternalOperationError",
        "VM's network interface",
    ),
    (
        "create the helper VM (quota)",
        {
            "match": {"method": "PUT", "resourceType": f"{COMPUTE}/virtualMachines", "nameRegex": "^hyd-"},
            "fault": "quota",
        },
        "QuotaExceeded",
        "quota",
    ),
    (
        "run the preparation script",
        {
            "match": {"method": "PUT", "resourceType": f"{COMPUTE}/virtualMachines/extensions"},
            "fault": "extensionFailure",
            "exitStatus": 1,
        },
        "PreparationFailed",
        "exit status=1",
    ),
    (
        "the extension busy past the retry budget",
        {
            "match": {"method": "PUT", "resourceType": f"{COMPUTE}/virtualMachines/extensions"},
            "fault": "conflict",
            "times": BUSY_PAST_THE_BUDGET,
        },
        "AnotherOperationInProgress",
        "could not be started",
    ),
    (
        "delete the helper VM",
        {
            "match": {"method": "DELETE", "resourceType": f"{COMPUTE}/virtualMachines", "nameRegex": "^hyd-"},
            "fault": "operationFailure",
            "times": 6,
        },
        "DeleteFailed",
        "temporary VM",
    ),
    (
        "create the VM",
        {
            "match": {
                "method": "PUT",
                "resourceType": f"{COMPUTE}/virtualMachines",
                "nameRegex": "-test-[0-9a-f]{6}$",
            },
            "fault": "operationFailure",
        },
        "InternalOperationError",
        "creating VM",
    ),
]

TRANSIENT: list[tuple[str, dict[str, Any]]] = [
    (
        "throttled NIC, four times",
        {
            "match": {"method": "PUT", "resourceType": f"{NETWORK}/networkInterfaces"},
            "fault": "throttle",
            "times": 4,
            "retryAfter": 1,
        },
    ),
    (
        "busy NIC",
        {
            "match": {"method": "PUT", "resourceType": f"{NETWORK}/networkInterfaces"},
            "fault": "conflict",
            "times": 2,
        },
    ),
    ("500 on Import", {"match": {"method": "PUT", "resourceType": f"{COMPUTE}/disks"}, "fault": "internal"}),
    (
        "failed subnet delete, retried",
        {
            "match": {"method": "DELETE", "resourceType": f"{NETWORK}/virtualNetworks/subnets"},
            "fault": "operationFailure",
            "times": 1,
        },
    ),
]


def replica_digest(machine: GuestMachine) -> str:
    blob = machine.appliance.replicas.get_blob_client(f"{machine.id}/os.vhd")
    return hashlib.sha256(blob.download_blob().readall()).hexdigest()


def assert_step_failed_with_the_jobs_error(job: dict[str, Any]) -> None:
    """The step that failed shows the job's error; the steps after it never ran (the toolkit's own
    `Prepare: ` steps keep what its report said)."""
    steps = [s for s in job["steps"] if not s["name"].startswith("Prepare: ")]
    failed = [i for i, s in enumerate(steps) if s["status"] == "Failed"]
    assert failed, job["steps"]
    assert all(steps[i]["error"] == job["error"] for i in failed), job["steps"]
    assert all(s["status"] == "Cancelled" for s in steps[failed[-1] + 1 :]), job["steps"]


def assert_nothing_left(client: MigrationClient, machine: GuestMachine, job_id: str) -> None:
    assert client.resources_of_job(job_id) == []
    copies = list(machine.appliance.replicas.list_blobs(name_starts_with=f"{machine.id}/copies/{job_id}/"))
    assert copies == [], [c.name for c in copies]


@pytest.mark.parametrize(("case", "rule", "code", "words"), FAILING, ids=[c[0] for c in FAILING])
def test_a_fault_at_each_step_leaves_nothing_behind(
    client: MigrationClient,
    linux_machine: GuestMachine,
    arm_faults: Callable[[dict[str, Any]], None],
    case: str,
    rule: dict[str, Any],
    code: str,
    words: str,
) -> None:
    before = replica_digest(linux_machine)
    arm_faults({"times": 1, **rule})
    job = client.run(f"/machines/{linux_machine.id}/test-migrate", {})
    assert job["status"] == "Failed", job
    assert job["error"]["code"] == code, job["error"]
    assert words.lower() in job["error"]["message"].lower(), job["error"]["message"]
    assert_step_failed_with_the_jobs_error(job)
    assert client.arm_admin.get("/_admin/faults").json()["value"] == [], f"{case}: the fault was not reached"
    assert_nothing_left(client, linux_machine, job["id"])
    assert machine_state(client, linux_machine.id) == "Replicating"
    assert replica_digest(linux_machine) == before


@pytest.mark.parametrize(("case", "rule"), TRANSIENT, ids=[c[0] for c in TRANSIENT])
def test_transient_faults_are_retried(
    client: MigrationClient,
    linux_machine: GuestMachine,
    arm_faults: Callable[[dict[str, Any]], None],
    local_stack: LocalStack,
    case: str,
    rule: dict[str, Any],
) -> None:
    arm_faults({"times": 1, **rule})
    job = client.run(f"/machines/{linux_machine.id}/test-migrate", {})
    assert succeeded(job), job
    assert client.arm_admin.get("/_admin/faults").json()["value"] == [], f"{case}: the fault was not reached"
    # The workbook's hydration and ARM-retry tiles: the HTTP faults are retried inside the ARM client (and
    # counted); a failed long-running operation is retried by the activity instead.
    sdk_retried = rule["fault"] in ("throttle", "internal")
    expected = {
        q
        for q in queried()
        if q.name == tm.METRIC_HYDRATION_DURATION or (sdk_retried and q.name == tm.METRIC_ARM_RETRIES)
    }

    def hydrations(emitted: Emitted) -> set[tuple[str, str]]:
        points = emitted.metric_points(
            tm.METRIC_HYDRATION_DURATION, **{"migrate.machine_id": linux_machine.id}
        )
        return {(p["migrate.os_family"], p["migrate.outcome"]) for p in points}

    # The machine is shared with the failing cases before: wait for this run's successful hydration.
    emitted = wait_for_emitted(
        local_stack.telemetry_file,
        expected,
        machine_id=linux_machine.id,
        until=lambda e: ("linux", "succeeded") in hydrations(e),
    )
    assert ("linux", "succeeded") in hydrations(emitted)
    if sdk_retried:
        operation = f"{rule['match']['method']} {rule['match']['resourceType']}"
        assert emitted.metric_points(tm.METRIC_ARM_RETRIES, **{"migrate.arm.operation": operation})
    assert all(
        "/providers/Microsoft.Compute/virtualMachines/hyd-" not in r
        for r in client.resources_of_job(job["id"])
    )
    cleanup = client.run(f"/machines/{linux_machine.id}/test-migrate/cleanup")
    assert cleanup["status"] == "Succeeded", cleanup
    assert_nothing_left(client, linux_machine, job["id"])


def test_a_policy_denying_the_network_falls_back_to_the_target_subnet(
    client: MigrationClient,
    linux_machine: GuestMachine,
    arm_faults: Callable[[dict[str, Any]], None],
) -> None:
    arm_faults(
        {
            "match": {"method": "PUT", "resourceType": f"{NETWORK}/virtualNetworks", "nameRegex": "^hyd-"},
            "fault": "policy",
            "times": 1,
        }
    )
    job = client.run(f"/machines/{linux_machine.id}/test-migrate", {})
    assert job["status"] == "Warning", job  # a step warned: the job says so
    assert client.arm_admin.get("/_admin/faults").json()["value"] == []
    network = next(s for s in job["steps"] if s["name"] == "Create temporary network")
    assert network["status"] == "Warning"
    assert "policy forbids the temporary virtual network" in network["error"]["message"]
    assert client.instance_status(job["id"])["customStatus"]["usedFallbackNetwork"] is True
    cleanup = client.run(f"/machines/{linux_machine.id}/test-migrate/cleanup")
    assert cleanup["status"] == "Succeeded", cleanup
    assert_nothing_left(client, linux_machine, job["id"])


def test_a_failed_cutover_leaves_the_replica_and_replication_resumes(
    client: MigrationClient, linux_machine: GuestMachine, arm_faults: Callable[[dict[str, Any]], None]
) -> None:
    replicator, api = linux_machine.replicator, linux_machine.appliance.api
    replicator.write("data", 4096, b"last write before the cutover".ljust(512, b"."))
    arm_faults(
        {
            "match": {"method": "PUT", "resourceType": f"{COMPUTE}/virtualMachines", "nameRegex": "^hyd-"},
            "fault": "quota",
            "times": 1,
        }
    )
    job_id = client.start(f"/machines/{linux_machine.id}/migrate", {})
    [final] = wait_for(
        lambda: replicator.handle_commands(api), interval=0.5, what="the final cycle's command"
    )
    job = client.wait_job(job_id)
    assert job["status"] == "Failed", job
    assert job["error"]["code"] == "QuotaExceeded"
    steps = {s["name"]: s["status"] for s in job["steps"]}
    assert steps["Run final replication cycle"] == "Succeeded"
    assert steps["Mark migrated and stop replication"] == "Cancelled"
    assert_step_failed_with_the_jobs_error(job)
    assert_nothing_left(client, linux_machine, job_id)
    machine = client.machine(linux_machine.id)
    assert machine["state"] == "Replicating"
    assert final.cycle_id in [p["cycleId"] for p in machine["recoveryPointList"]]
    # The replica holds the final cycle (nothing lost, no resync needed) and replication carries on.
    replica = linux_machine.appliance.replicas.get_blob_client(f"{linux_machine.id}/data.vhd")
    assert (
        replica.download_blob(offset=4096, length=512).readall().startswith(b"last write before the cutover")
    )
    replicator.write("data", 0, b"after".ljust(512, b"."))
    client.wait_applied(linux_machine.id, replicator.run_cycle().cycle_id)


def test_after_a_quota_error_the_throttled_disk_deletes_still_run(
    client: MigrationClient, linux_machine: GuestMachine, arm_faults: Callable[[dict[str, Any]], None]
) -> None:
    arm_faults(
        {
            "match": {"method": "PUT", "resourceType": f"{COMPUTE}/virtualMachines", "nameRegex": "^hyd-"},
            "fault": "quota",
            "times": 1,
        }
    )
    arm_faults(
        {
            "match": {"method": "DELETE", "resourceType": f"{COMPUTE}/disks"},
            "fault": "throttle",
            "times": 4,
            "retryAfter": 1,
        }
    )
    job = client.run(f"/machines/{linux_machine.id}/test-migrate", {})
    assert job["status"] == "Failed", job
    assert job["error"]["code"] == "QuotaExceeded", job["error"]
    assert "sweeper" not in job["error"]["message"], job["error"]["message"]
    assert client.arm_admin.get("/_admin/faults").json()["value"] == []
    assert_nothing_left(client, linux_machine, job["id"])
    assert machine_state(client, linux_machine.id) == "Replicating"


def test_a_failed_cleanup_can_be_run_again_and_the_next_test_boots_its_own_disk(
    client: MigrationClient, linux_machine: GuestMachine, arm_faults: Callable[[dict[str, Any]], None]
) -> None:
    first = client.run(f"/machines/{linux_machine.id}/test-migrate", {})
    assert succeeded(first), first
    first_vm = client.instance_status(first["id"])["customStatus"]["vmId"]
    # The test VM's DELETE fails past the clean-up's retries.
    arm_faults(
        {
            "match": {
                "method": "DELETE",
                "resourceType": f"{COMPUTE}/virtualMachines",
                "nameRegex": "-test-[0-9a-f]{6}$",
            },
            "fault": "operationFailure",
            "times": 100,
        }
    )
    failed = client.run(f"/machines/{linux_machine.id}/test-migrate/cleanup", timeout=600)
    assert failed["status"] == "Failed", failed
    [step] = failed["steps"]
    assert (step["status"], step["error"]) == ("Failed", failed["error"]), step
    assert failed["error"]["code"] == "InternalOperationError", failed["error"]
    assert first_vm in failed["error"]["message"] and "run the clean-up again" in failed["error"]["message"]
    assert machine_state(client, linux_machine.id) == "TestMigrated"
    assert first_vm in client.resources_of_job(first["id"])
    assert client.post(f"/machines/{linux_machine.id}/test-migrate", {}).status_code == 409

    client.clear_faults()
    again = client.run(f"/machines/{linux_machine.id}/test-migrate/cleanup")
    assert again["status"] == "Succeeded", again
    assert_nothing_left(client, linux_machine, first["id"])
    assert machine_state(client, linux_machine.id) == "Replicating"

    second = client.run(f"/machines/{linux_machine.id}/test-migrate", {})
    assert succeeded(second), second
    second_vm = client.instance_status(second["id"])["customStatus"]["vmId"]
    assert second_vm != first_vm
    os_disk, _ = client.vm_disks(second_vm)
    assert os_disk in client.resources_of_job(second["id"])  # booted from this test's own disk
    cleanup = client.run(f"/machines/{linux_machine.id}/test-migrate/cleanup")
    assert cleanup["status"] == "Succeeded", cleanup
    assert_nothing_left(client, linux_machine, second["id"])


def test_a_shutdown_the_appliance_never_confirms_fails_the_cutover_before_anything_is_built(
    client: MigrationClient, linux_machine: GuestMachine
) -> None:
    # The appliance does not poll its commands (it runs last in this module: what it leaves queued is
    # nobody's business). The stack waits 10 s for the confirmation.
    job_id = client.start(f"/machines/{linux_machine.id}/migrate", {"shutdownSource": True})
    job = client.wait_job(job_id)
    assert job["status"] == "Failed", job
    assert job["error"]["code"] == "SourceShutdownNotConfirmed", job["error"]
    assert "did not confirm within 10 s" in job["error"]["message"]
    steps = {s["name"]: s for s in job["steps"]}
    assert (steps["Shut down source VM"]["status"], steps["Shut down source VM"]["error"]) == (
        "Failed",
        job["error"],
    )
    assert steps["Run final replication cycle"]["status"] == "Cancelled"
    assert client.resources_of_job(job_id) == []
    assert machine_state(client, linux_machine.id) == "Replicating"
