"""The local Event Grid topic through the real EventGridPublisherClient: auth, schemas, retries, dead-letter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from azure.core.credentials import AzureKeyCredential, AzureSasCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from azure.eventgrid._legacy import generate_sas
from azure.storage.blob import BlobServiceClient

from devhost.emulators import EmulatorEndpoints
from tests.support.host import RunningHost, running_host, wait_until

pytestmark = pytest.mark.integration

APP = Path(__file__).resolve().parents[1] / "apps" / "host_app"
TOPIC_KEY = "dG9waWMta2V5LWZvci10ZXN0cy1vbmx5LW5vdC1hLXNlY3JldA=="  # base64, as Event Grid keys are


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, emulators: EmulatorEndpoints) -> Iterator[RunningHost]:
    root = tmp_path_factory.mktemp("eventgrid-host")
    env = {
        "HOST_APP_OUTPUT": str(root / "out"),
        "EVENTGRID_TOPIC_KEY": TOPIC_KEY,
        "DEVHOST_EVENTGRID_RETRY_SCHEDULE": "0.2,0.4",
        "DEVHOST_EVENTGRID_MAX_ATTEMPTS": "3",
        "DEVHOST_DEADLETTER_CONNECTION_STRING": emulators.storage_connection_string,
    }
    with running_host(APP, root / "data", env, ["--no-timers"]) as h:
        yield h


def topic_url(host: RunningHost) -> str:
    return f"{host.base_url}/runtime/local-eventgrid/topics/appliance-events/api/events"


def received(host: RunningHost) -> list[dict[str, object]]:
    path = host.data_dir.parent / "out" / "eventgrid.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def received_ids(host: RunningHost, event_id: object) -> list[dict[str, object]]:
    return [r for r in received(host) if r["id"] == str(event_id)]


def test_event_grid_schema_event_is_delivered_with_stamped_fields(host: RunningHost) -> None:
    client = EventGridPublisherClient(topic_url(host), AzureKeyCredential(TOPIC_KEY))
    event = EventGridEvent(
        subject="machines/m1", event_type="Migrate.Appliance.Heartbeat", data={"n": 1}, data_version="1.0"
    )
    client.send(event)
    wait_until(lambda: received_ids(host, event.id), what=f"delivery of event {event.id}")
    [got] = received_ids(host, event.id)
    assert got["type"] == "Migrate.Appliance.Heartbeat"
    assert got["subject"] == "machines/m1"
    assert got["data"] == {"n": 1}
    assert str(got["topic"]).endswith("/topics/appliance-events")


def test_cloud_event_is_delivered(host: RunningHost) -> None:
    client = EventGridPublisherClient(topic_url(host), AzureKeyCredential(TOPIC_KEY))
    event = CloudEvent(
        source="/appliances/a1",
        type="Migrate.Replication.CycleUploaded",
        subject="machines/m2",
        data={"cycleId": "c1"},
    )
    client.send([event])
    wait_until(lambda: received_ids(host, event.id), what=f"delivery of event {event.id}")
    assert received_ids(host, event.id)[0]["data"] == {"cycleId": "c1"}


def test_sas_token_is_accepted(host: RunningHost) -> None:
    token = generate_sas(topic_url(host), TOPIC_KEY, datetime.now(UTC) + timedelta(minutes=5))
    client = EventGridPublisherClient(topic_url(host), AzureSasCredential(token))
    event = EventGridEvent(
        subject="machines/m3", event_type="Migrate.Appliance.Heartbeat", data={}, data_version="1.0"
    )
    client.send(event)
    wait_until(lambda: received_ids(host, event.id), what=f"delivery of event {event.id}")


def test_expired_sas_and_bad_key_are_401(host: RunningHost) -> None:
    event = EventGridEvent(subject="s", event_type="t", data={}, data_version="1.0")
    expired = generate_sas(topic_url(host), TOPIC_KEY, datetime.now(UTC) - timedelta(minutes=1))
    with pytest.raises(ClientAuthenticationError):
        EventGridPublisherClient(topic_url(host), AzureSasCredential(expired)).send(event)
    with pytest.raises(ClientAuthenticationError):
        EventGridPublisherClient(topic_url(host), AzureKeyCredential("d3Jvbmcta2V5")).send(event)
    assert httpx.post(topic_url(host), json=[]).status_code == 401
    assert not received_ids(host, event.id)


def test_malformed_event_is_400_and_nothing_is_queued(host: RunningHost) -> None:
    response = httpx.post(
        topic_url(host),
        headers={"aeg-sas-key": TOPIC_KEY},
        json=[
            {"id": "x1", "subject": "s", "eventType": "t", "eventTime": "2026-01-01T00:00:00Z"},
            {"id": "x2", "eventType": "t"},
        ],
    )
    assert response.status_code == 400
    assert "missing required properties: subject, eventTime" in response.json()["error"]["message"]
    too_big = httpx.post(
        topic_url(host), headers={"aeg-sas-key": TOPIC_KEY}, content=b" " * (1024 * 1024 + 1)
    )
    assert too_big.status_code == 413
    assert not received_ids(host, "x1")


def test_failing_handler_is_retried_then_dead_lettered(
    host: RunningHost, emulators: EmulatorEndpoints
) -> None:
    client = EventGridPublisherClient(topic_url(host), AzureKeyCredential(TOPIC_KEY))
    event = EventGridEvent(
        subject="machines/bad",
        event_type="Migrate.Replication.CycleUploaded",
        data={"fail": True},
        data_version="1.0",
    )
    client.send(event)
    blobs = BlobServiceClient.from_connection_string(
        emulators.storage_connection_string
    ).get_container_client("eventgrid-deadletter")

    def dead_lettered() -> list[str]:
        try:
            return [b.name for b in blobs.list_blobs() if str(event.id) in b.name]
        except HttpResponseError:
            return []

    wait_until(dead_lettered, timeout=30, what=f"event {event.id} dead-lettered")
    assert len(received_ids(host, event.id)) == 3  # max attempts
    [record] = json.loads(blobs.download_blob(dead_lettered()[0]).readall())
    assert record["id"] == str(event.id)
    assert record["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert record["deliveryAttempts"] == 3
    assert record["lastDeliveryOutcome"] == "HTTP 500"


def test_webhook_checks_the_system_key_and_function_name(host: RunningHost) -> None:
    url = f"{host.base_url}/runtime/webhooks/eventgrid"
    body = [{"id": "w1", "subject": "s", "eventType": "t", "eventTime": "2026-01-01T00:00:00Z", "data": {}}]
    headers = {"aeg-event-type": "Notification"}
    assert (
        httpx.post(
            url, params={"functionName": "on_event", "code": "nope"}, json=body, headers=headers
        ).status_code
        == 401
    )
    system_key = str(host.keys["system"]["eventgrid_extension"])  # type: ignore[index]
    assert (
        httpx.post(
            url, params={"functionName": "missing", "code": system_key}, json=body, headers=headers
        ).status_code
        == 404
    )
    validation = httpx.post(
        url,
        params={"functionName": "on_event", "code": system_key},
        headers={"aeg-event-type": "SubscriptionValidation"},
        json=[{**body[0], "data": {"validationCode": "abc"}}],
    )
    assert validation.json() == {"validationResponse": "abc"}
