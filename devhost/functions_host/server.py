"""The local Functions host: one Starlette app serving HTTP triggers, the Event Grid topic and webhook,
timer triggers, the admin API and the local Durable extension's endpoints."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from devhost.functions_host.eventgrid.delivery import (
    DeliveryPolicy,
    DeliveryQueue,
    DeliveryWorker,
    Subscription,
)
from devhost.functions_host.eventgrid.topic import topic_path, topic_route
from devhost.functions_host.eventgrid.webhook import WEBHOOK_PATH, webhook_route
from devhost.functions_host.http_triggers import build_http_routes
from devhost.functions_host.index import FunctionIndex, load_function_app
from devhost.functions_host.keys import (
    DURABLE_SYSTEM_KEY_NAME,
    EVENTGRID_SYSTEM_KEY_NAME,
    HostKeys,
    presented_key,
)
from devhost.functions_host.timers import TimerScheduler, disabled_functions, invoke_timer, timer_request_json

log = logging.getLogger("devhost.host")


@dataclass
class HostConfig:
    app_dir: Path
    data_dir: Path
    port: int
    bind: str = "127.0.0.1"
    manual_clock: bool = False
    run_timers: bool = True
    topic_name: str = "appliance-events"
    topic_key: str = ""
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)

    @property
    def base_url(self) -> str:
        return f"http://{self.bind}:{self.port}"

    @property
    def topic_url(self) -> str:
        return self.base_url + topic_path(self.topic_name)


def read_host_json(app_dir: Path) -> dict[str, Any]:
    path = app_dir / "host.json"
    return json.loads(path.read_text()) if path.exists() else {"version": "2.0"}


def create_app(config: HostConfig) -> Starlette:
    host_json = read_host_json(config.app_dir)
    extensions = host_json.get("extensions", {})
    route_prefix = extensions.get("http", {}).get("routePrefix", "api")
    task_hub = extensions.get("durableTask", {}).get("hubName", "TestHubName")

    index = load_function_app(config.app_dir)
    keys = HostKeys.load_or_create(config.data_dir / "keys.json")
    engine = _durable_engine(index, config, task_hub, keys.system[DURABLE_SYSTEM_KEY_NAME])
    queue = DeliveryQueue(config.data_dir / "eventgrid.sqlite")
    worker = DeliveryWorker(
        queue,
        config.delivery,
        config.base_url + WEBHOOK_PATH,
        keys.system[EVENTGRID_SYSTEM_KEY_NAME],
        config.topic_name,
    )
    subscriptions = [
        Subscription(name=f"{fn.name}-subscription", function_name=fn.name)
        for fn in index.by_trigger("eventGridTrigger")
    ]
    client_json = engine.client_binding_json if engine is not None else None
    timer_functions = index.by_trigger("timerTrigger")
    timers = TimerScheduler(
        timer_functions,
        client_json,
        enabled=config.run_timers,
        disabled=disabled_functions((fn.name for fn in timer_functions), os.environ),
    )

    routes: list[BaseRoute] = []
    if engine is not None:
        routes += engine.routes(master_key=keys.master)
    routes += [
        Route("/admin/host/status", _host_status(index, keys, config), methods=["GET"]),
        Route("/admin/functions/{name}", _admin_invoke(index, keys, timers), methods=["POST"]),
        webhook_route(index, keys, client_json),
    ]
    if config.topic_key:
        topic_id = (
            f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/"
            f"Microsoft.EventGrid/topics/{config.topic_name}"
        )
        routes.append(
            topic_route(config.topic_name, config.topic_key, topic_id, queue, subscriptions, worker.notify)
        )
    routes += build_http_routes(index, keys, route_prefix, client_json)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if engine is not None:
            await engine.start()
        worker.start()
        timers.start()
        log.info("host ready on %s with %d functions", config.base_url, len(index.functions))
        try:
            yield
        finally:
            await timers.stop()
            await worker.stop()
            if engine is not None:
                await engine.stop()
            queue.close()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _json_route_error, 405: _json_route_error},
    )
    app.state.index = index
    app.state.keys = keys
    app.state.engine = engine
    app.state.delivery_queue = queue
    return app


async def _json_route_error(request: Request, exc: Exception) -> Response:
    """A path no route takes (404) or a method its route does not (405), in the API's error shape
    instead of Starlette's text/plain: a client parses one shape for every error."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 405:
        code, message = "MethodNotAllowed", f"{request.method} is not an operation of {path}"
    else:
        code, message = "RouteNotFound", f"{path} is not a route of this host"
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": []}},
        status_code=exc.status_code,
        headers=dict(exc.headers or {}),
    )


def _durable_engine(index: FunctionIndex, config: HostConfig, task_hub: str, system_key: str) -> Any:
    durable_triggers = {"orchestrationTrigger", "activityTrigger", "entityTrigger"}
    uses_durable = any(
        fn.trigger_type in durable_triggers or fn.binding_of_type("durableClient")
        for fn in index.functions.values()
    )
    if not uses_durable:
        return None
    from devhost.durable.clock import ManualClock, WallClock
    from devhost.durable.engine import DurableEngine

    clock = ManualClock() if config.manual_clock else WallClock()
    durable = read_host_json(config.app_dir).get("extensions", {}).get("durableTask", {})
    return DurableEngine(
        index,
        data_dir=config.data_dir / "durable",
        task_hub=task_hub,
        base_url=config.base_url,
        clock=clock,
        max_concurrent_activities=int(durable.get("maxConcurrentActivityFunctions", 8)),
        system_key=system_key,
    )


def _host_status(index: FunctionIndex, keys: HostKeys, config: HostConfig) -> Any:
    async def status(request: Request) -> Response:
        if not keys.allows(presented_key(request.headers, request.query_params), "admin"):
            return Response(status_code=401)
        return JSONResponse(
            {
                "state": "Running",
                "functions": sorted(index.functions),
                "eventGridTopic": config.topic_url if config.topic_key else None,
            }
        )

    return status


def _admin_invoke(index: FunctionIndex, keys: HostKeys, timers: TimerScheduler) -> Any:
    """`POST /admin/functions/{name}` runs a non-HTTP function now, as the real host's admin API does."""

    async def invoke(request: Request) -> Response:
        if not keys.allows(presented_key(request.headers, request.query_params), "admin"):
            return Response(status_code=401)
        fn = index.functions.get(request.path_params["name"])
        if fn is None:
            return Response(status_code=404)
        if fn.trigger_type != "timerTrigger":
            return JSONResponse(
                {
                    "error": {
                        "code": "NotSupported",
                        "message": f"only timer functions can be run from the admin API, not {fn.trigger_type}",
                    }
                },
                status_code=400,
            )
        from datetime import UTC, datetime

        await invoke_timer(fn, timer_request_json(False, None, datetime.now(UTC)), timers.extras[fn.name])
        return Response(status_code=202)

    return invoke
