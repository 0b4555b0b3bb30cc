"""Fleet scale on the whole local stack: N machines, each registered by a simulated appliance, enabled by
the operator and replicating an initial copy of a tiny disk plus two small deltas, for N = 10, 100 and
1,000 (a fresh stack for each N, so every N starts from empty containers and a quiet host).

`python -m bench fleet` runs the sizes in `BENCH_FLEET_SIZES` (default "10,100,1000"); `python -m
bench.fleet 100 [500 ...]` runs the sizes given and prints the figures.

What each N measures (all local-stack figures):
- the cycles applied and the errors: a cycle not applied within the time box, a failed job, a machine not
  `Replicating`/`Healthy` at the end or whose watermark is not its last sequence;
- `cycles_per_s`: delta cycles applied over the delta phase's wall time (every appliance sending at once);
- `cycle_latency_p50_s` / `_p95_s`: a delta, from its `CycleUploaded` event to its cache uploads disposed
  of (observed by listing Azurite's cache container, so the observer adds no Cosmos traffic);
- Cosmos round-trips per delta cycle (over the delta phase) and per machine (over the whole run: report,
  enable, initial copy, two deltas), from the app's own `migrate.cosmos.operations` metric, as
  `bench/cycle_latency.py` counts them; the bytes of the documents written per cycle (the Cosmos
  emulator's journal), from which the RU cost in Azure is estimated (the emulator charges 1 RU a call);
- activity calls per delta cycle and per machine, from the local Durable host's counters.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from appliance.replicator import MachineReplicator, SourceDisk
from devhost.local_appliance import LocalAppliance, function_key, register_local_appliance, stack_storage
from devhost.stack import LocalStack, StackPorts
from devhost.waiting import wait_until
from shared.domain.cycle import CycleKind
from shared.platform.telemetry import METRIC_COSMOS_FALLBACKS, METRIC_COSMOS_OPERATIONS

KIB = 1024
MIB = 1024 * KIB
DEFAULT_SIZES = (10, 100, 1000)
MACHINES_PER_APPLIANCE = 50
DISK_BYTES = 4 * MIB
INITIAL_DATA_BYTES = 256 * KIB  # random data at the start of the disk; the rest is zeros the copy skips
DELTA_BYTES = 64 * KIB
DELTAS = 2
# Appliances work in parallel, each through its machines one after the other, as a real appliance's
# scheduler does; this bounds the client side's threads on a 2-core machine.
APPLIANCE_WORKERS = 8
LANES_PER_APPLIANCE = 4  # machines an appliance uploads at once
CYCLE_LANES = 32  # machines sending deltas at once, all appliances together
OPERATOR_WORKERS = 4
METRIC_INTERVAL_MS = 1000
OBSERVE_INTERVAL_S = 0.5
# A cycle not applied this long after its event is an error (the time box of each phase grows with N).
CYCLE_TIMEOUT_S = 600.0
TARGET = {
    "resourceGroup": "rg-fleet",
    "virtualNetwork": "vnet-fleet",
    "subnet": "default",
    "vmSize": "Standard_D2s_v3",
}


@dataclass
class FleetMachine:
    replicator: MachineReplicator
    appliance: LocalAppliance
    job_id: str = ""
    last_sequence: int = -1


@dataclass
class Observed:
    published_at: float
    applied_at: float | None = None


class CycleObserver:
    """Lists the cache container and marks a cycle applied once none of its uploads is left: the control
    plane disposes of them after the cycle is applied and its recovery point recorded."""

    def __init__(self, cache: Any) -> None:
        self._cache = cache
        self._lock = threading.Lock()
        self._cycles: dict[str, Observed] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fleet-observer", daemon=True)

    def __enter__(self) -> CycleObserver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def published(self, machine_id: str, cycle_id: str) -> None:
        with self._lock:
            self._cycles[f"{machine_id}/{cycle_id}/"] = Observed(published_at=time.perf_counter())

    def pending(self) -> int:
        with self._lock:
            return sum(1 for o in self._cycles.values() if o.applied_at is None)

    def applied(self, machine_id: str, cycle_id: str) -> bool:
        with self._lock:
            return self._cycles[f"{machine_id}/{cycle_id}/"].applied_at is not None

    def applied_at(self, machine_id: str, cycle_id: str) -> float | None:
        with self._lock:
            return self._cycles[f"{machine_id}/{cycle_id}/"].applied_at

    def latency(self, machine_id: str, cycle_id: str) -> float | None:
        with self._lock:
            seen = self._cycles[f"{machine_id}/{cycle_id}/"]
        return None if seen.applied_at is None else seen.applied_at - seen.published_at

    def _loop(self) -> None:
        while not self._stop.wait(OBSERVE_INTERVAL_S):
            started = time.perf_counter()
            try:
                present = {"/".join(b.name.split("/")[:2]) + "/" for b in self._cache.list_blobs()}
            except Exception:  # a listing that failed says nothing: the next one decides
                continue
            ended = time.perf_counter()
            with self._lock:
                for prefix, seen in self._cycles.items():
                    if seen.applied_at is None and seen.published_at < started and prefix not in present:
                        seen.applied_at = ended


class TelemetryTail:
    """The latest cumulative value of the app's Cosmos operations metric, read incrementally from the
    stack's telemetry file (it grows to hundreds of MB at 1,000 machines: never re-read from the start)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._partial = b""
        self._total: dict[str, float] = {}
        self._fallbacks: dict[str, float] = {}

    def fallbacks(self) -> dict[str, float]:
        """The fallbacks counted so far (`migrate.cosmos.fallbacks`), by "path: reason", as of the last read."""
        return dict(self._fallbacks)

    def total(self) -> dict[str, float]:
        with self._path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line.startswith(b'{"resource_metrics"'):
                document = json.loads(line)
                self._total = _cosmos_totals(document) or self._total
                self._fallbacks = _fallback_totals(document) or self._fallbacks
        return dict(self._total)

    def settled(self) -> dict[str, float]:
        """The total once two exports in a row agree (no Cosmos work in flight)."""
        readings: list[dict[str, float]] = []

        def agree() -> dict[str, float] | None:
            readings.append(self.total())
            if len(readings) > 1 and readings[-1] and readings[-1] == readings[-2]:
                return readings[-1]
            return None

        return wait_until(
            agree,
            timeout=120,
            interval=2 * METRIC_INTERVAL_MS / 1000,
            what=f"the {METRIC_COSMOS_OPERATIONS} metric to settle",
            hint=f"see {self._path}",
        )


