"""The manual installation of the Mobility service: the exact command lines for one machine's OS,
with the settings checked the way the vendor's installer and configurator check them."""

from __future__ import annotations

import ipaddress
import re
import shlex
from enum import StrEnum

from pydantic import Field

from shared.domain.errors import FieldProblem, ValidationFailed
from shared.domain.inventory import OsType
from shared.domain.wire import RequestModel, WireModel
from shared.mobility.installers import Installer
from shared.mobility.os_support import OsResolution

WINDOWS_DEFAULT_LOCATION = r"C:\Program Files (x86)\Microsoft Azure Site Recovery"
LINUX_DEFAULT_LOCATION = "/usr/local/ASR"
WINDOWS_WORK_DIR = r"C:\Temp"
LINUX_WORK_DIR = "/tmp"


class Role(StrEnum):
    MOBILITY_SERVICE = "MS"
    MASTER_TARGET = "MT"


class Platform(StrEnum):
    VMWARE = "VmWare"  # VMware VMs and physical servers (and Azure VMs treated as physical)
    AZURE = "Azure"


class InstallCommandQuery(RequestModel):
    """The query of GET /api/machines/{machineId}/mobility/install-command."""

    cs_endpoint: str = Field(description="the IP address the agent registers with (/CSEndPoint, -i)")
    passphrase_file_path: str = Field(
        description="where the passphrase file is on the machine (/PassphraseFilePath, -P): an absolute "
        "local path, or on Windows a UNC path"
    )
    install_location: str | None = Field(
        default=None,
        description=f"optional (/InstallLocation, -d); defaults to '{WINDOWS_DEFAULT_LOCATION}' on Windows "
        f"and '{LINUX_DEFAULT_LOCATION}' on Linux",
    )
    role: str = Field(default="MS", description="MS (Mobility service) or MT (master target)")
    platform: str = Field(default="VmWare", description="VmWare (VMware VMs and physical servers) or Azure")


class InstallStep(WireModel):
    title: str
    commands: list[str]


class InstallCommand(WireModel):
    machine_id: str
    os_type: OsType
    shell: str = Field(description="'cmd' (an elevated Windows command prompt) or 'sh' (a Linux terminal)")
    resolution: OsResolution
    steps: list[InstallStep]
    install_log: str | None = Field(default=None, description="where the installer writes its log (Windows)")
    configurator_log: str | None = Field(default=None, description="where the configurator writes its log")


# cmd.exe cannot quote a double quote, and these characters are invalid in a Windows path anyway.
_WINDOWS_FORBIDDEN = re.compile(r'["<>|?*\x00-\x1f]')
_WINDOWS_LOCAL = re.compile(r"^[A-Za-z]:\\")
_WINDOWS_UNC = re.compile(r"^\\\\[^\\]+\\[^\\]+")


def _role(value: str, problems: list[FieldProblem]) -> Role:
    for role in Role:
        if value.strip().strip('"').upper() == role.value:
            return role
    if value.strip().strip('"').lower() == "agent":
        hint = (
            "'Agent' is refused by the installer from version 9.48 (older guides use it): use MS, the "
            "Mobility service, on a machine to protect (MT is the master target)"
        )
    else:
        hint = f"must be MS (Mobility service) or MT (master target); got {value!r}"
    problems.append(FieldProblem("role", hint))
    return Role.MOBILITY_SERVICE


def _platform(value: str, problems: list[FieldProblem]) -> Platform:
    for platform in Platform:
        if value.strip().strip('"').lower() == platform.value.lower():
            return platform
    problems.append(
        FieldProblem(
            "platform",
            f"must be VmWare (VMware VMs and physical servers, also Azure VMs treated as physical) or "
            f"Azure (Azure VMs); got {value!r}",
        )
    )
    return Platform.VMWARE


def _endpoint(value: str, problems: list[FieldProblem]) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        problems.append(
            FieldProblem("csEndpoint", f"must be an IP address (as the configurator requires); got {value!r}")
        )
        return value


def _path(value: str, field: str, os_type: OsType, problems: list[FieldProblem], *, unc: bool) -> str:
    path = value.strip()
    if os_type is OsType.WINDOWS:
        local = _WINDOWS_LOCAL.match(path) is not None
        if _WINDOWS_FORBIDDEN.search(path) or not (local or (unc and _WINDOWS_UNC.match(path))):
            where = "a local path (C:\\...) or a UNC path (\\\\server\\share\\...)" if unc else "a local path"
            problems.append(FieldProblem(field, f'must be {where} without " < > | ? *; got {value!r}'))
    elif not path.startswith("/") or "\x00" in path or "\n" in path or path.endswith("/"):
        problems.append(
            FieldProblem(field, f"must be an absolute file path such as /var/passphrase.txt; got {value!r}")
        )
    return path


