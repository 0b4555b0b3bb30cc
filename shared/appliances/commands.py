"""The appliance command queue: the control plane queues, the appliance polls and acknowledges.

Stored in `commands` (pk /applianceId), so a poll is one single-partition query. Command ids are chosen
by the caller and deterministic (e.g. "run-cycle-<machine>-<job>"), so an orchestrator activity that is
retried queues the command once. Acknowledged commands get a TTL and disappear after a week.
"""

from __future__ import annotations

from datetime import datetime

from shared.domain.command import (
    ApplianceCommand,
    CommandAnswer,
    CommandKind,
    CommandStatus,
    PushInstallRequest,
    ReverseRequest,
)
from shared.domain.cycle import CycleKind
from shared.domain.errors import Forbidden, NotFound
from shared.platform.documents import Query
from shared.platform.repository import AlreadyExists, Repositories

ACKNOWLEDGED_TTL_SECONDS = 7 * 24 * 3600
MAX_PENDING_RETURNED = 100


def queue_command(
    repos: Repositories,
    *,
    command_id: str,
    machine_id: str,
    kind: CommandKind,
    now: datetime,
    disk_id: str | None = None,
    cycle_kind: str | None = None,
) -> ApplianceCommand:
    """Queue for the machine's appliance (2 round-trips: machine read, create). Idempotent by command_id."""
    machine = repos.machines.require(machine_id).item
    command = ApplianceCommand(
        id=command_id,
        appliance_id=machine.appliance_id,
        machine_id=machine_id,
        kind=kind,
        disk_id=disk_id,
        cycle_kind=CycleKind(cycle_kind) if cycle_kind else None,
        created_at=now,
    )
    return _add_once(repos, command)


def queue_command_of(
    repos: Repositories,
    *,
    command_id: str,
    machine_id: str,
    kind: CommandKind,
    push: PushInstallRequest,
    now: datetime,
) -> ApplianceCommand:
    """Queue a command that carries its request (InstallMobilityService); as `queue_command`."""
    machine = repos.machines.require(machine_id).item
    command = ApplianceCommand(
        id=command_id,
        appliance_id=machine.appliance_id,
        machine_id=machine_id,
        kind=kind,
        push=push,
        created_at=now,
    )
    return _add_once(repos, command)


def queue_reverse_command(
    repos: Repositories,
    *,
    command_id: str,
    machine_id: str,
    request: ReverseRequest,
    now: datetime,
    appliance_id: str | None = None,
) -> ApplianceCommand:
    """Queue one step of reverse protection for `appliance_id` (default: the machine's appliance); as
    `queue_command`."""
    if appliance_id is None:
        appliance_id = repos.machines.require(machine_id).item.appliance_id
    command = ApplianceCommand.of(
        request,
        command_id=command_id,
        appliance_id=appliance_id,
        machine_id=machine_id,
        created_at=now,
    )
    return _add_once(repos, command)


def _add_once(repos: Repositories, command: ApplianceCommand) -> ApplianceCommand:
    try:
        return repos.commands.add(command).item
    except AlreadyExists:
        return repos.commands.require(command.id, command.appliance_id).item


def pending_commands(repos: Repositories, appliance_id: str) -> list[ApplianceCommand]:
    """Oldest first, at most MAX_PENDING_RETURNED; one single-partition query."""
    return repos.commands.query(
        Query(
            equals={"status": CommandStatus.PENDING.value}, order_by="createdAt", limit=MAX_PENDING_RETURNED
        ),
        partition_key=appliance_id,
    )


def acknowledge_command(
    repos: Repositories,
    appliance_id: str,
    command_id: str,
    *,
    now: datetime,
    answer: CommandAnswer | None = None,
) -> ApplianceCommand:
    """Idempotent (a repeated ack changes nothing, its answer included: the first answer is the one
    the waiting flow reads). 2 round-trips: read, replace."""
    current = repos.commands.get(command_id, appliance_id)
    if current is None:
        raise NotFound(f"appliance {appliance_id} has no command {command_id}")
    if current.item.appliance_id != appliance_id:
        raise Forbidden(f"command {command_id} belongs to another appliance")

    def apply(command: ApplianceCommand) -> None:
        if command.status is CommandStatus.PENDING:
            if answer is not None:
                command.result, command.error = answer.result, answer.error
            command.status = CommandStatus.ACKNOWLEDGED
            command.acknowledged_at = now
            command.ttl = ACKNOWLEDGED_TTL_SECONDS

    stored, _ = repos.commands.update_with_retry(
        command_id, apply, partition_key=appliance_id, current=current
    )
    return stored.item
