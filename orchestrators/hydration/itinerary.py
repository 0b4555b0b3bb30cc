"""Hydration as an itinerary: a table of named steps, each one sequential ARM wait on the critical path.

Runbook (the number is the ARM waits so far):
1. `create disks and network`, all at once: per disk, a server-side copy of the recovery point's snapshot
   to its own blob and a managed disk imported from it (never from the replica); the VM's NIC in its
   subnet; with the helper, its VNet+subnet (one PUT) and NSG, and the toolkit staged in storage ..... 1
   A policy that denies the VNet (or the NSG) is not a failure: the helper goes into the replication
   target's subnet (and its NIC goes without NSG).
2. `create helper NIC` (subnet + NSG); the copies are done, so the recovery point is released .......... 2
3. `create helper VM` (Debian), the disks to prepare at LUN 0..n (Windows: the OS disk; Linux: all) ..... 3
4. `run toolkit` through the Custom Script Extension; its full report from the report blob ............. 4
5. `delete helper VM` (its OS disk and NIC with it): the prepared disks become free ..................... 5
6. `create VM` from the prepared OS disk and the data disks, in parallel with deleting the helper's
   subnet, NSG and the recovery-point copies ............................................................... 6
7. `delete helper VNet` (after its subnet): off the critical path.
So the VM exists after 6 sequential ARM waits whatever the number of disks. With `preparedManually` the
helper steps (2-5) do not apply: 2 waits.

Each step's activities are data: a `Create` is paired with its compensation (`undo`: what it leaves
behind, recorded before the call, so a crash between the PUT and its answer still leaves a record);
a `Call` is any other activity. Conditions (`When`) decide which steps and activities apply, and which
job steps the operator sees change. Each step's `settle` reads its typed results and raises
`HydrationFailed` when the hydration cannot go on; the orchestrator then deletes everything recorded,
in the order of the resource-kind table.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any, Generic, Literal, NoReturn, TypeVar

import azure.durable_functions as df

from orchestrators.hydration.activities import (
    create_resource,
    delete_resource,
    record_job_progress,
    release_recovery_point,
    run_preparation,
    stage_toolkit,
)
from orchestrators.hydration.contracts import (
    BASELINE_SNAPSHOTS_STEP,
    CreateHelperVm,
    CreateNetworkInterface,
    CreateNetworkSecurityGroup,
    CreateRequest,
    CreateResult,
    CreateVirtualNetwork,
    CreateVm,
    DeleteRequest,
    DiskPlan,
    HydrationPlan,
    ImportDisk,
    JobProgress,
    Payload,
    PreparationRequest,
    PreparationResult,
    RecoveryPointRelease,
    Resource,
    SnapshotDisk,
    StepUpdate,
    ToolkitStaging,
    arm_id,
    baseline_snapshot_name,
)
from shared.migration import service as m
from shared.migration.resource_kinds import ResourceKind
from shared.replication.replica_disks import recovery_point_copy_name

Orchestration = Generator[Any, Any, Any]
Status = Literal["InProgress", "Succeeded", "Failed", "Warning", "Cancelled"]
Results = dict[str, list[Any]]  # an action's name -> the results of its activities, in scheduling order
R = TypeVar("R", bound=CreateRequest)

# ARM calls retry throttling and 5xx inside the SDK; these retries cover the activity host itself.
ACTIVITY_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2_000, max_number_of_attempts=4)


def call_activity(context: df.DurableOrchestrationContext, activity: Any, payload: Any) -> Any:
    """Schedule `activity` with the ARM retry policy; `payload` is a pydantic model, sent as JSON."""
    return context.call_activity_with_retry(activity, ACTIVITY_RETRY, payload.model_dump(mode="json"))


def record_progress(
    context: df.DurableOrchestrationContext, job_id: str, *updates: tuple[Enum, str, str | None]
) -> Any:
    """Schedule one write of the job's steps: (step, status, message) each."""
    return call_activity(
        context,
        record_job_progress,
        JobProgress(
            job_id=job_id,
            updates=[
                StepUpdate.model_validate({"name": step.value, "status": status, "message": message})
                for step, status, message in updates
            ],
        ),
    )


# A recovery point's copy that is still running after this fails the hydration (it was the limit of the
# sleep this wait replaced).
COPY_WAIT_LIMIT = timedelta(hours=2)
DELETE_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=3_000, max_number_of_attempts=6)
HELPER_SUBNET = "hydration"


