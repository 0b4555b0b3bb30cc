"""Payload encoding between the SDK client, the HTTP API and the history (property-based)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.durable_functions.models.utils.df_serialization import df_dumps
from hypothesis import given
from hypothesis import strategies as st

from devhost.durable.rpc import payload_json_text

pytestmark = pytest.mark.contract

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_sdk_double_encoded_payloads_decode_to_the_value(value: Any) -> None:
    # What DurableOrchestrationClient sends: df_dumps(value), then aiohttp json= encodes that string again.
    body = json.dumps(df_dumps(value)).encode()
    text = payload_json_text(body)
    assert text is not None
    assert json.loads(text) == value


@given(json_values.filter(lambda v: not isinstance(v, str)))
def test_plain_json_bodies_are_taken_as_the_value(value: Any) -> None:
    text = payload_json_text(json.dumps(value).encode())
    assert json.loads(text) == value if text is not None else value is None


def test_empty_body_is_no_payload() -> None:
    assert payload_json_text(b"") is None
    assert payload_json_text(b"  ") is None


def test_a_plain_string_that_is_not_json_is_kept_as_a_string() -> None:
    assert payload_json_text(b'"approved by ops"') == '"approved by ops"'
