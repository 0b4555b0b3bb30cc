"""HTTP front of the local ARM endpoint: ARM's URL space, auth, api-version, admin endpoints.

Routes (every one needs `?api-version=` and `Authorization: Bearer <token>` when a token is set):
  /subscriptions/{sub}/resourcegroups[/{rg}]                        resource groups (PUT/GET/HEAD/DELETE, list)
  /subscriptions/{sub}[/resourceGroups/{rg}]/resources              generic listing ($filter, $expand, $top)
  /subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{child}/{name}]   PUT/GET/DELETE
                                                                    (+ PATCH for VMs, disks, snapshots, extensions)
  .../providers/{ns}/{type}[/{name}/{child}]                        lists (by resource group, or parent)
  /subscriptions/{sub}/providers/{ns}/{type}                        list across the subscription
  /subscriptions/{sub}/providers/Microsoft.Compute/skus[?$filter=location eq '..']  Resource SKUs (skus.py)
  .../virtualMachines/{vm}/{powerOff|deallocate|start|restart}      POST actions (async)
  .../virtualMachines/{vm}/instanceView                             GET
  .../virtualNetworks/{vnet}/CheckIPAddressAvailability?ipAddress=  GET (devhost/arm/ip_availability.py)
  /subscriptions/{sub}/providers/{ns}/locations/{loc}/operations/{id}         Azure-AsyncOperation status
  /subscriptions/{sub}/providers/{ns}/locations/{loc}/operationResults/{id}   Location monitor
  .../disks/{d}/{beginGetAccess|endGetAccess}, .../snapshots/{s}/{...}  POST actions (async; access.py)
Data plane (no ARM token; the SAS in the query): /md-{account}/{container}/abcd, the page blob a
disk grant's SAS URL names (dataplane.py).
Admin (no api-version): GET/POST/DELETE /_admin/faults, GET/PUT /_admin/latency, PUT /_admin/quota,
POST /_admin/disk-write (a guest's writes into a running VM's disk), GET /_admin/health.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devhost.arm import api_versions, dataplane, ids, preconditions, validation
from devhost.arm.control import FaultRule, LatencyConfig
from devhost.arm.errors import ArmError
from devhost.arm.ids import ResourceId
from devhost.arm.ip_availability import check_ip_address_availability
from devhost.arm.service import Answer, LocalArm
from devhost.arm.skus import list_skus

log = logging.getLogger("devhost.arm")


class QuotaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cores: int | None = Field(default=None, ge=0, description="regional core quota; null for unlimited")


def _render(answer: Answer, request_id: str) -> Response:
    headers = {
        "x-ms-request-id": request_id,
        "x-ms-correlation-request-id": request_id,
        "x-ms-ratelimit-remaining-subscription-writes": "199",
        "x-ms-ratelimit-remaining-subscription-reads": "249",
        **(answer.headers or {}),
    }
    if answer.body is None:
        return Response(status_code=answer.status, headers=headers)
    return Response(
        json.dumps(answer.body),
        status_code=answer.status,
        headers=headers,
        media_type="application/json; charset=utf-8",
    )


def create_app(arm: LocalArm, *, token: str | None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        arm.resume_operations()
        yield
        await arm.drain()
        arm.store.close()

    async def admin(request: Request) -> Response:
        if token and request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse(
                {"error": {"code": "AuthenticationFailed", "message": "bad admin token"}}, 401
            )
        what = request.path_params["what"]
        try:
            if what == "health":
                return JSONResponse({"status": "ok"})
            if what == "faults":
                if request.method == "POST":
                    rule = FaultRule.model_validate(await request.json())
                    return JSONResponse({"id": arm.fault_rule(rule)}, 201)
                if request.method == "DELETE":
                    arm.faults.clear()
                    return Response(status_code=204)
                return JSONResponse({"value": arm.faults.list()})
            if what == "latency":
                if request.method == "PUT":
                    arm.latency = LatencyConfig.model_validate(await request.json())
                return JSONResponse(arm.latency.model_dump())
            if what == "disk-write" and request.method == "POST":
                write = dataplane.GuestWrite.model_validate(await request.json())
                return JSONResponse(await asyncio.to_thread(dataplane.guest_write, arm, write))
            if what == "quota" and request.method == "PUT":
                arm.core_quota = QuotaConfig.model_validate(await request.json()).cores
                return JSONResponse({"cores": arm.core_quota})
        except ValidationError as exc:
            return JSONResponse({"error": {"code": "InvalidRequest", "message": str(exc)}}, 400)
        except json.JSONDecodeError as exc:
            return JSONResponse({"error": {"code": "InvalidRequest", "message": str(exc)}}, 400)
        except ArmError as exc:
            return exc.response()
        return JSONResponse({"error": {"code": "NotFound", "message": f"no admin endpoint {what}"}}, 404)

    async def arm_route(request: Request) -> Response:
        if dataplane.is_dataplane_path(request.url.path):
            # The SAS URLs of disk grants point here; they carry their own authorization.
            return await dataplane.handle(arm, request)
        request_id = str(uuid.uuid4())
        try:
            if token and request.headers.get("authorization") != f"Bearer {token}":
                missing = "authorization" not in request.headers
                raise ArmError(
                    401,
                    "AuthenticationFailed" if missing else "InvalidAuthenticationToken",
                    "Authentication failed. The 'Authorization' header is missing."
                    if missing
                    else "The access token is invalid.",
                )
            api_version = request.query_params.get("api-version")
            if not api_version:
                raise ArmError(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            body: dict[str, Any] = {}
            if request.method in ("PUT", "PATCH", "POST"):  # POST: a disk grant's GrantAccessData
                try:
                    parsed = json.loads(await request.body() or b"{}")
                except json.JSONDecodeError as exc:
                    raise ArmError(
                        400, "InvalidRequestContent", f"The request content was invalid: {exc}"
                    ) from exc
                if not isinstance(parsed, dict):
                    raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
                body = parsed
            conditions = preconditions.Conditions(
                request.headers.get("if-match"), request.headers.get("if-none-match")
            )
            answer = dispatch(arm, request, body, api_version, conditions)
        except ArmError as exc:
            response = exc.response()
            response.headers["x-ms-request-id"] = request_id
            return response
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return ArmError(500, "InternalServerError", "Encountered internal server error.").response()
        if request.method == "HEAD":
            return Response(status_code=answer.status)
        return _render(answer, request_id)

    routes = [
        Route("/_admin/{what}", admin, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/{path:path}", arm_route, methods=["GET", "PUT", "DELETE", "POST", "HEAD", "PATCH"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def dispatch(
    arm: LocalArm,
    request: Request,
    body: dict[str, Any],
    api_version: str,
    conditions: preconditions.Conditions | None = None,
) -> Answer:
    conditions = conditions or preconditions.Conditions()
    segments = [s for s in request.url.path.split("/") if s]
    method = request.method
    base_url = str(request.base_url)
    query = dict(request.query_params)
    lower = [s.lower() for s in segments]
    if len(segments) < 2 or lower[0] != "subscriptions":
        raise ArmError(404, "NoRegisteredProviderFound", f"No route for {request.url.path}.")
    sub = segments[1]
    rest, lrest = segments[2:], lower[2:]
    if lrest == ["resources"] and method == "GET":
        api_versions.check(api_versions.GENERIC_RESOURCES, api_version, None)
        return arm.list_generic(sub, None, query, base_url, request.url.path)
    if lrest[:1] == ["resourcegroups"] and not (len(rest) >= 5 and lrest[2] == "providers"):
        preconditions.refuse_undeclared(conditions, method, ids.RESOURCE_GROUP)
    if lrest[:1] == ["resourcegroups"]:
        if len(rest) <= 2 or lrest[2] == "resources":
            own = ids.RESOURCE_GROUP if len(rest) <= 2 else api_versions.GENERIC_RESOURCES
            api_versions.check(own, api_version, None)
        if len(rest) == 1 and method == "GET":
            return arm.list_resource_groups(sub)
        if len(rest) == 2:
            rg = rest[1]
            if method == "PUT":
                return arm.put_resource_group(sub, rg, body)
            if method in ("GET", "HEAD"):
                return arm.get_resource_group(sub, rg) if method == "GET" else _exists(arm, sub, rg)
            if method == "DELETE":
                return arm.delete_resource_group(sub, rg, base_url, api_version)
        if len(rest) == 3 and lrest[2] == "resources" and method == "GET":
            return arm.list_generic(sub, rest[1], query, base_url, request.url.path)
        if len(rest) >= 5 and lrest[2] == "providers":
            return _provider(
                arm, method, sub, rest[1], rest[3], rest[4:], body, base_url, api_version, query, conditions
            )
    if lrest[:1] == ["providers"] and len(rest) >= 3:
        namespace = rest[1]
        if len(rest) == 6 and lrest[2] == "locations":
            api_versions.check_namespace(namespace, api_version)
            if lrest[4] in ("operations", "operationstatuses") and method == "GET":
                return arm.operation_status(rest[5])
            if lrest[4] == "operationresults" and method == "GET":
                return arm.operation_result(rest[5], base_url, api_version)
        if len(rest) == 3 and method == "GET" and lrest[1:] == ["microsoft.compute", "skus"]:
            return list_skus(query)
        if len(rest) == 3 and method == "GET":
            resource_type = ids.canonical_type(f"{namespace}/{rest[2]}")
            if resource_type is not None:
                api_versions.check(resource_type, api_version, None)
                return arm.list_type(sub, None, resource_type, None)
    raise ArmError(
        404,
        "NoRegisteredProviderFound",
        f"No registered resource provider found for {method} {request.url.path}.",
    )


def _location(arm: LocalArm, sub: str, rg: str, body: dict[str, Any]) -> str | None:
    """The location ARM names in a NoRegisteredProviderFound: the request's, else its group's."""
    if body.get("location"):
        return str(body["location"])
    group = arm.store.get(ids.resource_group_id(sub, rg))
    return str(group["location"]) if group else None


def _exists(arm: LocalArm, sub: str, rg: str) -> Answer:
    try:
        arm.require_resource_group(sub, rg)
    except ArmError:
        return Answer(404)
    return Answer(204)


def _provider(
    arm: LocalArm,
    method: str,
    sub: str,
    rg: str,
    namespace: str,
    path: list[str],
    body: dict[str, Any],
    base_url: str,
    api_version: str,
    query: dict[str, str],
    conditions: preconditions.Conditions,
) -> Answer:
    types, names = path[0::2], path[1::2]
    if len(path) % 2 == 1:
        # A collection or an action (a VM's power actions, a disk's grants): no precondition declared.
        preconditions.refuse_undeclared(conditions, method, "/".join([namespace, *types]))
        # A collection (`.../virtualNetworks`, `.../virtualMachines/vm/extensions`) or a VM action.
        resource_type = ids.canonical_type("/".join([namespace, *types]))
        parent = None
        if len(names) >= 1:
            parent_type = ids.canonical_type("/".join([namespace, *types[:-1]]))
            if parent_type is not None:
                parent = ResourceId(sub, rg, parent_type, tuple(names))
        if resource_type is not None and method == "GET":
            api_versions.check(resource_type, api_version, _location(arm, sub, rg, body))
            return arm.list_type(sub, rg, resource_type, parent)
        if parent is not None and parent.type in (ids.DISK, ids.SNAPSHOT) and method == "POST":
            return arm.disk_access(parent, path[-1], body, base_url, api_version)
        is_vnet = parent is not None and parent.type == ids.VIRTUAL_NETWORK
        if is_vnet and method == "GET" and path[-1].lower() == "checkipaddressavailability":
            assert parent is not None
            return check_ip_address_availability(arm, parent, query.get("ipAddress"))
        if parent is not None and parent.type == ids.VIRTUAL_MACHINE:
            api_versions.check(parent.type, api_version, _location(arm, sub, rg, body))
            action = path[-1]
            if action.lower() == "deallocate" and query.get("hibernate", "").lower() == "true":
                raise validation.not_emulated("hibernate", parent.type)
            if method == "POST":
                return arm.post_action(parent, action, base_url, api_version)
            if method == "GET" and action.lower() == "instanceview":
                return arm.vm_instance_view(parent)
        raise ArmError(404, "NoRegisteredProviderFound", f"No route for {'/'.join(path)} in {namespace}.")
    resource_type = ids.canonical_type("/".join([namespace, *types]))
    if resource_type is None:
        raise ArmError(
            404,
            "NoRegisteredProviderFound",
            f"No registered resource provider found for type '{'/'.join([namespace, *types])}'.",
        )
    api_versions.check(resource_type, api_version, _location(arm, sub, rg, body))
    rid = ResourceId(sub, rg, resource_type, tuple(names))
    preconditions.refuse_undeclared(conditions, method, resource_type)
    if conditions and method in ("PUT", "PATCH"):
        preconditions.check_vm(conditions, rid.name, arm.store.get(rid.key))
    if method == "PUT":
        return arm.put(rid, body, base_url, api_version)
    if method == "GET":
        return arm.get(rid, query.get("$expand"))
    if method == "DELETE":
        return arm.delete(rid, base_url, api_version)
    if method == "PATCH":
        return arm.patch(rid, body, base_url, api_version)
    raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on {resource_type}.")