class HydrationFailed(Exception):
    """`step`: the job step that failed, when known (the job's end marks it Failed, the rest Cancelled)."""

    def __init__(self, code: str, message: str, step: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.step = step


class When(Enum):
    ALWAYS = "always"
    WITH_HELPER = "with helper"  # the toolkit prepares the OS on a temporary VM
    PREPARED_MANUALLY = "prepared manually"  # the operator prepared the OS by hand: no helper
    NEW_VM = "new VM"  # the VM and its NIC are created (not when disks are prepared for an existing VM)
    BASELINE = "baseline"  # a failover: the imported disks are snapshotted before anything changes them

    def holds(self, plan: HydrationPlan) -> bool:
        if self is When.ALWAYS:
            return True
        if self is When.NEW_VM:
            return not plan.disks_only
        if self is When.BASELINE:
            return plan.baseline_snapshots
        return plan.prepared_manually == (self is When.PREPARED_MANUALLY)


# --- names: decided here, so every id is known before its create -------------------------------------


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:70].rstrip(".-")


def disk_name(plan: HydrationPlan, disk: DiskPlan, index: int) -> str:
    role = "osdisk" if disk.is_os_disk else f"datadisk{index}"
    return _safe(f"{plan.final_vm_name}-{role}-{plan.job_id[-6:]}")


def final_nic_name(plan: HydrationPlan) -> str:
    return _safe(f"{plan.final_vm_name}-nic-{plan.job_id[-6:]}")


def helper_name(plan: HydrationPlan, role: Literal["vnet", "nsg", "nic", "vm"]) -> str:
    return f"{plan.name_prefix}-{role}"


# --- the run's memory ---------------------------------------------------------------------------------


class Run:
    """What the orchestration has recorded (for compensation), learned, and counted so far."""

    def __init__(self, context: df.DurableOrchestrationContext, plan: HydrationPlan) -> None:
        self.context = context
        self.plan = plan
        self.recorded: list[Resource] = []
        self.pending: list[StepUpdate] = []  # job-step changes written with the next progress call
        self.arm_waits = 0
        self.helper_subnet_id = ""
        self.helper_nsg_id: str | None = None
        self.network_notes: list[str] = []
        self.used_fallback_network = False
        self.preparation: PreparationResult | None = None
        self.being_deleted: list[Resource] = []
        self.warned: dict[str, str | None] = {}  # job steps showing several hydration steps: a Warning sticks

    def id_of(self, kind: ResourceKind, *names: str) -> str:
        return arm_id(self.plan, kind, *names)

    def record(self, resources: list[Resource]) -> None:
        self.recorded += [r for r in resources if r not in self.recorded]

    # The final resources: the disks, the VM's NIC and the VM (everything else is temporary).
    def disk_id(self, disk: DiskPlan) -> str:
        return self.id_of(ResourceKind.DISK, disk_name(self.plan, disk, self.plan.disks.index(disk)))

    def final_nic_id(self) -> str:
        return self.id_of(ResourceKind.NIC, final_nic_name(self.plan))

    def vm_id(self) -> str:
        return self.id_of(ResourceKind.VM, self.plan.final_vm_name)

    def baseline_snapshot_ids(self) -> list[str]:
        if not self.plan.baseline_snapshots:
            return []
        return [
            self.id_of(
                ResourceKind.SNAPSHOT, baseline_snapshot_name(disk_name(self.plan, d, i), self.plan.job_id)
            )
            for i, d in enumerate(self.plan.disks)
        ]

    def final_resources(self) -> set[Resource]:
        # The baseline snapshots outlive the hydration: the failover's compensation deletes them if it fails.
        kept = {
            *(Resource(kind=ResourceKind.DISK, id=self.disk_id(d)) for d in self.plan.disks),
            *(Resource(kind=ResourceKind.SNAPSHOT, id=i) for i in self.baseline_snapshot_ids()),
        }
        if self.plan.disks_only:
            return kept
        return {
            Resource(kind=ResourceKind.VM, id=self.vm_id()),
            Resource(kind=ResourceKind.NIC, id=self.final_nic_id()),
            *kept,
        }

    def temporary(self) -> list[Resource]:
        final = self.final_resources()
        return [r for r in self.recorded if r not in final]

    # Activities.
    def call(self, activity: Any, payload: Payload, retry: df.RetryOptions = ACTIVITY_RETRY) -> Any:
        return self.context.call_activity_with_retry(activity, retry, payload.model_dump(mode="json"))

    def delete(self, resource: Resource) -> Any:
        return self.call(delete_resource, DeleteRequest(resource=resource), DELETE_RETRY)

    def release(self) -> Any:
        return self.call(
            release_recovery_point,
            RecoveryPointRelease(machine_id=self.plan.machine_id, job_id=self.plan.job_id),
        )

    def shown(self, step: str) -> str:
        return self.plan.job_steps.get(step, step)

    def mark(self, step: str, status: Status, message: str | None = None) -> None:
        shown = self.shown(step)
        if step in self.plan.job_steps:
            # One job step shows several hydration steps: it succeeds with the last of them, and a
            # warning on any of them stays.
            group = [s for s, j in self.plan.job_steps.items() if j == shown]
            if status == "Succeeded" and step != group[-1]:
                status = "InProgress"
            if status == "Warning":
                self.warned[shown] = message
            elif shown in self.warned and status in ("InProgress", "Succeeded"):
                status, message = "Warning", self.warned[shown]
        self.pending.append(StepUpdate(name=shown, status=status, message=message))

    def progress(self, *, add_after: str | None = None, added: list[StepUpdate] | None = None) -> Any:
        """Write the pending job-step changes in one call."""
        updates, self.pending = self.pending, []
        after = None if add_after is None else self.shown(add_after)
        return self.call(
            record_job_progress,
            JobProgress(job_id=self.plan.job_id, updates=updates, add_after=after, added=added or []),
        )

    def fail(
        self, step: str | None, code: str, message: str, step_message: str | None
    ) -> Generator[Any, Any, NoReturn]:
        """The job step (if any) fails with ARM's message; the hydration fails with `message`."""
        if step is not None:
            self.mark(step, "Failed", step_message)
        if self.pending:
            yield self.progress()
        raise HydrationFailed(code, message, None if step is None else self.shown(step))


