"""The local issuer, over HTTP, as outside clients use it (docs/local-stack.md#operator-tokens): the
client-credentials grant, its errors, and tokens the app's own validator accepts."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devhost.oidc import (
    LOCAL_AUDIENCE,
    OPERATOR_CLIENT,
    READER_CLIENT,
    authority_url,
    read_clients,
    register_client,
    start_local_oidc,
)
from devhost.processes import free_port
from shared.domain.errors import Unauthorized
from shared.domain.principal import PrincipalKind, Role
from shared.platform.operator_auth import OperatorTokenValidator, SigningKeys


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("oidc")
    port = free_port()
    process = start_local_oidc(data_dir, port, data_dir / "logs")
    try:
        yield authority_url(port), data_dir
    finally:
        process.stop()


def token_request(authority: str, **form: str) -> httpx.Response:
    return httpx.post(f"{authority.removesuffix('/v2.0')}/oauth2/v2.0/token", data=form, timeout=10)


def test_the_documented_flow_gives_a_token_the_app_accepts(issuer: tuple[str, Path]) -> None:
    authority, data_dir = issuer
    metadata = httpx.get(f"{authority}/.well-known/openid-configuration", timeout=10).json()
    assert metadata["issuer"] == authority
    client = read_clients(data_dir)[OPERATOR_CLIENT]
    response = httpx.post(
        metadata["token_endpoint"],
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "scope": f"{LOCAL_AUDIENCE}/.default",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    caller = OperatorTokenValidator(SigningKeys(authority), LOCAL_AUDIENCE).authenticate(body["access_token"])
    assert caller.roles == {Role.OPERATOR}
    assert (caller.principal.object_id, caller.principal.kind) == (client.object_id, PrincipalKind.APP)


def test_http_basic_client_authentication_is_accepted(issuer: tuple[str, Path]) -> None:
    authority, data_dir = issuer
    client = read_clients(data_dir)[READER_CLIENT]
    response = httpx.post(
        f"{authority.removesuffix('/v2.0')}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "scope": f"{LOCAL_AUDIENCE}/.default"},
        auth=(client.client_id, client.client_secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_oauth_errors_as_entra_answers_them(issuer: tuple[str, Path]) -> None:
    authority, data_dir = issuer
    client = read_clients(data_dir)[READER_CLIENT]
    scope = f"{LOCAL_AUDIENCE}/.default"
    wrong = token_request(
        authority, grant_type="client_credentials", client_id=client.client_id, client_secret="x", scope=scope
    )
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    grant = token_request(authority, grant_type="password", client_id=client.client_id, scope=scope)
    assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")
    no_scope = token_request(
        authority,
        grant_type="client_credentials",
        client_id=client.client_id,
        client_secret=client.client_secret,
        scope=LOCAL_AUDIENCE,
    )
    assert (no_scope.status_code, no_scope.json()["error"]) == (400, "invalid_scope")


def test_a_token_for_another_audience_is_refused_by_the_app(issuer: tuple[str, Path]) -> None:
    authority, data_dir = issuer
    client = read_clients(data_dir)[READER_CLIENT]
    response = token_request(
        authority,
        grant_type="client_credentials",
        client_id=client.client_id,
        client_secret=client.client_secret,
        scope="api://another-api/.default",
    )
    with pytest.raises(Unauthorized, match="another audience"):
        OperatorTokenValidator(SigningKeys(authority), LOCAL_AUDIENCE).authenticate(
            response.json()["access_token"]
        )


def test_clients_registered_while_running_get_tokens_and_the_files_are_private(
    issuer: tuple[str, Path],
) -> None:
    authority, data_dir = issuer
    nobody = register_client(data_dir, "no-role", [])
    response = token_request(
        authority,
        grant_type="client_credentials",
        client_id=nobody.client_id,
        client_secret=nobody.client_secret,
        scope=f"{LOCAL_AUDIENCE}/.default",
    )
    assert response.status_code == 200
    for name in ("clients.json", "signing-key.pem"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600
