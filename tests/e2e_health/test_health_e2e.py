"""Replication health end to end on the local stack: appliance events in through Event Grid,
the per-machine orchestration and its activities on the local Durable extension, Cosmos and Azurite
underneath, and the operator's HTTP API to observe. Nothing is faked: faults are injected the way they
happen (a CycleFailed from the appliance, a cycle that never finishes uploading, a lease that blocks a
blob's deletion, a corrupted data blob, a missing sequence number).
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.storage.blob import BlobLeaseClient

from shared.domain.cycle import CycleKind
from shared.health.catalog import CATALOG, CatalogEntry, EventType, Origin
from shared.replication.delta_manifest import cycle_prefix, data_blob_name
from tests.e2e_health.client import (
    Appliance,
    Stack,
    apply_delta,
    events,
    eventually,
    machine,
    new_id,
    replicating_machine,
    wait_cycle_in_progress,
    wait_event,
    wait_machine,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The errors an appliance reports in a CycleFailed event. Those it reports in a command's answer (a
# reverse cycle, a push installation, a planned failover) are never a replication cycle's and have their
# own tests (tests/e2e_failback, tests/e2e_mobility).
APPLIANCE_ERRORS = [
    e
    for e in CATALOG.entries
    if e.origin is Origin.APPLIANCE
    and e.event_type in (EventType.REPLICATION_CYCLE_FAILED, EventType.REPLICATION_CYCLE_FAILED_FOR_DISK)
]


@pytest.fixture(scope="module")
def appliance(stack: Stack) -> Appliance:
    return stack.register_appliance("gw-health")


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["code"] for e in body["currentErrors"]]


def _report(entry: CatalogEntry) -> tuple[str | None, str]:
    """What an appliance sends for this error: the guide's own message (by format), or the code."""
    if entry.formats:
        return None, entry.formats[0].examples[0]
    return "E-VDDK-0042", "NFC session dropped while reading the disk"  # unknown: lands on the generic entry


@pytest.mark.parametrize("entry", APPLIANCE_ERRORS, ids=lambda e: f"{e.code}-{e.name}")
def test_every_appliance_error_becomes_its_catalog_event(
    stack: Stack, appliance: Appliance, entry: CatalogEntry
) -> None:
    replicated = replicating_machine(stack, appliance, prefix="cat")
    code, message = _report(entry)
    disk = "disk0" if entry.scope.value == "disk" else None
    appliance.fail_cycle(replicated.id, message, code=code, disk_id=disk, cycle_id=replicated.cycle_id(2))

    expected_code = code if entry.generic else entry.code
    event = wait_event(stack, replicated.id, expected_code, lambda e: e["errorCode"] == expected_code)
    assert event["type"] == entry.event_type.value
    assert event["message"] == message  # verbatim, as the appliance reported it
    assert event["severity"] == entry.severity.value
    assert event["diskId"] == disk
    assert event["cycleId"] == replicated.cycle_id(2)
    assert event["reportedCode"] == code
    assert event["references"] == list(entry.references)
    assert event["details"]["name"] == entry.name
    assert len(event["causes"]) == len(entry.causes) and len(event["recommendations"]) == len(
        entry.recommendations
    )
    text = " ".join(event["causes"] + event["recommendations"])
    assert "{" not in text  # every placeholder rendered (a missing value shows as <name>)
    if any("{applianceName}" in line for line in entry.recommendations):
        assert "gw-health" in text and "<applianceName>" not in text
    if any("{vmName}" in line for line in (*entry.causes, *entry.recommendations)):
        assert replicated.id[:15] in text

    body = wait_machine(stack, replicated.id, "health raised", lambda m: m["health"] != "Healthy")
    assert body["health"] == entry.severity.value
    (error,) = body["currentErrors"]
    assert error["code"] == expected_code and error["message"] == message
    assert error["causes"] == event["causes"] and error["recommendations"] == event["recommendations"]
    assert body["eventsUrl"] == f"/api/machines/{replicated.id}/events"
    change = wait_event(
        stack, replicated.id, "health changed", lambda e: e["type"] == "Replication health changed"
    )
    assert change["details"] == {
        "previousHealth": "Healthy",
        "health": entry.severity.value,
        "reason": f"{entry.name} reported",
    }


