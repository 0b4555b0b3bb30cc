"""Health timings and thresholds, read from the app settings (HEALTH_*, see docs/health.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.health.rules import HealthRules
from shared.platform.settings import SettingsError


class HealthSettings(BaseModel):
    """Health timings and thresholds, from app settings (docs/health.md). Durations in seconds."""

    model_config = ConfigDict(frozen=True)

    upload_timeout: timedelta = Field(
        default=timedelta(hours=2),
        description="HEALTH_UPLOAD_TIMEOUT_SECONDS: a started cycle's uploads must finish within this, "
        "unless the appliance announced its own estimate",
    )
    dispose_timeout: timedelta = Field(
        default=timedelta(minutes=15),
        description="HEALTH_DISPOSE_TIMEOUT_SECONDS: the previous cycle's artefacts must be disposed of "
        "within this before the next cycle is applied (181008 otherwise, again after each further period)",
    )
    dispose_retry: timedelta = Field(
        default=timedelta(minutes=1),
        description="HEALTH_DISPOSE_RETRY_SECONDS: wait between disposal attempts while a cycle waits",
    )
    rules: HealthRules = Field(default_factory=HealthRules)

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> HealthSettings:
        def seconds(name: str) -> timedelta | None:
            raw = env.get(name)
            if raw is None or not raw.strip():
                return None
            try:
                value = float(raw)
            except ValueError:
                raise SettingsError(f"{name}={raw!r} must be a number of seconds") from None
            if value <= 0:
                raise SettingsError(f"{name}={raw!r} must be positive")
            return timedelta(seconds=value)

        def count(name: str) -> int | None:
            raw = env.get(name)
            if raw is None or not raw.strip():
                return None
            if not raw.strip().isdigit():
                raise SettingsError(f"{name}={raw!r} must be a whole number")
            return int(raw)

        timings = {
            "upload_timeout": seconds("HEALTH_UPLOAD_TIMEOUT_SECONDS"),
            "dispose_timeout": seconds("HEALTH_DISPOSE_TIMEOUT_SECONDS"),
            "dispose_retry": seconds("HEALTH_DISPOSE_RETRY_SECONDS"),
        }
        rules = {
            "rpo_warning": seconds("HEALTH_RPO_WARNING_SECONDS"),
            "rpo_critical": seconds("HEALTH_RPO_CRITICAL_SECONDS"),
            "heartbeat_timeout": seconds("HEALTH_HEARTBEAT_TIMEOUT_SECONDS"),
            "critical_after_failures": count("HEALTH_CRITICAL_AFTER_FAILURES"),
            "max_auto_repairs": count("HEALTH_MAX_AUTO_REPAIRS"),
        }
        try:
            return cls(
                **{k: v for k, v in timings.items() if v is not None},
                rules=HealthRules(**{k: v for k, v in rules.items() if v is not None}),
            )
        except ValidationError as exc:
            raise SettingsError(f"invalid HEALTH_* settings: {exc}") from None


@lru_cache(maxsize=1)
def health_settings() -> HealthSettings:
    return HealthSettings.from_environment(os.environ)
