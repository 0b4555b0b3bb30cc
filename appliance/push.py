"""The appliance's side of the push installation of the Mobility service on a Linux server, over SSH/SFTP.

For one InstallMobilityService command: download the installer through its read SAS and check its
SHA-256; sign in to the server with the credential the command names (looked up in the appliance's own
secret store: the control plane never holds it); copy the installer over SFTP; check the prerequisites
on the server (root, at least 100 MB free at the install location, enough memory, GRUB naming root and
resume devices by UUID); run `./install -d <dir> -r MS -v VmWare -q`; skip the VSS provider (Windows
only); register the agent with UnifiedAgentConfigurator.sh and the project's passphrase. Each step is
reported with the catalog code of its failure. A failure undoes the run: the copied installer is always
removed, and a fresh installation that failed is uninstalled, so nothing is left half-installed (an
update that fails leaves the agent that was there).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import asyncssh
import httpx

from shared.domain.command import (
    PushInstallReport,
    PushInstallRequest,
    PushStep,
    PushStepReport,
    PushStepStatus,
)

MIN_FREE_KB = 100 * 1024
MIN_MEMORY_KB = 64 * 1024
INSTALLER_LOG = "/var/log/ua_install.log"
AGENT_KEY_SECRET = "mobility-agent-key"
GRUB_FILES = ("/boot/grub/menu.lst", "/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/etc/default/grub")
# root= or resume= naming a kernel device (/dev/sda2, /dev/vdb1, /dev/nvme0n1p2); LVM's /dev/mapper and
# /dev/disk/by-* names are stable and allowed.
GRUB_DEVICE_NAME = r"(root|resume)=/dev/(sd|hd|vd|xvd|nvme)[a-z0-9]*"
# The installer's exit codes (agent/install) and the catalog codes they mean.
INSTALL_EXIT_CODES = {10: "95108", 11: "95524", 12: "PushNotEnoughMemory"}
UNREACHABLE = "95117"
NOT_ROOT = "95108"


class SecretStore(Protocol):
    def get(self, name: str) -> str | None: ...


@dataclass(frozen=True)
class DirectorySecrets:
    """The local stack's secret store: one file per secret name (the devhost's stand-in for Key Vault)."""

    directory: Path

    def get(self, name: str) -> str | None:
        path = self.directory / name
        return path.read_text().strip() if path.is_file() else None


@dataclass(frozen=True)
class ServerCredential:
    username: str
    password: str | None = None
    private_key: str | None = None

    @classmethod
    def parse(cls, secret: str) -> ServerCredential | None:
        try:
            data = json.loads(secret)
            credential = cls(
                username=str(data["username"]),
                password=data.get("password"),
                private_key=data.get("privateKey"),
            )
        except (ValueError, KeyError, TypeError):
            return None
        return credential if credential.password or credential.private_key else None


class StepFailed(Exception):
    def __init__(
        self, code: str | None, message: str, *, exit_code: int | None = None, log_path: str | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.exit_code, self.log_path = code, message, exit_code, log_path


def download_installer(url: str, sha256: str, into: Path) -> Path:
    """The installer through its read SAS, checked against the catalog's SHA-256."""
    digest = hashlib.sha256()
    path = into / "installer.tar.gz"
    with httpx.stream("GET", url, timeout=60) as response, path.open("wb") as f:
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 20):
            digest.update(chunk)
            f.write(chunk)
    if digest.hexdigest() != sha256:
        raise StepFailed(None, f"the installer's SHA-256 {digest.hexdigest()} is not the catalog's {sha256}")
    return path


@dataclass
class PushInstaller:
    """Carries out InstallMobilityService commands for one appliance."""

    secrets: SecretStore
    connect_timeout: float = 15.0
    download: Callable[[str, str, Path], Path] = download_installer
    known_hosts: str | None = field(default=None)  # None: the server's host key is not checked

    def run(self, machine_id: str, job_ref: str, request: PushInstallRequest) -> PushInstallReport:
        return asyncio.run(self._run(machine_id, job_ref, request))

    async def _run(self, machine_id: str, job_ref: str, request: PushInstallRequest) -> PushInstallReport:
        run = _Run(self, machine_id, job_ref, request)
        await run.go()
        return PushInstallReport(steps=run.reports, agent_version=run.agent_version)


