"""Refused appliance events: why each was refused, which machine it names, what the dead letter and the
machine's event say; and the strict event schemas that refuse coerced values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.appliances import refusals
from shared.appliances.events import (
    CYCLE_FAILED,
    HEARTBEAT,
    UnknownEventType,
    check_subject,
    parse_appliance_event,
)
from shared.domain.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shared.domain.event import Severity

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def received(
    data: Any, subject: str = "machines/vm-1", event_type: str = CYCLE_FAILED
) -> refusals.ReceivedEvent:
    return refusals.ReceivedEvent(id="ev-1", type=event_type, subject=subject, time=NOW, data=data)


@pytest.mark.parametrize(
    ("error", "parsed", "kind"),
    [
        (ValidationFailed.single("sequence", "bad"), False, refusals.RefusalKind.MALFORMED),
        (UnknownEventType("no such type"), False, refusals.RefusalKind.UNKNOWN_EVENT_TYPE),
        (Forbidden("another appliance's"), True, refusals.RefusalKind.WRONG_APPLIANCE),
        (NotFound("no machine"), True, refusals.RefusalKind.UNKNOWN_TARGET),
        (Conflict("not replicating"), True, refusals.RefusalKind.NOT_APPLICABLE),
    ],
)
def test_the_refusal_kind_follows_the_error(error: Any, parsed: bool, kind: refusals.RefusalKind) -> None:
    assert refusals.kind_of(error, parsed=parsed) is kind


def test_the_named_machine_is_the_data_s_then_the_subject_s_and_only_a_valid_id() -> None:
    assert refusals.named_machine(received({"machineId": "vm-2"})) == "vm-2"
    assert refusals.named_machine(received({"machineId": 7})) == "vm-1"
    assert refusals.named_machine(received("not an object")) == "vm-1"
    assert refusals.named_machine(received({"machineId": "a/b"}, subject="appliances/a-1")) is None
    assert refusals.named_machine(received({}, subject="machines/bad\x00id")) is None


def test_a_wrong_appliance_is_a_critical_security_event_and_health_is_not_touched() -> None:
    refusal = refusals.Refusal(
        received({"machineId": "vm-1"}), refusals.RefusalKind.WRONG_APPLIANCE, Forbidden("x"), "vm-1"
    )
    name = refusals.dead_letter_name(refusal, now=NOW)
    assert name.startswith("2026/11/22/wrongAppliance/") and name.endswith(".json")
    event = refusals.machine_event(refusal, dead_letter=name, at=NOW)
    assert event.type == refusals.SECURITY_EVENT and event.severity is Severity.CRITICAL
    assert event.details["deadLetter"] == name and event.details["reason"] == "wrongAppliance"
    # Same event delivered again: same ids, so one dead letter and one machine event.
    assert refusals.machine_event(refusal, dead_letter=name, at=NOW).id == event.id


def test_malformed_data_is_a_warning_event_and_a_complete_dead_letter() -> None:
    error = ValidationFailed.single("sequence", "Input should be a valid integer")
    refusal = refusals.Refusal(
        received({"machineId": "vm-1", "sequence": True}), refusals.RefusalKind.MALFORMED, error, "vm-1"
    )
    event = refusals.machine_event(refusal, dead_letter="d.json", at=NOW)
    assert event.type == refusals.REFUSED_EVENT and event.severity is Severity.WARNING
    assert event.error_code == "ValidationFailed" and "sequence" in event.message
    document = refusals.dead_letter_document(refusal, now=NOW)
    assert document["reason"]["kind"] == "malformed"
    assert document["reason"]["details"] == [
        {"field": "sequence", "problem": "Input should be a valid integer"}
    ]
    assert document["event"]["data"] == {"machineId": "vm-1", "sequence": True}
    assert document["refusedAt"] == NOW.isoformat()


@pytest.mark.parametrize(
    ("member", "value"), [("message", 5), ("applianceId", "a\x00b"), ("machineId", True)]
)
def test_event_data_is_validated_with_json_types_only(member: str, value: Any) -> None:
    data = {"applianceId": "a-1", "machineId": "vm-1", "message": "boom", member: value}
    with pytest.raises(ValidationFailed) as caught:
        parse_appliance_event(CYCLE_FAILED, data)
    assert caught.value.problems[0].field == member


def test_an_absurdly_nested_event_is_malformed_not_a_crash() -> None:
    data: Any = "x"
    for _ in range(5000):
        data = [data]
    with pytest.raises(ValidationFailed):
        parse_appliance_event(CYCLE_FAILED, {"applianceId": "a-1", "machineId": "vm-1", "message": data})


@pytest.mark.parametrize("sequence", [True, "3", 3.5])
def test_a_cycle_sequence_is_a_json_integer(sequence: Any) -> None:
    from shared.appliances.events import CYCLE_UPLOADED

    data = {
        "applianceId": "a-1",
        "machineId": "vm-1",
        "cycleId": "c-1",
        "sequence": sequence,
        "kind": "delta",
        "manifests": {"os": "vm-1/c-1/os/manifest.json"},
    }
    with pytest.raises(ValidationFailed) as caught:
        parse_appliance_event(CYCLE_UPLOADED, data)
    assert caught.value.problems[0].field == "sequence"
    assert parse_appliance_event(CYCLE_UPLOADED, data | {"sequence": 3}).sequence == 3  # type: ignore[union-attr]


def test_a_subject_naming_another_machine_or_appliance_than_the_data_is_malformed() -> None:
    failed = parse_appliance_event(
        CYCLE_FAILED, {"applianceId": "app-1", "machineId": "vm-own", "message": "CBT reset"}
    )
    check_subject("machines/vm-own", failed)
    check_subject("appliances/app-1", failed)
    check_subject("other/anything", failed)  # not a subject the contract names: the data decides
    with pytest.raises(ValidationFailed) as other_machine:
        check_subject("machines/vm-victim", failed)
    [problem] = other_machine.value.details
    assert problem["field"] == "subject" and "'vm-victim'" in problem["problem"]
    assert refusals.kind_of(other_machine.value, parsed=False) is refusals.RefusalKind.MALFORMED
    heartbeat = parse_appliance_event(HEARTBEAT, {"applianceId": "app-1"})
    check_subject("appliances/app-1", heartbeat)
    with pytest.raises(ValidationFailed, match="names appliance 'app-2'"):
        check_subject("appliances/app-2", heartbeat)
