"""Activities of the reverse orchestration: the Reprotect job's checks, the appliance's commands and
their answers, the Azure disks' snapshots, planning and queueing each disk's manifest, ending access,
recording reverse recovery points, pruning old snapshots and the job's end.

Each is idempotent: commands are queued under ids derived from the job or cycle (a resend adds the
attempt), snapshots are named after the disk and the cycle, recording a point is keyed by its cycle.
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import HttpResponseError

from orchestrators.blueprints import durable_blueprint
from orchestrators.failback.contracts import (
    ChangesRequest,
    CommandView,
    CommandWatch,
    CycleFailure,
    CycleSettings,
    DiskRef,
    DiskSend,
    DiskSent,
    Fallback,
    PointRecord,
    Prune,
    Queued,
    ReprotectOutcome,
    Resend,
    SnapshotIds,
    SnapshotsRequest,
    SnapshotsTaken,
    StepRef,
    StepResult,
)
from orchestrators.hydration.activities import arm_clients, migration_settings
from orchestrators.hydration.contracts import Done
from shared.bootstrap import get_services
from shared.domain.command import (
    MAX_MANIFEST_RANGES,
    REFINE_HASH_BLOCK_SIZE,
    ApplianceCommand,
    BlockHashes,
    ChangedBlocks,
    HashDiskBlocks,
    ReportChangedBlocks,
    ReverseManifestApplied,
)
from shared.domain.errors import DomainError
from shared.domain.failback import BaselineMethod
from shared.domain.lifecycle import MachineState
from shared.failback import data_path, planned, snapshot_diff
from shared.failback import manifest as plans
from shared.failback import service as reverse
from shared.health import Failure, record_failures
from shared.health.catalog import reprotect_error
from shared.jobs import starts
from shared.platform.arm_errors import ArmError

bp = durable_blueprint()

MAX_APPLY_ATTEMPTS = 3


def _json(payload: Any) -> dict[str, Any]:
    result: dict[str, Any] = payload.model_dump(mode="json")
    return result


def _polling() -> tuple[float, float]:
    settings = migration_settings()
    return settings.final_cycle_poll.total_seconds(), settings.final_cycle_timeout.total_seconds()


@bp.activity_trigger(input_name="payload")
def check_reprotect_prerequisites(payload: dict[str, Any]) -> dict[str, Any]:
    """The appliance healthy and of the machine's kind, each on-premises disk there and at least as large
    as its Azure disk, the appliance under its disk limit."""
    ref = StepRef.model_validate(payload)
    services = get_services()
    repos = services.repos
    # The job's first step: its start is settled here (a start rolled back meanwhile left the machine
    # FailoverCommitted, which `reprotecting` refuses).
    starts.acknowledge(repos, ref.machine_id, ref.job_id)
    try:
        machine = reverse.reprotecting(repos, ref.machine_id, ref.job_id)
    except DomainError as exc:
        return _json(StepResult(ok=False, message=str(exc), error_code=exc.code))
    assert machine.reverse is not None
    appliance = repos.appliances.get(machine.reverse.appliance_id)
    own = repos.appliances.get(machine.appliance_id)
    sizes: dict[str, int] = {}
    try:
        with arm_clients() as clients:
            for disk in machine.reverse.disks:
                size = data_path.azure_disk_size(clients, disk.azure_disk_id)
                if size is not None:
                    sizes[disk.azure_disk_id] = size
    except HttpResponseError as exc:
        return _json(
            StepResult(ok=False, message=f"reading the Azure disks: {exc}", error_code="ReprotectStepFailed")
        )
    problem = reverse.prerequisite_problem(
        machine,
        appliance.item if appliance else None,
        machine_appliance=own.item if own else None,
        azure_disk_sizes=sizes,
        disks_on_appliance=reverse.disks_written_back(
            repos, machine.reverse.appliance_id, except_machine=machine.id
        ),
        now=services.clock(),
        heartbeat_timeout=services.health.rules.heartbeat_timeout,
    )
    if problem is not None:
        return _json(StepResult(ok=False, message=problem.message, error_code=problem.code))
    reverse.record_disk_sizes(repos, machine.id, sizes, now=services.clock())
    return _json(
        StepResult(
            ok=True,
            message=f"appliance {appliance.item.name if appliance else ''} healthy; "
            f"{len(machine.reverse.disks)} disk(s) fit on-premises",
        )
    )


@bp.activity_trigger(input_name="payload")
def request_power_off(payload: dict[str, Any]) -> dict[str, Any]:
    ref = StepRef.model_validate(payload)
    services = get_services()
    command_id = reverse.queue_power_off(services.repos, ref.machine_id, ref.job_id, now=services.clock())
    poll, timeout = _polling()
    return _json(Queued(command_ids=[command_id], poll_seconds=poll, timeout_seconds=timeout))


@bp.activity_trigger(input_name="payload")
def request_changed_blocks(payload: dict[str, Any]) -> dict[str, Any]:
    """ReportChangedBlocks for each disk since the failover point's cycle; none when that cycle is unknown."""
    ref = ChangesRequest.model_validate(payload)
    services = get_services()
    machine = services.repos.machines.require(ref.machine_id).item
    since = reverse.failover_point_cycle(machine)
    poll, timeout = _polling()
    ids: list[str] = []
    if since is not None and machine.reverse is not None:
        for i, disk in enumerate(machine.reverse.disks):
            command_id = f"{ref.job_id}-changes-{i}"
            reverse.queue_for_reverse_appliance(
                services.repos,
                ref.machine_id,
                command_id,
                ReportChangedBlocks(disk_id=disk.on_premises_disk_id, since_cycle_id=since),
                now=services.clock(),
            )
            ids.append(command_id)
    return _json(Queued(command_ids=ids, poll_seconds=poll, timeout_seconds=timeout))


