"""The local stack's OpenID Connect issuer: Entra ID's token endpoint for the client-credentials grant,
its OpenID configuration and its signing keys, so the app validates operators' tokens locally with the
very code it runs in Azure (shared/platform/operator_auth.py); only the authority URL differs.

Paths mirror Entra's, under the tenant `devhost`:

    GET  /{tenant}/v2.0/.well-known/openid-configuration
    GET  /{tenant}/discovery/v2.0/keys
    POST /{tenant}/oauth2/v2.0/token   (grant_type=client_credentials, client_id, client_secret,
                                        scope={audience}/.default; or HTTP Basic for the client)

The signing key (RSA 2048, `signing-key.pem`) and the registered clients with their app roles
(`clients.json`) are kept 0600 in the issuer's data directory; the stack registers one client per role
and names the file in `.devhost/stack.json` (`operatorClientsFile`) for tests, the demo and the CLI.

`python -m devhost.oidc --port P --data-dir D` serves it (the stack starts it).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from devhost.emulators import REPO_ROOT
from devhost.processes import ManagedProcess

LOCAL_TENANT = "devhost"
LOCAL_AUDIENCE = "api://migration-control-plane"
TOKEN_LIFETIME_SECONDS = 3600
KEY_FILE = "signing-key.pem"
CLIENTS_FILE = "clients.json"

# The clients the stack registers: one per app role, so tests and the demo act with the least role.
READER_CLIENT = "local-reader"
OPERATOR_CLIENT = "local-operator"
ADMINISTRATOR_CLIENT = "local-administrator"
STACK_CLIENTS = {
    READER_CLIENT: ["Migration.Reader"],
    OPERATOR_CLIENT: ["Migration.Operator"],
    ADMINISTRATOR_CLIENT: ["Migration.Administrator"],
}


def authority_url(port: int, tenant: str = LOCAL_TENANT) -> str:
    return f"http://127.0.0.1:{port}/{tenant}/v2.0"


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    client_secret: str
    name: str
    object_id: str
    roles: list[str]


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def ensure_issuer_data(data_dir: Path) -> dict[str, RegisteredClient]:
    """The signing key and the stack's clients, created on first use and kept (with `--keep-data`)."""
    key_path = data_dir / KEY_FILE
    if not key_path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_private(key_path, pem)
    clients = read_clients(data_dir)
    missing = [client_id for client_id in STACK_CLIENTS if client_id not in clients]
    for client_id in missing:
        clients[client_id] = RegisteredClient(
            client_id=client_id,
            client_secret=secrets.token_urlsafe(32),
            name=client_id,
            object_id=str(uuid.uuid4()),
            roles=STACK_CLIENTS[client_id],
        )
    if missing:
        write_clients(data_dir, clients)
    return clients


def read_clients(data_dir: Path) -> dict[str, RegisteredClient]:
    path = data_dir / CLIENTS_FILE
    if not path.exists():
        return {}
    document = json.loads(path.read_text())
    return {c["clientId"]: _client_of(c) for c in document["clients"]}


def _client_of(entry: dict[str, Any]) -> RegisteredClient:
    return RegisteredClient(
        client_id=entry["clientId"],
        client_secret=entry["clientSecret"],
        name=entry["name"],
        object_id=entry["objectId"],
        roles=list(entry["roles"]),
    )


def write_clients(data_dir: Path, clients: dict[str, RegisteredClient]) -> None:
    entries = [
        {
            "clientId": c.client_id,
            "clientSecret": c.client_secret,
            "name": c.name,
            "objectId": c.object_id,
            "roles": c.roles,
        }
        for c in clients.values()
    ]
    _write_private(data_dir / CLIENTS_FILE, json.dumps({"clients": entries}, indent=2).encode())


def register_client(data_dir: Path, name: str, roles: list[str]) -> RegisteredClient:
    """Register one more client (tests: a principal with no role, or an unknown one). The running issuer
    reads the file on every token request, so it takes effect at once."""
    clients = read_clients(data_dir)
    client = RegisteredClient(
        client_id=f"{name}-{uuid.uuid4().hex[:8]}",
        client_secret=secrets.token_urlsafe(32),
        name=name,
        object_id=str(uuid.uuid4()),
        roles=list(roles),
    )
    clients[client.client_id] = client
    write_clients(data_dir, clients)
    return client


