"""Activities of the test-migration, clean-up and migration flows: the final cycle, the job's end, the
test migration's resources. Hydration's own activities are in `orchestrators.hydration.activities`.

Each is idempotent: commands are queued under ids derived from the job, the job's end is a
read-modify-write that converges, the resource lookup only reads.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orchestrators.blueprints import durable_blueprint
from orchestrators.hydration.activities import arm_clients, delete_one, migration_settings, replica_container
from orchestrators.hydration.contracts import DeleteRequest, Done, Resource
from orchestrators.migration.contracts import (
    DeleteVerdict,
    FinalCycleRequest,
    FinalCycleStarted,
    FinalCycleState,
    FinalCycleWatch,
    JobOutcome,
    JobResourcesQuery,
    ShutdownState,
    TestResources,
)
from shared.appliances.commands import queue_command
from shared.bootstrap import get_services
from shared.domain.command import CommandKind, CommandStatus, PowerChanged, PowerState
from shared.domain.cycle import CycleKind, CycleState
from shared.jobs import lifecycle as jobs
from shared.migration import resource_kinds as kinds
from shared.migration import service as migration
from shared.migration.resource_kinds import ResourceKind
from shared.migration.tags import TAG_JOB_ID
from shared.platform.arm_errors import ArmError
from shared.platform.documents import Query

bp = durable_blueprint()


@bp.activity_trigger(input_name="payload")
def find_job_resources(payload: dict[str, Any]) -> dict[str, Any]:
    """Everything tagged with a job's id (the test migration's VM, NIC and disks, and anything its
    compensation could not delete), plus its recovery-point copies in storage."""
    query = JobResourcesQuery.model_validate(payload)
    machine_id, job_id = query.machine_id, query.job_id
    found: list[Resource] = []
    with arm_clients() as clients:
        for item in clients.resources.resources.list(
            filter=f"tagName eq '{TAG_JOB_ID}' and tagValue eq '{job_id}'"
        ):
            kind = kinds.kind_of_type(str(item.type))
            if kind is not None:
                found.append(Resource(kind=kind, id=str(item.id)))
    prefix = f"{machine_id}/copies/{job_id}/"
    found += [
        Resource(kind=ResourceKind.BLOB, id=b.name)
        for b in replica_container().list_blobs(name_starts_with=prefix)
    ]
    return TestResources(resources=found).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def try_delete_resource(payload: dict[str, Any]) -> dict[str, Any]:
    """The delete once more, after its retries gave up: ARM's verdict as a value, so the clean-up names
    what resisted with ARM's code and message."""
    request = DeleteRequest.model_validate(payload)
    try:
        delete_one(request.resource)
    except ArmError as exc:
        return DeleteVerdict(
            resource=request.resource,
            deleted=False,
            error_code=exc.arm_code or exc.code,
            error_message=exc.message,
        ).model_dump(mode="json")
    return DeleteVerdict(resource=request.resource, deleted=True).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def end_migration_job(payload: dict[str, Any]) -> dict[str, Any]:
    outcome = JobOutcome.model_validate(payload)
    services = get_services()
    migration.end_job(
        services.repos,
        outcome.job_id,
        succeeded=outcome.succeeded,
        now=services.clock(),
        error_code=outcome.error_code,
        error_message=outcome.error_message,
        failed_step=outcome.failed_step,
        cancelled=outcome.cancelled,
        test_job_id=outcome.test_job_id,
    )
    return Done().model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def request_final_cycle(payload: dict[str, Any]) -> dict[str, Any]:
    """Queue ShutDownSource (if asked) then RunCycle(final) for the appliance; idempotent by command id."""
    request = FinalCycleRequest.model_validate(payload)
    services = get_services()
    now = services.clock()
    if request.shutdown_source:
        queue_command(
            services.repos,
            command_id=f"{request.job_id}-shutdown",
            machine_id=request.machine_id,
            kind=CommandKind.SHUT_DOWN_SOURCE,
            now=now,
        )
    queue_command(
        services.repos,
        command_id=f"{request.job_id}-final",
        machine_id=request.machine_id,
        kind=CommandKind.RUN_CYCLE,
        cycle_kind=CycleKind.FINAL.value,
        now=now,
    )
    settings = migration_settings()
    return FinalCycleStarted(
        poll_seconds=settings.final_cycle_poll.total_seconds(),
        timeout_seconds=settings.final_cycle_timeout.total_seconds(),
        shutdown_timeout_seconds=settings.shutdown_timeout.total_seconds(),
    ).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def check_migration_shutdown(payload: dict[str, Any]) -> dict[str, Any]:
    """Has the appliance confirmed the source is off? An acknowledgement alone is not enough: it must
    answer with the machine's power state (off), else the cutover could run both machines at once."""
    watch = FinalCycleWatch.model_validate(payload)
    repos = get_services().repos
    machine = repos.machines.require(watch.machine_id).item
    stored = repos.commands.get(f"{watch.job_id}-shutdown", machine.appliance_id)
    if stored is None or stored.item.status is not CommandStatus.ACKNOWLEDGED:
        return ShutdownState(
            confirmed=False, answered=False, message="waiting for the appliance to shut the source down"
        ).model_dump(mode="json")
    command = stored.item
    result = command.result
    if isinstance(result, PowerChanged) and result.power_state is PowerState.OFF:
        already = "" if result.changed else " (it already was)"
        return ShutdownState(
            confirmed=True, answered=True, message=f"the appliance confirmed the source is off{already}"
        ).model_dump(mode="json")
    if command.error is not None:
        why = f"the appliance could not shut the source down: {command.error.code}: {command.error.message}"
    elif isinstance(result, PowerChanged):
        why = f"the appliance reports the source is {result.power_state.value} after the shutdown command"
    else:
        why = (
            "the appliance acknowledged the shutdown without reporting the machine's power state (an "
            "appliance too old to confirm it?)"
        )
    return ShutdownState(confirmed=False, answered=True, message=why).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def check_final_cycle(payload: dict[str, Any]) -> dict[str, Any]:
    """Has a final cycle uploaded since the job started been applied (and which recovery point did it
    leave), or rejected? Final cycles exist only on request, so "after the job was created" names ours."""
    watch = FinalCycleWatch.model_validate(payload)
    services = get_services()
    job = jobs.require(services.repos, watch.job_id)
    finals = [
        c
        for c in services.repos.cycles.query(
            Query(equals={"machineId": watch.machine_id, "kind": CycleKind.FINAL.value}),
            partition_key=watch.machine_id,
        )
        if c.received_at >= job.created_at - timedelta(seconds=5)
    ]
    applied = [c for c in finals if c.state is CycleState.APPLIED]
    if applied:
        cycle = max(applied, key=lambda c: c.sequence)
        machine = services.repos.machines.require(watch.machine_id).item
        point = next((p for p in machine.replication.recovery_points if p.cycle_id == cycle.id), None)
        if point is not None:
            return FinalCycleState(
                applied=True, recovery_point_id=point.id, message=f"final cycle {cycle.id} applied"
            ).model_dump(mode="json")
        # The machine is written before the cycle is marked Applied: no point now means none will come
        # (a disk of the machine had no replica to snapshot), so waiting cannot help.
        return FinalCycleState(
            applied=False,
            rejected=True,
            message=f"final cycle {cycle.id} was applied but left no recovery point (see the machine's "
            "events: a disk without a replica needs Repair replication); migrate again afterwards",
        ).model_dump(mode="json")
    rejected = [c for c in finals if c.state is CycleState.REJECTED]
    if rejected and not applied:
        cycle = rejected[-1]
        return FinalCycleState(
            applied=False, rejected=True, message=f"final cycle {cycle.id} was rejected: {cycle.error}"
        ).model_dump(mode="json")
    return FinalCycleState(applied=False, message="waiting for the final cycle").model_dump(mode="json")
