"""A local Azure Resource Manager endpoint for the control plane's ARM calls (see docs/local-arm.md).

Started as its own process (`python -m devhost.arm --port N --data-dir DIR --blob-connection-string ...`)
by the local stack through `start_local_arm`, and by the tests' fixtures.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Final

import httpx

from devhost.processes import ManagedProcess

# The subscription the local stack pretends to be in (any GUID works; this one is recognisable).
LOCAL_SUBSCRIPTION_ID: Final = "00000000-0000-0000-0000-00000000a2a2"
LATENCY_SCALE_ENV: Final = "DEVHOST_ARM_LATENCY_SCALE"
REPO_ROOT: Final = Path(__file__).resolve().parent.parent.parent


def start_local_arm(
    data_dir: Path,
    port: int,
    blob_connection_string: str,
    log_dir: Path,
    *,
    token: str,
    latency_scale: float | None = None,
    disk_exposure: str | None = None,
    snapshot_window_seconds: float | None = None,
    ready_timeout: float = 30.0,
) -> ManagedProcess:
    """Start the endpoint on 127.0.0.1:`port` and wait until it answers; the caller stops it."""
    argv = [
        sys.executable,
        "-m",
        "devhost.arm",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--blob-connection-string",
        blob_connection_string,
    ]
    if latency_scale is not None:
        argv += ["--latency-scale", str(latency_scale)]
    if disk_exposure is not None:
        argv += ["--disk-exposure", disk_exposure]
    if snapshot_window_seconds is not None:
        argv += ["--snapshot-window-seconds", str(snapshot_window_seconds)]
    # The token travels in the environment, not argv, so that it does not show in `ps`.
    env = {**os.environ, "DEVHOST_ARM_TOKEN": token, "PYTHONPATH": str(REPO_ROOT)}
    process = ManagedProcess(
        name="local-arm", argv=argv, log_path=log_dir / "local-arm.log", env=env, cwd=REPO_ROOT
    ).start()
    process.wait_ready(
        lambda: (
            httpx.get(
                f"http://127.0.0.1:{port}/_admin/health",
                timeout=2,
                headers={"Authorization": f"Bearer {token}"},
            ).status_code
            == 200
        ),
        timeout=ready_timeout,
    )
    return process
