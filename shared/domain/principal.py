"""Who calls the operator API: the Entra app roles, the principal a validated token names, and the one rule
that says whether a caller's roles allow an operation.

The roles are ranked, each including those below it (an Administrator may do everything an Operator may,
an Operator everything a Reader may), so a route names the least role it needs and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum

from shared.domain.errors import Forbidden
from shared.domain.wire import WireModel


class Role(StrEnum):
    """The app roles of the API's Entra app registration (the `roles` claim of an operator's token)."""

    READER = "Migration.Reader"
    OPERATOR = "Migration.Operator"
    ADMINISTRATOR = "Migration.Administrator"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANK = {Role.READER: 1, Role.OPERATOR: 2, Role.ADMINISTRATOR: 3}


class PrincipalKind(StrEnum):
    USER = "user"  # a person, signed in (delegated token)
    APP = "app"  # a service principal, client credentials (a script, the CLI in a pipeline)


class Principal(WireModel):
    """The caller recorded on what it did (a job's `startedBy`, a machine event's `actor`)."""

    object_id: str  # Entra's `oid`: stable for the principal, unlike its name
    name: str
    kind: PrincipalKind


class Caller(WireModel):
    """An authenticated operator: the principal and the app roles its token carries."""

    principal: Principal
    roles: frozenset[Role]

    @property
    def highest(self) -> Role | None:
        return max(self.roles, key=lambda role: role.rank, default=None)


def known_roles(values: Iterable[object]) -> frozenset[Role]:
    """The API's roles among a token's `roles` claim; roles of other applications are ignored."""
    names = {role.value: role for role in Role}
    return frozenset(names[value] for value in values if isinstance(value, str) and value in names)


def require_role(caller: Caller, needed: Role) -> None:
    """Forbidden (403) naming the role `needed` unless one of the caller's roles includes it."""
    if any(role.allows(needed) for role in caller.roles):
        return
    held = ", ".join(sorted(role.value for role in caller.roles)) or "no role of this API"
    raise Forbidden(
        f"this operation needs the app role {needed.value} (or a higher one); the caller holds {held}. "
        "Ask an administrator of the API's Entra app registration to assign the role.",
        details=[{"requiredRole": needed.value, "heldRoles": sorted(role.value for role in caller.roles)}],
    )


# The principal acting in this request: set by the operator routes' check, read where a job or an event
# records who did it. A context variable follows the request into `asyncio.to_thread`, and is empty in
# activities and timers, where the control plane acts on its own (their records name the job's starter).
_acting: ContextVar[Principal | None] = ContextVar("acting_principal", default=None)


@contextmanager
def acting_as(principal: Principal) -> Iterator[None]:
    token = _acting.set(principal)
    try:
        yield
    finally:
        _acting.reset(token)


def current_actor() -> Principal | None:
    return _acting.get()
