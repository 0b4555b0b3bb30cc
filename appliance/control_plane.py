"""The appliance's side of the control plane: the HTTP API and the Event Grid topic.

`ApplianceApi` registers, reports machines, reads the policy and polls commands; `ApplianceEvents`
publishes the normative appliance events with the real `EventGridPublisherClient`. Both raise
`ControlPlaneError` with the API's `{"error": {"code", "message", "details"}}` when a call is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from pydantic import BaseModel, ConfigDict

from shared.appliances.events import CYCLE_FAILED, CYCLE_STARTED, CYCLE_UPLOADED, HEARTBEAT
from shared.domain.command import CommandAnswer


class ControlPlaneError(RuntimeError):
    def __init__(self, status: int, code: str, message: str, details: list[Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details or []


class Registration(BaseModel):
    model_config = ConfigDict(frozen=True)

    appliance_id: str
    credential: str


class ApplianceApi:
    def __init__(
        self,
        base_url: str,
        function_key: str,
        *,
        appliance_id: str | None = None,
        credential: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.appliance_id = appliance_id
        headers = {"x-functions-key": function_key}
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
        self._http = httpx.Client(base_url=self.base_url + "/api", headers=headers, timeout=timeout)

    @classmethod
    def register(
        cls, base_url: str, function_key: str, *, name: str, kind: str, site: str
    ) -> tuple[ApplianceApi, Registration]:
        """Operator-side registration; the credential is shown once and must be kept by the appliance."""
        with cls(base_url, function_key) as operator:
            body = operator._call("POST", "/appliances", json={"name": name, "kind": kind, "site": site})
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
        body = {"json": answer.to_wire()} if answer is not None else {}
        self._call("POST", f"/appliances/{self._id}/commands/{command_id}/ack", **body)

    @property
    def _id(self) -> str:
        if not self.appliance_id:
            raise ValueError("this client has no appliance id: register first or pass appliance_id")
        return self.appliance_id

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "HttpError", "message": response.text or response.reason_phrase}
            raise ControlPlaneError(
                response.status_code,
                error.get("code", "HttpError"),
                error.get("message", ""),
                error.get("details"),
            )
        return response.json() if response.content else None

    def close(self) -> None:
        self._http.close()

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
    ) -> str:
        return self._send(
            f"machines/{machine_id}",
            CYCLE_UPLOADED,
            {
                "applianceId": self.appliance_id,
                "machineId": machine_id,
                "cycleId": cycle_id,
                "sequence": sequence,
                "kind": kind,
                "appConsistent": app_consistent,
                "manifests": manifests,
            },
        )

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
