"""The hydration orchestrator's decisions, through the real SDK replay with stub activities.

Written against what hydration promises, not how its activities are cut: a fake cloud records what
exists; the stubs (the only part that knows the activities' names and payloads, in `Cloud.stubs`) create
and delete in it. The tests then check which resources are created in which order group, that a failure
at any step leaves nothing behind, that manual preparation skips the helper, and the result.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devhost.durable import ManualClock
from orchestrators.hydration import activities as hydration_activities
from orchestrators.hydration import orchestrator as hydration
from orchestrators.hydration.contracts import (
    CreateRequest,
    CreateResult,
    DeleteRequest,
    DiskPlan,
    HydrationOutcome,
    HydrationPlan,
    JobProgress,
    NetworkPlacement,
    PreparationResult,
    PreparedStep,
    ResourceKind,
    arm_id,
)
from shared.migration import service as m
from shared.replication.replica_disks import recovery_point_copy_name
from tests.orchestrators.conftest import Run, run, running

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
BLUEPRINTS = [hydration.bp, hydration_activities.bp]
INSTANCE = "job-hyd-1-hydration"


def _id(provider_type: str, name: str) -> str:
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-target/providers/{provider_type}/{name}"


def make_plan(*, manual: bool = False, os_type: str = "Linux") -> HydrationPlan:
    target = NetworkPlacement(
        vnet_id=_id("Microsoft.Network/virtualNetworks", "vnet-target"),
        subnet_id=_id("Microsoft.Network/virtualNetworks", "vnet-target/subnets/default"),
        location="westeurope",
    )
    return HydrationPlan(
        machine_id="vm-1",
        job_id="job-000042",
        subscription_id=SUBSCRIPTION,
        resource_group="rg-target",
        location="westeurope",
        os_type=os_type,  # type: ignore[arg-type]
        hyper_v_generation="V1",
        recovery_point_id="0000000007-c7",
        disks=[
            DiskPlan(disk_id="os", is_os_disk=True, size_bytes=8 * 1024**3, snapshot="s1", hydrate=True),
            DiskPlan(
                disk_id="data",
                is_os_disk=False,
                size_bytes=4 * 1024**3,
                snapshot="s2",
                hydrate=os_type == "Linux",
            ),
        ],
        name_prefix="hyd-000042",
        final_vm_name="db01",
        final_vm_size="Standard_D2s_v3",
        final_disk_sku="Premium_LRS",
        final_placement=target,
        fallback_placement=target,
        purpose="final",
        prepared_manually=manual,
        helper_vm_size="Standard_B2s",
        helper_address_prefix="10.250.0.0/24",
        helper_subnet_prefix="10.250.0.0/26",
        storage_account_id=_id("Microsoft.Storage/storageAccounts", "replicas"),
        storage_region="westeurope",
    )


# Where a hydration can fail, by the step that creates (or runs) something.
FAILING_STEPS = ["disk", "final_nic", "vnet", "nsg", "helper_nic", "helper_vm", "preparation", "final_vm"]


@dataclass
class Cloud:
    """What exists in the fake subscription (ARM ids; recovery-point copies by blob name)."""

    fail_at: str | None = None
    crash_at: str | None = None  # created, then the activity fails every attempt (the answer is lost)
    policy_denies_vnet: bool = False
    preparation: str = "succeeded"
    existing: set[str] = field(default_factory=set)
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _create(self, step: str, *ids: str) -> CreateResult | None:
        """None when created; the failed result when this step is the one that fails."""
        if self.fail_at == step:
            return CreateResult(ok=False, error_code=f"{step}Failed", error_message=f"{step} refused")
        with self.lock:
            for resource_id in ids:
                if resource_id not in self.existing:
                    self.existing.add(resource_id)
                    self.created.append(resource_id)
        if self.crash_at == step:
            raise RuntimeError(f"the host died after creating {step}")
        return None

    # --- the activities (the only place that knows their names and payloads) ---------------------

    def create_resource(self, payload: Any) -> Any:
        request = CreateRequest.model_validate(payload)
        plan = request.plan
        step, ids, extra = self._describe(request)
        if step == "vnet" and self.policy_denies_vnet:
            return CreateResult(
                ok=False, policy_denied=True, error_code="RequestDisallowedByPolicy", error_message="denied"
            ).model_dump(mode="json")
        failed = self._create(step, *ids)
        if failed is not None:
            return failed.model_dump(mode="json")
        vnet_subnet = f"{arm_id(plan, 'Microsoft.Network/virtualNetworks', request.name)}/subnets/hydration"
        return CreateResult(
            ok=True, id=ids[-1], subnet_id=vnet_subnet if step == "vnet" else None, **extra
        ).model_dump(mode="json")

    def _describe(self, request: CreateRequest) -> tuple[str, list[str], dict[str, Any]]:
        plan, name = request.plan, request.name
        if request.kind == "copy_import":
            assert request.disk is not None
            blob = recovery_point_copy_name(
                plan.machine_id, request.disk.disk_id, request.disk.snapshot, plan.job_id
            )
            return "disk", [blob, arm_id(plan, "Microsoft.Compute/disks", name)], {}
        if request.kind == "vnet":
            vnet = arm_id(plan, "Microsoft.Network/virtualNetworks", name)
            return "vnet", [f"{vnet}/subnets/hydration", vnet], {}
        if request.kind == "nsg":
            return "nsg", [arm_id(plan, "Microsoft.Network/networkSecurityGroups", name)], {}
        if request.kind == "nic":
            step = "final_nic" if request.purpose == "final" else "helper_nic"
            return step, [arm_id(plan, "Microsoft.Network/networkInterfaces", name)], {}
        if request.kind == "helper_vm":
            return "helper_vm", [arm_id(plan, "Microsoft.Compute/virtualMachines", name)], {}
        return "final_vm", [arm_id(plan, "Microsoft.Compute/virtualMachines", name)], {}

    def delete_resource(self, payload: Any) -> Any:
        resource = DeleteRequest.model_validate(payload).resource
        with self.lock:
            self.existing.discard(resource.id)
            self.deleted.append(resource.id)
        return resource.id

    def run_preparation(self, payload: Any) -> Any:
        if self.fail_at == "preparation":
            return PreparationResult(
                exit_status=1, status="failed", message="grub-install failed"
            ).model_dump(mode="json")
        if self.preparation == "manual":
            return PreparationResult(
                exit_status=3,
                status="manual_preparation_required",
                message="unsupported",
                os_description="Slackware 15",
                manual_steps=["install the Azure agent"],
            ).model_dump(mode="json")
        return PreparationResult(
            exit_status=0,
            status="succeeded",
            message="prepared",
            os_description="Ubuntu 20.04",
            steps=[PreparedStep(name="validate_fstab", status="changed", message="by UUID")],
        ).model_dump(mode="json")

    def stubs(self) -> dict[str, Any]:
        def nothing(payload: Any) -> None:
            return None

        return {
            "create_resource": self.create_resource,
            "delete_resource": self.delete_resource,
            "run_preparation": self.run_preparation,
            "stage_toolkit": lambda payload: "toolkit/hydration.tar.gz",
            "release_recovery_point": lambda payload: [],
            "record_job_progress": nothing,
            "record_hydration_metric": nothing,
        }


async def hydrate(r: Run, plan: HydrationPlan) -> HydrationOutcome:
    await r.start(hydration.HYDRATION, INSTANCE, plan.model_dump(mode="json"))
    status = await r.finish(INSTANCE, step=5)
    assert status["runtimeStatus"] == "Completed", status
    return HydrationOutcome.model_validate(status["output"])


def created_by_step(r: Run) -> list[tuple[int, str]]:
    """(position in the call log, step) of each create or run, in call order."""
    cloud_steps = []
    for index, (name, payload) in enumerate(r.calls.made):
        if name == "create_resource":
            cloud_steps.append((index, Cloud()._describe(CreateRequest.model_validate(payload))[0]))
        elif name in ("run_preparation", "stage_toolkit", "release_recovery_point"):
            cloud_steps.append((index, name))
        elif name == "delete_resource":
            kind = DeleteRequest.model_validate(payload).resource.kind.value
            cloud_steps.append((index, f"delete {kind}"))
    return cloud_steps


def assert_groups_in_order(r: Run, groups: list[set[str]]) -> None:
    """Every step of a group runs after every step of the groups before it."""
    positions = created_by_step(r)
    last = -1
    for group in groups:
        indexes = [i for i, step in positions if step in group]
        assert {step for _, step in positions if step in group} == group, (group, positions)
        assert min(indexes) > last, (group, positions)
        last = max(indexes)


def steps_recorded(r: Run) -> list[tuple[str, str]]:
    return [
        (u.name, u.status)
        for p in r.calls.of("record_job_progress")
        for u in JobProgress.model_validate(p).updates
    ]


def metric_outcomes(r: Run) -> list[str]:
    return [p["outcome"] for p in r.calls.of("record_hydration_metric")]


def test_hydration_creates_in_six_waits_and_leaves_only_the_vm_its_nic_and_disks(tmp_path: Path) -> None:
    cloud = Cloud()
    plan = make_plan()

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, plan)
            assert outcome.failure is None and outcome.result is not None
            result = outcome.result
            vm = arm_id(plan, "Microsoft.Compute/virtualMachines", "db01")
            assert result.vm_id == vm
            assert result.arm_waits_critical_path == 6
            assert not result.used_fallback_network
            assert result.preparation is not None and result.preparation.status == "succeeded"
            disks = {r.id for r in result.final_resources if r.kind is ResourceKind.DISK}
            assert cloud.existing == {vm, result.nic_id, *disks}
            assert {result.os_disk_id, *result.data_disk_ids} == disks
            assert_groups_in_order(
                r,
                [
                    {"disk", "final_nic", "vnet", "nsg", "stage_toolkit"},
                    {"helper_nic", "release_recovery_point"},
                    {"helper_vm"},
                    {"run_preparation"},
                    {"delete vm"},
                    {"final_vm", "delete subnet", "delete nsg", "delete nic", "delete blob"},
                    {"delete vnet"},
                ],
            )
            assert (m.PREPARE_STEP_PREFIX + "validate_fstab (changed)", "Succeeded") in [
                (u["name"], u["status"]) for p in r.calls.of("record_job_progress") for u in p["added"]
            ]
            assert steps_recorded(r)[-2:] == [
                (m.STEP_DELETE_TEMPORARY, "Succeeded"),
                (m.STEP_CREATE_VM, "Succeeded"),
            ]
            assert metric_outcomes(r) == ["succeeded"]

    run(scenario())


def test_manual_preparation_skips_the_helper_and_its_network(tmp_path: Path) -> None:
    cloud = Cloud()
    plan = make_plan(manual=True)

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, plan)
            assert outcome.result is not None
            steps = {step for _, step in created_by_step(r)}
            assert steps == {"disk", "final_nic", "final_vm", "delete blob", "release_recovery_point"}
            assert r.calls.of("run_preparation") == [] and r.calls.of("stage_toolkit") == []
            assert outcome.result.arm_waits_critical_path == 2
            assert outcome.result.preparation is None
            recorded = steps_recorded(r)
            assert (m.STEP_PREPARE, "Warning") in recorded
            assert {s for s, status in recorded if status == "Cancelled"} == set(m.HELPER_STEPS) - {
                m.STEP_PREPARE
            }
            assert_groups_in_order(
                r, [{"disk", "final_nic"}, {"final_vm", "delete blob", "release_recovery_point"}]
            )
            vm = arm_id(plan, "Microsoft.Compute/virtualMachines", "db01")
            assert vm in cloud.existing and not any(e.startswith(plan.machine_id) for e in cloud.existing)

    run(scenario())


@pytest.mark.parametrize("step", FAILING_STEPS)
def test_a_failure_at_each_step_deletes_everything_created(tmp_path: Path, step: str) -> None:
    cloud = Cloud(fail_at=step)

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, make_plan())
            assert outcome.result is None and outcome.failure is not None
            if step == "preparation":
                assert outcome.failure.code == "PreparationFailed"
            else:
                assert outcome.failure.code == f"{step}Failed"
            assert cloud.created, "something was created before the failure"
            assert cloud.existing == set(), f"left behind: {cloud.existing}"
            assert len(r.calls.of("release_recovery_point")) >= 1, "the recovery point is released"
            assert metric_outcomes(r) == ["failed"]

    run(scenario())


@pytest.mark.parametrize("step", ["helper_vm", "final_vm"])
def test_a_resource_whose_creation_answer_was_lost_is_still_deleted(tmp_path: Path, step: str) -> None:
    # Recorded before the call that creates it: a create that happened but never answered is compensated.
    cloud = Cloud(crash_at=step)

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, make_plan())
            assert outcome.failure is not None
            assert any("virtualMachines" in c for c in cloud.created)
            assert cloud.existing == set(), f"left behind: {cloud.existing}"

    run(scenario())


def test_manual_preparation_required_fails_with_its_code_and_cleans_up(tmp_path: Path) -> None:
    cloud = Cloud(preparation="manual")

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, make_plan())
            assert outcome.failure is not None
            assert outcome.failure.code == m.MANUAL_PREPARATION_REQUIRED
            assert "preparedManually" in outcome.failure.message
            assert cloud.existing == set()
            assert r.calls.of("create_resource")[-1]["kind"] == "helper_vm", (
                "no VM after a failed preparation"
            )

    run(scenario())


def test_a_policy_denying_the_helper_network_falls_back_to_the_target_subnet(tmp_path: Path) -> None:
    cloud = Cloud(policy_denies_vnet=True)
    plan = make_plan()

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, plan)
            assert outcome.result is not None and outcome.result.used_fallback_network
            (helper_nic,) = [
                CreateRequest.model_validate(p)
                for p in r.calls.of("create_resource")
                if p["kind"] == "nic" and p["purpose"] == "temporary"
            ]
            assert helper_nic.subnet_id == plan.fallback_placement.subnet_id
            assert (m.STEP_HELPER_NETWORK, "Warning") in steps_recorded(r)

    run(scenario())
