"""What the health flows read: the deployment's HEALTH_* timings (the one Settings model,
shared/platform/settings.py) and the rules built from its thresholds. Bootstrap builds it once."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.health.rules import HealthRules
from shared.platform.settings import HealthThresholds, SettingsError


class HealthSettings(BaseModel):
    """What the health flows read: the deployment's timings (HEALTH_* app settings, docs/health.md) and the
    rules built from its thresholds."""

    model_config = ConfigDict(frozen=True)

    thresholds: HealthThresholds = Field(default_factory=HealthThresholds)
    rules: HealthRules = Field(default_factory=HealthRules)

    @classmethod
    def from_thresholds(cls, thresholds: HealthThresholds) -> HealthSettings:
        try:
            return cls(thresholds=thresholds, rules=HealthRules(**thresholds.rule_overrides()))
        except ValidationError as exc:
            raise SettingsError(f"invalid HEALTH_* settings: {exc}") from None

    @property
    def upload_timeout(self) -> timedelta:
        return self.thresholds.upload_timeout

    @property
    def dispose_timeout(self) -> timedelta:
        return self.thresholds.dispose_timeout

    @property
    def dispose_retry(self) -> timedelta:
        return self.thresholds.dispose_retry
