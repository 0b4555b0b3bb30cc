"""The local custom topic endpoint: what `EventGridPublisherClient.send` posts to."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devhost.functions_host.eventgrid.auth import PublishUnauthorized, check_publisher
from devhost.functions_host.eventgrid.delivery import DeliveryQueue, Subscription
from devhost.functions_host.eventgrid.schema import PublishRejected, parse_publish

log = logging.getLogger("devhost.eventgrid")


def topic_path(topic_name: str) -> str:
    return f"/runtime/local-eventgrid/topics/{topic_name}/api/events"


def topic_route(
    topic_name: str,
    topic_key: str,
    topic_id: str,
    queue: DeliveryQueue,
    subscriptions: Sequence[Subscription],
    notify: Callable[[], None],
) -> Route:
    async def publish(request: Request) -> Response:
        try:
            check_publisher(request.headers, request.query_params, topic_key, str(request.url))
        except PublishUnauthorized as exc:
            return _error(401, "Unauthorized", str(exc))
        try:
            events = parse_publish(await request.body(), request.headers.get("content-type", ""), topic_id)
        except PublishRejected as exc:
            return _error(exc.status, exc.code, exc.message)
        queued = queue.enqueue(events, subscriptions)
        log.info("topic %s accepted %d event(s), %d deliveries queued", topic_name, len(events), queued)
        notify()
        return Response(status_code=200)

    return Route(topic_path(topic_name), publish, methods=["POST"])


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
