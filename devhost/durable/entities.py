"""Durable entities: run a batch of queued operations through the SDK's entity handler.

The extension sends `{"self": {name, key}, "state", "exists", "batch": [{name, input, isSignal}]}` and
gets back `{"entityExists", "entityState", "results": [{isError, result, ...}], "signals"}`. Results
of calls go back to the calling orchestration as an EventRaised named by the request id, whose
Input is `{"result": <json>}` (plus `exceptionType` on failure), which is what the SDK's
ResponseMessage.from_dict reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devhost.durable.store import EntityOp


def scheduler_id(name: str, key: str) -> str:
    """DTFx instance id of an entity (EntityId.get_scheduler_id): the name is case-insensitive."""
    return f"@{name.lower()}@{key}"


def split_scheduler_id(entity_id: str) -> tuple[str, str]:
    name, _, key = entity_id[1:].partition("@")
    return name, key


@dataclass
class BatchResult:
    state: str | None  # None: the entity does not exist (never created or deleted)
    responses: list[tuple[dict[str, Any], dict[str, Any]]]  # (request, response message) for calls


def run_batch(
    handler: Callable[[str], str], entity_id: str, state: str | None, ops: list[EntityOp]
) -> BatchResult:
    name, key = split_scheduler_id(entity_id)
    batch = [
        {
            "name": op.request["op"],
            # The extension hands the operation input over as a JSON string *containing* the JSON text:
            # DurableEntityContext.get_input() json.loads it and then df_loads the text.
            "input": json.dumps(op.request["input"]) if op.request.get("input") is not None else "null",
            "isSignal": bool(op.request.get("signal")),
        }
        for op in ops
    ]
    context = {
        "self": {"name": name, "key": key},
        "state": state,
        "exists": state is not None,
        "batch": batch,
    }
    try:
        answer = json.loads(handler(json.dumps(context)))
    except Exception as exc:  # the whole batch failed (SDK internal error): every caller gets the error
        failure = {"result": json.dumps(f"{type(exc).__name__}: {exc}"), "exceptionType": type(exc).__name__}
        return BatchResult(state, [(op.request, failure) for op in ops if not op.request.get("signal")])
    results = answer.get("results", [])
    responses: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for op, result in zip(ops, results, strict=False):
        if op.request.get("signal"):
            continue
        response: dict[str, Any] = {"result": result.get("result") or "null"}
        if result.get("isError"):
            response["exceptionType"] = "Exception"
        responses.append((op.request, response))
    new_state = answer.get("entityState") if answer.get("entityExists") else None
    return BatchResult(new_state, responses)
