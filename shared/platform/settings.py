"""Every setting the app reads, in one validated model.

In Azure the values come from app settings (identity-based connections, Key Vault references; set by
infra/main.bicep); on a developer machine from local.settings.json or the devhost. Each field names its
environment variable (`env`); nested groups gather the tunables of one capability. A missing or malformed
setting fails at start-up with the variable's name and what to put there.

Nothing here knows which environment it runs in: a setting says what the app can use (an account key, a
fixed bearer token, a certificate it must not verify), and the deployment decides whether to set it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

WHERE_TO_SET: Final = (
    "Set them in local.settings.json (see local.settings.example.json) or in the Function App's "
    "configuration (infra/main.bicep sets them in Azure)."
)


class SettingsError(RuntimeError):
    """Raised at start-up (or when a capability first needs a setting) when the app settings are incomplete
    or invalid."""


def setting(env: str, default: Any = ..., *, description: str, **constraints: Any) -> Any:
    """A field read from the environment variable `env`."""
    return Field(default, description=description, json_schema_extra={"env": env}, **constraints)


def group(prefix: str = "", *, description: str, tuning: bool = False) -> Any:
    """A nested group; its fields' variables are `prefix` + their own `env`. A tuning group's defaults hold
    in Azure: a deployment sets its variables only to change them."""
    return Field(description=description, json_schema_extra={"env_prefix": prefix, "tuning": tuning})


def _duration(unit: str) -> BeforeValidator:
    def parse(value: object) -> object:
        if isinstance(value, timedelta) or value is None:
            return value
        try:
            return timedelta(**{unit: float(str(value))})
        except ValueError:
            raise PydanticCustomError("duration", f"must be a number of {unit}") from None

    return BeforeValidator(parse)


Seconds = Annotated[timedelta, _duration("seconds")]
Minutes = Annotated[timedelta, _duration("minutes")]
Hours = Annotated[timedelta, _duration("hours")]
Milliseconds = Annotated[timedelta, _duration("milliseconds")]
POSITIVE: Final = {"gt": timedelta(0)}


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StorageAccountSettings(_Group):
    """A storage account reached by connection string (carries an account key) or by account URL with the
    app's identity."""

    connection_string: SecretStr | None = setting(
        "CONNECTION_STRING",
        None,
        description="connection string with an account key; when unset the app uses its identity on ACCOUNT_URL",
    )
    account_url: str | None = setting(
        "ACCOUNT_URL", None, description="blob endpoint, reached with the app's identity"
    )

    @model_validator(mode="after")
    def _reachable(self) -> StorageAccountSettings:
        if self.connection_string is None and self.account_url is None:
            raise PydanticCustomError("missing", "set ACCOUNT_URL or CONNECTION_STRING")
        return self

    def describe(self) -> str:
        return self.account_url or "connection string"


class ReplicaStorageSettings(StorageAccountSettings):
    account_id: str | None = setting(
        "ACCOUNT_ID",
        None,
        description="ARM id of the replica account: managed disks are imported from it (their "
        "creationData.storageAccountId); needed by hydration only, checked when it starts",
    )

    def require_account_id(self) -> str:
        if not self.account_id:
            raise SettingsError(
                "missing app setting REPLICA_STORAGE_ACCOUNT_ID: the ARM id of the replica storage account "
                "(managed disks are imported from it). " + WHERE_TO_SET
            )
        return self.account_id


