"""The hydration itinerary driven step by step with stub activities: the ARM waits on the critical path
(6, or 2 with preparedManually), the parallel groups, the job steps the operator sees, and compensation
deleting everything recorded, in the resource kinds' order, when a step fails."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrators.hydration.contracts import (
    CREATE_REQUEST,
    CreateHelperVm,
    CreateNetworkInterface,
    CreateNetworkSecurityGroup,
    CreateResult,
    CreateVirtualNetwork,
    CreateVm,
    DeleteRequest,
    DiskPlan,
    Done,
    HydrationOutcome,
    HydrationPlan,
    ImportDisk,
    JobProgress,
    NetworkPlacement,
    PreparationResult,
    PreparedStep,
    ReleasedSnapshots,
    Resource,
    ToolkitStaged,
)
from orchestrators.hydration.orchestrator import hydrate
from shared.migration import service as m
from shared.migration.resource_kinds import DELETE_ORDER, ResourceKind, resource_id

SUB, RG = "sub-1", "rg-target"
SUBNET = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/virtualNetworks/target/subnets/default"
FALLBACK = NetworkPlacement(vnet_id=SUBNET.rsplit("/subnets/", 1)[0], subnet_id=SUBNET, location="westeurope")


def make_plan(*, prepared_manually: bool = False) -> HydrationPlan:
    return HydrationPlan(
        machine_id="vm-1",
        job_id="job-0123456789abcdef",
        subscription_id=SUB,
        resource_group=RG,
        location="westeurope",
        os_type="Linux",
        hyper_v_generation="V1",
        recovery_point_id="rp-1",
        disks=[
            DiskPlan(disk_id="os", is_os_disk=True, size_bytes=1, snapshot="s-os", hydrate=True),
            DiskPlan(disk_id="data", is_os_disk=False, size_bytes=1, snapshot="s-data", hydrate=True),
        ],
        name_prefix="hyd-89abcdef",
        final_vm_name="web01-test",
        final_vm_size="Standard_B2s",
        final_disk_sku="Standard_LRS",
        final_placement=FALLBACK,
        fallback_placement=FALLBACK,
        purpose="temporary",
        prepared_manually=prepared_manually,
        helper_vm_size="Standard_D2s_v5",
        helper_address_prefix="10.254.0.0/24",
        helper_subnet_prefix="10.254.0.0/26",
        storage_account_id="/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a",
        storage_region="westeurope",
    )


@dataclass
class Task:
    activity: str
    payload: dict[str, Any]


@dataclass
class TaskAll:
    tasks: list[Task]


class ActivityFailed(Exception):
    pass


class FakeContext:
    """Just what the hydration orchestrator asks of its context; tasks are answered by the driver."""

    def __init__(self, plan: HydrationPlan) -> None:
        self._input = plan.model_dump(mode="json")
        self.current_utc_datetime = datetime(2026, 5, 1, tzinfo=UTC)

    def get_input(self) -> dict[str, Any]:
        return self._input

    def call_activity_with_retry(self, activity: Any, retry: Any, payload: dict[str, Any]) -> Task:
        return Task(activity._function._name, payload)

    def task_all(self, tasks: list[Task]) -> TaskAll:
        return TaskAll(tasks)


_CREATED_KIND = {
    ImportDisk: ResourceKind.DISK,
    CreateVirtualNetwork: ResourceKind.VNET,
    CreateNetworkSecurityGroup: ResourceKind.NSG,
    CreateNetworkInterface: ResourceKind.NIC,
    CreateHelperVm: ResourceKind.VM,
    CreateVm: ResourceKind.VM,
}


@dataclass
class Stubs:
    """Stub activities: what was scheduled, in which waves, and what the job's steps became."""

    fail_create: Callable[[Any], CreateResult | None] = lambda request: None
    fail_delete: Callable[[Resource], bool] = lambda resource: False
    preparation: PreparationResult = field(
        default_factory=lambda: PreparationResult(
            exit_status=0,
            status="succeeded",
            message="ok",
            steps=[PreparedStep(name="validate_fstab", status="changed")],
        )
    )
    waves: list[list[str]] = field(default_factory=list)
    created: list[Any] = field(default_factory=list)
    deleted: list[Resource] = field(default_factory=list)
    steps: dict[str, str] = field(default_factory=dict)
    step_order: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def answer(self, task: Task) -> Any:
        payload = task.payload
        self.calls.append(task.activity)
        if task.activity == "record_job_progress":
            progress = JobProgress.model_validate(payload)
            for update in [*progress.updates, *progress.added]:
                self.steps[update.name] = update.status
                self.step_order.append(update.name)
            return Done().model_dump()
        if task.activity == "create_resource":
            request = CREATE_REQUEST.validate_python(payload)
            self.created.append(request)
            failed = self.fail_create(request)
            if failed is not None:
                return failed.model_dump()
            kind = _CREATED_KIND[type(request)]
            arm_id = resource_id(kind, SUB, RG, request.name)
            subnet = resource_id(ResourceKind.SUBNET, SUB, RG, request.name, "hydration")
            return CreateResult(
                ok=True, id=arm_id, subnet_id=subnet if kind is ResourceKind.VNET else None, arm_waits=1
            ).model_dump()
        if task.activity == "delete_resource":
            resource = DeleteRequest.model_validate(payload).resource
            if self.fail_delete(resource):
                raise ActivityFailed(f"could not delete {resource.id}")
            self.deleted.append(resource)
            return resource.model_dump()
        if task.activity == "run_preparation":
            return self.preparation.model_dump()
        if task.activity == "stage_toolkit":
            return ToolkitStaged(blob_name="toolkit.tar.gz").model_dump()
        if task.activity == "release_recovery_point":
            return ReleasedSnapshots(deleted=[]).model_dump()
        assert task.activity == "record_hydration_metric", task.activity
        return Done().model_dump()

    def drive(self, plan: HydrationPlan) -> HydrationOutcome:
        orchestration: Generator[Any, Any, Any] = hydrate(FakeContext(plan))
        value: Any = None
        error: Exception | None = None
        while True:
            try:
                yielded = orchestration.throw(error) if error else orchestration.send(value)
            except StopIteration as stop:
                return HydrationOutcome.model_validate(stop.value)
            value, error = None, None
            try:
                if isinstance(yielded, TaskAll):
                    self.waves.append([t.activity for t in yielded.tasks])
                    value = [self.answer(t) for t in yielded.tasks]
                else:
                    value = self.answer(yielded)
            except ActivityFailed as exc:
                error = exc

    def arm_waves(self) -> list[list[str]]:
        """The parallel groups that contain an ARM create or delete."""
        return [w for w in self.waves if {"create_resource", "delete_resource"} & set(w)]


