"""HTTP triggers: route templates, function-key auth and the HttpRequest/HttpResponse translation."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import azure.functions as func
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devhost.functions_host.index import FunctionIndex, IndexedFunction
from devhost.functions_host.invoke import call_user_function, extra_binding_kwargs, resolve_binding_kwargs
from devhost.functions_host.keys import HostKeys, presented_key

log = logging.getLogger("devhost.http")

# ASP.NET route constraints the Functions host understands, mapped to Starlette convertors where one exists.
_CONSTRAINTS = {
    "int": "int",
    "long": "int",
    "float": "float",
    "double": "float",
    "guid": "str",
    "alpha": "str",
    "bool": "str",
    "datetime": "str",
}
_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)((?::[a-z]+(?:\([^)]*\))?)*)(\?)?\}")


def starlette_paths(route_prefix: str, template: str) -> list[str]:
    """`machines/{id}/events` -> `/api/machines/{id}/events`; an optional `{x?}` yields both forms."""
    paths = [""]
    for segment in template.strip("/").split("/"):
        match = _PARAM.fullmatch(segment)
        if not match:
            paths = [p + "/" + segment for p in paths]
            continue
        catch_all, name, constraints, optional = match.groups()
        constraint = constraints.split(":")[1].split("(")[0] if constraints else ""
        convertor = "path" if catch_all else _CONSTRAINTS.get(constraint or "", "str")
        piece = "/{" + name + ("" if convertor == "str" else ":" + convertor) + "}"
        paths = [p + piece for p in paths] + ([*paths] if optional else [])
    prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
    return [prefix + (p or "/") for p in paths]


def _specificity(path: str) -> tuple[int, ...]:
    # Literal segments beat parameters at the same position, as in ASP.NET routing.
    return tuple(1 if seg.startswith("{") else 0 for seg in path.strip("/").split("/"))


def build_http_routes(
    index: FunctionIndex, keys: HostKeys, route_prefix: str, durable_client_json: Callable[[], str] | None
) -> list[Route]:
    routes: list[tuple[str, Route]] = []
    for fn in index.by_trigger("httpTrigger"):
        template = fn.trigger.get("route") or fn.name
        methods = [
            m.upper() for m in (fn.trigger.get("methods") or ["GET", "POST", "PUT", "DELETE", "PATCH"])
        ]
        endpoint = _endpoint(fn, keys, durable_client_json)
        for path in starlette_paths(route_prefix, template):
            routes.append((path, Route(path, endpoint, methods=methods, name=f"{fn.name}:{path}")))
    routes.sort(key=lambda item: _specificity(item[0]))
    return [route for _, route in routes]


def _endpoint(
    fn: IndexedFunction, keys: HostKeys, durable_client_json: Callable[[], str] | None
) -> Callable[[Request], Any]:
    auth_level = str(fn.trigger.get("authLevel", "FUNCTION"))
    request_arg = fn.trigger["name"]
    extra = extra_binding_kwargs(fn, durable_client_json)

    async def endpoint(request: Request) -> Response:
        if not keys.allows(presented_key(request.headers, request.query_params), auth_level):
            return Response(status_code=401)
        body = await request.body()
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query_params),
            route_params={k: str(v) for k, v in request.path_params.items()},
            body=body,
        )
        kwargs: dict[str, Any] = {request_arg: http_request, **resolve_binding_kwargs(extra)}
        try:
            result = await call_user_function(fn.user_function, kwargs)
        except Exception:
            # Like the real host: the caller sees a bare 500, the details go to the log.
            log.exception("function %s failed", fn.name)
            return Response(status_code=500)
        return to_starlette_response(result)

    return endpoint


def to_starlette_response(result: Any) -> Response:
    if result is None:
        return Response(status_code=204)
    if isinstance(result, func.HttpResponse):
        headers = {k: v for k, v in result.headers.items() if k.lower() != "content-length"}
        has_type = any(k.lower() == "content-type" for k in headers)
        media_type = None
        if not has_type and result.mimetype:
            media_type = f"{result.mimetype}; charset={result.charset}" if result.charset else result.mimetype
        return Response(
            content=result.get_body(), status_code=result.status_code, headers=headers, media_type=media_type
        )
    if isinstance(result, (bytes, str)):
        return Response(content=result, status_code=200)
    raise TypeError(f"an HTTP function returned {type(result).__name__}; return func.HttpResponse")
