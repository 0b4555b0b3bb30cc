"""The only code that writes a machine's health: `Machine.health` and `replication.healthState`.

`shared.health.rules` decides (pure functions of a `HealthState`); this module stores what they decide
on the machine, with the catalog's texts for each current error, and writes what operators read: an
event per failure with the catalog's causes and recommended steps, an event when health changes, and,
when the rules ask for it, a resync (ResyncDisk commands, the machine goes Resyncing).

Every change is made inside `update_with_retry`'s mutate, against the very document version being
written, so a failure and a concurrently applied cycle never overwrite each other's health. Every write
is idempotent: event and command ids are derived from what caused them, and the rules ignore a report
they have already seen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.appliances.commands import queue_command
from shared.domain.command import CommandKind
from shared.domain.event import Event, Severity
from shared.domain.health import ClearedBy, Health, HealthState
from shared.domain.lifecycle import MachineState, transition
from shared.domain.machine import Machine
from shared.health.catalog import CATALOG, CatalogMatch
from shared.health.event_texts import (
    REPAIR_STARTED,
    context_values,
    error_texts,
    failure_event,
    health_event,
)
from shared.health.rules import (
    AgentContact,
    HealthRules,
    Transition,
    combine,
    evaluate_reverse_rpo,
    record_condition,
    record_failure,
    record_reverse_success,
    record_success,
    run_monitor_rules,
)
from shared.health.settings import HealthSettings
from shared.platform.repository import Repositories

# States in which a resync can begin (lifecycle: InitialReplication | Replicating -> Resyncing).
RESYNC_FROM = frozenset({MachineState.INITIAL_REPLICATION, MachineState.REPLICATING})


def _store(
    machine: Machine,
    change: Transition,
    values: Mapping[tuple[str, str | None], Mapping[str, object]] | None = None,
) -> None:
    """Store `change.state` and its health on the machine.

    `values`: placeholders for the errors raised now, by error key, so their causes and steps name the VM,
    disk and appliance; errors held from before keep their texts.
    """
    previous = {e.key: e for e in machine.replication.health_state.errors}
    errors = []
    for error in change.state.errors:
        old = previous.get(error.key)
        if values is not None and error.key in values:
            error = error_texts(error, values[error.key])
        elif old is not None and old.causes:
            error = error.model_copy(
                update={"title": old.title, "causes": old.causes, "recommendations": old.recommendations}
            )
        elif not error.causes and CATALOG.find(error.entry_code) is not None:
            error = error_texts(error, context_values(machine))
        errors.append(error)
    machine.replication.health_state = change.state.model_copy(update={"errors": tuple(errors)})
    machine.health = change.health


# --- failures -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One failed cycle, or one disk of it, matched to its catalog entry.

    `event_id` is derived from what caused the failure (Event Grid event id, cycle and disk), so a
    redelivered report rewrites the same event. `counted_as` is the attempt the health rules count
    (default: the cycle id): reports about one attempt count as one consecutive failure.
    """

    match: CatalogMatch
    at: datetime
    event_id: str
    disk_id: str | None = None
    cycle_id: str | None = None
    values: Mapping[str, object] = field(default_factory=dict)
    counted_as: str | None = None


@dataclass(frozen=True)
class FailuresRecorded:
    machine: Machine
    steps: list[Transition]
    change: Transition
    events: list[Event]
    resync_disks: list[str]


