"""The appliance's API client retries what the API asks it to (408, 429, 5xx, with Retry-After), within
bounds; upload credentials are renewed before they expire; the app's delegation key is asked for once
and renewed only when it would not outlive a new SAS."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from appliance.control_plane import ApplianceApi, BoundedRetry, ControlPlaneError
from appliance.upload import SasDestination
from shared.platform import storage
from shared.platform.storage import WRITE_ONLY_SAS, BlobSasSigner


class ScriptedApi:
    """Answers each request with the next scripted (status, headers, body); records arrival times."""

    def __init__(self, script: list[tuple[int, dict[str, str], Any]]) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, str, float]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                import time

                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append((self.command, self.path, time.monotonic()))
                status, headers, body = outer.script.pop(0)
                payload = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[list[ScriptedApi]]:
    made: list[ScriptedApi] = []
    yield made
    for api in made:
        api.close()


def client(
    scripted: list[ScriptedApi], script: list[tuple[int, dict[str, str], Any]]
) -> tuple[ApplianceApi, ScriptedApi]:
    server = ScriptedApi(script)
    scripted.append(server)
    api = ApplianceApi(
        server.url,
        "key",
        appliance_id="appl-1",
        credential="appl-1.secret",
        retry=BoundedRetry(retry_backoff_factor=0.01, max_retry_after=5),
    )
    return api, server


BUSY = {"error": {"code": "TooManyRequests", "message": "slow down"}}
COMMANDS: dict[str, list[Any]] = {"commands": []}


def test_429_and_503_are_retried_after_the_seconds_retry_after_names(scripted: list[ScriptedApi]) -> None:
    api, server = client(scripted, [(429, {"Retry-After": "1"}, BUSY), (503, {}, BUSY), (200, {}, COMMANDS)])
    assert api.commands() == []
    times = [t for _, _, t in server.requests]
    assert len(times) == 3 and times[1] - times[0] >= 0.95


def test_an_http_date_retry_after_is_honoured(scripted: list[ScriptedApi]) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    api, server = client(scripted, [(503, {"Retry-After": when}, BUSY), (200, {}, COMMANDS)])
    assert api.commands() == []
    times = [t for _, _, t in server.requests]
    assert times[1] - times[0] >= 0.5  # the date has whole seconds: at least part of the 2 s is waited


def test_post_of_an_idempotent_call_is_retried_but_4xx_are_not(scripted: list[ScriptedApi]) -> None:
    api, server = client(
        scripted,
        [
            (408, {}, BUSY),
            (200, {}, {"expiresOn": "2030-01-01T00:00:00Z", "permissions": "cw", "blobs": {}}),
            (
                403,
                {},
                {"error": {"code": "Forbidden", "message": "not yours", "details": [{"machineId": "m"}]}},
            ),
        ],
    )
    assert api.upload_credentials("m", "c", ["m/c/d/manifest.json"])["permissions"] == "cw"
    with pytest.raises(ControlPlaneError) as refused:
        api.upload_credentials("m", "c", ["m/c/d/manifest.json"])
    assert (refused.value.status, refused.value.code, refused.value.details) == (
        403,
        "Forbidden",
        [{"machineId": "m"}],
    )
    assert len(server.requests) == 3


def test_a_retry_after_beyond_the_bound_is_handed_to_the_caller(scripted: list[ScriptedApi]) -> None:
    api, server = client(scripted, [(429, {"Retry-After": "3600"}, BUSY)])
    with pytest.raises(ControlPlaneError) as refused:
        api.commands()
    assert refused.value.status == 429 and refused.value.retry_after == 3600
    assert len(server.requests) == 1


def test_retries_are_bounded(scripted: list[ScriptedApi]) -> None:
    api, server = client(scripted, [(503, {}, BUSY)] * 10)
    api._retry.total_retries = 3
    with pytest.raises(ControlPlaneError) as refused:
        api.commands()
    assert refused.value.status == 503 and len(server.requests) == 4


# -- upload credentials are renewed before they expire --------------------------------------------------


class Issuer:
    def __init__(self, lifetime: timedelta, clock: list[datetime]) -> None:
        self.lifetime, self.clock, self.calls = lifetime, clock, 0

    def upload_credentials(self, machine_id: str, cycle_id: str, blobs: list[str]) -> dict[str, Any]:
        self.calls += 1
        return {
            "expiresOn": (self.clock[0] + self.lifetime).isoformat(),
            "permissions": "cw",
            "blobs": {b: f"https://acct.blob.core.windows.net/uploads/{b}?sig=s{self.calls}" for b in blobs},
        }


def test_sas_urls_are_asked_for_once_per_cycle_and_renewed_before_expiry() -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    issuer = Issuer(timedelta(hours=1), now)
    destination = SasDestination(issuer, renew_before=timedelta(minutes=10), clock=lambda: now[0])
    names = ["m/c/d/data-00000.bin", "m/c/d/manifest.json"]
    blobs = destination.for_cycle("m", "c", names)
    assert blobs.get_blob_client(names[0]).url.endswith("?sig=s1")
    now[0] += timedelta(minutes=49)
    assert blobs.get_blob_client(names[1]).url.endswith("?sig=s1") and issuer.calls == 1
    now[0] += timedelta(minutes=2)  # 51 minutes in: less than 10 left
    assert blobs.get_blob_client(names[0]).url.endswith("?sig=s2") and issuer.calls == 2


def test_names_are_asked_for_in_batches_the_api_accepts() -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    issuer = Issuer(timedelta(hours=1), now)
    names = [f"m/c/d/data-{i:05d}.bin" for i in range(2500)]
    blobs = SasDestination(issuer, clock=lambda: now[0]).for_cycle("m", "c", names)
    blobs.get_blob_client(names[-1])
    assert issuer.calls == 3


# -- the app's user delegation key ------------------------------------------------------------------------


class FakeIdentity:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise AssertionError("the fake service answers without a token")


def test_one_delegation_key_signs_many_sas_and_is_renewed_before_it_would_outlive_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azure.storage.blob import UserDelegationKey

    asked: list[tuple[datetime, datetime]] = []

    class Service:
        def get_user_delegation_key(self, start: datetime, expiry: datetime) -> UserDelegationKey:
            asked.append((start, expiry))
            key = UserDelegationKey()  # type: ignore[no-untyped-call]
            key.signed_oid, key.signed_tid = "oid", "tid"
            key.signed_start, key.signed_expiry = start.isoformat(), expiry.isoformat()
            key.signed_service, key.signed_version = "b", "2025-01-05"
            key.value = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U="
            return key

    monkeypatch.setattr(storage, "container_service", lambda container: Service())
    container = BlobServiceClient(
        "https://acct.blob.core.windows.net",
        credential=FakeIdentity(),
    ).get_container_client("uploads")
    signer = BlobSasSigner(container, key_lifetime=timedelta(hours=6))
    assert signer.uses_delegation_key
    now = datetime(2030, 1, 1, tzinfo=UTC)
    for minutes in (0, 30, 240):
        at = now + timedelta(minutes=minutes)
        url = signer.blob_url("m/c/d/x", permission=WRITE_ONLY_SAS, expiry=at + timedelta(hours=1), now=at)
        assert "skoid=oid" in url and "sp=cw" in url and "sr=b" in url and "spr=https" in url
    assert len(asked) == 1
    later = now + timedelta(hours=5)  # a new 1-hour SAS would outlive the key
    signer.blob_url("m/c/d/x", permission=WRITE_ONLY_SAS, expiry=later + timedelta(hours=1), now=later)
    assert len(asked) == 2 and asked[1][1] >= later + timedelta(hours=1, minutes=10)
