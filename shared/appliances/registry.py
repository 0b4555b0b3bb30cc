"""Appliance use cases: register, authenticate, report discovered machines, policy, heartbeat."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from shared.appliances.credentials import CredentialHasher, new_credential, parse_credential
from shared.domain.api import (
    ApplianceHealth,
    ApplianceList,
    ApplianceRegistered,
    ApplianceView,
    DiscoveryResult,
    RegisterApplianceRequest,
    ReportedMachineResult,
)
from shared.domain.appliance import Appliance
from shared.domain.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from shared.domain.inventory import DiscoveredMachine, DiscoveryReport, MachineInventory
from shared.domain.lifecycle import PROTECTED_STATES
from shared.domain.machine import Machine
from shared.domain.policy import ReplicationPolicy, ReplicationPolicyUpdate
from shared.domain.wire import is_resource_id
from shared.platform.documents import Query
from shared.platform.repository import AlreadyExists, Repositories, Versioned

# Called inside a machine's update with the ids of the disks that changed (added, removed or resized).
DisksChanged = Callable[[Machine, list[str], datetime], object]
# Concurrent Cosmos calls while applying one discovery report (the SDK client is thread-safe).
REPORT_PARALLELISM = 8
MAX_PAGE_SIZE = 100


def register_appliance(
    repos: Repositories, hasher: CredentialHasher, request: RegisterApplianceRequest, *, now: datetime
) -> ApplianceRegistered:
    """One round-trip. The credential is returned here and never again."""
    appliance_id = f"appl-{uuid.uuid4().hex}"
    credential = new_credential(appliance_id)
    appliance = Appliance(
        id=appliance_id,
        name=request.name,
        kind=request.kind,
        site=request.site,
        credential_hash=hasher.hash(parse_credential(credential).secret),
        registered_at=now,
    )
    repos.appliances.add(appliance)
    return ApplianceRegistered(
        id=appliance.id,
        credential=credential,
        name=appliance.name,
        kind=appliance.kind,
        site=appliance.site,
        policy=appliance.policy,
    )


def authenticate_appliance(
    repos: Repositories, hasher: CredentialHasher, credential: str | None
) -> Appliance:
    """Credential -> the appliance (one point read), or Unauthorized (401) with no hint of which part is wrong."""
    if not credential:
        raise Unauthorized("appliance credential missing: send 'Authorization: Bearer <credential>'")
    parsed = parse_credential(credential)
    found = repos.appliances.get(parsed.appliance_id) if _plausible_id(parsed.appliance_id) else None
    if not hasher.verify(parsed.secret, found.item.credential_hash if found else None) or found is None:
        raise Unauthorized(
            "the appliance credential is not valid: re-register the appliance to get a new one"
        )
    return found.item


def _plausible_id(appliance_id: str) -> bool:
    # Only ids this service could have issued reach the store: no lookups for arbitrary strings.
    return appliance_id.startswith("appl-") and is_resource_id(appliance_id)


def authorize_appliance(appliance: Appliance, appliance_id: str) -> None:
    """An appliance acts only as itself (403 otherwise)."""
    if appliance.id != appliance_id:
        raise Forbidden(f"this credential belongs to appliance {appliance.id}, not {appliance_id}")


def report_machines(
    repos: Repositories,
    appliance: Appliance,
    report: DiscoveryReport,
    *,
    now: datetime,
    on_disks_changed: DisksChanged,
) -> DiscoveryResult:
    """Upsert the reported inventory; a protected machine whose disk layout changed is handed to
    `on_disks_changed` inside its update (health's `flag_source_disks_changed`: appliances never write
    health themselves).

    Upsert the reported inventory. All-or-nothing on ownership: if any machine belongs to another
    appliance, nothing is written (403). Round-trips: one read per machine plus one write per new or
    changed machine; an unchanged machine costs only its read. Calls run REPORT_PARALLELISM at a time.
    """
    with ThreadPoolExecutor(max_workers=REPORT_PARALLELISM) as pool:
        # Point reads are independent: a site's hundreds of machines should not cost hundreds of latencies.
        found = list(pool.map(repos.machines.get, [m.id for m in report.machines]))
    existing: dict[str, Versioned[Machine] | None] = dict(
        zip([m.id for m in report.machines], found, strict=True)
    )
    foreign = sorted(
        mid for mid, v in existing.items() if v is not None and v.item.appliance_id != appliance.id
    )
    if foreign:
        raise Forbidden(
            f"appliance {appliance.id} may only report its own machines; "
            f"owned by another appliance: {', '.join(foreign)}",
            details=[{"machineId": mid} for mid in foreign],
        )
    with ThreadPoolExecutor(max_workers=REPORT_PARALLELISM) as pool:
        results = list(
            pool.map(
                lambda m: _upsert_machine(repos, appliance, m, existing[m.id], now, on_disks_changed),
                report.machines,
            )
        )
    return DiscoveryResult(machines=results)


def _inventory_of(reported: DiscoveredMachine) -> MachineInventory:
    return MachineInventory.model_validate(reported.model_dump(exclude={"id"}))


def _upsert_machine(
    repos: Repositories,
    appliance: Appliance,
    reported: DiscoveredMachine,
    current: Versioned[Machine] | None,
    now: datetime,
    on_disks_changed: DisksChanged,
) -> ReportedMachineResult:
    inventory = _inventory_of(reported)
    if current is None:
        machine = Machine(
            id=reported.id, appliance_id=appliance.id, inventory=inventory, discovered_at=now, updated_at=now
        )
        try:
            stored = repos.machines.add(machine)
            return ReportedMachineResult(id=machine.id, outcome="Created", state=stored.item.state)
        except AlreadyExists:
            current = None  # created concurrently: fall through to the update path with a fresh read

    def apply(machine: Machine) -> str:
        if machine.appliance_id != appliance.id:
            raise Forbidden(f"machine {machine.id} belongs to another appliance")
        if machine.inventory == inventory:
            return "Unchanged"
        if machine.state in PROTECTED_STATES and _disk_layout(machine.inventory) != _disk_layout(inventory):
            # Replica disks mirror the source layout: a resized, added or removed disk is unprotected
            # until a resync. Raised in this same machine update, so the report and the flag never part.
            on_disks_changed(machine, _changed_disks(machine.inventory, inventory), now)
        machine.inventory = inventory
        machine.updated_at = now
        return "Updated"

    stored, outcome = repos.machines.update_with_retry(reported.id, apply, current=current)
    return ReportedMachineResult(id=reported.id, outcome=outcome, state=stored.item.state)


def _disk_layout(inventory: MachineInventory) -> dict[str, int]:
    return {d.id: d.size_bytes for d in inventory.disks}


def _changed_disks(before: MachineInventory, after: MachineInventory) -> list[str]:
    old, new = _disk_layout(before), _disk_layout(after)
    return sorted(set(old) ^ set(new) | {d for d in old if d in new and old[d] != new[d]})


def get_policy(repos: Repositories, appliance_id: str) -> ReplicationPolicy:
    return repos.appliances.require(appliance_id).item.policy


def update_policy(
    repos: Repositories, appliance_id: str, update: ReplicationPolicyUpdate
) -> ReplicationPolicy:
    policy = update.to_policy()

    def apply(appliance: Appliance) -> None:
        appliance.policy = policy

    stored, _ = repos.appliances.update_with_retry(appliance_id, apply)
    return stored.item.policy


def record_heartbeat(
    repos: Repositories, appliance_id: str, at: datetime, *, agent_version: str | None = None
) -> None:
    """Monotonic: a late, redelivered heartbeat never moves last_heartbeat (or the version) backwards."""

    def apply(appliance: Appliance) -> None:
        if appliance.last_heartbeat is None or at > appliance.last_heartbeat:
            appliance.last_heartbeat = at
            if agent_version:
                appliance.agent_version = agent_version

    try:
        repos.appliances.update_with_retry(appliance_id, apply)
    except NotFound:
        raise NotFound(f"heartbeat from unknown appliance {appliance_id}") from None


def appliance_view(
    appliance: Appliance, *, now: datetime, heartbeat_timeout: timedelta, machine_count: int | None = None
) -> ApplianceView:
    """What operators see: the credential hash stays behind; health is judged like the health monitor
    judges the appliance's machines (silent for longer than its heartbeat timeout: not responding)."""
    if appliance.last_heartbeat is None:
        state = ApplianceHealth.NEVER_HEARD
    elif now - appliance.last_heartbeat > heartbeat_timeout:
        state = ApplianceHealth.NOT_RESPONDING
    else:
        state = ApplianceHealth.HEALTHY
    return ApplianceView(
        id=appliance.id,
        name=appliance.name,
        kind=appliance.kind,
        site=appliance.site,
        registered_at=appliance.registered_at,
        last_heartbeat=appliance.last_heartbeat,
        agent_version=appliance.agent_version,
        health=state,
        heartbeat_timeout_seconds=int(heartbeat_timeout.total_seconds()),
        machine_count=machine_count,
        policy=appliance.policy,
    )


