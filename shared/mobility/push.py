"""The push installation of the Mobility service: job InstallMobilityService, carried out by the
machine's appliance.

The route records the job (steps: copy agent, check prerequisites, install agent, install VSS provider,
register) and the orchestration queues one InstallMobilityService command with the installer's
short-lived read SAS and the names of the secrets the appliance holds (the server's credential, the
registration passphrase); the appliance answers with a report per step, and `push_outcome` turns that
report into the job's end: the first failed step fails the job with its catalog error; a VSS provider
failure is a Warning from agent 9.23 and a failure up to 9.22; a reboot-required warning (95265/95266)
leaves the job in Warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import ip_address

from azure.storage.blob import BlobSasPermissions, ContainerClient
from pydantic import Field

from shared.appliances.commands import queue_command_of
from shared.domain.command import (
    ApplianceCommand,
    CommandKind,
    DiskPaths,
    PushInstallReport,
    PushInstallRequest,
    PushStep,
    PushStepReport,
    PushStepStatus,
    vss_failure_is_warning,
)
from shared.domain.errors import Conflict, ValidationFailed
from shared.domain.job import Job, JobError, JobKind, JobStatus, new_job
from shared.domain.machine import Machine
from shared.domain.wire import RequestModel
from shared.health.catalog import CATALOG, render
from shared.jobs import lifecycle as jobs
from shared.jobs import starts
from shared.mobility.installers import list_installers
from shared.mobility.os_support import describe_resolution
from shared.mobility.service import os_string
from shared.platform.repository import Repositories
from shared.platform.storage import BlobSasSigner

STEPS: tuple[PushStep, ...] = tuple(PushStep)

DEFAULT_PASSPHRASE_NAME = "mobility-passphrase"
LINUX_INSTALL_LOCATION = "/usr/local/ASR"
WINDOWS_INSTALL_LOCATION = "C:\\Program Files (x86)\\Microsoft Azure Site Recovery"
# The installer is read once, right after the command is queued; the SAS outlives the command's wait.
INSTALLER_SAS_LIFETIME = timedelta(hours=2)
# The orchestration reads the command's answer this often, and gives the appliance this long.
POLL_SECONDS = 10.0
ANSWER_TIMEOUT_SECONDS = 30 * 60.0
# Catalog codes the appliance reports a step with, beyond the published ids (they are entries too).
UNKNOWN_EXIT_CODE = "MCP-5999"
OTHER_VSS_EXIT_CODE = "MCP-5599"
DOCUMENTED_VSS_EXIT_CODES = frozenset({511, 512, 517, 802, 806})


class PushInstallBody(RequestModel):
    """POST /api/machines/{id}/mobility/install (and .../update)."""

    credential_name: str = Field(
        min_length=1,
        max_length=127,
        pattern=r"^[0-9A-Za-z-]+$",
        description="the name of the secret holding the server's root (Linux) or administrator (Windows) "
        "account in the appliance's secret store; never the secret itself",
    )
    install_location: str | None = Field(
        default=None,
        min_length=1,
        max_length=260,
        description="absolute path; default /usr/local/ASR (Linux) or C:\\Program Files (x86)\\Microsoft "
        "Azure Site Recovery (Windows)",
    )
    passphrase_name: str = Field(
        default=DEFAULT_PASSPHRASE_NAME,
        min_length=1,
        max_length=127,
        pattern=r"^[0-9A-Za-z-]+$",
        description="the secret holding the registration passphrase in the appliance's secret store",
    )
    server_address: str | None = Field(
        default=None, description="where the appliance reaches the server; default its first reported IP"
    )
    server_port: int = Field(default=22, ge=1, le=65535, description="SSH port (Linux)")
    disk_paths: DiskPaths | None = Field(
        default=None,
        description="disk id of the machine's inventory -> the block device or raw disk image on the server "
        'the agent replicates it from (Linux), e.g. {"disk-0": "/dev/sda"}; without it the agent '
        "registers and heartbeats but replicates nothing (an update keeps the installed agent's disks)",
    )


@dataclass(frozen=True)
class PushStarted:
    job: Job
    request: PushInstallRequest  # installer_url empty: the SAS is signed when the command is queued


def _server_address(machine_nics: list[list[str]], given: str | None) -> str:
    if given:
        return given
    for addresses in machine_nics:
        for address in addresses:
            if not ip_address(address).is_loopback:
                return address
    raise ValidationFailed.single(
        "serverAddress", "the machine's appliance reported no IP address for it; give serverAddress"
    )


def start_push_install(
    repos: Repositories,
    installers: ContainerClient,
    machine_id: str,
    body: PushInstallBody,
    *,
    job_id: str,
    control_plane_url: str,
    now: datetime,
    update: bool = False,
    idempotency_key: starts.RetryOf | str | None = None,
) -> PushStarted:
    """Record job InstallMobilityService for the newest catalog installer of the machine's OS, through the
    crash-safe start path (the machine holds the pending start, so an interrupted push is ended by the
    reconciler instead of blocking every later one as "still running").

    404 for an unknown machine, 400 for an OS outside the table or a bad body, 409 when no installer
    for the OS is in the catalog or another installation of the machine is still running."""
    machine = repos.machines.require(machine_id).item
    pending = starts.same_request(machine, idempotency_key, JobKind.INSTALL_MOBILITY_SERVICE, now)
    keyed = starts.retry_of(idempotency_key).key is not None
    if pending is not None and (keyed or _still_running(repos, pending.job)):
        # A resend (same key; or same body while its job runs, which would otherwise be refused): the
        # start path hands back the job (and request) the first one recorded.
        return _recorded(repos, machine_id, pending.job, now=now, idempotency_key=idempotency_key)
    resolution = describe_resolution(os_string(machine.inventory), list_installers(installers))
    newest = resolution.installer
    if newest is None:
        raise Conflict(
            f"no installer for {resolution.installer_os} is in the catalog; upload "
            f"{resolution.installer_pattern} (PUT /api/mobility/installers/<fileName>) and push again",
            details=[{"installerOs": resolution.installer_os}],
        )
    running = [
        j
        for j in jobs.list_jobs(repos, machine_id=machine_id, kind=JobKind.INSTALL_MOBILITY_SERVICE).jobs
        if not j.status.finished
    ]
    if running:
        raise Conflict(
            f"installation job {running[0].id} of machine {machine_id} is still running; wait for it",
            details=[{"jobId": running[0].id}],
        )
    windows = resolution.installer_os == "Windows"
    location = body.install_location or (WINDOWS_INSTALL_LOCATION if windows else LINUX_INSTALL_LOCATION)
    if not windows and not location.startswith("/"):
        raise ValidationFailed.single("installLocation", f"must be an absolute path; got {location!r}")
    disk_paths = dict(body.disk_paths or {})
    if disk_paths and windows:
        raise ValidationFailed.single(
            "diskPaths", "the agent replicates Linux servers' disks only; leave diskPaths out for Windows"
        )
    known = {d.id for d in machine.inventory.disks}
    if unknown := sorted(set(disk_paths) - known):
        raise ValidationFailed.single(
            "diskPaths",
            f"unknown disk ids {', '.join(unknown)}; machine {machine_id} has {', '.join(sorted(known))}",
        )
    nics = [[str(a) for a in nic.ip_addresses] for nic in machine.inventory.nics]
    request = PushInstallRequest(
        installer_name=newest.file_name,
        installer_url="-",
        installer_sha256=newest.sha256,
        agent_version=newest.version,
        windows=windows,
        server_address=_server_address(nics, body.server_address),
        server_port=body.server_port,
        credential_name=body.credential_name,
        passphrase_name=body.passphrase_name,
        install_location=location,
        control_plane_url=control_plane_url,
        update=update,
        disk_paths=disk_paths,
    )
    job = new_job(job_id, JobKind.INSTALL_MOBILITY_SERVICE, machine_id, [s.value for s in STEPS], now)
    return _recorded(repos, machine_id, job, now=now, idempotency_key=idempotency_key, request=request)


def _still_running(repos: Repositories, job: Job) -> bool:
    current = jobs.get(repos, job.id)
    return current is None or not current.status.finished


def _recorded(
    repos: Repositories,
    machine_id: str,
    job: Job,
    *,
    now: datetime,
    idempotency_key: starts.RetryOf | str | None,
    request: PushInstallRequest | None = None,
) -> PushStarted:
    def record(machine: Machine) -> PushInstallRequest:
        if request is None:  # a retry whose first request's start was rolled back meanwhile
            raise Conflict(
                f"the push installation {job.id} of machine {machine_id} was interrupted and rolled back; "
                "push again with a new Idempotency-Key",
                details=[{"jobId": job.id}],
            )
        return request

    started = starts.begin(
        repos, machine_id, record, job, now=now, idempotency_key=idempotency_key, record_unchanged=True
    )
    recorded = started.result
    if not isinstance(recorded, PushInstallRequest):  # a retry: as the first request stored it
        recorded = PushInstallRequest.model_validate(recorded)
    return PushStarted(job=started.job, request=recorded)


def push_command_id(job_id: str) -> str:
    return f"push-{job_id}"


def queue_push(
    repos: Repositories,
    signer: BlobSasSigner,
    machine_id: str,
    job_id: str,
    request: PushInstallRequest,
    *,
    now: datetime,
) -> ApplianceCommand:
    """Queue the command with a fresh read SAS of the installer; idempotent by job (a retried activity
    finds the command it queued)."""
    url = signer.blob_url(
        request.installer_name,
        permission=BlobSasPermissions(read=True),
        expiry=now + INSTALLER_SAS_LIFETIME,
        now=now,
    )
    return queue_command_of(
        repos,
        command_id=push_command_id(job_id),
        machine_id=machine_id,
        kind=CommandKind.INSTALL_MOBILITY_SERVICE,
        push=request.model_copy(update={"installer_url": url}),
        now=now,
    )


def mark_started(repos: Repositories, job_id: str, *, now: datetime) -> Job:
    """The job's first step in progress: the appliance has been asked."""
    return jobs.start_step(repos, job_id, STEPS[0].value, now=now)


