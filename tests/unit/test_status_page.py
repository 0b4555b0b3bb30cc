"""The status page: one static document whose policy admits only its own script and style and calls to
this API, and whose script reads only the JSON routes the OpenAPI document describes."""

from __future__ import annotations

import base64
import hashlib
import re

import azure.functions as func

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
    called = set(re.findall(r'api\("([a-z/]+)', script))
    assert called == {"machines", "machines/", "jobs"}
    assert {c.rstrip("/") for c in called} <= documented
    # The machine's sub-resources the page reads are documented routes too.
    paths = build_document()["paths"]
    for path in ("/api/machines/{machineId}", "/api/machines/{machineId}/events", "/api/jobs"):
        assert "get" in paths[path]
    assert "/events?limit=20" in script and "jobs?machineId=" in script


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
