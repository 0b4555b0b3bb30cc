"""Find and delete temporary resources that a flow left behind (the timer trigger calls this).

A temporary resource (tag `migrate-purpose=temporary`) is swept at once when its job is finished, and
when its job is unknown once it is older than a threshold: a running job still owns its helpers, and
its own compensation path deletes them. Which types are swept, and in which order (so that nothing is refused for being in use),
is the table of `shared.migration.resource_kinds`. A failure is recorded and the sweep goes on, without
what the failed resource may use (of its job): ARM would refuse those while it stands. What failed or was
skipped is tried again at the next sweep.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum

from azure.core.exceptions import HttpResponseError
from pydantic import BaseModel, ConfigDict, Field

from shared.migration.resource_kinds import (
    SWEPT_KINDS,
    ResourceKind,
    delete_resource,
    deletion_rank,
    held_back,
    kind_of_type,
)
from shared.migration.tags import TAG_MACHINE_ID, TAG_PURPOSE, Purpose, ResourceTags
from shared.platform.arm_clients import ArmClients
from shared.platform.arm_errors import ArmError, translate_arm_error


class JobState(StrEnum):
    ACTIVE = "active"
    FINISHED = "finished"
    UNKNOWN = "unknown"


class SweptResource(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    type: str
    machine_id: str
    job_id: str


class SweepFailure(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    error_code: str
    message: str


class SkippedResource(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    reason: str


class SweepReport(BaseModel):
    deleted: list[SweptResource] = Field(default_factory=list, description="in the order they were deleted")
    failed: list[SweepFailure] = Field(default_factory=list)
    skipped: list[SkippedResource] = Field(
        default_factory=list, description="too young, job active, untagged, held by a failed resource"
    )


def find_sweepable(
    clients: ArmClients,
    *,
    now: datetime,
    min_age: timedelta,
    job_state: Callable[[str], JobState],
) -> tuple[list[tuple[str, str, ResourceTags]], list[SkippedResource]]:
    """Temporary resources that may go, as (id, type, tags) in delete order, and those that stay, with why."""
    candidates: list[tuple[str, str, ResourceTags]] = []
    skipped: list[SkippedResource] = []
    states: dict[str, JobState] = {}
    ranks: dict[str, int] = {}
    try:
        listing = list(
            clients.resources.resources.list(
                filter=f"tagName eq '{TAG_PURPOSE}' and tagValue eq '{Purpose.TEMPORARY}'"
            )
        )
    except HttpResponseError as exc:
        raise translate_arm_error(exc, operation="list temporary resources") from exc
    for resource in listing:
        arm_id, resource_type = str(resource.id), str(resource.type).lower()
        tags = ResourceTags.from_arm(resource.tags)
        kind = kind_of_type(resource_type)
        if kind is None or kind not in SWEPT_KINDS:
            # Children (extensions) go with their parent; anything else is not ours to guess about.
            skipped.append(SkippedResource(id=arm_id, reason=f"type {resource.type} is not swept"))
            continue
        if tags is None:
            skipped.append(SkippedResource(id=arm_id, reason="migrate-* tags missing or unreadable"))
            continue
        if tags.job_id not in states:
            states[tags.job_id] = job_state(tags.job_id)
        state = states[tags.job_id]
        if state is JobState.ACTIVE:
            skipped.append(SkippedResource(id=arm_id, reason=f"job {tags.job_id} is still running"))
            continue
        # A finished job's leftovers are nobody's: they go at once. Without a job document to ask, the age
        # is the only sign that the flow which made them is over.
        if state is JobState.UNKNOWN and now - tags.created_at < min_age:
            skipped.append(SkippedResource(id=arm_id, reason=f"job unknown and younger than {min_age}"))
            continue
        candidates.append((arm_id, resource_type, tags))
        ranks[arm_id] = deletion_rank(kind)
    candidates.sort(key=lambda item: (ranks[item[0]], item[0]))
    return candidates, skipped


def temporary_resources_of(clients: ArmClients, machine_id: str) -> list[tuple[str, str]]:
    """(ARM id, job id) of the temporary resources tagged with a machine that the sweeper would delete:
    what a test migration (or a flow whose compensation failed) still has in Azure."""
    try:
        listing = list(
            clients.resources.resources.list(
                filter=f"tagName eq '{TAG_MACHINE_ID}' and tagValue eq '{machine_id}'"
            )
        )
    except HttpResponseError as exc:
        raise translate_arm_error(exc, operation=f"list the resources of machine {machine_id}") from exc
    found: list[tuple[str, str]] = []
    for resource in listing:
        kind = kind_of_type(str(resource.type).lower())
        tags = ResourceTags.from_arm(resource.tags)
        if kind in SWEPT_KINDS and tags is not None and tags.purpose is Purpose.TEMPORARY:
            found.append((str(resource.id), tags.job_id))
    return sorted(found)


def sweep_temporary_resources(
    clients: ArmClients,
    *,
    now: datetime,
    min_age: timedelta,
    job_state: Callable[[str], JobState],
) -> SweepReport:
    """Delete the leftovers `find_sweepable` returns, in dependency order; report deleted, failed, skipped."""
    candidates, skipped = find_sweepable(clients, now=now, min_age=min_age, job_state=job_state)
    report = SweepReport(skipped=skipped)
    # Per job, the kinds with a resource that failed (or was held back): what they may use waits too.
    standing: dict[str, set[ResourceKind]] = {}
    for arm_id, resource_type, tags in candidates:
        kind = kind_of_type(resource_type)
        assert kind is not None, "find_sweepable returns only kinds of the table"
        left = standing.setdefault(tags.job_id, set())
        holder = held_back(kind, left)
        if holder is not None:
            left.add(kind)
            report.skipped.append(
                SkippedResource(
                    id=arm_id,
                    reason=f"a {holder.value} of job {tags.job_id} that could not be deleted may use it",
                )
            )
            continue
        try:
            delete_resource(clients, arm_id)
        except ArmError as exc:
            left.add(kind)
            report.failed.append(
                SweepFailure(id=arm_id, error_code=exc.arm_code or exc.code, message=exc.message)
            )
            continue
        report.deleted.append(
            SweptResource(id=arm_id, type=resource_type, machine_id=tags.machine_id, job_id=tags.job_id)
        )
    return report
