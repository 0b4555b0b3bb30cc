"""The local stack survives what Azure survives: a Functions host killed with SIGKILL is restarted by the
stack's supervisor (and nothing else is), replication goes on; Cosmos keeps its data across `down` and
`up --keep-data`, while a plain `up` still starts fresh."""

from __future__ import annotations

import os
import random
import signal
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devhost.local_appliance import register_local_appliance, stack_storage
from devhost.stack import LocalStack, StackPorts
from tests.e2e.conftest import Operator, appliance_of, wait_for
from tests.e2e.test_replication import assert_replicas_match, initial_copy

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MIB = 1024 * 1024


def _ports() -> StackPorts:
    return StackPorts.free()


def _stack(data_dir: Path, ports: StackPorts, *, keep_data: bool = False) -> LocalStack:
    return LocalStack(
        ports,
        data_dir=data_dir,
        keep_data=keep_data,
        host_env={"DEVHOST_EVENTGRID_RETRY_SCHEDULE": "0.5,1,2,4", "DEVHOST_LOG_LEVEL": "INFO"},
    )


@pytest.fixture()
def supervised(tmp_path: Path) -> Iterator[tuple[LocalStack, list[str]]]:
    """A stack of its own (the test kills its host) with the supervisor `python -m devhost up` runs."""
    stack = _stack(tmp_path / "stack", _ports())
    stack.start()
    stopping = threading.Event()
    reports: list[str] = []
    supervisor = threading.Thread(target=stack.supervise, args=(stopping,), kwargs={"report": reports.append})
    supervisor.start()
    try:
        yield stack, reports
    finally:
        stopping.set()
        supervisor.join(timeout=120)
        stack.stop()


def _pids(stack: LocalStack) -> dict[str, int]:
    return {p.name: p.pid for p in stack.processes if p.running()}


def test_a_killed_functions_host_is_restarted_and_only_it(
    supervised: tuple[LocalStack, list[str]], tmp_path: Path
) -> None:
    stack, reports = supervised
    operator = Operator(stack)
    local = register_local_appliance(stack, name=f"appliance-{uuid.uuid4().hex[:6]}")
    workdir = tmp_path / "appliance"
    workdir.mkdir()
    appliance = appliance_of(local, stack_storage(stack), workdir)
    replicator = appliance.machine(operator, disks={"os": 4 * MIB})
    operator.wait_applied(replicator.machine_id, initial_copy(appliance, replicator).cycle_id)

    before = _pids(stack)
    assert set(before) == {
        "azurite",
        "blob-front",
        "cosmosdb-server",
        "local-arm",
        "local-oidc",
        "functions-host",
    }
    os.kill(before["functions-host"], signal.SIGKILL)
    killed_at = time.monotonic()

    def answering_again() -> bool:
        pids = _pids(stack)
        if pids.get("functions-host") in (None, before["functions-host"]):
            return False
        return httpx.get(f"{stack.functions_url}/api/health", timeout=2).status_code == 200

    wait_for(
        answering_again,
        timeout=60,
        what="the Functions host restarted and answering",
        retry_on=(httpx.TransportError,),
    )
    downtime = time.monotonic() - killed_at
    assert downtime < 30, f"the API answered again only after {downtime:.1f} s"
    after = _pids(stack)
    assert {k: v for k, v in after.items() if k != "functions-host"} == {
        k: v for k, v in before.items() if k != "functions-host"
    }, "only the host may be restarted"
    assert any("restarting it" in line for line in reports), reports

    # Replication goes on: the next delta is applied on the restarted host, the replica stays identical.
    rng = random.Random(3)
    replicator.write("os", 512 * rng.randrange(0, 4 * MIB // 512 - 16), rng.randbytes(8192))
    report = replicator.run_cycle()
    machine = operator.wait_applied(replicator.machine_id, report.cycle_id)
    assert machine["lastAppliedSequence"] == report.sequence and machine["health"] == "Healthy"
    assert_replicas_match(appliance, replicator)
    logs = sorted((stack.data_dir / "logs").iterdir())
    assert {p.name for p in logs} >= {"functions-host.log", "local-arm.log", "telemetry.jsonl"}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in logs} == {p.name: 0o600 for p in logs}
    print(f"local stack: the API answered again {downtime:.1f} s after kill -9 of the Functions host")


def test_keep_data_keeps_cosmos_and_a_plain_up_starts_fresh(tmp_path: Path) -> None:
    data_dir, ports = tmp_path / "stack", _ports()
    first = _stack(data_dir, ports)
    first.start()
    try:
        local = register_local_appliance(first, name="keeps-its-data")
        machine_id = f"vm-{uuid.uuid4().hex[:10]}"
        inventory = {
            "id": machine_id,
            "displayName": "kept",
            "osType": "linux",
            "osName": "Ubuntu",
            "osVersion": "22.04",
            "firmware": "BIOS",
            "disks": [{"id": "os", "sizeBytes": MIB, "isOsDisk": True}],
        }
        local.api.report_machines([inventory])
        before = Operator(first).machine(machine_id)
    finally:
        first.stop()

    again = _stack(data_dir, ports, keep_data=True)
    again.start()
    try:
        operator = Operator(again)
        kept = operator.machine(machine_id)
        same = ("id", "applianceId", "displayName", "state", "disks", "osName")
        assert {k: kept.get(k) for k in same} == {k: before.get(k) for k in same}
        assert kept["applianceId"] == local.registration.appliance_id
        listed = operator.call("GET", "/appliances").json()
        assert local.registration.appliance_id in {a["id"] for a in listed["appliances"]}
        # The appliance's credential still works (its hash and the pepper were both kept): the same
        # client, the same ports, a stack started again.
        assert local.api.commands() == []
    finally:
        again.stop()

    fresh = _stack(data_dir, ports)
    fresh.start()
    try:
        assert Operator(fresh).call("GET", f"/machines/{machine_id}").status_code == 404
    finally:
        fresh.stop()
