"""The whole local stack: Azurite (behind the blob front), cosmosdb-server and the Functions host (with the
local Durable extension).

`LocalStack.start()` starts each piece, waits until it answers, and writes `.devhost/stack.json`
(endpoints, process ids, where the keys are) so that `down`, `status`, the demo and the appliance
client can find it. Every start is fresh unless `keep_data` is asked for. `supervise()` watches the
children and restarts a Functions host that died (and nothing else), as `python -m devhost up` runs it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devhost.arm import LATENCY_SCALE_ENV, LOCAL_SUBSCRIPTION_ID, start_local_arm  # local ARM endpoint
from devhost.blob_front import start_blob_storage
from devhost.emulators import (
    AZURITE_ACCOUNT,
    REPO_ROOT,
    EmulatorEndpoints,
    EmulatorPorts,
    start_azurite,
    start_cosmos,
)
from devhost.oidc import (
    ADMINISTRATOR_CLIENT,
    CLIENTS_FILE,
    LOCAL_AUDIENCE,
    LocalTokens,
    authority_url,
    start_local_oidc,
)
from devhost.processes import (
    ManagedProcess,
    ProcessFailedToStart,
    free_port,
    open_private_log,
    port_is_open,
)

# --- local ARM endpoint (devhost/arm) ---
# The stack's default latency scale: Azure's durations / 10, so a demo hydration keeps Azure's shape
# (which waits dominate) without taking minutes. Tests of shared/arm run their own endpoint at 0.
DEFAULT_ARM_LATENCY_SCALE = "0.1"
# --- end local ARM endpoint ---


class StackError(RuntimeError):
    pass


@dataclass(frozen=True)
class StackPorts:
    functions: int
    emulators: EmulatorPorts
    arm: int = field(default_factory=free_port)  # local ARM endpoint (DEVHOST_ARM_PORT)
    oidc: int = field(default_factory=free_port)  # local token issuer (DEVHOST_OIDC_PORT)

    @classmethod
    def free(cls) -> StackPorts:
        """Every port one the system says is free: a stack beside others (tests, benchmarks)."""
        return cls(
            functions=free_port(),
            emulators=EmulatorPorts(
                blob=free_port(), queue=free_port(), table=free_port(), cosmos=free_port()
            ),
        )

    @classmethod
    def from_env(cls) -> StackPorts:
        def port(name: str, default: int) -> int:
            value = os.environ.get(name, str(default))
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise StackError(f"{name}={value!r} is not a TCP port number")
            return int(value)

        return cls(
            functions=port("DEVHOST_FUNCTIONS_PORT", 7071),
            emulators=EmulatorPorts(
                blob=port("DEVHOST_BLOB_PORT", 10000),
                queue=port("DEVHOST_QUEUE_PORT", 10001),
                table=port("DEVHOST_TABLE_PORT", 10002),
                cosmos=port("DEVHOST_COSMOS_PORT", 8081),
            ),
            arm=port("DEVHOST_ARM_PORT", 7072),
            oidc=port("DEVHOST_OIDC_PORT", 7073),
        )

    def all(self) -> dict[str, int]:
        e = self.emulators
        return {
            "functions": self.functions,
            "blob": e.blob,
            "queue": e.queue,
            "table": e.table,
            "cosmos": e.cosmos,
            "arm": self.arm,
            "oidc": self.oidc,
        }


@dataclass
class LocalStack:
    ports: StackPorts
    data_dir: Path = REPO_ROOT / ".devhost"
    app_dir: Path = REPO_ROOT
    keep_data: bool = False
    host_env: dict[str, str] = field(default_factory=dict)  # extra environment for the host (tests)
    # The local ARM's incremental-snapshot window (DEVHOST_ARM_SNAPSHOT_WINDOW_SECONDS; None: Azure's 300 s
    # unless that variable says otherwise), shortened by tests that take many snapshots of one disk.
    arm_snapshot_window_seconds: float | None = None
    processes: list[ManagedProcess] = field(default_factory=list)
    _settings: dict[str, str] = field(default_factory=dict)
    _tokens: LocalTokens | None = None

    @property
    def state_file(self) -> Path:
        return self.data_dir / "stack.json"

    @property
    def functions_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.functions}"

    @property
    def oidc_dir(self) -> Path:
        """The local issuer's signing key and registered clients (clients.json: ids, secrets, roles)."""
        return self.data_dir / "oidc"

    @property
    def operator_authority(self) -> str:
        return authority_url(self.ports.oidc)

    def operator_token(self, client_id: str = ADMINISTRATOR_CLIENT) -> str:
        """A bearer token for one of the issuer's clients (default: the Administrator), as a script gets
        one from Entra with the client-credentials grant."""
        if self._tokens is None:
            self._tokens = LocalTokens(self.operator_authority, self.oidc_dir)
        return self._tokens.token(client_id)

    @property
    def telemetry_file(self) -> Path:
        """The host's spans and metrics, one JSON document a line (OpenTelemetry's JSON encoding)."""
        return self.data_dir / "logs" / "telemetry.jsonl"

    def app_settings(self, endpoints: EmulatorEndpoints) -> dict[str, str]:
        """The app settings the function app reads (see local.settings.example.json), pointed at this stack."""
        secrets_file = self.data_dir / "secrets.json"
        if secrets_file.exists():
            local_secrets = json.loads(secrets_file.read_text())
        else:
            local_secrets = {
                # Event Grid topic keys are base64 (the SAS signature decodes them).
                "EVENTGRID_TOPIC_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                "APPLIANCE_CREDENTIAL_PEPPER": secrets.token_urlsafe(32),
            }
            _write_private(secrets_file, json.dumps(local_secrets))
        # --- local ARM endpoint ---
        if "ARM_STATIC_TOKEN" not in local_secrets:  # a secrets.json kept from before the ARM endpoint
            local_secrets["ARM_STATIC_TOKEN"] = secrets.token_urlsafe(32)
            _write_private(secrets_file, json.dumps(local_secrets))
        arm_settings = {
            "AZURE_SUBSCRIPTION_ID": LOCAL_SUBSCRIPTION_ID,
            "ARM_ENDPOINT": f"http://127.0.0.1:{self.ports.arm}",
            "ARM_POLLING_INTERVAL_SECONDS": "1",
            LATENCY_SCALE_ENV: os.environ.get(LATENCY_SCALE_ENV, DEFAULT_ARM_LATENCY_SCALE),
        }
        # --- end local ARM endpoint ---
        storage = endpoints.storage_connection_string
        return {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "AzureWebJobsStorage": storage,
            "COSMOS_ENDPOINT": endpoints.cosmos_endpoint,
            "COSMOS_KEY": endpoints.cosmos_key,
            "COSMOS_DATABASE": "migration",
            "COSMOS_VERIFY_TLS": "false",
            "CACHE_STORAGE_CONNECTION_STRING": storage,
            "REPLICA_STORAGE_CONNECTION_STRING": storage,
            # The local ARM endpoint checks only the account name of a disk Import's storageAccountId.
            "REPLICA_STORAGE_ACCOUNT_ID": (
                f"/subscriptions/{LOCAL_SUBSCRIPTION_ID}/resourceGroups/local-storage/providers/"
                f"Microsoft.Storage/storageAccounts/{AZURITE_ACCOUNT}"
            ),
            "OPERATOR_AUTH_AUTHORITY": self.operator_authority,
            "OPERATOR_AUTH_AUDIENCE": LOCAL_AUDIENCE,
            "EVENTGRID_TOPIC_ENDPOINT": f"{self.functions_url}/runtime/local-eventgrid/topics/appliance-events/api/events",
            "DEVHOST_DEADLETTER_CONNECTION_STRING": storage,
            "TELEMETRY_FILE": str(self.telemetry_file),
            **arm_settings,  # local ARM endpoint
            **local_secrets,
        }

    def start(self) -> dict[str, object]:
        busy = [f"{name} ({port})" for name, port in self.ports.all().items() if port_is_open(port)]
        if busy:
            raise StackError(
                f"ports already in use: {', '.join(busy)}. Is the stack already up? Run `make down`, "
                "or choose other ports with DEVHOST_FUNCTIONS_PORT / DEVHOST_BLOB_PORT / DEVHOST_QUEUE_PORT / "
                "DEVHOST_TABLE_PORT / DEVHOST_COSMOS_PORT / DEVHOST_ARM_PORT / DEVHOST_OIDC_PORT."
            )
        if not self.keep_data and self.data_dir.exists():
            for child in ("azurite", "cosmos", "host", "logs", "secrets.json", "stack.json", "arm", "oidc"):
                target = self.data_dir / child
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        logs = self.data_dir / "logs"
        endpoints = EmulatorEndpoints(self.ports.emulators)
        try:
            # Azurite behind the blob front (Put Page From URL, as production's storage has it): every
            # client of the stack's blob port goes through the front. DEVHOST_BLOB_FRONT=0 leaves it out
            # (Azurite alone: the engine streams), to tell whether a problem or a cost is the front's.
            if os.environ.get("DEVHOST_BLOB_FRONT", "1") == "0":
                self.processes.append(
                    start_azurite(
                        self.data_dir / "azurite", self.ports.emulators, logs, fresh=not self.keep_data
                    )
                )
            else:
                self.processes.extend(
                    start_blob_storage(
                        self.data_dir / "azurite", self.ports.emulators, logs, fresh=not self.keep_data
                    ).processes
                )
            self.processes.append(
                start_cosmos(self.ports.emulators, logs, journal=self.data_dir / "cosmos" / "journal.jsonl")
            )
            settings = self.app_settings(endpoints)
            self.processes.append(start_local_oidc(self.oidc_dir, self.ports.oidc, logs))
            # --- local ARM endpoint ---
            self.processes.append(
                start_local_arm(
                    self.data_dir / "arm",
                    self.ports.arm,
                    endpoints.storage_connection_string,
                    logs,
                    token=settings["ARM_STATIC_TOKEN"],
                    latency_scale=float(settings[LATENCY_SCALE_ENV]),
                    snapshot_window_seconds=self.arm_snapshot_window_seconds,
                )
            )
            # --- end local ARM endpoint ---
            self._settings = settings
            self.start_functions_host()
        except Exception:
            self.stop()
            raise
        return self._write_state()

    def _write_state(self) -> dict[str, object]:
        state: dict[str, object] = {
            "supervisorPid": os.getpid(),
            "functionsUrl": self.functions_url,
            "keysFile": str(self.data_dir / "host" / "keys.json"),
            # Operators' client-credentials (docs/local-stack.md#operator-tokens).
            "operatorAuthority": self.operator_authority,
            "operatorAudience": LOCAL_AUDIENCE,
            "operatorClientsFile": str(self.oidc_dir / CLIENTS_FILE),
            "settings": {
                k: v
                for k, v in self._settings.items()
                if k not in ("EVENTGRID_TOPIC_KEY", "APPLIANCE_CREDENTIAL_PEPPER", "ARM_STATIC_TOKEN")
            },
            "secretsFile": str(self.data_dir / "secrets.json"),
            "processes": {p.name: p.pid for p in self.processes},
            "ports": self.ports.all(),
            "logs": str(self.data_dir / "logs"),
        }
        _write_private(self.state_file, json.dumps(state, indent=2))
        return state

    def supervise(
        self,
        stopping: threading.Event,
        *,
        poll: float = 0.5,
        max_restarts: int = 5,
        window: float = 300.0,
        report: Callable[[str], None] = print,
    ) -> int:
        """Watch the stack until `stopping` is set (then 0). A Functions host that exits, however it died,
        is started again on the same data, as Azure restarts a crashed worker: Durable history, pending
        Event Grid deliveries and keys are on disk, so orchestrations resume and events are redelivered.
        Only the host: Azurite, Cosmos and the local ARM endpoint keep running untouched. Any of those
        exiting ends the supervision (1), as does a host that crashed more than `max_restarts` times
        within `window` seconds: restarting it in a loop would only hide the cause (see its log)."""
        restarts: list[float] = []
        while not stopping.wait(poll):
            dead = [p for p in self.processes if not p.running()]
            others = [p.name for p in dead if p.name != "functions-host"]
            if others:
                report(
                    f"error: {', '.join(others)} exited; stopping the stack. Logs: {self.data_dir / 'logs'}"
                )
                return 1
            if not dead:
                continue
            host = dead[0]
            self.processes.remove(host)
            host.kill_group()  # what the dead host left running in its process group goes with it
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < window] + [now]
            if len(restarts) > max_restarts:
                report(
                    f"error: the Functions host exited {len(restarts)} times in {window:.0f} s; stopping the "
                    f"stack. See {host.log_path}"
                )
                return 1
            report(f"functions-host (pid {host.pid}) exited with code {host.returncode}; restarting it")
            try:
                started = self.start_functions_host()
            except ProcessFailedToStart as exc:
                report(f"error: the Functions host did not start again: {exc}")
                continue  # counted: the next round tries again, or gives up
            self._write_state()
            report(f"functions-host is back (pid {started.pid})")
        return 0

    def start_functions_host(self) -> ManagedProcess:
        """Start (or, after `kill_functions_host`, restart) the host on the same data: Durable history and
        pending Event Grid deliveries survive, as they would a worker recycle in Azure."""
        # The app appends its telemetry to this file (TELEMETRY_FILE) and keeps the mode it finds: 0600
        # like every other log of the stack.
        open_private_log(self.telemetry_file).close()
        host = ManagedProcess(
            name="functions-host",
            argv=[
                sys.executable,
                "-m",
                "devhost.functions_host",
                "--app-dir",
                str(self.app_dir),
                "--port",
                str(self.ports.functions),
                "--data-dir",
                str(self.data_dir / "host"),
            ],
            log_path=self.data_dir / "logs" / "functions-host.log",
            env={**os.environ, **self._settings, **self.host_env, "PYTHONPATH": str(REPO_ROOT)},
            cwd=self.app_dir,
        ).start()
        self.processes.append(host)
        host.wait_ready(
            lambda: httpx.get(f"{self.functions_url}/api/health", timeout=2).status_code == 200, timeout=90
        )
        return host

    def kill_functions_host(self) -> None:
        """SIGKILL the host, as a crash would (tests)."""
        for process in [p for p in self.processes if p.name == "functions-host"]:
            process.kill()
            self.processes.remove(process)

    @property
    def settings(self) -> dict[str, str]:
        """The app settings, secrets included (tests and the demo act as the appliance and the operator)."""
        return dict(self._settings)

    def stop(self) -> None:
        # Reverse order: the host first, so it does not log storage errors while the emulators go away.
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        if self.state_file.exists():
            self.state_file.unlink()


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def read_state(data_dir: Path = REPO_ROOT / ".devhost") -> dict[str, object] | None:
    path = data_dir / "stack.json"
    return json.loads(path.read_text()) if path.exists() else None
