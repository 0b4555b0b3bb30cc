"""The health story of `make demo`: one failure and its repair, end to end on the local stack.

A replicating machine's appliance reports "Encountered an error while trying to fetch changed blocks"
(changed block tracking was reset). The machine did not opt into automatic repair, so it goes Critical
with the catalog's causes and steps; the operator runs Repair replication; the appliance follows its
ResyncDisk command with a full copy; the job succeeds, health is Healthy again, and the recovery points
taken before the repair are still there.

Only public surfaces are used: the HTTP API with a function key and the appliance credential, the
Event Grid topic through `EventGridPublisherClient`, and blobs written by the appliance's uploader.
"""

from __future__ import annotations

import json
import uuid
from functools import partial
from typing import Any

import httpx
from azure.core.credentials import AzureKeyCredential
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from rich.console import Console

from appliance import CycleUpload, DiskCycle, SasDestination, upload_cycle
from appliance.control_plane import ApplianceApi
from devhost.stack import LocalStack
from devhost.waiting import wait_until
from shared.appliances.events import CYCLE_FAILED, CYCLE_UPLOADED
from shared.domain.cycle import CycleKind

MIB = 1024 * 1024
DISK_ID = "disk-os"
DISK_SIZE = 8 * MIB
CBT_RESET = "Encountered an error while trying to fetch changed blocks"


class HealthDemoFailed(RuntimeError):
    pass


class _Disk:
    """The source disk's point-in-time contents (the uploader's BlockSource)."""

    def __init__(self) -> None:
        self.data = bytearray(DISK_SIZE)
        self.data[: 2 * MIB] = bytes(range(256)) * (2 * MIB // 256)

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.data[offset : offset + length])


_wait = partial(wait_until, timeout=90.0, interval=0.3)


