"""Composition root: builds the repositories and credential hasher from Settings, once per process.

Entry points call `get_services()`; tests install their own with `use_services(...)`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from shared.appliances.credentials import CredentialHasher
from shared.platform.clock import Clock, utc_now
from shared.platform.cosmos_store import CosmosDocumentStore, ensure_containers
from shared.platform.repository import Repositories
from shared.platform.settings import Settings, get_settings
from shared.platform.telemetry import configure_telemetry


@dataclass
class Services:
    repos: Repositories
    hasher: CredentialHasher
    clock: Clock = field(default=utc_now)


def build_services(settings: Settings) -> Services:
    from azure.cosmos import CosmosClient

    if settings.cosmos_key is not None:
        # Key auth: the local emulator. Creating containers through the data plane is allowed here.
        client = CosmosClient(
            settings.cosmos_endpoint,
            credential=settings.cosmos_key.get_secret_value(),
            connection_verify=settings.cosmos_verify_tls,
        )
        database = ensure_containers(client, settings.cosmos_database)
    else:
        # Entra ID: data-plane RBAC cannot create containers; infra/ (Bicep) creates them, see docs/data-model.md.
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)
        client = CosmosClient(settings.cosmos_endpoint, credential=credential)
        database = client.get_database_client(settings.cosmos_database)
    pepper = settings.appliance_credential_pepper.get_secret_value().encode()
    repos = Repositories(CosmosDocumentStore(database))
    # Every round-trip becomes a metric: Cosmos cost per cycle is watched in production, not only in bench.
    repos.counter.add_listener(configure_telemetry(settings).record_cosmos_operation)
    return Services(repos=repos, hasher=CredentialHasher(pepper))


_lock = threading.Lock()
_services: Services | None = None


def get_services() -> Services:
    global _services
    with _lock:
        if _services is None:
            _services = build_services(get_settings())
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
