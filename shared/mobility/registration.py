"""The project's registration passphrase and the registration of Mobility agents with it.

The passphrase is what an installed agent proves it was installed by this project's operator (the
vendor's `/PassphraseFilePath`): generated here, shown once, stored only as a salted, peppered scrypt
hash, replaced by a rotation. An agent that presents it with its machine's identity gets its own
credential (`<agentId>.<secret>`, shown once, hashed at rest the way appliance credentials are), with
which it will call the API from then on; the passphrase is not needed again until the agent is
re-registered.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
import threading
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from pydantic import Field, model_validator

from shared.appliances.credentials import CredentialHasher, new_credential, parse_credential
from shared.domain.errors import FieldValueError, NotFound, Unauthorized
from shared.domain.wire import RequestModel, ResourceId, WireModel
from shared.health import AgentContact
from shared.platform.documents import MOBILITY, Query
from shared.platform.repository import AlreadyExists, Collection, Repositories, Versioned

log = logging.getLogger(__name__)

PASSPHRASE_ID: Literal["registration-passphrase"] = "registration-passphrase"
PASSPHRASE_LENGTH = 32
# Letters and digits only: the passphrase goes into a file and onto command lines without quoting.
_ALPHABET = string.ascii_letters + string.digits


class RegistrationPassphrase(WireModel):
    """The one stored passphrase document: its hash, never the passphrase."""

    id: Literal["registration-passphrase"] = PASSPHRASE_ID
    kind: Literal["passphrase"] = "passphrase"
    passphrase_hash: str
    set_at: datetime
    generation: int = Field(ge=1, description="1 for the first passphrase, +1 at each rotation")


class MobilityAgent(WireModel):
    id: ResourceId
    kind: Literal["agent"] = "agent"
    machine_id: ResourceId | None = None
    hostname: str | None = None
    bios_uuid: UUID | None = None
    credential_hash: str
    registered_at: datetime
    passphrase_generation: int
    version: str | None = Field(default=None, description="the agent's version, from its last heartbeat")
    health: str | None = Field(default=None, description="the agent's own health, from its last heartbeat")
    last_heartbeat_at: datetime | None = None


class PassphraseIssued(WireModel):
    passphrase: str = Field(description="shown once: put it in the file named by /PassphraseFilePath (-P)")
    set_at: datetime
    generation: int
    replaced_previous: bool = Field(
        description="true when this rotated an older passphrase, which no longer works"
    )


class PassphraseStatus(WireModel):
    exists: bool
    set_at: datetime | None = None
    generation: int | None = None


# What the validator requires, said in the schema too: exactly one of the two identities.
_ONE_IDENTITY = {
    "oneOf": [
        {
            "required": ["machineId"],
            "properties": {
                "machineId": {"type": "string"},
                "hostname": {"type": "null"},
                "biosUuid": {"type": "null"},
            },
        },
        {
            "required": ["hostname", "biosUuid"],
            "properties": {
                "hostname": {"type": "string"},
                "biosUuid": {"type": "string"},
                "machineId": {"type": "null"},
            },
        },
    ]
}


class RegisterAgentRequest(RequestModel, json_schema_extra=_ONE_IDENTITY):
    """The passphrase and who the agent is: the machine id an appliance reported, or hostname + BIOS UUID."""

    passphrase: str = Field(min_length=1, max_length=256)
    machine_id: ResourceId | None = None
    hostname: str | None = Field(
        default=None,
        max_length=255,
        # DNS labels, plus the underscore NetBIOS names allow.
        pattern=r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$",
        description="the server's host name, with biosUuid when it has no machine id yet",
    )
    bios_uuid: UUID | None = None

    @model_validator(mode="after")
    def _one_identity(self) -> RegisterAgentRequest:
        by_host = self.hostname is not None or self.bios_uuid is not None
        if self.machine_id is not None and by_host:
            raise FieldValueError("machineId", "send machineId, or hostname and biosUuid, not both")
        if self.machine_id is None and (self.hostname is None or self.bios_uuid is None):
            raise FieldValueError("machineId", "send machineId, or both hostname and biosUuid")
        return self


class AgentRegistered(WireModel):
    agent_id: str
    credential: str = Field(description="shown once: the agent's own credential, `<agentId>.<secret>`")
    machine_id: str | None = None
    hostname: str | None = None
    bios_uuid: UUID | None = None
    registered_at: datetime


def _passphrases(repos: Repositories) -> Collection[RegistrationPassphrase]:
    return Collection(repos.store, MOBILITY, RegistrationPassphrase, "registration passphrase")


def _agents(repos: Repositories) -> Collection[MobilityAgent]:
    return Collection(repos.store, MOBILITY, MobilityAgent, "Mobility agent")


def new_passphrase() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(PASSPHRASE_LENGTH))


def rotate_passphrase(repos: Repositories, hasher: CredentialHasher, *, now: datetime) -> PassphraseIssued:
    """A new passphrase replacing any previous one (which stops working at once); returned only here."""
    passphrase = new_passphrase()
    collection = _passphrases(repos)
    current = collection.get(PASSPHRASE_ID)
    generation = 1 if current is None else current.item.generation + 1
    stored = RegistrationPassphrase(
        passphrase_hash=hasher.hash(passphrase), set_at=now, generation=generation
    )
    if current is None:
        try:
            collection.add(stored)
        except AlreadyExists:
            # Another rotation created it first: this one replaces it, as a later rotation would.
            return rotate_passphrase(repos, hasher, now=now)
    else:
        # If-Match: two rotations at once cannot both believe their passphrase is the current one.
        collection.save(Versioned(stored, current.etag))
    return PassphraseIssued(
        passphrase=passphrase, set_at=now, generation=generation, replaced_previous=current is not None
    )


def passphrase_status(repos: Repositories) -> PassphraseStatus:
    current = _passphrases(repos).get(PASSPHRASE_ID)
    if current is None:
        return PassphraseStatus(exists=False)
    return PassphraseStatus(exists=True, set_at=current.item.set_at, generation=current.item.generation)


class FailureRate:
    """Failed registrations in a sliding window, so each refusal is logged with the current rate."""

    def __init__(self, window: timedelta = timedelta(minutes=5)) -> None:
        self.window = window
        self._times: deque[datetime] = deque()
        self._lock = threading.Lock()

    def record(self, now: datetime) -> int:
        with self._lock:
            self._times.append(now)
            while self._times and self._times[0] <= now - self.window:
                self._times.popleft()
            return len(self._times)


# Per worker process: enough to see a guessing run in the logs (each worker logs its own rate).
REGISTRATION_FAILURES = FailureRate()


def agent_id_for(request: RegisterAgentRequest) -> str:
    """One agent per machine identity: registering again replaces the previous credential."""
    if request.machine_id is not None:
        identity = f"machine:{request.machine_id}"
    else:
        identity = f"host:{(request.hostname or '').lower()}:{request.bios_uuid}"
    return f"agent-{hashlib.sha256(identity.encode()).hexdigest()[:32]}"


def register_agent(
    repos: Repositories,
    hasher: CredentialHasher,
    request: RegisterAgentRequest,
    *,
    now: datetime,
    failures: FailureRate = REGISTRATION_FAILURES,
) -> AgentRegistered:
    """The agent's credential, returned here and never again; a wrong passphrase changes nothing (401)."""
    current = _passphrases(repos).get(PASSPHRASE_ID)
    stored_hash = current.item.passphrase_hash if current is not None else None
    # Verified against a decoy when none is set, so the answer takes as long either way.
    if not hasher.verify(request.passphrase, stored_hash) or current is None:
        count = failures.record(now)
        log.warning(
            "Mobility agent registration refused (wrong or no passphrase) for %s; %d refusals in the last %d s",
            request.machine_id or request.hostname,
            count,
            int(failures.window.total_seconds()),
        )
        raise Unauthorized(
            "the registration passphrase is not valid: use the project's current passphrase (an operator "
            "sets a new one with POST /api/mobility/passphrase; a rotation invalidates the previous one)"
        )
    if request.machine_id is not None and repos.machines.get(request.machine_id) is None:
        raise NotFound(
            f"machine {request.machine_id} does not exist: register with the machine id an appliance "
            "reported, or with hostname and biosUuid",
            details=[{"id": request.machine_id}],
        )
    agent_id = agent_id_for(request)
    credential = new_credential(agent_id)
    agent = MobilityAgent(
        id=agent_id,
        machine_id=request.machine_id,
        hostname=request.hostname,
        bios_uuid=request.bios_uuid,
        credential_hash=hasher.hash(parse_credential(credential).secret),
        registered_at=now,
        passphrase_generation=current.item.generation,
    )
    _agents(repos).put(agent)
    log.info("Mobility agent %s registered for %s", agent_id, request.machine_id or request.hostname)
    return AgentRegistered(
        agent_id=agent_id,
        credential=credential,
        machine_id=agent.machine_id,
        hostname=agent.hostname,
        bios_uuid=agent.bios_uuid,
        registered_at=now,
    )


