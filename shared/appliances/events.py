"""The appliance events, as typed payloads: a contract with every deployed appliance, changed only compatibly.

Appliances publish them to the Event Grid topic in the Event Grid schema or as CloudEvents, with
`subject` = `machines/{id}` (or `appliances/{id}` for a heartbeat). The event's `data` is validated
against these models, with JSON's own types only; a malformed event is a permanent error, never
retried: the trigger keeps it as a dead letter (shared/appliances/refusals.py).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from shared.domain.cycle import CycleKind
from shared.domain.errors import DomainError, FieldValueError, ValidationFailed
from shared.domain.wire import ResourceId, WireModel, json_integers

HEARTBEAT = "Migrate.Appliance.Heartbeat"
CYCLE_UPLOADED = "Migrate.Replication.CycleUploaded"
CYCLE_FAILED = "Migrate.Replication.CycleFailed"
# An addition to the normative list (compatible: a new type): lets the control plane time uploads itself.
CYCLE_STARTED = "Migrate.Replication.CycleStarted"


class Heartbeat(WireModel):
    appliance_id: ResourceId
    time: datetime | None = Field(
        default=None, description="appliance clock; the event time is used if absent"
    )
    agent_version: str | None = None


class CycleUploaded(WireModel):
    """Every disk's data blobs and manifest are in the cache account; the cycle can be applied."""

    appliance_id: ResourceId
    machine_id: ResourceId
    cycle_id: ResourceId
    sequence: int = Field(ge=0)
    kind: CycleKind
    app_consistent: bool = False
    manifests: dict[str, str] = Field(
        min_length=1, description="disk id -> manifest blob name (cache account)"
    )

    @model_validator(mode="after")
    def _manifest_names(self) -> CycleUploaded:
        for disk_id, blob in self.manifests.items():
            if not disk_id or not blob or blob.startswith("/") or ".." in blob.split("/"):
                raise FieldValueError(
                    "manifests", f"manifest for disk {disk_id!r} must be a blob name in the cache container"
                )
        return self


class DiskUploadExpectation(WireModel):
    disk_id: str = Field(min_length=1)
    expected_bytes: int | None = Field(default=None, ge=0, description="what the appliance will upload")


class CycleStarted(WireModel):
    """The appliance began a cycle (snapshot taken, uploads starting). The control plane expects every
    listed disk's upload (its manifest in the cache account, then `CycleUploaded`) within
    `expectedDurationSeconds` (its own default when absent) and raises 1011 DiskUploadTimedOut for each
    disk that has not finished by then."""

    appliance_id: ResourceId
    machine_id: ResourceId
    cycle_id: ResourceId
    sequence: int = Field(ge=0)
    kind: CycleKind
    disks: list[DiskUploadExpectation] = Field(min_length=1)
    expected_duration_seconds: int | None = Field(
        default=None, gt=0, le=7 * 24 * 3600, description="the appliance's estimate from its bandwidth limit"
    )
    started_at: datetime | None = Field(default=None, description="appliance clock; the event time if absent")

    @model_validator(mode="after")
    def _unique_disks(self) -> CycleStarted:
        ids = [d.disk_id for d in self.disks]
        if len(set(ids)) != len(ids):
            raise FieldValueError("disks", "each disk is listed once")
        return self


class CycleFailed(WireModel):
    """The appliance could not produce a cycle (e.g. changed block tracking reset, a VMware error)."""

    appliance_id: ResourceId
    machine_id: ResourceId
    cycle_id: str | None = None
    disk_id: str | None = None
    error_code: str | None = Field(default=None, description="e.g. 1011, or the VMware/Hyper-V code")
    message: str = Field(min_length=1, max_length=8192)


EventKind = Literal["heartbeat", "cycleUploaded", "cycleFailed", "cycleStarted"]
ApplianceEvent = Heartbeat | CycleUploaded | CycleFailed | CycleStarted
_MODELS: dict[str, type[ApplianceEvent]] = {
    HEARTBEAT: Heartbeat,
    CYCLE_UPLOADED: CycleUploaded,
    CYCLE_FAILED: CycleFailed,
    CYCLE_STARTED: CycleStarted,
}


class UnknownEventType(DomainError):
    code = "UnknownEventType"


def parse_appliance_event(event_type: str, data: Any) -> ApplianceEvent:
    model = _MODELS.get(event_type)
    if model is None:
        raise UnknownEventType(
            f"event type {event_type!r} is not an appliance event; expected one of {', '.join(sorted(_MODELS))}"
        )
    try:
        data = json_integers(data)
        parsed = model.model_validate(data)
        # Then JSON's own types only: lax validation would take true for a sequence of 1, or "3" for 3.
        model.model_validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(exc) from exc
    except RecursionError:
        raise ValidationFailed.single("data", "nests too deeply to be an appliance event") from None
    return parsed
