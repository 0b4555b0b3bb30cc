"""The push installation's rules: the VSS provider's version rule, each step's catalog error, the job's end.

The VSS rule is tested here against every exit code Site Recovery documents for a failed VSS provider
installation (the catalog's MCP-55xx entries), not on a Windows server: the push path built is Linux over
SSH, where the step is Skipped (docs/mobility.md, "Windows push installation")."""

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
from shared.health.catalog import CATALOG
from shared.mobility.push import (
    DOCUMENTED_VSS_EXIT_CODES,
    OTHER_VSS_EXIT_CODE,
    catalog_code,
    push_outcome,
)


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


def _catalog_vss_exit_codes() -> dict[int, str]:
    """Exit code -> catalog code, read from the entries' `VssExit<n>` aliases."""
    found: dict[int, str] = {}
    for entry in CATALOG.entries:
        for alias in entry.aliases:
            if alias.startswith("VssExit"):
                found[int(alias.removeprefix("VssExit"))] = entry.code
    return found


# Site Recovery's documented VSS provider installation failures ("Troubleshoot Mobility Service push
# installation": VSS installation failures), by the installer's exit code.
VSS_EXIT_CODES = {511: "MCP-5511", 512: "MCP-5512", 517: "MCP-5517", 802: "MCP-5802", 806: "MCP-5806"}


def test_the_vss_exit_codes_routed_are_exactly_the_catalogs() -> None:
    assert _catalog_vss_exit_codes() == VSS_EXIT_CODES
    assert set(DOCUMENTED_VSS_EXIT_CODES) == set(VSS_EXIT_CODES)
    for code in (*VSS_EXIT_CODES.values(), OTHER_VSS_EXIT_CODE):
        entry = CATALOG[code]
        # The entry says what the rule does, so the job's error explains its own status.
        assert any("From agent 9.23" in cause and "Up to 9.22" in cause for cause in entry.causes), code
        assert any("InMageVSSProvider_Install.cmd" in step for step in entry.recommendations), code


def _vss_failed(exit_code: int, **extra: object) -> PushStepReport:
    return PushStepReport.model_validate(
        {
            "step": PushStep.INSTALL_VSS_PROVIDER,
            "status": PushStepStatus.FAILED,
            "exitCode": exit_code,
            "message": f"InMageVSSProvider_Install.cmd exited with {exit_code}",
            "logPath": "C:\\ProgramData\\ASRSetupLogs\\ASRUnifiedAgentInstaller.log",
            **extra,
        }
    )


@pytest.mark.parametrize("version", ["9.23.0.0", "9.23", "9.60.7200.1"])
@pytest.mark.parametrize(("exit_code", "code"), [*VSS_EXIT_CODES.items(), (1603, OTHER_VSS_EXIT_CODE)])
def test_from_9_23_each_vss_exit_code_ends_the_job_in_warning_with_the_agent_registered(
    exit_code: int, code: str, version: str
) -> None:
    outcome = push_outcome(_report(_vss_failed(exit_code)), _request(version), None)
    assert outcome.status is JobStatus.WARNING and outcome.failed_step is None
    assert outcome.error is not None and outcome.error.code == code
    assert f"exit code {exit_code}" in outcome.error.message and "10.0.0.5" in outcome.error.message
    by_step = {name: status for name, status, _ in outcome.steps}
    assert by_step == {
        PushStep.COPY_AGENT.value: JobStatus.SUCCEEDED,
        PushStep.CHECK_PREREQUISITES.value: JobStatus.SUCCEEDED,
        PushStep.INSTALL_AGENT.value: JobStatus.SUCCEEDED,
        PushStep.INSTALL_VSS_PROVIDER.value: JobStatus.WARNING,
        PushStep.REGISTER.value: JobStatus.SUCCEEDED,
    }


@pytest.mark.parametrize("version", ["9.22.0.0", "9.22", "9.9.0.0"])
@pytest.mark.parametrize(("exit_code", "code"), [*VSS_EXIT_CODES.items(), (1603, OTHER_VSS_EXIT_CODE)])
def test_up_to_9_22_each_vss_exit_code_fails_the_installation_at_that_step(
    exit_code: int, code: str, version: str
) -> None:
    # What an appliance reports when it undid the installation: the steps after the VSS provider not run.
    not_run = PushStepReport(step=PushStep.REGISTER, status=PushStepStatus.NOT_RUN)
    outcome = push_outcome(_report(_vss_failed(exit_code), not_run), _request(version), None)
    assert outcome.status is JobStatus.FAILED
    assert outcome.failed_step == PushStep.INSTALL_VSS_PROVIDER.value
    assert outcome.error is not None and outcome.error.code == code
    assert f"exit code {exit_code}" in outcome.error.message
    assert [name for name, _, _ in outcome.steps] == [
        PushStep.COPY_AGENT.value,
        PushStep.CHECK_PREREQUISITES.value,
        PushStep.INSTALL_AGENT.value,
        PushStep.INSTALL_VSS_PROVIDER.value,
    ]
    assert outcome.steps[-1][1] is JobStatus.FAILED


@pytest.mark.parametrize("reported", ["VssExit806", "MCP-5806", "VssProviderScriptNotPermitted"])
def test_a_vss_failure_reported_by_its_catalog_name_is_that_entry(reported: str) -> None:
    assert catalog_code(_vss_failed(806, code=reported)) == "MCP-5806"
    # An installer exit code that is not a VSS one is not taken for one because of its number.
    other_step = PushStepReport(step=PushStep.INSTALL_AGENT, status=PushStepStatus.FAILED, exit_code=806)
    assert catalog_code(other_step) == "MCP-5999"


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