class _Demo:
    def __init__(self, stack: LocalStack) -> None:
        settings = stack.settings
        keys = json.loads((stack.data_dir / "host" / "keys.json").read_text())
        self.operator = httpx.Client(
            base_url=f"{stack.functions_url}/api",
            timeout=30,
            # The operator acts as the local issuer's Administrator (it registers an appliance too).
            headers={
                "x-functions-key": keys["function_default"],
                "Authorization": f"Bearer {stack.operator_token()}",
            },
        )
        self.function_key = keys["function_default"]
        self.functions_url = stack.functions_url
        self.topic = EventGridPublisherClient(
            settings["EVENTGRID_TOPIC_ENDPOINT"], AzureKeyCredential(settings["EVENTGRID_TOPIC_KEY"])
        )
        self.appliance_id = ""
        # The appliance's write-only upload SAS, once it is registered: it holds no storage key.
        self.uploads: SasDestination | None = None
        self.appliance = httpx.Client()  # replaced by the appliance's own client once it is registered

    def call(self, client: httpx.Client, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        response = client.request(method, path, **kwargs)
        if response.status_code != expect:
            raise HealthDemoFailed(f"{method} {path} answered {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None

    def machine(self, machine_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call(self.operator, "GET", f"/machines/{machine_id}", 200)
        return body

    def publish(self, event_type: str, machine_id: str, data: dict[str, Any]) -> None:
        self.topic.send(
            EventGridEvent(
                subject=f"machines/{machine_id}",
                event_type=event_type,
                data_version="1.0",
                data={"applianceId": self.appliance_id, "machineId": machine_id, **data},
            )
        )

    def upload(self, machine_id: str, cycle_id: str, sequence: int, kind: CycleKind, disk: _Disk) -> None:
        assert self.uploads is not None, "register the appliance first"
        manifests = upload_cycle(
            self.uploads,
            CycleUpload(
                machine_id=machine_id,
                cycle_id=cycle_id,
                sequence=sequence,
                kind=kind,
                disks=[DiskCycle(disk_id=DISK_ID, disk_size=disk.size, ranges=[(0, disk.size)], source=disk)],
            ),
        )
        self.publish(
            CYCLE_UPLOADED,
            machine_id,
            {
                "cycleId": cycle_id,
                "sequence": sequence,
                "kind": kind.value,
                "manifests": {DISK_ID: manifests[0]},
            },
        )


def demo_failure_and_repair(stack: LocalStack, console: Console | None = None) -> dict[str, Any]:
    """Run the failure-and-repair story on a running stack; print one line per step; return a summary
    (machine id, health before/after, the error's code and first recommended step, job id and status,
    recovery points before and after, the event types in order). Raises HealthDemoFailed on any
    deviation, TimeoutError when a step never happens. Takes about 15 seconds; it registers its own appliance and machine."""
    console = console or Console()

    def say(text: str) -> None:
        # Errors quote VMware's "[...]" messages: print them as text, not as rich markup.
        console.print(text, markup=False, highlight=False)

    demo = _Demo(stack)
    registered = demo.call(
        demo.operator,
        "POST",
        "/appliances",
        201,
        json={"name": "demo-health-appliance", "kind": "vmware", "site": "datacenter-1"},
    )
    demo.appliance_id = registered["id"]
    demo.appliance = httpx.Client(
        base_url=f"{demo.functions_url}/api",
        timeout=30,
        headers={"x-functions-key": demo.function_key, "Authorization": f"Bearer {registered['credential']}"},
    )
    demo.uploads = SasDestination(
        ApplianceApi(
            demo.functions_url,
            demo.function_key,
            appliance_id=demo.appliance_id,
            credential=registered["credential"],
        )
    )
    machine_id = f"db-{uuid.uuid4().hex[:6]}"
    demo.call(
        demo.appliance,
        "POST",
        f"/appliances/{demo.appliance_id}/machines",
        200,
        json={
            "machines": [
                {
                    "id": machine_id,
                    "displayName": machine_id,
                    "osType": "linux",
                    "osName": "Ubuntu",
                    "osVersion": "20.04",
                    "firmware": "BIOS",
                    "disks": [{"id": DISK_ID, "sizeBytes": DISK_SIZE, "isOsDisk": True}],
                }
            ]
        },
    )
    demo.call(
        demo.operator,
        "PUT",
        f"/machines/{machine_id}/replication",
        202,
        json={
            "resourceGroup": "rg-demo",
            "virtualNetwork": "vnet-demo",
            "subnet": "app",
            "vmSize": "Standard_D2s_v3",
            "autoRepairReplication": False,
        },
    )
    _wait(lambda: demo.machine(machine_id)["state"] == "InitialReplication", what="replication to be enabled")
    disk = _Disk()
    demo.upload(machine_id, f"{machine_id}-c1", 1, CycleKind.INITIAL, disk)
    _wait(lambda: demo.machine(machine_id)["state"] == "Replicating", what="the initial copy")
    disk.data[:4096] = b"\x42" * 4096
    demo.upload(machine_id, f"{machine_id}-c2", 2, CycleKind.DELTA, disk)
    before = _wait(
        lambda: (lambda m: m if m["recoveryPoints"]["count"] == 2 else None)(demo.machine(machine_id)),
        what="the first delta cycle",
    )
    say(f"health: {machine_id} replicating: {before['health']}, 2 recovery points")

    demo.publish(CYCLE_FAILED, machine_id, {"cycleId": f"{machine_id}-c3", "message": CBT_RESET})
    failed = _wait(
        lambda: (lambda m: m if m["health"] == "Critical" else None)(demo.machine(machine_id)),
        what="the failure to raise health",
    )
    error = failed["currentErrors"][0]
    say(
        f"health: appliance reported {CBT_RESET!r} -> {error['code']} {error['title']}: "
        f"health {failed['health']}"
    )
    say(f"health:   first cause: {error['causes'][0][:140]}")
    say(f"health:   next step:   {error['recommendations'][1][:140]}")

    accepted = demo.call(demo.operator, "POST", f"/machines/{machine_id}/repair", 202)
    job_id = accepted["jobId"]
    say(f"health: operator ran Repair replication: job {job_id} ({accepted['job']['kind']})")
    commands = _wait(
        lambda: [
            c
            for c in demo.call(demo.appliance, "GET", f"/appliances/{demo.appliance_id}/commands", 200)[
                "commands"
            ]
            if c["machineId"] == machine_id and c["kind"] == "ResyncDisk"
        ],
        what="the ResyncDisk command",
    )
    for command in commands:
        demo.call(
            demo.appliance, "POST", f"/appliances/{demo.appliance_id}/commands/{command['id']}/ack", 200
        )
    demo.upload(machine_id, f"{machine_id}-c3", 3, CycleKind.RESYNC, disk)
    job = _wait(
        lambda: (lambda j: j if j["status"] == "Succeeded" else None)(
            demo.call(demo.operator, "GET", f"/jobs/{job_id}", 200)
        ),
        what="the repair job",
    )
    after = demo.machine(machine_id)
    if after["health"] != "Healthy" or after["currentErrors"] or after["recoveryPoints"]["count"] != 3:
        raise HealthDemoFailed(
            f"after the repair: health {after['health']}, errors {after['currentErrors']}, "
            f"{after['recoveryPoints']['count']} recovery points"
        )
    history = demo.call(demo.operator, "GET", f"/machines/{machine_id}/events", 200)["events"]
    say(
        f"health: resync applied: job {job['status']}, health {after['health']}, "
        f"{after['recoveryPoints']['count']} recovery points (none lost)"
    )
    return {
        "machineId": machine_id,
        "healthBefore": before["health"],
        "healthAfterFailure": failed["health"],
        "errorCode": error["code"],
        "recommendedStep": error["recommendations"][1],
        "repairJobId": job_id,
        "repairJobStatus": job["status"],
        "healthAfterRepair": after["health"],
        "recoveryPoints": {"beforeRepair": 2, "afterRepair": after["recoveryPoints"]["count"]},
        "events": [e["type"] for e in reversed(history)],
    }