def test_consecutive_failures_escalate_and_an_applied_cycle_heals(stack: Stack, appliance: Appliance) -> None:
    replicated = replicating_machine(stack, appliance, prefix="esc")
    hung = "An internal error occurred. [Generate snapshot hung]"
    healths = []
    # The appliance reports cycle 1's failure twice: one failed cycle, counted once.
    for n, attempt in enumerate((1, 1, 2, 3)):
        appliance.fail_cycle(replicated.id, hung, cycle_id=f"{replicated.id}-try{attempt}")
        eventually(
            lambda k=n + 1: (
                len([e for e in events(stack, replicated.id) if e["type"] == "Replication cycle failed"]) == k
            ),
            what=f"failure report {n + 1}",
        )
        healths.append(machine(stack, replicated.id)["health"])
    # A retryable Warning error: Warning at once, Critical after three failed cycles in a row.
    assert healths == ["Warning", "Warning", "Warning", "Critical"]

    apply_delta(stack, appliance, replicated)
    body = wait_machine(stack, replicated.id, "healed", lambda m: m["health"] == "Healthy")
    assert body["currentErrors"] == []
    # The events follow the machine update that decided them.
    wait_event(
        stack,
        replicated.id,
        "healed",
        lambda e: e["type"] == "Replication health changed" and e["details"]["health"] == "Healthy",
    )
    history = events(stack, replicated.id)
    changes = [
        (e["details"]["previousHealth"], e["details"]["health"])
        for e in reversed(history)
        if e["type"] == "Replication health changed"
    ]
    assert changes == [("Healthy", "Warning"), ("Warning", "Critical"), ("Critical", "Healthy")]
    assert sum(e["type"] == "Replication cycle failed" for e in history) == 4
    assert any(
        e["type"] == "Replication cycle completed" and e["cycleId"] == replicated.cycle_id(2) for e in history
    )


def _resync_commands(appliance: Appliance, machine_id: str) -> list[dict[str, Any]]:
    return [c for c in appliance.commands() if c["machineId"] == machine_id and c["kind"] == "ResyncDisk"]


def _resync(stack: Stack, appliance: Appliance, replicated: Any) -> None:
    """What the appliance does with ResyncDisk commands: acknowledge them and upload a full copy."""
    commands = eventually(
        lambda: (lambda found: found if len(found) == len(replicated.disks) else None)(
            _resync_commands(appliance, replicated.id)
        ),
        what="a ResyncDisk command per disk",
    )
    assert sorted(c["diskId"] for c in commands) == sorted(replicated.disks)
    for command in commands:
        appliance.acknowledge(command["id"])
    apply_delta(stack, appliance, replicated, kind=CycleKind.RESYNC)


CBT_RESET = "Encountered an error while trying to fetch changed blocks"


def test_cbt_reset_with_automatic_repair_resyncs_by_itself_and_keeps_recovery_points(
    stack: Stack, appliance: Appliance
) -> None:
    replicated = replicating_machine(
        stack, appliance, disks=("disk0", "disk1"), auto_repair=True, prefix="auto"
    )
    apply_delta(stack, appliance, replicated)
    appliance.fail_cycle(replicated.id, CBT_RESET, cycle_id=replicated.cycle_id(3))

    body = wait_machine(stack, replicated.id, "Resyncing", lambda m: m["state"] == "Resyncing")
    assert body["health"] == "Warning"  # being repaired without anyone's help
    assert _codes(body) == ["MCP-1001"]
    started = wait_event(
        stack, replicated.id, "repair started", lambda e: e["type"] == "Replication repair started"
    )
    assert started["details"]["automatic"] == "true"
    failure = next(e for e in events(stack, replicated.id) if e["errorCode"] == "MCP-1001")
    assert failure["severity"] == "Warning"

    replicated.next_sequence = 3
    _resync(stack, appliance, replicated)
    body = wait_machine(
        stack, replicated.id, "repaired", lambda m: m["state"] == "Replicating" and m["health"] == "Healthy"
    )
    assert body["currentErrors"] == []
    assert [p["cycleId"] for p in body["recoveryPointList"]] == [replicated.cycle_id(s) for s in (1, 2, 3)]
    wait_event(
        stack, replicated.id, "repair completed", lambda e: e["type"] == "Replication repair completed"
    )


