"""Typed payloads between the hydration orchestrator and its activities.

Everything an orchestrator needs to decide is in these records, read by activities: orchestrators
never read Cosmos, ARM, storage, the clock or the environment themselves. Each activity takes one of
these (`model_dump` in) and returns one (`model_validate` out): no raw dicts, no results by position.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared.migration.resource_kinds import DELETE_ORDER, ResourceKind, resource_id

__all__ = ["DELETE_ORDER", "ResourceKind"]


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True)


class HydrationRequest(Payload):
    """What a test migration or a migration asks of hydration: plan from this recovery point, then build."""

    machine_id: str
    job_id: str
    test: bool = Field(description="a test migration: the VM goes into the isolated test VNet")
    prepared_manually: bool = False
    recovery_point_id: str | None = Field(default=None, description="None: the latest recovery point")
    test_virtual_network: str | None = Field(
        default=None, description="test migration: overrides the target's"
    )
    failover: bool = Field(
        default=False, description="a failover: the VM is built from the failover settings, not the target's"
    )
    disks_only: bool = Field(
        default=False,
        description="a change of recovery point: prepare the disks for the existing VM, create no NIC or VM",
    )


class DiskPlan(Payload):
    disk_id: str
    is_os_disk: bool
    size_bytes: int
    snapshot: str = Field(description="the replica's blob snapshot of the chosen recovery point")
    hydrate: bool = Field(description="attached to the helper (Windows: the OS disk; Linux: every disk)")
    sku: str | None = Field(default=None, description="this disk's managed disk type; None: the plan's")


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
    disks_only: bool = Field(default=False, description="prepare the disks only: no NIC, no VM")
    job_steps: dict[str, str] = Field(
        default_factory=dict,
        description="hydration's step names shown under another job step (a failover's one 'Hydrate')",
    )
    baseline_snapshots: bool = Field(
        default=False,
        description=(
            "take an incremental snapshot of each imported disk before it is prepared: a failover's failback "
            "baseline, so it holds the recovery point's content and later snapshots of the same disks diff "
            "against it"
        ),
    )


def arm_id(plan: HydrationPlan, kind: ResourceKind, *names: str) -> str:
    """The id a resource will have: known before it is created, so it is recorded before the create call."""
    return resource_id(kind, plan.subscription_id, plan.resource_group, *names)


class Resource(Payload):
    """A resource a flow is about to create (recorded before the create call) or created."""

    kind: ResourceKind
    id: str = Field(description="ARM id, or for BLOB the blob name in the replica container")


class _Create(Payload):
    """One create-and-wait; the name is decided by the orchestrator, so the id is known beforehand."""

    plan: HydrationPlan
    name: str
    purpose: Literal["temporary", "final"] = "temporary"


class ImportDisk(_Create):
    """A server-side copy of the recovery point's snapshot to its own blob, and a disk imported from it."""

    kind: Literal["import_disk"] = "import_disk"
    disk: DiskPlan


class CreateVirtualNetwork(_Create):
    """The helper's VNet with its one subnet."""

    kind: Literal["virtual_network"] = "virtual_network"


class CreateNetworkSecurityGroup(_Create):
    """The helper's NSG: its storage account and Azure's platform address only."""

    kind: Literal["network_security_group"] = "network_security_group"


class CreateNetworkInterface(_Create):
    kind: Literal["network_interface"] = "network_interface"
    subnet_id: str
    nsg_id: str | None = None
    private_ip_address: str | None = None


class CreateHelperVm(_Create):
    """The temporary Linux VM with the disks to prepare at LUN 0..n."""

    kind: Literal["helper_vm"] = "helper_vm"
    nic_id: str
    disk_ids: list[str]


class CreateVm(_Create):
    """The migrated (or test) VM from the prepared OS disk and the data disks."""

    kind: Literal["vm"] = "vm"
    nic_id: str
    os_disk_id: str
    data_disk_ids: list[str]


class SnapshotDisk(_Create):
    """An incremental snapshot of an imported disk, taken before the helper VM changes it."""

    kind: Literal["incremental_snapshot"] = "incremental_snapshot"
    disk_id: str


BASELINE_SNAPSHOTS_STEP = "Take failback baseline snapshots"


def baseline_snapshot_name(disk_name: str, job_id: str) -> str:
    """The name of the failback baseline snapshot of a disk, next to it: known before it is taken."""
    return f"{disk_name[:60]}-fb-{job_id[-12:]}"


CreateRequest = Annotated[
    ImportDisk
    | SnapshotDisk
    | CreateVirtualNetwork
    | CreateNetworkSecurityGroup
    | CreateNetworkInterface
    | CreateHelperVm
    | CreateVm,
    Field(discriminator="kind"),
]
CREATE_REQUEST: TypeAdapter[CreateRequest] = TypeAdapter(CreateRequest)


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
    retry_after_seconds: float | None = Field(
        default=None,
        description="not done yet (a blob copy is running): ask again after this long; the orchestration "
        "waits with a durable timer",
    )


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
    arm_code: str | None = Field(
        default=None, description="not_run: ARM's error code for the extension that could not be run"
    )


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
    step: str | None = Field(
        default=None, description="the job step that failed; None: the step that was running"
    )


class HydrationOutcome(Payload):
    result: HydrationResult | None = None
    failure: HydrationFailure | None = None


class PlanOutcome(Payload):
    """The plan, or why there is none (a problem the operator must fix, not retried in vain)."""

    plan: HydrationPlan | None = None
    failure: HydrationFailure | None = None


class RecoveryPointRelease(Payload):
    machine_id: str
    job_id: str


class ReleasedSnapshots(Payload):
    deleted: list[str] = Field(description="pinned snapshots retention had dropped meanwhile, now deleted")


class ToolkitStaging(Payload):
    job_id: str


class ToolkitStaged(Payload):
    blob_name: str


class HydrationMetric(Payload):
    seconds: float
    machine_id: str
    os_family: str
    outcome: Literal["succeeded", "failed"]


class Done(Payload):
    """What an activity with nothing to tell returns."""
