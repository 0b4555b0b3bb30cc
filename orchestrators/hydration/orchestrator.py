"""Hydration (C4) as a sub-orchestration: recovery point -> prepared disks -> the VM, nothing left behind.

Runbook, with the ARM waits on the critical path counted (each number is one sequential wait):
1. In parallel: per disk, a server-side copy of the recovery point's snapshot to its own blob and a
   managed disk imported from it (never from the replica); the helper's VNet+subnet (one PUT) and its
   NSG; the toolkit staged in storage; the final VM's NIC in its subnet ............................ 1
   A policy that denies the VNet (or the NSG) is not a failure: the helper goes into the replication
   target's subnet (and its NIC goes without NSG).
2. The helper's NIC (subnet + NSG) ........................................................................ 2
3. The helper VM (Debian), the disks to prepare at LUN 0..n (Windows: the OS disk; Linux: all) ............ 3
4. The toolkit through the Custom Script Extension; its full report from the report blob ................ 4
5. The helper VM deleted (its OS disk and NIC with it): the prepared disks become free .................. 5
6. The final VM from the prepared OS disk and the data disks, in parallel with deleting the helper's
   subnet, NSG and the recovery-point copies ............................................................... 6
   then the helper VNet (after its subnet).
So the VM exists after 6 sequential ARM waits whatever the number of disks.

Compensation: every resource is recorded (its id is known from its name) BEFORE the call that creates
it, so a crash between the PUT and its answer still leaves a record. Any failure deletes everything
recorded, in dependency order (VM, NIC, subnet, VNet, NSG, disks, blobs), and the outcome says why.
Resources are tagged with machine and job ids for the sweeper (functions/migration_sweeper.py).
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from orchestrators.hydration.activities import (
    create_resource,
    delete_resource,
    record_hydration_metric,
    record_job_progress,
    release_recovery_point,
    run_preparation,
    stage_toolkit,
)
from orchestrators.hydration.contracts import (
    DELETE_ORDER,
    CreateRequest,
    CreateResult,
    DeleteRequest,
    DiskPlan,
    HydrationFailure,
    HydrationOutcome,
    HydrationPlan,
    HydrationResult,
    JobProgress,
    PreparationRequest,
    PreparationResult,
    Resource,
    ResourceKind,
    StepUpdate,
    arm_id,
)
from shared.migration import service as m
from shared.replication.replica_disks import recovery_point_copy_name

HYDRATION = "hydration_orchestrator"
# ARM calls retry throttling and 5xx inside the SDK; these retries cover the activity host itself.
ACTIVITY_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2_000, max_number_of_attempts=4)
DELETE_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=3_000, max_number_of_attempts=6)

Orchestration = Generator[Any, Any, Any]
bp = df.Blueprint()


class HydrationFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:70].rstrip(".-")


def disk_name(plan: HydrationPlan, disk: DiskPlan, index: int) -> str:
    role = "osdisk" if disk.is_os_disk else f"datadisk{index}"
    return _safe(f"{plan.final_vm_name}-{role}-{plan.job_id[-6:]}")


def final_nic_name(plan: HydrationPlan) -> str:
    return _safe(f"{plan.final_vm_name}-nic-{plan.job_id[-6:]}")


class _Run:
    """The orchestration's memory: what was recorded, what is final, and the waits counted."""

    def __init__(self, context: df.DurableOrchestrationContext, plan: HydrationPlan) -> None:
        self.context = context
        self.plan = plan
        self.recorded: list[Resource] = []
        self.arm_waits = 0

    def record(self, kind: ResourceKind, resource_id: str) -> Resource:
        resource = Resource(kind=kind, id=resource_id)
        if resource not in self.recorded:
            self.recorded.append(resource)
        return resource

    def id_of(self, kind: ResourceKind, *names: str) -> str:
        return arm_id(self.plan, kind, *names)

    def create(self, request: CreateRequest) -> Any:
        return self.context.call_activity_with_retry(create_resource, ACTIVITY_RETRY, _dump(request))

    def release(self) -> Any:
        return self.context.call_activity_with_retry(
            release_recovery_point,
            ACTIVITY_RETRY,
            {"machineId": self.plan.machine_id, "jobId": self.plan.job_id},
        )

    def progress(
        self,
        *updates: tuple[str, str, str | None],
        add_after: str | None = None,
        added: list[StepUpdate] | None = None,
    ) -> Any:
        return self.context.call_activity_with_retry(
            record_job_progress,
            ACTIVITY_RETRY,
            _dump(
                JobProgress(
                    job_id=self.plan.job_id,
                    updates=[StepUpdate(name=n, status=s, message=msg) for n, s, msg in updates],
                    add_after=add_after,
                    added=added or [],
                )
            ),
        )