def push_command(repos: Repositories, machine_id: str, job_id: str) -> ApplianceCommand | None:
    """The job's command as stored (2 point reads: the machine, for its appliance; the command)."""
    machine = repos.machines.require(machine_id).item
    found = repos.commands.get(push_command_id(job_id), machine.appliance_id)
    return found.item if found is not None else None


# --- the outcome --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushOutcome:
    status: JobStatus
    steps: list[tuple[str, JobStatus, str | None]]  # each reported step as the job records it
    error: JobError | None = None
    failed_step: str | None = None


def catalog_code(report: PushStepReport) -> str:
    """The catalog code of a failed or warning step: the one reported when the catalog has it; a VSS
    exit code by its entry; any other installer exit code MCP-5999, kept verbatim with its log."""
    if report.code and CATALOG.find(report.code) is not None:
        entry = CATALOG.find(report.code)
        assert entry is not None
        return entry.code
    if report.step is PushStep.INSTALL_VSS_PROVIDER and report.exit_code is not None:
        if report.exit_code in DOCUMENTED_VSS_EXIT_CODES:
            return f"MCP-5{report.exit_code}"
        return OTHER_VSS_EXIT_CODE
    return UNKNOWN_EXIT_CODE


def push_error(report: PushStepReport, server: str) -> JobError:
    """The job's error for a step: the catalog entry's message, filled with what the appliance said."""
    entry = CATALOG[catalog_code(report)]
    values: dict[str, object] = {"step": report.step.value, "server": server, "reason": report.message}
    if "exitCode" in entry.placeholders:
        values["exitCode"] = "none" if report.exit_code is None else report.exit_code
        values["logPath"] = report.log_path or "not reported"
    if entry.code == UNKNOWN_EXIT_CODE and report.code:
        values["reason"] = f"{report.code}: {report.message}"
    return JobError(code=entry.code, message=render(entry, **values).message)


