"""Test migration / migration use cases over the in-memory store (same ETag semantics as Cosmos): the
lifecycle moves, the jobs and their steps, how each job's end moves the machine, and the settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.cycle import Consistency, RecoveryPoint
from shared.domain.errors import Conflict, ValidationFailed
from shared.domain.inventory import MachineInventory
from shared.domain.job import JobKind, JobStatus, StepChange
from shared.domain.lifecycle import ForbiddenTransition, MachineState
from shared.domain.machine import Machine
from shared.domain.target import TargetSettings
from shared.jobs import lifecycle as jobs
from shared.migration import service as m
from shared.platform.repository import Repositories
from shared.platform.settings import Settings, SettingsError
from tests.support.memory_store import InMemoryDocumentStore

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
MIB = 1024 * 1024


def _machine(
    repos: Repositories, *, state: MachineState = MachineState.REPLICATING, points: int = 2
) -> Machine:
    inventory = MachineInventory.model_validate(
        {
            "displayName": "web01",
            "osType": "linux",
            "osName": "Ubuntu",
            "osVersion": "20.04",
            "firmware": "BIOS",
            "disks": [{"id": "os", "sizeBytes": 64 * MIB, "isOsDisk": True}],
        }
    )
    machine = Machine(
        id="web01",
        appliance_id="app1",
        inventory=inventory,
        state=state,
        discovered_at=NOW,
        updated_at=NOW,
        target=TargetSettings.model_validate(
            {
                "resourceGroup": "rg",
                "virtualNetwork": "vnet",
                "subnet": "default",
                "testVirtualNetwork": "vnet-test",
                "vmSize": "Standard_D2s_v3",
            }
        ),
    )
    machine.replication.recovery_points = [
        RecoveryPoint(
            id=f"p{i}",
            cycle_id=f"c{i}",
            time=NOW - timedelta(hours=points - i),
            consistency=Consistency.CRASH,
            disk_snapshots={"os": f"snap{i}"},
        )
        for i in range(points)
    ]
    repos.machines.add(machine)
    return machine


@pytest.fixture
def repos() -> Repositories:
    return Repositories(InMemoryDocumentStore())


def test_test_migration_records_the_job_and_allows_only_one_at_a_time(repos: Repositories) -> None:
    _machine(repos)
    started = m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-1", now=NOW)
    assert started.machine.state is MachineState.TEST_MIGRATING
    assert started.machine.active_job_id == "job-1"
    assert started.job.kind is JobKind.TEST_MIGRATION
    assert [s.name for s in started.job.steps] == list(m.test_migration_steps())
    with pytest.raises(ForbiddenTransition) as refused:
        m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-2", now=NOW)
    assert refused.value.current is MachineState.TEST_MIGRATING
    assert repos.jobs.get("job-2") is None


def test_a_missing_recovery_point_is_refused_and_changes_nothing(repos: Repositories) -> None:
    _machine(repos)
    with pytest.raises(ValidationFailed, match="no recovery point p9"):
        m.start_test_migration(
            repos, "web01", m.TestMigrationRequest(recovery_point="p9"), job_id="j", now=NOW
        )
    assert repos.machines.require("web01").item.state is MachineState.REPLICATING
    repos.machines.delete("web01")
    _machine(repos, points=0)
    with pytest.raises(Conflict, match="no recovery point yet"):
        m.start_migration(repos, "web01", m.MigrationRequest(), job_id="j", now=NOW)
    assert repos.machines.require("web01").item.state is MachineState.REPLICATING


def test_request_bodies_are_strict() -> None:
    assert m.TestMigrationRequest.model_validate({"preparedManually": True}).prepared_manually
    with pytest.raises(ValueError, match=r"shutdownsource\n  Extra inputs are not permitted"):
        m.MigrationRequest.model_validate({"shutdownsource": True})


def test_cleanup_undoes_the_machines_test_migration(repos: Repositories) -> None:
    _machine(repos)
    m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-t", now=NOW)
    with pytest.raises(Conflict, match="still running"):  # its own compensation owns the resources
        m.start_test_migration_cleanup(repos, "web01", job_id="job-c", now=NOW)
    m.end_job(repos, "job-t", succeeded=True, now=NOW)
    assert repos.machines.require("web01").item.state is MachineState.TEST_MIGRATED
    test_job = repos.jobs.require("job-t").item
    assert m.is_test_migration_live(repos, test_job)
    started = m.start_test_migration_cleanup(repos, "web01", job_id="job-c", now=NOW)
    assert started.test_job_id == "job-t"
    assert not m.is_test_migration_live(repos, test_job)
    m.end_job(repos, "job-c", succeeded=True, now=NOW)
    assert repos.machines.require("web01").item.state is MachineState.REPLICATING


def test_a_failed_cleanup_keeps_the_test_migration_and_can_be_run_again(repos: Repositories) -> None:
    _machine(repos)
    m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-t", now=NOW)
    m.end_job(repos, "job-t", succeeded=True, now=NOW)
    m.start_test_migration_cleanup(repos, "web01", job_id="job-c", now=NOW)
    job = m.end_job(
        repos,
        "job-c",
        succeeded=False,
        now=NOW,
        error_code="InternalOperationError",
        error_message="could not delete vm-test: InternalOperationError: boom",
        failed_step=m.STEP_DELETE_TEST,
        test_job_id="job-t",
    )
    [step] = job.steps
    assert (step.status, step.error) == (JobStatus.FAILED, job.error)
    assert job.error is not None and job.error.code == "InternalOperationError"
    machine = repos.machines.require("web01").item
    assert (machine.state, machine.active_job_id) == (MachineState.TEST_MIGRATED, "job-t")
    assert m.is_test_migration_live(repos, repos.jobs.require("job-t").item)  # the sweeper keeps it
    again = m.start_test_migration_cleanup(repos, "web01", job_id="job-c2", now=NOW)
    assert again.test_job_id == "job-t"
    m.end_job(repos, "job-c2", succeeded=True, now=NOW)
    assert repos.machines.require("web01").item.state is MachineState.REPLICATING


def test_a_job_whose_steps_warned_ends_warning(repos: Repositories) -> None:
    _machine(repos)
    m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-t", now=NOW)
    jobs.finish_step(repos, "job-t", m.STEP_HELPER_NETWORK, JobStatus.WARNING, now=NOW, message="policy")
    assert m.end_job(repos, "job-t", succeeded=True, now=NOW).status is JobStatus.WARNING
    assert m.is_test_migration_live(repos, repos.jobs.require("job-t").item)


def test_a_failed_test_migration_goes_back_to_replicating_and_its_steps_say_which_ran(
    repos: Repositories,
) -> None:
    _machine(repos)
    m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-t", now=NOW)
    jobs.update_steps(
        repos,
        "job-t",
        [
            StepChange(m.STEP_PICK_POINT, JobStatus.SUCCEEDED),
            StepChange(m.STEP_COPY_DISKS, JobStatus.IN_PROGRESS),
        ],
        now=NOW,
    )
    job = m.end_job(
        repos, "job-t", succeeded=False, now=NOW, error_code="QuotaExceeded", error_message="no cores"
    )
    assert job.status is JobStatus.FAILED and job.error is not None and job.error.code == "QuotaExceeded"
    statuses = {s.name: s.status for s in job.steps}
    assert statuses[m.STEP_PICK_POINT] is JobStatus.SUCCEEDED
    assert statuses[m.STEP_COPY_DISKS] is JobStatus.FAILED  # the step that was running
    failing = next(s for s in job.steps if s.name == m.STEP_COPY_DISKS)
    assert failing.error == job.error  # and why
    assert statuses[m.STEP_CREATE_VM] is JobStatus.CANCELLED  # never started
    assert repos.machines.require("web01").item.state is MachineState.REPLICATING
    # Repeating the end (a retried activity) changes nothing.
    again = m.end_job(repos, "job-t", succeeded=True, now=NOW + timedelta(minutes=1))
    assert again.status is JobStatus.FAILED


def test_migration_ends_migrated_or_back_to_replicating(repos: Repositories) -> None:
    _machine(repos)
    started = m.start_migration(
        repos, "web01", m.MigrationRequest(shutdown_source=True), job_id="job-m", now=NOW
    )
    assert started.machine.state is MachineState.MIGRATING
    assert [s.name for s in started.job.steps][:2] == [m.STEP_SHUTDOWN, m.STEP_FINAL_CYCLE]
    m.end_job(repos, "job-m", succeeded=False, now=NOW)
    assert repos.machines.require("web01").item.state is MachineState.REPLICATING
    m.start_migration(repos, "web01", m.MigrationRequest(), job_id="job-m2", now=NOW)
    assert m.STEP_SHUTDOWN not in [s.name for s in repos.jobs.require("job-m2").item.steps]
    m.end_job(repos, "job-m2", succeeded=True, now=NOW)
    assert repos.machines.require("web01").item.state is MachineState.MIGRATED


def test_a_cancelled_cutover_goes_back_to_replicating_ends_cancelled_and_says_so_on_the_machine(
    repos: Repositories,
) -> None:
    _machine(repos)
    m.start_migration(repos, "web01", m.MigrationRequest(shutdown_source=True), job_id="job-m", now=NOW)
    jobs.update_steps(
        repos,
        "job-m",
        [
            StepChange(m.STEP_SHUTDOWN, JobStatus.SUCCEEDED),
            StepChange(m.STEP_FINAL_CYCLE, JobStatus.CANCELLED),
        ],
        now=NOW,
    )
    job = m.end_job(
        repos, "job-m", succeeded=False, cancelled=True, now=NOW, error_message="cancelled by the operator"
    )
    assert repos.machines.require("web01").item.state is MachineState.REPLICATING
    assert job.status is JobStatus.CANCELLED
    assert job.error is not None and (job.error.code, job.error.message) == (
        "Cancelled",
        "cancelled by the operator",
    )
    statuses = {s.name: s.status for s in job.steps}
    assert statuses[m.STEP_SHUTDOWN] is JobStatus.SUCCEEDED
    assert {s for n, s in statuses.items() if n != m.STEP_SHUTDOWN} == {JobStatus.CANCELLED}
    event = repos.events.require("job-m-cancelled", partition_key="web01").item
    assert event.type == "Migration cancelled" and event.machine_id == "web01"
    # Retried: nothing changes.
    assert m.end_job(repos, "job-m", succeeded=False, cancelled=True, now=NOW).status is JobStatus.CANCELLED


def test_toolkit_steps_are_inserted_after_the_preparation_step_once(repos: Repositories) -> None:
    _machine(repos)
    m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-t", now=NOW)
    added = [
        StepChange("Prepare: validate_fstab", JobStatus.SUCCEEDED),
        StepChange("Prepare: install_azure_linux_agent", JobStatus.WARNING, "install waagent after boot"),
    ]
    for _ in range(2):  # idempotent: a retried activity inserts nothing twice
        job = jobs.update_steps(
            repos,
            "job-t",
            [StepChange(m.STEP_PREPARE, JobStatus.WARNING, "see steps")],
            now=NOW,
            add_after=m.STEP_PREPARE,
            added=added,
        )
    names = [s.name for s in job.steps]
    at = names.index(m.STEP_PREPARE)
    assert names[at + 1 : at + 3] == ["Prepare: validate_fstab", "Prepare: install_azure_linux_agent"]
    assert names.count("Prepare: validate_fstab") == 1
    warning = job.steps[at + 2]
    assert warning.error is not None and warning.error.message == "install waagent after boot"


def test_settings_name_what_is_missing_or_wrong() -> None:
    base = {
        "COSMOS_ENDPOINT": "https://127.0.0.1:1/",
        "CACHE_STORAGE_ACCOUNT_URL": "https://cache.blob.core.windows.net",
        "REPLICA_STORAGE_ACCOUNT_URL": "https://replica.blob.core.windows.net",
        "EVENTGRID_TOPIC_ENDPOINT": "https://topic/api/events",
        "APPLIANCE_CREDENTIAL_PEPPER": "pepper",
    }
    account = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/replica"
    settings = Settings.from_environ(
        {**base, "REPLICA_STORAGE_ACCOUNT_ID": account, "HYDRATION_SAS_LIFETIME_MINUTES": "30"}
    )
    assert settings.replica_storage.require_account_id() == account
    assert settings.migration.sas_lifetime == timedelta(minutes=30)
    with pytest.raises(SettingsError, match="REPLICA_STORAGE_ACCOUNT_ID"):
        Settings.from_environ(base).replica_storage.require_account_id()
    with pytest.raises(SettingsError, match="MIGRATION_FINAL_CYCLE_POLL_SECONDS='soon': must be a number"):
        Settings.from_environ({**base, "MIGRATION_FINAL_CYCLE_POLL_SECONDS": "soon"})


def test_a_test_migration_needs_an_isolated_vnet(repos: Repositories) -> None:
    machine = _machine(repos)
    assert machine.target is not None
    repos.machines.put(
        machine.model_copy(
            update={"target": machine.target.model_copy(update={"test_virtual_network": None})}
        )
    )
    with pytest.raises(ValidationFailed, match="never uses the production VNet"):
        m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-1", now=NOW)
    assert repos.machines.require("web01").item.state is MachineState.REPLICATING
    request = m.TestMigrationRequest.model_validate({"testVirtualNetwork": "vnet-isolated"})
    started = m.start_test_migration(repos, "web01", request, job_id="job-1", now=NOW)
    assert started.machine.state is MachineState.TEST_MIGRATING


def test_a_plan_that_fails_fails_its_step_with_the_jobs_error_and_cancels_the_rest(
    repos: Repositories,
) -> None:
    _machine(repos)
    m.start_test_migration(repos, "web01", m.TestMigrationRequest(), job_id="job-t", now=NOW)
    # Nothing started yet (the plan failed before any step began): the named step is the one that failed.
    job = m.end_job(
        repos,
        "job-t",
        succeeded=False,
        now=NOW,
        error_code="Error",
        error_message="recovery point p1 has no snapshot of disk(s) data",
        failed_step=m.STEP_PICK_POINT,
    )
    statuses = {s.name: s.status for s in job.steps}
    assert statuses[m.STEP_PICK_POINT] is JobStatus.FAILED
    failing = next(s for s in job.steps if s.name == m.STEP_PICK_POINT)
    assert (
        failing.error == job.error and failing.error is not None and "disk(s) data" in failing.error.message
    )
    assert all(statuses[name] is JobStatus.CANCELLED for name in m.HYDRATION_STEPS)


def test_a_test_migration_is_refused_while_an_earlier_ones_resources_stand() -> None:
    m.refuse_over_leftovers("web01", [])
    vm = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web01-test-abc123"
    with pytest.raises(Conflict, match=r"web01-test-abc123\. Run the clean-up first") as refused:
        m.refuse_over_leftovers("web01", [(vm, "job-abc123")])
    assert "job job-abc123" in refused.value.message
    assert refused.value.details == [{"resourceId": vm, "jobId": "job-abc123"}]


def test_continue_without_shutdown_needs_a_shutdown() -> None:
    assert m.MigrationRequest.model_validate(
        {"shutdownSource": True, "continueWithoutShutdown": True}
    ).continue_without_shutdown
    with pytest.raises(ValueError, match="only with shutdownSource"):
        m.MigrationRequest.model_validate({"continueWithoutShutdown": True})
