"""The HTTP API, as the client sees it: JSON in and out, errors as the API says them.

Every failure becomes one of two exceptions the commands print without a stack trace: `ApiError`
(the API answered with its error shape, or something that is not the API answered) and
`EndpointUnreachable` (no answer at all, naming the endpoint that failed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from cli.auth import AuthError
from cli.config import Profile

USER_AGENT = "migrate-cli/0.1"
TIMEOUT_SECONDS = 30.0


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str
    details: list[Any] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class EndpointUnreachable(Exception):
    url: str
    reason: str

    def __str__(self) -> str:
        return f"cannot reach {self.url}: {self.reason}"


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: httpx.Headers

    def retry_after(self, default: float) -> float:
        """Seconds to wait before polling again, as the API's Retry-After asks (seconds form only)."""
        raw = self.headers.get("Retry-After")
        try:
            return max(0.0, float(raw)) if raw is not None else default
        except ValueError:
            return default


class ApiClient:
    def __init__(self, profile: Profile, *, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if profile.function_key:
            headers["x-functions-key"] = profile.function_key
        self._profile = profile
        self._token: str | None = profile.access_token
        self.endpoint = profile.endpoint
        self._http = httpx.Client(
            base_url=profile.endpoint, headers=headers, timeout=TIMEOUT_SECONDS, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content_type: str | None = None,
        content: bytes | None = None,
    ) -> Answer:
        """`content_type` names the body's media type: a JSON body of another type (a merge patch), or the
        raw `content` (a file)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = f"{self.endpoint}{path}"
        headers = {"Content-Type": content_type} if content_type else {}
        token = self._access_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = self._http.request(
                method, path, json=json, content=content, params=query or None, headers=headers
            )
        except httpx.TimeoutException:
            raise EndpointUnreachable(url, f"no answer within {TIMEOUT_SECONDS:.0f} s") from None
        except httpx.TransportError as exc:
            raise EndpointUnreachable(url, str(exc) or type(exc).__name__) from None
        body = _json_or_none(response)
        if response.status_code >= 400:
            raise _error_of(response, body, f"{method} {url}")
        return Answer(response.status_code, body, response.headers)

    def _access_token(self) -> str | None:
        """The configured token, or one from the client-credentials grant (asked for once per run)."""
        if self._token is None:
            credentials = self._profile.credentials()
            if credentials is not None:
                try:
                    self._token = credentials.token()
                except AuthError as exc:
                    raise ApiError(401, "NoAccessToken", str(exc)) from None
        return self._token

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).body


def _json_or_none(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _error_of(response: httpx.Response, body: Any, what: str) -> ApiError:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "code" in error:
        details = error.get("details") or []
        return ApiError(
            response.status_code,
            str(error["code"]),
            str(error.get("message", "")),
            details if isinstance(details, list) else [details],
        )
    # Not the API's error shape: the host itself (a wrong or missing key is a bare 401) or a proxy.
    hint = {
        401: "the function key is missing or wrong: set MIGRATE_FUNCTION_KEY or the profile's function_key "
        "(a refused access token answers in the API's error shape instead)",
        404: "no such route: check MIGRATE_ENDPOINT (the API's base URL, without /api)",
    }.get(response.status_code, response.reason_phrase or "unexpected answer")
    return ApiError(response.status_code, f"HTTP{response.status_code}", f"{what}: {hint}")
