"""The appliance's side of the control plane: the HTTP API and the Event Grid topic.

`ApplianceApi` registers, reports machines, reads the policy, polls commands and asks for upload
credentials, on an azure-core pipeline that retries 408, 429, 5xx and connection errors with backoff and
waits as long as the API's `Retry-After` says; `ApplianceEvents` publishes the normative appliance
events with the real `EventGridPublisherClient` (which retries the same way). A refused call raises
`ControlPlaneError` with the API's `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from azure.core import PipelineClient
from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import (
    HeadersPolicy,
    HttpLoggingPolicy,
    RetryPolicy,
    UserAgentPolicy,
)
from azure.core.rest import HttpRequest, HttpResponse
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from pydantic import BaseModel, ConfigDict

from shared.appliances.events import CYCLE_FAILED, CYCLE_STARTED, CYCLE_UPLOADED, HEARTBEAT
from shared.domain.command import CommandAnswer


class ControlPlaneError(RuntimeError):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details or []
        # Seconds the API asked us to wait, when that was longer than this client waits by itself.
        self.retry_after = retry_after


class Registration(BaseModel):
    model_config = ConfigDict(frozen=True)

    appliance_id: str
    credential: str


class BoundedRetry(RetryPolicy[HttpRequest, HttpResponse]):
    """azure-core's retry (408, 429, 5xx and connection errors, exponential backoff, `Retry-After` in
    seconds or as an HTTP date), bounded: at most `retry_total` retries within `timeout` seconds, and a
    `Retry-After` longer than `max_retry_after` is handed back to the caller (as
    `ControlPlaneError.retry_after`) instead of holding the thread that long."""

    def __init__(self, *, max_retry_after: float = 60.0, **kwargs: Any) -> None:
        kwargs.setdefault("retry_total", 6)
        kwargs.setdefault("retry_backoff_factor", 0.5)
        kwargs.setdefault("retry_backoff_max", 30)
        kwargs.setdefault("timeout", 300)
        super().__init__(**kwargs)
        self.max_retry_after = max_retry_after

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > self.max_retry_after:
            return False
        return bool(super().is_retry(settings, response))


# Every appliance call but registration is idempotent (upserts, acknowledgements, fresh SAS URLs), so a
# POST is retried like a GET; a registration is retried only when the API refused it (Retry-After or 5xx).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "POST"})


class ApplianceApi:
    def __init__(
        self,
        base_url: str,
        function_key: str,
        *,
        appliance_id: str | None = None,
        credential: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy[HttpRequest, HttpResponse] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.appliance_id = appliance_id
        self._headers = {"x-functions-key": function_key, "Accept": "application/json"}
        if credential:
            self._headers["Authorization"] = f"Bearer {credential}"
        self._timeout = timeout
        self._retry = retry or BoundedRetry()
        self._client: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(
            self.base_url + "/api",
            policies=[
                HeadersPolicy(self._headers),
                UserAgentPolicy(base_user_agent="migrate-appliance"),
                self._retry,
                # Never bodies, and headers only from an allow-list: the credential and the SAS URLs in
                # upload-credentials answers stay out of the logs.
                HttpLoggingPolicy(),
            ],
        )

    @classmethod
    def register(
        cls, base_url: str, function_key: str, *, name: str, kind: str, site: str, operator_token: str
    ) -> tuple[ApplianceApi, Registration]:
        """Operator-side registration, by an administrator (`operator_token`: an Entra ID access token with
        the Migration.Administrator role); the credential is shown once and must be kept by the appliance."""
        with cls(base_url, function_key, credential=operator_token) as operator:
            body = operator._call(
                "POST",
                "/appliances",
                json={"name": name, "kind": kind, "site": site},
                retry_on_methods=frozenset({"GET", "HEAD"}),
            )
        registration = Registration(appliance_id=body["id"], credential=body["credential"])
        return cls(
            base_url, function_key, appliance_id=registration.appliance_id, credential=registration.credential
        ), registration

    def report_machines(self, machines: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/appliances/{self._id}/machines", json={"machines": machines}
        )
        return result

    def policy(self) -> dict[str, Any]:
        policy: dict[str, Any] = self._call("GET", f"/appliances/{self._id}/policy")
        return policy

    def commands(self) -> list[dict[str, Any]]:
        commands: list[dict[str, Any]] = self._call("GET", f"/appliances/{self._id}/commands")["commands"]
        return commands

    def acknowledge(self, command_id: str, answer: CommandAnswer | None = None) -> None:
        body = answer.to_wire() if answer is not None else None
        self._call("POST", f"/appliances/{self._id}/commands/{command_id}/ack", json=body)

    def upload_credentials(self, machine_id: str, cycle_id: str, blobs: list[str]) -> dict[str, Any]:
        """`{"expiresOn", "permissions", "blobs": {name: SAS URL}}`: write-only URLs for these blobs of
        the machine's cycle (at most 1,000 names a call)."""
        issued: dict[str, Any] = self._call(
            "POST",
            f"/appliances/{self._id}/upload-credentials",
            json={"machineId": machine_id, "cycleId": cycle_id, "blobs": blobs},
        )
        return issued

    @property
    def _id(self) -> str:
        if not self.appliance_id:
            raise ValueError("this client has no appliance id: register first or pass appliance_id")
        return self.appliance_id

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        retry_on_methods: frozenset[str] = IDEMPOTENT_METHODS,
    ) -> Any:
        request = HttpRequest(method, self.base_url + "/api" + path, json=json)
        response = self._client.send_request(
            request,
            retry_on_methods=retry_on_methods,
            connection_timeout=self._timeout,
            read_timeout=self._timeout,
        )
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "HttpError", "message": response.text() or (response.reason or "")}
            header = response.headers.get("Retry-After")
            retry_after = self._retry.parse_retry_after(header) if header else None
            raise ControlPlaneError(
                response.status_code,
                error.get("code", "HttpError"),
                error.get("message", ""),
                error.get("details"),
                retry_after=retry_after,
            )
        return response.json() if response.content else None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApplianceApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ApplianceEvents:
    """Publishes `Migrate.*` events for one appliance; `subject` is `machines/{id}` or `appliances/{id}`."""

    def __init__(
        self, topic_endpoint: str, credential: AzureKeyCredential | TokenCredential, appliance_id: str
    ) -> None:
        self._client = EventGridPublisherClient(topic_endpoint, credential)
        self.appliance_id = appliance_id

    def heartbeat(self, *, agent_version: str = "local") -> None:
        self._send(
            f"appliances/{self.appliance_id}",
            HEARTBEAT,
            {
                "applianceId": self.appliance_id,
                "time": datetime.now(UTC).isoformat(),
                "agentVersion": agent_version,
            },
        )

    def cycle_started(
        self,
        *,
        machine_id: str,
        cycle_id: str,
        sequence: int,
        kind: str,
        disks: dict[str, int],
        expected_duration_seconds: int | None = None,
    ) -> str:
        """Uploads begin: the control plane raises 1011 for disks not uploaded in the expected time."""
        data: dict[str, Any] = {
            "applianceId": self.appliance_id,
            "machineId": machine_id,
            "cycleId": cycle_id,
            "sequence": sequence,
            "kind": kind,
            "disks": [{"diskId": d, "expectedBytes": n} for d, n in disks.items()],
        }
        if expected_duration_seconds is not None:
            data["expectedDurationSeconds"] = expected_duration_seconds
        return self._send(f"machines/{machine_id}", CYCLE_STARTED, data)

    def cycle_uploaded(
        self,
        *,
        machine_id: str,
        cycle_id: str,
        sequence: int,
        kind: str,
        app_consistent: bool,
        manifests: dict[str, str],
        uploaded_bytes: int | None = None,
    ) -> str:
        data: dict[str, object] = {
            "applianceId": self.appliance_id,
            "machineId": machine_id,
            "cycleId": cycle_id,
            "sequence": sequence,
            "kind": kind,
            "appConsistent": app_consistent,
            "manifests": manifests,
        }
        if uploaded_bytes is not None:
            data["uploadedBytes"] = uploaded_bytes
        return self._send(f"machines/{machine_id}", CYCLE_UPLOADED, data)

    def cycle_failed(
        self,
        *,
        machine_id: str,
        message: str,
        error_code: str | None = None,
        cycle_id: str | None = None,
        disk_id: str | None = None,
    ) -> str:
        data: dict[str, Any] = {"applianceId": self.appliance_id, "machineId": machine_id, "message": message}
        for key, value in (("errorCode", error_code), ("cycleId", cycle_id), ("diskId", disk_id)):
            if value is not None:
                data[key] = value
        return self._send(f"machines/{machine_id}", CYCLE_FAILED, data)

    def _send(self, subject: str, event_type: str, data: dict[str, Any]) -> str:
        event = EventGridEvent(subject=subject, event_type=event_type, data=data, data_version="1.0")
        self._client.send(event)
        return str(event.id)
