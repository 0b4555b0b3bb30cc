"""Control-plane overhead per cycle on the whole local stack (targets in bench/__main__.py):

- `cycle_latency_p50_s` / `_p95_s`: a 1 MiB delta, from the appliance publishing `CycleUploaded` to the
  cycle applied, its recovery point recorded in Cosmos and its uploads disposed of (observed by polling
  Azurite for the cycle's cache blobs, so the observer adds no Cosmos traffic);
- `cosmos_ops_per_cycle`: Cosmos round-trips per cycle, from the app's own `migrate.cosmos.operations`
  metric (the local exporter's output in the stack's telemetry file), over the measured cycles only.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from appliance.replicator import MachineReplicator, SourceDisk
from devhost.local_appliance import function_key, register_local_appliance, stack_storage
from devhost.stack import LocalStack, StackPorts
from devhost.waiting import wait_until
from shared.platform.telemetry import METRIC_COSMOS_OPERATIONS

MIB = 1024 * 1024
CYCLES = 20
WARMUP = 3
METRIC_INTERVAL_MS = 300

_wait = partial(wait_until, timeout=120.0, interval=0.05)


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-cycle-") as root:
        ports = StackPorts.free()
        stack = LocalStack(
            ports,
            data_dir=Path(root) / "stack",
            host_env={"TELEMETRY_CONSOLE_METRIC_INTERVAL_MS": str(METRIC_INTERVAL_MS)},
        )
        stack.start()
        try:
            return _measure(stack, Path(root))
        finally:
            stack.stop()


def _measure(stack: LocalStack, root: Path) -> dict[str, Any]:
    local = register_local_appliance(stack, name="bench", site="bench")
    api, events, cache = local.api, local.events, stack_storage(stack).cache
    image = root / "disk.img"
    with image.open("wb") as handle:
        handle.truncate(64 * MIB)
    machine_id = f"bench-{uuid.uuid4().hex[:6]}"
    replicator = MachineReplicator(
        machine_id, [SourceDisk("disk0", image, is_os_disk=True)], local.uploads, events
    )
    api.report_machines([replicator.inventory(os_type="linux", os_name="Ubuntu", os_version="22.04")])
    operator = httpx.Client(
        base_url=f"{stack.functions_url}/api",
        headers={"x-functions-key": function_key(stack), "Authorization": f"Bearer {stack.operator_token()}"},
    )
    job = operator.put(
        f"/machines/{machine_id}/replication",
        json={
            "resourceGroup": "rg",
            "virtualNetwork": "vnet",
            "subnet": "default",
            "vmSize": "Standard_D2s_v3",
        },
    ).json()
    _wait(
        lambda: operator.get(f"/jobs/{job['jobId']}").json()["status"] == "Succeeded", what="the enable job"
    )
    rng = random.Random(1)
    latencies: list[float] = []
    ops_before: dict[str, float] = {}
    for index in range(WARMUP + CYCLES):
        if index == WARMUP:
            ops_before = _settled_cosmos_ops(stack)
        if index == 0:
            [report] = replicator.handle_commands(api)  # the initial copy the control plane asked for
        else:
            replicator.write("disk0", rng.randrange(0, 63) * MIB, rng.randbytes(MIB))
            report = _timed_cycle(replicator, cache, latencies if index >= WARMUP else [])
        _wait_disposed(cache, machine_id, report.cycle_id)
    ops_after = _settled_cosmos_ops(stack)
    per_cycle = {k: round((v - ops_before.get(k, 0.0)) / CYCLES, 2) for k, v in sorted(ops_after.items())}
    latencies.sort()
    return {
        "cycle_latency_p50_s": round(statistics.median(latencies), 3),
        "cycle_latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
        "cycle_latency_cycles": len(latencies),
        "cosmos_ops_per_cycle": round(sum(per_cycle.values()), 2),
        "cosmos_ops_per_cycle_by_operation": {k: v for k, v in per_cycle.items() if v},
    }


def _timed_cycle(replicator: MachineReplicator, cache: Any, latencies: list[float]) -> Any:
    # The clock starts when the event is published, i.e. after the data and manifest are uploaded.
    original = replicator.events.cycle_uploaded
    published: list[float] = []

    def publish(**kwargs: Any) -> str:
        event_id = original(**kwargs)
        published.append(time.perf_counter())
        return event_id

    replicator.events.cycle_uploaded = publish  # type: ignore[method-assign]
    try:
        report = replicator.run_cycle()
    finally:
        replicator.events.cycle_uploaded = original  # type: ignore[method-assign]
    _wait_disposed(cache, replicator.machine_id, report.cycle_id, interval=0.01)
    latencies.append(time.perf_counter() - published[0])
    return report


def _wait_disposed(cache: Any, machine_id: str, cycle_id: str, interval: float = 0.05) -> None:
    """Until the cycle's cache blobs are gone; polling Azurite, not the API, adds no Cosmos traffic."""
    prefix = f"{machine_id}/{cycle_id}/"
    _wait(
        lambda: not any(True for _ in cache.list_blobs(name_starts_with=prefix)),
        interval=interval,
        what=f"the uploads of cycle {cycle_id} disposed of",
    )


def _settled_cosmos_ops(stack: LocalStack) -> dict[str, float]:
    """The metric's cumulative total once two exports in a row agree (no Cosmos work in flight)."""
    log = stack.telemetry_file
    readings: list[dict[str, float]] = []

    def settled() -> dict[str, float] | None:
        readings.append(_latest_total(log))
        current = readings[-1]
        # Two intervals apart, so at least one export falls between the two readings.
        return current if current and len(readings) > 1 and current == readings[-2] else None

    return wait_until(
        settled,
        timeout=60,
        interval=2 * METRIC_INTERVAL_MS / 1000,
        what=f"the {METRIC_COSMOS_OPERATIONS} metric to settle",
        hint=f"see {log}",
    )


def _latest_total(log: Path) -> dict[str, float]:
    """The latest export's cumulative count per "operation container"."""
    total: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith('{"resource_metrics"'):
            continue
        document = json.loads(line)
        for resource in document["resource_metrics"]:
            for scope in resource["scope_metrics"]:
                for metric in scope["metrics"]:
                    if metric["name"] == METRIC_COSMOS_OPERATIONS:
                        total = {
                            f"{p['attributes']['db.operation']} {p['attributes']['db.cosmosdb.container']}": float(
                                p["value"]
                            )
                            for p in metric["data"]["data_points"]
                        }
    return total
