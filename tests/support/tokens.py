"""A stand-in Entra tenant for tests that call the app in-process: its own RSA keys, its OpenID
configuration and key set served through `fetch` (no HTTP), and tokens minted with any claims, so the
app's real validator (shared/platform/operator_auth.py) checks them."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from shared.domain.principal import Role
from shared.platform.operator_auth import OperatorTokenValidator, SigningKeys

AUTHORITY = "https://login.example.test/tenant-1/v2.0"
AUDIENCE = "api://migration-control-plane"


class FakeTenant:
    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.published: list[str] = []
        self.fetches: list[str] = []
        self.add_key("key-1")

    def add_key(self, kid: str, *, publish: bool = True) -> rsa.RSAPrivateKey:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if publish:
            self.published.append(kid)
        return self.keys[kid]

    def fetch(self, url: str) -> dict[str, Any]:
        self.fetches.append(url)
        if url == f"{AUTHORITY}/.well-known/openid-configuration":
            return {"issuer": AUTHORITY, "jwks_uri": f"{AUTHORITY}/keys"}
        if url == f"{AUTHORITY}/keys":
            jwks = []
            for kid in self.published:
                jwk = json.loads(RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
                jwks.append({**jwk, "kid": kid, "use": "sig"})
            return {"keys": jwks}
        raise OSError(f"no such URL: {url}")

    def validator(self, clock: Any = time.monotonic) -> OperatorTokenValidator:
        return OperatorTokenValidator(SigningKeys(AUTHORITY, fetch=self.fetch, clock=clock), AUDIENCE)

    def token(
        self,
        *roles: Role | str,
        kid: str = "key-1",
        alg: str = "RS256",
        signing_key: Any = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": AUTHORITY,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "oid": "00000000-0000-0000-0000-0000000000a1",
            "name": "Ada Operator",
            "scp": "access_as_user",
            "roles": [str(role) for role in roles],
            "uti": uuid.uuid4().hex,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        key = signing_key if signing_key is not None else self.keys[kid]
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})

    def headers(self, role: Role = Role.ADMINISTRATOR) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role)}"}
