"""The HTTP blueprints, called through the registered functions with real azure.functions.HttpRequest
objects (the local Functions host that serves them over HTTP lands separately). Services run over the
in-memory store; the Durable client talks to a small stand-in for the extension's RPC endpoints, so the
seam to the per-machine orchestration is exercised with the real SDK client."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import azure.functions as func
import pytest
from azure.durable_functions.models.utils import http_utils

from orchestrators.names import MACHINE_REPLICATION, OPERATOR_REQUEST
from shared.appliances.credentials import CredentialHasher
from shared.bootstrap import Services, use_services
from shared.domain.api import ForbiddenTransitionDetail
from shared.domain.cycle import Consistency, RecoveryPoint
from shared.domain.lifecycle import MachineState
from shared.domain.machine import Machine
from shared.domain.principal import Role
from shared.platform.repository import Repositories
from shared.platform.settings import Settings
from tests.support.memory_store import InMemoryDocumentStore
from tests.support.product_app import product_functions
from tests.support.tokens import FakeTenant

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
GIB = 1024**3
TARGET = {
    "resourceGroup": "rg-target",
    "virtualNetwork": "vnet-prod",
    "subnet": "app",
    "subnetAddressPrefix": "10.1.2.0/24",
    "vmSize": "Standard_D4s_v3",
    "staticIpAddress": "10.1.2.10",
}


def machine_json(machine_id: str, name: str = "web01") -> dict[str, Any]:
    return {
        "id": machine_id,
        "displayName": name,
        "osType": "linux",
        "osName": "Ubuntu",
        "osVersion": "20.04",
        "firmware": "BIOS",
        "disks": [{"id": "sda", "sizeBytes": 20 * GIB, "isOsDisk": True}],
    }


@pytest.fixture
def services() -> Iterator[Services]:
    built = Services(
        settings=Settings.from_environ(
            {
                "COSMOS_ENDPOINT": "https://127.0.0.1:1/",
                "CACHE_STORAGE_CONNECTION_STRING": "unused",
                "REPLICA_STORAGE_CONNECTION_STRING": "unused",
                "EVENTGRID_TOPIC_ENDPOINT": "http://127.0.0.1:1/",
                "APPLIANCE_CREDENTIAL_PEPPER": "unused",
            }
        ),
        repos=Repositories(InMemoryDocumentStore()),
        hasher=CredentialHasher(b"api-test-pepper-0123456789", n=2**12),
        clock=lambda: NOW,
    )
    built.operator_auth = TENANT.validator()
    with use_services(built):
        yield built


FUNCTIONS = {f.get_function_name(): f for f in product_functions()}
# Operator calls carry an Administrator's token unless a test sends its own Authorization.
TENANT = FakeTenant()
ADMINISTRATOR_TOKEN = TENANT.token(Role.ADMINISTRATOR)


def call(
    name: str,
    method: str,
    url: str,
    *,
    body: Any = None,
    route: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    credential: str | None = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> tuple[int, Any, func.HttpResponse]:
    headers = {"Content-Type": content_type, **(headers or {})}
    headers.setdefault("Authorization", f"Bearer {credential or ADMINISTRATOR_TOKEN}")
    req = func.HttpRequest(
        method,
        url,
        headers=headers,
        params=params or {},
        route_params=route or {},
        body=raw if raw is not None else (json.dumps(body).encode() if body is not None else b""),
    )
    user_function = FUNCTIONS[name].get_user_function()
    result = user_function(req=req, **extra)
    if asyncio.iscoroutine(result):
        result = run(result)
    payload = json.loads(result.get_body()) if result.get_body() else None
    return result.status_code, payload, result


def run(coro: Any) -> Any:
    async def and_close_sdk_session() -> Any:
        try:
            return await coro
        finally:
            # The SDK keeps one aiohttp session per process; each test has its own event loop.
            if http_utils._client_session is not None:
                await http_utils._client_session.close()
                http_utils._client_session = None

    return asyncio.run(and_close_sdk_session())


class FakeDurableExtension:
    """The RPC endpoints the Durable extension serves to DurableOrchestrationClient, recording calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.running: set[str] = set()
        self.custom_status: dict[str, Any] = {}  # an instance's customStatus, as its orchestration set it
        self.runtime_status: dict[str, str] = {}  # "Running" unless set
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                instance = self.path.split("?")[0].rstrip("/").split("/")[-1]
                outer.calls.append(("GET", self.path, None))
                if instance in outer.running:
                    self._reply(
                        202,
                        {
                            "name": MACHINE_REPLICATION,
                            "instanceId": instance,
                            "runtimeStatus": outer.runtime_status.get(instance, "Running"),
                            "createdTime": "2026-11-22T02:00:00Z",
                            "lastUpdatedTime": "2026-11-22T02:00:00Z",
                            "customStatus": outer.custom_status.get(instance),
                        },
                    )
                else:
                    self._reply(404, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                outer.calls.append(("POST", self.path, body))
                parts = self.path.split("?")[0].strip("/").split("/")
                if "orchestrators" in parts:
                    instance = parts[-1]
                    if instance in outer.running and outer.runtime_status.get(instance, "Running") in (
                        "Running",
                        "Pending",
                        "ContinuedAsNew",
                    ):
                        # Durable refuses to start over an instance that has not ended.
                        self._reply(409, {"Message": f"An Orchestration instance {instance} already exists."})
                        return
                    outer.running.add(instance)
                    outer.runtime_status.pop(instance, None)
                    self._reply(202, {"id": instance})
                elif parts[-1] == "terminate":
                    outer.runtime_status[parts[-2]] = "Terminated"
                    self._reply(202, {})
                else:
                    self._reply(202, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def client_json(self) -> str:
        port = self.server.server_address[1]
        return json.dumps(
            {
                "taskHubName": "MigrationHub",
                "creationUrls": {},
                "managementUrls": {},
                "rpcBaseUrl": f"http://127.0.0.1:{port}/durabletask/",
            }
        )

    def posts(self) -> list[tuple[str, Any]]:
        # The SDK serialises the input to JSON text and posts that text as a JSON string: decode both layers.
        return [
            (path.split("?")[0], json.loads(body) if isinstance(body, str) else body)
            for method, path, body in self.calls
            if method == "POST"
        ]


@pytest.fixture
def durable() -> Iterator[FakeDurableExtension]:
    fake = FakeDurableExtension()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def register(name: str = "site-a") -> tuple[str, str]:
    status, body, response = call(
        "register_appliance",
        "POST",
        "/api/appliances",
        body={"name": name, "kind": "hyperv", "site": "host-01"},
    )
    assert status == 201, body
    assert response.headers["Cache-Control"] == "no-store"
    return body["id"], body["credential"]


def report(appliance_id: str, credential: str | None, *machines: dict[str, Any]) -> tuple[int, Any]:
    status, body, _ = call(
        "report_machines",
        "POST",
        f"/api/appliances/{appliance_id}/machines",
        body={"machines": list(machines)},
        route={"applianceId": appliance_id},
        credential=credential,
    )
    return status, body


# -- appliance routes -------------------------------------------------------------------------------------


def test_register_returns_the_credential_and_default_policy(services: Services) -> None:
    status, body, response = call(
        "register_appliance",
        "POST",
        "/api/appliances",
        body={"name": "hv-cluster", "kind": "hyperv", "site": "dc1"},
    )
    assert status == 201
    assert response.headers["Location"] == f"/api/appliances/{body['id']}/policy"
    assert body["credential"].startswith(body["id"] + ".")
    assert body["policy"]["uploadThreadsPerVm"] == 4
    stored = services.repos.appliances.require(body["id"]).item
    assert body["credential"] not in stored.to_wire().values()


def test_register_with_a_typo_is_a_400_naming_the_field(services: Services) -> None:
    status, body, _ = call(
        "register_appliance",
        "POST",
        "/api/appliances",
        body={"name": "x", "kind": "hyper-v", "site": "dc1", "siteName": "dc1"},
    )
    assert status == 400
    assert body["error"]["code"] == "ValidationFailed"
    assert {d["field"] for d in body["error"]["details"]} == {"kind", "siteName"}


@pytest.mark.parametrize(
    ("raw", "problem"), [(b"{not json", "is not valid JSON"), (b"[1, 2]", "must be a JSON object")]
)
def test_malformed_body_is_a_400(services: Services, raw: bytes, problem: str) -> None:
    status, body, _ = call("register_appliance", "POST", "/api/appliances", raw=raw)
    assert status == 400 and problem in body["error"]["details"][0]["problem"]


def test_report_requires_the_appliance_credential(services: Services) -> None:
    appliance_id, credential = register()
    status, body = report(appliance_id, None, machine_json("vm-1"))
    assert status == 401 and body["error"]["code"] == "Unauthorized"
    status, body = report(appliance_id, credential[:-2] + "xx", machine_json("vm-1"))
    assert status == 401
    status, body = report(appliance_id, credential, machine_json("vm-1"))
    assert status == 200 and body == {
        "machines": [{"id": "vm-1", "outcome": "Created", "state": "Discovered"}]
    }


def test_unauthorized_carries_a_bearer_challenge(services: Services) -> None:
    appliance_id, _ = register()
    _, _, response = call("list_commands", "GET", "/", route={"applianceId": appliance_id})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")


def test_appliance_cannot_act_for_another_or_on_its_machines(services: Services) -> None:
    a_id, a_cred = register("a")
    b_id, b_cred = register("b")
    assert report(a_id, a_cred, machine_json("vm-1"))[0] == 200
    status, body = report(a_id, b_cred, machine_json("vm-2"))
    assert status == 403 and a_id in body["error"]["message"]
    status, body = report(b_id, b_cred, machine_json("vm-1", name="stolen"))
    assert status == 403 and body["error"]["details"] == [{"machineId": "vm-1"}]
    assert services.repos.machines.require("vm-1").item.inventory.display_name == "web01"


def test_commands_poll_and_ack(services: Services) -> None:
    from shared.appliances import commands
    from shared.domain.command import CommandKind

    appliance_id, credential = register()
    report(appliance_id, credential, machine_json("vm-1"))
    commands.queue_command(
        services.repos, command_id="cmd-1", machine_id="vm-1", kind=CommandKind.SHUT_DOWN_SOURCE, now=NOW
    )
    status, body, _ = call(
        "list_commands", "GET", "/", route={"applianceId": appliance_id}, credential=credential
    )
    assert status == 200 and [(c["id"], c["kind"], c["status"]) for c in body["commands"]] == [
        ("cmd-1", "ShutDownSource", "Pending")
    ]
    status, body, _ = call(
        "acknowledge_command",
        "POST",
        "/",
        credential=credential,
        route={"applianceId": appliance_id, "commandId": "cmd-1"},
    )
    assert status == 200 and body["status"] == "Acknowledged"
    status, body, _ = call(
        "list_commands", "GET", "/", route={"applianceId": appliance_id}, credential=credential
    )
    assert body == {"commands": []}


def test_a_reverse_command_is_acknowledged_with_its_answer(services: Services) -> None:
    from shared.appliances import commands
    from shared.domain.command import ChangedBlocks, ReportChangedBlocks

    appliance_id, credential = register()
    report(appliance_id, credential, machine_json("vm-1"))
    request = ReportChangedBlocks(disk_id="disk-0", since_cycle_id="vm-1-000003-abcd")
    commands.queue_reverse_command(
        services.repos, command_id="changed-1", machine_id="vm-1", request=request, now=NOW
    )
    again = commands.queue_reverse_command(
        services.repos, command_id="changed-1", machine_id="vm-1", request=request, now=NOW
    )
    assert again.request() == request
    status, body, _ = call(
        "list_commands", "GET", "/", route={"applianceId": appliance_id}, credential=credential
    )
    assert [(c["kind"], c["diskId"], c["sinceCycleId"]) for c in body["commands"]] == [
        ("ReportChangedBlocks", "disk-0", "vm-1-000003-abcd")
    ]
    answer = {
        "result": {
            "kind": "ReportChangedBlocks",
            "diskId": "disk-0",
            "sinceCycleId": "vm-1-000003-abcd",
            "available": False,
            "reason": "changed block tracking was reset",
        }
    }
    route = {"applianceId": appliance_id, "commandId": "changed-1"}
    status, body, _ = call(
        "acknowledge_command", "POST", "/", credential=credential, route=route, body=answer
    )
    assert status == 200 and body["status"] == "Acknowledged"
    assert body["result"]["available"] is False
    # A repeated ack keeps the first answer.
    other = {"result": {**answer["result"], "available": True, "reason": None, "ranges": [[0, 512]]}}
    status, body, _ = call("acknowledge_command", "POST", "/", credential=credential, route=route, body=other)
    assert status == 200 and body["result"]["available"] is False
    stored = services.repos.commands.require("changed-1", appliance_id).item
    assert stored.result == ChangedBlocks(
        disk_id="disk-0",
        since_cycle_id="vm-1-000003-abcd",
        available=False,
        reason="changed block tracking was reset",
    )
    status, body, _ = call(
        "acknowledge_command",
        "POST",
        "/",
        credential=credential,
        route=route,
        body={"result": {"kind": "Nope"}},
    )
    assert status == 400


def test_policy_for_the_appliance_and_for_operators(services: Services) -> None:
    appliance_id, credential = register()
    status, body, _ = call(
        "update_policy",
        "PUT",
        "/",
        route={"applianceId": appliance_id},
        body={"uploadThreadsPerVm": 8, "throttlingEnabled": True, "workHoursBandwidthKbps": 512},
    )
    assert status == 200 and body["uploadThreadsPerVm"] == 8
    as_appliance = call("get_policy", "GET", "/", route={"applianceId": appliance_id}, credential=credential)
    as_operator = call("get_policy", "GET", "/", route={"applianceId": appliance_id})
    assert as_appliance[1] == as_operator[1] == body
    other_id, _ = register("other")
    status, _, _ = call("get_policy", "GET", "/", route={"applianceId": other_id}, credential=credential)
    assert status == 403


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"uploadThreadsPerVm": 33}, "uploadThreadsPerVm", "must be between 1 and 32; got 33"),
        ({"uploadThreadsPerVm": 0}, "uploadThreadsPerVm", "must be between 1 and 32; got 0"),
        ({"nonWorkHoursBandwidthKbps": 511}, "nonWorkHoursBandwidthKbps", "between 512 Kbps and 1,023 Mbps"),
        ({"workHoursBandwidthKbps": 1_047_553}, "workHoursBandwidthKbps", "between 512 Kbps and 1,023 Mbps"),
    ],
)
def test_policy_out_of_range_is_a_400_naming_the_range(
    services: Services, change: dict[str, int], field: str, text: str
) -> None:
    appliance_id, _ = register()
    status, body, _ = call("update_policy", "PUT", "/", route={"applianceId": appliance_id}, body=change)
    assert status == 400
    [detail] = body["error"]["details"]
    assert detail["field"] == field and text in detail["problem"]
    assert services.repos.appliances.require(appliance_id).item.policy.upload_threads_per_vm == 4


