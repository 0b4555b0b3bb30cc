"""Activities of hydration: all its I/O (Cosmos, storage, ARM). The flows around it (final cycle, the
job's end, the test migration's clean-up) have theirs in `orchestrators.migration.activities`.

Each is idempotent: creates are ARM create-or-update PUTs with names the orchestrator chose, deletes
treat "absent" as done, job updates are read-modify-writes that converge. An ARM verdict (policy denial,
quota, conflict, a failed async operation) is returned as a value so the orchestrator decides, and a
fan-out never loses sight of a branch that is still creating something; anything else raises and is
retried by Durable.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
from typing import Any, Literal, assert_never

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from orchestrators.blueprints import durable_blueprint
from orchestrators.hydration.contracts import (
    BASELINE_SNAPSHOTS_STEP,
    CREATE_REQUEST,
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
    HydrationFailure,
    HydrationMetric,
    HydrationPlan,
    HydrationRequest,
    ImportDisk,
    JobProgress,
    NetworkPlacement,
    PlanOutcome,
    PreparationRequest,
    PreparationResult,
    PreparedStep,
    RecoveryPointRelease,
    ReleasedSnapshots,
    Resource,
    SnapshotDisk,
    StepUpdate,
    ToolkitStaged,
    ToolkitStaging,
)
from shared.bootstrap import get_services
from shared.domain.cycle import RecoveryPoint
from shared.domain.errors import DomainError
from shared.domain.failover import FailoverSettings, FailoverStep
from shared.domain.inventory import Firmware, OsType
from shared.domain.job import JobStatus, StepChange
from shared.domain.machine import Machine
from shared.failover.settings import effective_settings
from shared.jobs import lifecycle as jobs
from shared.migration import resource_kinds as kinds
from shared.migration import resources as ops
from shared.migration import service as migration
from shared.migration.tags import Purpose, ResourceTags
from shared.migration.toolkit_bundle import (
    READ_ONLY,
    WRITE_ONLY,
    blob_sas_url,
    upload_toolkit,
)
from shared.platform.arm_clients import ArmClients
from shared.platform.arm_errors import (
    ArmError,
    ExtensionFailed,
    PolicyDisallowed,
    QuotaExceeded,
    translate_arm_error,
)
from shared.platform.settings import MigrationSettings
from shared.platform.telemetry import get_telemetry
from shared.replication import recovery_points
from shared.replication.recovery_points import pins_container_of
from shared.replication.replica_disks import (
    RecoveryPointCopyPending,
    copy_recovery_point,
    recovery_point_copy_name,
    replica_blob_name,
)

log = logging.getLogger(__name__)
bp = durable_blueprint()

HELPER_ADMIN = "azuremigrate"
HELPER_SUBNET = "hydration"
REPORT_PREFIX = "reports"
# How often a running recovery point copy is looked at: server-side copies within one account take
# seconds to minutes, so a short poll costs little and adds at most this to the critical path.
COPY_POLL_SECONDS = 5.0


def arm_clients() -> contextlib.AbstractContextManager[ArmClients]:
    # The clients are built once by bootstrap and shared: the `with` blocks must not close them.
    return contextlib.nullcontext(get_services().arm)


def migration_settings() -> MigrationSettings:
    return get_services().settings.migration


def replica_container() -> ContainerClient:
    return get_services().replicas


def hydration_container() -> ContainerClient:
    """The toolkit and its reports: a container of the replica account (shared/migration/toolkit_bundle.py)."""
    return get_services().hydration


def _tags(plan: HydrationPlan, purpose: Literal["temporary", "final"]) -> ResourceTags:
    return ResourceTags(
        machine_id=plan.machine_id,
        job_id=plan.job_id,
        purpose=Purpose(purpose),
        created_at=get_services().clock(),
    )


# --- planning -----------------------------------------------------------------------------------------


def _vnet_ref(clients: ArmClients, default_group: str, reference: str) -> tuple[str, str]:
    """(resource group, name) of a VNet given as an ARM id or as a name in the target resource group."""
    if reference.startswith("/"):
        parsed = kinds.parse_arm_id(reference)
        return parsed.resource_group, parsed.name
    return default_group, reference


def _placement(
    clients: ArmClients, default_group: str, reference: str, subnet: str, *, any_subnet: bool
) -> NetworkPlacement:
    """The subnet `subnet` of the VNet; with `any_subnet` (the test VNet) its first subnet if it has no
    subnet of that name."""
    group, name = _vnet_ref(clients, default_group, reference)
    try:
        vnet = clients.network.virtual_networks.get(group, name)
    except HttpResponseError as exc:
        raise translate_arm_error(exc, operation=f"read virtual network {name}") from exc
    subnets = (vnet.properties.subnets if vnet.properties else None) or []
    chosen = next((s for s in subnets if (s.name or "").lower() == subnet.lower()), None)
    if chosen is None and any_subnet and subnets:
        chosen = subnets[0]
    if chosen is None:
        raise DomainError(f"virtual network {name} in resource group {group} has no subnet {subnet}")
    return NetworkPlacement(vnet_id=str(vnet.id), subnet_id=str(chosen.id), location=str(vnet.location))


@bp.activity_trigger(input_name="payload")
def plan_hydration(payload: dict[str, Any]) -> dict[str, Any]:
    """Pick the recovery point and resolve everything the hydration needs; a problem the operator must fix
    (no test VNet, a missing subnet) comes back as `failure`, not as an exception retried in vain."""
    job = HydrationRequest.model_validate(payload)
    services = get_services()
    machine = services.repos.machines.require(job.machine_id).item
    try:
        plan = _plan(machine, job)
    except (DomainError, ArmError) as exc:
        failure = HydrationFailure(
            code=getattr(exc, "code", "PlanFailed"), message=str(exc), step=migration.STEP_PICK_POINT
        )
        return PlanOutcome(failure=failure).model_dump(mode="json")
    # Retention must not delete these snapshots while the copies are made (released after phase 1).
    recovery_points.pin_recovery_point(
        pins_container_of(replica_container()),
        machine.id,
        job.job_id,
        plan.recovery_point_id,
        {d.disk_id: d.snapshot for d in plan.disks},
    )
    jobs.finish_step(
        services.repos, job.job_id, migration.STEP_PICK_POINT, JobStatus.SUCCEEDED, now=services.clock()
    )
    return PlanOutcome(plan=plan).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def release_recovery_point(payload: dict[str, Any]) -> dict[str, Any]:
    """The copies are made (or failed): unpin the job's recovery point."""
    release = RecoveryPointRelease.model_validate(payload)
    machine = get_services().repos.machines.require(release.machine_id).item
    replicas = replica_container()
    deleted = recovery_points.release_recovery_point(
        pins_container_of(replicas), replicas, machine, release.job_id, replica_blob_name
    )
    return ReleasedSnapshots(deleted=deleted).model_dump(mode="json")


