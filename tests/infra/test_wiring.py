"""Every setting the code reads is set by the Bicep Function App, identity-based, and no key is.

Names are discovered, not listed here: the environment variables of the Settings model
(shared/platform/settings.py, the only product code that reads the environment), the connection names in
host.json, the `connection=` arguments of trigger/binding decorators in the function code, and
AzureWebJobsStorage. Tuning settings (health timings, hydration sizes, the sweeper) have defaults that
hold in Azure; every other setting must be set there.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from typing import Any

from shared.platform.settings import variables
from tests.infra.bicep_model import (
    INFRA,
    MAIN,
    ROOT,
    bicep_files,
    object_keys,
    parse,
    strip_comments,
)
from tests.infra.bicep_model import (
    variables as bicep_variables,
)

FUNCTION_APP = INFRA / "modules" / "functionapp.bicep"
# Settings that carry a key or a fixed token are for endpoints that accept them (the devhost's emulators);
# in Azure the identity replaces them.
KEY_CARRYING = re.compile(r"(_KEY|_CONNECTION_STRING|_STATIC_TOKEN)$")
# Key-carrying settings whose Azure counterpart is not a sibling by name: a static ARM token stands in for
# the managed identity.
IDENTITY_COUNTERPART = {"ARM_STATIC_TOKEN": "AZURE_CLIENT_ID"}
# Not a credential once Application Insights has local auth disabled, and the SDKs need it.
NOT_A_SECRET = {"APPLICATIONINSIGHTS_CONNECTION_STRING"}
# Where telemetry goes when Application Insights is not configured: the local stack's file, never Azure.
LOCAL_DIAGNOSTICS = {"TELEMETRY_FILE"}
IDENTITY_SERVICE_KEYS = (
    "accountName",
    "blobServiceUri",
    "queueServiceUri",
    "serviceUri",
    "accountEndpoint",
    "fullyQualifiedNamespace",
    "topicEndpointUri",
)


# --- discovery from the code ----------------------------------------------------------------------------


def settings_read_by_code() -> set[str]:
    return {v.env for v in variables()}


def settings_azure_needs() -> set[str]:
    """Every non-tuning setting, except those carrying a key (the identity replaces them)."""
    return {
        v.env
        for v in variables()
        if not v.tuning and (v.env in NOT_A_SECRET or not KEY_CARRYING.search(v.env))
    }


def _connection_names_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in {"connectionName", "connectionStringName", "connection"} and isinstance(item, str):
                yield item
            else:
                yield from _connection_names_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _connection_names_in(item)


def connections_used_by_code() -> set[str]:
    names = {"AzureWebJobsStorage"}
    names |= set(_connection_names_in(json.loads((ROOT / "host.json").read_text())))
    sources = [
        ROOT / "function_app.py",
        *(ROOT / "functions").rglob("*.py"),
        *(ROOT / "orchestrators").rglob("*.py"),
    ]
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "connection" and isinstance(keyword.value, ast.Constant):
                        names.add(str(keyword.value.value))
    return names


# --- what the Bicep sets ------------------------------------------------------------------------------


def bicep_app_settings() -> dict[str, Any]:
    settings = object_keys(bicep_variables(MAIN)["appSettings"])
    settings |= object_keys(bicep_variables(FUNCTION_APP)["hostStorageSettings"])
    return settings


# --- tests --------------------------------------------------------------------------------------------


def test_discovery_finds_the_settings_model() -> None:
    discovered = settings_read_by_code()
    # Sanity of the discovery itself (nested groups' prefixes resolved), not the list of what must be set.
    assert "CACHE_STORAGE_ACCOUNT_URL" in discovered and "REPLICA_STORAGE_CONNECTION_STRING" in discovered
    assert (
        "HEALTH_RPO_WARNING_SECONDS" in discovered
        and "HEALTH_RPO_WARNING_SECONDS" not in settings_azure_needs()
    )
    assert "AzureWebJobsStorage" in connections_used_by_code()


def test_every_setting_the_code_reads_is_set_in_azure() -> None:
    set_by_bicep = bicep_app_settings()
    missing = sorted(settings_azure_needs() - set(set_by_bicep))
    assert not missing, (
        f"settings read by shared/platform/settings.py but not set in infra/main.bicep: {missing}"
    )


def test_local_only_key_settings_are_never_set_and_have_an_identity_counterpart() -> None:
    set_by_bicep = bicep_app_settings()
    read = settings_read_by_code()
    for name in sorted(read):
        if not KEY_CARRYING.search(name) or name in NOT_A_SECRET:
            continue
        assert name not in set_by_bicep, f"{name} carries a key: Azure uses the managed identity instead"
        if name in IDENTITY_COUNTERPART:
            assert IDENTITY_COUNTERPART[name] in set_by_bicep, (
                f"{name} needs {IDENTITY_COUNTERPART[name]} in Azure"
            )
            continue
        prefix = name.rsplit("_", 2)[0] if name.endswith("_CONNECTION_STRING") else name.rsplit("_", 1)[0]
        siblings = {other for other in read if other.startswith(prefix + "_") and other != name}
        assert siblings & set(set_by_bicep), f"{name} carries a key but nothing of {prefix}_* is set in Azure"


def test_connections_are_identity_based() -> None:
    set_by_bicep = bicep_app_settings()
    for connection in sorted(connections_used_by_code()):
        assert connection not in set_by_bicep, f"{connection} as a connection string would carry a key"
        assert any(f"{connection}__{key}" in set_by_bicep for key in IDENTITY_SERVICE_KEYS), connection
        assert set_by_bicep.get(f"{connection}__credential") == "managedidentity", connection
        assert f"{connection}__clientId" in set_by_bicep, f"{connection} must name the user-assigned identity"


def test_the_pepper_is_a_key_vault_reference_and_settings_carry_no_keys() -> None:
    settings = bicep_app_settings()
    assert str(settings["APPLIANCE_CREDENTIAL_PEPPER"]).startswith("@Microsoft.KeyVault(SecretUri=")
    for name, value in settings.items():
        text = json.dumps(value)
        for marker in (
            "AccountKey=",
            "SharedAccessKey=",
            "sig=",
            "listKeys",
            "primaryMasterKey",
            "keys.key1",
        ):
            assert marker not in text, f"{name} looks like it carries a key ({marker})"
    for path in bicep_files():
        code = strip_comments(path.read_text())
        assert not re.search(r"\blist(Keys|ConnectionStrings|Secrets)\(|\.listKeys\(", code), path.name


def test_identity_resolves_key_vault_references_and_durable_stays_warm() -> None:
    app = next(
        resource["config"]
        for resource in parse(FUNCTION_APP)["resources"].values()
        if resource["type"] == "Microsoft.Web/sites"
    )
    properties = app["properties"]
    assert properties["keyVaultReferenceIdentity"] == "identityId"
    assert properties["httpsOnly"] is True
    config = properties["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "pythonVersion"}
    assert {"name": "durable", "instanceCount": "durableAlwaysReadyInstances"} in config[
        "scaleAndConcurrency"
    ]["alwaysReady"]
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["durableTask"]["storageProvider"]["type"] == "AzureStorage", (
        "Flex Consumption supports only the Azure Storage provider for Durable Functions"
    )


def test_event_grid_subscription_targets_the_function_with_retries_and_dead_letter() -> None:
    module = parse(MAIN)["modules"]["eventSubscription"]["config"]
    params = module["config"]["params"]
    assert params["functionName"] == "on_appliance_event"
    subscription_file = INFRA / "modules" / "eventgrid-subscription.bicep"
    (subscription,) = [
        r["config"]
        for r in parse(subscription_file)["resources"].values()
        if r["type"] == "Microsoft.EventGrid/topics/eventSubscriptions"
    ]
    properties = subscription["properties"]
    assert properties["destination"]["endpointType"] == "AzureFunction"
    assert (
        properties["destination"]["properties"]["resourceId"] == "${functionAppId}/functions/${functionName}"
    )
    assert set(properties["retryPolicy"]) == {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"}
    dead_letter = properties["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"]["type"] == "SystemAssigned"
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"
    topic_file = INFRA / "modules" / "eventgrid-topic.bicep"
    (topic,) = [
        r["config"]
        for r in parse(topic_file)["resources"].values()
        if r["type"] == "Microsoft.EventGrid/topics"
    ]
    assert topic["properties"]["disableLocalAuth"] is True


def test_storage_accounts_are_private_identity_only_and_soft_deleting() -> None:
    storage = parse(INFRA / "modules" / "storage.bicep")["resources"]
    account = next(
        r["config"]["properties"]
        for r in storage.values()
        if r["type"] == "Microsoft.Storage/storageAccounts"
    )
    assert account["allowSharedKeyAccess"] is False
    assert account["allowBlobPublicAccess"] is False
    assert account["minimumTlsVersion"] == "TLS1_2"
    blob = next(r["config"]["properties"] for r in storage.values() if r["type"].endswith("/blobServices"))
    assert blob["deleteRetentionPolicy"]["enabled"] is True
    assert blob["containerDeleteRetentionPolicy"]["enabled"] is True
    containers = next(r for r in storage.values() if r["type"].endswith("/containers"))
    assert containers["config"]["config"]["properties"]["publicAccess"] == "None"
    # Three separate accounts: host, cache, replica.
    storage_modules = [
        m for m in parse(MAIN)["modules"].values() if m["detail"]["path"] == "modules/storage.bicep"
    ]
    assert len(storage_modules) == 3


def test_cosmos_is_serverless_and_entra_only() -> None:
    cosmos = parse(INFRA / "modules" / "cosmos.bicep")["resources"]
    account = next(
        r["config"]["properties"]
        for r in cosmos.values()
        if r["type"] == "Microsoft.DocumentDB/databaseAccounts"
    )
    assert account["disableLocalAuth"] is True
    assert {"name": "EnableServerless"} in account["capabilities"]
    vault = next(
        r["config"]["properties"]
        for r in parse(INFRA / "modules" / "keyvault.bicep")["resources"].values()
        if r["type"] == "Microsoft.KeyVault/vaults"
    )
    assert vault["enableRbacAuthorization"] is True and vault["enablePurgeProtection"] is True