class _Run:
    def __init__(
        self, owner: PushInstaller, machine_id: str, job_ref: str, request: PushInstallRequest
    ) -> None:
        self.owner, self.machine_id, self.request = owner, machine_id, request
        self.reports: list[PushStepReport] = []
        self.agent_version: str | None = None
        self.staging = f"/tmp/asr-push-{job_ref}"
        self.installed_before = False
        self.install_started = False

    def _ok(
        self, step: PushStep, message: str = "", status: PushStepStatus = PushStepStatus.SUCCEEDED
    ) -> None:
        self.reports.append(PushStepReport(step=step, status=status, message=message))

    def _failed(self, step: PushStep, failure: StepFailed) -> None:
        self.reports.append(
            PushStepReport(
                step=step,
                status=PushStepStatus.FAILED,
                code=failure.code,
                message=failure.message,
                exit_code=failure.exit_code,
                log_path=failure.log_path,
            )
        )
        done = {r.step for r in self.reports}
        self.reports += [
            PushStepReport(step=s, status=PushStepStatus.NOT_RUN) for s in PushStep if s not in done
        ]

    async def go(self) -> None:
        step = PushStep.COPY_AGENT
        if self.request.windows:
            self._failed(
                step,
                StepFailed(
                    "PushWindowsNotSupported",
                    "this appliance pushes to Linux servers over SSH only; install the agent on Windows by hand "
                    "(GET /api/machines/<id>/mobility/install-command)",
                ),
            )
            return
        secret = self.owner.secrets.get(self.request.credential_name)
        credential = ServerCredential.parse(secret) if secret else None
        if credential is None:
            self._failed(
                step,
                StepFailed(
                    "PushCredentialNotFound",
                    f"the appliance's secret store has no usable credential {self.request.credential_name!r}",
                ),
            )
            return
        with tempfile.TemporaryDirectory() as local:
            try:
                installer = self.owner.download(
                    self.request.installer_url, self.request.installer_sha256, Path(local)
                )
            except (httpx.HTTPError, OSError) as exc:
                self._failed(step, StepFailed(None, f"the installer could not be downloaded: {exc}"))
                return
            except StepFailed as failure:
                self._failed(step, failure)
                return
            try:
                connection = await self._connect(credential)
            except StepFailed as failure:
                self._failed(step, failure)
                return
            async with connection:
                try:
                    await self._steps(connection, installer)
                finally:
                    await connection.run(f"rm -rf {shlex.quote(self.staging)}", check=False)

    async def _connect(self, credential: ServerCredential) -> asyncssh.SSHClientConnection:
        keys = [asyncssh.import_private_key(credential.private_key)] if credential.private_key else []
        try:
            return await asyncssh.connect(
                self.request.server_address,
                port=self.request.server_port,
                username=credential.username,
                password=credential.password,
                client_keys=keys or None,
                known_hosts=self.owner.known_hosts,
                connect_timeout=self.owner.connect_timeout,
                preferred_auth="publickey,password" if keys else "password,keyboard-interactive",
            )
        except asyncssh.PermissionDenied as exc:
            raise StepFailed(
                NOT_ROOT, f"{credential.username}@{self.request.server_address} was refused: {exc.reason}"
            ) from exc
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise StepFailed(
                UNREACHABLE,
                f"no SSH connection to {self.request.server_address}:{self.request.server_port}: {exc or type(exc).__name__}",
            ) from exc

    async def _steps(self, ssh: asyncssh.SSHClientConnection, installer: Path) -> None:
        step = PushStep.COPY_AGENT
        try:
            await self._copy(ssh, installer)
            self._ok(step, f"{self.request.installer_name} copied to {self.staging}")
            step = PushStep.CHECK_PREREQUISITES
            self._ok(step, await self._check(ssh))
            step = PushStep.INSTALL_AGENT
            self._ok(step, await self._install(ssh))
            step = PushStep.INSTALL_VSS_PROVIDER
            self._ok(step, "a Linux server has no VSS provider", PushStepStatus.SKIPPED)
            step = PushStep.REGISTER
            self._ok(step, await self._register(ssh))
        except StepFailed as failure:
            await self._undo(ssh)
            self._failed(step, failure)

    async def _copy(self, ssh: asyncssh.SSHClientConnection, installer: Path) -> None:
        made = await ssh.run(f"mkdir -p -m 700 {shlex.quote(self.staging)}", check=False)
        if made.exit_status != 0:
            raise StepFailed(None, f"cannot create {self.staging}: {_text(made.stderr)}")
        try:
            async with ssh.start_sftp_client() as sftp:
                await sftp.put(str(installer), f"{self.staging}/{self.request.installer_name}")
        except asyncssh.SFTPError as exc:
            if "No space" in str(exc.reason) or exc.code == asyncssh.FX_FAILURE:
                raise StepFailed(
                    "95524", f"the installer could not be written to {self.staging}: {exc.reason}"
                ) from exc
            raise StepFailed(None, f"SFTP copy failed: {exc.reason}") from exc
        except asyncssh.ChannelOpenError as exc:
            raise StepFailed(NOT_ROOT, f"the server's SFTP subsystem is not available: {exc.reason}") from exc

    async def _check(self, ssh: asyncssh.SSHClientConnection) -> str:
        uid = await ssh.run("id -u", check=False)
        if _text(uid.stdout).strip() != "0":
            user = _text((await ssh.run("id -un", check=False)).stdout).strip()
            raise StepFailed(NOT_ROOT, f"the account {user!r} is not root (uid {_text(uid.stdout).strip()})")
        location = shlex.quote(self.request.install_location)
        free = await ssh.run(
            f'd={location}; while [ ! -d "$d" ]; do d=$(dirname "$d"); done; df -Pk "$d" | awk \'NR==2 {{print $4}}\'',
            check=False,
        )
        free_kb = _int(_text(free.stdout))
        if free_kb is None or free_kb < MIN_FREE_KB:
            raise StepFailed(
                "95524",
                f"{free_kb or 0} KB free at {self.request.install_location}; at least 102400 KB needed",
            )
        memory = await ssh.run("awk '/^MemAvailable:/ {print $2}' /proc/meminfo", check=False)
        memory_kb = _int(_text(memory.stdout))
        if memory_kb is not None and memory_kb < MIN_MEMORY_KB:
            raise StepFailed(
                "PushNotEnoughMemory", f"{memory_kb} KB of memory available; {MIN_MEMORY_KB} KB needed"
            )
        files = " ".join(GRUB_FILES)
        grub = await ssh.run(
            f"for f in {files}; do [ -f $f ] && grep -HoE '{GRUB_DEVICE_NAME}' $f; done; true", check=False
        )
        named = sorted(set(_text(grub.stdout).split()))
        if named:
            raise StepFailed("95320", "GRUB names devices instead of UUIDs: " + ", ".join(named))
        return f"root; {free_kb} KB free at {self.request.install_location}; memory {memory_kb} KB; GRUB uses UUIDs"

    async def _install(self, ssh: asyncssh.SSHClientConnection) -> str:
        location = shlex.quote(self.request.install_location)
        before = await ssh.run(f"test -f {location}/Vx/etc/version", check=False)
        self.installed_before = before.exit_status == 0
        staging = shlex.quote(self.staging)
        unpack = await ssh.run(
            f"cd {staging} && tar -xzf {shlex.quote(self.request.installer_name)}", check=False
        )
        if unpack.exit_status != 0:
            raise StepFailed(
                None,
                f"the installer did not unpack: {_text(unpack.stderr).strip()}",
                exit_code=unpack.exit_status,
            )
        self.install_started = True
        update = " -u" if self.request.update or self.installed_before else ""
        done = await ssh.run(
            f"cd {staging} && ./install -d {location} -r MS -v VmWare -q{update}", check=False
        )
        status = done.exit_status if done.exit_status is not None else -1
        if status != 0:
            raise StepFailed(
                INSTALL_EXIT_CODES.get(status),
                _text(done.stderr).strip() or f"install exited with {status}",
                exit_code=status,
                log_path=INSTALLER_LOG,
            )
        version = await ssh.run(f"cat {location}/Vx/etc/version", check=False)
        self.agent_version = _text(version.stdout).strip() or None
        return f"agent {self.agent_version} installed at {self.request.install_location}"

    async def _register(self, ssh: asyncssh.SSHClientConnection) -> str:
        passphrase = self.owner.secrets.get(self.request.passphrase_name)
        if not passphrase:
            raise StepFailed(
                "PushAgentRegistrationFailed",
                f"the appliance's secret store has no registration passphrase {self.request.passphrase_name!r}",
            )
        files = {"passphrase.txt": passphrase}
        key = self.owner.secrets.get(AGENT_KEY_SECRET)
        if key:
            files["agent-key.txt"] = key
        async with ssh.start_sftp_client() as sftp:
            for name, content in files.items():
                async with sftp.open(
                    f"{self.staging}/{name}", "w", asyncssh.SFTPAttrs(permissions=0o600)
                ) as f:
                    await f.write(content)
        configurator = f"{self.request.install_location}/Vx/bin/UnifiedAgentConfigurator.sh"
        args = [
            configurator,
            "-i",
            self.request.control_plane_url,
            "-P",
            f"{self.staging}/passphrase.txt",
            "-m",
            self.machine_id,
        ]
        if key:
            args += ["-k", f"{self.staging}/agent-key.txt"]
        for disk_id, path in sorted(self.request.disk_paths.items()):
            args += ["-d", f"{disk_id}={path}"]
        done = await ssh.run(shlex.join(args), check=False)
        if done.exit_status != 0:
            raise StepFailed(
                "PushAgentRegistrationFailed",
                _text(done.stderr).strip() or f"the configurator exited with {done.exit_status}",
                exit_code=done.exit_status,
            )
        return _text(done.stdout).strip() or "registered"

    async def _undo(self, ssh: asyncssh.SSHClientConnection) -> None:
        if self.install_started and not self.installed_before:
            location = shlex.quote(self.request.install_location)
            await ssh.run(
                f"if [ -x {location}/Vx/bin/uninstall.sh ]; then {location}/Vx/bin/uninstall.sh; fi; "
                f"rm -rf {location}/Vx; rmdir {location} 2>/dev/null; true",
                check=False,
            )


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None