def _plan(machine: Machine, job: HydrationRequest) -> HydrationPlan:
    test = job.test
    target = machine.target
    if target is None:
        raise DomainError(f"machine {machine.id} has no target settings")
    points = machine.replication.recovery_points
    point = (
        next((p for p in points if p.id == job.recovery_point_id), None)
        if job.recovery_point_id
        else machine.replication.latest_point()
    )
    if point is None:
        raise DomainError(
            f"recovery point {job.recovery_point_id or 'latest'} of machine {machine.id} is gone "
            "(retention pruned it); pick another one"
        )
    settings = migration_settings()
    failover = effective_settings(machine) if job.failover else None
    with arm_clients() as clients:
        fallback = _placement(
            clients, target.resource_group, target.virtual_network, target.subnet, any_subnet=False
        )
        if failover is not None:
            final = _placement(
                clients, failover.resource_group, failover.virtual_network, failover.subnet, any_subnet=False
            )
        elif test:
            test_vnet = job.test_virtual_network or target.test_virtual_network
            if not test_vnet:
                raise DomainError(
                    f"machine {machine.id} has no testVirtualNetwork in its target settings: set one "
                    "(an isolated VNet) with PUT /api/machines/{id}/replication before test migrating"
                )
            final = _placement(clients, target.resource_group, test_vnet, target.subnet, any_subnet=True)
        else:
            final = fallback
        subscription = clients.subscription_id
    inventory = machine.inventory
    windows = inventory.os_type is OsType.WINDOWS
    missing = [d.id for d in inventory.disks if d.id not in point.disk_snapshots]
    if missing:
        raise DomainError(f"recovery point {point.id} has no snapshot of disk(s) {', '.join(missing)}")
    disks = [
        DiskPlan(
            disk_id=d.id,
            is_os_disk=d.is_os_disk,
            size_bytes=d.size_bytes,
            snapshot=point.disk_snapshots[d.id],
            hydrate=d.is_os_disk or not windows,
        )
        for d in inventory.disks
    ]  # the source's order: the toolkit's first disk is the guest's sda
    name = target.target_vm_name or inventory.display_name
    if failover is not None:
        return _failover_plan(machine, job, failover, point, disks, final, fallback, subscription)
    if test:
        # Each test migration's VM has a name of its own (the job's), so a clean-up that failed can never
        # hand its VM, with that test's OS disk, to the next one. Windows names stop at 15 characters;
        # the suffix must survive.
        suffix = job.job_id[-6:]
        name = f"{name[:4]}-test{suffix}" if windows else f"{name[:52]}-test-{suffix}"
    return HydrationPlan(
        machine_id=machine.id,
        job_id=job.job_id,
        subscription_id=subscription,
        resource_group=target.resource_group,
        location=final.location,
        os_type="Windows" if windows else "Linux",
        hyper_v_generation="V2" if inventory.firmware is Firmware.UEFI else "V1",
        recovery_point_id=point.id,
        disks=disks,
        name_prefix=f"hyd-{job.job_id[-12:]}",
        final_vm_name=name,
        final_vm_size=target.vm_size,
        final_disk_sku=target.disk_type.value,
        final_placement=final,
        fallback_placement=fallback,
        static_ip_address=None if test or target.static_ip_address is None else str(target.static_ip_address),
        purpose="temporary" if test else "final",
        prepared_manually=job.prepared_manually,
        helper_vm_size=settings.helper_vm_size,
        helper_address_prefix=settings.helper_address_prefix,
        helper_subnet_prefix=settings.helper_subnet_prefix,
        storage_account_id=get_services().settings.replica_storage.require_account_id(),
        storage_region=final.location,
    )