@bp.orchestration_trigger(context_name="context", orchestration=HYDRATION)
def hydration_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    plan = HydrationPlan.model_validate(context.get_input())
    run = _Run(context, plan)
    started = context.current_utc_datetime
    try:
        result = yield from _hydrate(run)
    except Exception as exc:
        # Activities that exhausted their retries land here too: compensation runs on every failure path.
        failure = exc if isinstance(exc, HydrationFailed) else HydrationFailed("HydrationFailed", str(exc))
        leftovers = yield from delete_all(context, run.recorded)
        yield run.release()
        message = failure.message
        if leftovers:
            message += (
                f" Compensation could not delete {', '.join(leftovers)}; the sweeper retries them "
                "(they are tagged with this job)."
            )
        yield context.call_activity_with_retry(
            record_hydration_metric,
            ACTIVITY_RETRY,
            {
                "seconds": (context.current_utc_datetime - started).total_seconds(),
                "machineId": plan.machine_id,
                "osFamily": plan.os_type.lower(),
                "outcome": "failed",
            },
        )
        return _dump(HydrationOutcome(failure=HydrationFailure(code=failure.code, message=message)))
    seconds = (context.current_utc_datetime - started).total_seconds()
    yield context.call_activity_with_retry(
        record_hydration_metric,
        ACTIVITY_RETRY,
        {
            "seconds": seconds,
            "machineId": plan.machine_id,
            "osFamily": plan.os_type.lower(),
            "outcome": "succeeded",
        },
    )
    return _dump(HydrationOutcome(result=result.model_copy(update={"hydration_seconds": seconds})))


