"""`python -m devhost.arm --port N --data-dir DIR --blob-connection-string CS`: run the local ARM endpoint."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import uvicorn

from devhost.arm import LATENCY_SCALE_ENV
from devhost.arm.app import create_app
from devhost.arm.control import LatencyConfig
from devhost.arm.service import LocalArm
from devhost.arm.snapshot_limits import WINDOW_ENV, window_from
from devhost.redaction import configure_logging


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devhost.arm", description=__doc__)
    parser.add_argument("--port", type=int, default=7072)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--data-dir", type=Path, required=True, help="state (SQLite) and disk images")
    parser.add_argument(
        "--blob-connection-string",
        default=os.environ.get("DEVHOST_ARM_BLOB_CONNECTION_STRING"),
        help="storage that Import sourceUris and CSE fileUris point at (Azurite)",
    )
    parser.add_argument(
        "--latency-scale",
        type=float,
        default=float(os.environ.get(LATENCY_SCALE_ENV, "1.0")),
        help=f"multiplies every operation's duration (env {LATENCY_SCALE_ENV}); 0 = instant",
    )
    parser.add_argument(
        "--disk-exposure",
        choices=("loop", "file"),
        default="loop" if os.geteuid() == 0 else "file",
        help="how a custom script sees the VM's disks: loop devices (root) or the image files",
    )
    parser.add_argument(
        "--extension-timeout",
        type=float,
        default=90 * 60,
        help="seconds a custom script may run (Azure: 90 minutes)",
    )
    parser.add_argument(
        "--snapshot-window-seconds",
        default=os.environ.get(WINDOW_ENV),
        help=f"the window in which a disk takes at most 7 incremental snapshots (env {WINDOW_ENV}; "
        "Azure: 300); shorter only to let tests wait the limit out quickly",
    )
    args = parser.parse_args()
    try:
        snapshot_window = window_from(args.snapshot_window_seconds)
    except ValueError as exc:
        parser.error(str(exc))
    configure_logging(logging.INFO, "%(asctime)s %(levelname)s %(name)s %(message)s")
    arm = LocalArm(
        args.data_dir,
        blob_connection_string=args.blob_connection_string,
        latency=LatencyConfig(scale=args.latency_scale),
        disk_exposure=args.disk_exposure,
        extension_timeout=args.extension_timeout,
        snapshot_window=snapshot_window,
    )
    app = create_app(arm, token=os.environ.get("DEVHOST_ARM_TOKEN") or None)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