def test_policy_of_unknown_appliance_is_404(services: Services) -> None:
    status, body, _ = call("get_policy", "GET", "/", route={"applianceId": "appl-missing"})
    assert status == 404 and body["error"] == {
        "code": "NotFound",
        "message": "appliance appl-missing does not exist",
        "details": [{"id": "appl-missing"}],
    }


# -- machine routes ---------------------------------------------------------------------------------------


def enable(
    durable: FakeDurableExtension, machine_id: str, target: dict[str, Any]
) -> tuple[int, Any, func.HttpResponse]:
    return call(
        "enable_replication",
        "PUT",
        f"/api/machines/{machine_id}/replication",
        body=target,
        route={"machineId": machine_id},
        client=durable.client_json,
    )


def test_enable_replication_starts_the_machine_orchestration(
    services: Services, durable: FakeDurableExtension
) -> None:
    appliance_id, credential = register()
    report(appliance_id, credential, machine_json("vm-1"))
    status, body, response = enable(durable, "vm-1", TARGET)
    assert status == 202, body
    job_id = body["jobId"]
    assert response.headers["Location"] == f"/api/jobs/{job_id}" == body["statusUrl"]
    assert body["job"]["kind"] == "EnableReplication"
    assert durable.posts() == [
        (
            f"/durabletask/orchestrators/{MACHINE_REPLICATION}/machine-vm-1",
            {"machineId": "vm-1", "jobId": job_id, "kind": "EnableReplication"},
        )
    ]
    status, job, _ = call("get_job", "GET", "/", route={"jobId": job_id})
    assert status == 200 and job["status"] == "InProgress" and len(job["steps"]) == 3
    status, machine, _ = call("get_machine", "GET", "/", route={"machineId": "vm-1"})
    assert machine["state"] == "EnablingReplication" and machine["activeJobId"] == job_id
    assert machine["target"]["staticIpAddress"] == "10.1.2.10"

    # Retrying the same request does not deliver it twice to the (now running) orchestration.
    status, again, _ = enable(durable, "vm-1", TARGET)
    assert status == 202 and again["jobId"] == job_id
    assert len(durable.posts()) == 1