# --- the agent's heartbeat ---------------------------------------------------------------------------


class AgentHeartbeat(RequestModel):
    """POST /api/mobility/agents/heartbeat, with `Authorization: Bearer <agent credential>`."""

    version: str = Field(min_length=1, max_length=32, pattern=r"^[0-9]+(\.[0-9]+){1,3}$")
    health: Literal["Healthy", "Warning", "Critical"] = "Healthy"
    hostname: str | None = Field(default=None, max_length=255)
    os: str | None = Field(default=None, max_length=256, description="the server's OS as the agent sees it")


class AgentStatus(WireModel):
    """The Mobility agent of a machine, as the machine's mobility view shows it."""

    agent_id: str
    machine_id: str | None
    version: str | None
    health: str | None
    registered_at: datetime
    last_heartbeat_at: datetime | None


class MachineMobility(WireModel):
    """GET /api/machines/{id}/mobility: the machine's Mobility agent, if one registered."""

    agent: AgentStatus | None


def authenticate_agent(
    repos: Repositories, hasher: CredentialHasher, credential: str | None
) -> MobilityAgent:
    """The agent a credential belongs to (one point read, scrypt verify), or 401 without saying why."""
    if not credential:
        raise Unauthorized("agent credential missing: send 'Authorization: Bearer <credential>'")
    parsed = parse_credential(credential)
    found = _agents(repos).get(parsed.appliance_id) if parsed.appliance_id.startswith("agent-") else None
    if not hasher.verify(parsed.secret, found.item.credential_hash if found else None) or found is None:
        raise Unauthorized("the agent credential is not valid: register the agent again")
    return found.item


