"""Blob containers of the data plane, reached with a connection string (account key) or the app's identity,
and the short-lived SAS URLs the app signs for single blobs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    UserDelegationKey,
    generate_blob_sas,
)

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


# A delegation key outlives every SAS it signs by at least this much, so a SAS never dies with its key.
_KEY_MARGIN = timedelta(minutes=10)
# Backdated starts absorb clock skew between this host and the storage service.
_CLOCK_SKEW = timedelta(minutes=5)


class BlobSasSigner:
    """Short-lived SAS URLs for single blobs of one container.

    With the app's identity (Azure) they are user-delegation SAS: the delegation key is asked for once,
    for `key_lifetime`, and renewed when it would no longer outlive a new SAS. With an account key
    (the local emulator, whose blob endpoint serves delegation keys only over OAuth and HTTPS) they are
    service SAS with the same scope, permissions and expiry. Thread-safe: one signer per process.
    """

    def __init__(self, container: ContainerClient, *, key_lifetime: timedelta = timedelta(hours=6)) -> None:
        self._container = container
        self._key_lifetime = key_lifetime
        self._lock = threading.Lock()
        self._key: UserDelegationKey | None = None
        self._key_expiry: datetime | None = None

    @property
    def uses_delegation_key(self) -> bool:
        return not isinstance(getattr(self._container.credential, "account_key", None), str)

    def blob_url(
        self, blob_name: str, *, permission: BlobSasPermissions, expiry: datetime, now: datetime
    ) -> str:
        """The blob's URL with a SAS granting `permission` on that blob alone until `expiry`."""
        container = self._container
        account = container.account_name or ""
        start = now - _CLOCK_SKEW
        # HTTPS whenever the endpoint speaks it; plain HTTP only for an http:// (emulator) endpoint.
        protocol = "https" if container.url.startswith("https://") else "https,http"
        if self.uses_delegation_key:
            token = generate_blob_sas(
                account,
                container.container_name,
                blob_name,
                user_delegation_key=self._delegation_key(now, expiry),
                permission=permission,
                start=start,
                expiry=expiry,
                protocol="https",
            )
        else:
            token = generate_blob_sas(
                account,
                container.container_name,
                blob_name,
                account_key=getattr(container.credential, "account_key", ""),
                permission=permission,
                start=start,
                expiry=expiry,
                protocol=protocol,
            )
        return f"{container.get_blob_client(blob_name).url}?{token}"

    def _delegation_key(self, now: datetime, expiry: datetime) -> UserDelegationKey:
        with self._lock:
            if self._key is None or self._key_expiry is None or self._key_expiry < expiry + _KEY_MARGIN:
                start = now - _CLOCK_SKEW
                key_expiry = max(now + self._key_lifetime, expiry + _KEY_MARGIN)
                service = container_service(self._container)
                self._key = service.get_user_delegation_key(start, key_expiry)
                self._key_expiry = key_expiry
            return self._key


def container_service(container: ContainerClient) -> BlobServiceClient:
    """The service client of `container`'s account, with the same credential."""
    return container._get_blob_service_client()  # no public accessor in the SDK


WRITE_ONLY_SAS = BlobSasPermissions(create=True, write=True)