def record_failures(
    repos: Repositories,
    machine_id: str,
    failures: Sequence[Failure],
    *,
    settings: HealthSettings,
    appliance_name: str | None = None,
    also: Callable[[Machine], None] | None = None,
) -> FailuresRecorded:
    """Apply the failures to the machine's health in one machine update, then write one event per
    failure, one if health changed, and start the resync the rules ask for (auto-repair).

    Round-trips: 2 (machine) + one upsert per event; an automatic repair adds 2 per disk (commands).
    `also` makes a further change to the machine in the same update.
    """
    if not failures:
        raise ValueError("record_failures needs at least one failure")
    rules = settings.rules

    def decide(machine: Machine) -> tuple[list[Transition], Transition, list[str]]:
        before = machine.replication.health_state
        auto = machine.target is not None and machine.target.auto_repair_replication
        steps: list[Transition] = []
        state = before
        for failure in failures:
            step = record_failure(
                state,
                failure.match,
                at=failure.at,
                rules=rules,
                disk_id=failure.disk_id,
                cycle_id=failure.counted_as or failure.cycle_id,
                auto_repair_enabled=auto,
            )
            steps.append(step)
            state = step.state
        change = combine(before, steps, rules)
        base = context_values(machine, appliance_name)
        values = {
            s.error.key: {**base, **f.values, **f.match.values}
            for f, s in zip(failures, steps, strict=True)
            if s.error is not None
        }
        _store(machine, change, values)
        resync_disks = begin_resync(machine, [s for s in steps if s.resync is not None])
        machine.updated_at = max(machine.updated_at, *(f.at for f in failures))
        if also is not None:
            also(machine)
        return steps, change, resync_disks

    stored, (steps, change, resync_disks) = repos.machines.update_with_retry(machine_id, decide)
    machine = stored.item
    base = context_values(machine, appliance_name)
    events = [
        failure_event(
            f.match,
            event_id=f.event_id,
            machine=machine,
            at=f.at,
            step=s,
            disk_id=f.disk_id,
            cycle_id=f.cycle_id,
            values={**base, **f.values},
        )
        for f, s in zip(failures, steps, strict=True)
    ]
    first = failures[0]
    if change.changed:
        # A failure reported before another that was recorded first changes health after that one did:
        # date the event just after the latest failure already counted, so the log reads in order.
        latest = change.state.last_failure or first.at
        changed_at = first.at if first.at >= latest else latest + timedelta(microseconds=1)
        events.append(
            health_event(
                machine.id,
                f"{first.event_id}-health",
                changed_at,
                change,
                f"{first.match.entry.name} reported",
            )
        )
    if resync_disks:
        events.append(
            queue_resync(
                repos,
                machine,
                resync_disks,
                request_id=first.event_id,
                at=first.at,
                why=f"{first.match.entry.code} {first.match.entry.name}",
                automatic=True,
            )
        )
    for event in events:
        repos.events.put(event)
    return FailuresRecorded(
        machine=machine, steps=steps, change=change, events=events, resync_disks=resync_disks
    )


def begin_resync(machine: Machine, requests: Sequence[Transition]) -> list[str]:
    """The disks to resync for the rules' requests; the machine goes Resyncing where the lifecycle allows
    it (a resync requested while, say, a test migration runs only queues the commands)."""
    if not requests:
        return []
    everything = [d.id for d in machine.inventory.disks]
    wanted: set[str] = set()
    for step in requests:
        assert step.resync is not None
        wanted |= set(everything) if step.resync.disk_id is None else {step.resync.disk_id}
    if machine.state in RESYNC_FROM:
        transition(machine, MachineState.RESYNCING, action="resync requested")
    return [d for d in everything if d in wanted]


def queue_resync(
    repos: Repositories,
    machine: Machine,
    disk_ids: Sequence[str],
    *,
    request_id: str,
    at: datetime,
    why: str,
    automatic: bool,
) -> Event:
    """ResyncDisk commands for the disks, and the "repair started" event (returned, not written)."""
    for disk_id in disk_ids:
        queue_command(
            repos,
            command_id=f"{request_id}-resync-{disk_id}",
            machine_id=machine.id,
            kind=CommandKind.RESYNC_DISK,
            disk_id=disk_id,
            cycle_kind="resync",
            now=at,
        )
    who = "automatically (the machine opted into automatic repair)" if automatic else "by the operator"
    return Event(
        id=f"{request_id}-repair",
        machine_id=machine.id,
        time=at,
        type=REPAIR_STARTED,
        severity=Severity.WARNING if automatic else Severity.INFO,
        message=f"Repair replication started {who} because of {why}: the appliance was asked to resync "
        f"{', '.join(disk_ids)}; the next cycle copies those disks in full. Existing recovery points are kept.",
        details={"disks": ",".join(disk_ids), "automatic": str(automatic).lower(), "reason": why},
    )


# --- changes made inside another module's machine update ------------------------------------------------


