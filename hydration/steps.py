"""Running named steps: each returns its Change records; the runner turns them into the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hydration.proc import HydrationError
from hydration.report import Change, Report, StepRecord, StepStatus


class StepSkipped(Exception):
    """The step does not apply to this guest; the message says why."""


@dataclass
class StepRunner:
    report: Report
    dry_run: bool
    echo: Callable[[str], None] = print
    _step_warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self._step_warnings.append(message)
        self.report.warn(message)

    def run(self, name: str, fn: Callable[[], list[Change] | str]) -> StepRecord:
        """Runs one step; a step returning text is informational (discovery, detection)."""
        self._step_warnings = []
        started = time.monotonic()
        try:
            result = fn()
            if isinstance(result, str):
                status = StepStatus.WARNING if self._step_warnings else StepStatus.OK
                record = StepRecord(name, status, "; ".join([result, *self._step_warnings]))
                return self._finish(record, started)
            changes = result
            changed = [c for c in changes if c.changed]
            if self._step_warnings:
                status = StepStatus.WARNING
            elif changed:
                status = StepStatus.WOULD_CHANGE if self.dry_run else StepStatus.CHANGED
            else:
                status = StepStatus.UNCHANGED
            message = "; ".join(self._step_warnings) or _summary(changes, self.dry_run)
            record = StepRecord(name, status, message, changes)
        except StepSkipped as exc:
            record = StepRecord(name, StepStatus.SKIPPED, str(exc))
        except HydrationError as exc:
            record = StepRecord(name, StepStatus.FAILED, str(exc))
            self.report.fail(f"{name}: {exc}")
        except Exception as exc:  # an unexpected bug must still leave a report and unmount
            record = StepRecord(name, StepStatus.FAILED, f"internal error: {exc!r}")
            self.report.fail(f"{name}: internal error {exc!r}; please report it with this file")
        return self._finish(record, started)

    def _finish(self, record: StepRecord, started: float) -> StepRecord:
        record.seconds = time.monotonic() - started
        self.report.steps.append(record)
        first = record.message.splitlines()[0] if record.message else ""
        self.echo(f"[{record.status.value:>12}] {record.name}: {first[:200]}")
        return record


def _summary(changes: list[Change], dry_run: bool) -> str:
    changed = [c for c in changes if c.changed]
    if not changed:
        return "nothing to change" if changes else "ok"
    verb = "would change" if dry_run else "changed"
    targets = ", ".join(dict.fromkeys(c.target for c in changed))
    return f"{verb} {targets}"
