"""Blob containers of the data plane, reached with a connection string (account key) or the app's identity."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.platform.settings import StorageAccountSettings

# Names agreed with infra/main.bicep: the cache account's upload container and the replica container.
CACHE_CONTAINER = "uploads"
REPLICA_CONTAINER = "replicas"
# The replica account's container of refused appliance events (dead letters written by the app itself).
REFUSED_EVENTS_CONTAINER = "refused-events"


def container_client(
    account: StorageAccountSettings, name: str, identity: Callable[[], TokenCredential]
) -> ContainerClient:
    """The container `name` of `account`: with its account key, or with the app's identity (asked for
    only then)."""
    if account.connection_string is not None:
        service = BlobServiceClient.from_connection_string(account.connection_string.get_secret_value())
        return service.get_container_client(name)
    assert account.account_url is not None  # Settings guarantees one of the two
    return BlobServiceClient(account.account_url, credential=identity()).get_container_client(name)


def ensure_containers_exist(*containers: ContainerClient) -> None:
    """Create the containers if missing: a fresh account has none; where infra/ created them this only
    checks."""
    for container in containers:
        if not container.exists():
            with contextlib.suppress(ResourceExistsError):  # another worker won the race
                container.create_container()
