"""The Functions Event Grid extension's webhook: `/runtime/webhooks/eventgrid?functionName=...&code=...`.

Like the real extension: SubscriptionValidation is answered with the validation code; a Notification
invokes the function once per event, in parallel, and answers 202, or 500 if any invocation failed
(so Event Grid redelivers the whole batch).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devhost.functions_host.index import FunctionIndex
from devhost.functions_host.invoke import call_user_function, extra_binding_kwargs, resolve_binding_kwargs
from devhost.functions_host.keys import EVENTGRID_SYSTEM_KEY_NAME, HostKeys

log = logging.getLogger("devhost.eventgrid")

WEBHOOK_PATH = "/runtime/webhooks/eventgrid"


def webhook_route(
    index: FunctionIndex, keys: HostKeys, durable_client_json: Callable[[], str] | None
) -> Route:
    extras = {
        fn.name: extra_binding_kwargs(fn, durable_client_json) for fn in index.by_trigger("eventGridTrigger")
    }

    async def webhook(request: Request) -> Response:
        if request.method == "OPTIONS":  # CloudEvents abuse-protection handshake
            return Response(
                status_code=200,
                headers={"WebHook-Allowed-Origin": request.headers.get("WebHook-Request-Origin", "*")},
            )
        if not keys.allows_system(request.query_params.get("code"), EVENTGRID_SYSTEM_KEY_NAME):
            return Response(status_code=401)
        name = request.query_params.get("functionName", "")
        fn = index.functions.get(name)
        if fn is None or fn.trigger_type != "eventGridTrigger":
            return Response(f"No Event Grid function named '{name}'", status_code=404)
        try:
            payload: Any = json.loads(await request.body())
        except ValueError:
            return Response("body is not JSON", status_code=400)
        events = payload if isinstance(payload, list) else [payload]
        if request.headers.get("aeg-event-type") == "SubscriptionValidation":
            code = events[0].get("data", {}).get("validationCode") if events else None
            return JSONResponse({"validationResponse": code})

        async def invoke(event: dict[str, Any]) -> None:
            decoded = EventGridEventInConverter.decode(
                meta.Datum(json.dumps(event), "json"), trigger_metadata={}
            )
            await call_user_function(
                fn.user_function, {fn.trigger["name"]: decoded, **resolve_binding_kwargs(extras[fn.name])}
            )

        results = await asyncio.gather(*(invoke(e) for e in events), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            log.error("Event Grid function %s failed: %r", name, failure, exc_info=failure)
        return Response(status_code=500 if failures else 202)

    return Route(WEBHOOK_PATH, webhook, methods=["POST", "OPTIONS"])
