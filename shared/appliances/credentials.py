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
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from shared.domain.errors import Unauthorized

SECRET_BYTES = 32
SALT_BYTES = 16
_SCHEME = "scrypt"
# A verified credential is trusted again for this long without another scrypt: every appliance call
# authenticates (command polls, upload credentials, acknowledgements, a few per cycle), and at fleet scale
# scrypt's tens of milliseconds of CPU per call was a worker's largest cost after Cosmos I/O. Keyed by
# the stored hash, so a new credential (re-registration) is verified afresh at once.
VERIFIED_TTL_SECONDS = 300.0
VERIFIED_MAX_ENTRIES = 4096


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

    def __init__(
        self,
        pepper: bytes,
        *,
        n: int = 2**14,
        r: int = 8,
        p: int = 1,
        verified_ttl: float = VERIFIED_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(pepper) < 16:
            raise ValueError("the credential pepper must be at least 16 bytes")
        self._pepper = pepper
        self._n, self._r, self._p = n, r, p
        self._verified_ttl = verified_ttl
        self._clock = clock
        # (stored hash, HMAC(pepper, secret)) -> expiry: only successes, never the secret itself.
        self._verified: OrderedDict[tuple[str, bytes], float] = OrderedDict()
        self._verified_lock = threading.Lock()
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
        """Constant-time check of `secret` against a stored hash (the decoy when `encoded` is None). A
        success is remembered for `verified_ttl` seconds, so repeated calls with the same credential cost
        one HMAC instead of a scrypt; failures are never remembered, so guessing stays expensive."""
        remembered = (
            (encoded, hmac.new(self._pepper, secret.encode(), hashlib.sha256).digest()) if encoded else None
        )
        if remembered is not None and self._recently_verified(remembered):
            return True
        try:
            scheme, n, r, p, salt, digest = (encoded or self._decoy).split("$")
            if scheme != _SCHEME:
                return False
            # Parameters come from the stored hash, so raising the cost later keeps old hashes valid.
            actual = self._derive(secret, _unb64(salt), int(n), int(r), int(p))
        except ValueError:
            return False
        verified = hmac.compare_digest(actual, _unb64(digest)) and encoded is not None
        if verified and remembered is not None:
            self._remember(remembered)
        return verified

    def _recently_verified(self, key: tuple[str, bytes]) -> bool:
        with self._verified_lock:
            expiry = self._verified.get(key)
            if expiry is None:
                return False
            if self._clock() >= expiry:
                del self._verified[key]
                return False
            return True

    def _remember(self, key: tuple[str, bytes]) -> None:
        with self._verified_lock:
            self._verified[key] = self._clock() + self._verified_ttl
            self._verified.move_to_end(key)
            while len(self._verified) > VERIFIED_MAX_ENTRIES:
                self._verified.popitem(last=False)
