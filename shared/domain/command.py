"""Commands the control plane queues for an appliance, which polls for them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field, model_validator

from shared.domain.errors import FieldValueError
from shared.domain.wire import ResourceId, WireModel


class CommandKind(StrEnum):
    RUN_CYCLE = "RunCycle"  # on-demand cycle (e.g. the final cycle before cutover)
    RESYNC_DISK = "ResyncDisk"
    SHUT_DOWN_SOURCE = "ShutDownSource"


class CommandStatus(StrEnum):
    PENDING = "Pending"
    ACKNOWLEDGED = "Acknowledged"


class ApplianceCommand(WireModel):
    """Stored in `commands` (pk /applianceId): the appliance's poll is one single-partition query."""

    id: ResourceId
    appliance_id: ResourceId
    machine_id: ResourceId
    kind: CommandKind
    disk_id: str | None = None
    cycle_kind: str | None = None
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
