"""Typed payloads between the hydration / test-migration / migration orchestrators and their activities.

Everything an orchestrator needs to decide is in these records, read by activities: orchestrators
never read Cosmos, ARM, storage, the clock or the environment themselves.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.migration.resource_kinds import DELETE_ORDER, ResourceKind, resource_id

__all__ = ["DELETE_ORDER", "ResourceKind"]


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True)


class JobInput(Payload):
    """The input of a job orchestration (`job-{jobId}`), written by the HTTP starter."""

    machine_id: str
    job_id: str
    prepared_manually: bool = False
    recovery_point_id: str | None = Field(default=None, description="None: the latest recovery point")
    shutdown_source: bool = False
    test_job_id: str | None = Field(default=None, description="cleanup: the test migration it undoes")
    test_virtual_network: str | None = Field(
        default=None, description="test migration: overrides the target's"
    )


class DiskPlan(Payload):
    disk_id: str
    is_os_disk: bool
    size_bytes: int
    snapshot: str = Field(description="the replica's blob snapshot of the chosen recovery point")
    hydrate: bool = Field(description="attached to the helper (Windows: the OS disk; Linux: every disk)")


class NetworkPlacement(Payload):
    """Where a NIC goes: an existing VNet's subnet (the target's or the test VNet's)."""

    vnet_id: str
    subnet_id: str
    location: str


class HydrationPlan(Payload):
    """Everything the hydration sub-orchestration needs, resolved by `plan_hydration` once."""

    machine_id: str
    job_id: str
    subscription_id: str
    resource_group: str
    location: str
    os_type: Literal["Windows", "Linux"]
    hyper_v_generation: Literal["V1", "V2"]
    recovery_point_id: str
    disks: list[DiskPlan]
    name_prefix: str = Field(description="temporary resources are named {prefix}-vnet, -nsg, -nic, -vm, ...")
    final_vm_name: str
    final_vm_size: str
    final_disk_sku: str
    final_placement: NetworkPlacement
    fallback_placement: NetworkPlacement = Field(
        description="the replication target's subnet (policy fallback)"
    )
    static_ip_address: str | None = None
    purpose: Literal["temporary", "final"] = Field(description="tag of the final VM and its disks")
    prepared_manually: bool = False
    helper_vm_size: str
    helper_address_prefix: str
    helper_subnet_prefix: str
    storage_account_id: str
    storage_region: str


def arm_id(plan: HydrationPlan, kind: ResourceKind, *names: str) -> str:
    """The id a resource will have: known before it is created, so it is recorded before the create call."""
    return resource_id(kind, plan.subscription_id, plan.resource_group, *names)


class Resource(Payload):
    """A resource a flow is about to create (recorded before the create call) or created."""

    kind: ResourceKind
    id: str = Field(description="ARM id, or for BLOB the blob name in the replica container")


class CreateRequest(Payload):
    """One create-and-wait. `spec` fields depend on the kind; names are decided by the orchestrator."""

    plan: HydrationPlan
    kind: Literal["copy_import", "vnet", "nsg", "nic", "helper_vm", "final_vm"]
    name: str
    disk: DiskPlan | None = None
    subnet_id: str | None = None
    nsg_id: str | None = None
    nic_id: str | None = None
    disk_ids: list[str] = Field(default_factory=list)
    os_disk_id: str | None = None
    purpose: Literal["temporary", "final"] = "temporary"
    private_ip_address: str | None = None


class CreateResult(Payload):
    """The outcome of a create: ARM errors are values (the orchestrator decides), so a failure in one
    branch of a fan-out never leaves the others running unobserved."""

    ok: bool
    id: str | None = None
    subnet_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    policy_denied: bool = False
    arm_waits: int = Field(default=0, description="sequential ARM waits inside this activity")


class PreparationRequest(Payload):
    plan: HydrationPlan
    vm_name: str


class PreparedStep(Payload):
    name: str
    status: str
    message: str = ""


class PreparationResult(Payload):
    """The toolkit's verdict: exit status, its full report (from the report blob) and the output tails."""

    exit_status: int | None
    status: Literal["succeeded", "failed", "manual_preparation_required", "not_run"]
    message: str
    os_description: str | None = None
    steps: list[PreparedStep] = Field(default_factory=list)
    changes: list[str] = Field(default_factory=list)
    manual_steps: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    stdout_tail: str = ""
    report_blob: str | None = None


class DeleteRequest(Payload):
    resource: Resource


class StepUpdate(Payload):
    name: str
    status: Literal["InProgress", "Succeeded", "Failed", "Warning", "Cancelled"]
    message: str | None = None


class JobProgress(Payload):
    """Step updates for one job; `add_after` inserts steps (the toolkit's) after a named step."""

    job_id: str
    updates: list[StepUpdate] = Field(default_factory=list)
    add_after: str | None = None
    added: list[StepUpdate] = Field(default_factory=list)


class HydrationResult(Payload):
    vm_id: str
    nic_id: str
    os_disk_id: str
    data_disk_ids: list[str]
    final_resources: list[Resource]
    arm_waits_critical_path: int
    hydration_seconds: float
    used_fallback_network: bool
    preparation: PreparationResult | None


class HydrationFailure(Payload):
    """What a failed hydration tells its parent (the sub-orchestration's output, not an exception, so
    the parent gets the code and message intact)."""

    code: str
    message: str


class HydrationOutcome(Payload):
    result: HydrationResult | None = None
    failure: HydrationFailure | None = None


class JobOutcome(Payload):
    """How a job orchestration ends the job and moves the machine."""

    machine_id: str
    job_id: str
    succeeded: bool
    error_code: str | None = None
    error_message: str | None = None
    result: HydrationResult | None = None


class FinalCycleRequest(Payload):
    machine_id: str
    job_id: str
    shutdown_source: bool


class FinalCycleWatch(Payload):
    machine_id: str
    job_id: str


class FinalCycleState(Payload):
    applied: bool
    rejected: bool = False
    recovery_point_id: str | None = None
    message: str = ""


class FinalCycleStarted(Payload):
    poll_seconds: float
    timeout_seconds: float


class TestResources(Payload):
    """What a test migration left for its cleanup, found by tag in ARM."""

    resources: list[Resource]
