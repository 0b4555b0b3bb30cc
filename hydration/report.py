"""The records every step returns and the JSON report built from them."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class StepStatus(StrEnum):
    OK = "ok"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    WOULD_CHANGE = "would_change"
    SKIPPED = "skipped"
    WARNING = "warning"
    FAILED = "failed"


class RunStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    MANUAL = "manual_preparation_required"


@dataclass
class Change:
    """One checked setting: `changed` is False when it already had the wanted value."""

    step: str
    target: str
    changed: bool
    before: str | None = None
    after: str | None = None
    backup: str | None = None
    note: str = ""


@dataclass
class StepRecord:
    name: str
    status: StepStatus
    message: str = ""
    changes: list[Change] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Report:
    dry_run: bool
    disks: list[str]
    status: RunStatus = RunStatus.SUCCEEDED
    os: dict[str, Any] = field(default_factory=dict)
    partitions: list[dict[str, Any]] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    manual_steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def fail(self, message: str) -> None:
        self.errors.append(message)
        self.status = RunStatus.FAILED

    @property
    def changes(self) -> list[Change]:
        return [c for s in self.steps for c in s.changes if c.changed]

    def to_dict(self) -> dict[str, Any]:
        finished = self.finished_at if self.finished_at is not None else time.time()
        return {
            "tool": "hydration",
            "version": _version(),
            "status": str(self.status),
            "dry_run": self.dry_run,
            "disks": self.disks,
            "os": self.os,
            "partitions": self.partitions,
            "steps": [
                {
                    **asdict(s),
                    "status": str(s.status),
                    "seconds": round(s.seconds, 3),
                    "changes": [_redacted(asdict(c)) for c in s.changes],
                }
                for s in self.steps
            ],
            "changes": [_redacted(asdict(c)) for c in self.changes],
            "manual_steps": self.manual_steps,
            "warnings": self.warnings,
            "errors": self.errors,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(finished),
            "duration_seconds": round(finished - self.started_at, 3),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _version() -> str:
    from hydration import __version__

    return __version__


# fstab CIFS options and similar files may carry inline secrets; the report leaves the helper VM.
_SECRET = re.compile(r"(?i)\b(password|passwd|pass|psk|secret)=([^,\s'\"]+)")


def _redacted(change: dict[str, Any]) -> dict[str, Any]:
    for key in ("before", "after", "note"):
        if isinstance(change.get(key), str):
            change[key] = _SECRET.sub(r"\1=***", change[key])
    return change