def _hydrate(run: _Run) -> Orchestration:
    context, plan = run.context, run.plan
    manual = plan.prepared_manually
    prefix = plan.name_prefix
    if manual:
        # The operator confirmed the OS was prepared by hand: no helper, the steps say so.
        yield run.progress(
            (m.STEP_COPY_DISKS, "InProgress", None),
            *((step, "Cancelled", None) for step in m.HELPER_STEPS if step != m.STEP_PREPARE),
            (
                m.STEP_PREPARE,
                "Warning",
                "skipped: the operator confirmed manual preparation (preparedManually)",
            ),
        )
    else:
        yield run.progress(
            (m.STEP_COPY_DISKS, "InProgress", None), (m.STEP_HELPER_NETWORK, "InProgress", None)
        )

    # 1. Disks, network artefacts, toolkit and the final NIC, all at once.
    disk_ids: dict[str, str] = {}
    tasks = []
    for index, disk in enumerate(plan.disks):
        run.record(
            ResourceKind.BLOB,
            recovery_point_copy_name(plan.machine_id, disk.disk_id, disk.snapshot, plan.job_id),
        )
        name = disk_name(plan, disk, index)
        disk_ids[disk.disk_id] = run.record(ResourceKind.DISK, run.id_of(ResourceKind.DISK, name)).id
        tasks.append(
            run.create(
                CreateRequest(plan=plan, kind="copy_import", name=name, disk=disk, purpose=plan.purpose)
            )
        )
    nic_name = final_nic_name(plan)
    final_nic = run.record(ResourceKind.NIC, run.id_of(ResourceKind.NIC, nic_name))
    tasks.append(
        run.create(
            CreateRequest(
                plan=plan,
                kind="nic",
                name=nic_name,
                subnet_id=plan.final_placement.subnet_id,
                purpose=plan.purpose,
                private_ip_address=plan.static_ip_address,
            )
        )
    )
    vnet_name, nsg_name = f"{prefix}-vnet", f"{prefix}-nsg"
    if not manual:
        vnet_id = run.id_of(ResourceKind.VNET, vnet_name)
        run.record(ResourceKind.SUBNET, run.id_of(ResourceKind.SUBNET, vnet_name, "hydration"))
        run.record(ResourceKind.VNET, vnet_id)
        run.record(ResourceKind.NSG, run.id_of(ResourceKind.NSG, nsg_name))
        tasks.append(run.create(CreateRequest(plan=plan, kind="vnet", name=vnet_name)))
        tasks.append(run.create(CreateRequest(plan=plan, kind="nsg", name=nsg_name)))
        tasks.append(context.call_activity_with_retry(stage_toolkit, ACTIVITY_RETRY, {"jobId": plan.job_id}))
    raw = yield context.task_all(tasks)
    run.arm_waits += 1
    disk_results = [CreateResult.model_validate(r) for r in raw[: len(plan.disks)]]
    nic_result = CreateResult.model_validate(raw[len(plan.disks)])
    for disk, result in zip(plan.disks, disk_results, strict=True):
        if not result.ok:
            yield run.progress((m.STEP_COPY_DISKS, "Failed", result.error_message))
            raise HydrationFailed(
                result.error_code or "DiskImportFailed",
                f"importing disk {disk.disk_id} from recovery point {plan.recovery_point_id} "
                f"failed: {result.error_message}",
            )
    if not nic_result.ok:
        raise HydrationFailed(
            nic_result.error_code or "NicFailed",
            f"creating the VM's network interface failed: {nic_result.error_message}",
        )
    yield run.progress((m.STEP_COPY_DISKS, "Succeeded", None))

    os_disk = next(d for d in plan.disks if d.is_os_disk)
    data_disks = [disk_ids[d.disk_id] for d in plan.disks if not d.is_os_disk]
    used_fallback = False
    preparation: PreparationResult | None = None
    if not manual:
        vnet_result = CreateResult.model_validate(raw[len(plan.disks) + 1])
        nsg_result = CreateResult.model_validate(raw[len(plan.disks) + 2])
        subnet_id, nsg_id, notes = yield from _helper_network(run, vnet_result, nsg_result)
        used_fallback = subnet_id == plan.fallback_placement.subnet_id

        # 2. The helper's NIC.
        # 2. The helper's NIC; the copies are done, so the recovery point is released meanwhile.
        helper_nic = run.record(ResourceKind.NIC, run.id_of(ResourceKind.NIC, f"{prefix}-nic"))
        raw_nic, _ = yield context.task_all(
            [
                run.create(
                    CreateRequest(
                        plan=plan, kind="nic", name=f"{prefix}-nic", subnet_id=subnet_id, nsg_id=nsg_id
                    )
                ),
                run.release(),
            ]
        )
        result = CreateResult.model_validate(raw_nic)
        run.arm_waits += 1
        if not result.ok:
            yield run.progress((m.STEP_HELPER_NETWORK, "Failed", result.error_message))
            raise HydrationFailed(
                result.error_code or "NicFailed",
                f"creating the helper's network interface failed: {result.error_message}",
            )
        yield run.progress(
            (m.STEP_HELPER_NETWORK, "Warning" if notes else "Succeeded", "; ".join(notes) or None),
            (m.STEP_HELPER_VM, "InProgress", None),
        )

        # 3. The helper VM with the disks to prepare.
        helper_name = f"{prefix}-vm"
        helper = run.record(ResourceKind.VM, run.id_of(ResourceKind.VM, helper_name))
        result = CreateResult.model_validate(
            (
                yield run.create(
                    CreateRequest(
                        plan=plan,
                        kind="helper_vm",
                        name=helper_name,
                        nic_id=helper_nic.id,
                        disk_ids=[disk_ids[d.disk_id] for d in plan.disks if d.hydrate],
                    )
                )
            )
        )
        run.arm_waits += 1
        if not result.ok:
            yield run.progress((m.STEP_HELPER_VM, "Failed", result.error_message))
            raise HydrationFailed(
                result.error_code or "HelperVmFailed",
                f"creating the temporary VM failed: {result.error_message}",
            )
        yield run.progress((m.STEP_HELPER_VM, "Succeeded", None), (m.STEP_PREPARE, "InProgress", None))

        # 4. The toolkit.
        preparation = PreparationResult.model_validate(
            (
                yield context.call_activity_with_retry(
                    run_preparation, ACTIVITY_RETRY, _dump(PreparationRequest(plan=plan, vm_name=helper_name))
                )
            )
        )
        run.arm_waits += 1
        yield from _record_preparation(run, preparation)

        # 5. The helper goes first: the prepared disks are attached to it.
        yield run.progress((m.STEP_DELETE_TEMPORARY, "InProgress", None))
        try:
            yield context.call_activity_with_retry(
                delete_resource, DELETE_RETRY, _dump(DeleteRequest(resource=helper))
            )
        except Exception as exc:
            raise HydrationFailed("DeleteFailed", f"deleting the temporary VM failed: {exc}") from exc
        run.recorded.remove(helper)
        run.arm_waits += 1

    # 6. The VM, and the rest of the temporary resources in parallel.
    yield run.progress((m.STEP_CREATE_VM, "InProgress", None))
    vm = run.record(ResourceKind.VM, run.id_of(ResourceKind.VM, plan.final_vm_name))
    final = {vm, final_nic, *(Resource(kind=ResourceKind.DISK, id=i) for i in disk_ids.values())}
    temporary = [r for r in run.recorded if r not in final]
    first_wave = [r for r in temporary if r.kind is not ResourceKind.VNET]
    tasks = [
        run.create(
            CreateRequest(
                plan=plan,
                kind="final_vm",
                name=plan.final_vm_name,
                nic_id=final_nic.id,
                os_disk_id=disk_ids[os_disk.disk_id],
                disk_ids=data_disks,
                purpose=plan.purpose,
            )
        )
    ]
    tasks += [
        context.call_activity_with_retry(delete_resource, DELETE_RETRY, _dump(DeleteRequest(resource=r)))
        for r in first_wave
    ]
    if manual:
        tasks.append(run.release())
    try:
        raw = yield context.task_all(tasks)
    except Exception as exc:
        raise HydrationFailed("DeleteFailed", f"deleting the temporary resources failed: {exc}") from exc
    run.arm_waits += 1
    critical_path = run.arm_waits
    vm_result = CreateResult.model_validate(raw[0])
    for resource in first_wave:
        run.recorded.remove(resource)
    if not vm_result.ok:
        yield run.progress((m.STEP_CREATE_VM, "Failed", vm_result.error_message))
        raise HydrationFailed(
            vm_result.error_code or "VmFailed",
            f"creating VM {plan.final_vm_name} failed: {vm_result.error_message}",
        )
    leftovers = yield from delete_all(context, [r for r in run.recorded if r not in final])
    if leftovers:
        raise HydrationFailed("DeleteFailed", f"deleting temporary resources failed: {', '.join(leftovers)}")
    run.recorded = [r for r in run.recorded if r in final]
    yield run.progress(
        *(((m.STEP_DELETE_TEMPORARY, "Succeeded", None),) if not manual else ()),
        (m.STEP_CREATE_VM, "Succeeded", None),
    )
    return HydrationResult(
        vm_id=vm.id,
        nic_id=final_nic.id,
        os_disk_id=disk_ids[os_disk.disk_id],
        data_disk_ids=data_disks,
        final_resources=sorted(final, key=lambda r: (DELETE_ORDER.index(r.kind), r.id)),
        arm_waits_critical_path=critical_path,
        hydration_seconds=0.0,
        used_fallback_network=used_fallback,
        preparation=preparation,
    )