def test_the_helper_path_is_six_arm_waits_and_leaves_only_the_vm() -> None:
    stubs = Stubs()
    outcome = stubs.drive(make_plan())
    assert outcome.failure is None and outcome.result is not None
    result = outcome.result
    assert result.arm_waits_critical_path == 6
    # Import x2 || VM NIC || VNet || NSG || toolkit; then helper NIC || release; helper VM; toolkit; ...
    assert sorted(stubs.waves[0]) == sorted(["create_resource"] * 5 + ["stage_toolkit"])
    assert sorted(stubs.waves[1]) == ["create_resource", "release_recovery_point"]
    assert stubs.waves[2] == ["create_resource"]
    assert stubs.waves[3] == ["run_preparation"]
    assert stubs.waves[4] == ["delete_resource"]
    assert stubs.waves[5][0] == "create_resource" and set(stubs.waves[5][1:]) == {"delete_resource"}
    assert [type(r).__name__ for r in stubs.created][-1] == "CreateVm"
    assert {r.kind for r in result.final_resources} == {ResourceKind.VM, ResourceKind.NIC, ResourceKind.DISK}
    assert len(result.final_resources) == 4
    # Every temporary resource went: the helper VM, its NIC, subnet, VNet, NSG and the copies.
    deleted = {(r.kind, r.id.rsplit("/", 1)[-1]) for r in stubs.deleted}
    assert {
        (ResourceKind.VM, "hyd-89abcdef-vm"),
        (ResourceKind.NIC, "hyd-89abcdef-nic"),
        (ResourceKind.SUBNET, "hydration"),
        (ResourceKind.VNET, "hyd-89abcdef-vnet"),
        (ResourceKind.NSG, "hyd-89abcdef-nsg"),
    } <= deleted
    assert sum(r.kind is ResourceKind.BLOB for r in stubs.deleted) == 2
    assert stubs.deleted[-1].kind is ResourceKind.VNET  # after its subnet
    assert all(stubs.steps[s] == "Succeeded" for s in m.HYDRATION_STEPS), stubs.steps
    assert stubs.steps[f"{m.PREPARE_STEP_PREFIX}validate_fstab (changed)"] == "Succeeded"
    # The operator sees the steps begin in the runbook's order.
    firsts = list(dict.fromkeys(stubs.step_order))
    assert [s for s in firsts if s in m.HYDRATION_STEPS] == list(m.HYDRATION_STEPS)


