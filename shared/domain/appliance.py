"""Appliances: the on-premises component that discovers machines and uploads replication data."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from shared.domain.policy import ReplicationPolicy
from shared.domain.wire import ResourceId, WireModel


class ApplianceKind(StrEnum):
    VMWARE = "vmware"
    HYPERV = "hyperv"
    PHYSICAL = "physical"


class Appliance(WireModel):
    id: ResourceId
    name: str
    kind: ApplianceKind
    site: str
    # Format "scrypt$n$r$p$salt$hash" (see shared.appliances.credentials); never the credential itself.
    credential_hash: str = Field(repr=False)
    registered_at: datetime
    last_heartbeat: datetime | None = None
    # What the newest heartbeat said it runs (None until a heartbeat carries it).
    agent_version: str | None = None
    # The policy lives on the appliance document: the appliance's GET /policy is one point read.
    policy: ReplicationPolicy = Field(default_factory=ReplicationPolicy)
