"""Every setting the app reads, in one validated model.

In Azure the values come from app settings (identity-based connections, Key Vault references);
locally from local.settings.json / the devhost. A missing or malformed setting fails at start-up
with the setting's name and what to put there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError


class SettingsError(RuntimeError):
    """Raised at start-up when the app settings are incomplete or invalid."""


class StorageAccountSettings(BaseModel):
    """A storage account reached either by connection string (local) or account URL + managed identity."""

    model_config = ConfigDict(frozen=True)

    connection_string: SecretStr | None = None
    account_url: str | None = None

    def describe(self) -> str:
        return self.account_url or "connection string"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    cosmos_endpoint: str = Field(description="COSMOS_ENDPOINT: the Cosmos DB account endpoint")
    cosmos_key: SecretStr | None = Field(
        default=None,
        description="COSMOS_KEY: account key, local emulator only; unset in Azure (managed identity)",
    )
    cosmos_database: str = Field(default="migration", description="COSMOS_DATABASE")
    cosmos_verify_tls: bool = Field(
        default=True, description="COSMOS_VERIFY_TLS: false only for the local emulator"
    )
    cache_storage: StorageAccountSettings = Field(
        description="CACHE_STORAGE_*: where appliances upload cycles"
    )
    replica_storage: StorageAccountSettings = Field(
        description="REPLICA_STORAGE_*: replica disks and snapshots"
    )
    eventgrid_topic_endpoint: str = Field(description="EVENTGRID_TOPIC_ENDPOINT: the appliances' event topic")
    eventgrid_topic_key: SecretStr | None = Field(
        default=None, description="EVENTGRID_TOPIC_KEY: local only; in Azure the app uses its identity"
    )
    appliance_credential_pepper: SecretStr = Field(
        description="APPLIANCE_CREDENTIAL_PEPPER: server-side secret mixed into appliance credential hashes"
    )
    managed_identity_client_id: str | None = Field(default=None, description="AZURE_CLIENT_ID")
    applicationinsights_connection_string: SecretStr | None = Field(
        default=None, description="APPLICATIONINSIGHTS_CONNECTION_STRING"
    )
    telemetry_file: str | None = Field(
        default=None,
        description="TELEMETRY_FILE: without Application Insights, append spans and metrics as JSON lines "
        "to this file rather than stderr (the local stack sets it so tests can read what was emitted)",
    )
    # --- Azure Resource Manager (shared/arm) ---
    azure_subscription_id: str | None = Field(
        default=None,
        description="AZURE_SUBSCRIPTION_ID: where hydration and migration create VMs, disks and networks; "
        "needed by the ARM operations only, checked when they build their clients",
    )
    arm_endpoint: str = Field(
        default="https://management.azure.com",
        description="ARM_ENDPOINT: Resource Manager base URL; the local stack's local ARM endpoint locally",
    )
    arm_local_static_token: SecretStr | None = Field(
        default=None,
        description="ARM_LOCAL_STATIC_TOKEN: bearer token for the local ARM endpoint only; never set in Azure "
        "(the app uses its managed identity)",
    )
    arm_polling_interval_seconds: float = Field(
        default=30.0,
        ge=0.0,
        description="ARM_POLLING_INTERVAL_SECONDS: wait between polls of an ARM async operation when the "
        "service sends no Retry-After (azure-mgmt-core's default is 30 s)",
    )
    # --- end Azure Resource Manager ---

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def storage(prefix: str) -> dict[str, str | None]:
            return {
                "connection_string": env.get(f"{prefix}_CONNECTION_STRING"),
                "account_url": env.get(f"{prefix}_ACCOUNT_URL"),
            }

        raw = {
            "cosmos_endpoint": env.get("COSMOS_ENDPOINT"),
            "cosmos_key": env.get("COSMOS_KEY"),
            "cosmos_database": env.get("COSMOS_DATABASE", "migration"),
            "cosmos_verify_tls": env.get("COSMOS_VERIFY_TLS", "true"),
            "cache_storage": storage("CACHE_STORAGE"),
            "replica_storage": storage("REPLICA_STORAGE"),
            "eventgrid_topic_endpoint": env.get("EVENTGRID_TOPIC_ENDPOINT"),
            "eventgrid_topic_key": env.get("EVENTGRID_TOPIC_KEY"),
            "appliance_credential_pepper": env.get("APPLIANCE_CREDENTIAL_PEPPER"),
            "managed_identity_client_id": env.get("AZURE_CLIENT_ID"),
            "applicationinsights_connection_string": env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"),
            "telemetry_file": env.get("TELEMETRY_FILE") or None,
            # --- Azure Resource Manager (shared/arm) ---
            "azure_subscription_id": env.get("AZURE_SUBSCRIPTION_ID") or None,
            "arm_endpoint": env.get("ARM_ENDPOINT") or "https://management.azure.com",
            "arm_local_static_token": env.get("ARM_LOCAL_STATIC_TOKEN") or None,
            "arm_polling_interval_seconds": env.get("ARM_POLLING_INTERVAL_SECONDS") or "30",
            # --- end Azure Resource Manager ---
        }
        missing = [
            name
            for name, value in (
                ("COSMOS_ENDPOINT", raw["cosmos_endpoint"]),
                ("EVENTGRID_TOPIC_ENDPOINT", raw["eventgrid_topic_endpoint"]),
                ("APPLIANCE_CREDENTIAL_PEPPER", raw["appliance_credential_pepper"]),
            )
            if not value
        ]
        for prefix in ("CACHE_STORAGE", "REPLICA_STORAGE"):
            if not env.get(f"{prefix}_CONNECTION_STRING") and not env.get(f"{prefix}_ACCOUNT_URL"):
                missing.append(f"{prefix}_ACCOUNT_URL (or {prefix}_CONNECTION_STRING locally)")
        if missing:
            raise SettingsError(
                "missing app settings: "
                + ", ".join(missing)
                + ". Set them in local.settings.json locally (see local.settings.example.json) "
                "or in the Function App's configuration (infra/main.bicep sets them in Azure)."
            )
        unresolved = [name for name, value in env.items() if str(value).startswith("@Microsoft.KeyVault(")]
        if unresolved:
            # App Service leaves the reference text in place when it cannot resolve it; never use it as a secret.
            raise SettingsError(
                "unresolved Key Vault references in: "
                + ", ".join(sorted(unresolved))
                + ". Check that the app's identity has 'Key Vault Secrets User' on the vault and that "
                "keyVaultReferenceIdentity names it."
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise SettingsError(f"invalid app settings: {exc}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_environ()
