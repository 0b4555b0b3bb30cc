"""The SDK's own DurableOrchestrationClient (aiohttp) against the engine's routes on a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import httpx
import pytest
import uvicorn
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus
from azure.durable_functions.models.utils import http_utils
from starlette.applications import Starlette

from devhost.durable import DurableEngine, ManualClock
from devhost.functions_host.index import FunctionIndex
from devhost.processes import free_port
from tests.contract.conftest import run, running_engine, settle

pytestmark = pytest.mark.contract


@asynccontextmanager
async def served(
    index: FunctionIndex, data_dir: Path, clock: ManualClock | None = None
) -> AsyncIterator[DurableEngine]:
    port = free_port()
    async with running_engine(index, data_dir, clock=clock, base_url=f"http://127.0.0.1:{port}") as engine:
        server = uvicorn.Server(
            uvicorn.Config(
                Starlette(routes=engine.routes()),
                host="127.0.0.1",
                port=port,
                log_level="warning",
                lifespan="off",
            )
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            yield engine
        finally:
            # The SDK keeps one aiohttp session per process; close it on this loop before the loop ends.
            await http_utils._close_session()
            server.should_exit = True
            await serving


def test_client_start_status_events_terminate_purge(durable_index: FunctionIndex, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with served(durable_index, tmp_path) as engine:
            client = df.DurableOrchestrationClient(engine.client_binding_json())
            instance_id = await client.start_new("two_events", None, {"ignored": True})
            assert instance_id
            explicit = await client.start_new("sequence", "client-seq", ["Rome"])
            assert explicit == "client-seq"

            await client.raise_event(instance_id, "Step", {"a": 1})
            await client.raise_event(instance_id, "Step", [2, "b"])
            await engine.wait_for_idle(10)
            status = await client.get_status(instance_id)
            assert status.runtime_status == OrchestrationRuntimeStatus.Completed
            assert status.output == [{"a": 1}, [2, "b"]]
            assert status.input_ == {"ignored": True}
            assert status.created_time is not None and status.last_updated_time is not None

            with_history = await client.get_status("client-seq", show_history=True, show_history_output=True)
            assert with_history.output == {"greetings": ["Hello Rome"], "doubled": 2}
            assert with_history.history[0]["EventType"] == "ExecutionStarted"
            assert any(e.get("Result") == '"Hello Rome"' for e in with_history.history)

            missing = await client.get_status("no-such-instance")
            assert not missing  # the SDK's falsy status for 404

            with pytest.raises(Exception, match="is gone"):
                await client.raise_event(instance_id, "Step", 3)  # 410: completed
            with pytest.raises(Exception, match="No instance with ID"):
                await client.raise_event("no-such-instance", "Step", 3)  # 404

            waiting = await client.start_new("waits_forever", "client-wait", None)
            await engine.wait_for_idle(10)
            running = await client.get_status(waiting)
            assert running.runtime_status == OrchestrationRuntimeStatus.Running
            assert running.custom_status == "waiting for Never"
            await client.terminate(waiting, "stop it")
            await engine.wait_for_idle(10)
            terminated = await client.get_status(waiting)
            assert terminated.runtime_status == OrchestrationRuntimeStatus.Terminated
            assert terminated.output == "stop it"
            await client.terminate(waiting, "again")  # 410 is accepted silently by the SDK
            with pytest.raises(Exception, match="No instance with ID"):
                await client.terminate("no-such-instance", "x")

            everything = await client.get_status_all()
            assert {s.instance_id for s in everything} == {instance_id, "client-seq", "client-wait"}
            by_status = await client.get_status_by(runtime_status=[OrchestrationRuntimeStatus.Terminated])
            assert [s.instance_id for s in by_status] == ["client-wait"]
            by_prefix = await client.get_status_by(instance_id_prefix="client-")
            assert {s.instance_id for s in by_prefix} == {"client-seq", "client-wait"}

            purged = await client.purge_instance_history("client-wait")
            assert purged.instances_deleted == 1
            again = await client.purge_instance_history("client-wait")
            assert again.instances_deleted == 0
            yesterday = datetime.now(UTC) - timedelta(days=1)
            purged_many = await client.purge_instance_history_by(
                created_time_from=yesterday, runtime_status=[OrchestrationRuntimeStatus.Completed]
            )
            assert purged_many.instances_deleted == 2
            assert await client.get_status_all() == []

    run(scenario())


def test_client_entities(durable_index: FunctionIndex, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with served(durable_index, tmp_path) as engine:
            client = df.DurableOrchestrationClient(engine.client_binding_json())
            counter = df.EntityId("counter", "via-client")
            missing = await client.read_entity_state(counter)
            assert not missing.entity_exists
            await client.signal_entity(counter, "add", 40)
            await client.signal_entity(counter, "add", 2)
            await engine.wait_for_idle(10)
            state = await client.read_entity_state(counter)
            assert state.entity_exists and state.entity_state == 42

    run(scenario())


def test_http_starters_run_unchanged(durable_index: FunctionIndex, tmp_path: Path) -> None:
    """The test app's HTTP starters get the binding JSON string, as the host passes it."""

    async def scenario() -> None:
        async with served(durable_index, tmp_path) as engine:
            starter = durable_index.functions["http_start"].user_function
            request = func.HttpRequest(
                method="POST",
                url="http://localhost:7071/api/start/sequence",
                route_params={"name": "sequence"},
                body=json.dumps(["Kyiv"]).encode(),
            )
            response = await starter(req=request, client=engine.client_binding_json())
            assert response.status_code == 202
            links = json.loads(response.get_body())
            assert links["statusQueryGetUri"].startswith(
                "http://localhost:7071/runtime/webhooks/durabletask/instances/"
            )
            assert response.headers["Location"] == links["statusQueryGetUri"]
            await engine.wait_for_idle(10)
            # The management URL works against the engine once the origin is the engine's own.
            status_url = links["statusQueryGetUri"].replace("http://localhost:7071", engine.base_url)
            async with httpx.AsyncClient() as http:
                answer = await http.get(status_url)
                assert answer.status_code == 200
                assert answer.json()["output"] == {"greetings": ["Hello Kyiv"], "doubled": 2}
                pending = await http.post(
                    f"{engine.base_url}/runtime/webhooks/durabletask/orchestrators/waits_forever",
                    params={"code": engine.system_key},
                )
                assert pending.status_code == 202
                assert (await http.get(pending.json()["statusQueryGetUri"])).status_code == 202

            waiter = durable_index.functions["http_run"].user_function
            request = func.HttpRequest(
                method="POST",
                url="http://localhost:7071/api/run/fan_out",
                route_params={"name": "fan_out"},
                body=b"10",
            )
            response = await waiter(req=request, client=engine.client_binding_json())
            assert response.status_code == 200
            assert json.loads(response.get_body()) == sum(i * i for i in range(10))

    run(scenario())


