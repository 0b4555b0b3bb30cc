"""Refused appliance events: kept as a dead letter with their reason, and shown on the machine they name.

An appliance event that can never be applied (another appliance's machine, data that does not fit its
schema, an unknown machine or event type, a cycle for a machine that is not replicating) is a permanent
error: Event Grid must not retry it. So that it is not lost either, the trigger writes it whole, with the
reason and the time, as one JSON blob in the `refused-events` container of the replica account (the
control plane's own), and where the event names a machine that exists, records an event on that
machine: a Critical security event for another appliance's machine, a Warning for everything else.
Neither changes the machine's health.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.domain.errors import DomainError, Forbidden, NotFound
from shared.domain.event import Event, Severity
from shared.domain.wire import is_resource_id

SECURITY_EVENT = "Security: appliance event refused"
REFUSED_EVENT = "Appliance event refused"


class RefusalKind(StrEnum):
    WRONG_APPLIANCE = "wrongAppliance"
    MALFORMED = "malformed"
    UNKNOWN_EVENT_TYPE = "unknownEventType"
    UNKNOWN_TARGET = "unknownTarget"
    NOT_APPLICABLE = "notApplicable"


@dataclass(frozen=True)
class ReceivedEvent:
    """The event as Event Grid delivered it, whatever its data holds."""

    id: str
    type: str
    subject: str
    time: datetime | None
    data: Any


@dataclass(frozen=True)
class Refusal:
    event: ReceivedEvent
    kind: RefusalKind
    error: DomainError
    machine_id: str | None  # the machine the event names, when it names a valid id

    @property
    def key(self) -> str:
        """Stable across redeliveries of the event: the dead letter and the machine event are written once."""
        return hashlib.sha256(f"{self.event.id}\n{self.event.type}".encode()).hexdigest()[:32]


def kind_of(error: DomainError, *, parsed: bool) -> RefusalKind:
    """Why an event was refused, from the error that refused it (`parsed`: its data fitted the schema)."""
    if not parsed:
        return RefusalKind.MALFORMED if error.code == "ValidationFailed" else RefusalKind.UNKNOWN_EVENT_TYPE
    if isinstance(error, Forbidden):
        return RefusalKind.WRONG_APPLIANCE
    if isinstance(error, NotFound):
        return RefusalKind.UNKNOWN_TARGET
    return RefusalKind.NOT_APPLICABLE


def named_machine(event: ReceivedEvent) -> str | None:
    """The machine the event names: `data.machineId`, else a `machines/{id}` subject; only a valid id."""
    candidates: list[object] = []
    if isinstance(event.data, dict):
        candidates.append(event.data.get("machineId"))
    kind, _, name = event.subject.strip("/").partition("/")
    if kind == "machines":
        candidates.append(name)
    for candidate in candidates:
        if isinstance(candidate, str) and is_resource_id(candidate):
            return candidate
    return None


def dead_letter_document(refusal: Refusal, *, now: datetime) -> dict[str, Any]:
    event = refusal.event
    return {
        "refusedAt": now.isoformat(),
        "reason": {
            "kind": refusal.kind.value,
            "code": refusal.error.code,
            "message": refusal.error.message,
            "details": list(refusal.error.details),
        },
        "machineId": refusal.machine_id,
        "event": {
            "id": event.id,
            "type": event.type,
            "subject": event.subject,
            "eventTime": event.time.isoformat() if event.time is not None else None,
            "data": event.data,
        },
    }


def dead_letter_name(refusal: Refusal, *, now: datetime) -> str:
    """`{yyyy}/{mm}/{dd}/{kind}/{key}.json`: listed by day, then by reason."""
    return f"{now:%Y/%m/%d}/{refusal.kind.value}/{refusal.key}.json"


def write_dead_letter(container: ContainerClient, refusal: Refusal, *, now: datetime) -> str:
    """Write the dead letter (overwriting the same event's earlier one); the blob's name."""
    name = dead_letter_name(refusal, now=now)
    body = json.dumps(dead_letter_document(refusal, now=now), default=str, indent=2).encode()
    settings = ContentSettings(content_type="application/json")
    try:
        container.upload_blob(name, body, overwrite=True, content_settings=settings)
    except ResourceNotFoundError:
        # A fresh account has no such container until the first refusal (infra/ creates it in Azure).
        with contextlib.suppress(ResourceExistsError):
            container.create_container()
        container.upload_blob(name, body, overwrite=True, content_settings=settings)
    return name


def machine_event(refusal: Refusal, *, dead_letter: str, at: datetime) -> Event:
    """What the operator sees on the machine the refused event named."""
    assert refusal.machine_id is not None
    security = refusal.kind is RefusalKind.WRONG_APPLIANCE
    if security:
        recommendations = [
            "Check which appliance reports this machine: an appliance publishing events for another "
            "appliance's machine is misconfigured or its topic key is misused; rotate the key if unsure."
        ]
    else:
        recommendations = [
            "Check the appliance's version and logs; the refused event is kept whole in the "
            f"'refused-events' container as {dead_letter}."
        ]
    return Event(
        id=f"refused-{refusal.key}",
        machine_id=refusal.machine_id,
        time=at,
        type=SECURITY_EVENT if security else REFUSED_EVENT,
        severity=Severity.CRITICAL if security else Severity.WARNING,
        message=f"{refusal.event.type or 'an event without a type'} refused: {refusal.error.message}",
        error_code=refusal.error.code,
        recommendations=recommendations,
        details={
            "reason": refusal.kind.value,
            "eventId": refusal.event.id[:256],
            "eventType": refusal.event.type[:256],
            "deadLetter": dead_letter,
        },
    )
