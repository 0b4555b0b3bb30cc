"""Recovery points in use: pinned against retention while a job copies them.

A test migration or migration copies its recovery point's snapshots to their own blobs; retention must
not delete a snapshot while it is being copied. The pin is a small marker blob per job (in the
`hydration` container of the replica account), written before the copies start and removed when they
are done. Retention, in the replication flow, passes `pinned_snapshots()` to its deletes and skips those;
`release_recovery_point` then deletes any pinned snapshot that retention has dropped in the meantime.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Final

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.domain.machine import Machine

# The container the hydration toolkit and its reports share; existing pins stay where they were.
PINS_CONTAINER: Final = "hydration"
PINS_PREFIX: Final = "pins"


def pins_container_of(replicas: ContainerClient) -> ContainerClient:
    """The container of the replica account that holds the pins."""
    service = replicas._get_blob_service_client()  # the same account and credential
    return service.get_container_client(PINS_CONTAINER)


def _pin_name(machine_id: str, job_id: str) -> str:
    return f"{PINS_PREFIX}/{machine_id}/{job_id}.json"


def pin_recovery_point(
    pins: ContainerClient, machine_id: str, job_id: str, point_id: str, disk_snapshots: Mapping[str, str]
) -> None:
    """Idempotent (overwrites the same content)."""
    with contextlib.suppress(ResourceExistsError):
        pins.create_container()
    body = json.dumps(
        {
            "machineId": machine_id,
            "jobId": job_id,
            "recoveryPoint": point_id,
            "diskSnapshots": dict(disk_snapshots),
        }
    )
    pins.upload_blob(_pin_name(machine_id, job_id), body.encode(), overwrite=True)


def pinned_snapshots(pins: ContainerClient, machine_id: str) -> frozenset[str]:
    """Snapshots of this machine's replicas that a running job is copying: retention must keep them."""
    found: set[str] = set()
    try:
        for blob in pins.list_blobs(name_starts_with=f"{PINS_PREFIX}/{machine_id}/"):
            pin = json.loads(pins.download_blob(blob.name).readall())
            found.update(str(s) for s in pin.get("diskSnapshots", {}).values())
    except ResourceNotFoundError:  # no pin was ever written (the container does not exist yet)
        return frozenset()
    return frozenset(found)


def release_recovery_point(
    pins: ContainerClient,
    replicas: ContainerClient,
    machine: Machine,
    job_id: str,
    replica_blob: Callable[[str, str], str],
) -> list[str]:
    """Remove the job's pin; delete its snapshots that are no longer recovery points (retention dropped
    them while pinned) and that no other job pins. Returns the snapshots deleted. Idempotent."""
    name = _pin_name(machine.id, job_id)
    try:
        pin = json.loads(pins.download_blob(name).readall())
    except ResourceNotFoundError:
        return []
    with contextlib.suppress(ResourceNotFoundError):
        pins.delete_blob(name)
    kept = {s for p in machine.replication.recovery_points for s in p.disk_snapshots.values()}
    still_pinned = pinned_snapshots(pins, machine.id)
    deleted = []
    for disk_id, snapshot in dict(pin.get("diskSnapshots", {})).items():
        if snapshot in kept or snapshot in still_pinned:
            continue
        with contextlib.suppress(ResourceNotFoundError):
            replicas.get_blob_client(replica_blob(machine.id, disk_id), snapshot=snapshot).delete_blob()
        deleted.append(snapshot)
    return deleted
