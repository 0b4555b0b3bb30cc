"""ARM operations of the hydration, test-migration and migration flows, one create-and-wait per call.

Each function is sized for one Durable activity: it issues one PUT (or DELETE) and waits for ARM's
async operation inside the activity, so a retried activity re-sends the same PUT, which ARM treats as
an idempotent create-or-update. Every created resource carries `ResourceTags` (machine, job, purpose,
creation time) so that the sweeper can find what a crashed flow left behind. Deletes treat "not found"
as done. Failures are the typed errors of `shared.platform.arm_errors`.

Network design of the temporary helper (see `helper_security_rules`): the NSG is attached to the
helper's NIC, not to a subnet, so the same NSG works in the temporary VNet and, when a policy forbids
creating network artefacts, in the target subnet the operator chose, without touching that subnet.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any, Final, Literal, TypeVar

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.polling import LROPoller
from azure.mgmt.compute import models as cm
from azure.mgmt.core.tools import parse_resource_id
from azure.mgmt.network import models as nm
from pydantic import BaseModel, ConfigDict, Field

from shared.migration.tags import ResourceTags
from shared.platform.arm_clients import ArmClients
from shared.platform.arm_errors import ArmError, ExtensionFailed, translate_arm_error

T = TypeVar("T")

CSE_PUBLISHER: Final = "Microsoft.Azure.Extensions"
CSE_TYPE: Final = "CustomScript"
CSE_VERSION: Final = "2.1"
# Where a Linux VM's data disk at LUN n appears (udev rules shipped with the Azure Linux agent).
AZURE_LUN_PATH: Final = "/dev/disk/azure/scsi1/lun{lun}"
# Azure's platform address: DNS, the VM agent's wire server (80) and host plugin (32526).
AZURE_PLATFORM_IP: Final = "168.63.129.16"


class ResourceRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str


class VirtualNetworkRef(ResourceRef):
    subnet_id: str


class NetworkInterfaceRef(ResourceRef):
    private_ip_address: str | None = None


class DiskRef(ResourceRef):
    size_bytes: int | None = None


class VirtualMachineRef(ResourceRef):
    vm_id: str | None = None


class SnapshotRef(DiskRef):
    source_disk_id: str
    incremental_snapshot_family_id: str | None = None


class PowerState(StrEnum):
    """A VM's `PowerState/<state>` status in its instance view."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"  # powered off, still allocated (and billed)
    DEALLOCATING = "deallocating"
    DEALLOCATED = "deallocated"
    UNKNOWN = "unknown"


class VmPower(BaseModel):
    """A VM in the power state asked for; `changed` is False when it already was (a retried activity)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    power_state: PowerState
    changed: bool


class SwappedDisks(BaseModel):
    """The VM's disks after a swap. `detached_disk_ids` are the disks this call took off the VM (now
    unattached, still existing); empty when the VM already had the wanted disks (a retried activity),
    so the caller deletes the old disks from its own record of them, not from this list alone."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    os_disk_id: str
    data_disk_ids: list[str]
    detached_disk_ids: list[str]
    changed: bool


class StorageDestination(BaseModel):
    """The storage account the helper VM may reach (the one holding the toolkit and receiving its report)."""

    model_config = ConfigDict(frozen=True)

    region: str = Field(description="the account's region: the rule targets the Storage.<region> service tag")
    addresses: list[str] = Field(
        default_factory=list,
        description="explicit IPs/CIDRs instead of the service tag (e.g. a private endpoint's address)",
    )


class ScriptResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    succeeded: bool
    message: str
    stdout_tail: str
    stderr_tail: str


@contextmanager
def _arm_call(operation: str) -> Iterator[None]:
    try:
        yield
    except HttpResponseError as exc:
        raise translate_arm_error(exc, operation=operation) from exc


def _wait(poller: LROPoller[T]) -> T:
    return poller.result()


# --- network ------------------------------------------------------------------------------------------