def test_prepared_manually_skips_the_helper_by_condition_in_two_arm_waits() -> None:
    stubs = Stubs()
    outcome = stubs.drive(make_plan(prepared_manually=True))
    assert outcome.result is not None
    assert outcome.result.arm_waits_critical_path == 2
    assert outcome.result.preparation is None
    assert len(stubs.arm_waves()) == 2
    assert not any(isinstance(r, CreateHelperVm | CreateVirtualNetwork) for r in stubs.created)
    assert "release_recovery_point" in stubs.waves[1]
    assert {r.kind for r in stubs.deleted} == {ResourceKind.BLOB}
    assert stubs.steps[m.STEP_HELPER_VM] == "Cancelled"
    assert stubs.steps[m.STEP_HELPER_NETWORK] == "Cancelled"
    assert stubs.steps[m.STEP_DELETE_TEMPORARY] == "Cancelled"
    assert stubs.steps[m.STEP_PREPARE] == "Warning"
    assert stubs.steps[m.STEP_CREATE_VM] == "Succeeded"


def _rank(resource: Resource) -> int:
    return DELETE_ORDER.index(resource.kind)


def test_a_failing_helper_vm_compensates_everything_in_kind_order() -> None:
    stubs = Stubs(
        fail_create=lambda r: (
            CreateResult(ok=False, error_code="QuotaExceeded", error_message="no cores", arm_waits=1)
            if isinstance(r, CreateHelperVm)
            else None
        )
    )
    outcome = stubs.drive(make_plan())
    assert outcome.failure is not None
    assert outcome.failure.code == "QuotaExceeded"
    assert "temporary VM" in outcome.failure.message
    assert stubs.steps[m.STEP_HELPER_VM] == "Failed"
    ranks = [_rank(r) for r in stubs.deleted]
    assert ranks == sorted(ranks)
    kinds = {r.kind for r in stubs.deleted}
    assert kinds == {
        ResourceKind.VM,
        ResourceKind.NIC,
        ResourceKind.SUBNET,
        ResourceKind.VNET,
        ResourceKind.NSG,
        ResourceKind.DISK,
        ResourceKind.BLOB,
    }
    assert sum(r.kind is ResourceKind.DISK for r in stubs.deleted) == 2
    # The copies failed or not, the recovery point is released again on the way out (idempotent).
    assert stubs.calls.count("release_recovery_point") == 2


def test_a_policy_denying_the_vnet_puts_the_helper_in_the_target_subnet() -> None:
    stubs = Stubs(
        fail_create=lambda r: (
            CreateResult(ok=False, error_code="RequestDisallowedByPolicy", policy_denied=True, arm_waits=1)
            if isinstance(r, CreateVirtualNetwork)
            else None
        )
    )
    outcome = stubs.drive(make_plan())
    assert outcome.result is not None and outcome.result.used_fallback_network
    assert outcome.result.arm_waits_critical_path == 6
    helper_nic = next(r for r in stubs.created if isinstance(r, CreateNetworkInterface) and "hyd-" in r.name)
    assert helper_nic.subnet_id == SUBNET
    assert stubs.steps[m.STEP_HELPER_NETWORK] == "Warning"


def test_a_helper_vm_that_cannot_be_deleted_fails_the_hydration() -> None:
    stubs = Stubs(fail_delete=lambda r: r.kind is ResourceKind.VM and "hyd-" in r.id)
    outcome = stubs.drive(make_plan())
    assert outcome.failure is not None and outcome.failure.code == "DeleteFailed"
    assert "temporary VM" in outcome.failure.message
    assert "sweeper retries" in outcome.failure.message  # compensation could not delete it either


def test_an_unsupported_os_ends_with_manual_preparation_required() -> None:
    stubs = Stubs(
        preparation=PreparationResult(
            exit_status=3,
            status="manual_preparation_required",
            message="",
            os_description="centos 7.2",
            manual_steps=["fix fstab"],
        )
    )
    outcome = stubs.drive(make_plan())
    assert outcome.failure is not None and outcome.failure.code == m.MANUAL_PREPARATION_REQUIRED
    assert "fix fstab" in outcome.failure.message and "preparedManually" in outcome.failure.message
    assert stubs.steps[m.STEP_PREPARE] == "Failed"
    assert {r.kind for r in stubs.deleted} >= {ResourceKind.VM, ResourceKind.DISK, ResourceKind.BLOB}
