"""Test migration, its clean-up, and migration (cutover): the use cases behind the HTTP routes and the
job orchestrations.

The HTTP function records the machine's new state and the job here first (the lifecycle enforces "at
most one test migration at a time": TestMigrating/TestMigrated cannot start another), then starts the
job's own orchestration `job-{jobId}`. The machine's replication orchestration is not involved: it keeps
applying cycles to the replica underneath (the cycle inbox accepts uploads in these states).

Jobs show their steps: the fixed ones below, plus one per step of the hydration toolkit's report,
inserted after "Run preparation script" when the report is in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from pydantic import Field, model_validator

from shared.domain.errors import Conflict, FieldValueError, ValidationFailed
from shared.domain.event import Event, Severity
from shared.domain.job import Job, JobError, JobKind, JobStatus, new_job
from shared.domain.lifecycle import MachineState, transition
from shared.domain.machine import Machine
from shared.domain.wire import RequestModel
from shared.jobs import lifecycle as jobs
from shared.jobs import starts
from shared.platform.repository import Repositories

# --- requests -------------------------------------------------------------------------------------------


class TestMigrationRequest(RequestModel):
    """Body of POST /api/machines/{id}/test-migrate (optional)."""

    recovery_point: str = Field(
        default="latest", description="'latest' or a recovery point id from the machine's recoveryPointList"
    )
    prepared_manually: bool = Field(
        default=False,
        description="skip hydration: the operator confirms the OS was prepared for Azure by hand",
    )
    test_virtual_network: str | None = Field(
        default=None,
        description="the isolated VNet (name in the target resource group, or ARM id); default: the target "
        "settings' testVirtualNetwork",
        min_length=1,
        max_length=400,
    )


# The rule `_continue_needs_shutdown` enforces, stated in the schema so that a client written from the
# OpenAPI document knows the combination is refused before it sends it.
_CONTINUE_NEEDS_SHUTDOWN: dict[str, Any] = {
    "if": {
        "properties": {"continueWithoutShutdown": {"const": True}},
        "required": ["continueWithoutShutdown"],
    },
    "then": {"properties": {"shutdownSource": {"const": True}}, "required": ["shutdownSource"]},
}


class MigrationRequest(RequestModel, json_schema_extra=_CONTINUE_NEEDS_SHUTDOWN):
    """Body of POST /api/machines/{id}/migrate."""

    shutdown_source: bool = Field(default=False, description="shut the source VM down before the final cycle")
    continue_without_shutdown: bool = Field(
        default=False,
        description="with shutdownSource: when the appliance does not confirm the source is off in time, go on "
        "(the step ends Warning and both machines may run) instead of failing before anything is created",
    )
    prepared_manually: bool = False

    @model_validator(mode="after")
    def _continue_needs_shutdown(self) -> Self:
        if self.continue_without_shutdown and not self.shutdown_source:
            raise FieldValueError(
                "continueWithoutShutdown", "only with shutdownSource: true (there is no shutdown to wait for)"
            )
        return self


# --- job steps ------------------------------------------------------------------------------------------

STEP_PICK_POINT = "Pick recovery point"
STEP_COPY_DISKS = "Copy recovery point and import disks"
STEP_HELPER_NETWORK = "Create temporary network"
STEP_HELPER_VM = "Create temporary VM"
STEP_PREPARE = "Run preparation script"
STEP_DELETE_TEMPORARY = "Delete temporary resources"
STEP_CREATE_VM = "Create VM"
STEP_SHUTDOWN = "Shut down source VM"
STEP_FINAL_CYCLE = "Run final replication cycle"
STEP_FINISH_MIGRATION = "Mark migrated and stop replication"
STEP_DELETE_TEST = "Delete test VM, disks and network interface"
PREPARE_STEP_PREFIX = "Prepare: "

HYDRATION_STEPS = (
    STEP_COPY_DISKS,
    STEP_HELPER_NETWORK,
    STEP_HELPER_VM,
    STEP_PREPARE,
    STEP_DELETE_TEMPORARY,
    STEP_CREATE_VM,
)
# Hydration steps skipped when the operator prepared the OS by hand.
HELPER_STEPS = (STEP_HELPER_NETWORK, STEP_HELPER_VM, STEP_PREPARE, STEP_DELETE_TEMPORARY)
MANUAL_PREPARATION_REQUIRED = "ManualPreparationRequired"
SHUTDOWN_NOT_CONFIRMED = "SourceShutdownNotConfirmed"


def test_migration_steps() -> tuple[str, ...]:
    return (STEP_PICK_POINT, *HYDRATION_STEPS)


def migration_steps(shutdown_source: bool) -> tuple[str, ...]:
    first = (STEP_SHUTDOWN,) if shutdown_source else ()
    return (*first, STEP_FINAL_CYCLE, STEP_PICK_POINT, *HYDRATION_STEPS, STEP_FINISH_MIGRATION)


# --- starting jobs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigrationJobStarted:
    machine: Machine
    job: Job
    test_job_id: str | None = None  # cleanup: the test migration being undone


def _check_point(machine: Machine, point_id: str) -> None:
    points = machine.replication.recovery_points
    if not points:
        raise Conflict(f"machine {machine.id} has no recovery point yet: wait for its initial replication")
    if point_id != "latest" and all(p.id != point_id for p in points):
        raise ValidationFailed.single(
            "recoveryPoint",
            f"machine {machine.id} has no recovery point {point_id}; use 'latest' or an id "
            "from the machine's recoveryPointList",
        )


def start_test_migration(
    repos: Repositories,
    machine_id: str,
    request: TestMigrationRequest,
    *,
    job_id: str,
    now: datetime,
    idempotency_key: starts.RetryOf | str | None = None,
) -> MigrationJobStarted:
    """Replicating -> TestMigrating and a TestMigration job (3 round-trips, through the crash-safe start
    path `shared.jobs.starts`). 409 while another test migration exists (the lifecycle allows one at a
    time) or without a recovery point."""

    def apply(machine: Machine) -> None:
        if machine.target is None:
            raise Conflict(f"machine {machine.id} has no target settings: enable replication first")
        transition(machine, MachineState.TEST_MIGRATING, action="test migrate")
        if not (request.test_virtual_network or machine.target.test_virtual_network):
            raise ValidationFailed.single(
                "testVirtualNetwork",
                "name the isolated VNet for the test VM here, or set testVirtualNetwork in the target settings; "
                "a test migration never uses the production VNet",
            )
        _check_point(machine, request.recovery_point)
        machine.active_job_id = job_id
        machine.updated_at = now

    job = new_job(job_id, JobKind.TEST_MIGRATION, machine_id, test_migration_steps(), now)
    started = starts.begin(repos, machine_id, apply, job, now=now, idempotency_key=idempotency_key)
    return MigrationJobStarted(started.machine, started.job)


def refuse_over_leftovers(machine_id: str, leftovers: list[tuple[str, str]]) -> None:
    """409 while temporary resources of an earlier test migration (or of a flow whose compensation failed)
    stand: a new test VM beside them would be one more to pay for, and the operator would not know which
    one boots which disk. `leftovers` are (ARM id, job id)."""
    if not leftovers:
        return
    jobs_of = sorted({job for _, job in leftovers})
    names = ", ".join(arm_id.rsplit("/", 1)[-1] for arm_id, _ in leftovers[:10])
    more = f" and {len(leftovers) - 10} more" if len(leftovers) > 10 else ""
    raise Conflict(
        f"machine {machine_id} still has {len(leftovers)} temporary resource(s) of an earlier test migration "
        f"(job {', '.join(jobs_of)}): {names}{more}. Run the clean-up first (POST /api/machines/{machine_id}/"
        "test-migrate/cleanup on a TestMigrated machine); the leftovers of a job that failed are deleted by "
        "the sweeper at its next run",
        details=[{"resourceId": arm_id, "jobId": job} for arm_id, job in leftovers],
    )


def start_test_migration_cleanup(
    repos: Repositories,
    machine_id: str,
    *,
    job_id: str,
    now: datetime,
    idempotency_key: starts.RetryOf | str | None = None,
) -> MigrationJobStarted:
    """TestMigrated -> CleaningUpTestMigration and a TestMigrationCleanup job; it undoes the machine's
    current test migration (its job id is what the test resources are tagged with)."""

    def apply(machine: Machine) -> str:
        test_job = machine.active_job_id
        if machine.state is MachineState.TEST_MIGRATING:
            # The lifecycle allows this move for the test migration's own failure path, not the operator's:
            # its compensation is still running and owns those resources.
            raise Conflict(
                f"the test migration of {machine.id} (job {test_job}) is still running; clean up "
                "when it has finished (a failed one cleans up after itself)"
            )
        transition(machine, MachineState.CLEANING_UP_TEST_MIGRATION, action="clean up the test migration")
        if not test_job:
            raise Conflict(f"machine {machine.id} records no test migration to clean up")
        machine.active_job_id = job_id
        machine.updated_at = now
        return test_job

    job = new_job(job_id, JobKind.TEST_MIGRATION_CLEANUP, machine_id, (STEP_DELETE_TEST,), now)
    started = starts.begin(repos, machine_id, apply, job, now=now, idempotency_key=idempotency_key)
    return MigrationJobStarted(started.machine, started.job, started.result)


def start_migration(
    repos: Repositories,
    machine_id: str,
    request: MigrationRequest,
    *,
    job_id: str,
    now: datetime,
    idempotency_key: starts.RetryOf | str | None = None,
) -> MigrationJobStarted:
    """Replicating -> Migrating and a Migration job (3 round-trips)."""

    def apply(machine: Machine) -> None:
        if machine.target is None:
            raise Conflict(f"machine {machine.id} has no target settings: enable replication first")
        transition(machine, MachineState.MIGRATING, action="migrate")
        if not machine.replication.recovery_points:
            raise Conflict(
                f"machine {machine.id} has no recovery point yet: wait for its initial replication"
            )
        machine.active_job_id = job_id
        machine.updated_at = now

    job = new_job(job_id, JobKind.MIGRATION, machine_id, migration_steps(request.shutdown_source), now)
    started = starts.begin(repos, machine_id, apply, job, now=now, idempotency_key=idempotency_key)
    return MigrationJobStarted(started.machine, started.job)


# --- job end --------------------------------------------------------------------------------------------


# What each job's end does to the machine: (from, on success, on failure).
_OUTCOMES: dict[JobKind, tuple[MachineState, MachineState, tuple[MachineState, ...]]] = {
    # A failed test migration has been compensated (nothing left): it goes back through clean-up.
    JobKind.TEST_MIGRATION: (
        MachineState.TEST_MIGRATING,
        MachineState.TEST_MIGRATED,
        (MachineState.CLEANING_UP_TEST_MIGRATION, MachineState.REPLICATING),
    ),
    # A failed clean-up leaves the test migration as it was (what resisted still stands): clean up again.
    JobKind.TEST_MIGRATION_CLEANUP: (
        MachineState.CLEANING_UP_TEST_MIGRATION,
        MachineState.REPLICATING,
        (MachineState.TEST_MIGRATED,),
    ),
    # A failed cutover leaves the replica as it was: replication resumes.
    JobKind.MIGRATION: (MachineState.MIGRATING, MachineState.MIGRATED, (MachineState.REPLICATING,)),
}


def end_job(
    repos: Repositories,
    job_id: str,
    *,
    succeeded: bool,
    now: datetime,
    error_code: str | None = None,
    error_message: str | None = None,
    failed_step: str | None = None,
    cancelled: bool = False,
    test_job_id: str | None = None,
) -> Job:
    """Move the machine as the job's outcome says, then finish the job; idempotent (a retried call finds
    the machine already moved and the job already finished). A failure fails `failed_step` (else the
    step that was running) with the job's error and cancels the steps never run. A cancelled job moves
    the machine as a failure does, ends `Cancelled` (every open step with it) and leaves an event on the
    machine saying so. A failed clean-up gives the machine back its test migration (`test_job_id`), whose
    resources the next clean-up looks for. A job that succeeded with a step in Warning ends Warning."""
    job = jobs.require(repos, job_id)
    source, success, failure = _OUTCOMES[job.kind]

    def move(machine: Machine) -> None:
        if machine.state is not source or machine.active_job_id != job_id:
            return
        for state in (success,) if succeeded else failure:
            transition(machine, state, action=f"finish {job.kind.value}")
        if not succeeded and job.kind is JobKind.TEST_MIGRATION_CLEANUP and test_job_id:
            machine.active_job_id = test_job_id
        machine.updated_at = now

    repos.machines.update_with_retry(job.machine_id, move)
    if succeeded:
        warned = any(s.status is JobStatus.WARNING for s in jobs.require(repos, job_id).steps)
        return jobs.finish(repos, job_id, JobStatus.WARNING if warned else JobStatus.SUCCEEDED, now=now)
    if cancelled:
        message = error_message or f"the {job.kind.value} job was cancelled by the operator"
        repos.events.put(
            Event(
                id=f"{job_id}-cancelled",
                machine_id=job.machine_id,
                time=now,
                type=f"{job.kind.value} cancelled",
                severity=Severity.INFO,
                message=message,
                details={"jobId": job_id},
            )
        )
        error = JobError(code=error_code or "Cancelled", message=message)
        return jobs.finish(repos, job_id, JobStatus.CANCELLED, now=now, error=error)
    error = JobError(code=error_code or "Failed", message=error_message or "the job failed")
    return jobs.finish(repos, job_id, JobStatus.FAILED, now=now, error=error, failed_step=failed_step)


def is_test_migration_live(repos: Repositories, job: Job) -> bool:
    """A finished test migration whose resources still stand (not cleaned up yet): they are in use."""
    if job.kind is not JobKind.TEST_MIGRATION or job.status not in (JobStatus.SUCCEEDED, JobStatus.WARNING):
        return False
    stored = repos.machines.get(job.machine_id)
    return (
        stored is not None
        and stored.item.active_job_id == job.id
        and stored.item.state is MachineState.TEST_MIGRATED
    )
