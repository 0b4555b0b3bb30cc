"""Replication health, wired to the machine document: the only code that writes a machine's health.

`shared.health.rules` decides (pure functions of a `HealthState`); this module keeps that state
on the machine (`ReplicationStatus.health_state`), derives `Machine.health` and `current_errors` from it,
and writes what operators read: an event per failure with the catalog's causes and recommended steps, an
event when health changes, and, when the rules ask for it, a resync (ResyncDisk commands, the machine
goes Resyncing). Every write is idempotent: event and command ids are derived from what caused them, and
the health rules ignore a report they have already seen.

Decisions are taken inside `update_with_retry`'s mutate, against the very document version being
written: a failure and a concurrently applied cycle can never overwrite each other's health.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.domain.command import CommandKind
from shared.domain.errors import Conflict
from shared.domain.event import Event, Severity
from shared.domain.job import Job, JobKind, JobStatus, StepChange, new_job
from shared.domain.lifecycle import MachineState, transition
from shared.domain.machine import Health, Machine, MachineError, UploadWatch
from shared.health.catalog import CATALOG, CatalogMatch, build_event, control_plane_error, render
from shared.health.rules import (
    ActiveError,
    HealthRules,
    HealthState,
    Transition,
    evaluate,
    record_failure,
    record_heartbeat,
    record_success,
)
from shared.jobs import lifecycle as jobs
from shared.platform.repository import Repositories
from shared.platform.settings import HealthThresholds, SettingsError
from shared.platform.telemetry import get_telemetry

# Event types the control plane adds to the catalog's (shared.health.catalog.EventType).
CYCLE_STARTED = "Replication cycle started"
CYCLE_COMPLETED = "Replication cycle completed"
HEALTH_CHANGED = "Replication health changed"
REPAIR_STARTED = "Replication repair started"
REPAIR_COMPLETED = "Replication repair completed"

# States in which a resync can begin (lifecycle: InitialReplication | Replicating -> Resyncing).
RESYNC_FROM = frozenset({MachineState.INITIAL_REPLICATION, MachineState.REPLICATING})
REPAIR_STEPS = ("Request a resync of every disk from the appliance", "Apply the resync cycle")
_SEVERITY_OF = {
    Health.HEALTHY: Severity.INFO,
    Health.WARNING: Severity.WARNING,
    Health.CRITICAL: Severity.CRITICAL,
}


class HealthSettings(BaseModel):
    """What the health flows read: the deployment's timings (HEALTH_* app settings, docs/health.md) and the
    rules built from its thresholds."""

    model_config = ConfigDict(frozen=True)

    thresholds: HealthThresholds = Field(default_factory=HealthThresholds)
    rules: HealthRules = Field(default_factory=HealthRules)

    @classmethod
    def from_thresholds(cls, thresholds: HealthThresholds) -> HealthSettings:
        try:
            return cls(thresholds=thresholds, rules=HealthRules(**thresholds.rule_overrides()))
        except ValidationError as exc:
            raise SettingsError(f"invalid HEALTH_* settings: {exc}") from None

    @property
    def upload_timeout(self) -> timedelta:
        return self.thresholds.upload_timeout

    @property
    def dispose_timeout(self) -> timedelta:
        return self.thresholds.dispose_timeout

    @property
    def dispose_retry(self) -> timedelta:
        return self.thresholds.dispose_retry


# --- the health state on the machine ------------------------------------------------------------------


def state_of(machine: Machine) -> HealthState:
    raw = machine.replication.health_state
    return HealthState() if raw is None else HealthState.model_validate(raw)


def context_values(machine: Machine, appliance_name: str | None = None) -> dict[str, object]:
    """Placeholders every entry may use that the machine document knows (the message may add more)."""
    values: dict[str, object] = {"vmName": machine.inventory.display_name, "vmId": machine.id}
    if appliance_name:
        values["applianceName"] = appliance_name
    return values


def _texts_for(error: ActiveError, values: Mapping[str, object]) -> tuple[str, list[str], list[str]]:
    entry = CATALOG.find(error.entry_code) or CATALOG.generic
    wanted = {k: v for k, v in values.items() if k in entry.placeholders}
    rendered = render(entry, **wanted)
    return rendered.title, list(rendered.causes), list(rendered.recommendations)


def apply_transition(
    machine: Machine,
    before: HealthState,
    after: Transition,
    values: Mapping[tuple[str, str | None], Mapping[str, object]] | None = None,
) -> None:
    """Store `after.state`, and make `health` and `current_errors` say what it says.

    Errors the health rules do not own (recorded by other paths, e.g. a disk layout change found by
    discovery) are kept as they are. `values`: placeholders for the errors raised now, by error key, so
    their causes and steps name the VM, disk and appliance; errors held from before keep their texts.
    """
    managed = {e.key for e in before.errors} | {e.key for e in after.state.errors}
    previous = {(e.code, e.disk_id): e for e in machine.replication.current_errors}
    kept = [e for e in machine.replication.current_errors if (e.code, e.disk_id) not in managed]
    derived: list[MachineError] = []
    for error in after.state.errors:
        record = error.to_machine_error()
        old = previous.get(error.key)
        if values is not None and error.key in values:
            record.title, record.causes, record.recommendations = _texts_for(error, values[error.key])
        elif old is not None and old.causes:
            record.title, record.causes, record.recommendations = old.title, old.causes, old.recommendations
        else:
            record.title, record.causes, record.recommendations = _texts_for(error, context_values(machine))
        derived.append(record)
    machine.replication.current_errors = kept + derived
    machine.replication.health_state = after.state.model_dump(mode="json")
    machine.health = after.health


def combine(before: HealthState, steps: Sequence[Transition], rules: HealthRules) -> Transition:
    """Several inputs applied in turn (e.g. one failure per disk) as one transition."""
    after = steps[-1].state if steps else before
    return Transition(
        state=after,
        previous_health=before.health(rules),
        health=after.health(rules),
        raised=tuple(e for t in steps for e in t.raised),
        cleared=tuple(e for t in steps for e in t.cleared),
        resync=next((t.resync for t in steps if t.resync is not None), None),
    )


def health_event(machine_id: str, event_id: str, at: datetime, change: Transition, reason: str) -> Event:
    worst = max(change.state.errors, key=lambda e: e.severity.rank, default=None)
    because = f" Worst current error: {worst.code} {worst.message}" if worst is not None else ""
    return Event(
        id=event_id,
        machine_id=machine_id,
        time=at,
        type=HEALTH_CHANGED,
        severity=_SEVERITY_OF[change.health],
        message=f"Replication health changed from {change.previous_health.value} to {change.health.value} "
        f"({reason}).{because}",
        error_code=worst.code if worst is not None else None,
        details={
            "previousHealth": change.previous_health.value,
            "health": change.health.value,
            "reason": reason,
        },
    )


def failure_event(
    match: CatalogMatch,
    *,
    event_id: str,
    machine: Machine,
    at: datetime,
    step: Transition,
    disk_id: str | None,
    cycle_id: str | None,
    values: Mapping[str, object],
) -> Event:
    """The catalog's event for one failure, at the severity the health rules gave it."""
    event = build_event(
        match,
        event_id=event_id,
        machine_id=machine.id,
        time=at,
        disk_id=disk_id,
        cycle_id=cycle_id,
        severity=step.event_severity,
        values={k: v for k, v in values.items() if k in match.entry.placeholders and k not in match.values},
    )
    details = {k: str(v) for k, v in {**values, **match.values}.items() if v is not None and str(v)}
    details["name"] = match.entry.name
    return event.model_copy(
        update={
            "details": details,
            "reported_code": match.reported_code,
            "references": list(match.entry.references),
        }
    )


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
        before = state_of(machine)
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
        apply_transition(machine, before, change, values)
        resync_disks = _begin_resync(machine, [s for s in steps if s.resync is not None])
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
        events.append(
            health_event(
                machine.id, f"{first.event_id}-health", first.at, change, f"{first.match.entry.name} reported"
            )
        )
    if resync_disks:
        events.append(
            _queue_resync(
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


def _begin_resync(machine: Machine, requests: Sequence[Transition]) -> list[str]:
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


def _queue_resync(
    repos: Repositories,
    machine: Machine,
    disk_ids: Sequence[str],
    *,
    request_id: str,
    at: datetime,
    why: str,
    automatic: bool,
) -> Event:
    from shared.appliances.commands import queue_command  # commands imports nothing of ours; keep it lazy

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


# --- successes (called inside complete_cycle's machine update) -----------------------------------------


def record_cycle_success(machine: Machine, *, at: datetime, resync: bool, rules: HealthRules) -> Transition:
    """An applied cycle heals what it resolves; `resync`: a whole-disk copy (initial or resync)."""
    before = state_of(machine)
    change = record_success(before, at=at, rules=rules, resync=resync)
    apply_transition(machine, before, change)
    watch = machine.replication.upload_watch
    if (
        watch is not None
        and machine.replication.last_applied_sequence is not None
        and watch.sequence <= machine.replication.last_applied_sequence
    ):
        machine.replication.upload_watch = None
    return change


# --- operator repair ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepairStarted:
    machine: Machine
    job: Job
    is_retry: bool


def start_repair(repos: Repositories, machine_id: str, *, job_id: str, now: datetime) -> RepairStarted:
    """ "Repair replication": resync every disk from a fresh snapshot; recovery points are kept.

    409 ForbiddenTransition when the state does not allow a resync; 409 Conflict when the machine has no
    replication error to repair. A repair already under way (Resyncing with a RepairReplication job) is
    returned again (is_retry) rather than started twice. Round-trips: 2 (machine) + 1 (job read or write)
    + 2 per disk (commands) + 1 (event).
    """

    def begin(machine: Machine) -> tuple[str, bool]:
        if machine.state is MachineState.RESYNCING and machine.active_job_id:
            return machine.active_job_id, True
        nothing_wrong = not machine.replication.current_errors and machine.computed_health() is Health.HEALTHY
        if nothing_wrong and machine.state in RESYNC_FROM:
            raise Conflict(
                f"machine {machine.id} has no replication error to repair: it is {machine.state.value} "
                "and Healthy. Repair resyncs every disk; run it when the machine shows an error.",
                details=[{"machineId": machine.id, "health": machine.health.value}],
            )
        # Any other state is refused by the lifecycle (409 naming the allowed transitions).
        transition(machine, MachineState.RESYNCING, action="repair replication")
        machine.active_job_id = job_id
        machine.updated_at = now
        return job_id, False

    stored, (active_job, is_retry) = repos.machines.update_with_retry(machine_id, begin)
    machine = stored.item
    if is_retry:
        existing = jobs.get(repos, active_job)
        if existing is not None:
            return RepairStarted(machine, existing, True)
    jobs.create(repos, new_job(job_id, JobKind.REPAIR_REPLICATION, machine.id, REPAIR_STEPS, now))
    disks = [d.id for d in machine.inventory.disks]
    event = _queue_resync(
        repos, machine, disks, request_id=job_id, at=now, why="the operator's request", automatic=False
    )
    repos.events.put(event)
    job = jobs.update_steps(
        repos,
        job_id,
        [
            StepChange(REPAIR_STEPS[0], JobStatus.SUCCEEDED),
            StepChange(REPAIR_STEPS[1], JobStatus.IN_PROGRESS),
        ],
        now=now,
    )
    return RepairStarted(machine, job, False)


def finish_repair_job(repos: Repositories, job_id: str | None, *, now: datetime) -> None:
    """The resync cycle was applied: the operator's RepairReplication job (if any) succeeded."""
    if job_id is None:
        return
    job = jobs.get(repos, job_id)
    if job is not None and job.kind is JobKind.REPAIR_REPLICATION:
        jobs.finish(repos, job_id, JobStatus.SUCCEEDED, now=now)


# --- cycle start: the upload watch (1011) ----------------------------------------------------------------


def watch_cycle_uploads(
    repos: Repositories,
    machine_id: str,
    *,
    cycle_id: str,
    sequence: int,
    kind: str,
    disk_ids: Sequence[str],
    started_at: datetime,
    expected: timedelta | None,
    settings: HealthSettings,
) -> UploadWatch | None:
    """Remember that the cycle's uploads are due by a deadline (the appliance's estimate, or the
    setting), and record the cycle start. Returns the watch, or None when the cycle is already applied.
    Idempotent by cycle id. Round-trips: 2 (machine) + 1 (event)."""
    deadline = started_at + (expected if expected is not None else settings.upload_timeout)

    def watch(machine: Machine) -> UploadWatch | None:
        applied = machine.replication.last_applied_sequence
        if applied is not None and sequence <= applied:
            return None  # a late announcement of a cycle that is already in the replica
        current = machine.replication.upload_watch
        if current is not None and (current.cycle_id == cycle_id or current.sequence > sequence):
            return current if current.cycle_id == cycle_id else None
        machine.replication.upload_watch = UploadWatch(
            cycle_id=cycle_id,
            sequence=sequence,
            kind=kind,
            disk_ids=sorted(disk_ids),
            started_at=started_at,
            deadline=deadline,
        )
        return machine.replication.upload_watch

    _, watched = repos.machines.update_with_retry(machine_id, watch)
    if watched is not None:
        repos.events.put(
            Event(
                id=f"{cycle_id}-started",
                machine_id=machine_id,
                time=started_at,
                type=CYCLE_STARTED,
                severity=Severity.INFO,
                message=f"Replication cycle {cycle_id} (sequence {sequence}, {kind}) started on the appliance: "
                f"{len(disk_ids)} disk(s) to upload by {watched.deadline:%Y-%m-%d %H:%M:%S} UTC.",
                cycle_id=cycle_id,
                details={
                    "sequence": str(sequence),
                    "kind": kind,
                    "disks": ",".join(sorted(disk_ids)),
                    "deadline": watched.deadline.isoformat(),
                },
            )
        )
    return watched


def report_upload_timeouts(
    repos: Repositories,
    machine: Machine,
    watch: UploadWatch,
    disk_ids: Sequence[str],
    *,
    at: datetime,
    settings: HealthSettings,
) -> FailuresRecorded:
    """1011 DiskUploadTimedOut for each disk of the watched cycle that did not finish uploading in time
    ("Replication cycle failed for disk" events); each disk is reported once per cycle."""
    names = {d.id: d.name or d.id for d in machine.inventory.disks}
    failures = [
        Failure(
            match=control_plane_error(
                "DiskUploadTimedOut",
                diskPath=names.get(disk_id, disk_id),
                diskId=disk_id,
                vmName=machine.inventory.display_name,
                vmId=machine.id,
            ),
            at=at,
            event_id=f"{watch.cycle_id}-{disk_id}-upload-timeout",
            disk_id=disk_id,
            cycle_id=watch.cycle_id,
            values={"deadline": watch.deadline.isoformat(), "cycleStartedAt": watch.started_at.isoformat()},
        )
        for disk_id in disk_ids
    ]

    def remember(m: Machine) -> None:
        current = m.replication.upload_watch
        if current is not None and current.cycle_id == watch.cycle_id:
            current.timed_out_disks = sorted(set(current.timed_out_disks) | set(disk_ids))

    appliance = repos.appliances.get(machine.appliance_id)
    return record_failures(
        repos,
        machine.id,
        failures,
        settings=settings,
        also=remember,
        appliance_name=appliance.item.name if appliance is not None else None,
    )


def report_dispose_timeout(
    repos: Repositories,
    machine_id: str,
    *,
    blocked_cycle_id: str,
    previous_cycle_id: str,
    remaining: int,
    waited: timedelta,
    attempt: int,
    at: datetime,
    settings: HealthSettings,
) -> FailuresRecorded:
    """181008 DisposeArtefactsTimedOut: the previous cycle's artefacts were not disposed of within the
    timeout, so the next cycle could not start. Each further timeout period counts as one more failed
    cycle, so health escalates to Critical while the disposal stays stuck."""
    machine = repos.machines.require(machine_id).item
    appliance = repos.appliances.get(machine.appliance_id)
    match = control_plane_error(
        "DisposeArtefactsTimedOut",
        vmName=machine.inventory.display_name,
        state="'WaitingForArtefactsDisposalPreCycle'",
    )
    failure = Failure(
        match=match,
        at=at,
        event_id=f"{blocked_cycle_id}-dispose-timeout-{attempt}",
        cycle_id=blocked_cycle_id,
        counted_as=f"{blocked_cycle_id}.dispose{attempt}",
        values={
            "previousCycle": previous_cycle_id,
            "artefactsRemaining": remaining,
            "waitedSeconds": int(waited.total_seconds()),
            "attempt": attempt,
        },
    )
    return record_failures(
        repos,
        machine_id,
        [failure],
        settings=settings,
        appliance_name=appliance.item.name if appliance is not None else None,
    )


def clear_upload_watch(repos: Repositories, machine_id: str, cycle_id: str) -> None:
    def clear(machine: Machine) -> None:
        watch = machine.replication.upload_watch
        if watch is not None and watch.cycle_id == cycle_id:
            machine.replication.upload_watch = None

    repos.machines.update_with_retry(machine_id, clear)


def run_monitor_rules(
    state: HealthState,
    *,
    last_heartbeat: datetime | None,
    now: datetime,
    rules: HealthRules,
    appliance_name: str | None,
) -> Transition:
    """The monitor's decision for one machine: the appliance's last heartbeat, then the passing of time."""
    heard = record_heartbeat(state, at=last_heartbeat, rules=rules) if last_heartbeat is not None else None
    after = evaluate(
        heard.state if heard is not None else state, now=now, rules=rules, appliance_name=appliance_name
    )
    steps = [t for t in (heard, after) if t is not None]
    return combine(state, steps, rules)


# --- the monitor (timer) --------------------------------------------------------------------------------

# Machines whose replication runs (uploads are accepted): the ones RPO and appliance silence apply to.
MONITORED_STATES = (
    MachineState.INITIAL_REPLICATION,
    MachineState.REPLICATING,
    MachineState.RESYNCING,
    MachineState.TEST_MIGRATING,
    MachineState.TEST_MIGRATED,
    MachineState.CLEANING_UP_TEST_MIGRATION,
)
MONITOR_PAGE_SIZE = 100


class MonitorReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    machines_checked: int
    machines_changed: list[str]
    appliances_read: int
    events_written: int


def monitor_health(repos: Repositories, *, now: datetime, settings: HealthSettings) -> MonitorReport:
    """Flag machines whose RPO exceeds the thresholds (Warning, then Critical) and whose appliance has
    gone silent (Critical, "appliance not responding"); a heartbeat heard since clears the latter.

    Cost, bounded and independent of history: one query page per state and 100 machines (documents read
    once), one point read per appliance that has such machines, and writes only for machines whose health
    state changes (2 round-trips + 1-2 events each). An idle, healthy fleet costs reads only.
    """
    from shared.platform.documents import Query

    rules = settings.rules
    appliances: dict[str, tuple[str | None, datetime | None]] = {}
    checked = 0
    changed: list[str] = []
    events_written = 0
    for state in MONITORED_STATES:
        continuation: str | None = None
        while True:
            page = repos.machines.query_page(
                Query(equals={"state": state.value}, order_by="id"),
                partition_key=None,
                page_size=MONITOR_PAGE_SIZE,
                continuation=continuation,
            )
            for machine in page.items:
                checked += 1
                if machine.appliance_id not in appliances:
                    stored = repos.appliances.get(machine.appliance_id)
                    appliances[machine.appliance_id] = (
                        (stored.item.name, stored.item.last_heartbeat) if stored is not None else (None, None)
                    )
                name, heartbeat = appliances[machine.appliance_id]
                before = state_of(machine)
                get_telemetry().record_rpo_since(before.last_success, now=now, machine_id=machine.id)
                if (
                    run_monitor_rules(
                        before, last_heartbeat=heartbeat, now=now, rules=rules, appliance_name=name
                    ).state
                    == before
                ):
                    continue  # nothing new: no write
                events_written += _record_monitor_change(repos, machine.id, heartbeat, name, now, rules)
                changed.append(machine.id)
            continuation = page.continuation
            if continuation is None:
                break
    return MonitorReport(
        machines_checked=checked,
        machines_changed=changed,
        appliances_read=len(appliances),
        events_written=events_written,
    )


def _record_monitor_change(
    repos: Repositories,
    machine_id: str,
    heartbeat: datetime | None,
    appliance_name: str | None,
    now: datetime,
    rules: HealthRules,
) -> int:
    def decide(machine: Machine) -> Transition:
        before = state_of(machine)
        change = run_monitor_rules(
            before, last_heartbeat=heartbeat, now=now, rules=rules, appliance_name=appliance_name
        )
        values = {e.key: context_values(machine, appliance_name) for e in change.raised}
        apply_transition(machine, before, change, values)
        return change

    stored, change = repos.machines.update_with_retry(machine_id, decide)
    machine = stored.item
    events: list[Event] = []
    for error in change.raised:
        entry = CATALOG[error.entry_code]
        rendered = render(
            entry,
            **{k: v for k, v in context_values(machine, appliance_name).items() if k in entry.placeholders},
        )
        events.append(
            Event(
                id=f"monitor-{error.code}-{error.severity.value}-{error.first_seen:%Y%m%dT%H%M%S}",
                machine_id=machine.id,
                time=now,
                type=entry.event_type.value,
                severity=_SEVERITY_OF[error.severity],
                message=error.message,
                error_code=error.code,
                causes=list(rendered.causes),
                recommendations=list(rendered.recommendations),
                references=list(entry.references),
                details={"name": entry.name, **({"applianceName": appliance_name} if appliance_name else {})},
            )
        )
    if change.changed:
        reason = "health monitor: " + (
            ", ".join(e.code for e in change.raised) or "appliance heard from again"
        )
        events.append(health_event(machine.id, f"monitor-health-{now:%Y%m%dT%H%M%S}", now, change, reason))
    for event in events:
        repos.events.put(event)
    return len(events)
