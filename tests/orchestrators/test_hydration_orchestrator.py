"""The hydration orchestrator's decisions, through the real SDK replay with stub activities.

Written against what hydration promises, not how its activities are cut: a fake cloud records what
exists; the stubs (the only part that knows the activities' names and payloads, in `Cloud.stubs`) create
and delete in it. The tests then check which resources are created in which order group, that a failure
at any step leaves nothing behind (deleting in the resource-kind table's order), that manual preparation
skips the helper, the job steps the operator sees, and the result.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from devhost.durable import ManualClock
from devhost.durable.history import EventType
from orchestrators.hydration import activities as hydration_activities
from orchestrators.hydration import itinerary
from orchestrators.hydration import orchestrator as hydration
from orchestrators.hydration.contracts import (
    CREATE_REQUEST,
    DELETE_ORDER,
    CreateHelperVm,
    CreateNetworkInterface,
    CreateNetworkSecurityGroup,
    CreateRequest,
    CreateResult,
    CreateVirtualNetwork,
    CreateVm,
    DeleteRequest,
    DiskPlan,
    Done,
    HydrationMetric,
    HydrationOutcome,
    HydrationPlan,
    ImportDisk,
    JobProgress,
    NetworkPlacement,
    PreparationRequest,
    PreparationResult,
    PreparedStep,
    RecoveryPointRelease,
    ReleasedSnapshots,
    Resource,
    ResourceKind,
    SnapshotDisk,
    StepUpdate,
    ToolkitStaged,
    ToolkitStaging,
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


def helper_vm_id(plan: HydrationPlan) -> str:
    return arm_id(plan, ResourceKind.VM, f"{plan.name_prefix}-vm")


# Where a hydration can fail, by the step that creates (or runs) something.
FAILING_STEPS = ["disk", "final_nic", "vnet", "nsg", "helper_nic", "helper_vm", "preparation", "final_vm"]


@dataclass
class Cloud:
    """What exists in the fake subscription (ARM ids; recovery-point copies by blob name)."""

    fail_at: str | None = None
    crash_at: str | None = None  # created, then the activity fails every attempt (the answer is lost)
    policy_denies_vnet: bool = False
    undeletable: set[str] = field(default_factory=set)  # deletes of these fail every attempt
    in_use: set[str] = field(default_factory=set)  # refused, as ARM does, while an undeletable one stands
    preparation: str = "succeeded"
    copy_polls: int = 0  # answers "copy still running" this many times per disk before importing it
    existing: set[str] = field(default_factory=set)
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
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
        request = CREATE_REQUEST.validate_python(payload)
        step, ids = describe(request)
        if step == "vnet" and self.policy_denies_vnet:
            return CreateResult(
                ok=False, policy_denied=True, error_code="RequestDisallowedByPolicy", error_message="denied"
            ).model_dump(mode="json")
        if step == "disk":
            with self.lock:
                polled = self.polls.get(ids[-1], 0)
                self.polls[ids[-1]] = polled + 1
            if polled < self.copy_polls:
                return CreateResult(
                    ok=False,
                    error_code="RecoveryPointCopyPending",
                    error_message="still running",
                    retry_after_seconds=5,
                ).model_dump(mode="json")
        failed = self._create(step, *ids)
        if failed is not None:
            return failed.model_dump(mode="json")
        return CreateResult(
            ok=True, id=ids[-1], subnet_id=ids[0] if step == "vnet" else None, arm_waits=1
        ).model_dump(mode="json")

    def delete_resource(self, payload: Any) -> Any:
        resource = DeleteRequest.model_validate(payload).resource
        if resource.id in self.undeletable:
            raise RuntimeError(f"{resource.id} is locked")
        if resource.id in self.in_use and self.undeletable & self.existing:
            raise RuntimeError(f"{resource.id} is in use")
        with self.lock:
            self.existing.discard(resource.id)
            self.deleted.append(resource.id)
        return resource.model_dump(mode="json")

    def run_preparation(self, payload: Any) -> Any:
        PreparationRequest.model_validate(payload)
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
        def done(payload: Any) -> Any:
            return Done().model_dump(mode="json")

        def staged(payload: Any) -> Any:
            ToolkitStaging.model_validate(payload)
            return ToolkitStaged(blob_name="toolkit/hydration.tar.gz").model_dump(mode="json")

        def released(payload: Any) -> Any:
            RecoveryPointRelease.model_validate(payload)
            return ReleasedSnapshots(deleted=[]).model_dump(mode="json")

        def progress(payload: Any) -> Any:
            JobProgress.model_validate(payload)
            return done(payload)

        def metric(payload: Any) -> Any:
            HydrationMetric.model_validate(payload)
            return done(payload)

        return {
            "create_resource": self.create_resource,
            "delete_resource": self.delete_resource,
            "run_preparation": self.run_preparation,
            "stage_toolkit": staged,
            "release_recovery_point": released,
            "record_job_progress": progress,
            "record_hydration_metric": metric,
        }


def describe(request: CreateRequest) -> tuple[str, list[str]]:
    """The step a create belongs to and the ids it leaves behind (the one it answers with last)."""
    plan, name = request.plan, request.name
    if isinstance(request, ImportDisk):
        disk = request.disk
        blob = recovery_point_copy_name(plan.machine_id, disk.disk_id, disk.snapshot, plan.job_id)
        return "disk", [blob, arm_id(plan, ResourceKind.DISK, name)]
    if isinstance(request, CreateVirtualNetwork):
        subnet = arm_id(plan, ResourceKind.SUBNET, name, "hydration")
        return "vnet", [subnet, arm_id(plan, ResourceKind.VNET, name)]
    if isinstance(request, CreateNetworkSecurityGroup):
        return "nsg", [arm_id(plan, ResourceKind.NSG, name)]
    if isinstance(request, CreateNetworkInterface):
        # Temporary resources carry the plan's prefix; the VM's own NIC is named after the VM.
        step = "helper_nic" if name.startswith(plan.name_prefix) else "final_nic"
        return step, [arm_id(plan, ResourceKind.NIC, name)]
    if isinstance(request, CreateHelperVm):
        return "helper_vm", [arm_id(plan, ResourceKind.VM, name)]
    if isinstance(request, SnapshotDisk):
        return "baseline", [arm_id(plan, ResourceKind.SNAPSHOT, name)]
    assert isinstance(request, CreateVm)
    return "final_vm", [arm_id(plan, ResourceKind.VM, name)]


async def hydrate(r: Run, plan: HydrationPlan) -> HydrationOutcome:
    await r.start(hydration.HYDRATION, INSTANCE, plan.model_dump(mode="json"))
    status = await r.finish(INSTANCE, step=5)
    assert status["runtimeStatus"] == "Completed", status
    return HydrationOutcome.model_validate(status["output"])


def created_by_step(r: Run) -> list[tuple[int, str]]:
    """(position in the call log, step) of each create, run or delete, in call order."""
    cloud_steps = []
    for index, (name, payload) in enumerate(r.calls.made):
        if name == "create_resource":
            cloud_steps.append((index, describe(CREATE_REQUEST.validate_python(payload))[0]))
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


def creates(r: Run) -> list[CreateRequest]:
    return [CREATE_REQUEST.validate_python(p) for p in r.calls.of("create_resource")]


def job_updates(r: Run) -> list[StepUpdate]:
    """Every job-step change, the toolkit's added steps with them, in the order they were written."""
    return [
        update
        for p in r.calls.of("record_job_progress")
        for progress in [JobProgress.model_validate(p)]
        for update in [*progress.updates, *progress.added]
    ]