@bp.activity_trigger(input_name="payload")
def request_block_hashes(payload: dict[str, Any]) -> dict[str, Any]:
    """HashDiskBlocks for one disk, after an event that says why the change records cannot be used."""
    fallback = Fallback.model_validate(payload)
    services = get_services()
    match = reprotect_error(
        "Determine baseline",
        "ReverseDiffUnavailable",
        reason=f"disk {fallback.on_premises_disk_id}: {fallback.reason}; comparing block hashes",
    )
    record_failures(
        services.repos,
        fallback.machine_id,
        [
            Failure(
                match=match,
                at=services.clock(),
                event_id=f"{fallback.job_id}-hashes-{fallback.on_premises_disk_id}"[-200:],
                values=dict(match.values),
            )
        ],
        settings=services.health,
    )
    command_id = f"{fallback.job_id}-hashes-{fallback.on_premises_disk_id}"[-128:]
    reverse.queue_for_reverse_appliance(
        services.repos,
        fallback.machine_id,
        command_id,
        HashDiskBlocks(disk_id=fallback.on_premises_disk_id),
        now=services.clock(),
    )
    poll, timeout = _polling()
    return _json(Queued(command_ids=[command_id], poll_seconds=poll, timeout_seconds=timeout))


@bp.activity_trigger(input_name="payload")
def read_command(payload: dict[str, Any]) -> dict[str, Any]:
    watch = CommandWatch.model_validate(payload)
    state = reverse.command_state(get_services().repos, watch.machine_id, watch.command_id)
    view = CommandView(
        acknowledged=state.acknowledged, error_code=state.error_code, error_message=state.error_message
    )
    result = state.result
    if isinstance(result, ReverseManifestApplied):
        view = view.model_copy(update={"complete": result.complete, "bytes_written": result.bytes_written})
    elif isinstance(result, ChangedBlocks):
        view = view.model_copy(update={"available": result.available, "reason": result.reason})
    return _json(view)