def test_cbt_reset_without_automatic_repair_waits_for_the_operator(
    stack: Stack, appliance: Appliance
) -> None:
    replicated = replicating_machine(stack, appliance, prefix="manual")
    appliance.fail_cycle(replicated.id, CBT_RESET, cycle_id=replicated.cycle_id(2))
    body = wait_machine(stack, replicated.id, "Critical", lambda m: m["health"] == "Critical")
    assert body["state"] == "Replicating" and _codes(body) == ["MCP-1001"]
    assert _resync_commands(appliance, replicated.id) == []

    # A delta applied meanwhile does not clear it: only a resync does.
    apply_delta(stack, appliance, replicated)
    body = machine(stack, replicated.id)
    assert body["health"] == "Critical" and _codes(body) == ["MCP-1001"]

    response = stack.post(f"/api/machines/{replicated.id}/repair")
    assert response.status_code == 202, response.text
    job_id = response.json()["jobId"]
    assert response.headers["Location"] == f"/api/jobs/{job_id}"
    assert response.json()["job"]["kind"] == "RepairReplication"
    again = stack.post(f"/api/machines/{replicated.id}/repair")
    assert again.status_code == 202 and again.json()["jobId"] == job_id  # a retry is the same repair
    assert machine(stack, replicated.id)["state"] == "Resyncing"

    _resync(stack, appliance, replicated)
    body = wait_machine(stack, replicated.id, "repaired", lambda m: m["health"] == "Healthy")
    assert body["state"] == "Replicating" and body["currentErrors"] == []
    assert body["recoveryPoints"]["count"] == 3
    # The job is finished last, once the repair's events are written.
    job = eventually(
        lambda: (lambda j: j if j["status"] != "InProgress" else None)(
            stack.get(f"/api/jobs/{job_id}").json()
        ),
        what="the repair job to finish",
    )
    assert job["status"] == "Succeeded" and [s["status"] for s in job["steps"]] == ["Succeeded", "Succeeded"]

    nothing = stack.post(f"/api/machines/{replicated.id}/repair")
    assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "Conflict"


def test_repair_is_refused_where_the_state_forbids_it(stack: Stack, appliance: Appliance) -> None:
    discovered = new_id("disc")
    appliance.report_machine(discovered)
    refused = stack.post(f"/api/machines/{discovered}/repair")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "ForbiddenTransition"
    assert stack.post("/api/machines/no-such-machine/repair").status_code == 404


def test_an_upload_that_does_not_finish_in_time_raises_1011_for_the_late_disk(
    stack: Stack, appliance: Appliance
) -> None:
    replicated = replicating_machine(stack, appliance, disks=("disk0", "disk1"), prefix="slow")
    cycle = replicated.cycle_id(2)
    appliance.start_cycle(replicated.id, cycle, 2, CycleKind.DELTA, {"disk0": 65536, "disk1": 65536})
    in_progress = wait_cycle_in_progress(stack, replicated.id, cycle)
    assert sorted(in_progress["diskIds"]) == ["disk0", "disk1"] and in_progress["deadline"]
    # disk0 finishes (its manifest is in the cache); disk1 never does within the timeout.
    disk0_manifest = appliance.upload(
        replicated.id, cycle, 2, CycleKind.DELTA, {"disk0": replicated.disks["disk0"]}, announce=False
    )[0]

    timed_out = wait_event(stack, replicated.id, "1011", lambda e: e["errorCode"] == "1011")
    assert timed_out["type"] == "Replication cycle failed for disk"
    assert timed_out["diskId"] == "disk1" and timed_out["cycleId"] == cycle
    assert "disk1" in timed_out["message"] and replicated.id in timed_out["message"]
    assert [
        e["diskId"] for e in events(stack, replicated.id) if e["type"] == "Replication cycle failed for disk"
    ] == ["disk1"]
    body = machine(stack, replicated.id)
    assert body["health"] == "Warning" and [(e["code"], e["diskId"]) for e in body["currentErrors"]] == [
        ("1011", "disk1")
    ]

    # The upload completes late: the cycle applies and heals the disk's error.
    disk1_manifest = appliance.upload(
        replicated.id, cycle, 2, CycleKind.DELTA, {"disk1": replicated.disks["disk1"]}, announce=False
    )[0]
    appliance.announce(
        replicated.id, cycle, 2, CycleKind.DELTA, {"disk0": disk0_manifest, "disk1": disk1_manifest}
    )
    body = wait_machine(stack, replicated.id, "healed", lambda m: m["health"] == "Healthy")
    assert body["currentErrors"] == [] and body["recoveryPoints"]["count"] == 2