def steps_recorded(r: Run) -> list[tuple[str, str]]:
    return [
        (u.name, u.status)
        for p in r.calls.of("record_job_progress")
        for u in JobProgress.model_validate(p).updates
    ]


def final_step_status(r: Run) -> dict[str, str]:
    """Each job step's last recorded status."""
    return {u.name: u.status for u in job_updates(r)}


def metric_outcomes(r: Run) -> list[str]:
    return [HydrationMetric.model_validate(p).outcome for p in r.calls.of("record_hydration_metric")]


def compensation(r: Run) -> list[Resource]:
    """The deletes after the hydration's last create, run or job-step change: compensation's."""
    made = r.calls.made
    last = max(i for i, (name, _) in enumerate(made) if name in _FORWARD)
    return [
        DeleteRequest.model_validate(p).resource for name, p in made[last + 1 :] if name == "delete_resource"
    ]


_FORWARD = {"create_resource", "run_preparation", "stage_toolkit", "record_job_progress"}


def test_hydration_creates_in_six_waits_and_leaves_only_the_vm_its_nic_and_disks(tmp_path: Path) -> None:
    cloud = Cloud()
    plan = make_plan()

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, plan)
            assert outcome.failure is None and outcome.result is not None
            result = outcome.result
            vm = arm_id(plan, ResourceKind.VM, "db01")
            assert result.vm_id == vm
            assert result.arm_waits_critical_path == 6
            assert not result.used_fallback_network
            assert result.preparation is not None and result.preparation.status == "succeeded"
            disks = {r.id for r in result.final_resources if r.kind is ResourceKind.DISK}
            assert cloud.existing == {vm, result.nic_id, *disks}
            assert {result.os_disk_id, *result.data_disk_ids} == disks
            assert len(result.final_resources) == 4
            assert {r.kind for r in result.final_resources} == {
                ResourceKind.VM,
                ResourceKind.NIC,
                ResourceKind.DISK,
            }
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
            # One import per disk in the first group; every other create and delete exactly once.
            assert Counter(step for _, step in created_by_step(r)) == {
                "disk": 2,
                "final_nic": 1,
                "vnet": 1,
                "nsg": 1,
                "stage_toolkit": 1,
                "helper_nic": 1,
                "release_recovery_point": 1,
                "helper_vm": 1,
                "run_preparation": 1,
                "delete vm": 1,
                "final_vm": 1,
                "delete subnet": 1,
                "delete nsg": 1,
                "delete nic": 1,
                "delete blob": 2,
                "delete vnet": 1,
            }
            assert isinstance(creates(r)[-1], CreateVm)
            assert cloud.deleted[-1] == arm_id(plan, ResourceKind.VNET, f"{plan.name_prefix}-vnet")
            assert (m.PREPARE_STEP_PREFIX + "validate_fstab (changed)", "Succeeded") in [
                (u.name, u.status)
                for p in r.calls.of("record_job_progress")
                for u in JobProgress.model_validate(p).added
            ]
            assert steps_recorded(r)[-2:] == [
                (m.STEP_DELETE_TEMPORARY, "Succeeded"),
                (m.STEP_CREATE_VM, "Succeeded"),
            ]
            final = final_step_status(r)
            assert all(final[s] == "Succeeded" for s in m.HYDRATION_STEPS), final
            # The operator sees the steps begin in the runbook's order.
            began = list(dict.fromkeys(u.name for u in job_updates(r)))
            assert [s for s in began if s in m.HYDRATION_STEPS] == list(m.HYDRATION_STEPS)
            assert metric_outcomes(r) == ["succeeded"]

    run(scenario())


