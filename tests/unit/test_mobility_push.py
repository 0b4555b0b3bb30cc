"""The push installation's rules: the VSS provider's version rule, each step's catalog error, the job's end."""

from __future__ import annotations

import pytest

from shared.domain.command import (
    PushInstallReport,
    PushInstallRequest,
    PushStep,
    PushStepReport,
    PushStepStatus,
    vss_failure_is_warning,
)
from shared.domain.job import JobStatus
from shared.mobility.push import catalog_code, push_outcome


def _request(version: str = "9.56.0.0") -> PushInstallRequest:
    return PushInstallRequest(
        installer_name=f"Microsoft-ASR_UA_{version}_Windows_GA_22Oct2019_release.exe",
        installer_url="https://example/sas",
        installer_sha256="0" * 64,
        agent_version=version,
        windows=True,
        server_address="10.0.0.5",
        credential_name="srv-admin",
        passphrase_name="mobility-passphrase",
        install_location="C:\\ASR",
        control_plane_url="https://cp",
    )


def _ok(step: PushStep) -> PushStepReport:
    return PushStepReport(step=step, status=PushStepStatus.SUCCEEDED)


def _report(*overrides: PushStepReport) -> PushInstallReport:
    by_step = {r.step: r for r in overrides}
    return PushInstallReport(steps=[by_step.get(step, _ok(step)) for step in PushStep])


@pytest.mark.parametrize(
    ("version", "warning"),
    [
        ("9.22.0.0", False),
        ("9.22", False),
        ("9.23.0.0", True),
        ("9.56.0.0", True),
        ("10.1", True),
        ("8.99", False),
    ],
)
def test_a_vss_failure_is_a_warning_from_9_23(version: str, warning: bool) -> None:
    assert vss_failure_is_warning(version) is warning


def test_a_vss_failure_on_9_23_leaves_the_job_in_warning_with_the_exit_codes_entry() -> None:
    vss = PushStepReport(
        step=PushStep.INSTALL_VSS_PROVIDER, status=PushStepStatus.FAILED, exit_code=517, message="0x80070430"
    )
    outcome = push_outcome(_report(vss), _request("9.23.0.0"), None)
    assert outcome.status is JobStatus.WARNING
    assert outcome.error is not None and outcome.error.code == "MCP-5517"
    assert "exit code 517" in outcome.error.message
    assert (PushStep.REGISTER.value, JobStatus.SUCCEEDED, None) in outcome.steps


def test_a_vss_failure_up_to_9_22_fails_the_installation() -> None:
    vss = PushStepReport(step=PushStep.INSTALL_VSS_PROVIDER, status=PushStepStatus.FAILED, exit_code=4242)
    outcome = push_outcome(_report(vss), _request("9.22.0.0"), None)
    assert outcome.status is JobStatus.FAILED
    assert outcome.failed_step == PushStep.INSTALL_VSS_PROVIDER.value
    assert outcome.error is not None and outcome.error.code == "MCP-5599"


@pytest.mark.parametrize(
    ("reported", "code"),
    [("95108", "95108"), ("97118", "95117"), ("95524", "95524"), ("PushCredentialNotFound", "MCP-5001")],
)
def test_a_failed_prerequisite_fails_the_job_with_its_catalog_error(reported: str, code: str) -> None:
    failed = PushStepReport(
        step=PushStep.CHECK_PREREQUISITES, status=PushStepStatus.FAILED, code=reported, message="why"
    )
    outcome = push_outcome(_report(failed), _request(), None)
    assert outcome.status is JobStatus.FAILED
    assert outcome.error is not None and outcome.error.code == code
    assert "10.0.0.5" in outcome.error.message and "why" in outcome.error.message
    assert [s[0] for s in outcome.steps] == [PushStep.COPY_AGENT.value, PushStep.CHECK_PREREQUISITES.value]


def test_an_unknown_installer_exit_code_is_kept_verbatim_with_the_log() -> None:
    failed = PushStepReport(
        step=PushStep.INSTALL_AGENT,
        status=PushStepStatus.FAILED,
        exit_code=77,
        log_path="/var/log/ua_install.log",
        message="tar: broken",
    )
    assert catalog_code(failed) == "MCP-5999"
    outcome = push_outcome(_report(failed), _request(), None)
    assert outcome.error is not None
    assert "exited with code 77" in outcome.error.message
    assert "/var/log/ua_install.log" in outcome.error.message and "tar: broken" in outcome.error.message


def test_reboot_required_is_a_warning_of_a_complete_installation() -> None:
    reboot = PushStepReport(step=PushStep.INSTALL_AGENT, status=PushStepStatus.WARNING, code="95265")
    outcome = push_outcome(_report(reboot), _request(), None)
    assert outcome.status is JobStatus.WARNING
    assert outcome.error is not None and outcome.error.code == "95265"


def test_no_answer_fails_the_job_as_the_appliance_not_answering() -> None:
    outcome = push_outcome(None, _request(), None)
    assert outcome.status is JobStatus.FAILED and outcome.error is not None
    assert outcome.error.code == "MCP-5003"


def test_every_step_succeeding_succeeds_with_linux_vss_skipped() -> None:
    skipped = PushStepReport(
        step=PushStep.INSTALL_VSS_PROVIDER, status=PushStepStatus.SKIPPED, message="Linux"
    )
    outcome = push_outcome(_report(skipped), _request(), None)
    assert outcome.status is JobStatus.SUCCEEDED and outcome.error is None
    assert len(outcome.steps) == len(PushStep)
