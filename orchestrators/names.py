"""Names shared by HTTP starters and orchestrators, so a rename cannot silently break the seam.

The per-machine orchestration (one instance per machine, "one writer per machine") is registered
under MACHINE_REPLICATION by orchestrators/replication/orchestrator.py. HTTP starters deliver each operator
request to it: start it with the request as input when it is not running, raise OPERATOR_REQUEST on
it when it is.
"""

from __future__ import annotations

from typing import Final

MACHINE_REPLICATION = "machine_replication_orchestrator"
OPERATOR_REQUEST = "OperatorRequest"


def machine_instance_id(machine_id: str) -> str:
    return f"machine-{machine_id}"


# Raised by the Event Grid function after a cycle is in the machine's inbox: a wake-up, not a queue.
CYCLE_UPLOADED_SIGNAL = "CycleUploaded"
# Raised by the Event Grid function when the appliance starts a cycle: it carries the upload deadline.
# A name of its own, so a sleeping generation can take the start and keep waiting for the upload that
# follows it a moment later in the same execution (continue-as-new discards an event not yet consumed).
CYCLE_STARTED_SIGNAL = "CycleStarted"


def job_instance_id(job_id: str) -> str:
    """The orchestration instance of a job that runs in its own instance (test migration, migration...)."""
    return f"job-{job_id}" if not job_id.startswith("job-") else job_id


# Raised by POST /api/jobs/{jobId}/cancel on the job's own orchestration (`job-{jobId}`), and only while
# that orchestration says it can stop: its custom status is CANCELLABLE_STATUS (the cutover, while it
# waits for the source's shutdown and its final cycle and nothing exists in Azure yet).
CANCEL_REQUESTED = "CancelRequested"
CANCELLABLE_STATUS: Final = {"cancellable": True}
NOT_CANCELLABLE_STATUS: Final = {"cancellable": False}


def is_cancellable(custom_status: object) -> bool:
    return isinstance(custom_status, dict) and custom_status.get("cancellable") is True
