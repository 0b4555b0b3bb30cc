"""Migration (cutover), test migration and its clean-up: their decisions through the real SDK replay.

Hydration is a sub-orchestration with its own tests (test_hydration_orchestrator.py); here a stub
orchestrator registered under its name stands in for it, succeeding or failing as the plan asks, so
these tests see only what the flows decide around it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import azure.durable_functions as df

from devhost.durable import ManualClock
from orchestrators.hydration import activities as hydration_activities
from orchestrators.hydration.contracts import (
    DELETE_ORDER,
    DeleteRequest,
    DiskPlan,
    Done,
    HydrationFailure,
    HydrationOutcome,
    HydrationPlan,
    HydrationRequest,
    HydrationResult,
    JobProgress,
    NetworkPlacement,
    PlanOutcome,
    Resource,
    ResourceKind,
)
from orchestrators.hydration.orchestrator import HYDRATION
from orchestrators.migration import activities as migration_activities
from orchestrators.migration import cutover, test_migration
from orchestrators.migration.contracts import (
    CleanupResult,
    DeleteVerdict,
    FinalCycleRequest,
    FinalCycleStarted,
    FinalCycleState,
    FinalCycleWatch,
    JobInput,
    JobOutcome,
    JobResourcesQuery,
    ShutdownState,
)
from orchestrators.migration.contracts import (
    TestResources as FoundResources,  # aliased: pytest would try to collect a Test* class
)
from orchestrators.names import CANCEL_REQUESTED, CANCELLABLE_STATUS, NOT_CANCELLABLE_STATUS
from shared.migration import service as m
from tests.orchestrators.conftest import Run, run, running

MACHINE = "vm-1"
JOB = "job-000042"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
FAILING_VM = "fails-to-hydrate"

hydration_stub = df.Blueprint()


@hydration_stub.orchestration_trigger(context_name="context", orchestration=HYDRATION)
def hydration_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    """Named as the real one (the host indexes orchestrators by function name); succeeds with a VM named
    after the plan, or fails when the plan names the failing VM."""
    plan = HydrationPlan.model_validate(context.get_input())
    if plan.final_vm_name == FAILING_VM:
        return HydrationOutcome(
            failure=HydrationFailure(code="PreparationFailed", message="the toolkit failed; nothing is left")
        ).model_dump(mode="json")
    vm_id = _rg_id("Microsoft.Compute/virtualMachines", plan.final_vm_name)
    return HydrationOutcome(
        result=HydrationResult(
            vm_id=vm_id,
            nic_id=_rg_id("Microsoft.Network/networkInterfaces", "nic"),
            os_disk_id=_rg_id("Microsoft.Compute/disks", "os"),
            data_disk_ids=[],
            final_resources=[Resource(kind=ResourceKind.VM, id=vm_id)],
            arm_waits_critical_path=6,
            hydration_seconds=42.0,
            used_fallback_network=False,
            preparation=None,
        )
    ).model_dump(mode="json")
    yield  # the SDK drives orchestrators as generators


BLUEPRINTS = [cutover.bp, test_migration.bp, hydration_activities.bp, migration_activities.bp, hydration_stub]


def _rg_id(provider_type: str, name: str) -> str:
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-target/providers/{provider_type}/{name}"


def plan_for(job: HydrationRequest, vm_name: str = "db01") -> HydrationPlan:
    subnet = _rg_id("Microsoft.Network/virtualNetworks", "vnet/subnets/default")
    placement = NetworkPlacement(
        vnet_id=_rg_id("Microsoft.Network/virtualNetworks", "vnet"), subnet_id=subnet, location="westeurope"
    )
    return HydrationPlan(
        machine_id=job.machine_id,
        job_id=job.job_id,
        subscription_id=SUBSCRIPTION,
        resource_group="rg-target",
        location="westeurope",
        os_type="Linux",
        hyper_v_generation="V1",
        recovery_point_id=job.recovery_point_id or "0000000007-c7",
        disks=[DiskPlan(disk_id="d0", is_os_disk=True, size_bytes=1024**3, snapshot="s", hydrate=True)],
        name_prefix="hyd-000042",
        final_vm_name=vm_name,
        final_vm_size="Standard_D2s_v3",
        final_disk_sku="Premium_LRS",
        final_placement=placement,
        fallback_placement=placement,
        purpose="final",
        helper_vm_size="Standard_B2s",
        helper_address_prefix="10.250.0.0/24",
        helper_subnet_prefix="10.250.0.0/26",
        storage_account_id=_rg_id("Microsoft.Storage/storageAccounts", "replicas"),
        storage_region="westeurope",
    )


class Flow:
    """The activities a migration or test migration calls, with the answers this test chose."""

    def __init__(
        self,
        *,
        final_after_polls: int | None = 2,
        final_rejected: bool = False,
        plan_failure: HydrationFailure | None = None,
        vm_name: str = "db01",
        resources: list[Resource] | None = None,
        undeletable: set[ResourceKind] | None = None,
        poll_seconds: float = 10,
        timeout_seconds: float = 600,
        shutdown_after_polls: int | None = 0,
        shutdown_refused: str | None = None,
    ) -> None:
        self.shutdown_after_polls = shutdown_after_polls
        self.shutdown_refused = shutdown_refused
        self.shutdown_polls = 0
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.final_after_polls = final_after_polls
        self.final_rejected = final_rejected
        self.plan_failure = plan_failure
        self.vm_name = vm_name
        self.resources = resources or []
        self.undeletable = undeletable or set()
        self.polls = 0

    def request_final_cycle(self, payload: Any) -> Any:
        FinalCycleRequest.model_validate(payload)
        return FinalCycleStarted(
            poll_seconds=self.poll_seconds, timeout_seconds=self.timeout_seconds
        ).model_dump(mode="json")

    def check_migration_shutdown(self, payload: Any) -> Any:
        FinalCycleWatch.model_validate(payload)
        self.shutdown_polls += 1
        if self.shutdown_refused is not None:
            return ShutdownState(confirmed=False, answered=True, message=self.shutdown_refused).model_dump(
                mode="json"
            )
        if self.shutdown_after_polls is not None and self.shutdown_polls > self.shutdown_after_polls:
            return ShutdownState(confirmed=True, answered=True, message="off").model_dump(mode="json")
        return ShutdownState(confirmed=False, answered=False, message="waiting").model_dump(mode="json")

    def check_final_cycle(self, payload: Any) -> Any:
        FinalCycleWatch.model_validate(payload)
        self.polls += 1
        if self.final_rejected:
            return FinalCycleState(
                applied=False, rejected=True, message="final cycle c9 was rejected"
            ).model_dump(mode="json")
        if self.final_after_polls is not None and self.polls > self.final_after_polls:
            return FinalCycleState(applied=True, recovery_point_id="0000000009-c9").model_dump(mode="json")
        return FinalCycleState(applied=False, message="waiting for the final cycle").model_dump(mode="json")

    def plan_hydration(self, payload: Any) -> Any:
        if self.plan_failure is not None:
            return PlanOutcome(failure=self.plan_failure).model_dump(mode="json")
        request = HydrationRequest.model_validate(payload)
        return PlanOutcome(plan=plan_for(request, self.vm_name)).model_dump(mode="json")

    def find_job_resources(self, payload: Any) -> Any:
        JobResourcesQuery.model_validate(payload)
        return FoundResources(resources=self.resources).model_dump(mode="json")

    def delete_resource(self, payload: Any) -> Any:
        request = DeleteRequest.model_validate(payload)
        if request.resource.kind in self.undeletable:
            raise RuntimeError(f"{request.resource.id} is locked")
        return request.resource.model_dump(mode="json")

    def try_delete_resource(self, payload: Any) -> Any:
        request = DeleteRequest.model_validate(payload)
        if request.resource.kind in self.undeletable:
            return DeleteVerdict(
                resource=request.resource,
                deleted=False,
                error_code="NicInUse",
                error_message=f"{request.resource.id} is locked",
            ).model_dump(mode="json")
        return DeleteVerdict(resource=request.resource, deleted=True).model_dump(mode="json")

    def stubs(self) -> dict[str, Any]:
        def nothing(payload: Any) -> Any:
            return Done().model_dump(mode="json")

        return {
            "request_final_cycle": self.request_final_cycle,
            "check_final_cycle": self.check_final_cycle,
            "check_migration_shutdown": self.check_migration_shutdown,
            "plan_hydration": self.plan_hydration,
            "find_job_resources": self.find_job_resources,
            "delete_resource": self.delete_resource,
            "try_delete_resource": self.try_delete_resource,
            "record_job_progress": nothing,
            "end_migration_job": nothing,
        }


def job_input(**fields: Any) -> dict[str, Any]:
    return JobInput(machine_id=MACHINE, job_id=JOB, **fields).model_dump(mode="json")


def steps(r: Run) -> list[tuple[str, str]]:
    """Every step update the flow recorded on its job, in order."""
    return [
        (u.name, u.status)
        for p in r.calls.of("record_job_progress")
        for u in JobProgress.model_validate(p).updates
    ]


def ended(r: Run) -> JobOutcome:
    (outcome,) = r.calls.of("end_migration_job")
    return JobOutcome.model_validate(outcome)


async def migrate(r: Run, **fields: Any) -> dict[str, Any]:
    instance = await r.start(cutover.MIGRATION, f"job-{JOB}", job_input(**fields))
    return await r.finish(instance, step=60)


def test_migration_requests_the_final_cycle_waits_for_it_and_hydrates_from_its_point(tmp_path: Path) -> None:
    flow = Flow(final_after_polls=3)

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            status = await migrate(r, shutdown_source=True)
            assert status["runtimeStatus"] == "Completed", status
            (request,) = [FinalCycleRequest.model_validate(p) for p in r.calls.of("request_final_cycle")]
            assert request.shutdown_source
            assert len(r.calls.of("check_final_cycle")) == 4, "polled until the cycle is applied"
            names = r.calls.names()
            assert names.index("plan_hydration") > max(
                i for i, n in enumerate(names) if n == "check_final_cycle"
            ), "hydration starts only once the final cycle is applied"
            (planned,) = [HydrationRequest.model_validate(p) for p in r.calls.of("plan_hydration")]
            assert not planned.test, "a migration, not a test migration"
            assert planned.recovery_point_id == "0000000009-c9", "the final cycle's point"
            assert len(r.calls.of("check_migration_shutdown")) == 1
            assert steps(r) == [
                (m.STEP_SHUTDOWN, "InProgress"),
                (m.STEP_SHUTDOWN, "Succeeded"),  # only once the appliance confirmed the source is off
                (m.STEP_FINAL_CYCLE, "InProgress"),
                (m.STEP_FINAL_CYCLE, "Succeeded"),
                (m.STEP_FINISH_MIGRATION, "Succeeded"),
            ]
            outcome = ended(r)
            assert outcome.succeeded and outcome.result is not None
            assert outcome.result.vm_id.endswith("/virtualMachines/db01")
            assert JobOutcome.model_validate(status["output"]).succeeded

    run(scenario())


def test_migration_without_shutdown_sends_no_shutdown(tmp_path: Path) -> None:
    flow = Flow(final_after_polls=0)

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            status = await migrate(r)
            assert status["runtimeStatus"] == "Completed", status
            (request,) = [FinalCycleRequest.model_validate(p) for p in r.calls.of("request_final_cycle")]
            assert not request.shutdown_source
            assert m.STEP_SHUTDOWN not in [name for name, _ in steps(r)]
            assert ended(r).succeeded

    run(scenario())


def test_a_final_cycle_that_never_comes_fails_the_migration_without_hydrating(tmp_path: Path) -> None:
    flow = Flow(final_after_polls=None, poll_seconds=60)

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            status = await migrate(r)
            assert status["runtimeStatus"] == "Completed", status
            assert r.calls.of("plan_hydration") == []
            assert 10 <= len(r.calls.of("check_final_cycle")) <= 12, "polled every minute for 10 minutes"
            outcome = ended(r)
            assert (outcome.succeeded, outcome.error_code) == (False, "FinalCycleFailed")
            assert "not applied within 10 minutes" in (outcome.error_message or "")
            assert steps(r)[-1] == (m.STEP_FINAL_CYCLE, "Failed")

    run(scenario())


def test_hours_without_the_final_cycle_cost_a_bounded_history(tmp_path: Path) -> None:
    # Production's 15 s and 240 minutes: a fixed interval asked 961 times in one execution.
    flow = Flow(final_after_polls=None, poll_seconds=15, timeout_seconds=4 * 3600)

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            instance = await r.start(cutover.MIGRATION, f"job-{JOB}", job_input())
            status = await r.finish(instance, step=60, max_steps=300)
            assert status["runtimeStatus"] == "Completed", status
            assert len(r.calls.of("check_final_cycle")) < 100
            assert len(r.engine.store.load_history(instance)) < 700
            assert "not applied within 240 minutes" in (ended(r).error_message or "")

    run(scenario())


def test_a_cancel_while_waiting_for_the_final_cycle_rolls_the_cutover_back(tmp_path: Path) -> None:
    flow = Flow(final_after_polls=None, poll_seconds=60)

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            instance = await r.start(cutover.MIGRATION, f"job-{JOB}", job_input(shutdown_source=True))
            await r.idle()
            assert (await r.status(instance))["customStatus"] == CANCELLABLE_STATUS, "it says it can stop"
            await r.advance(60)
            polls = len(r.calls.of("check_final_cycle"))
            assert polls == 2
            await r.raise_event(instance, CANCEL_REQUESTED, {"jobId": JOB})
            status = await r.status(instance)
            assert status["runtimeStatus"] == "Completed", "the wait ends at once, not at the next poll"
            assert len(r.calls.of("check_final_cycle")) == polls
            assert status["customStatus"] == NOT_CANCELLABLE_STATUS
            assert r.calls.of("plan_hydration") == [], "nothing is built in Azure"
            outcome = ended(r)
            assert (outcome.succeeded, outcome.cancelled, outcome.error_code) == (False, True, "Cancelled")
            assert "cancelled by the operator" in (outcome.error_message or "")
            assert steps(r)[-1] == (m.STEP_FINAL_CYCLE, "Cancelled")
            assert JobOutcome.model_validate(status["output"]).cancelled

    run(scenario())


def test_a_cancel_that_came_before_the_final_cycle_was_applied_still_counts(tmp_path: Path) -> None:
    # The cycle is applied at the first look, but the request was already in: nothing is built.
    flow = Flow(final_after_polls=0)

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            instance = await r.start(cutover.MIGRATION, f"job-{JOB}", job_input())
            await r.raise_event(instance, CANCEL_REQUESTED, {"jobId": JOB})
            status = await r.finish(instance)
            assert status["runtimeStatus"] == "Completed", status
            assert len(r.calls.of("check_final_cycle")) == 1
            assert r.calls.of("plan_hydration") == []
            assert ended(r).cancelled

    run(scenario())


def test_once_past_the_wait_the_cutover_says_it_can_no_longer_stop(tmp_path: Path) -> None:
    flow = Flow(final_after_polls=1)

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            status = await migrate(r)
            assert status["runtimeStatus"] == "Completed", status
            outcome = ended(r)
            assert outcome.succeeded and not outcome.cancelled
            # Hydration's own status replaced "not cancellable": neither says it can stop.
            assert status["customStatus"].get("cancellable") is not True

    run(scenario())


def test_a_rejected_final_cycle_fails_the_migration_at_once(tmp_path: Path) -> None:
    flow = Flow(final_rejected=True)

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            await migrate(r)
            assert len(r.calls.of("check_final_cycle")) == 1
            assert r.calls.of("plan_hydration") == []
            outcome = ended(r)
            assert outcome.error_code == "FinalCycleFailed" and "rejected" in (outcome.error_message or "")

    run(scenario())


def test_a_failed_hydration_fails_the_migration_with_its_error_and_no_finish_step(tmp_path: Path) -> None:
    flow = Flow(final_after_polls=0, vm_name=FAILING_VM)

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            await migrate(r)
            outcome = ended(r)
            assert (outcome.succeeded, outcome.error_code) == (False, "PreparationFailed")
            assert m.STEP_FINISH_MIGRATION not in [name for name, _ in steps(r)]

    run(scenario())


def test_test_migration_plans_hydrates_and_reports_the_vm(tmp_path: Path) -> None:
    flow = Flow()

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            instance = await r.start(test_migration.TEST_MIGRATION, f"job-{JOB}", job_input())
            status = await r.finish(instance)
            assert status["runtimeStatus"] == "Completed", status
            assert r.calls.names() == ["plan_hydration", "end_migration_job"]
            (planned,) = [HydrationRequest.model_validate(p) for p in r.calls.of("plan_hydration")]
            assert planned.test and planned.recovery_point_id is None
            assert ended(r).succeeded
            assert status["customStatus"]["vmId"].endswith("/virtualMachines/db01")
            assert status["customStatus"]["hydrationSeconds"] == 42.0

    run(scenario())


def test_a_plan_failure_ends_the_test_migration_without_hydrating(tmp_path: Path) -> None:
    flow = Flow(plan_failure=HydrationFailure(code="TestNetworkNotFound", message="vnet-test does not exist"))

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            instance = await r.start(test_migration.TEST_MIGRATION, f"job-{JOB}", job_input())
            await r.finish(instance)
            outcome = ended(r)
            assert (outcome.succeeded, outcome.error_code) == (False, "TestNetworkNotFound")
            assert r.engine.store.get_instance(f"{instance}-hydration") is None, "no hydration started"

    run(scenario())


def _test_resources() -> list[Resource]:
    return [
        Resource(kind=ResourceKind.DISK, id=_rg_id("Microsoft.Compute/disks", "db01-test-os")),
        Resource(kind=ResourceKind.NIC, id=_rg_id("Microsoft.Network/networkInterfaces", "db01-test-nic")),
        Resource(kind=ResourceKind.VM, id=_rg_id("Microsoft.Compute/virtualMachines", "db01-test")),
        Resource(kind=ResourceKind.DISK, id=_rg_id("Microsoft.Compute/disks", "db01-test-data")),
    ]


def test_clean_up_deletes_what_the_test_migration_left_in_dependency_order(tmp_path: Path) -> None:
    flow = Flow(resources=_test_resources())

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            instance = await r.start(
                test_migration.TEST_MIGRATION_CLEANUP, "job-cleanup", job_input(test_job_id="job-test-7")
            )
            status = await r.finish(instance)
            assert status["runtimeStatus"] == "Completed", status
            (found,) = r.calls.of("find_job_resources")
            assert JobResourcesQuery.model_validate(found) == JobResourcesQuery(
                machine_id=MACHINE, job_id="job-test-7"
            )
            kinds = [DeleteRequest.model_validate(p).resource.kind for p in r.calls.of("delete_resource")]
            assert kinds == [ResourceKind.VM, ResourceKind.NIC, ResourceKind.DISK, ResourceKind.DISK]
            assert kinds == sorted(kinds, key=DELETE_ORDER.index)
            assert CleanupResult.model_validate(status["output"]) == CleanupResult(
                deleted=[r.id for r in _test_resources()], leftovers=[]
            )
            assert ended(r).succeeded

    run(scenario())


def test_clean_up_reports_what_it_could_not_delete_and_still_deletes_the_rest(tmp_path: Path) -> None:
    flow = Flow(resources=_test_resources(), undeletable={ResourceKind.NIC})

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            instance = await r.start(
                test_migration.TEST_MIGRATION_CLEANUP, "job-cleanup", job_input(test_job_id="job-test-7")
            )
            status = await r.finish(instance, step=5)
            nic = _test_resources()[1].id
            assert CleanupResult.model_validate(status["output"]).leftovers == [nic]
            deleted = {DeleteRequest.model_validate(p).resource.kind for p in r.calls.of("delete_resource")}
            assert ResourceKind.DISK in deleted, "a resource that resists does not stop the others"
            outcome = ended(r)
            # The step fails with ARM's own answer for what resisted, and the clean-up can be run again.
            assert (outcome.succeeded, outcome.error_code) == (False, "NicInUse")
            assert outcome.failed_step == "Delete test VM, disks and network interface"
            assert outcome.test_job_id == "job-test-7"
            assert nic in (outcome.error_message or "")
            assert f"{nic} is locked" in (outcome.error_message or "")

    run(scenario())


def test_clean_up_does_not_retry_what_an_undeletable_vm_still_holds(tmp_path: Path) -> None:
    # The VM resists, and ARM refuses its NIC and disks while it stands: they are asked once each, for ARM's
    # verdict, not retried; all are left, each with ARM's answer, for the next clean-up.
    flow = Flow(
        resources=_test_resources(), undeletable={ResourceKind.VM, ResourceKind.NIC, ResourceKind.DISK}
    )

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            instance = await r.start(
                test_migration.TEST_MIGRATION_CLEANUP, "job-cleanup", job_input(test_job_id="job-test-7")
            )
            status = await r.finish(instance, step=5)
            retried = {DeleteRequest.model_validate(p).resource.kind for p in r.calls.of("delete_resource")}
            assert retried == {ResourceKind.VM}, retried
            asked = Counter(
                DeleteRequest.model_validate(p).resource.id for p in r.calls.of("try_delete_resource")
            )
            everything = [r.id for r in sorted(_test_resources(), key=lambda r: DELETE_ORDER.index(r.kind))]
            assert asked == Counter(everything), asked
            assert CleanupResult.model_validate(status["output"]).leftovers == everything
            outcome = ended(r)
            assert (outcome.succeeded, outcome.error_code) == (False, "NicInUse")
            message = outcome.error_message or ""
            assert all(f"{i} is locked" in message for i in everything), message

    run(scenario())


def test_a_shutdown_never_confirmed_fails_the_cutover_before_anything_is_built(tmp_path: Path) -> None:
    flow = Flow(final_after_polls=0, shutdown_after_polls=None, poll_seconds=60)

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            status = await migrate(r, shutdown_source=True)
            assert status["runtimeStatus"] == "Completed", status
            assert 5 <= len(r.calls.of("check_migration_shutdown")) <= 7, "polled every minute for 5 minutes"
            assert r.calls.of("check_final_cycle") == [] and r.calls.of("plan_hydration") == []
            outcome = ended(r)
            assert (outcome.succeeded, outcome.error_code) == (False, m.SHUTDOWN_NOT_CONFIRMED)
            assert outcome.failed_step == m.STEP_SHUTDOWN
            assert "did not confirm within 300 s" in (outcome.error_message or "")
            assert "continueWithoutShutdown" in (outcome.error_message or "")
            assert steps(r)[-1] == (m.STEP_SHUTDOWN, "Failed")

    run(scenario())


def test_an_appliance_that_answers_the_source_is_not_off_fails_it_at_once(tmp_path: Path) -> None:
    flow = Flow(final_after_polls=0, shutdown_refused="the appliance could not shut the source down: X: y")

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            status = await migrate(r, shutdown_source=True)
            assert status["runtimeStatus"] == "Completed", status
            assert len(r.calls.of("check_migration_shutdown")) == 1
            outcome = ended(r)
            assert (outcome.succeeded, outcome.error_code) == (False, m.SHUTDOWN_NOT_CONFIRMED)
            assert "could not shut the source down: X: y" in (outcome.error_message or "")

    run(scenario())


def test_continue_without_shutdown_goes_on_with_a_warning(tmp_path: Path) -> None:
    flow = Flow(final_after_polls=0, shutdown_after_polls=None, poll_seconds=60)

    async def scenario() -> None:
        async with running(BLUEPRINTS, flow.stubs(), tmp_path, ManualClock()) as r:
            status = await migrate(r, shutdown_source=True, continue_without_shutdown=True)
            assert status["runtimeStatus"] == "Completed", status
            assert (m.STEP_SHUTDOWN, "Warning") in steps(r)
            assert r.calls.of("plan_hydration"), "the cutover went on"
            assert ended(r).succeeded

    run(scenario())
