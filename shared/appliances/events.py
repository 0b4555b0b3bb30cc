"""The appliance events, as typed payloads: a contract with every deployed appliance, changed only compatibly.

Appliances publish them to the Event Grid topic in the Event Grid schema or as CloudEvents, with
`subject` = `machines/{id}` (or `appliances/{id}` for a heartbeat). The event's `data` is validated
against these models, with JSON's own types only; a malformed event is a permanent error, never
retried: the trigger keeps it as a dead letter (shared/appliances/refusals.py).

The `*Event` models are the Event Grid envelope around each `data`, as an appliance publishes it: the
topic itself checks the envelope (a publish without `id`, `subject`, `eventType` or `eventTime` is a 400),
the control plane reads only `eventType`, `eventTime` and `data`. They exist so that
`docs/schemas/` and the OpenAPI document are generated from the same models the trigger validates with.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from shared.domain.cycle import CycleKind
from shared.domain.errors import DomainError, FieldValueError, ValidationFailed
from shared.domain.wire import ResourceId, WireModel, json_integers

HEARTBEAT = "Migrate.Appliance.Heartbeat"
CYCLE_UPLOADED = "Migrate.Replication.CycleUploaded"
CYCLE_FAILED = "Migrate.Replication.CycleFailed"
# An addition to the normative list (compatible: a new type): lets the control plane time uploads itself.
CYCLE_STARTED = "Migrate.Replication.CycleStarted"


class Heartbeat(WireModel):
    """The appliance is alive (send one every few minutes: 15 minutes of silence is "appliance not
    responding")."""

    appliance_id: ResourceId = Field(description="the id registration returned")
    time: datetime | None = Field(
        default=None, description="appliance clock; the event time is used if absent"
    )
    agent_version: str | None = None


class CycleUploaded(WireModel):
    """Every disk's data blobs and manifest are in the cache account; the cycle can be applied."""

    appliance_id: ResourceId
    machine_id: ResourceId = Field(description="one of this appliance's machines, with replication enabled")
    cycle_id: ResourceId = Field(
        description="never reused: the same id again is a duplicate if identical, else refused"
    )
    sequence: int = Field(
        ge=0,
        description="the cycle's place in the machine's order: a delta or final applies only as the "
        "machine's lastAppliedSequence + 1, an initial or resync whenever it is higher",
    )
    kind: CycleKind
    app_consistent: bool = Field(
        default=False, description="the snapshot was quiesced: an app-consistent point"
    )
    manifests: dict[str, str] = Field(
        min_length=1,
        description="disk id (of the machine's inventory) -> its manifest's blob name in the cache "
        "container `uploads`, {machineId}/{cycleId}/{diskId}/manifest.json",
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


_MACHINE_SUBJECT = r"^machines/[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class _Envelope(BaseModel):
    """The Event Grid schema around one appliance event (publish an array of these to the topic)."""

    # Event Grid stamps `topic` and `metadataVersion`, and may add properties of its own: a subscriber
    # must not refuse what the service adds.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    id: str = Field(
        min_length=1,
        description="unique per event; Event Grid's redeliveries keep it, the control plane logs it",
    )
    event_time: datetime = Field(description="when the appliance published it (the time a failure is dated)")
    data_version: str | None = Field(
        default="1.0", description="'1.0' for these data schemas; Event Grid stamps '' when absent"
    )
    topic: str | None = Field(default=None, description="stamped by Event Grid; a publisher leaves it out")
    metadata_version: str | None = Field(default=None, description="stamped by Event Grid ('1')")


class HeartbeatEvent(_Envelope):
    event_type: Literal["Migrate.Appliance.Heartbeat"]
    subject: str = Field(
        pattern=r"^appliances/[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="appliances/{applianceId}"
    )
    data: Heartbeat


class CycleStartedEvent(_Envelope):
    event_type: Literal["Migrate.Replication.CycleStarted"]
    subject: str = Field(pattern=_MACHINE_SUBJECT, description="machines/{machineId}")
    data: CycleStarted


class CycleUploadedEvent(_Envelope):
    event_type: Literal["Migrate.Replication.CycleUploaded"]
    subject: str = Field(pattern=_MACHINE_SUBJECT, description="machines/{machineId}")
    data: CycleUploaded


class CycleFailedEvent(_Envelope):
    event_type: Literal["Migrate.Replication.CycleFailed"]
    subject: str = Field(pattern=_MACHINE_SUBJECT, description="machines/{machineId}")
    data: CycleFailed


EventKind = Literal["heartbeat", "cycleUploaded", "cycleFailed", "cycleStarted"]
ApplianceEvent = Heartbeat | CycleUploaded | CycleFailed | CycleStarted
_MODELS: dict[str, type[ApplianceEvent]] = {
    HEARTBEAT: Heartbeat,
    CYCLE_UPLOADED: CycleUploaded,
    CYCLE_FAILED: CycleFailed,
    CYCLE_STARTED: CycleStarted,
}


# Every event type the trigger accepts, with its envelope: the generated schemas cover exactly these.
ENVELOPES: dict[str, type[_Envelope]] = {
    HEARTBEAT: HeartbeatEvent,
    CYCLE_STARTED: CycleStartedEvent,
    CYCLE_UPLOADED: CycleUploadedEvent,
    CYCLE_FAILED: CycleFailedEvent,
}


class UnknownEventType(DomainError):
    code = "UnknownEventType"


def check_subject(subject: str, event: ApplianceEvent) -> None:
    """The envelope's subject and the data name the same machine (the same appliance, for a subject
    `appliances/{id}`). Event Grid routes and filters on the subject and the control plane acts on the
    data: an event that says one machine on the outside and another inside is malformed, applied to
    neither. Other subjects are not checked (the data alone decides)."""
    kind, _, name = subject.strip("/").partition("/")
    if kind == "machines" and not isinstance(event, Heartbeat):
        expected, what = event.machine_id, "machine"
    elif kind == "appliances":
        expected, what = event.appliance_id, "appliance"
    else:
        return
    if name != expected:
        raise ValidationFailed.single(
            "subject",
            f"the subject names {what} {name!r} but the data names {what} {expected!r}; publish each "
            f"event with subject '{kind}/{{id}}' of the {what} its data is about",
        )


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
