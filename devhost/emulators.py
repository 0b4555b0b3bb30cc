"""Azurite (blob/queue/table) and cosmosdb-server (HTTPS, self-signed) as child processes."""

from __future__ import annotations

import shutil
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from devhost.processes import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = REPO_ROOT / "node_modules" / ".bin"

# V8 sizes Azurite's heap after each mark-compact by how fast the process allocated just before it. An
# Azurite that sat idle for a few seconds (a cache account between two cycles) gets almost no headroom
# over its ~50 MB of live objects, and then every few MB of garbage from serving large reads starts a
# mark-compact: 8 MiB range GETs cost it 4-5 CPU s per GiB instead of 0.6-1.1, for as long as it keeps
# serving them at a steady rate (docs/scale.md, "apply_throughput_ratio"). A fixed growth factor (2x the
# live heap, inside V8's own dynamic range of 1.1-4x) makes its cost independent of its idle history.
AZURITE_NODE_FLAGS = ("--heap-growing-percent=100",)

# Azurite's documented, public development account: not a secret (it opens nothing but a local emulator).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# cosmosdb-server accepts any master key; this is the Cosmos emulator's well-known one, for symmetry.
COSMOS_EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nQfJzzrNTXeUBnfYrLH+MCXAGQ1oX5gnqGVHMEwg=="
)


@dataclass(frozen=True)
class EmulatorPorts:
    blob: int = 10000
    queue: int = 10001
    table: int = 10002
    cosmos: int = 8081


@dataclass(frozen=True)
class EmulatorEndpoints:
    ports: EmulatorPorts

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.blob}/{AZURITE_ACCOUNT}"

    @property
    def storage_connection_string(self) -> str:
        p = self.ports
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{p.blob}/{AZURITE_ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{p.queue}/{AZURITE_ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{p.table}/{AZURITE_ACCOUNT};"
        )

    @property
    def cosmos_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.ports.cosmos}/"

    @property
    def cosmos_key(self) -> str:
        return COSMOS_EMULATOR_KEY


def _node_tool(name: str) -> str:
    tool = NODE_BIN / name
    if not tool.exists():
        raise FileNotFoundError(f"{tool} is missing: run `npm ci` in {REPO_ROOT} (make does it for you)")
    return str(tool)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise FileNotFoundError("node is not on PATH: the local emulators run on Node.js")
    return node


def _answers_http(url: str) -> bool:
    context = ssl._create_unverified_context()  # the local Cosmos emulator's certificate is self-signed
    try:
        urllib.request.urlopen(url, timeout=1, context=context)
    except urllib.error.HTTPError:
        return True  # any HTTP status means the server is up and parsing requests
    except OSError:
        return False
    return True


def _azurite_closed(logged: str) -> bool:
    """Azurite (3.37) closes its three services, their metadata saved, within a second of SIGTERM, then
    its process lingers about 20 s on idle timers: once all three say so, nothing is left to wait for."""
    return all(
        f"Azurite {service} service successfully closed" in logged for service in ("Blob", "Queue", "Table")
    )


def start_azurite(
    data_dir: Path, ports: EmulatorPorts, log_dir: Path, *, fresh: bool = True, blob_port: int | None = None
) -> ManagedProcess:
    """Azurite alone; `blob_port` moves its blob endpoint off `ports.blob` (where the stack puts the blob
    front, devhost/blob_front.py: use `start_blob_storage` there)."""
    ports = ports if blob_port is None else replace(ports, blob=blob_port)
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess(
        name="azurite",
        argv=[
            _node(),
            *AZURITE_NODE_FLAGS,
            # the package's bin is a symlink to its script: V8 flags need node started explicitly
            str(Path(_node_tool("azurite")).resolve()),
            "--silent",
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
            "--location",
            str(data_dir),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(ports.blob),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(ports.queue),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(ports.table),
        ],
        log_path=log_dir / "azurite.log",
        shut_down=_azurite_closed,
    ).start()
    base = "http://127.0.0.1:{}/" + AZURITE_ACCOUNT + "?comp=list"
    proc.wait_ready(
        lambda: (
            all(_answers_http(base.format(p)) for p in (ports.blob, ports.queue))
            and _answers_http(f"http://127.0.0.1:{ports.table}/{AZURITE_ACCOUNT}/Tables")
        )
    )
    return proc


def start_cosmos(ports: EmulatorPorts, log_dir: Path, journal: Path | None = None) -> ManagedProcess:
    """cosmosdb-server through devhost/cosmos_server.js, which answers a missing document's point read
    404 as Cosmos does (cosmosdb-server alone fails it with a 500 that the SDK retries for a second);
    with `journal`, it also keeps its data in that file and reloads it on start (otherwise in memory)."""
    _node_tool("cosmosdb-server")  # the package must be installed: a clear error if it is not
    argv = [
        _node(),
        str(REPO_ROOT / "devhost" / "cosmos_server.js"),
        "--host",
        "127.0.0.1",
        "--port",
        str(ports.cosmos),
    ]
    if journal is not None:
        argv += ["--data", str(journal)]
    proc = ManagedProcess(name="cosmosdb-server", argv=argv, log_path=log_dir / "cosmosdb-server.log").start()
    proc.wait_ready(lambda: _answers_http(f"https://127.0.0.1:{ports.cosmos}/"))
    return proc