class HealthThresholds(_Group):
    """Replication health timings and thresholds. Unset rule thresholds keep the health rules' defaults."""

    upload_timeout: Seconds = setting(
        "HEALTH_UPLOAD_TIMEOUT_SECONDS",
        timedelta(hours=2),
        description="a started cycle's uploads must finish within this, unless the appliance announced its "
        "own estimate",
        **POSITIVE,
    )
    dispose_timeout: Seconds = setting(
        "HEALTH_DISPOSE_TIMEOUT_SECONDS",
        timedelta(minutes=15),
        description="the previous cycle's artefacts must be disposed of within this before the next cycle "
        "is applied (181008 otherwise, again after each further period)",
        **POSITIVE,
    )
    dispose_retry: Seconds = setting(
        "HEALTH_DISPOSE_RETRY_SECONDS",
        timedelta(minutes=1),
        description="wait between disposal attempts while a cycle waits",
        **POSITIVE,
    )
    rpo_warning: Seconds | None = setting(
        "HEALTH_RPO_WARNING_SECONDS",
        None,
        description="RPO above this: Warning (rules' default 2 h)",
        **POSITIVE,
    )
    rpo_critical: Seconds | None = setting(
        "HEALTH_RPO_CRITICAL_SECONDS",
        None,
        description="RPO above this: Critical (rules' default 24 h)",
        **POSITIVE,
    )
    heartbeat_timeout: Seconds | None = setting(
        "HEALTH_HEARTBEAT_TIMEOUT_SECONDS",
        None,
        description="appliance silence before 'appliance not responding' (rules' default 15 min)",
        **POSITIVE,
    )
    agent_heartbeat_timeout: Seconds | None = setting(
        "HEALTH_AGENT_HEARTBEAT_TIMEOUT_SECONDS",
        None,
        description="Mobility agent silence before MCP-5101 'Mobility agent not responding' (rules' default "
        "15 min)",
        **POSITIVE,
    )
    critical_after_failures: int | None = setting(
        "HEALTH_CRITICAL_AFTER_FAILURES",
        None,
        description="consecutive failed cycles before Critical (rules' default 3)",
        ge=1,
    )
    max_auto_repairs: int | None = setting(
        "HEALTH_MAX_AUTO_REPAIRS",
        None,
        description="automatic resyncs per unresolved error (rules' default 3)",
        ge=0,
    )

    def rule_overrides(self) -> dict[str, Any]:
        """The rule thresholds that are set, by the health rules' field names."""
        names = (
            "rpo_warning",
            "rpo_critical",
            "heartbeat_timeout",
            "agent_heartbeat_timeout",
            "critical_after_failures",
            "max_auto_repairs",
        )
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class MigrationSettings(_Group):
    """Hydration and migration (read by activities, never by orchestrators)."""

    helper_vm_size: str = setting(
        "HYDRATION_HELPER_VM_SIZE",
        "Standard_D2s_v5",
        description="size of the temporary VM that prepares disks",
    )
    helper_address_prefix: str = setting(
        "HYDRATION_HELPER_ADDRESS_PREFIX",
        "10.254.0.0/24",
        description="the temporary network's address space",
    )
    helper_subnet_prefix: str = setting(
        "HYDRATION_HELPER_SUBNET_PREFIX", "10.254.0.0/26", description="the temporary network's subnet"
    )
    sas_lifetime: Minutes = setting(
        "HYDRATION_SAS_LIFETIME_MINUTES",
        timedelta(hours=2),
        description="lifetime of the toolkit's and report's SAS URLs",
        **POSITIVE,
    )
    helper_debs_dir: Path | None = setting(
        "HYDRATION_HELPER_DEBS_DIR",
        None,
        description="directory of Debian packages bundled with the hydration toolkit (release pipeline)",
    )
    final_cycle_timeout: Minutes = setting(
        "MIGRATION_FINAL_CYCLE_TIMEOUT_MINUTES",
        timedelta(hours=4),
        description="how long a migration waits for the final cycle",
        **POSITIVE,
    )
    final_cycle_poll: Seconds = setting(
        "MIGRATION_FINAL_CYCLE_POLL_SECONDS",
        timedelta(seconds=15),
        description="between checks for the final cycle or an appliance's answer in a wait's first 2 minutes; "
        "then the interval grows to 5 minutes",
        **POSITIVE,
    )
    shutdown_timeout: Seconds = setting(
        "MIGRATION_SHUTDOWN_TIMEOUT_SECONDS",
        timedelta(minutes=5),
        description="how long a migration waits for the appliance to confirm the source is off; then the job "
        'fails before anything is created in Azure (unless the operator asked "continueWithoutShutdown")',
        **POSITIVE,
    )
    arm_retry_budget: Seconds = setting(
        "ARM_RETRY_BUDGET_SECONDS",
        timedelta(minutes=5),
        description="how long one ARM request is retried while ARM answers 429, 409 AnotherOperationInProgress "
        "or 503 with Retry-After (honouring Retry-After) before its step fails with ARM's error code",
        ge=timedelta(0),
    )
    snapshot_limit_wait: Seconds = setting(
        "REVERSE_SNAPSHOT_LIMIT_WAIT_SECONDS",
        timedelta(minutes=1),
        description="after Azure refuses a reverse-replication snapshot for its limit (7 incremental "
        "snapshots per disk in 5 minutes), how long before asking again (up to 6 times, then the step "
        "fails with SnapshotLimitReached)",
        **POSITIVE,
    )
    failover_shutdown_timeout: Seconds = setting(
        "FAILOVER_SHUTDOWN_TIMEOUT_SECONDS",
        timedelta(minutes=5),
        description="how long a failover waits for the appliance to shut the source down before it goes on "
        "(the step ends in Warning)",
        **POSITIVE,
    )


