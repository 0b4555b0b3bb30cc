"""Manual install commands (exact lines, settings checked like the vendor's installer does) and the
registration passphrase (hashed, shown once, rotation invalidates the previous one) with agent
registration."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from shared.appliances.credentials import CredentialHasher, parse_credential
from shared.domain.errors import NotFound, Unauthorized, ValidationFailed
from shared.domain.inventory import OsType
from shared.domain.machine import Machine
from shared.mobility import registration
from shared.mobility.install_command import InstallCommand, InstallCommandQuery, render_install_command
from shared.mobility.installers import Installer, parse_installer_name
from shared.mobility.os_support import describe_resolution
from shared.mobility.registration import (
    PASSPHRASE_ID,
    FailureRate,
    MobilityAgent,
    RegisterAgentRequest,
    RegistrationPassphrase,
)
from shared.platform.documents import MOBILITY
from shared.platform.repository import Collection, Repositories
from tests.support.memory_store import InMemoryDocumentStore
from tests.unit.test_api_http import machine_json

NOW = datetime(2026, 12, 2, 16, 0, tzinfo=UTC)


def query(**overrides: str) -> InstallCommandQuery:
    values = {"csEndpoint": "10.0.0.4", "passphraseFilePath": "/var/passphrase.txt", **overrides}
    return InstallCommandQuery.model_validate(values)


def lines(command: InstallCommand) -> list[str]:
    return [line for step in command.steps for line in step.commands]


def test_linux_commands_are_the_vendors_with_the_defaults() -> None:
    resolution = describe_resolution("Ubuntu 20.04", [])
    command = render_install_command("m-1", OsType.LINUX, resolution, query())
    assert command.shell == "sh"
    assert lines(command) == [
        "cd /tmp",
        "tar -xvf Microsoft-ASR_UA_*_UBUNTU-20.04-64_GA_*_release.tar.gz",
        "sudo ./install -d /usr/local/ASR -r MS -v VmWare -q",
        "sudo /usr/local/ASR/Vx/bin/UnifiedAgentConfigurator.sh -i 10.0.0.4 -P /var/passphrase.txt",
    ]


def test_linux_commands_name_the_catalog_file_and_honour_settings() -> None:
    name = "Microsoft-ASR_UA_9.56.0.0_RHEL7-64_GA_20230525_release.tar.gz"
    uploaded = Installer(
        **parse_installer_name(name).model_dump(), size_bytes=1, sha256="0" * 64, uploaded_at=NOW
    )
    resolution = describe_resolution("Red Hat Enterprise Linux Server 7.9", [uploaded])
    command = render_install_command(
        "m-1",
        OsType.LINUX,
        resolution,
        query(installLocation="/opt/asr agent", role="mt", platform="azure", passphraseFilePath="/root/pass"),
    )
    assert lines(command) == [
        "cd /tmp",
        f"tar -xvf {name}",
        "sudo ./install -d '/opt/asr agent' -r MT -v Azure -q",
        "sudo '/opt/asr agent/Vx/bin/UnifiedAgentConfigurator.sh' -i 10.0.0.4 -P /root/pass",
    ]


def test_windows_commands_are_the_vendors_with_the_defaults() -> None:
    resolution = describe_resolution("Windows Server 2016 Datacenter", [])
    command = render_install_command(
        "m-1", OsType.WINDOWS, resolution, query(passphraseFilePath=r"C:\Temp\passphrase.txt")
    )
    assert command.shell == "cmd"
    assert lines(command) == [
        r"cd C:\Temp",
        "ren Microsoft-ASR_UA*Windows*release.exe MobilityServiceInstaller.exe",
        r"MobilityServiceInstaller.exe /q /x:C:\Temp\Extracted",
        r"cd C:\Temp\Extracted",
        r'UnifiedAgent.exe /Role "MS" /InstallLocation "C:\Program Files (x86)\Microsoft Azure Site Recovery" '
        r'/Platform "VmWare" /Silent',
        r'cd /d "C:\Program Files (x86)\Microsoft Azure Site Recovery\agent"',
        r"UnifiedAgentConfigurator.exe  /CSEndPoint 10.0.0.4 /PassphraseFilePath C:\Temp\passphrase.txt",
    ]
    assert command.install_log == r"%ProgramData%\ASRSetupLogs\ASRUnifiedAgentInstaller.log"


def test_windows_accepts_a_unc_passphrase_path() -> None:
    resolution = describe_resolution("Windows Server 2012 R2", [])
    command = render_install_command(
        "m-1", OsType.WINDOWS, resolution, query(passphraseFilePath=r"\\files\asr\pass phrase.txt")
    )
    assert lines(command)[-1].endswith(r'/PassphraseFilePath "\\files\asr\pass phrase.txt"')


def problems(os_type: OsType, **overrides: str) -> dict[str, str]:
    os = "Windows Server 2016" if os_type is OsType.WINDOWS else "Ubuntu 20.04"
    with pytest.raises(ValidationFailed) as refused:
        render_install_command("m-1", os_type, describe_resolution(os, []), query(**overrides))
    return {d["field"]: d["problem"] for d in refused.value.details}


def test_role_agent_is_refused_with_the_948_hint() -> None:
    problem = problems(OsType.LINUX, role="Agent")["role"]
    assert "9.48" in problem and "MS" in problem
    assert "MS" in problems(OsType.LINUX, role="Server")["role"]


def test_settings_are_checked_like_the_installer_does_and_all_reported_at_once() -> None:
    found = problems(
        OsType.LINUX, platform="HyperV", csEndpoint="cs.contoso.local", passphraseFilePath="passphrase.txt"
    )
    assert set(found) == {"platform", "csEndpoint", "passphraseFilePath"}
    assert "IP address" in found["csEndpoint"]
    windows = problems(OsType.WINDOWS, passphraseFilePath="/var/pass", installLocation='C:\\a"b')
    assert set(windows) == {"passphraseFilePath", "installLocation"}
    assert "installLocation" in problems(OsType.LINUX, installLocation="relative/dir")


def test_an_ipv6_endpoint_is_an_ip_address() -> None:
    command = render_install_command(
        "m-1", OsType.LINUX, describe_resolution("Debian 9", []), query(csEndpoint="fd00::4")
    )
    assert "-i fd00::4 " in lines(command)[-1]


# --- passphrase and registration ---------------------------------------------------------------------


@pytest.fixture
def repos() -> Repositories:
    return Repositories(InMemoryDocumentStore())


@pytest.fixture
def hasher() -> CredentialHasher:
    return CredentialHasher(b"mobility-test-pepper-012345", n=2**12)


def stored_passphrase(repos: Repositories) -> RegistrationPassphrase:
    found = Collection(repos.store, MOBILITY, RegistrationPassphrase, "passphrase").get(PASSPHRASE_ID)
    assert found is not None
    return found.item


def test_the_passphrase_is_strong_shown_once_and_stored_only_hashed(
    repos: Repositories, hasher: CredentialHasher
) -> None:
    assert not registration.passphrase_status(repos).exists
    issued = registration.rotate_passphrase(repos, hasher, now=NOW)
    assert len(issued.passphrase) == 32 and issued.passphrase.isalnum()
    assert (issued.generation, issued.replaced_previous) == (1, False)
    stored = stored_passphrase(repos)
    assert issued.passphrase not in str(stored.model_dump()) and stored.passphrase_hash.startswith("scrypt$")
    assert hasher.verify(issued.passphrase, stored.passphrase_hash)
    status = registration.passphrase_status(repos)
    assert (status.exists, status.set_at, status.generation) == (True, NOW, 1)
    assert "passphrase" not in status.model_dump(by_alias=True)


def test_rotation_replaces_the_passphrase_and_the_previous_one_stops_working(
    repos: Repositories, hasher: CredentialHasher
) -> None:
    first = registration.rotate_passphrase(repos, hasher, now=NOW)
    second = registration.rotate_passphrase(repos, hasher, now=NOW + timedelta(days=1))
    assert second.passphrase != first.passphrase and (second.generation, second.replaced_previous) == (
        2,
        True,
    )
    identity = {"hostname": "web01", "biosUuid": "4c4c4544-0042-3510-8052-b4c04f4d4e31"}
    with pytest.raises(Unauthorized):
        registration.register_agent(
            repos,
            hasher,
            RegisterAgentRequest.model_validate({"passphrase": first.passphrase, **identity}),
            now=NOW,
        )
    registered = registration.register_agent(
        repos,
        hasher,
        RegisterAgentRequest.model_validate({"passphrase": second.passphrase, **identity}),
        now=NOW,
    )
    assert registered.hostname == "web01" and registered.bios_uuid == UUID(identity["biosUuid"])


def test_register_returns_a_hashed_credential_and_replaces_it_on_reregistration(
    repos: Repositories, hasher: CredentialHasher
) -> None:
    passphrase = registration.rotate_passphrase(repos, hasher, now=NOW).passphrase
    repos.machines.add(Machine.model_validate({**_machine(), "id": "m-1"}))
    request = RegisterAgentRequest.model_validate({"passphrase": passphrase, "machineId": "m-1"})
    first = registration.register_agent(repos, hasher, request, now=NOW)
    agents = Collection(repos.store, MOBILITY, MobilityAgent, "agent")
    stored = agents.require(first.agent_id).item
    secret = parse_credential(first.credential).secret
    assert first.credential.startswith(f"{first.agent_id}.") and secret not in str(stored.model_dump())
    assert hasher.verify(secret, stored.credential_hash) and stored.machine_id == "m-1"
    again = registration.register_agent(repos, hasher, request, now=NOW)
    assert again.agent_id == first.agent_id  # one agent per machine
    stored = agents.require(first.agent_id).item
    assert not hasher.verify(secret, stored.credential_hash)
    assert hasher.verify(parse_credential(again.credential).secret, stored.credential_hash)


def _machine() -> dict[str, object]:
    return {
        "applianceId": "appl-1",
        "inventory": {k: v for k, v in machine_json("m-1").items() if k != "id"},
        "discoveredAt": NOW.isoformat(),
        "updatedAt": NOW.isoformat(),
    }


def test_a_wrong_passphrase_changes_nothing_and_the_failure_rate_is_logged(
    repos: Repositories, hasher: CredentialHasher, caplog: pytest.LogCaptureFixture
) -> None:
    registration.rotate_passphrase(repos, hasher, now=NOW)
    store = repos.store
    assert isinstance(store, InMemoryDocumentStore)
    before = dict(store._docs)
    failures = FailureRate(timedelta(minutes=5))
    request = RegisterAgentRequest.model_validate(
        {"passphrase": "wrong", "hostname": "h", "biosUuid": "4c4c4544-0042-3510-8052-b4c04f4d4e31"}
    )
    with caplog.at_level(logging.WARNING, logger="shared.mobility.registration"):
        for minute in range(3):
            with pytest.raises(Unauthorized):
                registration.register_agent(
                    repos, hasher, request, now=NOW + timedelta(minutes=minute), failures=failures
                )
        with pytest.raises(Unauthorized):
            registration.register_agent(
                repos, hasher, request, now=NOW + timedelta(minutes=6), failures=failures
            )
    logged = [r.getMessage() for r in caplog.records if r.name == "shared.mobility.registration"]
    counts = [int(message.split("; ")[1].split(" ")[0]) for message in logged]
    assert counts == [1, 2, 3, 2]  # the window drops what is five minutes old
    assert dict(store._docs) == before
    assert (
        Collection(repos.store, MOBILITY, MobilityAgent, "agent").get(registration.agent_id_for(request))
        is None
    )


def test_without_a_passphrase_nobody_registers(repos: Repositories, hasher: CredentialHasher) -> None:
    request = RegisterAgentRequest.model_validate({"passphrase": "anything", "machineId": "m-1"})
    with pytest.raises(Unauthorized):
        registration.register_agent(repos, hasher, request, now=NOW, failures=FailureRate())


def test_an_unknown_machine_id_is_404_after_a_good_passphrase(
    repos: Repositories, hasher: CredentialHasher
) -> None:
    passphrase = registration.rotate_passphrase(repos, hasher, now=NOW).passphrase
    request = RegisterAgentRequest.model_validate({"passphrase": passphrase, "machineId": "m-unknown"})
    with pytest.raises(NotFound):
        registration.register_agent(repos, hasher, request, now=NOW)


@pytest.mark.parametrize(
    "identity",
    [
        {},
        {"hostname": "web01"},
        {"biosUuid": "4c4c4544-0042-3510-8052-b4c04f4d4e31"},
        {"machineId": "m-1", "hostname": "web01", "biosUuid": "4c4c4544-0042-3510-8052-b4c04f4d4e31"},
        {"hostname": "web01", "biosUuid": "not-a-uuid"},
    ],
)
def test_the_identity_is_a_machine_id_or_hostname_and_bios_uuid(identity: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        RegisterAgentRequest.model_validate({"passphrase": "p", **identity})


@pytest.mark.parametrize("hostname", ["web01", "WEB_01", "db01.contoso.local"])
def test_hostnames_are_dns_or_netbios_names(hostname: str) -> None:
    request = {"passphrase": "p", "hostname": hostname, "biosUuid": "4c4c4544-0042-3510-8052-b4c04f4d4e31"}
    assert RegisterAgentRequest.model_validate(request).hostname == hostname
    with pytest.raises(ValueError):
        RegisterAgentRequest.model_validate({**request, "hostname": hostname + " ; rm -rf /"})
