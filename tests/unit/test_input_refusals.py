"""Every input gets a 4xx that says what is wrong: bodies nested too deep, control characters, values of
the wrong JSON type, and continuation tokens the service did not issue; the parsers alone, then through
the registered functions over the in-memory store."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from functions.http_errors import (
    MAX_JSON_DEPTH,
    json_nesting_depth,
    refuse_control_characters,
)
from shared.bootstrap import Services
from shared.domain.errors import ValidationFailed
from shared.platform.documents import (
    EVENTS,
    MACHINES,
    InvalidContinuationToken,
    Query,
    issue_continuation,
    read_continuation,
)
from tests.unit.test_api_http import (
    FakeDurableExtension,
    call,
    durable,
    machine_json,
    register,
    report,
    services,
)

__all__ = ["durable", "services"]  # the fixture, used by name

SCOPE = Query(equals={"applianceId": "a-1"}).token_scope(MACHINES, None)


def test_nesting_depth_counts_brackets_outside_strings_only() -> None:
    assert json_nesting_depth(b'{"a": [1, 2]}') == 0  # too few brackets to be counted at all
    assert json_nesting_depth(b"[" * 100 + b"]" * 100) == 100
    inside_a_string = b'{"a": "' + b"[{" * 100 + b'\\"[["}'
    assert json_nesting_depth(inside_a_string) == 1
    assert json_nesting_depth(b'{"a":' * 40 + b"1" + b"}" * 40) == 40


def test_control_characters_are_refused_naming_the_member() -> None:
    refuse_control_characters({"name": "site a", "tags": ["x", "ü"]})
    for value, field in (
        ({"name": "a\x00b"}, "name"),
        ({"disks": [{"id": "ok"}, {"id": "sd\x1fa"}]}, "disks[1].id"),
        ({"site": "x\x85"}, "site"),  # C1 (NEL)
        ({"bad\x07key": 1}, "bad\x07key"),
    ):
        with pytest.raises(ValidationFailed) as caught:
            refuse_control_characters(value)
        assert caught.value.problems[0].field == field
        assert "control character U+" in caught.value.problems[0].problem


def test_issued_continuation_tokens_round_trip_and_are_opaque() -> None:
    for store_token in ("50", '[{"token":"+RID:~abc==#RT:1","range":{"min":"","max":"FF"}}]', "é"):
        token = issue_continuation(store_token, SCOPE)
        assert token is not None and token.isascii() and store_token not in token
        assert read_continuation(token, SCOPE) == store_token
    assert issue_continuation(None, SCOPE) is None
    assert read_continuation(None, SCOPE) is None and read_continuation("", SCOPE) is None


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "%00",
        "\x00",
        "Ω-token",
        "AAAA",
        "a" * 20000,
        base64.urlsafe_b64encode(b"\x01" + b"\x00" * 12 + b"50").decode().rstrip("="),
    ],
)
def test_anything_else_is_an_invalid_continuation_token(token: str) -> None:
    with pytest.raises(InvalidContinuationToken) as caught:
        read_continuation(token, SCOPE)
    assert caught.value.code == "InvalidContinuationToken"
    assert "start again without continuationToken" in caught.value.message


def test_a_token_is_bound_to_its_list() -> None:
    token = issue_continuation("50", SCOPE)
    other_filter = Query(equals={"applianceId": "a-2"}).token_scope(MACHINES, None)
    other_list = Query(equals={"machineId": "vm-1"}).token_scope(EVENTS, "vm-1")
    for scope in (other_filter, other_list):
        with pytest.raises(InvalidContinuationToken):
            read_continuation(token, scope)


def _register(body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    status, payload, _ = call("register_appliance", "POST", "/", body=body, raw=raw)
    return status, payload


def test_a_deeply_nested_body_is_a_400_on_every_body_route(
    services: Services, durable: FakeDurableExtension
) -> None:
    deep = b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    appliance_id, credential = register()
    client: dict[str, Any] = {"client": durable.client_json}
    for name, route, credential_for, extra in (
        ("register_appliance", {}, None, {}),
        ("report_machines", {"applianceId": appliance_id}, credential, {}),
        ("update_policy", {"applianceId": appliance_id}, None, {}),
        ("enable_replication", {"machineId": "vm-1"}, None, client),
        ("update_failover_settings", {"machineId": "vm-1"}, None, {}),
    ):
        status, payload, _ = call(
            name, "POST", "/", raw=deep, route=route, credential=credential_for, **extra
        )
        assert status == 400, (name, payload)
        assert f"more than {MAX_JSON_DEPTH} deep" in payload["error"]["message"], name


def test_a_nul_in_an_appliance_name_is_a_400_naming_it(services: Services) -> None:
    status, payload = _register({"name": "site\x00a", "kind": "vmware", "site": "dc1"})
    assert status == 400
    assert payload["error"]["details"][0]["field"] == "name"


@pytest.mark.parametrize("value", [True, "3", 3.5])
def test_no_coercion_into_an_integer(services: Services, value: Any) -> None:
    appliance_id, _ = register()
    status, payload, _ = call(
        "update_policy",
        "PUT",
        "/",
        route={"applianceId": appliance_id},
        body={"recoveryPointRetentionCount": value},
    )
    assert status == 400, payload
    assert payload["error"]["details"][0]["field"] == "recoveryPointRetentionCount"
    status, policy, _ = call("get_policy", "GET", "/", route={"applianceId": appliance_id})
    assert policy["recoveryPointRetentionCount"] != 1 or value is not True


@pytest.mark.parametrize("token", ["garbage", "\x00", "Ω", "MTIz"])
def test_lists_refuse_a_token_they_did_not_issue(services: Services, token: str) -> None:
    appliance_id, credential = register()
    report(appliance_id, credential, machine_json("vm-1"))
    for name, route in (("list_machines", {}), ("list_machine_events", {"machineId": "vm-1"})):
        status, payload, _ = call(name, "GET", "/", route=route, params={"continuationToken": token})
        assert status == 400, (name, payload)
        assert payload["error"]["code"] == "InvalidContinuationToken"
        assert payload["error"]["details"][0]["field"] == "continuationToken"


def test_the_events_list_hands_out_tokens_that_work(services: Services) -> None:
    from shared.domain.event import Event, Severity
    from shared.health import events
    from tests.unit.test_api_http import NOW

    appliance_id, credential = register()
    report(appliance_id, credential, machine_json("vm-1"))
    for minute in range(3):
        events.record_event(
            services.repos,
            Event(
                id=f"ev-{minute}",
                machine_id="vm-1",
                time=NOW.replace(minute=minute),
                type="Replication cycle failed",
                severity=Severity.WARNING,
                message="m",
            ),
        )
    route = {"machineId": "vm-1"}
    status, first, _ = call("list_machine_events", "GET", "/", route=route, params={"limit": "2"})
    assert status == 200 and len(first["events"]) == 2
    status, rest, _ = call(
        "list_machine_events",
        "GET",
        "/",
        route=route,
        params={"limit": "2", "continuationToken": first["continuationToken"]},
    )
    assert status == 200 and [e["id"] for e in rest["events"]] == ["ev-0"]


@pytest.mark.parametrize("limit", ["٣", " 3", "3_0", "true"])
def test_limit_is_ascii_digits(services: Services, limit: str) -> None:
    status, payload, _ = call(
        "list_machine_events", "GET", "/", route={"machineId": "vm-1"}, params={"limit": limit}
    )
    assert status == 400 and payload["error"]["details"][0]["field"] == "limit"


def test_an_integral_number_is_an_integer_as_in_json_schema(services: Services) -> None:
    appliance_id, _ = register()
    status, policy, _ = call(
        "update_policy",
        "PUT",
        "/",
        route={"applianceId": appliance_id},
        body={"recoveryPointRetentionCount": 3.0},
    )
    assert status == 200 and policy["recoveryPointRetentionCount"] == 3