# --- the table's vocabulary ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """A job step the operator sees, changed when an itinerary step begins."""

    step: str
    status: Status = "InProgress"
    message: str | None = None
    when: When = When.ALWAYS


@dataclass(frozen=True)
class Create(Generic[R]):
    """Creates paired with their compensation: `undo` is what a create leaves behind, recorded before the
    call and deleted (in the resource kinds' order) if the hydration fails."""

    name: str
    requests: Callable[[Run], list[R]]
    undo: Callable[[Run, R], list[Resource]]
    when: When = When.ALWAYS


@dataclass(frozen=True)
class Call:
    """Any other activity of a step: staging the toolkit, releasing the recovery point, the script, deletes."""

    name: str
    tasks: Callable[[Run], list[Any]]
    when: When = When.ALWAYS


@dataclass(frozen=True)
class Step:
    name: str
    marks: tuple[Mark, ...]
    actions: tuple[Create[Any] | Call, ...]
    settle: Callable[[Run, Results], Orchestration]
    when: When = When.ALWAYS
    arm_wait: bool = True  # the step is one sequential ARM wait on the critical path
    failure: tuple[str, str] | None = None  # (code, message) when one of its activities gives up


# --- 1. disks and network -----------------------------------------------------------------------------


def _imports(run: Run) -> list[ImportDisk]:
    plan = run.plan
    return [
        ImportDisk(plan=plan, name=disk_name(plan, d, i), disk=d, purpose=plan.purpose)
        for i, d in enumerate(plan.disks)
    ]


def _undo_import(run: Run, request: ImportDisk) -> list[Resource]:
    plan, disk = run.plan, request.disk
    copy = recovery_point_copy_name(plan.machine_id, disk.disk_id, disk.snapshot, plan.job_id)
    return [Resource(kind=ResourceKind.BLOB, id=copy), Resource(kind=ResourceKind.DISK, id=run.disk_id(disk))]


def _final_nic(run: Run) -> list[CreateNetworkInterface]:
    plan = run.plan
    return [
        CreateNetworkInterface(
            plan=plan,
            name=final_nic_name(plan),
            subnet_id=plan.final_placement.subnet_id,
            purpose=plan.purpose,
            private_ip_address=plan.static_ip_address,
        )
    ]


def _helper_vnet(run: Run) -> list[CreateVirtualNetwork]:
    return [CreateVirtualNetwork(plan=run.plan, name=helper_name(run.plan, "vnet"))]