def ensure_virtual_network(
    clients: ArmClients,
    resource_group: str,
    name: str,
    *,
    location: str,
    address_prefix: str,
    subnet_name: str,
    subnet_prefix: str,
    tags: ResourceTags,
) -> VirtualNetworkRef:
    """The temporary VNet with its one subnet, in one PUT (a VNet PUT without its subnets deletes them)."""
    body = nm.VirtualNetwork(
        location=location,
        tags=tags.to_arm(),
        properties=nm.VirtualNetworkPropertiesFormat(
            address_space=nm.AddressSpace(address_prefixes=[address_prefix]),
            subnets=[
                nm.Subnet(
                    name=subnet_name, properties=nm.SubnetPropertiesFormat(address_prefix=subnet_prefix)
                )
            ],
        ),
    )
    with _arm_call(f"create virtual network {name}"):
        vnet = _wait(clients.network.virtual_networks.begin_create_or_update(resource_group, name, body))
    subnets = (vnet.properties.subnets if vnet.properties else None) or []
    subnet = next(s for s in subnets if (s.name or "").lower() == subnet_name.lower())
    return VirtualNetworkRef(id=str(vnet.id), name=name, subnet_id=str(subnet.id))


def helper_security_rules(storage: StorageDestination) -> list[nm.SecurityRule]:
    """The helper VM may reach only its storage account (HTTPS) and Azure's platform address.

    Outbound, by priority: 100 allow TCP 443 to `Storage.<region>` (or the given addresses); 110 allow
    168.63.129.16 (DNS to resolve the account, the VM agent's wire server and host plugin, through which
    the extension handler is delivered and reports status); 4096 deny everything else, which overrides
    the defaults AllowVnetOutBound and AllowInternetOutBound. Inbound: 4096 deny everything, so that in
    the fallback case (the operator's subnet) no other VM can reach the helper. The service tag is the
    narrowest rule that survives the account's IPs changing; it still admits other accounts in the
    region, which is why the script's SAS is read-only on one blob and the report's write-only on one.
    """
    storage_rule: dict[str, Any] = (
        {"prefixes": list(storage.addresses)}
        if storage.addresses
        else {"prefix": f"Storage.{storage.region.replace(' ', '').lower()}"}
    )
    return [
        _rule(
            "allow-storage-https-out",
            100,
            "Outbound",
            "Allow",
            "Tcp",
            port="443",
            description="the toolkit download and the report upload",
            **storage_rule,
        ),
        _rule(
            "allow-azure-platform-out",
            110,
            "Outbound",
            "Allow",
            "*",
            prefix=AZURE_PLATFORM_IP,
            description="DNS, VM agent wire server and host plugin",
        ),
        _rule("deny-all-out", 4096, "Outbound", "Deny", "*", prefix="*"),
        _rule("deny-all-in", 4096, "Inbound", "Deny", "*", prefix="*"),
    ]


def _rule(
    name: str,
    priority: int,
    direction: str,
    access: str,
    protocol: str,
    *,
    prefix: str | None = None,
    prefixes: list[str] | None = None,
    port: str = "*",
    description: str | None = None,
) -> nm.SecurityRule:
    return nm.SecurityRule(
        name=name,
        properties=nm.SecurityRulePropertiesFormat(
            priority=priority,
            direction=direction,
            access=access,
            protocol=protocol,
            source_address_prefix="*",
            source_port_range="*",
            destination_address_prefix=prefix,
            destination_address_prefixes=prefixes,
            destination_port_range=port,
            description=description,
        ),
    )


def ensure_helper_network_security_group(
    clients: ArmClients,
    resource_group: str,
    name: str,
    *,
    location: str,
    storage: StorageDestination,
    tags: ResourceTags,
) -> ResourceRef:
    body = nm.NetworkSecurityGroup(
        location=location,
        tags=tags.to_arm(),
        properties=nm.NetworkSecurityGroupPropertiesFormat(security_rules=helper_security_rules(storage)),
    )
    with _arm_call(f"create network security group {name}"):
        nsg = _wait(
            clients.network.network_security_groups.begin_create_or_update(resource_group, name, body)
        )
    return ResourceRef(id=str(nsg.id), name=name)


def ensure_network_interface(
    clients: ArmClients,
    resource_group: str,
    name: str,
    *,
    location: str,
    subnet_id: str,
    network_security_group_id: str | None,
    tags: ResourceTags,
    private_ip_address: str | None = None,
) -> NetworkInterfaceRef:
    """A NIC in the subnet, dynamic address unless `private_ip_address` asks for a static one."""
    config = nm.NetworkInterfaceIPConfiguration(
        name="ipconfig1",
        properties=nm.NetworkInterfaceIPConfigurationPropertiesFormat(
            subnet=nm.Subnet(id=subnet_id),
            private_ip_allocation_method="Static" if private_ip_address else "Dynamic",
            private_ip_address=private_ip_address,
            primary=True,
        ),
    )
    body = nm.NetworkInterface(
        location=location,
        tags=tags.to_arm(),
        properties=nm.NetworkInterfacePropertiesFormat(
            ip_configurations=[config],
            network_security_group=nm.NetworkSecurityGroup(id=network_security_group_id)
            if network_security_group_id
            else None,
        ),
    )
    with _arm_call(f"create network interface {name}"):
        nic = _wait(clients.network.network_interfaces.begin_create_or_update(resource_group, name, body))
    configs = (nic.properties.ip_configurations if nic.properties else None) or []
    address = configs[0].properties.private_ip_address if configs and configs[0].properties else None
    return NetworkInterfaceRef(id=str(nic.id), name=name, private_ip_address=address)