def test_stop_replication_is_raised_on_the_running_orchestration(
    services: Services, durable: FakeDurableExtension
) -> None:
    appliance_id, credential = register()
    report(appliance_id, credential, machine_json("vm-1"))
    enable(durable, "vm-1", TARGET)

    def replicating(machine: Machine) -> None:
        machine.state = MachineState.REPLICATING

    services.repos.machines.update_with_retry("vm-1", replicating)
    status, body, _ = call(
        "stop_replication", "DELETE", "/", route={"machineId": "vm-1"}, client=durable.client_json
    )
    assert status == 202 and body["job"]["kind"] == "StopReplication"
    path, payload = durable.posts()[-1]
    assert path == f"/durabletask/instances/machine-vm-1/raiseEvent/{OPERATOR_REQUEST}"
    assert payload == {"machineId": "vm-1", "jobId": body["jobId"], "kind": "StopReplication"}
    stop_job = body["jobId"]
    # The same request again (a client retrying) gets the same job; another caller's is refused, naming it.
    status, body, _ = call(
        "stop_replication", "DELETE", "/", route={"machineId": "vm-1"}, client=durable.client_json
    )
    assert status == 202 and body["jobId"] == stop_job
    status, body, _ = call(
        "stop_replication",
        "DELETE",
        "/",
        route={"machineId": "vm-1"},
        credential=TENANT.token(Role.OPERATOR, oid="00000000-0000-0000-0000-0000000000b2", name="Bo"),
        client=durable.client_json,
    )
    assert status == 409 and body["error"]["code"] == "ForbiddenTransition"
    assert {"activeJobId": stop_job, "kind": "StopReplication", "status": "InProgress"} in body["error"][
        "details"
    ]


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"staticIpAddress": "10.9.9.9"}, "staticIpAddress", "outside subnet app (10.1.2.0/24)"),
        ({"subnet": None}, "subnet", "is required"),
        ({"vmSize": "huge"}, "vmSize", "not an Azure VM size name"),
        ({"targetVmName": "bad_name"}, "targetVmName", "cannot use: '_'"),
        ({"diskType": "Premium_LRS", "vmSize": "Standard_D4_v3"}, "diskType", "choose an 's' size"),
        ({"resourceGroupName": "rg"}, "resourceGroupName", "not a known field"),
    ],
)
def test_enable_replication_400s_name_the_field_and_start_nothing(
    services: Services, durable: FakeDurableExtension, change: dict[str, Any], field: str, text: str
) -> None:
    appliance_id, credential = register()
    report(appliance_id, credential, machine_json("vm-1"))
    target = {k: v for k, v in {**TARGET, **change}.items() if v is not None}
    status, body, _ = enable(durable, "vm-1", target)
    assert status == 400
    assert any(d["field"] == field and text in d["problem"] for d in body["error"]["details"]), body
    assert durable.calls == []
    assert services.repos.machines.require("vm-1").item.state is MachineState.DISCOVERED