def test_a_disposal_that_blocks_the_next_cycle_raises_181008_until_it_clears(
    stack: Stack, appliance: Appliance
) -> None:
    replicated = replicating_machine(stack, appliance, prefix="dispose")
    cache = stack.cache()
    # Cycle 2's data blob is leased (as a stuck reader would hold it): deleting it fails.
    cycle2 = replicated.cycle_id(2)
    manifests = appliance.upload(replicated.id, cycle2, 2, CycleKind.DELTA, replicated.disks, announce=False)
    lease = BlobLeaseClient(cache.get_blob_client(data_blob_name(replicated.id, cycle2, "disk0", 0)))
    lease.acquire(lease_duration=-1)
    appliance.announce(replicated.id, cycle2, 2, CycleKind.DELTA, {"disk0": manifests[0]})
    wait_machine(stack, replicated.id, "cycle 2 applied", lambda m: m["recoveryPoints"]["count"] == 2)

    replicated.next_sequence = 3
    appliance.upload(replicated.id, replicated.cycle_id(3), 3, CycleKind.DELTA, replicated.disks)
    timed_out = wait_event(stack, replicated.id, "181008", lambda e: e["errorCode"] == "181008")
    assert timed_out["type"] == "Replication cycle failed"
    assert timed_out["cycleId"] == replicated.cycle_id(3)
    assert "WaitingForArtefactsDisposalPreCycle" in timed_out["message"]
    assert timed_out["details"]["previousCycle"] == cycle2
    body = machine(stack, replicated.id)
    assert body["recoveryPoints"]["count"] == 2  # cycle 3 waits
    assert body["health"] in ("Warning", "Critical") and "181008" in _codes(body)

    lease.break_lease(lease_break_period=0)
    body = wait_machine(
        stack,
        replicated.id,
        "cycle 3 applied and healed",
        lambda m: m["recoveryPoints"]["count"] == 3 and m["health"] == "Healthy",
    )
    assert body["currentErrors"] == []
    assert not list(cache.list_blobs(name_starts_with=cycle_prefix(replicated.id, cycle2)))


def test_a_corrupt_upload_is_rejected_with_its_catalog_entry(stack: Stack, appliance: Appliance) -> None:
    replicated = replicating_machine(stack, appliance, prefix="corrupt")
    cycle = replicated.cycle_id(2)
    manifests = appliance.upload(replicated.id, cycle, 2, CycleKind.DELTA, replicated.disks, announce=False)
    blob = stack.cache().get_blob_client(data_blob_name(replicated.id, cycle, "disk0", 0))
    data = bytearray(blob.download_blob().readall())
    data[100] ^= 0xFF  # one flipped bit in transit, same length
    blob.upload_blob(bytes(data), overwrite=True)
    appliance.announce(replicated.id, cycle, 2, CycleKind.DELTA, {"disk0": manifests[0]})

    rejected = wait_event(stack, replicated.id, "rejection", lambda e: e["errorCode"] == "MCP-2005")
    assert rejected["type"] == "Replication cycle failed for disk" and rejected["diskId"] == "disk0"
    assert rejected["reportedCode"] == "ExtentChecksumMismatch"
    assert rejected["details"]["name"] == "ExtentChecksumMismatch" and rejected["details"]["blob"]
    assert len(rejected["causes"]) == len(CATALOG["MCP-2005"].causes)
    body = machine(stack, replicated.id)
    assert body["health"] == "Warning" and body["recoveryPoints"]["count"] == 1  # replica unchanged
    commands = eventually(lambda: _resync_commands(appliance, replicated.id), what="the ResyncDisk command")
    assert [c["diskId"] for c in commands] == ["disk0"]


def test_a_sequence_gap_raises_cycle_sequence_gap_and_resyncs(stack: Stack) -> None:
    gap_appliance = stack.register_appliance("gw-gap")
    policy = stack.http.put(
        f"/api/appliances/{gap_appliance.id}/policy",
        headers=stack.operator_headers,
        json={"maxCycleGapBeforeResync": 1},
    )
    assert policy.status_code == 200, policy.text
    replicated = replicating_machine(stack, gap_appliance, prefix="gap")
    replicated.next_sequence = 3  # sequence 2 is lost
    appliance_upload = gap_appliance.upload
    appliance_upload(replicated.id, replicated.cycle_id(3), 3, CycleKind.DELTA, replicated.disks)

    gap = wait_event(stack, replicated.id, "gap", lambda e: e["errorCode"] == "MCP-3001")
    assert gap["details"]["expectedSequence"] == "2" and gap["severity"] == "Warning"
    body = wait_machine(stack, replicated.id, "Resyncing", lambda m: m["state"] == "Resyncing")
    assert _codes(body) == ["MCP-3001"]
    replicated.next_sequence = 4
    _resync(stack, gap_appliance, replicated)
    wait_machine(
        stack, replicated.id, "healed", lambda m: m["health"] == "Healthy" and m["state"] == "Replicating"
    )