def _metric_points(document: dict[str, Any], name: str) -> Iterator[dict[str, Any]]:
    """The data points of the metric `name` in one exported OTLP-JSON document."""
    for resource in document["resource_metrics"]:
        for scope in resource["scope_metrics"]:
            for metric in scope["metrics"]:
                if metric["name"] == name:
                    yield from metric["data"]["data_points"]


def _cosmos_totals(document: dict[str, Any]) -> dict[str, float]:
    return {
        f"{p['attributes']['db.operation']} {p['attributes']['db.cosmosdb.container']}": float(p["value"])
        for p in _metric_points(document, METRIC_COSMOS_OPERATIONS)
    }


def _fallback_totals(document: dict[str, Any]) -> dict[str, float]:
    return {
        f"{p['attributes']['migrate.fallback.path']}: {p['attributes']['migrate.fallback.reason']}": float(
            p["value"]
        )
        for p in _metric_points(document, METRIC_COSMOS_FALLBACKS)
    }


class JournalTail:
    """Bytes of the documents the Cosmos emulator stored (its journal: one line per change), by
    container: what a write costs in RU in Azure depends on the document's size."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0

    def since_last(self) -> dict[str, dict[str, float]]:
        writes: Counter[str] = Counter()
        written: Counter[str] = Counter()
        with self._path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            entry = json.loads(line)
            if entry.get("kind") != "docs" or len(entry.get("path", [])) < 2:
                continue
            # The emulator journals a replace as a delete and a set: only the sets are writes.
            if entry.get("op") == "set":
                container = str(entry["path"][1])
                writes[container] += 1
                written[container] += len(json.dumps(entry.get("data"), separators=(",", ":")))
        return {c: {"writes": writes[c], "bytes": written[c]} for c in sorted(writes)}


@dataclass
class Fleet:
    stack: LocalStack
    root: Path
    size: int
    operator: httpx.Client = field(init=False)
    machines: list[FleetMachine] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _errors_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.operator = httpx.Client(
            base_url=f"{self.stack.functions_url}/api",
            # The operator API takes an Entra token with a role besides the function key (the Administrator
            # here: enabling replication is an Operator's action and above).
            headers={
                "x-functions-key": function_key(self.stack),
                "Authorization": f"Bearer {self.stack.operator_token()}",
            },
            timeout=120,
        )

    def error(self, message: str) -> None:
        with self._errors_lock:
            self.errors.append(message)

    def activity_counts(self) -> dict[str, dict[str, int]]:
        keys = json.loads((self.stack.data_dir / "host" / "keys.json").read_text())
        response = httpx.get(
            f"{self.stack.functions_url}/runtime/webhooks/durabletask/test/activity-counts",
            params={"code": keys["system"]["durabletask_extension"]},
            timeout=30,
        )
        response.raise_for_status()
        counts: dict[str, dict[str, int]] = response.json()
        return counts


def run() -> dict[str, Any]:
    sizes = [
        int(s) for s in os.environ.get("BENCH_FLEET_SIZES", ",".join(map(str, DEFAULT_SIZES))).split(",")
    ]
    return measure(sizes)


def measure(sizes: list[int], report: Callable[[str], None] | None = None) -> dict[str, Any]:
    say = report or (lambda line: print(f"bench fleet: {line}", file=sys.stderr, flush=True))
    by_size: dict[str, dict[str, Any]] = {}
    for size in sizes:
        say(f"{size} machines ...")
        started = time.perf_counter()
        try:
            figures = run_fleet(size, say)
        except Exception as exc:  # a size that could not finish is a finding, not the end of the others
            figures = {
                "machines": size,
                "completed": False,
                "errors": 1,
                "error": f"{type(exc).__name__}: {exc}",
            }
        figures["wall_s"] = round(time.perf_counter() - started, 1)
        by_size[str(size)] = figures
        say(f"{size} machines: {json.dumps(figures)}")
    completed = [f for f in by_size.values() if f.get("completed") and f["errors"] == 0]
    largest = max(completed, key=lambda f: f["machines"]) if completed else None
    attempted = max(by_size.values(), key=lambda f: f["machines"])

    def at_each(name: str) -> dict[str, Any]:
        return {n: f.get(name) for n, f in by_size.items()}

    return {
        "fleet_machines": largest["machines"] if largest else 0,
        "fleet_errors": attempted["errors"],
        "fleet_cycles_per_s": largest["cycles_per_s"] if largest else None,
        "fleet_prompt_cycles_per_s": largest.get("prompt_cycles_per_s") if largest else None,
        "fleet_cycles_slower_than_60_s_by_machines": at_each("cycles_slower_than_60_s"),
        "fleet_cycle_latency_p50_s_by_machines": at_each("cycle_latency_p50_s"),
        "fleet_cosmos_ops_per_cycle_by_machines": at_each("cosmos_ops_per_cycle"),
        "fleet_cosmos_ops_per_machine_by_machines": at_each("cosmos_ops_per_machine"),
        "fleet_activity_calls_per_cycle_by_machines": at_each("activity_calls_per_cycle"),
        "fleet_activity_calls_per_machine_by_machines": at_each("activity_calls_per_machine"),
        "fleet_by_machines": by_size,
    }


def run_fleet(size: int, say: Callable[[str], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-fleet-{size}-") as root:
        ports = StackPorts.free()
        stack = LocalStack(
            ports,
            data_dir=Path(root) / "stack",
            host_env={
                "TELEMETRY_CONSOLE_METRIC_INTERVAL_MS": str(METRIC_INTERVAL_MS),
                "DEVHOST_LOG_LEVEL": "WARNING",
            },
        )
        stack.start()
        try:
            return _run(Fleet(stack, Path(root), size), say)
        finally:
            stack.stop()


def _run(fleet: Fleet, say: Callable[[str], None]) -> dict[str, Any]:
    stack, size = fleet.stack, fleet.size
    telemetry = TelemetryTail(stack.telemetry_file)
    journal = JournalTail(stack.data_dir / "cosmos" / "journal.jsonl")
    appliances = [
        register_local_appliance(stack, name=f"fleet-{i:03d}", site=f"site-{i:03d}")
        for i in range(math.ceil(size / MACHINES_PER_APPLIANCE))
    ]
    images = fleet.root / "images"
    images.mkdir()
    rng = random.Random(size)
    for index in range(size):
        appliance = appliances[index // MACHINES_PER_APPLIANCE]
        machine_id = f"fleet-{index:05d}"
        path = images / f"{machine_id}.img"
        with path.open("wb") as image:
            image.truncate(DISK_BYTES)
            image.write(rng.randbytes(INITIAL_DATA_BYTES))
        replicator = MachineReplicator(
            machine_id, [SourceDisk("disk0", path, is_os_disk=True)], appliance.uploads, appliance.events
        )
        fleet.machines.append(FleetMachine(replicator=replicator, appliance=appliance))
    by_appliance = {
        a.registration.appliance_id: [m for m in fleet.machines if m.appliance is a] for a in appliances
    }
    journal.since_last()  # the containers and databases created at start-up are not the fleet's
    started = time.perf_counter()

    # 1. Each appliance reports its machines (one call each), the operator enables every machine.
    for appliance in appliances:
        appliance.api.report_machines(
            [
                m.replicator.inventory(os_type="linux", os_name="Ubuntu", os_version="22.04")
                for m in by_appliance[appliance.registration.appliance_id]
            ]
        )
    with ThreadPoolExecutor(OPERATOR_WORKERS) as pool:
        list(pool.map(lambda m: _enable(fleet, m), fleet.machines))
    enabled_s = time.perf_counter() - started
    say(f"{size}: {size} machines reported and enabled in {enabled_s:.1f} s")

    cache = stack_storage(stack).cache
    with CycleObserver(cache) as observer:
        # 2. The initial copies the control plane asked for (a RunCycle command per machine).
        initial_started = time.perf_counter()
        _each_appliance(fleet, appliances, lambda a: _initial_copies(fleet, a, by_appliance, observer))
        _wait_all_applied(fleet, observer, "initial copies")
        initial_s = time.perf_counter() - initial_started
        say(f"{size}: initial copies applied in {initial_s:.1f} s")

        ops_before = telemetry.settled()
        fallbacks_before = telemetry.fallbacks()
        activities_before = fleet.activity_counts()
        journal.since_last()
        # 3. Two small deltas per machine, every appliance at once, each through its machines in turn.
        deltas_started = time.perf_counter()
        with ThreadPoolExecutor(CYCLE_LANES) as pool:
            sent = list(pool.map(lambda m: _deltas(fleet, m, observer), fleet.machines))
        delta_cycles = [cycle for cycles in sent for cycle in cycles]
        _wait_all_applied(fleet, observer, "deltas")
        deltas_s = time.perf_counter() - deltas_started
    ops_after = telemetry.settled()
    fallbacks_delta = {k: v - fallbacks_before.get(k, 0.0) for k, v in telemetry.fallbacks().items()}
    activities_after = fleet.activity_counts()
    written = journal.since_last()
    say(f"{size}: {len(delta_cycles)} deltas applied in {deltas_s:.1f} s")

    latencies = sorted(lat for lat in (observer.latency(m, c) for m, c in delta_cycles) if lat is not None)
    # Throughput of the deltas applied promptly, up to the last of them: a delta whose wake-up was lost
    # (applied by the orchestration's 10-minute timer, counted apart) would otherwise set the phase's length.
    prompt_done = [
        at
        for m, c in delta_cycles
        if (lat := observer.latency(m, c)) is not None
        and lat <= 60
        and (at := observer.applied_at(m, c)) is not None
    ]
    prompt_s = (max(prompt_done) - deltas_started) if prompt_done else None
    applied = len(latencies)
    n_cycles = max(len(delta_cycles), 1)
    ops_delta = {k: v - ops_before.get(k, 0.0) for k, v in ops_after.items()}
    calls_delta = _minus(activities_after["calls"], activities_before["calls"])
    _verify(fleet)
    failures = sum(activities_after["failures"].values())
    return {
        "machines": size,
        "appliances": len(appliances),
        "completed": True,
        "errors": len(fleet.errors),
        "error_samples": fleet.errors[:5],
        "cycles_applied": applied + size,  # the deltas observed plus the initial copies (each waited for)
        "enable_s": round(enabled_s, 1),
        "initial_copies_s": round(initial_s, 1),
        "deltas_s": round(deltas_s, 1),
        "cycles_per_s": round(applied / deltas_s, 2),
        "prompt_cycles_per_s": round(len(prompt_done) / prompt_s, 2) if prompt_s else None,
        "cycle_latency_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "cycle_latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3) if latencies else None,
        "cycle_latency_max_s": round(latencies[-1], 3) if latencies else None,
        # Deltas applied only by the orchestration's own timer (a wake-up signal lost; none since CycleStarted
        # has a Durable event name of its own): see docs/scale.md.
        "cycles_slower_than_60_s": sum(1 for lat in latencies if lat > 60),
        "cosmos_ops_per_cycle": round(sum(ops_delta.values()) / n_cycles, 2),
        "cosmos_ops_per_cycle_by_operation": {
            k: round(v / n_cycles, 2) for k, v in sorted(ops_delta.items()) if v
        },
        # Which fallback paths the extra round-trips took, and why (what the other writer had changed).
        "cosmos_fallbacks_in_delta_phase": {k: int(v) for k, v in sorted(fallbacks_delta.items()) if v},
        "cosmos_fallbacks_per_cycle": round(sum(fallbacks_delta.values()) / n_cycles, 3),
        "cosmos_ops_per_machine": round(sum(ops_after.values()) / size, 2),
        "cosmos_bytes_written_per_cycle_by_container": {
            c: {k: round(v / n_cycles, 2) for k, v in w.items()} for c, w in written.items()
        },
        "activity_calls_per_cycle": round(sum(calls_delta.values()) / n_cycles, 2),
        "activity_calls_per_cycle_by_name": {
            k: round(v / n_cycles, 2) for k, v in sorted(calls_delta.items()) if v
        },
        "activity_calls_per_machine": round(sum(activities_after["calls"].values()) / size, 2),
        "activity_failures": failures,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def _minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items()}


def _enable(fleet: Fleet, machine: FleetMachine) -> None:
    response = fleet.operator.put(f"/machines/{machine.replicator.machine_id}/replication", json=TARGET)
    if response.status_code != 202:
        fleet.error(f"enable {machine.replicator.machine_id}: {response.status_code} {response.text[:200]}")
        return
    machine.job_id = response.json()["jobId"]


def _each_appliance(
    fleet: Fleet, appliances: list[LocalAppliance], work: Callable[[LocalAppliance], None]
) -> None:
    def guarded(appliance: LocalAppliance) -> None:
        try:
            work(appliance)
        except Exception as exc:
            fleet.error(f"appliance {appliance.registration.appliance_id}: {type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(min(APPLIANCE_WORKERS, len(appliances))) as pool:
        list(pool.map(guarded, appliances))


def _initial_copies(
    fleet: Fleet,
    appliance: LocalAppliance,
    by_appliance: dict[str, list[FleetMachine]],
    observer: CycleObserver,
) -> None:
    """Poll the appliance's commands (one poll serves all its machines) until each machine's initial copy
    was asked for; run each asked-for cycle, then acknowledge it, as `MachineReplicator.handle_commands`
    does."""
    machines = {m.replicator.machine_id: m for m in by_appliance[appliance.registration.appliance_id]}
    waiting = set(machines)
    deadline = time.monotonic() + CYCLE_TIMEOUT_S
    while waiting:
        if time.monotonic() > deadline:
            fleet.error(f"no initial-copy command within {CYCLE_TIMEOUT_S:.0f} s for {sorted(waiting)[:5]}")
            return
        commands = [
            c for c in appliance.api.commands() if c["kind"] == "RunCycle" and c["machineId"] in waiting
        ]
        for command in commands:
            machine = machines[command["machineId"]]
            report = machine.replicator.run_cycle(CycleKind(command.get("cycleKind") or "delta"))
            observer.published(machine.replicator.machine_id, report.cycle_id)
            machine.last_sequence = report.sequence
            appliance.api.acknowledge(command["id"])
            waiting.discard(command["machineId"])
        if waiting and not commands:
            time.sleep(1.0)


def _deltas(fleet: Fleet, machine: FleetMachine, observer: CycleObserver) -> list[tuple[str, str]]:
    """A machine's deltas, each sent once the previous one is applied (an appliance's schedule runs a
    machine's next cycle after the last one ended)."""
    replicator = machine.replicator
    rng = random.Random(replicator.machine_id)
    sent: list[tuple[str, str]] = []
    try:
        for _ in range(DELTAS):
            offset = rng.randrange(0, (DISK_BYTES - DELTA_BYTES) // 512) * 512
            replicator.write("disk0", offset, rng.randbytes(DELTA_BYTES))
            report = replicator.run_cycle()
            observer.published(replicator.machine_id, report.cycle_id)
            machine.last_sequence = report.sequence
            sent.append((replicator.machine_id, report.cycle_id))
            wait_until(
                functools.partial(observer.applied, replicator.machine_id, report.cycle_id),
                timeout=CYCLE_TIMEOUT_S,
                interval=0.2,
                what=f"cycle {report.cycle_id} applied",
            )
    except Exception as exc:
        fleet.error(f"{replicator.machine_id}: {type(exc).__name__}: {exc}")
    return sent


def _wait_all_applied(fleet: Fleet, observer: CycleObserver, what: str) -> None:
    try:
        wait_until(lambda: observer.pending() == 0, timeout=CYCLE_TIMEOUT_S, interval=1.0, what=what)
    except Exception as exc:
        fleet.error(f"{observer.pending()} cycles not applied: {exc}")


def _verify(fleet: Fleet) -> None:
    """Every machine Replicating and Healthy at its last sequence, no current error; no job failed."""
    expected = {m.replicator.machine_id: m.last_sequence for m in fleet.machines}
    seen = {listed["id"]: listed for listed in _pages(fleet, "/machines", "machines", {})}
    for machine_id, sequence in expected.items():
        summary = seen.get(machine_id)
        if summary is None:
            fleet.error(f"{machine_id}: not listed")
            continue
        if (
            summary["state"],
            summary["health"],
            summary["lastAppliedSequence"],
            summary["currentErrorCount"],
        ) != (
            "Replicating",
            "Healthy",
            sequence,
            0,
        ):
            fleet.error(
                f"{machine_id}: {summary['state']}/{summary['health']} at sequence "
                f"{summary['lastAppliedSequence']} (expected {sequence}), {summary['currentErrorCount']} errors"
            )
    for job in _pages(fleet, "/jobs", "jobs", {"status": "Failed"}):
        fleet.error(f"job {job['id']} ({job['kind']}) failed")


def _pages(fleet: Fleet, path: str, key: str, query: dict[str, str]) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        params = {**query, "pageSize": "100", **({"continuationToken": token} if token else {})}
        response = fleet.operator.get(path, params=params)
        response.raise_for_status()
        body = response.json()
        yield from body[key]
        token = body.get("continuationToken")
        if not token:
            return


if __name__ == "__main__":
    chosen = [int(a) for a in sys.argv[1:]] or list(DEFAULT_SIZES)
    print(json.dumps(measure(chosen), indent=2))