@bp.activity_trigger(input_name="payload")
def take_reverse_snapshots(payload: dict[str, Any]) -> dict[str, Any]:
    request = SnapshotsRequest.model_validate(payload)
    services = get_services()
    machine = services.repos.machines.require(request.machine_id).item
    assert machine.reverse is not None
    tags = data_path.reverse_tags(request.machine_id, request.job_id, services.clock())
    taken: dict[str, str] = {}
    sizes: dict[str, int] = {}
    try:
        with arm_clients() as clients:
            for disk in machine.reverse.disks:
                taken[disk.azure_disk_id], sizes[disk.azure_disk_id] = data_path.take_snapshot(
                    clients, disk.azure_disk_id, request.cycle_id, tags
                )
    except ArmError as exc:
        code = "SnapshotLimitReached" if "limit" in str(exc).lower() else exc.code
        wait = migration_settings().snapshot_limit_wait.total_seconds()
        return _json(
            SnapshotsTaken(
                ok=False, snapshot_ids=taken, message=str(exc), error_code=code, limit_wait_seconds=wait
            )
        )
    return _json(SnapshotsTaken(ok=True, snapshot_ids=taken, disk_sizes=sizes))


def _answer_of(repos: Any, machine_id: str, command_id: str) -> Any:
    return reverse.command_state(repos, machine_id, command_id).result


@bp.activity_trigger(input_name="payload")
def send_reverse_disk(payload: dict[str, Any]) -> dict[str, Any]:
    """Plan one disk (diff and change record, or block hashes) and queue its ApplyReverseManifest
    commands with a read SAS on the current snapshot. `fallback_reason` when only hashes can tell."""
    send = DiskSend.model_validate(payload)
    services = get_services()
    repos = services.repos
    size = send.disk_size
    try:
        with arm_clients() as clients:
            if send.hashes_command_id is not None:
                hashes = _answer_of(repos, send.machine_id, send.hashes_command_id)
                try:
                    if not isinstance(hashes, BlockHashes):
                        raise data_path.HashesUnreadable("the appliance's block hashes are missing")
                    digests = data_path.block_digests(hashes, send.machine_id, services.cache)
                except data_path.HashesUnreadable as exc:
                    return _json(DiskSent(ok=False, error_code="ReprotectStepFailed", message=str(exc)))
                if hashes.ranges is None and hashes.block_size > REFINE_HASH_BLOCK_SIZE:
                    # Whole blocks would send a block for a 4 KiB write: hash the differing ones again
                    # in small pieces first; that answer plans the disk.
                    differing = data_path.differing_ranges(
                        clients,
                        send.current_snapshot_id,
                        size,
                        on_premises=digests,
                        block_size=hashes.block_size,
                    )
                    if differing:
                        refine_id = f"{send.cycle_id}-refine-{send.on_premises_disk_id}"[-128:]
                        reverse.queue_for_reverse_appliance(
                            repos,
                            send.machine_id,
                            refine_id,
                            HashDiskBlocks(
                                disk_id=send.on_premises_disk_id,
                                block_size=REFINE_HASH_BLOCK_SIZE,
                                ranges=plans.merge_to_at_most(differing, MAX_MANIFEST_RANGES),
                            ),
                            now=services.clock(),
                        )
                        poll, timeout = _polling()
                        return _json(
                            DiskSent(
                                ok=True,
                                refine=Queued(
                                    command_ids=[refine_id], poll_seconds=poll, timeout_seconds=timeout
                                ),
                            )
                        )
                manifest = data_path.plan_from_hashes(
                    clients,
                    send.current_snapshot_id,
                    size,
                    on_premises=digests,
                    block_size=hashes.block_size,
                    ranges=hashes.ranges,
                )
            else:
                on_premises: list[tuple[int, int]] = []
                if send.changes_command_id is not None:
                    changes = _answer_of(repos, send.machine_id, send.changes_command_id)
                    if not isinstance(changes, ChangedBlocks) or not changes.available:
                        reason = changes.reason if isinstance(changes, ChangedBlocks) else "no answer"
                        return _json(
                            DiskSent(ok=True, fallback_reason=f"no change record on-premises: {reason}")
                        )
                    on_premises = list(changes.ranges)
                if send.previous_snapshot_id is None:
                    return _json(DiskSent(ok=True, fallback_reason="no failback baseline snapshot recorded"))
                try:
                    planned = data_path.plan_from_diff(
                        clients,
                        send.previous_snapshot_id,
                        send.current_snapshot_id,
                        size,
                        on_premises_changed=on_premises,
                    )
                except data_path.DiffUnavailable as exc:
                    return _json(DiskSent(ok=True, fallback_reason=str(exc)))
                manifest = plans.to_snapshot_manifest(planned)
            sas = snapshot_diff.grant_read_access(
                clients, send.current_snapshot_id, duration_seconds=data_path.APPLY_ACCESS_SECONDS
            )
    except (ArmError, HttpResponseError) as exc:
        return _json(
            DiskSent(
                ok=False, error_code=getattr(exc, "code", None) or "ReprotectStepFailed", message=str(exc)
            )
        )
    ids = []
    for part, request in enumerate(
        data_path.apply_requests(send.on_premises_disk_id, send.cycle_id, sas, manifest)
    ):
        command_id = f"{send.cycle_id}-{send.on_premises_disk_id}-{part}-a1"[-128:]
        reverse.queue_for_reverse_appliance(repos, send.machine_id, command_id, request, now=services.clock())
        ids.append(command_id)
    totals = data_path.totals_of(manifest, size)
    return _json(
        DiskSent(
            ok=True,
            command_ids=ids,
            bytes_processed=totals.bytes_processed,
            bytes_transferred=totals.bytes_transferred,
            bytes_matched=totals.bytes_matched,
        )
    )