# A failover shows the temporary VM's work as one step, and the baseline snapshots of the imported
# disks as the end of their import.
FAILOVER_JOB_STEPS = {
    migration.STEP_COPY_DISKS: FailoverStep.COPY_AND_IMPORT_DISKS.value,
    BASELINE_SNAPSHOTS_STEP: FailoverStep.COPY_AND_IMPORT_DISKS.value,
} | {
    step: FailoverStep.HYDRATE.value
    for step in (
        migration.STEP_HELPER_NETWORK,
        migration.STEP_HELPER_VM,
        migration.STEP_PREPARE,
        migration.STEP_DELETE_TEMPORARY,
    )
}


def _failover_plan(
    machine: Machine,
    job: HydrationRequest,
    failover: FailoverSettings,
    point: RecoveryPoint,
    disks: list[DiskPlan],
    final: NetworkPlacement,
    fallback: NetworkPlacement,
    subscription: str,
) -> HydrationPlan:
    """The failover's VM from the failover settings: its name, group, size, network, address and the
    managed disk type of each disk; built from copies of the point, like a migration's."""
    settings = migration_settings()
    inventory = machine.inventory
    skus = {disk_id: d.disk_type.value for disk_id, d in failover.disks.items()}
    os_disk = next(d for d in disks if d.is_os_disk)
    return HydrationPlan(
        machine_id=machine.id,
        job_id=job.job_id,
        subscription_id=subscription,
        resource_group=failover.resource_group,
        location=final.location,
        os_type="Windows" if inventory.os_type is OsType.WINDOWS else "Linux",
        hyper_v_generation="V2" if inventory.firmware is Firmware.UEFI else "V1",
        recovery_point_id=point.id,
        disks=[d.model_copy(update={"sku": skus.get(d.disk_id)}) for d in disks],
        name_prefix=f"hyd-{job.job_id[-12:]}",
        final_vm_name=failover.vm_name,
        final_vm_size=failover.vm_size,
        final_disk_sku=skus.get(os_disk.disk_id) or next(iter(skus.values())),
        final_placement=final,
        fallback_placement=fallback,
        static_ip_address=None if failover.static_ip_address is None else str(failover.static_ip_address),
        purpose="final",
        prepared_manually=job.prepared_manually,
        helper_vm_size=settings.helper_vm_size,
        helper_address_prefix=settings.helper_address_prefix,
        helper_subnet_prefix=settings.helper_subnet_prefix,
        storage_account_id=get_services().settings.replica_storage.require_account_id(),
        storage_region=final.location,
        disks_only=job.disks_only,
        job_steps=FAILOVER_JOB_STEPS,
        baseline_snapshots=True,
    )


