"""Names shared by HTTP starters and orchestrators, so a rename cannot silently break the seam.

The per-machine orchestration (one instance per machine, "one writer per machine") is registered
under MACHINE_REPLICATION by orchestrators/replication/orchestrator.py. HTTP starters deliver each operator
request to it: start it with the request as input when it is not running, raise OPERATOR_REQUEST on
it when it is.
"""

from __future__ import annotations

MACHINE_REPLICATION = "machine_replication_orchestrator"
OPERATOR_REQUEST = "OperatorRequest"


def machine_instance_id(machine_id: str) -> str:
    return f"machine-{machine_id}"


# Raised by the Event Grid function after a cycle is in the machine's inbox: a wake-up, not a queue.
CYCLE_UPLOADED_SIGNAL = "CycleUploaded"
