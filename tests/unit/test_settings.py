"""Settings are validated at start-up with errors that name the setting and say where to set it."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest

from shared.platform.settings import Settings, SettingsError, variables

ROOT = Path(__file__).resolve().parents[2]

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


def test_groups_are_read_from_their_documented_names() -> None:
    settings = Settings.from_environ(
        {
            **LOCAL,
            "HEALTH_RPO_WARNING_SECONDS": "600",
            "HYDRATION_HELPER_VM_SIZE": "Standard_D4s_v5",
            "HYDRATION_HELPER_DEBS_DIR": "/opt/debs",
            "SWEEPER_MIN_AGE_MINUTES": "30",
            "SWEEPER_STALE_JOB_HOURS": "6",
            "TELEMETRY_CONSOLE_METRIC_INTERVAL_MS": "500",
            "REPLICA_STORAGE_ACCOUNT_ID": "/subscriptions/s/resourceGroups/rg/providers/x/y/replica",
        }
    )
    assert settings.health.rule_overrides() == {"rpo_warning": timedelta(minutes=10)}
    assert settings.health.dispose_timeout == timedelta(minutes=15)  # the default
    assert settings.migration.helper_vm_size == "Standard_D4s_v5"
    assert settings.migration.helper_debs_dir == Path("/opt/debs")
    assert settings.sweeper.min_age == timedelta(minutes=30)
    assert settings.sweeper.stale_job_after == timedelta(hours=6)
    assert settings.telemetry.console_metric_interval == timedelta(milliseconds=500)
    assert settings.replica_storage.require_account_id().endswith("/replica")


def test_empty_values_are_unset() -> None:
    settings = Settings.from_environ({**LOCAL, "AZURE_SUBSCRIPTION_ID": "", "SWEEPER_MIN_AGE_MINUTES": " "})
    assert settings.azure_subscription_id is None
    assert settings.sweeper.min_age == timedelta(hours=2)


def test_every_problem_is_named_at_once_and_secrets_are_not_echoed() -> None:
    env = {k: v for k, v in LOCAL.items() if k != "EVENTGRID_TOPIC_ENDPOINT"} | {
        "HEALTH_DISPOSE_TIMEOUT_SECONDS": "soon",
        "SWEEPER_STALE_JOB_HOURS": "0",
        "HEALTH_MAX_AUTO_REPAIRS": "many",
    }
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ(env)
    message = str(raised.value)
    assert message.startswith("missing app settings: EVENTGRID_TOPIC_ENDPOINT.")
    assert "HEALTH_DISPOSE_TIMEOUT_SECONDS='soon': must be a number of seconds" in message
    assert "SWEEPER_STALE_JOB_HOURS='0': must be more than zero" in message
    assert "HEALTH_MAX_AUTO_REPAIRS='many'" in message
    assert "local.settings.example.json" in message
    assert "cosmos-secret-value" not in message and "pepper" not in message.split("Set them")[0].lower()


def test_the_process_environment_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**LOCAL, "SWEEPER_MIN_AGE_MINUTES": "45"}.items():
        monkeypatch.setenv(name, value)
    assert Settings.from_environ().sweeper.min_age == timedelta(minutes=45)
    assert Settings().sweeper.min_age == timedelta(minutes=45)


def test_every_variable_is_named_once_and_tuning_needs_no_value() -> None:
    names = [v.env for v in variables()]
    assert len(names) == len(set(names))
    assert not [v.env for v in variables() if v.tuning and v.required]


def test_only_the_settings_model_reads_the_environment() -> None:
    """Product code gets its settings from Services.settings; a new os.environ read would bypass the
    start-up validation, the README table and the infra wiring check."""
    allowed = {ROOT / "shared" / "platform" / "settings.py"}
    readers = []
    sources = [ROOT / "function_app.py"]
    for package in ("shared", "functions", "orchestrators"):
        sources += sorted((ROOT / package).rglob("*.py"))
    for path in sources:
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert readers == []