def test_events_are_paged_newest_first(stack: Stack, appliance: Appliance) -> None:
    replicated = replicating_machine(stack, appliance, prefix="pages")
    # One failure at a time: this test is about paging, so the events must be exactly these. (Failures
    # of one machine arriving together: test_failures_arriving_together_each_count.)
    for attempt in range(3):
        appliance.fail_cycle(
            replicated.id,
            "An internal error occurred. [Another task is already in progress.]",
            cycle_id=f"{replicated.id}-p{attempt}",
        )
        eventually(
            lambda n=attempt + 1: (
                sum(e["type"] == "Replication cycle failed" for e in events(stack, replicated.id)) == n
                or None
            ),
            what=f"failure {attempt + 1}",
        )
    sequence = apply_delta(stack, appliance, replicated)
    # The healing cycle's "health changed" is its last event.
    wait_event(stack, replicated.id, "healed", lambda e: e["id"] == f"{replicated.cycle_id(sequence)}-health")
    # 2 cycles completed + 3 failures + 3 health changes (Warning, Critical, Healthy again).
    eventually(lambda: len(events(stack, replicated.id)) >= 8 or None, what="all eight events", timeout=20)
    everything = events(stack, replicated.id)
    pages: list[list[dict[str, Any]]] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"continuationToken": token} if token else {})}
        body = stack.get(f"/api/machines/{replicated.id}/events", **params).json()
        pages.append(body["events"])
        token = body.get("continuationToken")
        if not token:
            break
    assert all(len(page) <= 2 for page in pages) and len(pages) >= 3
    paged = [e for page in pages for e in page]
    # Every event exactly once, newest first (events with the same time may come in either order).
    assert sorted(e["id"] for e in paged) == sorted(e["id"] for e in everything)
    assert len({e["id"] for e in paged}) == len(paged)
    times = [e["time"] for e in paged]
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize("attempt", range(3))
def test_failures_arriving_together_each_count(stack: Stack, appliance: Appliance, attempt: int) -> None:
    """Three failed cycles of one machine reported at once (Event Grid delivers them in parallel): each
    counts once, so the machine ends Critical and the log has both health changes, in order."""
    replicated = replicating_machine(stack, appliance, prefix=f"together{attempt}")
    for n in range(3):
        appliance.fail_cycle(
            replicated.id,
            "An internal error occurred. [Another task is already in progress.]",
            cycle_id=f"{replicated.id}-t{n}",
        )
    wait_machine(stack, replicated.id, "Critical", lambda m: m["health"] == "Critical")

    def recorded() -> list[dict[str, Any]] | None:
        found = events(stack, replicated.id)
        failed = sum(e["type"] == "Replication cycle failed" for e in found)
        changed = sum(e["type"] == "Replication health changed" for e in found)
        return found if (failed, changed) == (3, 2) else None

    everything = eventually(recorded, what="three failures and two health changes")
    changes = [
        (e["details"]["previousHealth"], e["details"]["health"])
        for e in reversed(everything)  # newest first -> oldest first
        if e["type"] == "Replication health changed"
    ]
    assert changes == [("Healthy", "Warning"), ("Warning", "Critical")]


def test_the_upload_deadline_survives_a_host_crash(stack: Stack, appliance: Appliance) -> None:
    """The race is a durable timer: a host killed while the cycle uploads still raises 1011 after restart."""
    replicated = replicating_machine(stack, appliance, prefix="crash")
    cycle = replicated.cycle_id(2)
    appliance.start_cycle(replicated.id, cycle, 2, CycleKind.DELTA, {"disk0": 65536})
    wait_cycle_in_progress(stack, replicated.id, cycle)
    stack.local.kill_functions_host()
    stack.local.start_functions_host()

    timed_out = wait_event(stack, replicated.id, "1011 after the restart", lambda e: e["errorCode"] == "1011")
    assert (timed_out["diskId"], timed_out["cycleId"]) == ("disk0", cycle)
    assert machine(stack, replicated.id)["health"] == "Warning"
