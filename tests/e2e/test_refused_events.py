"""Refused appliance events are visible: through the real topic and host, each refused event leaves a
dead letter with its reason in the replica account's `refused-events` container and, where it names a
machine that exists, an event on that machine the operator reads; the machine's health stays."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from azure.core.credentials import AzureKeyCredential
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from azure.storage.blob import BlobServiceClient, ContainerClient

from devhost.stack import LocalStack
from shared.appliances.events import CYCLE_FAILED, CYCLE_UPLOADED
from shared.appliances.refusals import REFUSED_EVENT, SECURITY_EVENT
from shared.platform.storage import REFUSED_EVENTS_CONTAINER
from tests.e2e.conftest import Appliance, Operator, wait_for

MIB = 1024 * 1024


def publish(stack: LocalStack, subject: str, event_type: str, data: Any) -> str:
    settings = stack.settings
    client = EventGridPublisherClient(
        settings["EVENTGRID_TOPIC_ENDPOINT"], AzureKeyCredential(settings["EVENTGRID_TOPIC_KEY"])
    )
    event = EventGridEvent(subject=subject, event_type=event_type, data=data, data_version="1.0")
    client.send(event)
    return str(event.id)


def dead_letters(stack: LocalStack) -> ContainerClient:
    return BlobServiceClient.from_connection_string(
        stack.settings["REPLICA_STORAGE_CONNECTION_STRING"]
    ).get_container_client(REFUSED_EVENTS_CONTAINER)


def dead_letter_of(stack: LocalStack, event_id: str) -> dict[str, Any]:
    container = dead_letters(stack)

    def find() -> dict[str, Any] | None:
        if not container.exists():
            return None
        for blob in container.list_blobs():
            document: dict[str, Any] = json.loads(container.download_blob(blob.name).readall())
            if document["event"]["id"] == event_id:
                return document | {"blobName": blob.name}
        return None

    return wait_for(find, what=f"the dead letter of event {event_id}")


def refused_events_of(operator: Operator, machine_id: str, event_id: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for event in operator.events(machine_id):
            if event.get("details", {}).get("eventId") == event_id:
                return event
        return None

    return wait_for(find, what=f"the refusal of {event_id} on {machine_id}")


def test_an_event_for_another_appliance_s_machine_is_a_security_event_and_a_dead_letter(
    new_appliance: Callable[[], Appliance], operator: Operator
) -> None:
    owner, intruder = new_appliance(), new_appliance()
    machine_id = owner.machine(operator, disks={"os": MIB}, enable=False).machine_id
    health_before = operator.machine(machine_id)["health"]
    event_id = intruder.events.cycle_failed(machine_id=machine_id, message="pretending", error_code="1011")

    letter = dead_letter_of(operator.stack, event_id)
    assert letter["reason"]["kind"] == "wrongAppliance" and letter["reason"]["code"] == "Forbidden"
    assert letter["machineId"] == machine_id and letter["event"]["type"] == CYCLE_FAILED
    assert letter["event"]["data"]["applianceId"] == intruder.events.appliance_id
    assert letter["refusedAt"]

    event = refused_events_of(operator, machine_id, event_id)
    assert event["type"] == SECURITY_EVENT and event["severity"] == "Critical"
    assert event["details"]["deadLetter"] == letter["blobName"]
    assert operator.machine(machine_id)["health"] == health_before
    assert not any(e.get("errorCode") == "1011" for e in operator.events(machine_id))


def test_malformed_data_is_an_error_event_on_the_machine_and_a_dead_letter(
    new_appliance: Callable[[], Appliance], operator: Operator
) -> None:
    owner = new_appliance()
    machine_id = owner.machine(operator, disks={"os": MIB}, enable=False).machine_id
    data = {
        "applianceId": owner.events.appliance_id,
        "machineId": machine_id,
        "cycleId": "c-1",
        "sequence": True,  # not an integer: lax parsing would have read 1
        "kind": "delta",
        "manifests": {"os": f"{machine_id}/c-1/os/manifest.json"},
    }
    event_id = publish(operator.stack, f"machines/{machine_id}", CYCLE_UPLOADED, data)

    letter = dead_letter_of(operator.stack, event_id)
    assert letter["reason"]["kind"] == "malformed"
    assert letter["reason"]["details"][0]["field"] == "sequence"
    event = refused_events_of(operator, machine_id, event_id)
    assert event["type"] == REFUSED_EVENT and event["severity"] == "Warning"
    assert event["errorCode"] == "ValidationFailed"


def test_an_unknown_machine_or_event_type_is_dead_lettered(
    new_appliance: Callable[[], Appliance], operator: Operator
) -> None:
    appliance = new_appliance()
    ghost = f"vm-{uuid.uuid4().hex[:10]}"
    unknown_machine = appliance.events.cycle_failed(machine_id=ghost, message="who am I")
    letter = dead_letter_of(operator.stack, unknown_machine)
    assert letter["reason"]["kind"] == "unknownTarget" and letter["machineId"] == ghost
    assert operator.call("GET", f"/machines/{ghost}").status_code == 404

    machine_id = appliance.machine(operator, disks={"os": MIB}, enable=False).machine_id
    unknown_type = publish(operator.stack, f"machines/{machine_id}", "Migrate.Replication.Teleported", {})
    letter = dead_letter_of(operator.stack, unknown_type)
    assert letter["reason"]["kind"] == "unknownEventType" and letter["reason"]["code"] == "UnknownEventType"
    assert refused_events_of(operator, machine_id, unknown_type)["type"] == REFUSED_EVENT


def test_a_subject_naming_another_machine_than_the_data_is_refused_not_applied(
    new_appliance: Callable[[], Appliance], operator: Operator
) -> None:
    """An event that names one machine in its subject (what Event Grid routes on) and another in its
    data is applied to neither: a dead letter, a refusal on the machine the data names, and the failure
    it carried is not recorded. The publisher gets what Event Grid gives it: a successful publish."""
    appliance = new_appliance()
    own = appliance.machine(operator, disks={"os": MIB}, enable=False).machine_id
    other = appliance.machine(operator, disks={"os": MIB}, enable=False).machine_id
    data = {
        "applianceId": appliance.events.appliance_id,
        "machineId": own,
        "errorCode": "1011",
        "message": "a disk upload timed out",
    }
    event_id = publish(operator.stack, f"machines/{other}", CYCLE_FAILED, data)  # raises unless 2xx

    letter = dead_letter_of(operator.stack, event_id)
    assert letter["reason"]["kind"] == "malformed" and letter["machineId"] == own
    assert letter["reason"]["details"] == [
        {
            "field": "subject",
            "problem": f"the subject names machine {other!r} but the data names machine {own!r}; publish "
            "each event with subject 'machines/{id}' of the machine its data is about",
        }
    ]
    refusal = refused_events_of(operator, own, event_id)
    assert refusal["type"] == REFUSED_EVENT and refusal["errorCode"] == "ValidationFailed"
    for machine_id in (own, other):
        assert not any(e.get("errorCode") == "1011" for e in operator.events(machine_id)), machine_id
        assert operator.machine(machine_id)["health"] == "Healthy"