def list_appliances(
    repos: Repositories,
    *,
    now: datetime,
    heartbeat_timeout: timedelta,
    page_size: int = 50,
    continuation: str | None = None,
) -> ApplianceList:
    """Operator listing by id: one cross-partition query per page; no machine counts (see get_appliance)."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationFailed.single("pageSize", f"must be between 1 and {MAX_PAGE_SIZE}; got {page_size}")
    page = repos.appliances.query_page(
        Query(order_by="id"), partition_key=None, page_size=page_size, continuation=continuation
    )
    return ApplianceList(
        appliances=[appliance_view(a, now=now, heartbeat_timeout=heartbeat_timeout) for a in page.items],
        continuation_token=page.continuation,
    )


def get_appliance(
    repos: Repositories, appliance_id: str, *, now: datetime, heartbeat_timeout: timedelta
) -> ApplianceView:
    """One point read, plus one cross-partition query for its machine count (machines are partitioned by
    their own id, so counting an appliance's machines cannot be a point read); NotFound (404) if unknown."""
    appliance = repos.appliances.require(appliance_id).item
    count = len(repos.machines.query(Query(equals={"applianceId": appliance_id}), partition_key=None))
    return appliance_view(appliance, now=now, heartbeat_timeout=heartbeat_timeout, machine_count=count)
