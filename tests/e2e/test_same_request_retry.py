"""A request sent again without an Idempotency-Key (a client that timed out and resends) gets the job the
first one started, through the real host, Durable extension and Cosmos emulator: the same method, path,
JSON body (however its keys are ordered and spaced) and caller within OPERATOR_RETRY_WINDOW_SECONDS.
Another body, or another caller, is refused with a 409."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from tests.e2e.conftest import Appliance, Operator, wait_for

TARGET = {
    "resourceGroup": "rg-target",
    "virtualNetwork": "vnet-target",
    "subnet": "default",
    "vmSize": "Standard_D2s_v3",
}


def _send(
    operator: Operator, method: str, path: str, body: bytes | None = None, key: str | None = None
) -> httpx.Response:
    return httpx.request(
        method,
        f"{operator.stack.functions_url}/api{path}",
        headers={"x-functions-key": key or operator.function_key, "Content-Type": "application/json"},
        content=body,
        timeout=30,
    )


def _finished(operator: Operator, job_id: str) -> Callable[[], dict[str, object] | None]:
    def probe() -> dict[str, object] | None:
        job: dict[str, object] = operator.call("GET", f"/jobs/{job_id}").json()
        return job if job["status"] in {"Succeeded", "Failed", "Warning", "Cancelled"} else None

    return probe


def test_the_same_request_sent_again_gets_the_same_job_and_another_is_refused(
    operator: Operator, new_appliance: Callable[[], Appliance]
) -> None:
    appliance = new_appliance()
    machine_id = appliance.machine(operator, disks={"os": 1024 * 1024}, enable=False).machine_id
    path = f"/machines/{machine_id}/replication"

    enabled = _send(operator, "PUT", path, json.dumps(TARGET).encode())
    assert enabled.status_code == 202, enabled.text
    job_id = enabled.json()["jobId"]
    assert wait_for(_finished(operator, job_id), what=f"job {job_id}")["status"] == "Succeeded"
    assert operator.machine(machine_id)["state"] == "InitialReplication"

    # The same body, keys in another order and spaced otherwise: the same request, so the same job, where
    # the machine (no longer Discovered) would refuse a new enable with a 409.
    reordered = json.dumps(dict(reversed(list(TARGET.items()))), indent=2).encode()
    again = _send(operator, "PUT", path, reordered)
    assert again.status_code == 202, again.text
    assert again.json()["jobId"] == job_id and again.headers["Location"] == enabled.headers["Location"]

    # Another body is another request: refused, nothing changes.
    other = _send(operator, "PUT", path, json.dumps({**TARGET, "vmSize": "Standard_D4s_v3"}).encode())
    assert other.status_code == 409 and other.json()["error"]["code"] == "ForbiddenTransition", other.text
    assert operator.machine(machine_id)["target"]["vmSize"] == "Standard_D2s_v3"

    stopped = _send(operator, "DELETE", path)
    assert stopped.status_code == 202, stopped.text
    stop_job = stopped.json()["jobId"]
    resent = _send(operator, "DELETE", path)
    assert resent.status_code == 202 and resent.json()["jobId"] == stop_job, resent.text
    assert wait_for(_finished(operator, stop_job), what=f"job {stop_job}")["status"] == "Succeeded"
    # Still the same request after its job ended, within the window.
    assert _send(operator, "DELETE", path).json()["jobId"] == stop_job

    # Another caller (here the host's master key) sending the same request is not taken for the first.
    keys = json.loads((operator.stack.data_dir / "host" / "keys.json").read_text())
    by_other = _send(operator, "DELETE", path, key=str(keys["master"]))
    assert by_other.status_code == 409, by_other.text
    jobs = operator.call("GET", f"/jobs?machineId={machine_id}").json()["jobs"]
    assert sorted(j["id"] for j in jobs) == sorted([job_id, stop_job])