class SweeperSettings(_Group):
    """The hourly sweeper of temporary Azure resources."""

    min_age: Minutes = setting(
        "SWEEPER_MIN_AGE_MINUTES",
        timedelta(hours=2),
        description="temporary resources younger than this are never swept",
        ge=timedelta(0),
    )
    stale_job_after: Hours = setting(
        "SWEEPER_STALE_JOB_HOURS",
        timedelta(hours=24),
        description="an unfinished job not updated for this long no longer protects its resources",
        **POSITIVE,
    )
    start_grace: Seconds = setting(
        "OPERATOR_START_GRACE_SECONDS",
        timedelta(minutes=5),
        description="an operator action's start still unsettled after this long is finished or rolled back "
        "by the reconciler; keep it longer than an HTTP request may run (230 s in Azure)",
        ge=timedelta(0),
    )
    retry_window: Seconds = setting(
        "OPERATOR_RETRY_WINDOW_SECONDS",
        timedelta(minutes=10),
        description="an operator action sent again with the same body by the same caller within this long, "
        "while the job the first request started runs, answers with that job instead of a 409 (0 turns this "
        "off; an Idempotency-Key has no window)",
        ge=timedelta(0),
    )


class TestHookSettings(_Group):
    """Hooks of the local stack's tests; never set in Azure."""

    crash_points_dir: str | None = setting(
        "CRASH_POINTS_DIR",
        None,
        description="the local crash test only (never set in Azure): where it arms the instants at which the "
        "host is held to be killed (shared/platform/crash_points.py)",
    )


class ReplicationSettings(_Group):
    """Applying cycles (read by activities, never by orchestrators)."""

    unit_parallelism: int = setting(
        "REPLICATION_UNIT_PARALLELISM",
        4,
        ge=1,
        le=32,
        description="units of an initial copy or resync applied at once per machine (each is one activity; "
        "host.json's maxConcurrentActivityFunctions bounds them per worker)",
    )