def test_a_running_recovery_point_copy_is_waited_for_with_durable_timers(tmp_path: Path) -> None:
    """The import activity starts the copy and answers "still running"; the orchestration asks again after
    a durable timer (no activity sleeps), and only the imports are asked again."""
    cloud = Cloud(copy_polls=2)
    plan = make_plan()

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, plan)
            assert outcome.failure is None and outcome.result is not None
            assert outcome.result.arm_waits_critical_path == 6
            counted = Counter(step for _, step in created_by_step(r))
            assert counted["disk"] == 3 * 2  # two "still running" answers and the import, per disk
            assert counted["vnet"] == counted["nsg"] == counted["final_nic"] == counted["helper_vm"] == 1
            history = r.engine.store.load_history(INSTANCE)
            timers = [e for e in history if e["EventType"] == EventType.TIMER_CREATED]
            assert len(timers) >= 2

    run(scenario())


def test_a_recovery_point_copy_that_never_finishes_fails_the_hydration_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(itinerary, "COPY_WAIT_LIMIT", timedelta(seconds=30))
    cloud = Cloud(copy_polls=10**6)
    plan = make_plan()

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, plan)
            assert outcome.failure is not None and outcome.failure.code == "RecoveryPointCopyPending"
            assert "still running" in outcome.failure.message
            assert cloud.existing == set()

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
            assert not any(isinstance(c, CreateHelperVm | CreateVirtualNetwork) for c in creates(r))
            assert outcome.result.arm_waits_critical_path == 2
            assert outcome.result.preparation is None
            recorded = steps_recorded(r)
            assert (m.STEP_PREPARE, "Warning") in recorded
            assert {s for s, status in recorded if status == "Cancelled"} == set(m.HELPER_STEPS) - {
                m.STEP_PREPARE
            }
            final = final_step_status(r)
            assert {s: final[s] for s in m.HELPER_STEPS} == {
                m.STEP_HELPER_NETWORK: "Cancelled",
                m.STEP_HELPER_VM: "Cancelled",
                m.STEP_PREPARE: "Warning",
                m.STEP_DELETE_TEMPORARY: "Cancelled",
            }
            assert final[m.STEP_CREATE_VM] == "Succeeded"
            assert_groups_in_order(
                r, [{"disk", "final_nic"}, {"final_vm", "delete blob", "release_recovery_point"}]
            )
            vm = arm_id(plan, ResourceKind.VM, "db01")
            assert vm in cloud.existing and not any(e.startswith(plan.machine_id) for e in cloud.existing)

    run(scenario())