def test_enable_unknown_machine_is_404(services: Services, durable: FakeDurableExtension) -> None:
    status, body, _ = enable(durable, "ghost", TARGET)
    assert status == 404 and body["error"]["code"] == "NotFound" and durable.calls == []


def test_enable_when_replicating_is_409(services: Services, durable: FakeDurableExtension) -> None:
    appliance_id, credential = register()
    report(appliance_id, credential, machine_json("vm-1"))
    enable(durable, "vm-1", TARGET)
    status, body, _ = enable(durable, "vm-1", {**TARGET, "vmSize": "Standard_D8s_v3"})
    assert status == 409
    assert body["error"]["message"].startswith(
        "cannot enable replication: machine vm-1 is EnablingReplication"
    )


def test_list_and_get_machines(services: Services) -> None:
    appliance_id, credential = register()
    report(appliance_id, credential, *(machine_json(f"vm-{i}") for i in range(3)))
    status, body, _ = call(
        "list_machines", "GET", "/", params={"applianceId": appliance_id, "pageSize": "2", "code": "k"}
    )
    assert status == 200 and [m["id"] for m in body["machines"]] == ["vm-0", "vm-1"]
    assert body["machines"][0] | {"recoveryPoints": None} == {
        "id": "vm-0",
        "applianceId": appliance_id,
        "displayName": "web01",
        "osType": "linux",
        "firmware": "BIOS",
        "state": "Discovered",
        "activeLocation": "onPremises",
        "health": "Healthy",
        "progressPercent": 0.0,
        "lastSyncTime": None,
        "lastAppliedSequence": None,
        "rpoSeconds": None,
        "recoveryPoints": None,
        "currentErrorCount": 0,
        "allowedOperations": ["enableReplication"],
    }
    status, more, _ = call(
        "list_machines",
        "GET",
        "/",
        params={"continuationToken": body["continuationToken"], "applianceId": appliance_id},
    )
    assert [m["id"] for m in more["machines"]] == ["vm-2"] and more["continuationToken"] is None
    status, body, _ = call("list_machines", "GET", "/", params={"state": "Flying"})
    assert status == 400 and body["error"]["details"][0]["field"] == "state"
    status, body, _ = call("get_machine", "GET", "/", route={"machineId": "vm-9"})
    assert status == 404


