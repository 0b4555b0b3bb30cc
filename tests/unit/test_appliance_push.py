"""The appliance's push installation before it reaches a server: credentials from its own secret store,
and the failures that stop it at the first step (the SSH path is tested end to end in tests/e2e_mobility)."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.push import DirectorySecrets, PushInstaller, ServerCredential
from shared.domain.command import PushInstallRequest, PushStep, PushStepStatus
from shared.mobility.push import catalog_code


def _request(*, windows: bool = False) -> PushInstallRequest:
    return PushInstallRequest(
        installer_name="Microsoft-ASR_UA_9.60.0.0_DEBIAN9-64_GA_20261202_release.tar.gz",
        installer_url="http://127.0.0.1:9/never",
        installer_sha256="0" * 64,
        agent_version="9.60.0.0",
        windows=windows,
        server_address="127.0.0.1",
        credential_name="srv",
        passphrase_name="mobility-passphrase",
        install_location="/usr/local/ASR",
        control_plane_url="http://127.0.0.1/api",
    )


def test_a_credential_is_a_user_with_a_password_or_a_key() -> None:
    assert ServerCredential.parse(json.dumps({"username": "root", "password": "p"})) == ServerCredential(
        "root", "p", None
    )
    assert ServerCredential.parse(json.dumps({"username": "root", "privateKey": "k"})) is not None
    assert ServerCredential.parse(json.dumps({"username": "root"})) is None
    assert ServerCredential.parse("not json") is None


def test_secrets_are_files_named_after_them(tmp_path: Path) -> None:
    (tmp_path / "srv").write_text("secret\n")
    secrets = DirectorySecrets(tmp_path)
    assert secrets.get("srv") == "secret"
    assert secrets.get("missing") is None


def test_a_missing_credential_stops_at_copy_agent_and_nothing_else_runs(tmp_path: Path) -> None:
    report = PushInstaller(DirectorySecrets(tmp_path)).run("vm-1", "job-1", _request())
    first, *rest = report.steps
    assert first.step is PushStep.COPY_AGENT and first.status is PushStepStatus.FAILED
    assert catalog_code(first) == "MCP-5001"
    assert [s.status for s in rest] == [PushStepStatus.NOT_RUN] * 4


def test_a_windows_server_is_refused_with_the_manual_route(tmp_path: Path) -> None:
    report = PushInstaller(DirectorySecrets(tmp_path)).run("vm-1", "job-1", _request(windows=True))
    assert catalog_code(report.steps[0]) == "MCP-5005"
    assert "install-command" in report.steps[0].message


def test_an_installer_that_cannot_be_downloaded_fails_copy_agent(tmp_path: Path) -> None:
    (tmp_path / "srv").write_text(json.dumps({"username": "root", "password": "p"}))
    report = PushInstaller(DirectorySecrets(tmp_path)).run("vm-1", "job-1", _request())
    assert report.steps[0].status is PushStepStatus.FAILED
    assert "could not be downloaded" in report.steps[0].message