def _cmd_quoted(path: str) -> str:
    return f'"{path}"' if " " in path or "(" in path else path


def render_install_command(
    machine_id: str, os_type: OsType, resolution: OsResolution, query: InstallCommandQuery
) -> InstallCommand:
    """The command lines, or one 400 listing every setting that is wrong."""
    problems: list[FieldProblem] = []
    role = _role(query.role, problems)
    platform = _platform(query.platform, problems)
    endpoint = _endpoint(query.cs_endpoint, problems)
    passphrase = _path(query.passphrase_file_path, "passphraseFilePath", os_type, problems, unc=True)
    default = WINDOWS_DEFAULT_LOCATION if os_type is OsType.WINDOWS else LINUX_DEFAULT_LOCATION
    location = default
    if query.install_location is not None and query.install_location.strip():
        location = _path(query.install_location, "installLocation", os_type, problems, unc=False)
    if problems:
        raise ValidationFailed(problems)
    installer = resolution.installer
    if os_type is OsType.WINDOWS:
        return _windows(machine_id, resolution, installer, role, platform, endpoint, passphrase, location)
    return _linux(machine_id, resolution, installer, role, platform, endpoint, passphrase, location)


def _windows(
    machine_id: str,
    resolution: OsResolution,
    installer: Installer | None,
    role: Role,
    platform: Platform,
    endpoint: str,
    passphrase: str,
    location: str,
) -> InstallCommand:
    source = installer.file_name if installer is not None else "Microsoft-ASR_UA*Windows*release.exe"
    extracted = WINDOWS_WORK_DIR + r"\Extracted"
    agent_dir = location.rstrip("\\") + r"\agent"
    return InstallCommand(
        machine_id=machine_id,
        os_type=OsType.WINDOWS,
        shell="cmd",
        resolution=resolution,
        steps=[
            InstallStep(
                title=f"copy the installer to {WINDOWS_WORK_DIR} on the machine, then extract it",
                commands=[
                    f"cd {WINDOWS_WORK_DIR}",
                    f"ren {source} MobilityServiceInstaller.exe",
                    f"MobilityServiceInstaller.exe /q /x:{extracted}",
                    f"cd {extracted}",
                ],
            ),
            InstallStep(
                title="install the agent",
                commands=[
                    f'UnifiedAgent.exe /Role "{role.value}" /InstallLocation "{location}" '
                    f'/Platform "{platform.value}" /Silent'
                ],
            ),
            InstallStep(
                title=f"register the agent ({passphrase} holds the project's registration passphrase)",
                # /d: the install location may be on another drive than the extracted installer.
                commands=[
                    f'cd /d "{agent_dir}"',
                    f"UnifiedAgentConfigurator.exe  /CSEndPoint {endpoint} /PassphraseFilePath "
                    f"{_cmd_quoted(passphrase)}",
                ],
            ),
        ],
        install_log=r"%ProgramData%\ASRSetupLogs\ASRUnifiedAgentInstaller.log",
        configurator_log=r"%ProgramData%\ASRSetupLogs\ASRUnifiedAgentConfigurator.log",
    )


def _linux(
    machine_id: str,
    resolution: OsResolution,
    installer: Installer | None,
    role: Role,
    platform: Platform,
    endpoint: str,
    passphrase: str,
    location: str,
) -> InstallCommand:
    # Without a catalog file the shell's glob picks the one copied (exactly one must be there).
    source = (
        shlex.quote(installer.file_name)
        if installer is not None
        else f"Microsoft-ASR_UA_*_{resolution.installer_os}_GA_*_release.tar.gz"
    )
    configurator = f"{location.rstrip('/')}/Vx/bin/UnifiedAgentConfigurator.sh"
    return InstallCommand(
        machine_id=machine_id,
        os_type=OsType.LINUX,
        shell="sh",
        resolution=resolution,
        steps=[
            InstallStep(
                title=f"copy the installer to {LINUX_WORK_DIR} on the machine, then extract it",
                commands=[f"cd {LINUX_WORK_DIR}", f"tar -xvf {source}"],
            ),
            InstallStep(
                title="install the agent",
                commands=[
                    f"sudo ./install -d {shlex.quote(location)} -r {role.value} -v {platform.value} -q"
                ],
            ),
            InstallStep(
                title=f"register the agent ({passphrase} holds the project's registration passphrase)",
                commands=[f"sudo {shlex.quote(configurator)} -i {endpoint} -P {shlex.quote(passphrase)}"],
            ),
        ],
    )