# --- creates ------------------------------------------------------------------------------------------


def copy_blob_name(plan: HydrationPlan, disk: DiskPlan) -> str:
    return recovery_point_copy_name(plan.machine_id, disk.disk_id, disk.snapshot, plan.job_id)


@bp.activity_trigger(input_name="payload")
def create_resource(payload: dict[str, Any]) -> dict[str, Any]:
    """One create-and-wait of any kind the request names (a typed union: `_create` matches on its class)."""
    request = CREATE_REQUEST.validate_python(payload)
    try:
        with arm_clients() as clients:
            return _create(clients, request).model_dump(mode="json")
    except PolicyDisallowed as exc:
        return CreateResult(
            ok=False, error_code=exc.code, error_message=str(exc), policy_denied=True, arm_waits=1
        ).model_dump(mode="json")
    except ArmError as exc:
        # Our typed verdict where it says more than ARM's code (OperationNotAllowed covers quota and more).
        code = exc.code if isinstance(exc, QuotaExceeded) else exc.arm_code or exc.code
        return CreateResult(ok=False, error_code=code, error_message=str(exc), arm_waits=1).model_dump(
            mode="json"
        )
    except DomainError as exc:  # the recovery point's copy failed: the snapshot is gone or unreadable
        return CreateResult(ok=False, error_code=exc.code, error_message=str(exc)).model_dump(mode="json")


def _create(clients: ArmClients, request: CreateRequest) -> CreateResult:
    plan, rg, location = request.plan, request.plan.resource_group, request.plan.location
    tags = _tags(plan, request.purpose)
    match request:
        case ImportDisk(disk=disk):
            # Import never reads the replica: a server-side copy of the recovery point is its own blob.
            copy = copy_recovery_point(
                replica_container(),
                replica_blob_name(plan.machine_id, disk.disk_id),
                disk.snapshot,
                target_blob_name=copy_blob_name(plan, disk),
            )
            if isinstance(copy, RecoveryPointCopyPending):
                # Started (or still running): the orchestration asks again after a durable timer.
                return CreateResult(
                    ok=False,
                    error_code="RecoveryPointCopyPending",
                    error_message=f"the copy of recovery point {disk.snapshot} of disk {disk.disk_id} is still "
                    f"running (copied {copy.progress or 'unknown'})",
                    retry_after_seconds=COPY_POLL_SECONDS,
                )
            imported = ops.import_disk(
                clients,
                rg,
                request.name,
                location=location,
                source_uri=copy.url,
                storage_account_id=plan.storage_account_id,
                tags=tags,
                sku=request.disk.sku or plan.final_disk_sku,
                os_type=plan.os_type if disk.is_os_disk else None,
                hyper_v_generation=plan.hyper_v_generation if disk.is_os_disk else None,
            )
            return CreateResult(ok=True, id=imported.id, arm_waits=1)
        case CreateVirtualNetwork():
            vnet = ops.ensure_virtual_network(
                clients,
                rg,
                request.name,
                location=location,
                address_prefix=plan.helper_address_prefix,
                subnet_name=HELPER_SUBNET,
                subnet_prefix=plan.helper_subnet_prefix,
                tags=tags,
            )
            return CreateResult(ok=True, id=vnet.id, subnet_id=vnet.subnet_id, arm_waits=1)
        case CreateNetworkSecurityGroup():
            nsg = ops.ensure_helper_network_security_group(
                clients,
                rg,
                request.name,
                location=location,
                storage=ops.StorageDestination(region=plan.storage_region),
                tags=tags,
            )
            return CreateResult(ok=True, id=nsg.id, arm_waits=1)
        case CreateNetworkInterface():
            nic = ops.ensure_network_interface(
                clients,
                rg,
                request.name,
                location=location,
                subnet_id=request.subnet_id,
                network_security_group_id=request.nsg_id,
                tags=tags,
                private_ip_address=request.private_ip_address,
            )
            return CreateResult(ok=True, id=nic.id, arm_waits=1)
        case CreateHelperVm():
            vm = ops.ensure_helper_vm(
                clients,
                rg,
                request.name,
                location=location,
                size=plan.helper_vm_size,
                nic_id=request.nic_id,
                data_disk_ids=request.disk_ids,
                admin_username=HELPER_ADMIN,
                ssh_public_key=_helper_ssh_key(plan.job_id),
                tags=tags,
            )
            return CreateResult(ok=True, id=vm.id, arm_waits=1)
        case CreateVm():
            vm = ops.ensure_vm_from_disks(
                clients,
                rg,
                request.name,
                location=location,
                size=plan.final_vm_size,
                nic_id=request.nic_id,
                os_disk_id=request.os_disk_id,
                os_type=plan.os_type,
                data_disk_ids=request.data_disk_ids,
                tags=tags,
            )
            return CreateResult(ok=True, id=vm.id, arm_waits=1)
        case SnapshotDisk():
            # Tagged as the baseline it becomes: the sweeper leaves it, compensation deletes it by id.
            baseline = tags.model_copy(update={"purpose": Purpose.FAILBACK_BASELINE})
            snapshot = ops.create_incremental_snapshot(
                clients, rg, request.name, location=location, source_disk_id=request.disk_id, tags=baseline
            )
            return CreateResult(ok=True, id=snapshot.id, arm_waits=1)
        case _:
            assert_never(request)


