"""Composition root: builds every client and repository from Settings, once per process.

Entry points call `get_services()`; tests install their own with `use_services(...)`. Clients that need
a setting only some capabilities use (ARM needs AZURE_SUBSCRIPTION_ID) are built on first use, still once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

from azure.core.credentials import TokenCredential
from azure.storage.blob import ContainerClient

from shared.appliances.credentials import CredentialHasher
from shared.domain.errors import Unavailable
from shared.health.settings import HealthSettings
from shared.migration.toolkit_bundle import ToolkitBundle, build_toolkit_bundle, hydration_container_of
from shared.platform import crash_points
from shared.platform.arm_clients import ArmClients, build_arm_clients
from shared.platform.azure_placement import AzurePlacement
from shared.platform.clock import Clock, utc_now
from shared.platform.cosmos_store import CosmosDocumentStore, ensure_containers
from shared.platform.operator_auth import OperatorTokenValidator, SigningKeys
from shared.platform.repository import Repositories
from shared.platform.settings import Settings
from shared.platform.storage import (
    CACHE_CONTAINER,
    REFUSED_EVENTS_CONTAINER,
    REPLICA_CONTAINER,
    BlobSasSigner,
    container_client,
)
from shared.platform.telemetry import Telemetry, configure_telemetry, get_telemetry


@dataclass
class Services:
    settings: Settings
    repos: Repositories
    hasher: CredentialHasher
    clock: Clock = field(default=utc_now)
    telemetry: Telemetry = field(default_factory=get_telemetry)
    health: HealthSettings = field(default_factory=HealthSettings)
    # The app's identity when build_services already made one (Cosmos with Entra ID).
    credential: TokenCredential | None = None

    # Built on first use and kept: a test may assign its own before that.
    @cached_property
    def identity(self) -> TokenCredential:
        """The app's identity, shared by every client that authenticates with it (one token cache)."""
        return self.credential or app_identity(self.settings)

    @cached_property
    def cache(self) -> ContainerClient:
        """The cache account's upload container."""
        return container_client(self.settings.cache_storage, CACHE_CONTAINER, lambda: self.identity)

    @cached_property
    def upload_signer(self) -> BlobSasSigner:
        """Signs the appliances' upload SAS on the cache container (one cached delegation key)."""
        return BlobSasSigner(self.cache)

    @cached_property
    def replicas(self) -> ContainerClient:
        """The replica account's container of replica disks."""
        return container_client(self.settings.replica_storage, REPLICA_CONTAINER, lambda: self.identity)

    @cached_property
    def refused_events(self) -> ContainerClient:
        """The replica account's container of refused appliance events (the app's own dead letters)."""
        return container_client(
            self.settings.replica_storage, REFUSED_EVENTS_CONTAINER, lambda: self.identity
        )

    @cached_property
    def hydration(self) -> ContainerClient:
        """The replica account's container of the toolkit, the reports and the recovery-point pins."""
        return hydration_container_of(self.replicas)

    @cached_property
    def arm(self) -> ArmClients:
        """Management clients; shared by every activity (Azure SDK clients are thread-safe), never closed."""
        # A static token replaces the identity (build_arm_clients refuses it for Azure's endpoint).
        credential = None if self.settings.arm_static_token is not None else self.identity
        return build_arm_clients(self.settings, credential=credential, telemetry=self.telemetry)

    @cached_property
    def placement(self) -> AzurePlacement | None:
        """Azure's checks of target and failover settings (sizes cached per region in this process);
        None without AZURE_SUBSCRIPTION_ID, where nothing is built in Azure either."""
        if self.settings.azure_subscription_id is None:
            return None
        return AzurePlacement(lambda: self.arm, self.clock)

    @cached_property
    def operator_auth(self) -> OperatorTokenValidator:
        """Validates operators' bearer tokens; its key cache lives as long as the process."""
        authority, audience = self.settings.operator_auth_authority, self.settings.operator_auth_audience
        if not authority or not audience:
            # Fail closed, and say which settings are missing: no operator route answers without them.
            raise Unavailable(
                "operator authentication is not configured: set OPERATOR_AUTH_AUTHORITY and "
                "OPERATOR_AUTH_AUDIENCE in the app settings (docs/security.md)",
                retry_after_seconds=300,
            )
        return OperatorTokenValidator(SigningKeys(authority), audience)

    @cached_property
    def toolkit_bundle(self) -> ToolkitBundle:
        """This deployment's hydration toolkit (the package does not change while the worker runs)."""
        return build_toolkit_bundle(helper_debs=self.settings.migration.helper_debs_dir)


def app_identity(settings: Settings) -> TokenCredential:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)


def build_services(settings: Settings) -> Services:
    from azure.cosmos import CosmosClient

    crash_points.configure(settings.test_hooks.crash_points_dir)

    credential: TokenCredential | None = None
    if settings.cosmos_key is not None:
        # Key auth also allows creating containers through the data plane.
        client = CosmosClient(
            settings.cosmos_endpoint,
            credential=settings.cosmos_key.get_secret_value(),
            connection_verify=settings.cosmos_verify_tls,
        )
        database = ensure_containers(client, settings.cosmos_database)
    else:
        # Entra ID: data-plane RBAC cannot create containers; infra/ (Bicep) creates them, see docs/data-model.md.
        credential = app_identity(settings)
        client = CosmosClient(settings.cosmos_endpoint, credential=credential)
        database = client.get_database_client(settings.cosmos_database)
    pepper = settings.appliance_credential_pepper.get_secret_value().encode()
    repos = Repositories(CosmosDocumentStore(database))
    telemetry = configure_telemetry(settings)
    # Every round-trip becomes a metric: Cosmos cost per cycle is watched in production, not only in bench.
    repos.counter.add_listener(telemetry.record_cosmos_operation)
    repos.counter.add_fallback_listener(telemetry.record_cosmos_fallback)
    return Services(
        settings=settings,
        repos=repos,
        hasher=CredentialHasher(pepper),
        telemetry=telemetry,
        # Built now, not on first use: a bad HEALTH_* combination fails the start, not a cycle.
        health=HealthSettings.from_thresholds(settings.health),
        credential=credential,
    )


_lock = threading.Lock()
_services: Services | None = None


def get_services() -> Services:
    global _services
    with _lock:
        if _services is None:
            _services = build_services(Settings.from_environ())
        return _services


@contextmanager
def use_services(services: Services) -> Iterator[Services]:
    """Install `services` for the duration (tests, benchmarks), restoring what was there before."""
    global _services
    with _lock:
        previous, _services = _services, services
    try:
        yield services
    finally:
        with _lock:
            _services = previous
