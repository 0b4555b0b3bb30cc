"""The extension's HTTP API (webhooks and the SDK's rpcBaseUrl) as Starlette routes.

Paths and status codes are those DurableOrchestrationClient 1.7.0 builds and checks: the SDK
client only ever sees these routes, so HTTP starters run unchanged against the local engine.

The same operations are served twice, as in Azure: under `/runtime/webhooks/durabletask`, where the
system key (or the master key) is required in `code=` or `x-functions-key` and anything else is a bare
401; and under the SDK client's `rpcBaseUrl`, keyless, whose path holds a per-process secret that only
the function code receives in its client binding (Azure's rpc endpoint is a loopback-only port).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from devhost.durable import history as h
from devhost.durable.clock import ManualClock
from devhost.durable.engine import WEBHOOK_PREFIX, InstanceExists, UnknownFunction

Endpoint = Callable[[Request], Awaitable[Response]]

if TYPE_CHECKING:
    from devhost.durable.engine import DurableEngine


async def body_as_json_text(request: Request) -> str | None:
    return payload_json_text(await request.body())


def payload_json_text(raw: bytes) -> str | None:
    """A request body as the JSON text of its payload (None for no payload).

    The SDK serialises payloads itself (df_dumps / json.dumps) and then hands the *string* to
    aiohttp's `json=`, so the body is a JSON string literal holding JSON text. A body that decodes
    to a string which is itself valid JSON is that double encoding; anything else (a plain client
    posting an object, or a string that is not JSON) is taken as the value.
    """
    if not raw.strip():
        return None
    value = json.loads(raw)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return json.dumps(value)
        return value
    return json.dumps(value)


def _flag(request: Request, name: str, default: bool) -> bool:
    value = request.query_params.get(name)
    return default if value is None else value.strip().lower() == "true"


def _time_filter(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return h.iso(h.parse_iso(value)) if value else None


def _statuses(request: Request) -> list[str]:
    value = request.query_params.get("runtimeStatus", "")
    return [s.strip() for s in value.split(",") if s.strip()]


def _requires_key(endpoint: Endpoint, accepted: list[str]) -> Endpoint:
    async def guarded(request: Request) -> Response:
        presented = request.headers.get("x-functions-key") or request.query_params.get("code") or ""
        if not any(hmac.compare_digest(presented.encode(), key.encode()) for key in accepted if key):
            return Response(status_code=401)
        return await endpoint(request)

    return guarded


def build_routes(engine: DurableEngine, *, master_key: str | None = None) -> list[BaseRoute]:
    async def start(request: Request) -> Response:
        name = request.path_params["function_name"]
        instance_id = request.path_params.get("instance_id")
        try:
            input_json = await body_as_json_text(request)
        except ValueError:
            return JSONResponse(
                {"Message": "Only application/json request content is supported"}, status_code=400
            )
        try:
            instance_id = engine.start_new_json(name, instance_id, input_json)
        except UnknownFunction as exc:
            return JSONResponse(
                {
                    "Message": "One or more of the arguments submitted is incorrect",
                    "ExceptionMessage": str(exc),
                },
                status_code=400,
            )
        except InstanceExists as exc:
            return JSONResponse({"Message": str(exc), "ExceptionMessage": str(exc)}, status_code=409)
        payload = engine.management_urls(instance_id)
        return JSONResponse(
            payload, status_code=202, headers={"Location": payload["statusQueryGetUri"], "Retry-After": "10"}
        )

    async def get_status(request: Request) -> Response:
        row = engine.store.get_instance(request.path_params["instance_id"])
        if row is None:
            return Response(status_code=404)
        status = engine.status_json(
            row,
            show_history=_flag(request, "showHistory", False),
            show_history_output=_flag(request, "showHistoryOutput", False),
            show_input=_flag(request, "showInput", True),
        )
        code = {"Completed": 200, "Failed": 500, "Terminated": 400, "Canceled": 400}.get(row.status, 202)
        headers = {}
        if code == 202:
            headers = {"Location": str(request.url), "Retry-After": "10"}
        return JSONResponse(status, status_code=code, headers=headers)

    async def list_statuses(request: Request) -> Response:
        statuses = engine.query_status(
            created_from=_time_filter(request, "createdTimeFrom"),
            created_to=_time_filter(request, "createdTimeTo"),
            statuses=_statuses(request),
            prefix=request.query_params.get("instanceIdPrefix"),
            show_input=_flag(request, "showInput", False),
        )
        return JSONResponse(statuses)

    async def purge(request: Request) -> Response:
        deleted = engine.purge(request.path_params["instance_id"])
        return JSONResponse({"instancesDeleted": deleted}, status_code=200 if deleted else 404)

    async def purge_where(request: Request) -> Response:
        deleted = engine.purge_where(
            created_from=_time_filter(request, "createdTimeFrom"),
            created_to=_time_filter(request, "createdTimeTo"),
            statuses=_statuses(request),
        )
        return JSONResponse({"instancesDeleted": deleted}, status_code=200 if deleted else 404)

    async def raise_event(request: Request) -> Response:
        try:
            data_json = await body_as_json_text(request)
        except ValueError:
            return JSONResponse(
                {"Message": "Only application/json request content is supported"}, status_code=400
            )
        status = engine.raise_event_json(
            request.path_params["instance_id"], request.path_params["event_name"], data_json
        )
        if not status:
            return Response(status_code=404)
        if status in ("Completed", "Failed", "Terminated", "Canceled"):
            return Response(status_code=410)
        return Response(status_code=202)

    async def terminate(request: Request) -> Response:
        status = engine.terminate(request.path_params["instance_id"], request.query_params.get("reason", ""))
        if not status:
            return Response(status_code=404)
        if status in ("Completed", "Failed", "Terminated", "Canceled"):
            return Response(status_code=410)
        return Response(status_code=202)

    async def not_supported(request: Request) -> Response:
        operation = request.url.path.rsplit("/", 1)[-1]
        return JSONResponse(
            {"Message": f"'{operation}' is not supported by the local Durable extension"}, status_code=501
        )

    async def entity_signal(request: Request) -> Response:
        operation = request.query_params.get("op")
        if not operation:
            return JSONResponse({"Message": "the 'op' query parameter is required"}, status_code=400)
        try:
            engine.signal_entity_json(
                request.path_params["entity_name"],
                request.path_params["entity_key"],
                operation,
                await body_as_json_text(request),
            )
        except UnknownFunction as exc:
            return JSONResponse({"Message": str(exc)}, status_code=404)
        return Response(status_code=202)

    async def entity_state(request: Request) -> Response:
        state = engine.read_entity_state_json(
            request.path_params["entity_name"], request.path_params["entity_key"]
        )
        if state is None:
            return Response(status_code=404)
        return Response(state, status_code=200, media_type="application/json")

    async def advance_clock(request: Request) -> Response:
        if not isinstance(engine.clock, ManualClock):
            return JSONResponse(
                {"Message": "the clock is the wall clock; start the host with a manual clock"},
                status_code=404,
            )
        try:
            seconds = float(request.query_params["seconds"])
            now = engine.clock.advance(seconds)
        except (KeyError, ValueError) as exc:
            return JSONResponse({"Message": f"seconds must be a non-negative number: {exc}"}, status_code=400)
        return JSONResponse({"now": h.iso(now)})

    async def activity_counts(request: Request) -> Response:
        return JSONResponse(engine.activity_counts())

    operations: list[tuple[str, Endpoint, str]] = [
        ("/orchestrators/{function_name}", start, "POST"),
        ("/orchestrators/{function_name}/{instance_id}", start, "POST"),
        ("/instances", list_statuses, "GET"),
        ("/instances/", list_statuses, "GET"),
        ("/instances", purge_where, "DELETE"),
        ("/instances/", purge_where, "DELETE"),
        ("/instances/{instance_id}", get_status, "GET"),
        ("/instances/{instance_id}", purge, "DELETE"),
        ("/instances/{instance_id}/raiseEvent/{event_name}", raise_event, "POST"),
        ("/instances/{instance_id}/terminate", terminate, "POST"),
        ("/instances/{instance_id}/rewind", not_supported, "POST"),
        ("/instances/{instance_id}/suspend", not_supported, "POST"),
        ("/instances/{instance_id}/resume", not_supported, "POST"),
        ("/instances/{instance_id}/restart", not_supported, "POST"),
        ("/entities/{entity_name}/{entity_key}", entity_state, "GET"),
        ("/entities/{entity_name}/{entity_key}", entity_signal, "POST"),
        ("/test/clock/advance", advance_clock, "POST"),
        ("/test/activity-counts", activity_counts, "GET"),
    ]
    accepted = [engine.system_key, *([master_key] if master_key else [])]
    webhooks: list[BaseRoute] = [
        Route(WEBHOOK_PREFIX + path, _requires_key(endpoint, accepted), methods=[method])
        for path, endpoint, method in operations
    ]
    rpc: list[BaseRoute] = [
        Route(engine.rpc_path + path, endpoint, methods=[method]) for path, endpoint, method in operations
    ]
    return webhooks + rpc
