"""A test app for the local Functions host (tests only; never part of the product)."""

import json
import os
from pathlib import Path

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
OUTPUT = Path(os.environ.get("HOST_APP_OUTPUT", "/tmp/host_app_output"))


def _append(kind: str, record: dict) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with (OUTPUT / f"{kind}.jsonl").open("a") as handle:
        handle.write(json.dumps(record) + "\n")


@app.route(route="ping", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("pong")


@app.route(route="items/{item_id:int}/notes/{note?}", methods=["GET", "POST"])
def item_note(req: func.HttpRequest) -> func.HttpResponse:
    body = {
        "method": req.method,
        "route": dict(req.route_params),
        "params": dict(req.params),
        "body": req.get_body().decode(),
    }
    return func.HttpResponse(
        json.dumps(body),
        status_code=201 if req.method == "POST" else 200,
        mimetype="application/json",
        headers={"x-test": "yes"},
    )


@app.route(route="items/special/notes", methods=["GET"])
def literal_beats_parameter(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("literal")


@app.route(route="admin-only", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin")


@app.route(route="boom", methods=["GET"])
async def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret detail that must not leak")


@app.event_grid_trigger(arg_name="event")
def on_event(event: func.EventGridEvent) -> None:
    # The worker hands over an EventGridEvent or, for CloudEvents, a CloudEvent (with `type`, no topic).
    data = event.get_json()
    _append(
        "eventgrid",
        {
            "id": event.id,
            "type": getattr(event, "event_type", None) or getattr(event, "type", None),
            "subject": event.subject,
            "data": data,
            "topic": getattr(event, "topic", None),
            "dataVersion": getattr(event, "data_version", None),
        },
    )
    if isinstance(data, dict) and data.get("fail"):
        raise RuntimeError("handler told to fail")


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=False)
def yearly(timer: func.TimerRequest) -> None:
    _append("timer", {"past_due": timer.past_due})
