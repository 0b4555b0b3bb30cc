"""Management clients built from Settings: one credential, one retry policy, telemetry on retries.

The clients authenticate with the app's managed identity (AZURE_CLIENT_ID names the user-assigned one)
against ARM_ENDPOINT, or, when ARM_STATIC_TOKEN is set, with that fixed bearer token: for an endpoint that
accepts one (the devhost's). The static token is refused with Azure's endpoint, so a fixed token (fake or
real) can never be sent to Azure by mistake.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import RetryPolicy, SansIOHTTPPolicy
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest
from azure.identity import DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from shared.platform.arm_retry import ArmBusyRetryPolicy
from shared.platform.settings import Settings, SettingsError
from shared.platform.telemetry import ArmRetryTelemetryPolicy, Telemetry

PUBLIC_ARM_HOST: Final = "management.azure.com"
# ARM throttles per region with token buckets refilled every second; a burst of hydrations may hit
# 429s, which carry Retry-After and are retried after exactly that wait. Failures without Retry-After
# (408/500/502/503/504, connection resets) are retried at once, then after 2, 4, 8, 16, 32 s. What is
# still throttled or busy after that is waited out by `ArmBusyRetryPolicy` within its time budget.
RETRY_TOTAL: Final = 6
RETRY_BACKOFF_FACTOR: Final = 1.0
RETRY_BACKOFF_MAX: Final = 60


class StaticTokenCredential:
    """A TokenCredential handing out one fixed token (ARM_STATIC_TOKEN)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


class _StaticBearerPolicy(SansIOHTTPPolicy[HttpRequest, Any]):
    # An endpoint taking a static token may speak plain HTTP; azure-core's bearer policies refuse to send
    # a token over it, which is right for real tokens and irrelevant for this one.
    def __init__(self, token: str) -> None:
        self._token = token

    def on_request(self, request: PipelineRequest[HttpRequest]) -> None:
        request.http_request.headers["Authorization"] = f"Bearer {self._token}"


@dataclass
class ArmClients:
    subscription_id: str
    compute: ComputeManagementClient
    network: NetworkManagementClient
    resources: ResourceManagementClient
    polling_interval: float

    def close(self) -> None:
        self.compute.close()
        self.network.close()
        self.resources.close()

    def __enter__(self) -> ArmClients:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def arm_retry_policy() -> RetryPolicy[Any, Any]:
    return RetryPolicy(
        retry_total=RETRY_TOTAL,
        retry_backoff_factor=RETRY_BACKOFF_FACTOR,
        retry_backoff_max=RETRY_BACKOFF_MAX,
    )


def build_arm_clients(
    settings: Settings,
    *,
    credential: TokenCredential | None = None,
    transport: HttpTransport[Any, Any] | None = None,
    telemetry: Telemetry | None = None,
) -> ArmClients:
    """Clients for the configured subscription and endpoint; `transport` lets tests observe the wire.

    Retries are counted into `telemetry` (the configured one by default).
    """
    if not settings.azure_subscription_id:
        raise SettingsError(
            "missing app setting AZURE_SUBSCRIPTION_ID: the subscription where hydration and migration create "
            "resources (infra/main.bicep sets it in Azure; the devhost sets its ARM endpoint's)."
        )
    endpoint = settings.arm_endpoint.rstrip("/")
    kwargs: dict[str, Any] = {
        "base_url": endpoint,
        "polling_interval": settings.arm_polling_interval_seconds,
        "retry_policy": arm_retry_policy(),
        # Outside the RetryPolicy: throttling and busy resources are waited out within the budget.
        "per_call_policies": [ArmBusyRetryPolicy(settings.migration.arm_retry_budget.total_seconds())],
        "per_retry_policies": [ArmRetryTelemetryPolicy(telemetry)],
    }
    if transport is not None:
        kwargs["transport"] = transport
    static = settings.arm_static_token
    if static is not None:
        if (urlsplit(endpoint).hostname or "").lower() == PUBLIC_ARM_HOST:
            raise SettingsError(
                "ARM_STATIC_TOKEN is set but ARM_ENDPOINT is Azure's, which takes no static token. Unset "
                "ARM_STATIC_TOKEN in Azure (the app uses its managed identity)."
            )
        credential = credential or StaticTokenCredential(static.get_secret_value())
        kwargs["authentication_policy"] = _StaticBearerPolicy(static.get_secret_value())
        kwargs["credential_scopes"] = [f"{endpoint}/.default"]
    elif credential is None:
        credential = DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)
    subscription = settings.azure_subscription_id
    return ArmClients(
        subscription_id=subscription,
        compute=ComputeManagementClient(credential, subscription, **kwargs),
        network=NetworkManagementClient(credential, subscription, **kwargs),
        resources=ResourceManagementClient(credential, subscription, **kwargs),
        polling_interval=settings.arm_polling_interval_seconds,
    )