def record_cycle_success(machine: Machine, *, at: datetime, resync: bool, rules: HealthRules) -> Transition:
    """An applied cycle heals what it resolves; `resync`: a whole-disk copy (initial or resync). The only
    way an applied cycle clears errors; call it inside the update that records the cycle."""
    change = record_success(machine.replication.health_state, at=at, rules=rules, resync=resync)
    _store(machine, change)
    watch = machine.replication.upload_watch
    if (
        watch is not None
        and machine.replication.last_applied_sequence is not None
        and watch.sequence <= machine.replication.last_applied_sequence
    ):
        machine.replication.upload_watch = None
    return change


def record_machine_condition(
    machine: Machine,
    *,
    code: str,
    message: str,
    severity: Health,
    at: datetime,
    rules: HealthRules,
    cleared_by: ClearedBy,
    disk_id: str | None = None,
) -> Transition:
    """A condition found outside replication (e.g. the source disk layout changed), raised as a current
    error that does not count as a failed cycle; call it inside the update that found it."""
    change = record_condition(
        machine.replication.health_state,
        code=code,
        message=message,
        severity=severity,
        at=at,
        rules=rules,
        cleared_by=cleared_by,
        disk_id=disk_id,
    )
    _store(machine, change)
    return change


def reset_health(machine: Machine) -> None:
    """Replication stopped: no error of the replication that was is current any more."""
    machine.replication.health_state = HealthState()
    machine.health = Health.HEALTHY


def record_monitor_check(
    repos: Repositories,
    machine_id: str,
    *,
    heartbeat: datetime | None,
    appliance_name: str | None,
    now: datetime,
    rules: HealthRules,
    agent: AgentContact | None = None,
) -> tuple[Machine, Transition]:
    """The monitor's verdict for one machine (the appliance's last heartbeat, the time, its Mobility
    agent's silence), stored."""

    def decide(machine: Machine) -> Transition:
        change = run_monitor_rules(
            machine.replication.health_state,
            last_heartbeat=heartbeat,
            now=now,
            rules=rules,
            appliance_name=appliance_name,
            agent=agent,
        )
        values = {e.key: context_values(machine, appliance_name) for e in change.raised}
        _store(machine, change, values)
        return change

    stored, change = repos.machines.update_with_retry(machine_id, decide)
    return stored.item, change


def record_reverse_point_health(machine: Machine, *, at: datetime, rules: HealthRules) -> Transition:
    """A reverse recovery point heals the reverse direction's next-cycle errors (ReverseRpoExceeded among
    them); call it inside the update that records the point."""
    change = record_reverse_success(machine.replication.health_state, at=at, rules=rules)
    _store(machine, change)
    return change


def record_reverse_rpo_check(
    repos: Repositories,
    machine_id: str,
    *,
    now: datetime,
    threshold: timedelta,
    appliance_name: str | None,
    rules: HealthRules,
) -> tuple[Machine, Transition]:
    """The monitor's verdict on one reverse-replicating machine's reverse RPO, stored. A machine that left
    ReverseReplicating meanwhile is left alone."""

    def decide(machine: Machine) -> Transition:
        state = machine.replication.health_state
        if machine.state is not MachineState.REVERSE_REPLICATING or machine.reverse is None:
            return combine(state, [], rules)
        change = evaluate_reverse_rpo(
            state, last_point_at=machine.reverse.last_point_at, now=now, threshold=threshold, rules=rules
        )
        _store(machine, change, {e.key: context_values(machine, appliance_name) for e in change.raised})
        return change

    stored, change = repos.machines.update_with_retry(machine_id, decide)
    return stored.item, change


SOURCE_DISKS_CHANGED = "SourceDisksChanged"


def flag_source_disks_changed(
    machine: Machine, changed: list[str], at: datetime, *, rules: HealthRules
) -> Transition:
    """The appliance reported a disk layout that no longer matches the replica disks: Warning until a
    resync (Repair replication) recreates them. Call it inside the update that stores the new inventory."""
    return record_machine_condition(
        machine,
        code=SOURCE_DISKS_CHANGED,
        message=(
            f"the source machine's disks changed since replication was enabled ({', '.join(changed)}); "
            "run Repair replication so the replica disks match"
        ),
        severity=Health.WARNING,
        at=at,
        rules=rules,
        cleared_by=ClearedBy.RESYNC,
    )