def record_heartbeat(
    repos: Repositories,
    hasher: CredentialHasher,
    credential: str | None,
    beat: AgentHeartbeat,
    *,
    now: datetime,
) -> AgentStatus:
    agent = authenticate_agent(repos, hasher, credential)

    def apply(stored: MobilityAgent) -> None:
        stored.version, stored.health, stored.last_heartbeat_at = beat.version, beat.health, now

    updated, _ = _agents(repos).update_with_retry(agent.id, apply)
    return _status(updated.item)


def _status(agent: MobilityAgent) -> AgentStatus:
    return AgentStatus(
        agent_id=agent.id,
        machine_id=agent.machine_id,
        version=agent.version,
        health=agent.health,
        registered_at=agent.registered_at,
        last_heartbeat_at=agent.last_heartbeat_at,
    )


def agent_contacts(repos: Repositories) -> dict[str, AgentContact]:
    """Machine id -> its agent's last contact, for the health monitor (one cross-partition query per check).
    An agent registered by hostname and BIOS UUID has no machine to flag and is left out."""
    agents = _agents(repos).query(Query(equals={"kind": "agent"}), partition_key=None)
    return {
        a.machine_id: AgentContact(agent_id=a.id, last_heard=a.last_heartbeat_at or a.registered_at)
        for a in agents
        if a.machine_id is not None
    }


def agent_of_machine(repos: Repositories, machine_id: str) -> MobilityAgent | None:
    """The agent registered with the machine's id (one point read, the machine itself not read), or None."""
    found = _agents(repos).get(agent_id_for(RegisterAgentRequest(passphrase="-", machine_id=machine_id)))
    return found.item if found is not None else None


# Cosmos accepts thousands of IN values; chunks keep each query's text small.
AGENT_LOOKUP_CHUNK = 500


def machines_with_agents(repos: Repositories, machine_ids: Iterable[str]) -> set[str]:
    """Which of these machines have a registered agent: one query per 500 machines (not a point read
    each, which made an appliance's command poll cost a read per machine with a pending cycle)."""
    wanted = sorted(set(machine_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), AGENT_LOOKUP_CHUNK):
        chunk = wanted[start : start + AGENT_LOOKUP_CHUNK]
        agents = _agents(repos).query(
            Query(equals={"kind": "agent"}, within={"machineId": chunk}), partition_key=None
        )
        found |= {a.machine_id for a in agents if a.machine_id is not None}
    return found


def machine_agent(repos: Repositories, machine_id: str) -> AgentStatus | None:
    """The agent registered with the machine's id (one point read), or None."""
    repos.machines.require(machine_id)
    agent = agent_of_machine(repos, machine_id)
    return _status(agent) if agent is not None else None
