"""The Mobility service agent: registers with the control plane, heartbeats its version and health, and
replicates its server's disks (replicator.py).

Runs on the source server's own python3 with the standard library only. Its files live under the
install location's Vx/: bin/ (this file and the scripts), etc/ (version, agent.json with the agent's
credential and its disks, readable by root only), var/ (the runner's log and pid, replication/ with the
last cycle's block hashes and the next sequence).

    asr_agent.py register --endpoint URL --passphrase-file FILE [--key-file FILE] [--machine-id ID]
                          [--disk DISK_ID=PATH ...]
    asr_agent.py heartbeat      one heartbeat, then exit
    asr_agent.py cycle [--kind delta|resync|initial]
                                one replication cycle now (a delta from the last posted cycle), then exit
    asr_agent.py run            until stopped: heartbeat every ASR_HEARTBEAT_SECONDS (60), answer the
                                machine's cycle commands every ASR_POLL_SECONDS (15), take a delta every
                                ASR_CYCLE_SECONDS (300) once the first cycle is posted
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

if __package__:
    from agent import replicator
else:  # installed: this file and replicator.py side by side in bin/
    import replicator  # type: ignore[import-not-found,no-redef]

BIN = Path(__file__).resolve().parent
ETC = BIN.parent / "etc"
VAR = BIN.parent / "var"
TIMEOUT = 30


def version() -> str:
    return (ETC / "version").read_text().strip()


def _write_private(path: Path, data: dict[str, object]) -> None:
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


def _disk_map(specs: list[str]) -> dict[str, str]:
    disks: dict[str, str] = {}
    for spec in specs:
        disk_id, sep, path = spec.partition("=")
        if not sep or not disk_id or not path.startswith("/"):
            raise SystemExit(
                f"ERROR: --disk {spec!r}: expected DISK_ID=/absolute/path (a block device or image)"
            )
        disks[disk_id] = path
    return disks


def register(
    endpoint: str,
    passphrase_file: str,
    key_file: str | None,
    machine_id: str | None,
    disks: dict[str, str] | None = None,
) -> int:
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
    if not disks and (ETC / "agent.json").exists():
        # Registered again without disks (an update): keep replicating the disks it had.
        disks = json.loads((ETC / "agent.json").read_text()).get("disks") or {}
    _write_private(
        ETC / "agent.json",
        {
            "endpoint": base,
            "functionKey": key,
            "agentId": str(answer["agentId"]),
            "credential": str(answer["credential"]),
            "machineId": machine_id or "",
            "disks": disks or {},
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


def _replicator() -> replicator.Replicator | None:
    config = json.loads((ETC / "agent.json").read_text())
    disks = [
        replicator.Disk(disk_id, Path(path)) for disk_id, path in sorted(config.get("disks", {}).items())
    ]
    if not disks:
        return None
    api = replicator.ControlPlane(config["endpoint"], config["functionKey"], config["credential"])
    return replicator.Replicator(api, disks, VAR / "replication")


@contextmanager
def _one_cycle_at_a_time() -> Iterator[None]:
    """The runner and a `cycle` started by hand never scan and post at the same time."""
    VAR.mkdir(parents=True, exist_ok=True)
    with (VAR / "replication.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _report(done: list[replicator.CycleReport]) -> None:
    for r in done:
        note = " (already accepted)" if r.duplicate else ""
        print(
            f"cycle {r.cycle_id}: {r.kind} #{r.sequence}, {r.extents} extents, {r.uploaded} bytes{note}",
            flush=True,
        )


def cycle(kind: str) -> int:
    rep = _replicator()
    if rep is None:
        print("ERROR: no disks configured: register with --disk DISK_ID=PATH", file=sys.stderr)
        return 2
    try:
        with _one_cycle_at_a_time():
            done = [r for r in [rep.post_pending()] if r is not None]
            work = rep.api.call("GET", "/mobility/agents/commands")
            done.append(rep.run_cycle(kind, work["machineId"], work["lastAppliedSequence"]))
    except (replicator.ApiError, OSError, ValueError) as exc:
        print(f"ERROR: cycle failed: {exc}", file=sys.stderr)
        return 22
    _report(done)
    return 0


def _every(seconds: float, action: Callable[[], object]) -> Callable[[float], None]:
    due = [0.0]

    def tick(now: float) -> None:
        if now >= due[0]:
            due[0] = now + seconds
            try:
                action()
            except (replicator.ApiError, OSError, ValueError) as exc:
                # Logged and tried again at the next tick: a cycle that failed was not posted.
                print(
                    f"{action.__name__ if hasattr(action, '__name__') else 'task'} failed: {exc}", flush=True
                )

    return tick


def run() -> int:
    beat = _every(float(os.environ.get("ASR_HEARTBEAT_SECONDS", "60")), heartbeat)
    rep = _replicator()
    tasks = [beat]
    if rep is not None:
        interval = float(os.environ.get("ASR_CYCLE_SECONDS", "300"))

        def replicate() -> None:
            with _one_cycle_at_a_time():
                done = rep.handle_commands()
                scheduled = rep.scheduled_cycle(interval)
            _report(done + ([scheduled] if scheduled else []))

        tasks.append(_every(float(os.environ.get("ASR_POLL_SECONDS", "15")), replicate))
    while True:
        for task in tasks:
            task(time.monotonic())
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asr_agent")
    commands = parser.add_subparsers(dest="command", required=True)
    reg = commands.add_parser("register")
    reg.add_argument("--endpoint", required=True)
    reg.add_argument("--passphrase-file", required=True)
    reg.add_argument("--key-file")
    reg.add_argument("--machine-id")
    reg.add_argument("--disk", action="append", default=[], help="DISK_ID=PATH of a disk to replicate")
    commands.add_parser("heartbeat")
    one = commands.add_parser("cycle")
    one.add_argument("--kind", choices=["delta", "resync", "initial"], default="delta")
    commands.add_parser("run")
    args = parser.parse_args(argv)
    if args.command == "register":
        return register(
            args.endpoint, args.passphrase_file, args.key_file, args.machine_id, _disk_map(args.disk)
        )
    if args.command == "heartbeat":
        return heartbeat()
    if args.command == "cycle":
        return cycle(args.kind)
    return run()


if __name__ == "__main__":
    sys.exit(main())