def _undo_vnet(run: Run, request: CreateVirtualNetwork) -> list[Resource]:
    return [
        Resource(kind=ResourceKind.SUBNET, id=run.id_of(ResourceKind.SUBNET, request.name, HELPER_SUBNET)),
        Resource(kind=ResourceKind.VNET, id=run.id_of(ResourceKind.VNET, request.name)),
    ]


def _helper_nsg(run: Run) -> list[CreateNetworkSecurityGroup]:
    return [CreateNetworkSecurityGroup(plan=run.plan, name=helper_name(run.plan, "nsg"))]


def _undo(kind: ResourceKind) -> Callable[[Run, Any], list[Resource]]:
    """The compensation of a create that leaves one resource of `kind`, named by the request."""
    return lambda run, request: [Resource(kind=kind, id=run.id_of(kind, request.name))]


def _settle_disks_and_network(run: Run, results: Results) -> Orchestration:
    plan = run.plan
    for disk, raw in zip(plan.disks, results["import disks"], strict=True):
        imported = CreateResult.model_validate(raw)
        if not imported.ok:
            yield from run.fail(
                m.STEP_COPY_DISKS,
                imported.error_code or "DiskImportFailed",
                f"importing disk {disk.disk_id} from recovery point {plan.recovery_point_id} "
                f"failed: {imported.error_message}",
                imported.error_message,
            )
    nics = [CreateResult.model_validate(r) for r in results.get("create VM NIC", [])]
    for nic in nics:
        if nic.ok:
            continue
        yield from run.fail(
            None,
            nic.error_code or "NicFailed",
            f"creating the VM's network interface failed: {nic.error_message}",
            None,
        )
    run.mark(m.STEP_COPY_DISKS, "Succeeded")
    if "create helper VNet" in results:
        [vnet] = [CreateResult.model_validate(r) for r in results["create helper VNet"]]
        [nsg] = [CreateResult.model_validate(r) for r in results["create helper NSG"]]
        yield from _helper_network(run, vnet, nsg)


def _helper_network(run: Run, vnet: CreateResult, nsg: CreateResult) -> Orchestration:
    """The helper's own subnet, or the target's when a policy forbids creating one."""
    plan = run.plan
    if vnet.ok and vnet.subnet_id:
        run.helper_subnet_id = vnet.subnet_id
    elif vnet.policy_denied:
        run.helper_subnet_id = plan.fallback_placement.subnet_id
        run.used_fallback_network = True
        run.network_notes.append(
            f"a policy forbids the temporary virtual network; using the target subnet "
            f"{run.helper_subnet_id.rsplit('/', 1)[-1]} instead ({vnet.error_message})"
        )
    else:
        yield from run.fail(
            m.STEP_HELPER_NETWORK,
            vnet.error_code or "NetworkFailed",
            f"creating the temporary virtual network failed: {vnet.error_message}",
            vnet.error_message,
        )
    if nsg.ok:
        run.helper_nsg_id = nsg.id
    elif nsg.policy_denied:
        run.network_notes.append(
            f"a policy forbids the temporary network security group; the helper's NIC has none "
            f"({nsg.error_message})"
        )
    else:
        yield from run.fail(
            m.STEP_HELPER_NETWORK,
            nsg.error_code or "NetworkFailed",
            f"creating the temporary network security group failed: {nsg.error_message}",
            nsg.error_message,
        )


# --- 1b. the failback baseline -------------------------------------------------------------------------


def _baseline_snapshots(run: Run) -> list[SnapshotDisk]:
    plan = run.plan
    return [
        SnapshotDisk(
            plan=plan,
            name=baseline_snapshot_name(disk_name(plan, d, i), plan.job_id),
            disk_id=run.disk_id(d),
            purpose=plan.purpose,
        )
        for i, d in enumerate(plan.disks)
    ]


def _settle_baseline(run: Run, results: Results) -> Orchestration:
    for disk, raw in zip(run.plan.disks, results["snapshot imported disks"], strict=True):
        taken = CreateResult.model_validate(raw)
        if not taken.ok:
            yield from run.fail(
                BASELINE_SNAPSHOTS_STEP,
                taken.error_code or "SnapshotFailed",
                f"the failback baseline snapshot of disk {disk.disk_id} could not be taken: "
                f"{taken.error_message}",
                taken.error_message,
            )
    run.mark(BASELINE_SNAPSHOTS_STEP, "Succeeded")


