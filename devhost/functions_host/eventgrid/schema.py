"""What a custom topic accepts (Event Grid schema or CloudEvents 1.0) and what it stamps on delivery."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

MAX_PUBLISH_BYTES = 1024 * 1024  # 1 MB per request and per event (Event Grid answers 413 above it)

Schema = Literal["eventgrid", "cloudevents"]
_EG_REQUIRED = ("id", "subject", "eventType", "eventTime")
_CE_REQUIRED = ("specversion", "type", "source", "id")


class PublishRejected(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class PublishedEvent:
    id: str
    schema: Schema
    body: dict[str, Any]  # exactly what subscribers receive


def parse_publish(body: bytes, content_type: str, topic_id: str) -> list[PublishedEvent]:
    if len(body) > MAX_PUBLISH_BYTES:
        raise PublishRejected(
            413, "RequestEntityTooLarge", f"the request is {len(body)} bytes; the limit is 1 MB"
        )
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise PublishRejected(400, "BadRequest", f"the body is not JSON: {exc}") from exc
    is_cloudevents = (
        content_type.lower().startswith("application/cloudevents")
        or (isinstance(payload, dict) and "specversion" in payload)
        or (
            isinstance(payload, list)
            and payload
            and isinstance(payload[0], dict)
            and "specversion" in payload[0]
        )
    )
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise PublishRejected(400, "BadRequest", "no events in the request")
    events: list[PublishedEvent] = []
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise PublishRejected(400, "BadRequest", f"event #{position} is not a JSON object")
        if len(json.dumps(item).encode()) > MAX_PUBLISH_BYTES:
            raise PublishRejected(413, "RequestEntityTooLarge", f"event #{position} is larger than 1 MB")
        required = _CE_REQUIRED if is_cloudevents else _EG_REQUIRED
        missing = [field for field in required if not item.get(field)]
        if missing:
            raise PublishRejected(
                400,
                "BadRequest",
                f"event #{position} ({'CloudEvents 1.0' if is_cloudevents else 'Event Grid schema'}) "
                f"is missing required properties: {', '.join(missing)}",
            )
        if is_cloudevents:
            if item["specversion"] != "1.0":
                raise PublishRejected(400, "BadRequest", f"event #{position}: specversion must be 1.0")
            stamped = dict(item)
        else:
            stamped = {
                **item,
                "topic": topic_id,
                "metadataVersion": "1",
                "dataVersion": item.get("dataVersion") or "",
            }
            stamped.setdefault("data", None)
        events.append(
            PublishedEvent(
                id=str(item["id"]), schema="cloudevents" if is_cloudevents else "eventgrid", body=stamped
            )
        )
    return events