def push_outcome(
    report: PushInstallReport | None, request: PushInstallRequest, error_code: str | None
) -> PushOutcome:
    """The job's end from the appliance's answer (None: it never answered)."""
    server = request.server_address
    if report is None:
        code = error_code or "MCP-5003"
        failed = PushStepReport(step=PushStep.COPY_AGENT, status=PushStepStatus.FAILED, code=code)
        return PushOutcome(
            status=JobStatus.FAILED,
            steps=[],
            error=push_error(failed, server),
            failed_step=PushStep.COPY_AGENT.value,
        )
    steps: list[tuple[str, JobStatus, str | None]] = []
    warning: JobError | None = None
    for step in report.steps:
        vss_failed = step.status is PushStepStatus.FAILED and step.step is PushStep.INSTALL_VSS_PROVIDER
        if vss_failed and vss_failure_is_warning(request.agent_version):
            warning = push_error(step, server)
            steps.append((step.step.value, JobStatus.WARNING, warning.message))
            continue
        if step.status is PushStepStatus.FAILED:
            error = push_error(step, server)
            steps.append((step.step.value, JobStatus.FAILED, error.message))
            return PushOutcome(JobStatus.FAILED, steps, error=error, failed_step=step.step.value)
        if step.status is PushStepStatus.WARNING:
            warning = push_error(step, server)
            steps.append((step.step.value, JobStatus.WARNING, warning.message))
        elif step.status in (PushStepStatus.SUCCEEDED, PushStepStatus.SKIPPED):
            steps.append((step.step.value, JobStatus.SUCCEEDED, step.message or None))
    if warning is not None:
        return PushOutcome(JobStatus.WARNING, steps, error=warning)
    return PushOutcome(JobStatus.SUCCEEDED, steps)


def end_push_job(repos: Repositories, job_id: str, outcome: PushOutcome, *, now: datetime) -> Job:
    """Record each reported step, then end the job (idempotent: a finished job no longer changes)."""
    for name, status, message in outcome.steps:
        jobs.start_step(repos, job_id, name, now=now)
        jobs.finish_step(repos, job_id, name, status, now=now, message=message)
    return jobs.finish(
        repos, job_id, outcome.status, now=now, error=outcome.error, failed_step=outcome.failed_step
    )
