"""Deadlines the appliance cannot report on: a started cycle's uploads (1011 DiskUploadTimedOut) and the
previous cycle's disposal before the next one (181008 DisposeArtefactsTimedOut)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.domain.cycle import CycleKind
from shared.domain.errors import Forbidden
from shared.domain.event import Event, Severity
from shared.domain.machine import Machine, MachineSnapshot, UploadWatch
from shared.health.catalog import control_plane_error
from shared.health.event_texts import CYCLE_STARTED
from shared.health.settings import HealthSettings
from shared.health.writer import Failure, FailuresRecorded, record_failures
from shared.platform.documents import Guard
from shared.platform.repository import Repositories


@dataclass(frozen=True)
class CycleWatched:
    watch: UploadWatch
    machine: MachineSnapshot = field(repr=False)  # as the watch left it: its ETag is the current one


# Copies of whole disks: hours long, so their start is an event of its own.
WHOLE_DISK_KINDS = frozenset({CycleKind.INITIAL.value, CycleKind.RESYNC.value})


def watch_cycle_uploads(
    repos: Repositories,
    machine_id: str,
    *,
    appliance_id: str,
    cycle_id: str,
    sequence: int,
    kind: str,
    disk_ids: Sequence[str],
    started_at: datetime,
    expected: timedelta | None,
    settings: HealthSettings,
) -> CycleWatched | None:
    """Remember that the cycle's uploads are due by a deadline (the appliance's estimate, or the
    setting). Returns the watch and the machine as it now stands, or None when the cycle is already
    applied. Idempotent by cycle id.

    The appliance must own the machine (403 otherwise, nothing written); disks the machine does not have
    are ignored (none left: every disk). Round-trips: 1 in the usual case, a patch of the watch guarded
    by everything the case requires (the appliance owns the machine, the cycle is newer than the applied
    one and than the watched one, every disk is the machine's), checked by Cosmos with the write; else
    (a redelivery, a late or foreign announcement, an unknown disk) 1 more, and the machine's read and
    replace decide as below. A whole-disk copy (initial, resync) also records a "cycle started" event,
    as it may run for hours: a delta's start goes into its "cycle completed" event instead.
    """
    deadline = started_at + (expected if expected is not None else settings.upload_timeout)

    def watch_of(disks: set[str]) -> UploadWatch:
        return UploadWatch(
            cycle_id=cycle_id,
            sequence=sequence,
            kind=kind,
            disk_ids=sorted(disks),
            started_at=started_at,
            deadline=deadline,
        )

    if disk_ids:
        usual = watch_of(set(disk_ids))
        guard = Guard(
            equals={"applianceId": appliance_id},
            below={"replication.lastAppliedSequence": sequence, "replication.uploadWatch.sequence": sequence},
            contains={"inventory.disks": [{"id": d} for d in usual.disk_ids]},
        )
        patched = repos.machines.patch_if(machine_id, {"replication.uploadWatch": usual.to_wire()}, guard)
        if patched is not None:
            _record_whole_disk_start(repos, machine_id, usual)
            return CycleWatched(usual, MachineSnapshot(machine=patched.item, etag=patched.etag))

    # Why the guarded patch did not write (as the read below finds the machine): counted, so a fleet's
    # fallbacks say which writes race the start.
    why: list[str] = []

    def watch(machine: Machine) -> UploadWatch | None:
        if machine.appliance_id != appliance_id:
            raise Forbidden(
                f"appliance {appliance_id} reported a cycle start for machine {machine_id}, which belongs "
                "to another appliance"
            )
        applied = machine.replication.last_applied_sequence
        if applied is not None and sequence <= applied:
            why[:] = ["cycle already applied"]
            return None  # a late announcement of a cycle that is already in the replica
        current = machine.replication.upload_watch
        if current is not None and (current.cycle_id == cycle_id or current.sequence > sequence):
            why[:] = ["redelivered" if current.cycle_id == cycle_id else "a newer cycle is watched"]
            return current if current.cycle_id == cycle_id else None
        known = {d.id for d in machine.inventory.disks}
        why[:] = ["unknown disk" if set(disk_ids) - known else "guard held when read"]
        machine.replication.upload_watch = watch_of({d for d in disk_ids if d in known} or known)
        return machine.replication.upload_watch

    stored, watched = repos.machines.update_with_retry(machine_id, watch)
    if disk_ids:
        repos.counter.record_fallback("cycle start patch", why[0] if why else "no reason found")
    if watched is None:
        return None
    _record_whole_disk_start(repos, machine_id, watched)
    return CycleWatched(watched, MachineSnapshot(machine=stored.item, etag=stored.etag))


def _record_whole_disk_start(repos: Repositories, machine_id: str, watched: UploadWatch) -> None:
    if watched.kind not in WHOLE_DISK_KINDS:
        return
    repos.events.put(
        Event(
            id=f"{watched.cycle_id}-started",
            machine_id=machine_id,
            time=watched.started_at,
            type=CYCLE_STARTED,
            severity=Severity.INFO,
            message=f"Replication cycle {watched.cycle_id} (sequence {watched.sequence}, {watched.kind}) started "
            f"on the appliance: {len(watched.disk_ids)} disk(s) to upload by "
            f"{watched.deadline:%Y-%m-%d %H:%M:%S} UTC.",
            cycle_id=watched.cycle_id,
            details={
                "sequence": str(watched.sequence),
                "kind": watched.kind,
                "disks": ",".join(watched.disk_ids),
                "deadline": watched.deadline.isoformat(),
            },
        )
    )


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