# --- 2-5. the helper ----------------------------------------------------------------------------------


def _helper_nic(run: Run) -> list[CreateNetworkInterface]:
    return [
        CreateNetworkInterface(
            plan=run.plan,
            name=helper_name(run.plan, "nic"),
            subnet_id=run.helper_subnet_id,
            nsg_id=run.helper_nsg_id,
        )
    ]


def _settle_helper_nic(run: Run, results: Results) -> Orchestration:
    [nic] = [CreateResult.model_validate(r) for r in results["create helper NIC"]]
    if not nic.ok:
        yield from run.fail(
            m.STEP_HELPER_NETWORK,
            nic.error_code or "NicFailed",
            f"creating the helper's network interface failed: {nic.error_message}",
            nic.error_message,
        )
    notes = "; ".join(run.network_notes) or None
    run.mark(m.STEP_HELPER_NETWORK, "Warning" if notes else "Succeeded", notes)


def _helper_vm(run: Run) -> list[CreateHelperVm]:
    plan = run.plan
    return [
        CreateHelperVm(
            plan=plan,
            name=helper_name(plan, "vm"),
            nic_id=run.id_of(ResourceKind.NIC, helper_name(plan, "nic")),
            disk_ids=[run.disk_id(d) for d in plan.disks if d.hydrate],
        )
    ]


def _settle_helper_vm(run: Run, results: Results) -> Orchestration:
    [vm] = [CreateResult.model_validate(r) for r in results["create helper VM"]]
    if not vm.ok:
        yield from run.fail(
            m.STEP_HELPER_VM,
            vm.error_code or "HelperVmFailed",
            f"creating the temporary VM failed: {vm.error_message}",
            vm.error_message,
        )
    run.mark(m.STEP_HELPER_VM, "Succeeded")


def _run_toolkit(run: Run) -> list[Any]:
    request = PreparationRequest(plan=run.plan, vm_name=helper_name(run.plan, "vm"))
    return [run.call(run_preparation, request)]


_TOOLKIT_STATUS: dict[str, Status] = {"warning": "Warning", "failed": "Failed"}


def _settle_toolkit(run: Run, results: Results) -> Orchestration:
    """The toolkit's steps become job steps; a failure or an unsupported OS ends the hydration."""
    [preparation] = [PreparationResult.model_validate(r) for r in results["run toolkit"]]
    run.preparation = preparation
    added = [
        StepUpdate(
            name=f"{m.PREPARE_STEP_PREFIX}{s.name}" + (" (changed)" if s.status == "changed" else ""),
            status=_TOOLKIT_STATUS.get(s.status, "Succeeded"),
            message=s.message or None,
        )
        for s in preparation.steps
    ]
    if preparation.status == "succeeded":
        note = "; ".join(preparation.warnings)[:2000] or None
        run.mark(m.STEP_PREPARE, "Warning" if note else "Succeeded", note)
        yield run.progress(add_after=m.STEP_PREPARE, added=added)
        return
    if preparation.status == "manual_preparation_required":
        changes = preparation.manual_steps or preparation.changes
        code = m.MANUAL_PREPARATION_REQUIRED
        message = (
            f"manual preparation required: {preparation.os_description or 'this OS version'} is not "
            "prepared automatically. Make these changes on the source machine, let a cycle replicate "
            'them, then run again with {"preparedManually": true}: ' + " | ".join(changes)
        )
    elif preparation.status == "not_run" and preparation.arm_code:
        code = preparation.arm_code
        message = f"the preparation script could not be started (ARM {code}): {preparation.message}"
    else:
        code, message = "PreparationFailed", f"the preparation script failed: {preparation.message}"
    run.mark(m.STEP_PREPARE, "Failed", message[:4000])
    yield run.progress(add_after=m.STEP_PREPARE, added=added)
    raise HydrationFailed(code, message, m.STEP_PREPARE)


def _delete_helper_vm(run: Run) -> list[Any]:
    return [
        run.delete(Resource(kind=ResourceKind.VM, id=run.id_of(ResourceKind.VM, helper_name(run.plan, "vm"))))
    ]


def _settle_helper_deleted(run: Run, results: Results) -> Orchestration:
    helper = Resource(kind=ResourceKind.VM, id=run.id_of(ResourceKind.VM, helper_name(run.plan, "vm")))
    run.recorded.remove(helper)
    yield from ()


