"""Typed payloads between the push installation's orchestration and its activities."""

from __future__ import annotations

from pydantic import Field

from shared.domain.command import PushInstallReport, PushInstallRequest
from shared.domain.wire import WireModel


class PushInput(WireModel):
    """The orchestration's input (instance id = the job id)."""

    machine_id: str
    job_id: str
    request: PushInstallRequest = Field(description="installerUrl empty: signed when the command is queued")
    poll_seconds: float = Field(gt=0)
    timeout_seconds: float = Field(gt=0)


class PushWatch(WireModel):
    machine_id: str
    job_id: str


class PushView(WireModel):
    acknowledged: bool
    report: PushInstallReport | None = None
    error_code: str | None = None
    error_message: str | None = None


class PushEnd(WireModel):
    machine_id: str
    job_id: str
    request: PushInstallRequest
    report: PushInstallReport | None = None
    error_code: str | None = None


class Done(WireModel):
    ok: bool = True
