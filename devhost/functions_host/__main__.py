"""`python -m devhost.functions_host --app-dir . --port 7071 --data-dir .devhost/host [--settings FILE]`"""

from __future__ import annotations

import argparse
import json
import logging
import os
import warnings
from pathlib import Path

import uvicorn

from devhost.functions_host.eventgrid.delivery import EVENT_GRID_RETRY_SCHEDULE, DeliveryPolicy
from devhost.functions_host.server import HostConfig, create_app
from devhost.redaction import configure_logging

# How long an idle client connection is kept open. uvicorn's default (5 s) is about the gap between an
# appliance's calls during a cycle: a POST sent on a connection the server was closing at that moment
# failed with "connection reset" and, not being idempotent, was not retried (the fleet benchmark saw it).
# Azure's front ends keep idle connections for minutes; so does the local host.
KEEP_ALIVE_SECONDS = 120


def _load_settings(path: Path | None) -> None:
    """Values of a local.settings.json become environment variables before the app is imported, as `func start` does."""
    if path is None:
        return
    values = json.loads(path.read_text()).get("Values", {})
    for name, value in values.items():
        os.environ.setdefault(name, str(value))


def delivery_policy_from_env() -> DeliveryPolicy:
    schedule = os.environ.get("DEVHOST_EVENTGRID_RETRY_SCHEDULE")
    connection = os.environ.get("DEVHOST_DEADLETTER_CONNECTION_STRING") or os.environ.get(
        "AzureWebJobsStorage"
    )
    if connection == "UseDevelopmentStorage=true":
        connection = None  # only explicit connection strings: the emulator's port may not be the default
    return DeliveryPolicy(
        max_attempts=int(os.environ.get("DEVHOST_EVENTGRID_MAX_ATTEMPTS", "30")),
        retry_schedule=tuple(float(s) for s in schedule.split(","))
        if schedule
        else EVENT_GRID_RETRY_SCHEDULE,
        dead_letter_connection_string=connection,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.functions_host", description=__doc__)
    parser.add_argument("--app-dir", type=Path, default=Path.cwd(), help="folder holding function_app.py")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--data-dir", type=Path, default=Path(".devhost/host"))
    parser.add_argument(
        "--settings", type=Path, help="a local.settings.json whose Values become app settings"
    )
    parser.add_argument(
        "--manual-clock", action="store_true", help="durable timers move only when tests say so"
    )
    parser.add_argument("--no-timers", action="store_true", help="do not schedule timer triggers")
    args = parser.parse_args(argv)

    configure_logging(
        os.environ.get("DEVHOST_LOG_LEVEL", "INFO"), "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The SDKs log every request at INFO; keep the host's log about the host.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    _load_settings(args.settings)
    if os.environ.get("COSMOS_VERIFY_TLS", "true").lower() == "false":
        # Local emulator only: its certificate is self-signed and every request would warn.
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    config = HostConfig(
        app_dir=args.app_dir.resolve(),
        data_dir=args.data_dir.resolve(),
        port=args.port,
        bind=args.bind,
        manual_clock=args.manual_clock,
        run_timers=not args.no_timers,
        topic_key=os.environ.get("EVENTGRID_TOPIC_KEY", ""),
        delivery=delivery_policy_from_env(),
    )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(config)
    uvicorn.run(
        app,
        host=args.bind,
        port=args.port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