@dataclass(frozen=True)
class Failing:
    """What a failure at one step must leave: the job step marked failed, the message, what compensation
    deletes and how often the recovery point is released (once more on the way out, idempotently)."""

    job_step: str | None
    message: str
    compensated: frozenset[ResourceKind]
    releases: int


_AFTER_FIRST_WAIT = frozenset(
    {
        ResourceKind.BLOB,
        ResourceKind.DISK,
        ResourceKind.NIC,
        ResourceKind.SUBNET,
        ResourceKind.VNET,
        ResourceKind.NSG,
    }
)
_WITH_HELPER_VM = _AFTER_FIRST_WAIT | {ResourceKind.VM}
FAILURES = {
    "disk": Failing(m.STEP_COPY_DISKS, "importing disk os", _AFTER_FIRST_WAIT, 1),
    "final_nic": Failing(None, "the VM's network interface", _AFTER_FIRST_WAIT, 1),
    "vnet": Failing(m.STEP_HELPER_NETWORK, "temporary virtual network", _AFTER_FIRST_WAIT, 1),
    "nsg": Failing(m.STEP_HELPER_NETWORK, "temporary network security group", _AFTER_FIRST_WAIT, 1),
    "helper_nic": Failing(m.STEP_HELPER_NETWORK, "helper's network interface", _AFTER_FIRST_WAIT, 2),
    "helper_vm": Failing(m.STEP_HELPER_VM, "temporary VM", _WITH_HELPER_VM, 2),
    "preparation": Failing(m.STEP_PREPARE, "preparation script failed", _WITH_HELPER_VM, 2),
    # The helper and the temporary network are gone by then: the VM, its NIC, the disks, the VNet remain.
    "final_vm": Failing(
        m.STEP_CREATE_VM,
        "creating VM db01",
        frozenset({ResourceKind.VM, ResourceKind.NIC, ResourceKind.VNET, ResourceKind.DISK}),
        2,
    ),
}
assert set(FAILURES) == set(FAILING_STEPS)


