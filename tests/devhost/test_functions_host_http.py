"""HTTP triggers through the local host, over real HTTP: routing, methods and function-key auth."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.host import RunningHost, running_host

APP = Path(__file__).resolve().parents[1] / "apps" / "host_app"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    root = tmp_path_factory.mktemp("http-host")
    with running_host(APP, root / "data", {"HOST_APP_OUTPUT": str(root / "out")}, ["--no-timers"]) as h:
        yield h


def test_anonymous_route_needs_no_key(host: RunningHost) -> None:
    response = httpx.get(f"{host.base_url}/api/ping")
    assert response.status_code == 200
    assert response.text == "pong"


@pytest.mark.parametrize("key", [None, "", "wrong-key"])
def test_function_route_without_a_valid_key_is_401(host: RunningHost, key: str | None) -> None:
    params = {} if key is None else {"code": key}
    response = httpx.get(f"{host.base_url}/api/items/7/notes", params=params)
    assert response.status_code == 401
    assert response.content == b""


def test_function_key_in_header_or_query_is_accepted(host: RunningHost) -> None:
    by_header = httpx.get(
        f"{host.base_url}/api/items/7/notes/a", headers={"x-functions-key": host.function_key}
    )
    by_query = httpx.post(
        f"{host.base_url}/api/items/7/notes", params={"code": host.function_key, "q": "1"}, content=b"hello"
    )
    assert by_header.status_code == 200
    assert by_header.json()["route"] == {"item_id": "7", "note": "a"}
    assert by_header.headers["x-test"] == "yes"
    assert by_query.status_code == 201
    assert by_query.json() == {
        "method": "POST",
        "route": {"item_id": "7"},
        "params": {"code": host.function_key, "q": "1"},
        "body": "hello",
    }


def test_route_constraint_and_literal_precedence(host: RunningHost) -> None:
    key = {"code": host.function_key}
    assert httpx.get(f"{host.base_url}/api/items/special/notes", params=key).text == "literal"
    # {item_id:int} does not match a non-integer segment
    assert httpx.get(f"{host.base_url}/api/items/abc/notes/x", params=key).status_code == 404


def test_method_not_registered_is_rejected(host: RunningHost) -> None:
    response = httpx.delete(f"{host.base_url}/api/items/7/notes", params={"code": host.function_key})
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "MethodNotAllowed"
    assert "GET" in response.headers["allow"] and "POST" in response.headers["allow"]


@pytest.mark.parametrize("path", ["/api/no/such/route", "/elsewhere", "/api/items/abc/notes/x"])
def test_an_unknown_route_is_a_json_404(host: RunningHost, path: str) -> None:
    response = httpx.get(f"{host.base_url}{path}", params={"code": host.function_key})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == {
        "code": "RouteNotFound",
        "message": f"{path} is not a route of this host",
        "details": [],
    }


def test_admin_level_needs_the_master_key(host: RunningHost) -> None:
    assert httpx.get(f"{host.base_url}/api/admin-only", params={"code": host.function_key}).status_code == 401
    assert httpx.get(f"{host.base_url}/api/admin-only", params={"code": host.master_key}).text == "admin"


def test_unhandled_exception_is_a_bare_500(host: RunningHost) -> None:
    response = httpx.get(f"{host.base_url}/api/boom", params={"code": host.function_key})
    assert response.status_code == 500
    assert b"secret detail" not in response.content


def test_admin_api_runs_a_timer_function(host: RunningHost, tmp_path: Path) -> None:
    assert (
        httpx.post(f"{host.base_url}/admin/functions/yearly", params={"code": host.function_key}).status_code
        == 401
    )
    response = httpx.post(f"{host.base_url}/admin/functions/yearly", params={"code": host.master_key})
    assert response.status_code == 202
    output = host.data_dir.parent / "out" / "timer.jsonl"
    assert output.read_text().strip() == '{"past_due": false}'


def test_an_idle_connection_is_kept_past_uvicorns_default(host: RunningHost) -> None:
    """A client that reuses its connection after a few seconds' pause (an appliance between two calls of
    a cycle) finds it open: with uvicorn's 5 s default, a POST could meet a closing socket and fail."""
    connection = http.client.HTTPConnection("127.0.0.1", int(host.base_url.rsplit(":", 1)[1]))
    try:
        connection.request("GET", "/api/ping")
        first = connection.getresponse()
        assert first.read() == b"pong"
        opened = connection.sock
        time.sleep(6)
        connection.request("GET", "/api/ping")
        assert connection.getresponse().read() == b"pong"
        assert connection.sock is opened  # not reconnected: the server kept it
    finally:
        connection.close()