def test_failed_instance_status_and_unknown_orchestrator(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with served(durable_index, tmp_path) as engine:
            client = df.DurableOrchestrationClient(engine.client_binding_json())
            with pytest.raises(Exception, match="doesn't exist, is disabled, or is not an orchestrator"):
                await client.start_new("no_such_orchestrator")
            instance_id = await client.start_new("failing_child")
            await settle(engine, instance_id)
            status = await client.get_status(instance_id)  # 500 from the API, parsed by the SDK
            assert status.runtime_status == OrchestrationRuntimeStatus.Failed
            assert "always fails: inside child" in status.output

    run(scenario())


def test_clock_admin_route_moves_a_manual_clock(durable_index: FunctionIndex, tmp_path: Path) -> None:
    clock = ManualClock()

    async def scenario() -> None:
        async with served(durable_index, tmp_path, clock=clock) as engine:
            client = df.DurableOrchestrationClient(engine.client_binding_json())
            instance_id = await client.start_new("sleeper", None, 30)
            await engine.wait_for_idle(10)
            async with httpx.AsyncClient() as http:
                advanced = await http.post(
                    f"{engine.base_url}/runtime/webhooks/durabletask/test/clock/advance",
                    params={"seconds": "30", "code": engine.system_key},
                )
                assert advanced.status_code == 200
            status = await settle(engine, instance_id)
            assert status["output"] == 30.0

    run(scenario())


def test_webhook_routes_require_the_system_key_as_in_azure(
    durable_index: FunctionIndex, tmp_path: Path
) -> None:
    """List, status, raise event, terminate, purge, start: a bare 401 without the system key (or with a
    wrong one); the management URLs a starter hands out carry the key; the SDK's rpc path needs none."""

    async def scenario() -> None:
        async with served(durable_index, tmp_path) as engine:
            client = df.DurableOrchestrationClient(engine.client_binding_json())
            instance_id = await client.start_new("two_events", None, None)
            hook = f"{engine.base_url}/runtime/webhooks/durabletask"
            calls = [
                ("GET", f"{hook}/instances"),
                ("GET", f"{hook}/instances/{instance_id}"),
                ("POST", f"{hook}/instances/{instance_id}/raiseEvent/first"),
                ("POST", f"{hook}/instances/{instance_id}/terminate"),
                ("DELETE", f"{hook}/instances/{instance_id}"),
                ("POST", f"{hook}/orchestrators/two_events"),
                ("GET", f"{hook}/entities/counter/one"),
            ]
            async with httpx.AsyncClient() as http:
                for method, url in calls:
                    for params in ({}, {"code": "not-the-key"}):
                        refused = await http.request(method, url, params=params, json=None)
                        assert refused.status_code == 401, (method, url, params, refused.text)
                        assert refused.content == b""
                status = await client.get_status(instance_id)
                assert status.runtime_status == OrchestrationRuntimeStatus.Running  # nothing was terminated

                keyed = await http.get(f"{hook}/instances", headers={"x-functions-key": engine.system_key})
                assert keyed.status_code == 200 and instance_id in {i["instanceId"] for i in keyed.json()}
                links = engine.management_urls(instance_id)
                assert f"code={engine.system_key}" in links["statusQueryGetUri"]
                terminated = await http.post(links["terminatePostUri"].replace("{text}", "done"))
                assert terminated.status_code == 202
            assert json.loads(engine.client_binding_json())["rpcBaseUrl"].startswith(
                f"{engine.base_url}/durabletask/"
            )
            await engine.wait_for_idle(10)
            assert (
                await client.get_status(instance_id)
            ).runtime_status == OrchestrationRuntimeStatus.Terminated

    run(scenario())


def test_activity_counts_route_counts_every_attempt_and_failure(
    durable_index: FunctionIndex, tmp_path: Path, app_module: dict[str, Any]
) -> None:
    """The fleet benchmark costs a cycle in activity calls from this route: a retried activity counts
    once per attempt (as Azure bills and queues it), failures apart; like every webhook it needs the key."""
    clock = ManualClock()

    async def scenario() -> None:
        async with served(durable_index, tmp_path, clock=clock) as engine:
            client = df.DurableOrchestrationClient(engine.client_binding_json())
            instance_id = await client.start_new("retry_exhausted", None, None)
            status = await settle(engine, instance_id, clock)
            assert status["runtimeStatus"] == "Completed"
            route = f"{engine.base_url}/runtime/webhooks/durabletask/test/activity-counts"
            async with httpx.AsyncClient() as http:
                assert (await http.get(route)).status_code == 401
                counts = await http.get(route, params={"code": engine.system_key})
            assert counts.status_code == 200
            assert counts.json() == {
                "calls": {"always_fails": 2, "square": 1},
                "failures": {"always_fails": 2},
            }

    run(scenario())