# --- disks --------------------------------------------------------------------------------------------


def disk_ref(disk: cm.Disk | cm.Snapshot, name: str) -> DiskRef:
    props = disk.properties
    size = props.disk_size_bytes if props is not None else None
    if size is None and props is not None and props.disk_size_gb is not None:
        size = props.disk_size_gb * 1024**3
    return DiskRef(id=str(disk.id), name=name, size_bytes=size)


def import_disk(
    clients: ArmClients,
    resource_group: str,
    name: str,
    *,
    location: str,
    source_uri: str,
    storage_account_id: str,
    tags: ResourceTags,
    os_type: Literal["Windows", "Linux"] | None = None,
    hyper_v_generation: Literal["V1", "V2"] | None = None,
    sku: str = "Standard_LRS",
) -> DiskRef:
    """A managed disk imported from a fixed-VHD page blob (a recovery point's own copy, never the replica)."""
    body = cm.Disk(
        location=location,
        tags=tags.to_arm(),
        sku=cm.DiskSku(name=sku),
        properties=cm.DiskProperties(
            os_type=os_type,
            hyper_v_generation=hyper_v_generation,
            creation_data=cm.CreationData(
                create_option="Import", source_uri=source_uri, storage_account_id=storage_account_id
            ),
        ),
    )
    with _arm_call(f"import disk {name}"):
        disk = _wait(clients.compute.disks.begin_create_or_update(resource_group, name, body))
    return disk_ref(disk, name)


def create_incremental_snapshot(
    clients: ArmClients,
    resource_group: str,
    name: str,
    *,
    location: str,
    source_disk_id: str,
    tags: ResourceTags,
) -> SnapshotRef:
    """An incremental snapshot of a managed disk (`incremental: true`, `createOption: Copy`).

    Idempotent by name: a snapshot of that name already taken of the same disk is returned as it is, so
    a retried activity keeps the point in time of the first run (a second PUT would not retake it, but
    would rewrite its tags). One left Failed by an earlier run is deleted and taken again; one still
    being taken is a 409 (`ArmConflict`, AnotherOperationInProgress) for the caller to retry. Incremental
    snapshots of one disk share a family id: the page-range diff between two of them is what a later
    replication back from Azure reads. Azure picks their storage (standard HDD, ZRS where offered).
    """
    operations = clients.compute.snapshots
    existing: cm.Snapshot | None
    try:
        existing = operations.get(resource_group, name)
    except ResourceNotFoundError:
        existing = None
    except HttpResponseError as exc:
        raise translate_arm_error(exc, operation=f"read snapshot {name}") from exc
    if existing is not None and existing.properties is not None:
        props = existing.properties
        source = props.creation_data.source_resource_id if props.creation_data else None
        if props.provisioning_state == "Failed":
            with _arm_call(f"delete failed snapshot {name}"):
                _wait(operations.begin_delete(resource_group, name))
        elif (
            props.incremental
            and props.provisioning_state in (None, "Succeeded")
            and (source or "").lower() == source_disk_id.lower()
        ):
            return _snapshot_ref(existing, name, source_disk_id)
        # Still being taken, or of another disk: the PUT gets ARM's own answer (409, retried later).

    body = cm.Snapshot(
        location=location,
        tags=tags.to_arm(),
        properties=cm.SnapshotProperties(
            incremental=True,
            creation_data=cm.CreationData(create_option="Copy", source_resource_id=source_disk_id),
        ),
    )
    with _arm_call(f"create incremental snapshot {name}"):
        snapshot = _wait(operations.begin_create_or_update(resource_group, name, body))
    return _snapshot_ref(snapshot, name, source_disk_id)


def _snapshot_ref(snapshot: cm.Snapshot, name: str, source_disk_id: str) -> SnapshotRef:
    disk = disk_ref(snapshot, name)
    props = snapshot.properties
    return SnapshotRef(
        id=disk.id,
        name=name,
        size_bytes=disk.size_bytes,
        source_disk_id=source_disk_id,
        incremental_snapshot_family_id=props.incremental_snapshot_family_id if props else None,
    )


