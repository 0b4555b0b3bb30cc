"""What the conformance suite shares: the register of transcribed specification examples, a raw REST
client for what the SDKs do not cover, and the subset comparison of a response with an example's.

Each test names the published example it transcribes (`@example(operation, name)`): the request body
of the example (ids and names adapted to the local group, secrets replaced) and the response fields
that matter. An example either passes fully (`Outcome.PASSES`: accepted with the example's status,
and the final resource carries the example's fields) or is one the endpoint does not emulate
(`Outcome.REFUSED`: answered with a loud 4xx naming what is missing, never a quiet success). The
share of examples that pass fully is computed from this register and must equal the figure in
docs/local-arm.md (test_figure.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

import httpx

from devhost.arm import LOCAL_SUBSCRIPTION_ID
from tests.arm.conftest import TOKEN

SUB = LOCAL_SUBSCRIPTION_ID
COMPUTE_API = "2025-04-01"
DISK_API = "2025-01-02"
NETWORK_API = "2025-12-01"
RESOURCES_API = "2025-04-01"


class Outcome(Enum):
    PASSES = "passes"
    REFUSED = "refused"


@dataclass(frozen=True)
class SpecExample:
    provider: str  # ComputeRP, DiskRP, Network, Resources
    operation: str  # the swagger operationId
    name: str  # the example file, without .json
    outcome: Outcome


REGISTER: list[SpecExample] = []
F = TypeVar("F", bound=Callable[..., Any])


def example(provider: str, operation: str, name: str, outcome: Outcome = Outcome.PASSES) -> Callable[[F], F]:
    def register(test: F) -> F:
        REGISTER.append(SpecExample(provider, operation, name, outcome))
        return test

    return register


def assert_subset(actual: Any, expected: Any, path: str = "$") -> None:
    """Every field of `expected` is in `actual` with the same value (lists: same length, item by item)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} is missing (have {sorted(actual)})"
            assert_subset(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{path}: {actual!r} != {expected!r}"
        )
        for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
            assert_subset(got, want, f"{path}[{index}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


class Rest:
    """ARM over plain HTTP: what a client without an SDK sends, with ARM's async polling."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)

    def url(self, rg: str, provider_path: str) -> str:
        return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/{provider_path}"

    def request(self, method: str, path: str, api: str, body: Any = None) -> httpx.Response:
        return self.http.request(method, path, params={"api-version": api}, json=body)

    def wait(self, response: httpx.Response, timeout: float = 60) -> dict[str, Any]:
        """Follow Azure-AsyncOperation to the end; the operation's final status document."""
        monitor = response.headers.get("Azure-AsyncOperation")
        assert monitor, f"no Azure-AsyncOperation on {response.status_code} {response.text}"
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = self.http.get(monitor).json()
            if status["status"] in ("Succeeded", "Failed", "Canceled"):
                return status
            assert time.monotonic() < deadline, f"operation still {status['status']}"
            time.sleep(0.05)

    def put_and_wait(self, path: str, api: str, body: Any, statuses: tuple[int, ...]) -> dict[str, Any]:
        """PUT, check the initial status, wait for the operation, return the final GET."""
        response = self.request("PUT", path, api, body)
        assert response.status_code in statuses, response.text
        status = self.wait(response)
        assert status["status"] == "Succeeded", status
        final = self.request("GET", path, api)
        assert final.status_code == 200, final.text
        result: dict[str, Any] = final.json()
        return result

    def error(self, response: httpx.Response, status: int, code: str) -> dict[str, Any]:
        assert response.status_code == status, response.text
        error: dict[str, Any] = response.json()["error"]
        assert error["code"] == code, error
        return error
