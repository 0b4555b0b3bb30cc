"""Who may do what, through the local stack: tokens from the stack's own issuer (the client-credentials
grant, as with Entra ID), validated by the app against the issuer's published keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from devhost.oidc import ADMINISTRATOR_CLIENT, OPERATOR_CLIENT, READER_CLIENT, read_clients, register_client
from tests.e2e.conftest import Appliance, Operator, wait_for


def _error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def test_a_reader_reads_but_may_not_act(operator: Operator, new_appliance: Callable[[], Appliance]) -> None:
    appliance = new_appliance()
    machine = appliance.machine(operator, disks={"sda": 1024 * 1024}, enable=False)
    assert operator.call("GET", "/machines", as_client=READER_CLIENT).status_code == 200
    assert operator.call("GET", f"/machines/{machine.machine_id}", as_client=READER_CLIENT).status_code == 200
    target = {
        "resourceGroup": "rg",
        "virtualNetwork": "vnet",
        "subnet": "default",
        "vmSize": "Standard_D2s_v3",
    }
    refused = operator.call(
        "PUT", f"/machines/{machine.machine_id}/replication", json=target, as_client=READER_CLIENT
    )
    assert refused.status_code == 403, refused.text
    assert _error(refused)["code"] == "Forbidden"
    assert "Migration.Operator" in _error(refused)["message"]
    # Nothing changed.
    assert operator.machine(machine.machine_id)["state"] == "Discovered"
    # An Operator may not change an appliance's policy: that is an Administrator's.
    policy = operator.call(
        "PUT",
        f"/appliances/{appliance.api.appliance_id}/policy",
        json={"uploadThreadsPerVm": 8},
        as_client=OPERATOR_CLIENT,
    )
    assert policy.status_code == 403 and "Migration.Administrator" in _error(policy)["message"]


def test_an_operator_acts_and_the_job_records_who_started_it_and_its_events(
    operator: Operator, new_appliance: Callable[[], Appliance]
) -> None:
    appliance = new_appliance()
    machine = appliance.machine(operator, disks={"sda": 1024 * 1024}, enable=False)
    target = {
        "resourceGroup": "rg",
        "virtualNetwork": "vnet",
        "subnet": "default",
        "vmSize": "Standard_D2s_v3",
    }
    started = operator.call(
        "PUT", f"/machines/{machine.machine_id}/replication", json=target, as_client=OPERATOR_CLIENT
    )
    assert started.status_code == 202, started.text
    job_id = started.json()["jobId"]
    me = read_clients(operator.stack.oidc_dir)[OPERATOR_CLIENT]
    job = wait_for(
        lambda: (
            j
            if (j := operator.call("GET", f"/jobs/{job_id}", as_client=READER_CLIENT).json())["status"]
            not in ("NotStarted", "InProgress")
            else None
        ),
        what=f"job {job_id}",
    )
    assert job["status"] == "Succeeded", job
    assert job["startedBy"] == {"objectId": me.object_id, "name": me.name, "kind": "app"}
    events = {
        e["type"]: e for e in operator.events(machine.machine_id) if e["details"].get("jobId") == job_id
    }
    assert {"Job started", "Job finished"} <= set(events), events
    assert events["Job started"]["actor"]["objectId"] == me.object_id
    assert events["Job finished"]["details"]["status"] == "Succeeded"


def test_a_function_key_alone_or_an_appliance_credential_is_refused_on_operator_routes(
    operator: Operator, new_appliance: Callable[[], Appliance]
) -> None:
    appliance = new_appliance()
    api = f"{operator.stack.functions_url}/api"
    key_only = httpx.get(f"{api}/machines", headers={"x-functions-key": operator.function_key}, timeout=30)
    assert key_only.status_code == 401, key_only.text
    assert key_only.headers["WWW-Authenticate"].startswith("Bearer")
    assert _error(key_only)["code"] == "Unauthorized"
    as_appliance = {
        "x-functions-key": operator.function_key,
        "Authorization": f"Bearer {appliance.credential}",
    }
    for method, path in (
        ("GET", "/machines"),
        ("PUT", f"/appliances/{appliance.api.appliance_id}/policy"),
        ("POST", "/appliances"),
    ):
        refused = httpx.request(method, f"{api}{path}", headers=as_appliance, json={}, timeout=30)
        assert refused.status_code == 401, (method, path, refused.text)
    # Its own policy it still reads with its credential.
    assert (
        httpx.get(
            f"{api}/appliances/{appliance.api.appliance_id}/policy", headers=as_appliance, timeout=30
        ).status_code
        == 200
    )


def test_an_operator_token_is_refused_on_appliance_and_agent_routes(
    operator: Operator, new_appliance: Callable[[], Appliance]
) -> None:
    appliance = new_appliance()
    api = f"{operator.stack.functions_url}/api"
    headers = operator.headers(ADMINISTRATOR_CLIENT)
    commands = httpx.get(
        f"{api}/appliances/{appliance.api.appliance_id}/commands", headers=headers, timeout=30
    )
    assert commands.status_code == 401, commands.text
    report = httpx.post(
        f"{api}/appliances/{appliance.api.appliance_id}/machines",
        headers=headers,
        json={"machines": []},
        timeout=30,
    )
    assert report.status_code == 401, report.text
    agent = httpx.get(f"{api}/mobility/agents/commands", headers=headers, timeout=30)
    assert agent.status_code == 401, agent.text


def test_a_token_without_a_role_or_for_another_audience_is_refused(operator: Operator) -> None:
    nobody = register_client(operator.stack.oidc_dir, "no-role", [])
    token = httpx.post(
        f"{operator.stack.operator_authority.removesuffix('/v2.0')}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": nobody.client_id,
            "client_secret": nobody.client_secret,
            "scope": "api://migration-control-plane/.default",
        },
        timeout=30,
    ).json()["access_token"]
    api = f"{operator.stack.functions_url}/api"
    headers = {"x-functions-key": operator.function_key, "Authorization": f"Bearer {token}"}
    forbidden = httpx.get(f"{api}/machines", headers=headers, timeout=30)
    assert forbidden.status_code == 403 and "Migration.Reader" in _error(forbidden)["message"]
    other = httpx.post(
        f"{operator.stack.operator_authority.removesuffix('/v2.0')}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": nobody.client_id,
            "client_secret": nobody.client_secret,
            "scope": "api://another-api/.default",
        },
        timeout=30,
    ).json()["access_token"]
    wrong_audience = httpx.get(
        f"{api}/machines", headers={**headers, "Authorization": f"Bearer {other}"}, timeout=30
    )
    assert wrong_audience.status_code == 401 and "audience" in _error(wrong_audience)["message"]
