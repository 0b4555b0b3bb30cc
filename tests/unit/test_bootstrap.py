"""Services builds each client once, from Settings, and every identity-based client shares one credential."""

from __future__ import annotations

from pathlib import Path

from shared.appliances.credentials import CredentialHasher
from shared.bootstrap import Services, get_services, use_services
from shared.platform.repository import Repositories
from shared.platform.settings import Settings
from tests.support.memory_store import InMemoryDocumentStore

AZURE = {
    "COSMOS_ENDPOINT": "https://cosmos.documents.azure.com:443/",
    "CACHE_STORAGE_ACCOUNT_URL": "https://cache.blob.core.windows.net",
    "REPLICA_STORAGE_ACCOUNT_URL": "https://replica.blob.core.windows.net",
    "EVENTGRID_TOPIC_ENDPOINT": "https://topic/api/events",
    "APPLIANCE_CREDENTIAL_PEPPER": "pepper",
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
}


def services(env: dict[str, str]) -> Services:
    return Services(
        settings=Settings.from_environ(env),
        repos=Repositories(InMemoryDocumentStore()),
        hasher=CredentialHasher(b"bootstrap-test-pepper-0123", n=2**4),
    )


def test_clients_are_built_once_and_share_the_identity() -> None:
    built = services(AZURE)
    assert built.cache is built.cache and built.arm is built.arm
    assert built.cache.url == "https://cache.blob.core.windows.net/uploads"
    assert built.replicas.url == "https://replica.blob.core.windows.net/replicas"
    assert built.hydration.url == "https://replica.blob.core.windows.net/hydration"
    assert built.cache.credential is built.identity and built.replicas.credential is built.identity
    assert built.arm.subscription_id == AZURE["AZURE_SUBSCRIPTION_ID"]


def test_the_toolkit_bundle_carries_the_configured_helper_packages(tmp_path: Path) -> None:
    (tmp_path / "helper.deb").write_bytes(b"!<arch>\n")
    plain = services(AZURE).toolkit_bundle
    with_debs = services({**AZURE, "HYDRATION_HELPER_DEBS_DIR": str(tmp_path)}).toolkit_bundle
    assert plain.digest != with_debs.digest


def test_use_services_swaps_and_restores() -> None:
    mine = services(AZURE)
    with use_services(mine):
        assert get_services() is mine
        with use_services(services(AZURE)) as inner:
            assert get_services() is inner
        assert get_services() is mine