@pytest.mark.parametrize("step", FAILING_STEPS)
def test_a_failure_at_each_step_deletes_everything_created(tmp_path: Path, step: str) -> None:
    cloud = Cloud(fail_at=step)
    expected = FAILURES[step]

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, make_plan())
            assert outcome.result is None and outcome.failure is not None
            if step == "preparation":
                assert outcome.failure.code == "PreparationFailed"
            else:
                assert outcome.failure.code == f"{step}Failed"
            assert expected.message in outcome.failure.message, outcome.failure.message
            if expected.job_step is not None:
                assert final_step_status(r)[expected.job_step] == "Failed"
            assert cloud.created, "something was created before the failure"
            assert cloud.existing == set(), f"left behind: {cloud.existing}"
            deleted = compensation(r)
            assert {d.kind for d in deleted} == expected.compensated
            assert sum(d.kind is ResourceKind.DISK for d in deleted) == 2
            ranks = [DELETE_ORDER.index(d.kind) for d in deleted]
            assert ranks == sorted(ranks), f"not in the resource kinds' order: {deleted}"
            assert len(r.calls.of("release_recovery_point")) == expected.releases
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


def test_a_helper_vm_that_cannot_be_deleted_fails_the_hydration_and_is_left_to_the_sweeper(
    tmp_path: Path,
) -> None:
    plan = make_plan()
    # What the helper VM holds, directly or through its NIC, and ARM refuses to delete while it stands.
    held = {
        arm_id(plan, ResourceKind.NIC, itinerary.helper_name(plan, "nic")),
        arm_id(plan, ResourceKind.SUBNET, itinerary.helper_name(plan, "vnet"), itinerary.HELPER_SUBNET),
        arm_id(plan, ResourceKind.VNET, itinerary.helper_name(plan, "vnet")),
        arm_id(plan, ResourceKind.NSG, itinerary.helper_name(plan, "nsg")),
        *(arm_id(plan, ResourceKind.DISK, itinerary.disk_name(plan, d, i)) for i, d in enumerate(plan.disks)),
    }
    cloud = Cloud(undeletable={helper_vm_id(plan)}, in_use=held)

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, plan)
            assert outcome.failure is not None and outcome.failure.code == "DeleteFailed"
            assert "temporary VM" in outcome.failure.message
            assert "sweeper retries" in outcome.failure.message  # compensation could not delete it either
            assert r.calls.of("create_resource") and not any(isinstance(c, CreateVm) for c in creates(r))
            assert cloud.existing == {helper_vm_id(plan), *held}, "what the VM does not hold goes"
            assert all(i in outcome.failure.message for i in [helper_vm_id(plan), *held])
            # What the VM holds is asked once, not retried: ARM refuses it for as long as the VM stands.
            asked = Counter(d.id for d in compensation(r))
            assert asked[helper_vm_id(plan)] > 1, "the VM itself is retried"
            assert {i: asked[i] for i in held} == dict.fromkeys(held, 1), asked

    run(scenario())


def test_manual_preparation_required_fails_with_its_code_and_cleans_up(tmp_path: Path) -> None:
    cloud = Cloud(preparation="manual")

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, make_plan())
            assert outcome.failure is not None
            assert outcome.failure.code == m.MANUAL_PREPARATION_REQUIRED
            assert "preparedManually" in outcome.failure.message
            assert "install the Azure agent" in outcome.failure.message, "the changes to make by hand"
            assert final_step_status(r)[m.STEP_PREPARE] == "Failed"
            assert cloud.existing == set()
            assert {d.kind for d in compensation(r)} == _WITH_HELPER_VM
            assert isinstance(creates(r)[-1], CreateHelperVm), "no VM after a failed preparation"

    run(scenario())


def test_a_policy_denying_the_helper_network_falls_back_to_the_target_subnet(tmp_path: Path) -> None:
    cloud = Cloud(policy_denies_vnet=True)
    plan = make_plan()

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, plan)
            assert outcome.result is not None and outcome.result.used_fallback_network
            assert outcome.result.arm_waits_critical_path == 6
            (helper_nic,) = [
                c
                for c in creates(r)
                if isinstance(c, CreateNetworkInterface) and describe(c)[0] == "helper_nic"
            ]
            assert helper_nic.subnet_id == plan.fallback_placement.subnet_id
            assert (m.STEP_HELPER_NETWORK, "Warning") in steps_recorded(r)

    run(scenario())


