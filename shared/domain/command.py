"""Commands the control plane queues for an appliance, which polls for them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field, model_validator

from shared.domain.cycle import CycleKind
from shared.domain.errors import FieldValueError
from shared.domain.wire import ResourceId, WireModel


class CommandKind(StrEnum):
    RUN_CYCLE = "RunCycle"  # on-demand cycle (e.g. the final cycle before cutover)
    RESYNC_DISK = "ResyncDisk"
    SHUT_DOWN_SOURCE = "ShutDownSource"


class CommandStatus(StrEnum):
    PENDING = "Pending"
    ACKNOWLEDGED = "Acknowledged"


# What the model's validator requires, said in the schema too (JSON Schema cannot see the validator).
_RESYNC_NAMES_A_DISK = {
    "if": {"properties": {"kind": {"const": CommandKind.RESYNC_DISK.value}}, "required": ["kind"]},
    "then": {"required": ["diskId"], "properties": {"diskId": {"type": "string", "minLength": 1}}},
}


class ApplianceCommand(WireModel, json_schema_extra=_RESYNC_NAMES_A_DISK):
    """Stored in `commands` (pk /applianceId): the appliance's poll is one single-partition query.

    RunCycle: upload a cycle of `cycleKind` (initial: every disk; final: the cutover's last cycle).
    ResyncDisk: upload a resync cycle that includes `diskId`. ShutDownSource: shut the source machine
    down, then acknowledge (the acknowledgement is the answer). Acknowledge each once carried out."""

    id: ResourceId = Field(description="deterministic per request: the same request is never queued twice")
    appliance_id: ResourceId
    machine_id: ResourceId
    kind: CommandKind
    disk_id: str | None = Field(default=None, description="ResyncDisk: the disk to copy in full")
    cycle_kind: CycleKind | None = Field(
        default=None, description="the kind of the cycle that answers it (RunCycle and ResyncDisk)"
    )
    status: CommandStatus = CommandStatus.PENDING
    created_at: datetime
    acknowledged_at: datetime | None = None
    # Cosmos's per-document TTL in seconds (-1 = keep); set on acknowledgement so done commands expire.
    ttl: int = Field(default=-1, ge=-1)

    @model_validator(mode="after")
    def _disk_for_resync(self) -> ApplianceCommand:
        if self.kind is CommandKind.RESYNC_DISK and not self.disk_id:
            raise FieldValueError("diskId", "a ResyncDisk command names the disk to resync")
        return self