# --- 6-7. the VM --------------------------------------------------------------------------------------


def _vm(run: Run) -> list[CreateVm]:
    plan = run.plan
    os_disk = next(d for d in plan.disks if d.is_os_disk)
    return [
        CreateVm(
            plan=plan,
            name=plan.final_vm_name,
            nic_id=run.final_nic_id(),
            os_disk_id=run.disk_id(os_disk),
            data_disk_ids=[run.disk_id(d) for d in plan.disks if not d.is_os_disk],
            purpose=plan.purpose,
        )
    ]


def _delete_temporary_but_vnet(run: Run) -> list[Any]:
    # The VNet goes after its subnet (step 7); everything else temporary is free once the helper is gone.
    run.being_deleted = [r for r in run.temporary() if r.kind is not ResourceKind.VNET]
    return [run.delete(r) for r in run.being_deleted]


def _settle_vm(run: Run, results: Results) -> Orchestration:
    for resource in run.being_deleted:
        run.recorded.remove(resource)
    run.being_deleted = []
    if not When.NEW_VM.holds(run.plan):
        return
    [vm] = [CreateResult.model_validate(r) for r in results["create VM"]]
    if not vm.ok:
        yield from run.fail(
            m.STEP_CREATE_VM,
            vm.error_code or "VmFailed",
            f"creating VM {run.plan.final_vm_name} failed: {vm.error_message}",
            vm.error_message,
        )


def _delete_rest(run: Run) -> list[Any]:
    # What is left after step 6 is the helper's VNet alone: one group, no order to keep within it.
    return [run.delete(r) for r in run.temporary()]


def _settle_done(run: Run, results: Results) -> Orchestration:
    final = run.final_resources()
    run.recorded = [r for r in run.recorded if r in final]
    if When.WITH_HELPER.holds(run.plan):
        run.mark(m.STEP_DELETE_TEMPORARY, "Succeeded")
    if When.NEW_VM.holds(run.plan):
        run.mark(m.STEP_CREATE_VM, "Succeeded")
    yield run.progress()


# --- the itinerary ------------------------------------------------------------------------------------

HELPER, MANUAL = When.WITH_HELPER, When.PREPARED_MANUALLY
MANUAL_NOTE = "skipped: the operator confirmed manual preparation (preparedManually)"

ITINERARY: tuple[Step, ...] = (
    Step(
        "create disks and network",
        marks=(
            Mark(m.STEP_COPY_DISKS),
            Mark(m.STEP_HELPER_NETWORK, when=HELPER),
            *(Mark(s, "Cancelled", when=MANUAL) for s in m.HELPER_STEPS if s != m.STEP_PREPARE),
            Mark(m.STEP_PREPARE, "Warning", MANUAL_NOTE, when=MANUAL),
        ),
        actions=(
            Create("import disks", _imports, _undo_import),
            Create("create VM NIC", _final_nic, _undo(ResourceKind.NIC), when=When.NEW_VM),
            Create("create helper VNet", _helper_vnet, _undo_vnet, when=HELPER),
            Create("create helper NSG", _helper_nsg, _undo(ResourceKind.NSG), when=HELPER),
            Call(
                "stage toolkit",
                lambda run: [run.call(stage_toolkit, ToolkitStaging(job_id=run.plan.job_id))],
                when=HELPER,
            ),
        ),
        settle=_settle_disks_and_network,
    ),
    Step(
        # Before the helper (or, prepared manually, the VM's first boot) writes to the disks: the
        # baseline holds the recovery point's content, so replicating back sends every change since.
        "snapshot imported disks",
        when=When.BASELINE,
        marks=(),
        actions=(Create("snapshot imported disks", _baseline_snapshots, _undo(ResourceKind.SNAPSHOT)),),
        settle=_settle_baseline,
    ),
    Step(
        "create helper NIC",
        when=HELPER,
        marks=(),
        actions=(
            Create("create helper NIC", _helper_nic, _undo(ResourceKind.NIC)),
            Call("release recovery point", lambda run: [run.release()]),
        ),
        settle=_settle_helper_nic,
    ),
    Step(
        "create helper VM",
        when=HELPER,
        marks=(Mark(m.STEP_HELPER_VM),),
        actions=(Create("create helper VM", _helper_vm, _undo(ResourceKind.VM)),),
        settle=_settle_helper_vm,
    ),
    Step(
        "run toolkit",
        when=HELPER,
        marks=(Mark(m.STEP_PREPARE),),
        actions=(Call("run toolkit", _run_toolkit),),
        settle=_settle_toolkit,
    ),
    Step(
        "delete helper VM",
        when=HELPER,
        marks=(Mark(m.STEP_DELETE_TEMPORARY),),
        actions=(Call("delete helper VM", _delete_helper_vm),),
        settle=_settle_helper_deleted,
        failure=("DeleteFailed", "deleting the temporary VM failed"),
    ),
    Step(
        "create VM",
        marks=(Mark(m.STEP_CREATE_VM, when=When.NEW_VM),),
        actions=(
            Create("create VM", _vm, _undo(ResourceKind.VM), when=When.NEW_VM),
            Call("delete temporary resources", _delete_temporary_but_vnet),
            Call("release recovery point", lambda run: [run.release()], when=MANUAL),
        ),
        settle=_settle_vm,
        failure=("DeleteFailed", "deleting the temporary resources failed"),
    ),
    Step(
        "delete helper VNet",
        marks=(),
        actions=(Call("delete helper VNet", _delete_rest),),
        settle=_settle_done,
        arm_wait=False,
        failure=("DeleteFailed", "deleting temporary resources failed"),
    ),
)