def _helper_network(run: _Run, vnet: CreateResult, nsg: CreateResult) -> Orchestration:
    """(subnet id, NSG id or None, notes): the helper's own subnet, or the target's when a policy forbids it."""
    plan, notes = run.plan, []
    if vnet.ok and vnet.subnet_id:
        subnet_id = vnet.subnet_id
    elif vnet.policy_denied:
        subnet_id = plan.fallback_placement.subnet_id
        notes.append(
            f"a policy forbids the temporary virtual network; using the target subnet "
            f"{subnet_id.rsplit('/', 1)[-1]} instead ({vnet.error_message})"
        )
    else:
        yield run.progress((m.STEP_HELPER_NETWORK, "Failed", vnet.error_message))
        raise HydrationFailed(
            vnet.error_code or "NetworkFailed",
            f"creating the temporary virtual network failed: {vnet.error_message}",
        )
    if nsg.ok:
        nsg_id: str | None = nsg.id
    elif nsg.policy_denied:
        nsg_id = None
        notes.append(
            f"a policy forbids the temporary network security group; the helper's NIC has none "
            f"({nsg.error_message})"
        )
    else:
        yield run.progress((m.STEP_HELPER_NETWORK, "Failed", nsg.error_message))
        raise HydrationFailed(
            nsg.error_code or "NetworkFailed",
            f"creating the temporary network security group failed: {nsg.error_message}",
        )
    return subnet_id, nsg_id, notes