# --- virtual machines ---------------------------------------------------------------------------------


class MarketplaceImage(BaseModel):
    model_config = ConfigDict(frozen=True)

    publisher: str = "Debian"
    offer: str = "debian-12"
    sku: str = "12-gen2"
    version: str = "latest"


def _data_disks(disk_ids: list[str]) -> list[cm.DataDisk]:
    # LUNs follow the list order, so the caller knows disk i is LUN i (see lun_device_path).
    return [
        cm.DataDisk(
            lun=lun,
            create_option="Attach",
            managed_disk=cm.ManagedDiskParameters(id=disk_id),
            delete_option="Detach",
        )
        for lun, disk_id in enumerate(disk_ids)
    ]


def _vm_ref(vm: cm.VirtualMachine, name: str) -> VirtualMachineRef:
    return VirtualMachineRef(id=str(vm.id), name=name, vm_id=vm.properties.vm_id if vm.properties else None)


def ensure_helper_vm(
    clients: ArmClients,
    resource_group: str,
    name: str,
    *,
    location: str,
    size: str,
    nic_id: str,
    data_disk_ids: list[str],
    admin_username: str,
    ssh_public_key: str,
    tags: ResourceTags,
    image: MarketplaceImage | None = None,
) -> VirtualMachineRef:
    """The temporary Linux helper: a marketplace image with the disks to prepare attached as data disks.

    Its own OS disk and NIC go with it when it is deleted (deleteOption Delete): the implicit OS disk
    cannot carry our tags, so this is what keeps it from being orphaned. The attached copies are
    detached, not deleted: the flow still needs the prepared OS disk.
    """
    chosen = image or MarketplaceImage()
    body = cm.VirtualMachine(
        location=location,
        tags=tags.to_arm(),
        properties=cm.VirtualMachineProperties(
            hardware_profile=cm.HardwareProfile(vm_size=size),
            storage_profile=cm.StorageProfile(
                image_reference=cm.ImageReference(
                    publisher=chosen.publisher, offer=chosen.offer, sku=chosen.sku, version=chosen.version
                ),
                os_disk=cm.OSDisk(
                    create_option="FromImage",
                    delete_option="Delete",
                    os_type="Linux",
                    managed_disk=cm.ManagedDiskParameters(storage_account_type="Standard_LRS"),
                ),
                data_disks=_data_disks(data_disk_ids),
            ),
            os_profile=cm.OSProfile(
                computer_name=name[:64],
                admin_username=admin_username,
                linux_configuration=cm.LinuxConfiguration(
                    disable_password_authentication=True,
                    ssh=cm.SshConfiguration(
                        public_keys=[
                            cm.SshPublicKey(
                                path=f"/home/{admin_username}/.ssh/authorized_keys", key_data=ssh_public_key
                            )
                        ]
                    ),
                ),
            ),
            network_profile=cm.NetworkProfile(
                network_interfaces=[
                    cm.NetworkInterfaceReference(
                        id=nic_id,
                        properties=cm.NetworkInterfaceReferenceProperties(
                            primary=True, delete_option="Delete"
                        ),
                    )
                ]
            ),
        ),
    )
    with _arm_call(f"create helper VM {name}"):
        vm = _wait(clients.compute.virtual_machines.begin_create_or_update(resource_group, name, body))
    return _vm_ref(vm, name)


def ensure_vm_from_disks(
    clients: ArmClients,
    resource_group: str,
    name: str,
    *,
    location: str,
    size: str,
    nic_id: str,
    os_disk_id: str,
    os_type: Literal["Windows", "Linux"],
    data_disk_ids: list[str],
    tags: ResourceTags,
) -> VirtualMachineRef:
    """The migrated (or test) VM: boots from the prepared OS disk, with the data disks at LUN 0..n."""
    body = cm.VirtualMachine(
        location=location,
        tags=tags.to_arm(),
        properties=cm.VirtualMachineProperties(
            hardware_profile=cm.HardwareProfile(vm_size=size),
            storage_profile=cm.StorageProfile(
                os_disk=cm.OSDisk(
                    create_option="Attach",
                    os_type=os_type,
                    managed_disk=cm.ManagedDiskParameters(id=os_disk_id),
                    delete_option="Detach",
                ),
                data_disks=_data_disks(data_disk_ids),
            ),
            network_profile=cm.NetworkProfile(
                network_interfaces=[
                    cm.NetworkInterfaceReference(
                        id=nic_id, properties=cm.NetworkInterfaceReferenceProperties(primary=True)
                    )
                ]
            ),
            diagnostics_profile=cm.DiagnosticsProfile(boot_diagnostics=cm.BootDiagnostics(enabled=True)),
        ),
    )
    with _arm_call(f"create VM {name}"):
        vm = _wait(clients.compute.virtual_machines.begin_create_or_update(resource_group, name, body))
    return _vm_ref(vm, name)