def walk(run: Run, itinerary: tuple[Step, ...] = ITINERARY) -> Orchestration:
    """Walk the itinerary: per step that applies, mark its job steps, record then schedule its activities
    in parallel, wait for all, and settle the results."""
    plan = run.plan
    for step in itinerary:
        if not step.when.holds(plan):
            continue
        for mark in step.marks:
            if mark.when.holds(plan):
                run.mark(mark.step, mark.status, mark.message)
        if run.pending:
            yield run.progress()
        names, tasks, again = [], [], []
        for action in step.actions:
            if not action.when.holds(plan):
                continue
            scheduled = _schedule(run, action)
            names += [action.name] * len(scheduled)
            tasks += [task for task, _ in scheduled]
            again += [repeat for _, repeat in scheduled]
        try:
            results = (yield run.context.task_all(tasks)) if tasks else []
            results = yield from _until_done(run, results, again)
        except Exception as exc:
            if step.failure is None:
                raise
            code, message = step.failure
            failed_step = run.shown(step.marks[0].step) if step.marks else None
            raise HydrationFailed(code, f"{message}: {exc}", failed_step) from exc
        if step.arm_wait:
            run.arm_waits += 1
        grouped: Results = {}
        for name, result in zip(names, results, strict=True):
            grouped.setdefault(name, []).append(result)
        yield from step.settle(run, grouped)


def _schedule(run: Run, action: Create[Any] | Call) -> list[tuple[Any, Callable[[], Any] | None]]:
    """Each activity's task, with how to ask it again (creates only: they are idempotent)."""
    if isinstance(action, Call):
        return [(task, None) for task in action.tasks(run)]
    tasks: list[tuple[Any, Callable[[], Any] | None]] = []
    for request in action.requests(run):
        run.record(action.undo(run, request))  # before the call: a crash after the PUT leaves a record
        tasks.append(
            (run.call(create_resource, request), functools.partial(run.call, create_resource, request))
        )
    return tasks


def _until_done(run: Run, results: list[Any], again: list[Callable[[], Any] | None]) -> Orchestration:
    """Ask again, after a durable timer, every create that answered "not done yet" (a recovery point's
    copy still running), until none does or COPY_WAIT_LIMIT passes; then its answer stands as a failure.
    The wait is the orchestration's: no activity sleeps, and no worker is held while storage copies."""
    results = list(results)
    started = run.context.current_utc_datetime
    while True:
        waiting = [
            i
            for i, raw in enumerate(results)
            if again[i] is not None and isinstance(raw, dict) and raw.get("retry_after_seconds") is not None
        ]
        now = run.context.current_utc_datetime
        if not waiting or now - started >= COPY_WAIT_LIMIT:
            return results
        delay = max(float(results[i]["retry_after_seconds"]) for i in waiting)
        yield run.context.create_timer(now + timedelta(seconds=delay))
        asked = [again[i] for i in waiting]
        answers = yield run.context.task_all([ask() for ask in asked if ask is not None])
        for i, answer in zip(waiting, answers, strict=True):
            results[i] = answer
