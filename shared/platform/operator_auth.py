"""Operators' Entra ID bearer tokens, validated by the app itself against the tenant's signing keys.

The authority (`https://login.microsoftonline.com/{tenant}/v2.0` in Azure, the local issuer of the
devhost locally) publishes its OpenID configuration at `{authority}/.well-known/openid-configuration`:
the issuer every token must carry and `jwks_uri`, the public keys. Keys are cached; a token signed with a
`kid` the cache lacks triggers one refresh (Entra rolls its keys), rate-limited so a flood of forged kids
cannot turn every request into a fetch. A token is accepted only if it is RS256, signed by one of those
keys, issued by that issuer for this API's audience, within its validity (a minute of leeway for clock
skew), and names its principal (`oid`). What the caller may do is in its `roles` claim (shared.domain.
principal). The same code runs in Azure and in every local test: only the authority differs.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt.algorithms import RSAAlgorithm

from shared.domain.errors import Unauthorized, Unavailable
from shared.domain.principal import Caller, Principal, PrincipalKind, known_roles

ALGORITHM = "RS256"
LEEWAY_SECONDS = 60
# A key set younger than this is not fetched again for an unknown kid (forged kids cost nothing to send).
MIN_REFRESH_SECONDS = 30.0
# Keys are re-read this often even when every kid is known, so a revoked key stops working.
KEYS_TTL_SECONDS = 24 * 3600.0
FETCH_TIMEOUT_SECONDS = 10.0

Fetch = Callable[[str], dict[str, Any]]


def fetch_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as response:
        document = json.loads(response.read())
    if not isinstance(document, dict):
        raise ValueError(f"{url} did not answer a JSON object")
    return document


def is_json_web_token(token: str) -> bool:
    """Whether `token` has a JWT's shape (three segments, a JSON header naming its algorithm), which no
    appliance credential has: routes that serve both callers tell them apart by it, before any check."""
    try:
        return token.count(".") == 2 and "alg" in jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return False


def metadata_url(authority: str) -> str:
    return f"{authority.rstrip('/')}/.well-known/openid-configuration"


def _unauthorized(reason: str) -> Unauthorized:
    return Unauthorized(
        f"the bearer token was refused: {reason}. Send `Authorization: Bearer <access token>` with a token "
        "the API's Entra tenant issued for this API (see docs/security.md).",
        details=[{"reason": reason}],
    )


@dataclass
class SigningKeys:
    """The authority's issuer and public signing keys, fetched on first use and cached by kid."""

    authority: str
    fetch: Fetch = fetch_json
    clock: Callable[[], float] = time.monotonic
    _issuer: str | None = None
    _jwks_uri: str | None = None
    _keys: dict[str, Any] = field(default_factory=dict)
    _fetched_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issuer(self) -> str:
        with self._lock:
            self._load_metadata()
            assert self._issuer is not None
            return self._issuer

    def key(self, kid: str) -> Any:
        """The public key `kid`, refreshing the set once if it is unknown; Unauthorized if still unknown."""
        with self._lock:
            now = self.clock()
            stale = self._fetched_at is None or now - self._fetched_at >= KEYS_TTL_SECONDS
            unknown = kid not in self._keys
            may_refresh = self._fetched_at is None or now - self._fetched_at >= MIN_REFRESH_SECONDS
            if stale or (unknown and may_refresh):
                self._refresh(now)
            if kid not in self._keys:
                raise _unauthorized(f"it is signed with key {kid!r}, which the issuer does not publish")
            return self._keys[kid]

    def _load_metadata(self) -> None:
        if self._issuer is not None:
            return
        document = self._get(metadata_url(self.authority))
        issuer, jwks_uri = document.get("issuer"), document.get("jwks_uri")
        if not isinstance(issuer, str) or not isinstance(jwks_uri, str):
            raise Unavailable(
                f"the OpenID configuration of {self.authority} names no issuer or jwks_uri; check "
                "OPERATOR_AUTH_AUTHORITY",
                retry_after_seconds=60,
            )
        self._issuer, self._jwks_uri = issuer, jwks_uri

    def _refresh(self, now: float) -> None:
        self._load_metadata()
        assert self._jwks_uri is not None
        document = self._get(self._jwks_uri)
        keys: dict[str, Any] = {}
        for jwk in document.get("keys", []):
            if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or not isinstance(jwk.get("kid"), str):
                continue
            if jwk.get("use", "sig") != "sig":
                continue
            keys[jwk["kid"]] = RSAAlgorithm.from_jwk(jwk)
        self._keys, self._fetched_at = keys, now

    def _get(self, url: str) -> dict[str, Any]:
        try:
            return self.fetch(url)
        except Exception as exc:
            # The caller may be entitled; the authority did not answer: a retry may succeed.
            raise Unavailable(
                f"the operator token issuer could not be reached ({type(exc).__name__}: {exc}); retry shortly",
                retry_after_seconds=5,
            ) from None


@dataclass
class OperatorTokenValidator:
    keys: SigningKeys
    audience: str
    leeway_seconds: int = LEEWAY_SECONDS

    def authenticate(self, token: str | None) -> Caller:
        """The caller a valid operator token names, or Unauthorized saying what is wrong with it."""
        if not token:
            raise _unauthorized("no bearer token was sent")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _unauthorized("it is not a JSON Web Token") from None
        if header.get("alg") != ALGORITHM:
            # Never the token's own choice: `none` and HMAC (keyed with the public key) are forgeries.
            raise _unauthorized(f"its algorithm is {header.get('alg')!r}; only {ALGORITHM} is accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _unauthorized("its header names no signing key (kid)")
        key = self.keys.key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.keys.issuer(),
                leeway=self.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("it has expired; get a new token") from None
        except jwt.ImmatureSignatureError:
            raise _unauthorized("it is not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise _unauthorized(f"it was issued for another audience, not {self.audience}") from None
        except jwt.InvalidIssuerError:
            raise _unauthorized("it was issued by another issuer than this API's tenant") from None
        except jwt.InvalidSignatureError:
            raise _unauthorized("its signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _unauthorized(f"it lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"it is malformed ({exc})") from None
        return caller_of(claims)


def caller_of(claims: dict[str, Any]) -> Caller:
    object_id = claims.get("oid")
    if not isinstance(object_id, str) or not object_id:
        raise _unauthorized("it names no principal (oid)")
    roles = claims.get("roles", [])
    # An app-only token (client credentials) has no delegated scopes; Entra marks it `idtyp: app` when
    # that optional claim is configured.
    is_app = claims.get("idtyp") == "app" or "scp" not in claims
    name = next(
        (
            claims[claim]
            for claim in ("name", "preferred_username", "app_displayname", "appid", "azp")
            if isinstance(claims.get(claim), str) and claims[claim]
        ),
        object_id,
    )
    return Caller(
        principal=Principal(
            object_id=object_id, name=name, kind=PrincipalKind.APP if is_app else PrincipalKind.USER
        ),
        roles=known_roles(roles if isinstance(roles, list) else []),
    )
