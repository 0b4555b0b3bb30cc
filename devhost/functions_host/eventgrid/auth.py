"""Publisher authentication as Event Grid checks it: `aeg-sas-key`, or a SAS (`aeg-sas-token` /
`Authorization: SharedAccessSignature ...`) of the form `r={resource}&e={expiry}&s={hmac}`."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qs, quote, unquote

SAFE_ENCODE = "~()*!.'"  # what azure-eventgrid's generate_sas leaves unescaped


class PublishUnauthorized(Exception):
    pass


def check_publisher(
    headers: Mapping[str, str],
    query: Mapping[str, str],
    topic_key: str,
    topic_url: str,
    now: datetime | None = None,
) -> None:
    key = headers.get("aeg-sas-key") or query.get("aeg-sas-key")
    if key:
        if not hmac.compare_digest(key.encode(), topic_key.encode()):
            raise PublishUnauthorized("the aeg-sas-key is not a key of this topic")
        return
    token = headers.get("aeg-sas-token") or query.get("aeg-sas-token")
    authorization = headers.get("authorization", "")
    if not token and authorization.startswith("SharedAccessSignature "):
        token = authorization.removeprefix("SharedAccessSignature ").strip()
    if not token:
        raise PublishUnauthorized(
            "no credentials: send the topic key in aeg-sas-key, or a SAS in aeg-sas-token / "
            "Authorization: SharedAccessSignature"
        )
    check_sas(token, topic_key, topic_url, now or datetime.now(UTC))


def sign(unsigned: str, topic_key: str) -> str:
    digest = hmac.new(base64.b64decode(topic_key), unsigned.encode("ascii"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def check_sas(token: str, topic_key: str, topic_url: str, now: datetime) -> None:
    # The signature covers the still-encoded "r=...&e=..." prefix, so split the raw token, not the parsed one.
    unsigned, sep, signature_part = token.rpartition("&s=")
    if not sep:
        raise PublishUnauthorized("malformed SAS token: expected r=...&e=...&s=...")
    fields = {k: v[0] for k, v in parse_qs(unsigned).items()}
    if "r" not in fields or "e" not in fields:
        raise PublishUnauthorized("malformed SAS token: expected r=...&e=...&s=...")
    expected = quote(sign(unsigned, topic_key), safe=SAFE_ENCODE)
    if not hmac.compare_digest(expected.encode(), signature_part.encode()) and not hmac.compare_digest(
        sign(unsigned, topic_key).encode(), unquote(signature_part).encode()
    ):
        raise PublishUnauthorized("the SAS signature does not match this topic's key")
    resource = fields["r"].split("?", 1)[0].rstrip("/").lower()
    if not topic_url.rstrip("/").lower().startswith(resource):
        raise PublishUnauthorized(f"the SAS was issued for {fields['r']}, not this topic")
    try:
        expiry = datetime.fromisoformat(fields["e"].replace("Z", "+00:00"))
    except ValueError as exc:
        raise PublishUnauthorized(f"malformed SAS expiry {fields['e']!r}") from exc
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    if expiry <= now:
        raise PublishUnauthorized("the SAS token has expired")
