"""The Mobility service agent: registers with the control plane, then heartbeats its version and health.

Runs on the source server's own python3 with the standard library only. Its files live under the
install location's Vx/: bin/ (this file and the scripts), etc/ (version, endpoint.json, agent.json with
the agent's credential, readable by root only), var/ (the runner's log and pid).

    asr_agent.py register --endpoint URL --passphrase-file FILE [--key-file FILE] [--machine-id ID]
    asr_agent.py heartbeat      one heartbeat, then exit
    asr_agent.py run            heartbeat every ASR_HEARTBEAT_SECONDS (default 60) until stopped
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN = Path(__file__).resolve().parent
ETC = BIN.parent / "etc"
TIMEOUT = 30


def version() -> str:
    return (ETC / "version").read_text().strip()


def _write_private(path: Path, data: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _post(url: str, key: str, body: dict[str, object], credential: str | None = None) -> dict[str, object]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if key:
        headers["x-functions-key"] = key
    if credential:
        headers["Authorization"] = f"Bearer {credential}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        answer: dict[str, object] = json.loads(response.read() or b"{}")
        return answer


def _base(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    if "://" not in endpoint:
        endpoint = f"https://{endpoint}"
    return endpoint if endpoint.endswith("/api") else f"{endpoint}/api"


def register(endpoint: str, passphrase_file: str, key_file: str | None, machine_id: str | None) -> int:
    passphrase = Path(passphrase_file).read_text().strip()
    key = Path(key_file).read_text().strip() if key_file else ""
    body: dict[str, object] = {"passphrase": passphrase}
    if machine_id:
        body["machineId"] = machine_id
    else:
        body["hostname"] = socket.gethostname()
        body["biosUuid"] = Path("/sys/class/dmi/id/product_uuid").read_text().strip()
    base = _base(endpoint)
    try:
        answer = _post(f"{base}/mobility/agents/register", key, body)
    except (urllib.error.URLError, OSError) as exc:
        print(f"ERROR: registration with {base} failed: {exc}", file=sys.stderr)
        return 20
    ETC.mkdir(parents=True, exist_ok=True)
    _write_private(
        ETC / "agent.json",
        {
            "endpoint": base,
            "functionKey": key,
            "agentId": str(answer["agentId"]),
            "credential": str(answer["credential"]),
            "machineId": machine_id or "",
        },
    )
    print(f"registered as {answer['agentId']}")
    return heartbeat()


def heartbeat() -> int:
    config = json.loads((ETC / "agent.json").read_text())
    body: dict[str, object] = {
        "version": version(),
        "health": "Healthy",
        "hostname": socket.gethostname(),
        "os": platform.platform(),
    }
    try:
        _post(
            f"{config['endpoint']}/mobility/agents/heartbeat",
            config["functionKey"],
            body,
            config["credential"],
        )
    except (urllib.error.URLError, OSError) as exc:
        print(f"heartbeat failed: {exc}", file=sys.stderr)
        return 21
    return 0


def run() -> int:
    interval = float(os.environ.get("ASR_HEARTBEAT_SECONDS", "60"))
    while True:
        heartbeat()
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asr_agent")
    commands = parser.add_subparsers(dest="command", required=True)
    reg = commands.add_parser("register")
    reg.add_argument("--endpoint", required=True)
    reg.add_argument("--passphrase-file", required=True)
    reg.add_argument("--key-file")
    reg.add_argument("--machine-id")
    commands.add_parser("heartbeat")
    commands.add_parser("run")
    args = parser.parse_args(argv)
    if args.command == "register":
        return register(args.endpoint, args.passphrase_file, args.key_file, args.machine_id)
    if args.command == "heartbeat":
        return heartbeat()
    return run()


if __name__ == "__main__":
    sys.exit(main())
