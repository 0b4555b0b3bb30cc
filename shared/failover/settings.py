"""The operator's failover settings: view them, change them with a JSON merge patch.

Until the operator changes something the settings are the replication's target settings; a change is
validated in full before anything is written (a 400 names each field and what to do, and the machine
is left as it was; what only Azure knows, the size in the region and the address free in the VNet, is
asked of Azure for what the change touches) and stores the whole resulting settings on the machine,
which the failover reads.
While a failover runs, and once its VM exists, the settings are what the VM was created with: a
change is a 409.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from ipaddress import IPv4Address
from typing import Any

from azure.mgmt.core.tools import parse_resource_id
from pydantic import ValidationError

from shared.domain.errors import Conflict, FieldProblem, ValidationFailed
from shared.domain.failover import FailoverSettings
from shared.domain.lifecycle import MachineState
from shared.domain.machine import Machine
from shared.domain.wire import json_integers, merge_patch
from shared.platform.azure_placement import AzurePlacement, PlacementCheck
from shared.platform.documents import Query
from shared.platform.repository import Repositories

S = MachineState

# The failover's VM is being created from the settings, or exists: changing them would describe a VM
# that is not the one running.
LOCKED_STATES = frozenset(
    {S.FAILING_OVER, S.FAILED_OVER, S.FAILOVER_COMMITTED, S.REVERSE_REPROTECTING, S.REVERSE_REPLICATING}
)
# Machines whose settings describe no VM, present or planned: their addresses are not taken.
_NO_VM_STATES = frozenset({S.DISCOVERED, S.ENABLING_REPLICATION, S.REPLICATION_STOPPED})


class ReplicationNotEnabled(Conflict):
    code = "ReplicationNotEnabled"


class FailoverSettingsLocked(Conflict):
    code = "FailoverSettingsLocked"


def effective_settings(machine: Machine) -> FailoverSettings:
    """The settings a failover of `machine` uses now: the stored ones, or the target settings'.

    409 when replication was never enabled (there is nothing to fail over, and no target to start from).
    """
    target = machine.target
    if target is None:
        raise ReplicationNotEnabled(
            f"machine {machine.id} has no failover settings: it is {machine.state} and its replication "
            "target was never set; enable replication first (PUT /api/machines/{id}/replication)",
            details=[{"machineId": machine.id, "state": machine.state}],
        )
    stored = machine.failover_settings
    if stored is None:
        return FailoverSettings.defaults_for(target, machine.inventory)
    return stored.for_inventory(target, machine.inventory)


def get_failover_settings(repos: Repositories, machine_id: str) -> FailoverSettings:
    """404 unknown machine, 409 replication never enabled. One point read."""
    return effective_settings(repos.machines.require(machine_id).item)


def update_failover_settings(
    repos: Repositories,
    machine_id: str,
    patch: Mapping[str, Any],
    *,
    now: datetime,
    placement: AzurePlacement | None = None,
) -> FailoverSettings:
    """Apply a JSON merge patch to the machine's failover settings and store the result.

    404 unknown machine; 409 replication never enabled or a failover running or done; 400 with one
    entry per problem, nothing written; 503 when Azure could not be asked. A patch that changes nothing
    writes nothing. Round-trips: a read and a replace, plus one cross-partition query when the result
    has a static IP address; with `placement`, Azure is asked only about what the patch changes: a new
    size or network (the VNet, the region's sizes, cached) and a new address (the VNet, the address).
    """
    free_checked: dict[tuple[str, str, IPv4Address], list[FieldProblem]] = {}
    azure_checked: dict[PlacementCheck, list[FieldProblem]] = {}

    def azure_problems(
        machine: Machine, current: FailoverSettings, settings: FailoverSettings
    ) -> list[FieldProblem]:
        if placement is None:
            return []
        moved = _network_key(settings) != _network_key(current)
        ip = settings.static_ip_address
        new_address = ip is not None and (
            moved or settings.subnet != current.subnet or ip != current.static_ip_address
        )
        check = PlacementCheck(
            resource_group=settings.resource_group,
            virtual_network=settings.virtual_network,
            subnet=settings.subnet,
            vm_size=settings.vm_size if moved or settings.vm_size != current.vm_size else None,
            static_ip=ip if new_address else None,
            data_disks=sum(1 for d in machine.inventory.disks if not d.is_os_disk),
            premium=any(d.disk_type.is_premium for d in settings.disks.values()),
        )
        # Asked once even if the update is retried on a concurrent change.
        if check not in azure_checked:
            azure_checked[check] = placement.problems(check)
        return azure_checked[check]

    def address_problems(machine: Machine, settings: FailoverSettings) -> list[FieldProblem]:
        # The query runs once even if the update is retried on a concurrent change.
        ip = settings.static_ip_address
        if ip is None:
            return []
        key = (*_network_key(settings), ip)
        if key not in free_checked:
            free_checked[key] = _address_taken(repos, machine.id, settings, ip)
        return free_checked[key]

    def apply(machine: Machine) -> FailoverSettings:
        if machine.state in LOCKED_STATES:
            raise FailoverSettingsLocked(
                f"cannot change the failover settings of machine {machine.id}: it is {machine.state}, and "
                "the failover's VM is created (or being created) from them; change them before the next "
                "failover",
                details=[{"machineId": machine.id, "state": machine.state}],
            )
        current = effective_settings(machine)
        settings = _patched(current, patch)
        problems = settings.validate_for_machine(machine.id, machine.inventory)
        problems += address_problems(machine, settings)
        problems += azure_problems(machine, current, settings)
        if problems:
            raise ValidationFailed(problems)
        if settings != current:
            machine.failover_settings = settings
            machine.updated_at = now
        return settings

    _, settings = repos.machines.update_with_retry(machine_id, apply)
    return settings


def _patched(current: FailoverSettings, patch: Mapping[str, Any]) -> FailoverSettings:
    try:
        merged = json_integers(merge_patch(current.to_wire(), dict(patch)))
        settings = FailoverSettings.model_validate(merged)
        # Then JSON's own types only: lax validation would take a patch's true for 1, or "4" for 4.
        FailoverSettings.model_validate_json(json.dumps(merged), strict=True)
        return settings
    except ValidationError as exc:
        failed = ValidationFailed.from_pydantic(exc)
    # A required member a null removed is "missing" to pydantic: say what a null means here.
    removed = {name for name, value in patch.items() if value is None}
    problems = [
        FieldProblem(
            p.field,
            "cannot be removed: a null in a merge patch deletes the setting, and the failover needs "
            "it; send the new value instead",
        )
        if p.field in removed and p.problem == "is required"
        else p
        for p in failed.problems
    ]
    raise ValidationFailed(problems)


def _network_key(settings: FailoverSettings) -> tuple[str, str]:
    """(resource group, name) of the settings' VNet, lower-case: a name is in the settings' group."""
    vnet = settings.virtual_network
    if vnet.startswith("/"):
        parts = parse_resource_id(vnet)
        return str(parts["resource_group"]).lower(), str(parts["name"]).lower()
    return settings.resource_group.lower(), vnet.lower()


def _address_taken(
    repos: Repositories, machine_id: str, settings: FailoverSettings, ip: IPv4Address
) -> list[FieldProblem]:
    """The static address is free unless another machine's failover (or migration) VM has it in the same
    VNet. Both places another machine may name it are searched: its stored settings and its target."""
    others: dict[str, Machine] = {}
    for path in ("failoverSettings.staticIpAddress", "target.staticIpAddress"):
        for other in repos.machines.query(Query(equals={path: str(ip)}), partition_key=None):
            others.setdefault(other.id, other)
    network = _network_key(settings)
    holders = sorted(
        other.id
        for other in others.values()
        if other.id != machine_id
        and other.state not in _NO_VM_STATES
        and _uses(other, lambda theirs: theirs.static_ip_address == ip and _network_key(theirs) == network)
    )
    if not holders:
        return []
    return [
        FieldProblem(
            "staticIpAddress",
            f"staticIpAddress {ip} is already the address of machine {', '.join(holders)} in VNet "
            f"{settings.virtual_network}; choose another free address in subnet {settings.subnet}, or "
            "null to let Azure assign one",
        )
    ]


def _uses(machine: Machine, test: Callable[[FailoverSettings], bool]) -> bool:
    try:
        return test(effective_settings(machine))
    except ReplicationNotEnabled:
        return False