def _kid(public_jwk: dict[str, Any]) -> str:
    # RFC 7638 thumbprint: stable for the key, different for any other.
    canonical = json.dumps({k: public_jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")


class Issuer:
    def __init__(self, data_dir: Path, base_url: str, tenant: str = LOCAL_TENANT) -> None:
        self.data_dir = data_dir
        self.tenant = tenant
        self.base_url = base_url.rstrip("/")
        pem = (data_dir / KEY_FILE).read_bytes()
        self._private_key = serialization.load_pem_private_key(pem, password=None)
        public_jwk = json.loads(RSAAlgorithm.to_jwk(self._private_key.public_key()))  # type: ignore[arg-type]
        self.kid = _kid(public_jwk)
        self.jwk = {**public_jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/{self.tenant}/v2.0"

    def openid_configuration(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.base_url}/{self.tenant}/discovery/v2.0/keys",
            "token_endpoint": f"{self.base_url}/{self.tenant}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["token"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["pairwise"],
            "tenant_id": self.tenant,
        }

    def keys(self) -> dict[str, Any]:
        return {"keys": [self.jwk]}

    def token(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict[str, Any]]:
        """Entra's answer to a client-credentials request: 200 with the token, or its OAuth2 error."""
        if form.get("grant_type") != "client_credentials":
            return 400, _oauth_error(
                "unsupported_grant_type", "only grant_type=client_credentials is supported here"
            )
        client_id, client_secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        client = read_clients(self.data_dir).get(client_id)
        if client is None or not hmac.compare_digest(client.client_secret, client_secret):
            return 401, _oauth_error("invalid_client", "the client id or secret is wrong")
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return 400, _oauth_error(
                "invalid_scope", f"scope must be '<audience>/.default', e.g. {LOCAL_AUDIENCE}/.default"
            )
        now = int(time.time())
        claims = {
            "aud": scope.removesuffix("/.default"),
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "oid": client.object_id,
            "sub": client.object_id,
            "tid": self.tenant,
            "azp": client.client_id,
            "appid": client.client_id,
            "name": client.name,
            "idtyp": "app",
            "roles": client.roles,
            "ver": "2.0",
            "uti": secrets.token_urlsafe(16),
        }
        token = jwt.encode(claims, self._private_key, algorithm="RS256", headers={"kid": self.kid})  # type: ignore[arg-type]
        return 200, {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "ext_expires_in": TOKEN_LIFETIME_SECONDS,
            "access_token": token,
        }


def _oauth_error(code: str, description: str) -> dict[str, Any]:
    return {"error": code, "error_description": description}


def _handler(issuer: Issuer) -> type[BaseHTTPRequestHandler]:
    prefix = f"/{issuer.tenant}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            # Never the form (it holds the client secret): the request line only.
            sys.stderr.write(f"{self.command} {self.path.split('?')[0]} {args[1] if len(args) > 1 else ''}\n")

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == f"{prefix}/v2.0/.well-known/openid-configuration":
                self._reply(200, issuer.openid_configuration())
            elif path == f"{prefix}/discovery/v2.0/keys":
                self._reply(200, issuer.keys())
            else:
                self._reply(404, _oauth_error("not_found", f"no such path here: {path}"))

        def do_POST(self) -> None:
            path = self.path.split("?")[0]
            if path != f"{prefix}/oauth2/v2.0/token":
                self._reply(404, _oauth_error("not_found", f"no such path here: {path}"))
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8", errors="replace")
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            self._reply(*issuer.token(form, _basic(self.headers.get("Authorization"))))

    return Handler


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except ValueError:
        return None
    client_id, _, secret = decoded.partition(":")
    return unquote(client_id), unquote(secret)


def start_local_oidc(
    data_dir: Path, port: int, log_dir: Path, *, ready_timeout: float = 30.0
) -> ManagedProcess:
    """Start the issuer on 127.0.0.1:`port` and wait until it answers; the caller stops it."""
    ensure_issuer_data(data_dir)
    process = ManagedProcess(
        name="local-oidc",
        argv=[sys.executable, "-m", "devhost.oidc", "--port", str(port), "--data-dir", str(data_dir)],
        log_path=log_dir / "local-oidc.log",
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
    ).start()
    metadata = f"{authority_url(port)}/.well-known/openid-configuration"
    process.wait_ready(lambda: httpx.get(metadata, timeout=2).status_code == 200, timeout=ready_timeout)
    return process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.oidc", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    ensure_issuer_data(args.data_dir)
    issuer = Issuer(args.data_dir, f"http://127.0.0.1:{args.port}")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(issuer))
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


@dataclass
class LocalTokens:
    """Client-credentials tokens from an issuer for the stack's registered clients, each kept until a few
    minutes before it expires (as MSAL does), so a test run asks for one token per client."""

    authority: str
    data_dir: Path
    audience: str = LOCAL_AUDIENCE

    def __post_init__(self) -> None:
        self._cache: dict[str, tuple[str, float]] = {}

    def token(self, client_id: str = ADMINISTRATOR_CLIENT) -> str:
        cached = self._cache.get(client_id)
        if cached is not None and cached[1] > time.time() + 300:
            return cached[0]
        client = read_clients(self.data_dir)[client_id]
        token, expires_in = client_credentials_token(
            f"{self.authority.removesuffix('/v2.0')}/oauth2/v2.0/token",
            client.client_id,
            client.client_secret,
            self.audience,
        )
        self._cache[client_id] = (token, time.time() + expires_in)
        return token


def client_credentials_token(
    token_endpoint: str, client_id: str, client_secret: str, audience: str
) -> tuple[str, int]:
    """(access token, seconds it lives) from an OAuth2 token endpoint, Entra's or the local one."""
    response = httpx.post(
        token_endpoint,
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "scope": f"{audience}/.default",
        },
        timeout=30,
    )
    if response.status_code != 200:
        raise RuntimeError(
            f"{token_endpoint} refused client {client_id}: {response.status_code} {response.text}"
        )
    body = response.json()
    return str(body["access_token"]), int(body["expires_in"])