# --- power and disks of an existing VM ---------------------------------------------------------------


def _power_of(vm: cm.VirtualMachine) -> PowerState:
    view = vm.properties.instance_view if vm.properties else None
    for status in (view.statuses if view else None) or []:
        code = status.code or ""
        if code.startswith("PowerState/"):
            try:
                return PowerState(code.split("/", 1)[1].lower())
            except ValueError:
                return PowerState.UNKNOWN
    return PowerState.UNKNOWN


def vm_power_state(clients: ArmClients, resource_group: str, name: str) -> PowerState:
    """The VM's power state from its instance view."""
    with _arm_call(f"read instance view of VM {name}"):
        vm = clients.compute.virtual_machines.get(resource_group, name, expand="instanceView")
    return _power_of(vm)


def _set_power(clients: ArmClients, resource_group: str, name: str, wanted: PowerState, verb: str) -> VmPower:
    operations = clients.compute.virtual_machines
    with _arm_call(f"read instance view of VM {name}"):
        vm = operations.get(resource_group, name, expand="instanceView")
    if _power_of(vm) is wanted:
        return VmPower(id=str(vm.id), name=name, power_state=wanted, changed=False)
    with _arm_call(f"{verb} VM {name}"):
        if wanted is PowerState.RUNNING:
            _wait(operations.begin_start(resource_group, name))
        else:
            _wait(operations.begin_deallocate(resource_group, name))
    return VmPower(id=str(vm.id), name=name, power_state=wanted, changed=True)


def start_vm(clients: ArmClients, resource_group: str, name: str) -> VmPower:
    """Start the VM and wait until it runs; a running VM is left as it is.

    Starting a deallocated VM allocates its cores again, so a regional quota can refuse it
    (QuotaExceeded), as it can refuse a create.
    """
    return _set_power(clients, resource_group, name, PowerState.RUNNING, "start")


def deallocate_vm(clients: ArmClients, resource_group: str, name: str) -> VmPower:
    """Stop and deallocate the VM (the state its OS disk can be swapped in); a deallocated VM is left
    as it is, a powered-off one is deallocated."""
    return _set_power(clients, resource_group, name, PowerState.DEALLOCATED, "deallocate")


def swap_vm_disks(
    clients: ArmClients,
    resource_group: str,
    name: str,
    *,
    os_disk_id: str,
    data_disk_ids: list[str],
) -> SwappedDisks:
    """Give the VM another OS disk and other data disks (LUN i = data_disk_ids[i]) in one update.

    The VM must be deallocated: Azure refuses an OS-disk swap otherwise (ArmConflict,
    `OperationNotAllowed`). The VM is read and written back whole (ARM's update is a PUT of the full
    model), so its size, NICs and diagnostics stay. A VM that already has exactly these disks is not
    written again, unless its last update failed (ARM kept the model, the VM is `Failed`): then the same
    update is sent again. The old disks are detached, not deleted (`deleteOption: Detach`).
    """
    operations = clients.compute.virtual_machines
    with _arm_call(f"read VM {name}"):
        vm = operations.get(resource_group, name)
    storage = vm.properties.storage_profile if vm.properties else None
    if storage is None or storage.os_disk is None or storage.os_disk.managed_disk is None:
        raise ValueError(f"VM {name} has no managed OS disk to swap")
    current_os = str(storage.os_disk.managed_disk.id or "")
    current_data = [
        str(d.managed_disk.id)
        for d in sorted(storage.data_disks or [], key=lambda d: d.lun)
        if d.managed_disk
    ]
    wanted = [os_disk_id, *data_disk_ids]
    failed = vm.properties is not None and vm.properties.provisioning_state == "Failed"
    if not failed and [i.lower() for i in [current_os, *current_data]] == [i.lower() for i in wanted]:
        return SwappedDisks(
            id=str(vm.id),
            name=name,
            os_disk_id=current_os,
            data_disk_ids=current_data,
            detached_disk_ids=[],
            changed=False,
        )
    storage.os_disk.managed_disk = cm.ManagedDiskParameters(id=os_disk_id)
    storage.os_disk.name = str(parse_resource_id(os_disk_id)["name"])
    storage.data_disks = _data_disks(data_disk_ids)
    with _arm_call(f"swap disks of VM {name}"):
        updated = _wait(operations.begin_create_or_update(resource_group, name, vm))
    kept = {i.lower() for i in wanted}
    # A resent update after a failed one detaches nothing more: the failed one already took them off.
    return SwappedDisks(
        id=str(updated.id),
        name=name,
        os_disk_id=os_disk_id,
        data_disk_ids=list(data_disk_ids),
        detached_disk_ids=[i for i in [current_os, *current_data] if i.lower() not in kept],
        changed=True,
    )


