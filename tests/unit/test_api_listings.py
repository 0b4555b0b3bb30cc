"""GET /api/jobs (filters, newest first, paging) and GET /api/appliances[/{id}] (views without the
credential hash, health from the heartbeat's age), through the registered functions."""

from __future__ import annotations

from datetime import timedelta

from shared.appliances import registry
from shared.bootstrap import Services
from tests.unit.test_api_http import (
    NOW,
    TARGET,
    FakeDurableExtension,
    call,
    durable,  # noqa: F401 -- fixture
    enable,
    machine_json,
    register,
    report,
    services,  # noqa: F401 -- fixture
)


def test_jobs_are_listed_newest_first_filtered_and_paged(
    services: Services,  # noqa: F811
    durable: FakeDurableExtension,  # noqa: F811
) -> None:
    appliance_id, credential = register()
    report(appliance_id, credential, *(machine_json(f"vm-{i}") for i in range(3)))
    job_ids = []
    for i in range(3):
        services.clock = lambda i=i: NOW + timedelta(minutes=i)  # type: ignore[misc]
        status, body, _ = enable(durable, f"vm-{i}", TARGET)
        assert status == 202, body
        job_ids.append(body["jobId"])

    status, body, _ = call("list_jobs", "GET", "/", params={"code": "k"})
    assert status == 200 and [j["id"] for j in body["jobs"]] == job_ids[::-1]
    assert body["continuationToken"] is None

    status, body, _ = call("list_jobs", "GET", "/", params={"machineId": "vm-1"})
    assert [j["id"] for j in body["jobs"]] == [job_ids[1]]
    assert body["jobs"][0]["kind"] == "EnableReplication" and body["jobs"][0]["steps"]

    status, page, _ = call("list_jobs", "GET", "/", params={"kind": "EnableReplication", "pageSize": "2"})
    assert [j["id"] for j in page["jobs"]] == job_ids[:0:-1] and page["continuationToken"]
    status, more, _ = call(
        "list_jobs",
        "GET",
        "/",
        params={"kind": "EnableReplication", "continuationToken": page["continuationToken"]},
    )
    assert [j["id"] for j in more["jobs"]] == [job_ids[0]]

    status, body, _ = call("list_jobs", "GET", "/", params={"status": "Succeeded"})
    assert status == 200 and body["jobs"] == []


def test_jobs_list_refuses_unknown_filters_and_values(services: Services) -> None:  # noqa: F811
    for params, field in (
        ({"status": "Done"}, "status"),
        ({"kind": "Teleport"}, "kind"),
        ({"pageSize": "0"}, "pageSize"),
        ({"machineId": "a/b"}, "machineId"),
        ({"machine": "vm-1"}, "machine"),
    ):
        status, body, _ = call("list_jobs", "GET", "/", params=params)
        assert status == 400, params
        assert body["error"]["code"] == "ValidationFailed"
        assert body["error"]["details"][0]["field"] == field


def test_appliances_list_and_view_without_the_credential(services: Services) -> None:  # noqa: F811
    first, credential = register("site-a")
    second, _ = register("site-b")
    report(first, credential, machine_json("vm-1"), machine_json("vm-2"))
    registry.record_heartbeat(services.repos, first, NOW - timedelta(minutes=1), agent_version="2.4.1")
    # A redelivered older heartbeat moves neither the time nor the version back.
    registry.record_heartbeat(services.repos, first, NOW - timedelta(minutes=5), agent_version="2.3.0")

    status, body, _ = call("list_appliances", "GET", "/", params={"code": "k"})
    assert status == 200
    views = {a["id"]: a for a in body["appliances"]}
    assert set(views) == {first, second}
    assert views[first]["health"] == "Healthy" and views[first]["agentVersion"] == "2.4.1"
    assert views[first]["machineCount"] is None and views[first]["heartbeatTimeoutSeconds"] == 900
    assert views[second]["health"] == "NeverHeard" and views[second]["lastHeartbeat"] is None
    assert all("credentialHash" not in a and "credential" not in a for a in body["appliances"])

    status, page, _ = call("list_appliances", "GET", "/", params={"pageSize": "1"})
    assert len(page["appliances"]) == 1 and page["continuationToken"]

    status, view, _ = call("get_appliance", "GET", "/", route={"applianceId": first})
    assert status == 200 and view["machineCount"] == 2 and view["kind"] == "hyperv"
    assert view["site"] == "host-01" and "credentialHash" not in view

    services.clock = lambda: NOW + timedelta(minutes=20)  # type: ignore[misc]
    status, view, _ = call("get_appliance", "GET", "/", route={"applianceId": first})
    assert view["health"] == "NotResponding"

    status, body, _ = call("get_appliance", "GET", "/", route={"applianceId": "appl-missing"})
    assert status == 404 and body["error"]["code"] == "NotFound"
    status, body, _ = call("list_appliances", "GET", "/", params={"pageSize": "101"})
    assert status == 400 and body["error"]["details"][0]["field"] == "pageSize"