@bp.activity_trigger(input_name="payload")
def resend_reverse_command(payload: dict[str, Any]) -> dict[str, Any]:
    """The same manifest from the same snapshot again, under the next attempt's id."""
    resend = Resend.model_validate(payload)
    services = get_services()
    repos = services.repos
    machine = repos.machines.require(resend.machine_id).item
    appliance_id = machine.reverse.appliance_id if machine.reverse else machine.appliance_id
    old: ApplianceCommand = repos.commands.require(resend.command_id, appliance_id).item
    base = resend.command_id.rsplit("-a", 1)[0]
    command_id = f"{base}-a{resend.attempt}"
    reverse.queue_for_reverse_appliance(
        repos, resend.machine_id, command_id, old.request(), now=services.clock()
    )
    poll, timeout = _polling()
    return _json(Queued(command_ids=[command_id], poll_seconds=poll, timeout_seconds=timeout))


@bp.activity_trigger(input_name="payload")
def end_snapshot_access(payload: dict[str, Any]) -> dict[str, Any]:
    ids = SnapshotIds.model_validate(payload)
    with arm_clients() as clients:
        for snapshot_id in ids.snapshot_ids:
            snapshot_diff.end_read_access(clients, snapshot_id)
    return _json(Done())


@bp.activity_trigger(input_name="payload")
def delete_reverse_snapshots(payload: dict[str, Any]) -> dict[str, Any]:
    """End access and delete the snapshots a failed job or cycle took."""
    ids = SnapshotIds.model_validate(payload)
    with arm_clients() as clients:
        for snapshot_id in ids.snapshot_ids:
            data_path.delete_snapshot(clients, snapshot_id)
    return _json(Done())


@bp.activity_trigger(input_name="payload")
def prune_reverse_snapshots(payload: dict[str, Any]) -> dict[str, Any]:
    prune = Prune.model_validate(payload)
    deleted: list[str] = []
    with arm_clients() as clients:
        for disk_id, kept in prune.kept.items():
            deleted += data_path.prune_before(clients, disk_id, kept)
    return _json(SnapshotIds(snapshot_ids=deleted))