# --- Custom Script Extension -------------------------------------------------------------------------


def lun_device_path(lun: int) -> str:
    """The data disk at `lun` on a Linux VM, for `commandToExecute`: `/dev/disk/azure/scsi1/lun<n>`."""
    return AZURE_LUN_PATH.format(lun=lun)


_OUTPUT: Final = re.compile(r"\n\[stdout\]\n(?P<stdout>.*)\n\[stderr\]\n(?P<stderr>.*)\Z", re.DOTALL)
_EXIT: Final = re.compile(r"exit status=(-?\d+)")


def parse_script_message(message: str) -> tuple[str, str]:
    """stdout and stderr tails from the Linux handler's status message (`...\\n[stdout]\\n...\\n[stderr]\\n...`)."""
    match = _OUTPUT.search(message)
    if match is None:
        return "", ""
    return match.group("stdout"), match.group("stderr")


def _extension_status(
    clients: ArmClients, resource_group: str, vm_name: str, name: str
) -> cm.InstanceViewStatus | None:
    extension = clients.compute.virtual_machine_extensions.get(
        resource_group, vm_name, name, expand="instanceView"
    )
    view = extension.properties.instance_view if extension.properties else None
    statuses = (view.statuses if view is not None else None) or []
    return statuses[0] if statuses else None


def run_custom_script(
    clients: ArmClients,
    resource_group: str,
    vm_name: str,
    *,
    location: str,
    command: str,
    file_uris: list[str],
    run_id: int,
    tags: ResourceTags,
    name: str = "hydration",
) -> ScriptResult:
    """Run `command` on the VM with the Linux Custom Script Extension and return its output tails.

    The command and the SAS URLs go in protectedSettings (encrypted, never returned by ARM). `run_id`
    becomes the handler's `timestamp`: the same value re-sent by a retried activity does not rerun the
    script, a new one does. A failing script raises ExtensionFailed with the tails the handler reported.
    """
    body = cm.VirtualMachineExtension(
        location=location,
        tags=tags.to_arm(),
        properties=cm.VirtualMachineExtensionProperties(
            publisher=CSE_PUBLISHER,
            type=CSE_TYPE,
            type_handler_version=CSE_VERSION,
            auto_upgrade_minor_version=True,
            settings={"timestamp": run_id},
            protected_settings={"commandToExecute": command, "fileUris": file_uris},
        ),
    )
    operation = f"run custom script {name} on {vm_name}"
    try:
        with _arm_call(operation):
            _wait(
                clients.compute.virtual_machine_extensions.begin_create_or_update(
                    resource_group, vm_name, name, body
                )
            )
    except ArmError as exc:
        if exc.arm_code not in ("VMExtensionProvisioningError", "VMExtensionProvisioningTimeout"):
            raise
        with _arm_call(f"read instance view of {name} on {vm_name}"):
            status = _extension_status(clients, resource_group, vm_name, name)
        message = (status.message if status is not None else None) or exc.message
        stdout_tail, stderr_tail = parse_script_message(message)
        exit_match = _EXIT.search(message)
        raise ExtensionFailed(
            f"{operation} failed: {message}",
            stdout_tail=stdout_tail,
            stderr_tail=stderr_tail,
            exit_status=int(exit_match.group(1)) if exit_match else None,
            operation=operation,
            arm_code=exc.arm_code,
            status_code=exc.status_code,
        ) from exc
    with _arm_call(f"read instance view of {name} on {vm_name}"):
        status = _extension_status(clients, resource_group, vm_name, name)
    message = (status.message if status is not None else None) or ""
    stdout_tail, stderr_tail = parse_script_message(message)
    return ScriptResult(succeeded=True, message=message, stdout_tail=stdout_tail, stderr_tail=stderr_tail)
