"""Security baseline checks that run without Azure (docs/security.md): trigger auth levels, secret types."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import typing

import azure.functions as func
import pytest
from azure.functions.decorators.eventgrid import EventGridTrigger
from azure.functions.decorators.http import HttpTrigger
from pydantic import SecretStr

from shared.domain.principal import Role
from shared.platform.settings import Settings
from tests.infra.bicep_model import INFRA, MAIN, parse
from tests.support.tokens import FakeTenant

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


# --- operator roles (docs/security.md#principals-and-what-they-may-do) --------------------------------

# Every HTTP function either names its least operator role (functions/auth.py `@requires`) or is here,
# with who calls it instead and how that caller is checked.
NOT_OPERATOR_ROUTES = {
    "health": "anonymous liveness probe; reads nothing",
    "openapi_document": "the API's published description; holds no data (function key only)",
    "status_page": "static HTML holding no data; its script calls the API with the operator's token",
    "zz_unmatched_route": "answers 404 in the JSON error shape for paths no function serves",
    "report_machines": "appliance credential, its own appliance only",
    "list_commands": "appliance credential, its own appliance only",
    "acknowledge_command": "appliance credential, its own appliance only",
    "issue_upload_credentials": "appliance credential, its own appliance only",
    "register_mobility_agent": "the registration passphrase in the body",
    "mobility_agent_heartbeat": "Mobility agent credential, its own machine only",
    "list_mobility_agent_commands": "Mobility agent credential, its own machine only",
    "acknowledge_mobility_agent_command": "Mobility agent credential, its own machine only",
    "get_mobility_agent_policy": "Mobility agent credential, its own machine only",
    "issue_mobility_agent_upload_credentials": "Mobility agent credential, its own machine only",
    "post_mobility_agent_cycle": "Mobility agent credential, its own machine only",
    "post_mobility_agent_cycle_failure": "Mobility agent credential, its own machine only",
}


def _method(method: typing.Any) -> str:
    return str(getattr(method, "value", method)).upper()


def _http_functions(functions: list[typing.Any]) -> dict[str, typing.Any]:
    return {f.get_function_name(): f for f in functions if isinstance(f.get_trigger(), HttpTrigger)}


def test_every_route_is_an_operator_route_with_a_role_or_a_reasoned_exception(
    functions: list[typing.Any],
) -> None:
    from functions.auth import REQUIRED_ROLES

    http = _http_functions(functions)
    unaccounted = sorted(set(http) - set(REQUIRED_ROLES) - set(NOT_OPERATOR_ROUTES))
    assert unaccounted == [], (
        f"HTTP functions with neither @requires(Role...) nor a reason here: {unaccounted}"
    )
    assert not set(REQUIRED_ROLES) & set(NOT_OPERATOR_ROUTES)
    assert set(NOT_OPERATOR_ROUTES) <= set(http), "stale entries in NOT_OPERATOR_ROUTES"
    # Reading is a Reader's; changing anything needs more.
    for name, role in REQUIRED_ROLES.items():
        methods = {_method(m) for m in http[name].get_trigger().methods}
        if methods == {"GET"} and name not in ("get_mobility_passphrase",):
            assert role is Role.READER, f"{name} only reads but needs {role}"
        if methods != {"GET"}:
            assert role is not Role.READER, f"{name} changes state but a Reader may call it"


@pytest.fixture
def operator_services() -> typing.Iterator[typing.Any]:
    from shared.appliances.credentials import CredentialHasher
    from shared.bootstrap import Services, use_services
    from shared.platform.repository import Repositories
    from tests.support.memory_store import InMemoryDocumentStore

    built = Services(
        settings=Settings.from_environ(
            {
                "COSMOS_ENDPOINT": "https://127.0.0.1:1/",
                "CACHE_STORAGE_CONNECTION_STRING": "unused",
                "REPLICA_STORAGE_CONNECTION_STRING": "unused",
                "EVENTGRID_TOPIC_ENDPOINT": "http://127.0.0.1:1/",
                "APPLIANCE_CREDENTIAL_PEPPER": "unused",
            }
        ),
        repos=Repositories(InMemoryDocumentStore()),
        hasher=CredentialHasher(b"baseline-pepper-0123456789", n=2**12),
    )
    built.operator_auth = TENANT.validator()
    with use_services(built):
        yield built


TENANT = FakeTenant()
DURABLE_CLIENT = json.dumps(
    {"taskHubName": "h", "creationUrls": {}, "managementUrls": {}, "rpcBaseUrl": "http://127.0.0.1:1/"}
)


def _call(function: typing.Any, authorization: str | None) -> func.HttpResponse:
    trigger = function.get_trigger()
    route = trigger.route.replace("{*path}", "x")
    params = {name: "id-1" for name in re.findall(r"{(\w+)}", route)}
    headers = {"Authorization": authorization} if authorization else {}
    req = func.HttpRequest(
        _method(trigger.methods[0]),
        f"http://host/api/{route}",
        headers=headers,
        params={},
        route_params=params,
        body=b"{}",
    )
    user_function = function.get_user_function()
    extra = {"client": DURABLE_CLIENT} if "client" in inspect.signature(user_function).parameters else {}
    result = user_function(req=req, **extra)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    return typing.cast(func.HttpResponse, result)


def test_every_operator_route_refuses_a_caller_without_a_token_an_appliance_and_a_lesser_role(
    functions: list[typing.Any], operator_services: typing.Any
) -> None:
    from functions.auth import REQUIRED_ROLES

    http = _http_functions(functions)
    lesser = {Role.OPERATOR: Role.READER, Role.ADMINISTRATOR: Role.OPERATOR}
    for name, role in REQUIRED_ROLES.items():
        for authorization in (None, "Bearer appl-1.c2VjcmV0LW9mLWFuLWFwcGxpYW5jZQ"):
            response = _call(http[name], authorization)
            assert response.status_code == 401, (name, authorization, response.get_body())
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert json.loads(response.get_body())["error"]["code"] == "Unauthorized"
        if role in lesser:
            response = _call(http[name], f"Bearer {TENANT.token(lesser[role])}")
            assert response.status_code == 403, (name, response.get_body())
            assert role.value in json.loads(response.get_body())["error"]["message"]