@bp.activity_trigger(input_name="payload")
def record_reverse_point(payload: dict[str, Any]) -> dict[str, Any]:
    record = PointRecord.model_validate(payload)
    services = get_services()
    reverse.record_reverse_point(
        services.repos,
        record.machine_id,
        cycle_id=record.cycle_id,
        snapshot_ids=record.snapshot_ids,
        totals=reverse.ReverseTotals(
            bytes_processed=record.bytes_processed,
            bytes_transferred=record.bytes_transferred,
            bytes_matched=record.bytes_matched,
        ),
        now=services.clock(),
        baseline=BaselineMethod(record.baseline) if record.baseline else None,
        rules=services.health.rules,
    )
    return _json(Done())


@bp.activity_trigger(input_name="payload")
def reverse_cycle_settings(payload: dict[str, Any]) -> dict[str, Any]:
    """Whether the machine is protected back (`active`) and replicating (cycles go on), how often (the
    appliance's policy), and each disk's last snapshot (before the initial sync: its failback baseline)."""
    ref = StepRef.model_validate(payload)
    repos = get_services().repos
    machine = repos.machines.require(ref.machine_id).item
    pending = machine.pending_start
    # An operator's planned failover or cancel is picked up here: its start is settled. Rolled back
    # meanwhile, the machine has its state back (read again) and no job is run.
    if (
        pending is not None
        and pending.open
        and machine.state in planned.FAILBACK_JOB_STATES
        and pending.job.id == machine.active_job_id
        and not starts.acknowledge(repos, machine.id, pending.job.id)
    ):
        machine = repos.machines.require(ref.machine_id).item
    if machine.state not in reverse.REVERSE_STATES or machine.reverse is None:
        return _json(CycleSettings(active=False))
    failover = machine.failover
    baselines = (
        dict(zip(failover.disk_ids, failover.failback_baseline_snapshot_ids, strict=False))
        if failover
        else {}
    )
    appliance = repos.appliances.get(machine.reverse.appliance_id)
    minutes = appliance.item.policy.reverse_cycle_minutes if appliance else 15
    poll, timeout = _polling()
    return _json(
        CycleSettings(
            active=True,
            replicating=machine.state is MachineState.REVERSE_REPLICATING,
            interval_seconds=minutes * 60,
            poll_seconds=poll,
            timeout_seconds=timeout,
            previous_snapshot_ids={
                d.azure_disk_id: previous
                for d in machine.reverse.disks
                if (previous := d.last_snapshot_id or baselines.get(d.azure_disk_id))
            },
            disks=[
                DiskRef(azure_disk_id=d.azure_disk_id, on_premises_disk_id=d.on_premises_disk_id)
                for d in machine.reverse.disks
            ],
            job_id=machine.reverse.job_id,
            failback_job_id=machine.active_job_id if machine.state in planned.FAILBACK_JOB_STATES else None,
            failback_cancel=machine.state is MachineState.CANCELLING_PLANNED_FAILBACK,
        )
    )


@bp.activity_trigger(input_name="payload")
def record_reverse_cycle_failure(payload: dict[str, Any]) -> dict[str, Any]:
    failure = CycleFailure.model_validate(payload)
    services = get_services()
    match = reprotect_error("Reverse cycle", failure.error_code, reason=failure.message)
    record_failures(
        services.repos,
        failure.machine_id,
        [
            Failure(
                match=match,
                at=services.clock(),
                event_id=f"{failure.cycle_id}-failed",
                values=dict(match.values),
            )
        ],
        settings=services.health,
    )
    return _json(Done())


@bp.activity_trigger(input_name="payload")
def end_reprotect_job(payload: dict[str, Any]) -> dict[str, Any]:
    outcome = ReprotectOutcome.model_validate(payload)
    services = get_services()
    reverse.end_reprotect(services.repos, outcome, now=services.clock(), health=services.health)
    return _json(Done())
