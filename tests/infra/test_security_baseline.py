"""Security baseline checks that run without Azure (docs/security.md): trigger auth levels, secret types."""

from __future__ import annotations

import typing

import azure.functions as func
import pytest
from azure.functions.decorators.eventgrid import EventGridTrigger
from azure.functions.decorators.http import HttpTrigger
from pydantic import SecretStr

from shared.platform.settings import Settings
from tests.infra.bicep_model import INFRA, MAIN, parse

# Anonymous routes need an entry here with the reason; everything else is function level or stronger.
ANONYMOUS_ALLOWED = {
    "health": "liveness for the availability test; answers {'status': 'ok'} and reads nothing",
}
SECRET_FIELD_WORDS = ("key", "secret", "password", "pepper", "connection_string", "token", "credential")


@pytest.fixture(scope="module")
def functions() -> list[typing.Any]:
    from tests.support.product_app import product_functions

    return list(product_functions())


def test_http_triggers_require_a_key_or_stronger(functions: list[typing.Any]) -> None:
    http = [
        (f.get_function_name(), f.get_trigger())
        for f in functions
        if isinstance(f.get_trigger(), HttpTrigger)
    ]
    assert http, "no HTTP trigger found: is function_app.py importable?"
    for name, trigger in http:
        level = trigger.auth_level
        if name in ANONYMOUS_ALLOWED:
            continue
        assert level in (func.AuthLevel.FUNCTION, func.AuthLevel.ADMIN), (
            f"{name} ({trigger.route}) is {level}"
        )


def test_anonymous_allow_list_has_no_stale_entries(functions: list[typing.Any]) -> None:
    anonymous = {
        f.get_function_name()
        for f in functions
        if isinstance(f.get_trigger(), HttpTrigger) and f.get_trigger().auth_level == func.AuthLevel.ANONYMOUS
    }
    assert anonymous == set(ANONYMOUS_ALLOWED) & anonymous
    assert set(ANONYMOUS_ALLOWED) <= {f.get_function_name() for f in functions}


def test_event_grid_trigger_is_the_one_the_subscription_targets(functions: list[typing.Any]) -> None:
    subscribed = parse(MAIN)["modules"]["eventSubscription"]["config"]["config"]["params"]["functionName"]
    event_grid = [f.get_function_name() for f in functions if isinstance(f.get_trigger(), EventGridTrigger)]
    # Until the trigger lands the subscription names the agreed function; once it exists they must match.
    assert all(name == subscribed for name in event_grid), (
        f"subscription targets {subscribed}, code has {event_grid}"
    )


def test_secret_settings_are_secret_strings() -> None:
    for name, field in Settings.model_fields.items():
        if any(word in name for word in SECRET_FIELD_WORDS):
            assert SecretStr in typing.get_args(field.annotation) or field.annotation is SecretStr, (
                f"Settings.{name} holds a secret: type it SecretStr so it never prints"
            )


def test_app_settings_resolve_the_pepper_from_key_vault_with_the_app_identity() -> None:
    keyvault = parse(INFRA / "modules" / "keyvault.bicep")
    assert (
        keyvault["outputs"]["pepperSecretUri"]["value"]
        == "${vault.properties.vaultUri}secrets/${pepperSecretName}"
    )
