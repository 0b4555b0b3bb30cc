"""Typed payloads of the test-migration, clean-up and migration orchestrations and their activities."""

from __future__ import annotations

from pydantic import Field

from orchestrators.hydration.contracts import HydrationRequest, HydrationResult, Payload, Resource


class JobInput(Payload):
    """The input of a job orchestration (`job-{jobId}`), written by the HTTP starter."""

    machine_id: str
    job_id: str
    prepared_manually: bool = False
    recovery_point_id: str | None = Field(default=None, description="None: the latest recovery point")
    shutdown_source: bool = False
    continue_without_shutdown: bool = Field(
        default=False,
        description="a shutdown the appliance does not confirm in time is a warning, not a failure",
    )
    test_job_id: str | None = Field(default=None, description="cleanup: the test migration it undoes")
    test_virtual_network: str | None = Field(
        default=None, description="test migration: overrides the target's"
    )

    def hydration(self, *, test: bool) -> HydrationRequest:
        return HydrationRequest(
            machine_id=self.machine_id,
            job_id=self.job_id,
            test=test,
            prepared_manually=self.prepared_manually,
            recovery_point_id=self.recovery_point_id,
            test_virtual_network=self.test_virtual_network,
        )


class JobOutcome(Payload):
    """How a job orchestration ends the job and moves the machine."""

    machine_id: str
    job_id: str
    succeeded: bool
    cancelled: bool = Field(
        default=False, description="not a failure: the operator cancelled it; rolled back as a failure is"
    )
    error_code: str | None = None
    error_message: str | None = None
    failed_step: str | None = Field(
        default=None, description="the job step that failed; None: the step that was running"
    )
    result: HydrationResult | None = None
    test_job_id: str | None = Field(
        default=None,
        description="clean-up: the test migration it undoes; a failed clean-up makes it the machine's job again",
    )


class FinalCycleRequest(Payload):
    machine_id: str
    job_id: str
    shutdown_source: bool


class FinalCycleWatch(Payload):
    machine_id: str
    job_id: str


class FinalCycleState(Payload):
    applied: bool
    rejected: bool = False
    cancelled: bool = Field(default=False, description="the operator cancelled the cutover during the wait")
    recovery_point_id: str | None = None
    message: str = ""
    error_code: str | None = Field(default=None, description="when it failed: the job's error code")
    failed_step: str | None = Field(default=None, description="when it failed: the step that failed")


class FinalCycleStarted(Payload):
    poll_seconds: float
    timeout_seconds: float
    shutdown_timeout_seconds: float = 300.0


class ShutdownState(Payload):
    """The source's shutdown as the appliance answered it: confirmed off, refused, or not answered yet."""

    confirmed: bool
    answered: bool
    message: str


class JobResourcesQuery(Payload):
    """The test migration whose resources a clean-up looks for."""

    machine_id: str
    job_id: str


class TestResources(Payload):
    """What a test migration left for its cleanup, found by tag in ARM."""

    resources: list[Resource]


class DeleteVerdict(Payload):
    """One delete tried once more, its ARM verdict as a value: what resisted and why."""

    resource: Resource
    deleted: bool
    error_code: str | None = None
    error_message: str | None = None


class CleanupResult(Payload):
    deleted: list[str]
    leftovers: list[str]