_STEP_STATUS = {"warning": "Warning", "failed": "Failed"}


def _record_preparation(run: _Run, preparation: PreparationResult) -> Orchestration:
    """The toolkit's steps become job steps; a failure or an unsupported OS ends the hydration."""
    added = [
        StepUpdate(
            name=f"{m.PREPARE_STEP_PREFIX}{s.name}" + (" (changed)" if s.status == "changed" else ""),
            status=_STEP_STATUS.get(s.status, "Succeeded"),
            message=s.message or None,
        )
        for s in preparation.steps
    ]
    if preparation.status == "succeeded":
        note = "; ".join(preparation.warnings)[:2000] or None
        yield run.progress(
            (m.STEP_PREPARE, "Warning" if note else "Succeeded", note), add_after=m.STEP_PREPARE, added=added
        )
        return
    if preparation.status == "manual_preparation_required":
        changes = preparation.manual_steps or preparation.changes
        message = (
            f"manual preparation required: {preparation.os_description or 'this OS version'} is not "
            "prepared automatically. Make these changes on the source machine, let a cycle replicate "
            'them, then run again with {"preparedManually": true}: ' + " | ".join(changes)
        )
        yield run.progress((m.STEP_PREPARE, "Failed", message[:4000]), add_after=m.STEP_PREPARE, added=added)
        raise HydrationFailed(m.MANUAL_PREPARATION_REQUIRED, message)
    message = f"the preparation script failed: {preparation.message}"
    yield run.progress((m.STEP_PREPARE, "Failed", message[:4000]), add_after=m.STEP_PREPARE, added=added)
    raise HydrationFailed("PreparationFailed", message)


def delete_all(context: df.DurableOrchestrationContext, resources: list[Resource]) -> Orchestration:
    """Delete in dependency order, each kind's resources in parallel; returns the ids that resisted."""
    leftovers: list[str] = []
    for kind in DELETE_ORDER:
        group = [r for r in resources if r.kind is kind]
        if not group:
            continue
        try:
            yield context.task_all(
                [
                    context.call_activity_with_retry(
                        delete_resource, DELETE_RETRY, _dump(DeleteRequest(resource=r))
                    )
                    for r in group
                ]
            )
        except Exception:
            # Which one failed is not told by task_all: list the group; the sweeper checks each by tag.
            leftovers += [r.id for r in group]
    return leftovers


def _dump(payload: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = payload.model_dump(mode="json")
    return dumped
