"""The status page in headless Chromium (Debian's, driven by Playwright) against the local stack: it
loads with the key as `?code=`, shows a replicating machine's health and its finished job's steps,
refreshes itself as the machine moves on, and keeps a screenshot as a test artifact."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devhost.oidc import READER_CLIENT
from tests.e2e.conftest import Appliance, Operator
from tests.e2e.test_replication import initial_copy

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps calling home, refused on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Where screenshots are kept (CI uploads the folder); the repository's git-ignored folder by default.
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", Path(__file__).resolve().parents[2] / "test-artifacts"))

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/apt-packages.txt)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_status_page_shows_health_and_a_finished_jobs_steps_and_refreshes_itself(
    browser: object, new_appliance: Callable[[], Appliance], operator: Operator
) -> None:
    appliance = new_appliance()
    replicator = appliance.machine(operator, disks={"os": 2 * MIB})
    machine_id = replicator.machine_id
    [enable_job] = operator.call("GET", "/jobs", params={"machineId": machine_id}).json()["jobs"]
    assert enable_job["status"] == "Succeeded" and enable_job["steps"]

    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    failed_calls: list[str] = []
    page.on("requestfailed", lambda request: failed_calls.append(request.url))
    page.on("console", lambda message: message.type == "error" and failed_calls.append(message.text))
    # A Reader's token, as the page keeps one it was handed (#access_token=...) or given in its form.
    token = operator.stack.operator_token(READER_CLIENT)
    page.add_init_script(f"sessionStorage.setItem('operatorToken', {token!r})")
    url = f"{operator.stack.functions_url}/api/status?code={operator.function_key}&refresh=2#machine={machine_id}"
    response = page.goto(url)
    assert response is not None and response.status == 200

    expect = sync_api.expect
    row = page.locator(f'tr.machine[data-machine="{machine_id}"]')
    expect(row).to_contain_text("InitialReplication", timeout=15_000)

    # The appliance copies the disk; the page, left alone, follows the machine to Replicating.
    operator.wait_applied(machine_id, initial_copy(appliance, replicator).cycle_id)
    expect(row).to_contain_text("Replicating", timeout=15_000)
    expect(row).to_contain_text("100%")
    expect(page.locator("#machine-state")).to_have_text("Replicating", timeout=15_000)
    expect(page.locator("#machine-health")).to_have_text("Healthy")

    # The finished EnableReplication job, with every step and its status.
    job = page.locator(f'.job[data-job="{enable_job["id"]}"]')
    expect(job).to_have_attribute("data-status", "Succeeded")
    expect(job).to_contain_text("EnableReplication")
    for step in enable_job["steps"]:
        expect(job.locator("tr.step", has_text=step["name"])).to_contain_text(step["status"])

    # The initial copy's bytes per disk, and its cycle as the last one.
    expect(page.locator('tr.disk-copy[data-disk="os"]')).to_contain_text("100%")
    expect(page.locator("#machine")).to_contain_text("initial #0")

    # The recovery point the initial copy left, listed by the page.
    [point] = operator.machine(machine_id)["recoveryPointList"]
    expect(page.locator("#machine")).to_contain_text(point["id"])
    expect(page.locator("#problem")).to_be_hidden()
    # Every value the page shows is one the API answered: no JavaScript null or undefined leaks through.
    expect(page.locator("main")).not_to_contain_text("null")
    expect(page.locator("main")).not_to_contain_text("undefined")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "status-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert failed_calls == []
    page.close()


def test_status_page_needs_the_key_like_the_api(browser: object, operator: Operator) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    base = f"{operator.stack.functions_url}/api/status"
    assert page.request.get(base).status == 401
    assert page.request.get(f"{base}?code=not-the-key").status == 401
    assert page.request.get(base, headers={"x-functions-key": operator.function_key}).status == 200
    page.close()
