"""Operators' bearer tokens: what the validator accepts and refuses, and how roles map to operations."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from shared.domain.errors import Forbidden, Unauthorized, Unavailable
from shared.domain.principal import Caller, Principal, PrincipalKind, Role, known_roles, require_role
from shared.platform.operator_auth import MIN_REFRESH_SECONDS, OperatorTokenValidator, SigningKeys
from tests.support.tokens import AUDIENCE, AUTHORITY, FakeTenant


@pytest.fixture
def tenant() -> FakeTenant:
    return FakeTenant()


def refused(validator: OperatorTokenValidator, token: str | None) -> str:
    with pytest.raises(Unauthorized) as caught:
        validator.authenticate(token)
    return caught.value.message


def test_a_valid_token_names_its_principal_and_roles(tenant: FakeTenant) -> None:
    caller = tenant.validator().authenticate(tenant.token(Role.OPERATOR, "Other.App.Role"))
    assert caller.principal == Principal(
        object_id="00000000-0000-0000-0000-0000000000a1", name="Ada Operator", kind=PrincipalKind.USER
    )
    assert caller.roles == frozenset({Role.OPERATOR})


def test_an_app_only_token_is_an_app_named_by_its_client(tenant: FakeTenant) -> None:
    token = tenant.token(Role.READER, scp=None, name=None, appid="ci-pipeline", idtyp="app")
    caller = tenant.validator().authenticate(token)
    assert (caller.principal.kind, caller.principal.name) == (PrincipalKind.APP, "ci-pipeline")


def test_no_token_is_refused(tenant: FakeTenant) -> None:
    assert "no bearer token" in refused(tenant.validator(), None)


def test_an_appliance_credential_is_not_a_token(tenant: FakeTenant) -> None:
    assert "not a JSON Web Token" in refused(tenant.validator(), "appl-1.c2VjcmV0")


def test_an_expired_token_is_refused_beyond_the_leeway(tenant: FakeTenant) -> None:
    now = int(time.time())
    assert "expired" in refused(tenant.validator(), tenant.token(Role.READER, exp=now - 120, iat=now - 3700))
    # Within the minute of clock skew it is still accepted.
    tenant.validator().authenticate(tenant.token(Role.READER, exp=now - 30, iat=now - 3600))


def test_a_token_not_valid_yet_is_refused(tenant: FakeTenant) -> None:
    later = int(time.time()) + 600
    assert "not valid yet" in refused(tenant.validator(), tenant.token(Role.READER, nbf=later))


def test_a_token_for_another_audience_is_refused(tenant: FakeTenant) -> None:
    message = refused(tenant.validator(), tenant.token(Role.READER, aud="api://someone-else"))
    assert "another audience" in message and AUDIENCE in message


def test_a_token_of_another_issuer_is_refused(tenant: FakeTenant) -> None:
    token = tenant.token(Role.READER, iss="https://login.example.test/other-tenant/v2.0")
    assert "another issuer" in refused(tenant.validator(), token)


def test_a_token_without_expiry_or_principal_is_refused(tenant: FakeTenant) -> None:
    assert "'exp'" in refused(tenant.validator(), tenant.token(Role.READER, exp=None))
    assert "oid" in refused(tenant.validator(), tenant.token(Role.READER, oid=None))


def test_a_forged_signature_is_refused(tenant: FakeTenant) -> None:
    impostor = FakeTenant().keys["key-1"]
    assert "signature" in refused(tenant.validator(), tenant.token(Role.ADMINISTRATOR, signing_key=impostor))


def test_a_tampered_payload_is_refused(tenant: FakeTenant) -> None:
    header, payload, signature = tenant.token(Role.READER).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = [Role.ADMINISTRATOR.value]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert "signature" in refused(tenant.validator(), f"{header}.{forged}.{signature}")


def test_alg_none_and_hmac_are_refused(tenant: FakeTenant) -> None:
    claims = jwt.decode(tenant.token(Role.ADMINISTRATOR), options={"verify_signature": False})
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"kid": "key-1"})
    assert "'none'" in refused(tenant.validator(), unsigned)
    hmac_token = jwt.encode(
        claims, "a-shared-secret-of-thirty-two-bytes!!", algorithm="HS256", headers={"kid": "key-1"}
    )
    assert "'HS256'" in refused(tenant.validator(), hmac_token)


def test_an_unknown_kid_refreshes_the_keys_once_then_refuses(tenant: FakeTenant) -> None:
    clock = [1000.0]
    validator = tenant.validator(clock=lambda: clock[0])
    validator.authenticate(tenant.token(Role.READER))

    def keys_fetches() -> int:
        return sum(url.endswith("/keys") for url in tenant.fetches)

    assert keys_fetches() == 1
    # The tenant rolls a new key: the first token signed with it makes the cache refresh.
    clock[0] += MIN_REFRESH_SECONDS
    tenant.add_key("key-2")
    validator.authenticate(tenant.token(Role.READER, kid="key-2"))
    assert keys_fetches() == 2
    # A kid nobody publishes: refused; and a burst of them does not refetch within the interval.
    tenant.add_key("key-x", publish=False)
    clock[0] += MIN_REFRESH_SECONDS
    for _ in range(5):
        assert "does not publish" in refused(validator, tenant.token(Role.READER, kid="key-x"))
    assert keys_fetches() == 3


def test_an_unreachable_issuer_is_a_503_not_a_401() -> None:
    def down(url: str) -> dict[str, object]:
        raise OSError("connection refused")

    validator = OperatorTokenValidator(SigningKeys(AUTHORITY, fetch=down), AUDIENCE)
    with pytest.raises(Unavailable):
        validator.authenticate(FakeTenant().token(Role.READER))


def caller(*roles: Role) -> Caller:
    principal = Principal(object_id="o", name="n", kind=PrincipalKind.USER)
    return Caller(principal=principal, roles=frozenset(roles))


@pytest.mark.parametrize(
    ("held", "needed", "allowed"),
    [
        (Role.READER, Role.READER, True),
        (Role.READER, Role.OPERATOR, False),
        (Role.READER, Role.ADMINISTRATOR, False),
        (Role.OPERATOR, Role.READER, True),
        (Role.OPERATOR, Role.OPERATOR, True),
        (Role.OPERATOR, Role.ADMINISTRATOR, False),
        (Role.ADMINISTRATOR, Role.READER, True),
        (Role.ADMINISTRATOR, Role.OPERATOR, True),
        (Role.ADMINISTRATOR, Role.ADMINISTRATOR, True),
    ],
)
def test_each_role_includes_the_lower_ones(held: Role, needed: Role, allowed: bool) -> None:
    if allowed:
        require_role(caller(held), needed)
    else:
        with pytest.raises(Forbidden) as caught:
            require_role(caller(held), needed)
        assert needed.value in caught.value.message
        assert caught.value.details[0]["requiredRole"] == needed.value


def test_a_token_without_roles_authenticates_but_may_do_nothing(tenant: FakeTenant) -> None:
    nobody = tenant.validator().authenticate(tenant.token())
    assert nobody.roles == frozenset()
    with pytest.raises(Forbidden, match="no role of this API"):
        require_role(nobody, Role.READER)


def test_only_this_apis_roles_count() -> None:
    assert known_roles(["Migration.Reader", "migration.operator", 7, "Site.Admin"]) == {Role.READER}