def test_bad_path_id_is_a_400(services: Services) -> None:
    status, body, _ = call("get_machine", "GET", "/", route={"machineId": "a b"})
    assert status == 400 and body["error"]["details"][0]["field"] == "machineId"


def test_unexpected_errors_are_500s_that_leak_nothing(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret connection string in message")

    monkeypatch.setattr(services.repos.machines, "require", explode)
    status, body, _ = call("get_machine", "GET", "/", route={"machineId": "vm-1"})
    assert status == 500 and body["error"]["code"] == "InternalError"
    assert "secret" not in json.dumps(body)


def test_every_route_needs_a_function_key_except_health() -> None:
    levels: dict[str, str] = {}
    for name, fn in FUNCTIONS.items():
        for binding in json.loads(fn.get_function_json())["bindings"]:
            if binding["type"] == "httpTrigger":
                levels[name] = binding["authLevel"]
    assert levels.pop("health") == "ANONYMOUS"
    assert set(levels.values()) == {"FUNCTION"}


def test_events_newest_first_with_causes_and_recommendations(services: Services) -> None:
    from shared.domain.event import Event, Severity
    from shared.health import events

    appliance_id, credential = register()
    report(appliance_id, credential, machine_json("vm-1"))
    for minute, code in ((1, "1011"), (2, "181008")):
        events.record_event(
            services.repos,
            Event(
                id=f"ev-{minute}",
                machine_id="vm-1",
                time=NOW.replace(minute=minute),
                type="Replication cycle failed",
                severity=Severity.WARNING,
                message="upload timed out",
                error_code=code,
                causes=["the appliance could not reach the cache storage account"],
                recommendations=["check the appliance's outbound HTTPS 443 connectivity"],
            ),
        )
    status, body, _ = call(
        "list_machine_events", "GET", "/", route={"machineId": "vm-1"}, params={"limit": "5"}
    )
    assert status == 200
    assert [(e["id"], e["errorCode"]) for e in body["events"]] == [("ev-2", "181008"), ("ev-1", "1011")]
    assert body["events"][0]["recommendations"] == ["check the appliance's outbound HTTPS 443 connectivity"]
    status, body, _ = call(
        "list_machine_events", "GET", "/", route={"machineId": "vm-1"}, params={"limit": "1"}
    )
    assert [e["id"] for e in body["events"]] == ["ev-2"]
    status, body, _ = call("list_machine_events", "GET", "/", route={"machineId": "ghost"})
    assert status == 404
    status, body, _ = call(
        "list_machine_events", "GET", "/", route={"machineId": "vm-1"}, params={"limit": "x"}
    )
    assert status == 400 and body["error"]["details"] == [
        {"field": "limit", "problem": "must be an integer; got 'x'"}
    ]


def test_a_forbidden_operation_is_a_409_that_lists_the_allowed_operations(
    services: Services, durable: FakeDurableExtension
) -> None:
    appliance_id, credential = register()
    report(appliance_id, credential, machine_json("vm-1"))
    enable(durable, "vm-1", TARGET)

    def replicating(machine: Machine) -> None:
        machine.state = MachineState.REPLICATING

    services.repos.machines.update_with_retry("vm-1", replicating)
    status, machine, _ = call("get_machine", "GET", "/", route={"machineId": "vm-1"})
    allowed = ["stopReplication", "repair", "testMigrate", "migrate", "failover"]
    assert status == 200 and machine["allowedOperations"] == allowed
    status, listed, _ = call("list_machines", "GET", "/")
    assert [m["allowedOperations"] for m in listed["machines"]] == [allowed]

    # Not in the list: the lifecycle refuses it, and the 409 says what is allowed instead.
    status, body, _ = call(
        "test_migrate_cleanup", "POST", "/", route={"machineId": "vm-1"}, client=durable.client_json
    )
    assert status == 409 and body["error"]["code"] == "ForbiddenTransition"
    detail, running = body["error"]["details"]
    assert detail["allowedOperations"] == allowed
    # The machine's enable-replication job never finished here: the 409 names it.
    assert running["activeJobId"] in body["error"]["message"]
    assert ForbiddenTransitionDetail.model_validate(detail).from_state is MachineState.REPLICATING
    assert services.repos.machines.require("vm-1").item.state is MachineState.REPLICATING


def test_recovery_points_newest_first_each_covering_every_disk(services: Services) -> None:
    appliance_id, credential = register()
    two_disks = [
        {"id": "sda", "sizeBytes": 20 * GIB, "isOsDisk": True},
        {"id": "sdb", "sizeBytes": GIB},
    ]
    report(appliance_id, credential, {**machine_json("vm-1"), "disks": two_disks})
    base = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)

    def with_points(machine: Machine) -> None:
        disks = [d.id for d in machine.inventory.disks]
        machine.replication.recovery_points = [
            RecoveryPoint(
                id=f"p{i}",
                cycle_id=f"c{i}",
                time=base + timedelta(minutes=i),
                consistency=Consistency.APP if i == 1 else Consistency.CRASH,
                disk_snapshots={d: f"s{i}" for d in (disks if i != 2 else disks[:1])},
            )
            for i in range(4)
        ]

    services.repos.machines.update_with_retry("vm-1", with_points)
    disks = ["sda", "sdb"]
    status, body, _ = call("list_recovery_points", "GET", "/", route={"machineId": "vm-1"})
    assert status == 200
    # p2 lacks a disk: it cannot bring the machine back, so it is not a recovery point.
    assert [p["id"] for p in body["recoveryPoints"]] == ["p3", "p1", "p0"]
    assert body["recoveryPoints"][1] == {
        "id": "p1",
        "time": "2026-11-22T03:01:00Z",
        "consistency": "app",
        "cycleId": "c1",
        "disks": disks,
    }
    status, body, _ = call("list_recovery_points", "GET", "/", route={"machineId": "ghost"})
    assert status == 404 and body["error"]["code"] == "NotFound"
