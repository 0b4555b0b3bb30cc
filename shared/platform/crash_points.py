"""Named instants at which the crash test holds the process so that it can kill it exactly there.

Only the local stack's crash test sets CRASH_POINTS_DIR (never an app setting in Azure); the bootstrap
hands it to `configure`. A point is armed by a file `<name>.armed` in that directory; reaching an armed
point writes `<name>.reached` and holds the calling thread until the test has killed the process.
Unconfigured, a point costs one attribute read.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CRASH_POINTS_ENV = "CRASH_POINTS_DIR"
_directory: Path | None = None
# Longer than the test takes to see the point and kill the process; then the request just goes on.
HOLD_SECONDS = 30.0

START_RECORDED = "start-recorded"  # the machine's transition and pending start written, no job document
JOB_RECORDED = "job-recorded"  # the job document written, its orchestration not started
ORCHESTRATION_STARTED = "orchestration-started"  # started, woken or (a job cancel) its event raised; no 202
CANCEL_CHECKED = "cancel-checked"  # a job cancel found the job cancellable, its event not raised yet


def configure(directory: str | None) -> None:
    global _directory
    _directory = Path(directory) if directory else None


def reached(name: str) -> None:
    directory = _directory
    if directory is None:
        return
    armed = directory / f"{name}.armed"
    if not armed.exists():
        return
    armed.unlink(missing_ok=True)  # one kill per arming: the restarted process runs through
    (directory / f"{name}.reached").write_text(str(os.getpid()))
    time.sleep(HOLD_SECONDS)
