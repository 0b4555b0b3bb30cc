"""Blob containers of the data plane, reached with a connection string (local) or the app's identity (Azure)."""

from __future__ import annotations

import contextlib
from functools import lru_cache

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.platform.settings import Settings, StorageAccountSettings, get_settings

# Names agreed with infra/main.bicep: the cache account's upload container and the replica container.
CACHE_CONTAINER = "uploads"
REPLICA_CONTAINER = "replicas"


def _service(account: StorageAccountSettings, settings: Settings) -> BlobServiceClient:
    if account.connection_string is not None:
        return BlobServiceClient.from_connection_string(account.connection_string.get_secret_value())
    from azure.identity import DefaultAzureCredential

    assert account.account_url is not None  # Settings guarantees one of the two
    credential = DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)
    return BlobServiceClient(account.account_url, credential=credential)


@lru_cache(maxsize=1)
def cache_container() -> ContainerClient:
    settings = get_settings()
    return _service(settings.cache_storage, settings).get_container_client(CACHE_CONTAINER)


@lru_cache(maxsize=1)
def replica_container() -> ContainerClient:
    settings = get_settings()
    return _service(settings.replica_storage, settings).get_container_client(REPLICA_CONTAINER)


def ensure_containers_exist() -> None:
    """Locally the emulator starts empty; in Azure infra/ creates the containers (this is then a no-op)."""
    for container in (cache_container(), replica_container()):
        if not container.exists():
            with contextlib.suppress(ResourceExistsError):  # another worker won the race
                container.create_container()