def test_disks_only_prepares_the_disks_under_the_failover_job_steps_and_creates_no_nic_or_vm(
    tmp_path: Path,
) -> None:
    """A change of recovery point: the disks for the failed-over VM, no NIC, no VM; the temporary VM's
    work shows as the failover's one 'Hydrate' step, which succeeds with the last of it."""
    cloud = Cloud()
    hydrate_steps = (m.STEP_HELPER_NETWORK, m.STEP_HELPER_VM, m.STEP_PREPARE, m.STEP_DELETE_TEMPORARY)
    plan = make_plan().model_copy(
        update={"disks_only": True, "job_steps": dict.fromkeys(hydrate_steps, "Hydrate")}
    )

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, plan)
            assert outcome.failure is None and outcome.result is not None
            result = outcome.result
            assert (result.vm_id, result.nic_id) == ("", "")
            disks = {r.id for r in result.final_resources}
            assert {r.kind for r in result.final_resources} == {ResourceKind.DISK}
            assert cloud.existing == disks == {result.os_disk_id, *result.data_disk_ids}
            assert "final_vm" not in {describe(c)[0] for c in creates(r)}
            assert "final_nic" not in {describe(c)[0] for c in creates(r)}
            shown = {name for name, _ in steps_recorded(r)}
            assert shown.isdisjoint(hydrate_steps) and m.STEP_CREATE_VM not in shown
            hydrate_marks = [status for name, status in steps_recorded(r) if name == "Hydrate"]
            assert hydrate_marks[-1] == "Succeeded" and "Succeeded" not in hydrate_marks[:-1]

    run(scenario())


def _failover_plan() -> HydrationPlan:
    return make_plan().model_copy(
        update={"baseline_snapshots": True, "job_steps": hydration_activities.FAILOVER_JOB_STEPS}
    )


def test_a_failover_snapshots_the_imported_disks_before_the_helper_touches_them(tmp_path: Path) -> None:
    """The failback baseline is the recovery point's content: taken after the import, before any write."""
    cloud = Cloud()
    plan = _failover_plan()

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, plan)
            assert outcome.result is not None, outcome
            assert_groups_in_order(
                r, [{"disk"}, {"baseline"}, {"helper_vm"}, {"run_preparation"}, {"final_vm"}]
            )
            snapshots = [c for c in creates(r) if isinstance(c, SnapshotDisk)]
            result = outcome.result
            assert [c.disk_id for c in snapshots] == [result.os_disk_id, *result.data_disk_ids]
            kept = {x.id for x in result.final_resources if x.kind is ResourceKind.SNAPSHOT}
            assert kept == {arm_id(plan, ResourceKind.SNAPSHOT, c.name) for c in snapshots}
            assert cloud.existing == {x.id for x in result.final_resources}
            copy_marks = [st for name, st in steps_recorded(r) if name == m.STEP_COPY_DISKS]
            assert copy_marks[-1] == "Succeeded" and "Succeeded" not in copy_marks[:-1]

    run(scenario())


@pytest.mark.parametrize("step", ["baseline", "helper_vm", "preparation", "final_vm"])
def test_a_failover_failing_after_its_baseline_snapshots_deletes_them_too(tmp_path: Path, step: str) -> None:
    cloud = Cloud(fail_at=step)

    async def scenario() -> None:
        async with running(BLUEPRINTS, cloud.stubs(), tmp_path, ManualClock()) as r:
            outcome = await hydrate(r, _failover_plan())
            assert outcome.failure is not None
            if step == "baseline":
                assert "failback baseline" in outcome.failure.message
                assert outcome.failure.step == m.STEP_COPY_DISKS
            else:
                assert any("/snapshots/" in c for c in cloud.created)
            assert cloud.existing == set(), f"left behind: {cloud.existing}"
            ranks = [DELETE_ORDER.index(d.kind) for d in compensation(r)]
            assert ranks == sorted(ranks)

    run(scenario())