def _helper_ssh_key(job_id: str) -> str:
    """The helper's SSH public key. Nobody logs in (password login off, inbound denied by the NSG) and the
    private half is never kept; it is derived from the job with a server secret so that a retried
    activity sends the same osProfile (ARM refuses to change it on an existing VM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    secret = get_services().settings.appliance_credential_pepper.get_secret_value().encode()
    seed = hmac.new(secret, f"hydration-helper-ssh:{job_id}".encode(), hashlib.sha256).digest()
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


# --- the preparation script ---------------------------------------------------------------------------


@bp.activity_trigger(input_name="payload")
def stage_toolkit(payload: dict[str, Any]) -> dict[str, Any]:
    """Upload the toolkit bundle if this version is not there yet (off the critical path, in parallel)."""
    ToolkitStaging.model_validate(payload)
    staged = upload_toolkit(hydration_container(), get_services().toolkit_bundle)
    return ToolkitStaged(blob_name=staged.blob_name).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def run_preparation(payload: dict[str, Any]) -> dict[str, Any]:
    """Run the toolkit on the helper with the Custom Script Extension and read its full report.

    The extension returns only the last 4 KiB of output, so the toolkit PUTs its JSON report to a blob
    through a create/write-only SAS; the bundle and the script are fetched with read-only SAS URLs. All
    SAS expire after HYDRATION_SAS_LIFETIME_MINUTES.
    """
    request = PreparationRequest.model_validate(payload)
    plan = request.plan
    container = hydration_container()
    bundle = upload_toolkit(container, get_services().toolkit_bundle)
    lifetime = migration_settings().sas_lifetime
    report_blob = f"{REPORT_PREFIX}/{plan.machine_id}/{plan.job_id}.json"
    # No cleanup of an earlier report: a retried activity re-sends the same extension configuration
    # (run_id), which the handler does not run again, so that report is this run's.
    file_uris = [
        blob_sas_url(container, bundle.script_blob_name, READ_ONLY, lifetime=lifetime),
        blob_sas_url(container, bundle.blob_name, READ_ONLY, lifetime=lifetime),
    ]
    report_url = blob_sas_url(container, report_blob, WRITE_ONLY, lifetime=lifetime)
    hydrated = [d for d in plan.disks if d.hydrate]
    disks = " ".join(f"--disk {ops.lun_device_path(lun)}" for lun in range(len(hydrated)))
    command = (
        f"sh run-hydration.sh {bundle.file_name} --install-helper-packages {disks} --report report.json "
        f"--report-url '{report_url}' --no-repos --os-hint {plan.os_type.lower()}"
    )
    exit_status: int | None = 0
    stdout_tail = ""
    message = "the preparation script succeeded"
    try:
        with arm_clients() as clients:
            result = ops.run_custom_script(
                clients,
                plan.resource_group,
                request.vm_name,
                location=plan.location,
                command=command,
                file_uris=file_uris,
                run_id=1,
                tags=_tags(plan, "temporary"),
            )
        stdout_tail = result.stdout_tail
    except ExtensionFailed as exc:
        exit_status, stdout_tail, message = exc.exit_status, exc.stdout_tail, str(exc)
    except ArmError as exc:
        # The script never ran (throttled or busy past the retry budget, a bad request): not its failure.
        return PreparationResult(
            exit_status=None, status="not_run", message=str(exc), arm_code=exc.arm_code or exc.code
        ).model_dump(mode="json")
    try:
        report: dict[str, Any] = json.loads(container.download_blob(report_blob).readall())
    except (ResourceNotFoundError, ValueError):
        report = {}
    return _preparation_result(exit_status, message, stdout_tail, report, report_blob).model_dump(mode="json")


def _preparation_result(
    exit_status: int | None, message: str, stdout_tail: str, report: dict[str, Any], report_blob: str
) -> PreparationResult:
    status = str(report.get("status") or "")
    if status not in ("succeeded", "failed", "manual_preparation_required"):
        status = (
            "succeeded"
            if exit_status == 0
            else "manual_preparation_required"
            if exit_status == 3
            else "failed"
        )
    os_info = report.get("os") or {}
    described = " ".join(str(os_info[k]) for k in ("distribution", "version") if os_info.get(k)) or None
    steps = [
        PreparedStep(
            name=str(s.get("name")), status=str(s.get("status")), message=str(s.get("message") or "")
        )
        for s in report.get("steps") or []
        if isinstance(s, dict)
    ]
    changes = []
    for change in report.get("changes") or []:
        if isinstance(change, dict):
            target = change.get("target") or ""
            note = change.get("note") or ""
            changes.append(f"{change.get('step')}: {target}{f' ({note})' if note else ''}")
    if status == "failed" and report.get("errors"):
        message = "; ".join(str(e) for e in report["errors"])[:2000]
    return PreparationResult(
        exit_status=exit_status,
        status=status,
        message=message,
        os_description=described,
        steps=steps,
        changes=changes,
        manual_steps=[str(m) for m in report.get("manual_steps") or []],
        warnings=[str(w) for w in report.get("warnings") or []],
        errors=[str(e) for e in report.get("errors") or []],
        stdout_tail=stdout_tail,
        report_blob=report_blob if report else None,
    )


# --- deletes ------------------------------------------------------------------------------------------


@bp.activity_trigger(input_name="payload")
def delete_resource(payload: dict[str, Any]) -> dict[str, Any]:
    """Delete one recorded resource and wait; an absent one is done. Raises (and is retried) otherwise."""
    resource = DeleteRequest.model_validate(payload).resource
    delete_one(resource)
    return resource.model_dump(mode="json")


def delete_one(resource: Resource) -> None:
    """Delete a recorded resource (an ARM resource, or a recovery point's copy in storage) and wait."""
    if kinds.spec_of(resource.kind).provider_type is None:
        with contextlib.suppress(ResourceNotFoundError):
            replica_container().delete_blob(resource.id)
        return
    with arm_clients() as clients:
        kinds.delete_resource(clients, resource.id)


# --- the job and telemetry -----------------------------------------------------------------------------


@bp.activity_trigger(input_name="payload")
def record_job_progress(payload: dict[str, Any]) -> dict[str, Any]:
    progress = JobProgress.model_validate(payload)
    services = get_services()

    def change(update: StepUpdate) -> StepChange:
        return StepChange(update.name, JobStatus(update.status), update.message)

    jobs.update_steps(
        services.repos,
        progress.job_id,
        [change(u) for u in progress.updates],
        now=services.clock(),
        add_after=progress.add_after,
        added=[change(a) for a in progress.added],
    )
    return Done().model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def record_hydration_metric(payload: dict[str, Any]) -> dict[str, Any]:
    metric = HydrationMetric.model_validate(payload)
    get_telemetry().record_hydration_duration(
        metric.seconds, machine_id=metric.machine_id, os_family=metric.os_family, outcome=metric.outcome
    )
    return Done().model_dump(mode="json")
