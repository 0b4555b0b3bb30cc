"""The one table of the resource kinds the migration flows create and delete.

Per kind: its ARM provider type, the operation that creates it (in `shared.migration.resources`), the
one that deletes it, whether it carries our `ResourceTags`, and its place in the deletion order. The
order is the table's: deleting in it, nothing is refused for being in use:

  VMs -> NICs -> subnets -> VNets -> NSGs -> disks -> snapshots -> recovery-point copies (blobs)

A VM holds its NIC and disks; a NIC holds its subnet and its NSG; the helper's NSG is attached to its
NIC, but an NSG attached to a subnet of a temporary VNet is also freed by deleting the VNet first, so
VNets come before NSGs. Disks go after VMs (an attached disk cannot be deleted), snapshots and the
blobs disks were imported from last (a copy may still be reading one).

The same holds the other way: a resource whose delete failed still holds what it uses (`held_by`), and
ARM refuses those while it stands: a NIC behind an undeletable VM would only be refused again, retry
after retry. `held_back` tells, for a kind, which kind left standing may hold it back; the flows then
try it once (what the failed one does not hold still goes), the sweeper leaves it for its next run.

Hydration records what it is about to create by kind, its compensation and the test-migration clean-up
delete by kind in this order, and the sweeper deletes the tagged leftovers it finds in this order.
Resource ids are read with `azure.mgmt.core.tools.parse_resource_id`, never by position.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.polling import LROPoller
from azure.mgmt.core.tools import parse_resource_id
from pydantic import BaseModel, ConfigDict

from shared.migration import resources as ops
from shared.platform.arm_clients import ArmClients
from shared.platform.arm_errors import ArmNotFound, translate_arm_error


class ResourceKind(StrEnum):
    VM = "vm"
    NIC = "nic"
    SUBNET = "subnet"
    VNET = "vnet"
    NSG = "nsg"
    DISK = "disk"
    SNAPSHOT = "snapshot"
    BLOB = "blob"  # a recovery point's own copy in the replica container: a blob name, not an ARM id


@dataclass(frozen=True)
class ArmId:
    """A resource id read with `parse_resource_id`: a top-level resource or one child level (a subnet)."""

    subscription: str
    resource_group: str
    provider_type: str  # `Namespace/type[/childType]` as written in the id
    names: tuple[str, ...]  # the resource's name, after its parent's for a child

    @property
    def name(self) -> str:
        return self.names[-1]

    @property
    def parent_name(self) -> str:
        return self.names[0]


def parse_arm_id(arm_id: str) -> ArmId:
    """The parts of a resource id; ValueError if it is not one, or nests deeper than one child."""
    parts = {key: str(value) for key, value in parse_resource_id(arm_id).items()}
    if not all(parts.get(key) for key in ("subscription", "resource_group", "namespace", "type", "name")):
        raise ValueError(f"not a resource id: {arm_id}")
    provider_type = f"{parts['namespace']}/{parts['type']}"
    names: tuple[str, ...] = (parts["name"],)
    children = int(parts.get("last_child_num") or 0)
    if children > 1:
        raise ValueError(f"not a resource id of a kind we manage: {arm_id}")
    if children == 1:
        provider_type += f"/{parts['child_type_1']}"
        names += (parts["child_name_1"],)
    return ArmId(
        subscription=parts["subscription"],
        resource_group=parts["resource_group"],
        provider_type=provider_type,
        names=names,
    )


Deleter = Callable[[ArmClients, ArmId], LROPoller[None]]


@dataclass(frozen=True)
class KindSpec:
    kind: ResourceKind
    provider_type: str | None  # None: not an ARM resource
    create: Callable[..., object] | None  # None: the flows never create one (only the sweeper deletes)
    delete: Deleter | None  # None: not deleted through ARM
    tagged: bool  # carries ResourceTags, so the sweeper can find it (a subnet has no tags of its own)
    # Kinds whose resources, while they stand, may use one of this kind, so that ARM refuses its delete.
    held_by: frozenset[ResourceKind] = frozenset()


# In deletion order.
KINDS: Final[tuple[KindSpec, ...]] = (
    KindSpec(
        ResourceKind.VM,
        "Microsoft.Compute/virtualMachines",
        ops.ensure_vm_from_disks,  # and ensure_helper_vm
        lambda c, r: c.compute.virtual_machines.begin_delete(r.resource_group, r.name),
        tagged=True,
    ),
    KindSpec(
        ResourceKind.NIC,
        "Microsoft.Network/networkInterfaces",
        ops.ensure_network_interface,
        lambda c, r: c.network.network_interfaces.begin_delete(r.resource_group, r.name),
        tagged=True,
        held_by=frozenset({ResourceKind.VM}),
    ),
    KindSpec(
        ResourceKind.SUBNET,
        "Microsoft.Network/virtualNetworks/subnets",
        ops.ensure_virtual_network,  # in the VNet's own PUT
        lambda c, r: c.network.subnets.begin_delete(r.resource_group, r.parent_name, r.name),
        tagged=False,
        held_by=frozenset({ResourceKind.NIC}),
    ),
    KindSpec(
        ResourceKind.VNET,
        "Microsoft.Network/virtualNetworks",
        ops.ensure_virtual_network,
        lambda c, r: c.network.virtual_networks.begin_delete(r.resource_group, r.name),
        tagged=True,
        held_by=frozenset({ResourceKind.SUBNET, ResourceKind.NIC}),  # a subnet in use keeps its VNet
    ),
    KindSpec(
        ResourceKind.NSG,
        "Microsoft.Network/networkSecurityGroups",
        ops.ensure_helper_network_security_group,
        lambda c, r: c.network.network_security_groups.begin_delete(r.resource_group, r.name),
        tagged=True,
        held_by=frozenset({ResourceKind.NIC, ResourceKind.SUBNET, ResourceKind.VNET}),
    ),
    KindSpec(
        ResourceKind.DISK,
        "Microsoft.Compute/disks",
        ops.import_disk,
        lambda c, r: c.compute.disks.begin_delete(r.resource_group, r.name),
        tagged=True,
        held_by=frozenset({ResourceKind.VM}),
    ),
    # Incremental snapshots of managed disks (a failover's failback baseline). ARM has one type for
    # full and incremental snapshots, so they are one kind here: deleted and swept the same way.
    KindSpec(
        ResourceKind.SNAPSHOT,
        "Microsoft.Compute/snapshots",
        ops.create_incremental_snapshot,
        lambda c, r: c.compute.snapshots.begin_delete(r.resource_group, r.name),
        tagged=True,
    ),
    # Made by shared.replication.replica_disks.copy_recovery_point, deleted from the replica container.
    KindSpec(ResourceKind.BLOB, None, None, None, tagged=False),
)

_BY_KIND: Final = {spec.kind: spec for spec in KINDS}
_BY_TYPE: Final = {spec.provider_type.lower(): spec for spec in KINDS if spec.provider_type}
DELETE_ORDER: Final[tuple[ResourceKind, ...]] = tuple(spec.kind for spec in KINDS)
# What the sweeper may delete: top-level ARM resources that carry our tags.
SWEPT_KINDS: Final = frozenset(s.kind for s in KINDS if s.tagged and s.delete is not None)


def spec_of(kind: ResourceKind) -> KindSpec:
    return _BY_KIND[kind]


def deletion_rank(kind: ResourceKind) -> int:
    return DELETE_ORDER.index(kind)


def held_back(kind: ResourceKind, standing: Collection[ResourceKind]) -> ResourceKind | None:
    """The first kind (in deletion order) among `standing` (kinds with a resource left: its delete failed,
    or was not tried) that may hold a resource of `kind`; None: deleting it is worth retrying.

    Kind by kind, not resource by resource: which VM holds which NIC is ARM's to know, and its answer to
    one delete tells."""
    holders = spec_of(kind).held_by
    return next((k for k in DELETE_ORDER if k in holders and k in standing), None)


def kind_of_type(provider_type: str) -> ResourceKind | None:
    """The kind of an ARM type as listed (`Microsoft.Compute/disks`, any case); None if not ours."""
    spec = _BY_TYPE.get(provider_type.lower())
    return spec.kind if spec is not None else None


def kind_of(arm_id: str) -> ResourceKind | None:
    try:
        return kind_of_type(parse_arm_id(arm_id).provider_type)
    except ValueError:
        return None


def resource_id(kind: ResourceKind, subscription: str, resource_group: str, *names: str) -> str:
    """The id a resource of `kind` will have, known before it is created (recorded before the create).
    A subnet is named after its VNet: `resource_id(SUBNET, sub, rg, vnet, subnet)`."""
    provider_type = spec_of(kind).provider_type
    if provider_type is None:
        raise ValueError(f"a {kind} is not an ARM resource")
    namespace, *types = provider_type.split("/")
    if len(types) != len(names):
        raise ValueError(f"a {kind} id takes {len(types)} name(s), got {names}")
    path = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=True))
    return f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{namespace}/{path}"


class DeleteResult(BaseModel):
    """The resource is gone (deleted now, or it was already absent: a retried delete is a success)."""

    model_config = ConfigDict(frozen=True)

    id: str


def delete_resource(clients: ArmClients, arm_id: str) -> DeleteResult:
    """Delete a resource of any ARM kind of the table by id and wait; an absent one counts as deleted."""
    parsed = parse_arm_id(arm_id)
    kind = kind_of_type(parsed.provider_type)
    deleter = spec_of(kind).delete if kind is not None else None
    if deleter is None:
        raise ValueError(f"deleting {parsed.provider_type} is not supported")
    operation = f"delete {parsed.provider_type} {'/'.join(parsed.names)}"
    # ARM answers a DELETE of an absent resource with 204; a 404 (its resource group is gone) is as good.
    with contextlib.suppress(ResourceNotFoundError, ArmNotFound):
        try:
            deleter(clients, parsed).result()
        except HttpResponseError as exc:
            raise translate_arm_error(exc, operation=operation) from exc
    return DeleteResult(id=arm_id)
