"""Replication policy ranges (Azure Migrate's: 512 Kbps..1,023 Mbps, threads 1..32 default 4) at their edges."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.domain.errors import ValidationFailed
from shared.domain.policy import (
    DEFAULT_UPLOAD_THREADS,
    MAX_BANDWIDTH_KBPS,
    MIN_BANDWIDTH_KBPS,
    ReplicationPolicyUpdate,
)


def problems(body: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        ReplicationPolicyUpdate.model_validate(body)
    return ValidationFailed.from_pydantic(caught.value).details


def test_defaults_follow_azure_migrate() -> None:
    policy = ReplicationPolicyUpdate.model_validate({}).to_policy()
    assert policy.upload_threads_per_vm == DEFAULT_UPLOAD_THREADS == 4
    assert policy.to_wire()["uploadThreadsPerVm"] == 4


@pytest.mark.parametrize("field", ["workHoursBandwidthKbps", "nonWorkHoursBandwidthKbps"])
@pytest.mark.parametrize("kbps", [MIN_BANDWIDTH_KBPS, MAX_BANDWIDTH_KBPS])
def test_bandwidth_edges_are_accepted(field: str, kbps: int) -> None:
    assert ReplicationPolicyUpdate.model_validate({field: kbps}).to_wire()[field] == kbps


def test_1023_mbps_is_1047552_kbps() -> None:
    assert MAX_BANDWIDTH_KBPS == 1023 * 1024 == 1_047_552


@pytest.mark.parametrize("field", ["workHoursBandwidthKbps", "nonWorkHoursBandwidthKbps"])
@pytest.mark.parametrize("kbps", [MIN_BANDWIDTH_KBPS - 1, MAX_BANDWIDTH_KBPS + 1, 0, -5])
def test_bandwidth_outside_the_range_names_the_range(field: str, kbps: int) -> None:
    [problem] = problems({field: kbps})
    assert problem["field"] == field
    assert "between 512 Kbps and 1,023 Mbps (1,047,552 Kbps)" in problem["problem"]
    assert f"got {kbps:,} Kbps" in problem["problem"]


@pytest.mark.parametrize("threads", [1, 32])
def test_thread_edges_are_accepted(threads: int) -> None:
    assert (
        ReplicationPolicyUpdate.model_validate({"uploadThreadsPerVm": threads}).upload_threads_per_vm
        == threads
    )


@pytest.mark.parametrize("threads", [0, 33])
def test_threads_outside_1_to_32_are_refused(threads: int) -> None:
    assert problems({"uploadThreadsPerVm": threads}) == [
        {"field": "uploadThreadsPerVm", "problem": f"must be between 1 and 32; got {threads}"}
    ]


def test_app_consistent_frequency_allows_zero_meaning_off() -> None:
    assert (
        ReplicationPolicyUpdate.model_validate(
            {"appConsistentFrequencyMinutes": 0}
        ).app_consistent_frequency_minutes
        == 0
    )
    [problem] = problems({"appConsistentFrequencyMinutes": 30})
    assert problem["field"] == "appConsistentFrequencyMinutes"
    assert "between 60 minutes and 720 minutes, or 0 (no app-consistent points)" in problem["problem"]


def test_work_hours_must_not_span_midnight() -> None:
    [problem] = problems({"workHours": {"start": "22:00", "end": "06:00"}})
    assert problem["field"] == "workHours.start"
    assert "must be before workHours.end (06:00)" in problem["problem"]


def test_misspelt_field_is_refused_even_when_nested() -> None:
    found = problems({"uploadThreadPerVm": 8, "workHours": {"begin": "08:00"}})
    assert {p["field"] for p in found} == {"uploadThreadPerVm", "workHours.begin"}
    assert all("not a known field" in p["problem"] for p in found)


def test_schema_carries_the_range_for_clients() -> None:
    schema = ReplicationPolicyUpdate.model_json_schema(by_alias=True)["properties"]
    assert (schema["uploadThreadsPerVm"]["minimum"], schema["uploadThreadsPerVm"]["maximum"]) == (1, 32)
    assert schema["workHoursBandwidthKbps"]["maximum"] == MAX_BANDWIDTH_KBPS
