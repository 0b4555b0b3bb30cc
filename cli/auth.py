"""The operator's access token: the API accepts only Entra ID tokens with one of its app roles.

Two ways, both documented in docs/operator-guide.md:
- `MIGRATE_ACCESS_TOKEN`: a token obtained elsewhere (e.g. `az account get-access-token --resource
  <audience>` for a signed-in person), sent as is;
- client credentials (a service principal, or a client of the local stack's issuer): `MIGRATE_AUTHORITY`
  (`https://login.microsoftonline.com/{tenant}/v2.0`), `MIGRATE_CLIENT_ID`, `MIGRATE_CLIENT_SECRET` and
  `MIGRATE_AUDIENCE` (the API's application ID URI). The token endpoint comes from the authority's OpenID
  configuration; the token is asked for once per run, as `{audience}/.default`.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

TIMEOUT_SECONDS = 30.0


class AuthError(Exception):
    """No token could be obtained; the message says what to set or fix."""


@dataclass(frozen=True)
class ClientCredentials:
    authority: str
    client_id: str
    client_secret: str
    audience: str

    def token(self) -> str:
        metadata_url = f"{self.authority.rstrip('/')}/.well-known/openid-configuration"
        try:
            metadata = httpx.get(metadata_url, timeout=TIMEOUT_SECONDS)
            if metadata.status_code != 200:
                raise AuthError(f"{metadata_url} answered {metadata.status_code}: check MIGRATE_AUTHORITY")
            endpoint = metadata.json()["token_endpoint"]
            answer = httpx.post(
                endpoint,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "scope": f"{self.audience}/.default",
                },
                timeout=TIMEOUT_SECONDS,
            )
        except httpx.HTTPError as exc:
            raise AuthError(f"cannot reach the token issuer {self.authority}: {exc}") from None
        body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
        if answer.status_code != 200 or "access_token" not in body:
            reason = body.get("error_description") or body.get("error") or answer.text[:200]
            raise AuthError(
                f"the token issuer refused client {self.client_id} ({answer.status_code}): {reason}. "
                "Check MIGRATE_CLIENT_ID, MIGRATE_CLIENT_SECRET and MIGRATE_AUDIENCE."
            )
        return str(body["access_token"])
