"""The status page: one static document whose policy admits only its own script and style and calls to
this API, and whose script reads only the JSON routes the OpenAPI document describes."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest

from functions import status_page
from functions.openapi import OPERATIONS, build_document
from tests.support.product_app import product_functions


def _page() -> func.HttpResponse:
    [fn] = [f for f in product_functions() if f.get_function_name() == "status_page"]
    req = func.HttpRequest("GET", "http://host/api/status", headers={}, params={"code": "k"}, body=b"")
    response: func.HttpResponse = fn.get_user_function()(req=req)
    return response


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_page_is_html_that_nothing_caches_or_frames() -> None:
    response = _page()
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_body().decode()
    assert html.startswith("<!doctype html>") and 'id="machines"' in html and 'id="machine"' in html
    headers = response.headers
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "connect-src 'self'" in policy and "unsafe-inline" not in policy


def test_the_policy_admits_exactly_the_inline_script_and_style() -> None:
    response = _page()
    html = response.get_body().decode()
    [script] = re.findall(r"<script>(.*?)</script>", html, re.S)
    [style] = re.findall(r"<style>(.*?)</style>", html, re.S)
    policy = response.headers["Content-Security-Policy"]
    assert f"script-src {_hash(script)};" in policy
    assert f"style-src {_hash(style)};" in policy
    # No style attribute in the markup: the policy would refuse it.
    assert " style=" not in html
    assert "innerHTML" not in script and "eval(" not in script


def test_the_script_reads_only_documented_get_routes() -> None:
    script = status_page._SCRIPT
    documented = {op.route.split("{")[0].rstrip("/") for op in OPERATIONS if op.method == "GET"}
    # The machines list's path is built by machinesPath(), with the page's continuation token.
    called = set(re.findall(r'api\("([a-z/]+)', script)) | set(re.findall(r'"([a-z/]+)\?pageSize=', script))
    assert called == {"machines", "machines/", "jobs"}
    assert {c.rstrip("/") for c in called} <= documented
    # The machine's sub-resources the page reads are documented routes too.
    paths = build_document()["paths"]
    for path in ("/api/machines/{machineId}", "/api/machines/{machineId}/events", "/api/jobs"):
        assert "get" in paths[path]
    assert "/events?limit=20" in script and "jobs?machineId=" in script
    listing = {p["name"] for p in paths["/api/machines"]["get"]["parameters"]}
    assert {"pageSize", "continuationToken"} <= listing and "&continuationToken=" in script


def test_the_openapi_document_describes_the_page_as_html() -> None:
    operation = build_document()["paths"]["/api/status"]["get"]
    assert set(operation["responses"]["200"]["content"]) == {"text/html"}
    assert operation["security"] == [{"functionKey": []}]


def test_a_refresh_out_of_range_is_a_400_that_says_so() -> None:
    [fn] = [f for f in product_functions() if f.get_function_name() == "status_page"]
    for bad in ("1", "3601", "soon"):
        req = func.HttpRequest("GET", "http://host/api/status", headers={}, params={"refresh": bad}, body=b"")
        response: func.HttpResponse = fn.get_user_function()(req=req)
        assert response.status_code == 400, bad
        assert b'"field":"refresh"' in response.get_body()
    params = build_document()["paths"]["/api/status"]["get"]["parameters"]
    assert [(p["name"], p["in"], p["required"]) for p in params] == [("refresh", "query", False)]


# --- paging, in a real browser against a scripted API -----------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
ORIGIN = "http://status.test"
MACHINE_COUNT = 250


def _machine(index: int) -> dict[str, object]:
    return {
        "id": f"vm-{index:03d}",
        "displayName": f"server{index:03d}",
        "state": "Replicating",
        "health": "Healthy",
        "progressPercent": 100.0,
        "rpoSeconds": 60,
        "lastSyncTime": "2026-12-03T08:00:00Z",
        "recoveryPoints": {"count": 1},
        "currentErrorCount": 0,
    }


class ScriptedMachines:
    """GET /api/machines over MACHINE_COUNT machines in id order, paged by an opaque token as the API does;
    records each page it was asked for (the token, or None for the first)."""

    def __init__(self) -> None:
        self.asked: list[str | None] = []

    def answer(self, url: str) -> dict[str, object]:
        query = parse_qs(urlsplit(url).query)
        token = query.get("continuationToken", [None])[0]
        self.asked.append(token)
        start = 0 if token is None else int(base64.urlsafe_b64decode(token).decode().removeprefix("after:"))
        size = int(query["pageSize"][0])
        end = min(start + size, MACHINE_COUNT)
        more = base64.urlsafe_b64encode(f"after:{end}".encode()).decode() if end < MACHINE_COUNT else None
        return {"machines": [_machine(i) for i in range(start, end)], "continuationToken": more}


@pytest.mark.slow
def test_every_machine_is_reached_page_by_page() -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/apt-packages.txt)")
    response = _page()
    html = response.get_body().decode()
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    machines = ScriptedMachines()

    def serve(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).path == "/api/status":
            route.fulfill(
                status=200, body=html, headers={**headers, "Content-Type": "text/html; charset=utf-8"}
            )
        elif urlsplit(url).path == "/api/machines":
            assert route.request.headers["x-functions-key"] == "k"
            assert route.request.headers["authorization"] == "Bearer t0ken"
            route.fulfill(status=200, json=machines.answer(url))
        else:
            route.fulfill(status=404, json={"error": {"code": "NotFound", "message": url, "details": []}})

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.route(f"{ORIGIN}/**", serve)
            errors: list[str] = []

            def console(message: Any) -> None:
                if message.type == "error":
                    errors.append(message.text)

            page.on("console", console)
            # The token in the fragment: taken into the tab's storage and out of the address bar.
            page.goto(f"{ORIGIN}/api/status?code=k&refresh=2#access_token=t0ken")
            expect = sync_api.expect
            rows = page.locator("tr.machine")
            heading = page.locator("#machines h2")
            seen: list[str] = []
            for first, last in ((1, 100), (101, 200), (201, 250)):
                expect(heading).to_contain_text(f"Machines {first}\u2013{last}")
                expect(rows).to_have_count(last - first + 1)
                seen += rows.evaluate_all("rows => rows.map(r => r.dataset.machine)")
                if last < MACHINE_COUNT:
                    expect(heading).to_contain_text("(more on the next page)")
                    page.click("#machines-next")
            assert seen == [f"vm-{i:03d}" for i in range(MACHINE_COUNT)]
            expect(page.locator("#machines-next")).to_be_disabled()

            # The page refreshes the page on show, with the token that reads it, not the first page.
            asked = len(machines.asked)
            page.wait_for_timeout(2500)
            assert len(machines.asked) > asked and machines.asked[-1] == machines.asked[asked - 1] is not None
            expect(heading).to_contain_text("Machines 201\u2013250")

            # Back a page, then to the first, where there is no going further back.
            page.click("#machines-previous")
            expect(heading).to_contain_text("Machines 101\u2013200")
            page.click("#machines-previous")
            expect(heading).to_contain_text("Machines 1\u2013100")
            expect(page.locator("#machines-previous")).to_be_disabled()
            assert machines.asked[-1] is None
            assert errors == []
        finally:
            browser.close()
