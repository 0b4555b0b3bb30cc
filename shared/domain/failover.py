"""Failover settings: what the operator views and edits before a failover to Azure.

The VM's name, resource group and size, the managed disk type of each disk, the virtual network and
subnet it joins and its static IP address. Until the operator changes them they are the replication's
target settings; once changed they are stored on the machine and the failover uses them. Names, sizes,
networks and addresses obey the same rules as the target settings (`shared.domain.target`), checked by
the same functions, so a value accepted there is accepted here and refused with the same words.
"""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network

from pydantic import Field, model_validator

from shared.domain.errors import FieldProblem
from shared.domain.inventory import MachineInventory
from shared.domain.target import (
    DiskType,
    ResourceGroupName,
    SubnetName,
    TargetSettings,
    VirtualNetworkRef,
    VmName,
    VmSize,
    premium_problem,
    static_ip_problem,
    vm_name_problem,
)
from shared.domain.wire import WireModel


class FailoverStep(StrEnum):
    """The steps of a Failover job, in order; the error catalog names a failure by its step."""

    CHECK_PREREQUISITES = "Check prerequisites"
    SHUT_DOWN_SOURCE = "Shut down source"
    STOP_REPLICATION = "Stop replication"
    PROCESS_PENDING_DATA = "Process pending data"
    PICK_RECOVERY_POINT = "Pick recovery point"
    COPY_AND_IMPORT_DISKS = "Copy recovery point and import disks"
    HYDRATE = "Hydrate"
    CREATE_VM = "Create VM"
    START_VM = "Start VM"
    TAKE_FAILBACK_BASELINE = "Take failback baseline"


class ChangeRecoveryPointStep(StrEnum):
    """The steps of a ChangeRecoveryPoint job, in order."""

    PICK_RECOVERY_POINT = "Pick recovery point"
    COPY_AND_IMPORT_DISKS = "Copy recovery point and import disks"
    HYDRATE = "Hydrate"
    STOP_VM = "Stop VM"
    SWAP_DISKS = "Swap disks"
    START_VM = "Start VM"
    DELETE_OLD_DISKS = "Delete old disks"
    TAKE_FAILBACK_BASELINE = "Take failback baseline"


class CommitStep(StrEnum):
    """The steps of a Commit job."""

    DELETE_OTHER_POINTS = "Delete the other recovery points"


class FailoverDisk(WireModel):
    disk_type: DiskType = Field(description="the managed disk type the failed-over VM gets for this disk")


class FailoverSettings(WireModel):
    """Body of GET /api/machines/{id}/failover-settings, changed by PATCH with a JSON merge patch.

    Stored on the machine (`failoverSettings`) once the operator changed something; until then it is
    derived from the target settings (`defaults_for`).
    """

    vm_name: VmName = Field(description="the failed-over VM's name")
    resource_group: ResourceGroupName = Field(description="resource group the VM is created in")
    vm_size: VmSize = Field(description="target size, e.g. Standard_D4s_v3")
    virtual_network: VirtualNetworkRef = Field(
        description="VNet ARM id, or a VNet name in the resource group, the VM joins after failover"
    )
    subnet: SubnetName = Field(description="subnet of that VNet")
    subnet_address_prefix: IPv4Network | None = Field(
        default=None, description="the subnet's address prefix when known; enables static-IP checks"
    )
    static_ip_address: IPv4Address | None = Field(
        default=None, description="the VM's private IP address; null: Azure assigns one (dynamic)"
    )
    disks: dict[str, FailoverDisk] = Field(description="per source disk id, the managed disk created for it")

    @model_validator(mode="after")
    def _cross_field(self) -> FailoverSettings:
        for disk_id, disk in self.disks.items():
            if problem := premium_problem(f"disks.{disk_id}.diskType", disk.disk_type, self.vm_size):
                raise problem
        if problem := static_ip_problem(self.static_ip_address, self.subnet_address_prefix, self.subnet):
            raise problem
        return self

    @classmethod
    def defaults_for(cls, target: TargetSettings, inventory: MachineInventory) -> FailoverSettings:
        """The settings as replication was enabled with them: every disk of the target's disk type."""
        return cls(
            vm_name=target.vm_name_for(inventory),
            resource_group=target.resource_group,
            vm_size=target.vm_size,
            virtual_network=target.virtual_network,
            subnet=target.subnet,
            subnet_address_prefix=target.subnet_address_prefix,
            static_ip_address=target.static_ip_address,
            disks={d.id: FailoverDisk(disk_type=target.disk_type) for d in inventory.disks},
        )

    def for_inventory(self, target: TargetSettings, inventory: MachineInventory) -> FailoverSettings:
        """These settings for the machine's disks as they are now: a disk added since the settings were
        stored gets the target's disk type, a removed one is dropped."""
        disks = {
            d.id: self.disks.get(d.id) or FailoverDisk(disk_type=target.disk_type) for d in inventory.disks
        }
        if disks == self.disks:
            return self
        return self.model_copy(update={"disks": disks})

    def validate_for_machine(self, machine_id: str, inventory: MachineInventory) -> list[FieldProblem]:
        """Problems that depend on the machine: the VM name for its OS, a type for each of its disks."""
        problems: list[FieldProblem] = []
        if problem := vm_name_problem(self.vm_name, inventory.os_type):
            problems.append(FieldProblem("vmName", problem))
        known = [d.id for d in inventory.disks]
        for disk_id in self.disks:
            if disk_id not in known:
                problems.append(
                    FieldProblem(
                        f"disks.{disk_id}",
                        f"is not a disk of machine {machine_id}; its disks are {', '.join(known)}",
                    )
                )
        for disk_id in known:
            if disk_id not in self.disks:
                problems.append(
                    FieldProblem(
                        f"disks.{disk_id}",
                        "needs a diskType: every disk of the machine becomes a managed disk; set "
                        f'{{"disks": {{"{disk_id}": {{"diskType": ...}}}}}} instead of removing it',
                    )
                )
        return problems