class TelemetrySettings(_Group):
    # Often enough to watch a demo, rare enough not to flood the log; benchmarks read the output and ask
    # for a shorter period.
    console_metric_interval: Milliseconds = setting(
        "TELEMETRY_CONSOLE_METRIC_INTERVAL_MS",
        timedelta(minutes=1),
        description="how often metrics are written as JSON lines when Application Insights is not set",
        **POSITIVE,
    )
    file: str | None = setting(
        "TELEMETRY_FILE",
        None,
        description="without Application Insights, spans and metrics go as JSON lines to this file instead "
        "of stderr",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    cosmos_endpoint: str = setting("COSMOS_ENDPOINT", description="the Cosmos DB account endpoint")
    cosmos_key: SecretStr | None = setting(
        "COSMOS_KEY", None, description="account key; when unset the app uses its identity (always, in Azure)"
    )
    cosmos_database: str = setting("COSMOS_DATABASE", "migration", description="the database")
    cosmos_verify_tls: bool = setting(
        "COSMOS_VERIFY_TLS",
        True,
        description="false accepts a self-signed certificate (the Cosmos emulator's); true in Azure",
    )
    cache_storage: StorageAccountSettings = group(
        "CACHE_STORAGE_", description="where appliances upload cycles"
    )
    replica_storage: ReplicaStorageSettings = group(
        "REPLICA_STORAGE_", description="replica disks, recovery points and the hydration toolkit"
    )
    eventgrid_topic_endpoint: str = setting(
        "EVENTGRID_TOPIC_ENDPOINT", description="the appliances' event topic"
    )
    eventgrid_topic_key: SecretStr | None = setting(
        "EVENTGRID_TOPIC_KEY", None, description="topic access key; when unset publishers use Entra ID"
    )
    appliance_credential_pepper: SecretStr = setting(
        "APPLIANCE_CREDENTIAL_PEPPER",
        description="server-side secret mixed into appliance credential hashes (a Key Vault reference in Azure)",
    )
    operator_auth_authority: str | None = setting(
        "OPERATOR_AUTH_AUTHORITY",
        None,
        description="the Entra ID authority whose tokens operators present, "
        "`https://login.microsoftonline.com/{tenant}/v2.0` (the local issuer's URL on the devhost); "
        "unset, every operator route answers 503",
    )
    operator_auth_audience: str | None = setting(
        "OPERATOR_AUTH_AUDIENCE",
        None,
        description="the audience operators' tokens must carry: the API app registration's application ID "
        "URI (e.g. `api://migration-control-plane`) or its client id",
    )
    managed_identity_client_id: str | None = setting(
        "AZURE_CLIENT_ID", None, description="the user-assigned managed identity the app authenticates as"
    )
    azure_subscription_id: str | None = setting(
        "AZURE_SUBSCRIPTION_ID",
        None,
        description="where hydration and migration create VMs, disks and networks; needed by the ARM "
        "operations only, checked when they build their clients",
    )
    applicationinsights_connection_string: SecretStr | None = setting(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        None,
        description="Application Insights; when unset, traces and metrics are written as JSON lines to stderr",
    )
    arm_endpoint: str = setting(
        "ARM_ENDPOINT", "https://management.azure.com", description="Resource Manager base URL"
    )
    arm_static_token: SecretStr | None = setting(
        "ARM_STATIC_TOKEN",
        None,
        description="a fixed bearer token for an ARM_ENDPOINT that accepts one; refused with Azure's endpoint "
        "(the app uses its identity there)",
    )
    arm_polling_interval_seconds: float = setting(
        "ARM_POLLING_INTERVAL_SECONDS",
        30.0,
        ge=0.0,
        description="wait between polls of an ARM async operation when the service sends no Retry-After "
        "(azure-mgmt-core's default is 30 s)",
    )
    copy_progress_interval_seconds: float = setting(
        "COPY_PROGRESS_INTERVAL_SECONDS",
        5.0,
        ge=0.01,
        le=300.0,
        description="how often a whole-disk copy (initial replication, resync) records its bytes applied on "
        "the machine: one machine write per disk per interval, whatever the disk's size",
    )
    telemetry: TelemetrySettings = group(description="traces and metrics", tuning=True)
    health: HealthThresholds = group(description="replication health timings and thresholds", tuning=True)
    migration: MigrationSettings = group(description="hydration and migration", tuning=True)
    sweeper: SweeperSettings = group(description="the sweeper of temporary resources", tuning=True)
    replication: ReplicationSettings = group(description="applying replication cycles", tuning=True)
    test_hooks: TestHookSettings = group(
        description="hooks of the local tests; never set in Azure", tuning=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The documented names are flat (HEALTH_RPO_WARNING_SECONDS) while the model is nested: one source
        # reads each field's own variable.
        return (init_settings, EnvironSource(settings_cls, os.environ))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in `environ` (default: the process environment), or a SettingsError naming every
        missing or invalid variable."""
        env = os.environ if environ is None else environ
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
            return cls(_build_sources=((EnvironSource(cls, env),), {}))
        except ValidationError as exc:
            raise SettingsError(describe_errors(exc, env)) from None


# --- environment variable names -----------------------------------------------------------------------


@dataclass(frozen=True)
class SettingVariable:
    """One environment variable of the model: where it lands and what the README says about it."""

    env: str
    path: tuple[str, ...]
    description: str
    default: Any
    required: bool
    group: str | None
    tuning: bool
    secret: bool


def _model_of(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def variables(model: type[BaseModel] = Settings) -> list[SettingVariable]:
    """Every environment variable the model reads, in declaration order."""

    def walk(
        current: type[BaseModel], prefix: str, path: tuple[str, ...], group_name: str | None, tuning: bool
    ) -> Iterator[SettingVariable]:
        for name, info in current.model_fields.items():
            extra = _extra(info)
            nested = _model_of(info)
            if nested is not None and "env_prefix" in extra:
                yield from walk(
                    nested,
                    prefix + str(extra["env_prefix"]),
                    (*path, name),
                    group_name or name,
                    tuning or bool(extra.get("tuning")),
                )
            elif "env" in extra:
                yield SettingVariable(
                    env=prefix + str(extra["env"]),
                    path=(*path, name),
                    description=info.description or "",
                    default=None if info.is_required() else info.get_default(call_default_factory=True),
                    required=info.is_required(),
                    group=group_name,
                    tuning=tuning,
                    secret="SecretStr" in str(info.annotation),
                )

    return list(walk(model, "", (), None, False))


class EnvironSource(PydanticBaseSettingsSource):
    """Reads each field's variable from a mapping into the nested shape of the model. An empty value is
    treated as unset (App Service and local.settings.json both write empty strings)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads the whole model at once

    def __call__(self) -> dict[str, Any]:
        # Every group is present, if empty, so that its defaults (or its own checks) apply.
        values: dict[str, Any] = {
            name: {}
            for name, info in self.settings_cls.model_fields.items()
            if _model_of(info) is not None and "env_prefix" in _extra(info)
        }
        for variable in variables(self.settings_cls):
            raw = self._environ.get(variable.env)
            if raw is None or not str(raw).strip():
                continue
            target = values
            for step in variable.path[:-1]:
                target = target.setdefault(step, {})
            target[variable.path[-1]] = raw
        return values


def describe_errors(exc: ValidationError, environ: Mapping[str, str]) -> str:
    """One sentence per problem, by environment variable: what is missing, what is wrong, what to set."""
    by_path = {v.path: v for v in variables()}
    prefixes = {
        (name,): str(_extra(info)["env_prefix"])
        for name, info in Settings.model_fields.items()
        if "env_prefix" in _extra(info)
    }
    missing: list[str] = []
    invalid: list[str] = []
    for error in exc.errors():
        path = tuple(str(part) for part in error["loc"])
        variable = by_path.get(path)
        if variable is None and path in prefixes:
            prefix = prefixes[path]
            missing.append(f"{prefix}ACCOUNT_URL (or {prefix}CONNECTION_STRING with an account key)")
        elif variable is None:
            invalid.append(f"{'.'.join(path)}: {error['msg']}")
        elif error["type"] == "missing":
            missing.append(variable.env)
        else:
            shown = "(hidden)" if variable.secret else repr(environ.get(variable.env))
            message = "must be more than zero" if error["type"] == "greater_than" else error["msg"]
            invalid.append(f"{variable.env}={shown}: {message} ({variable.description})")
    parts = []
    if missing:
        parts.append("missing app settings: " + ", ".join(missing) + ".")
    if invalid:
        parts.append("invalid app settings: " + "; ".join(invalid) + ".")
    return " ".join([*parts, WHERE_TO_SET])
