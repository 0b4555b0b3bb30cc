"""Appliance credentials: high-entropy, shown once, stored only as a salted, peppered scrypt hash.

Format "<applianceId>.<secret>": the id lets authentication be one point read (no query by hash);
the secret is 256 random bits. The stored hash is scrypt(HMAC-SHA256(pepper, secret), salt) so a
stolen database alone (without the pepper from Key Vault/app settings) cannot even be brute-forced
offline; scrypt keeps each guess expensive if the pepper leaks too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from shared.domain.errors import Unauthorized

SECRET_BYTES = 32
SALT_BYTES = 16
_SCHEME = "scrypt"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class ParsedCredential:
    appliance_id: str
    secret: str


def new_credential(appliance_id: str) -> str:
    return f"{appliance_id}.{secrets.token_urlsafe(SECRET_BYTES)}"


def parse_credential(credential: str) -> ParsedCredential:
    # token_urlsafe never yields '.', so the last '.' separates the id from the secret.
    appliance_id, dot, secret = credential.rpartition(".")
    if not dot or not appliance_id or len(secret) < 40:
        raise Unauthorized(
            "the appliance credential is malformed: use the credential returned at registration"
        )
    return ParsedCredential(appliance_id, secret)


class CredentialHasher:
    """scrypt with a pepper. Defaults: N=2**14, r=8, p=1 (16 MiB, tens of ms per hash)."""

    def __init__(self, pepper: bytes, *, n: int = 2**14, r: int = 8, p: int = 1) -> None:
        if len(pepper) < 16:
            raise ValueError("the credential pepper must be at least 16 bytes")
        self._pepper = pepper
        self._n, self._r, self._p = n, r, p
        # Verifying against this when the appliance is unknown keeps the response time the same.
        self._decoy = self.hash("decoy-secret-for-unknown-appliances")

    def _derive(self, secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        peppered = hmac.new(self._pepper, secret.encode(), hashlib.sha256).digest()
        return hashlib.scrypt(peppered, salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)

    def hash(self, secret: str) -> str:
        salt = secrets.token_bytes(SALT_BYTES)
        digest = self._derive(secret, salt, self._n, self._r, self._p)
        return f"{_SCHEME}${self._n}${self._r}${self._p}${_b64(salt)}${_b64(digest)}"

    def verify(self, secret: str, encoded: str | None) -> bool:
        """Constant-time check of `secret` against a stored hash (the decoy when `encoded` is None)."""
        try:
            scheme, n, r, p, salt, digest = (encoded or self._decoy).split("$")
            if scheme != _SCHEME:
                return False
            # Parameters come from the stored hash, so raising the cost later keeps old hashes valid.
            actual = self._derive(secret, _unb64(salt), int(n), int(r), int(p))
        except ValueError:
            return False
        return hmac.compare_digest(actual, _unb64(digest)) and encoded is not None
