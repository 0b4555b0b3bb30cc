"""Settings are validated at start-up with errors that name the setting and say where to set it."""

from __future__ import annotations

import pytest

from shared.platform.settings import Settings, SettingsError

LOCAL = {
    "COSMOS_ENDPOINT": "https://127.0.0.1:8081/",
    "COSMOS_KEY": "cosmos-secret-value",
    "COSMOS_VERIFY_TLS": "false",
    "CACHE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    "REPLICA_STORAGE_ACCOUNT_URL": "https://replica.blob.core.windows.net",
    "EVENTGRID_TOPIC_ENDPOINT": "https://topic.westeurope-1.eventgrid.azure.net/api/events",
    "APPLIANCE_CREDENTIAL_PEPPER": "pepper",
}


def test_local_settings_are_read() -> None:
    settings = Settings.from_environ(LOCAL)
    assert settings.cosmos_verify_tls is False
    assert settings.cosmos_database == "migration"
    assert settings.cache_storage.connection_string is not None
    assert settings.replica_storage.account_url == "https://replica.blob.core.windows.net"
    assert settings.cosmos_key is not None and "cosmos-secret-value" not in repr(
        settings
    )  # secrets never print


@pytest.mark.parametrize(
    "missing", ["COSMOS_ENDPOINT", "EVENTGRID_TOPIC_ENDPOINT", "APPLIANCE_CREDENTIAL_PEPPER"]
)
def test_missing_setting_is_named(missing: str) -> None:
    env = {k: v for k, v in LOCAL.items() if k != missing}
    with pytest.raises(SettingsError, match=f"missing app settings: {missing}.*local.settings.example.json"):
        Settings.from_environ(env)


def test_storage_needs_url_or_connection_string() -> None:
    env = {k: v for k, v in LOCAL.items() if not k.startswith("CACHE_STORAGE")}
    with pytest.raises(
        SettingsError, match=r"CACHE_STORAGE_ACCOUNT_URL \(or CACHE_STORAGE_CONNECTION_STRING"
    ):
        Settings.from_environ(env)


def test_unresolved_key_vault_reference_is_refused() -> None:
    env = {
        **LOCAL,
        "APPLIANCE_CREDENTIAL_PEPPER": "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/p)",
    }
    with pytest.raises(
        SettingsError, match="unresolved Key Vault references in: APPLIANCE_CREDENTIAL_PEPPER"
    ):
        Settings.from_environ(env)


def test_malformed_value_is_reported() -> None:
    with pytest.raises(SettingsError, match="invalid app settings"):
        Settings.from_environ({**LOCAL, "COSMOS_VERIFY_TLS": "maybe"})
