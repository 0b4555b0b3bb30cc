"""Domain errors. Each carries a stable machine-readable code; the HTTP layer maps the class to a status.

NotFound -> 404, ValidationFailed -> 400, Unauthorized -> 401, Forbidden -> 403,
Conflict (incl. ForbiddenTransition) -> 409, ConcurrencyConflict -> retried, else 409,
Unavailable -> 503 with Retry-After.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


class DomainError(Exception):
    code: str = "Error"

    def __init__(self, message: str, *, details: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[dict[str, Any]] = list(details)


class NotFound(DomainError):
    code = "NotFound"


class Unauthorized(DomainError):
    code = "Unauthorized"


class Forbidden(DomainError):
    code = "Forbidden"


class Conflict(DomainError):
    code = "Conflict"


class ConcurrencyConflict(Conflict):
    """The document changed since it was read (Cosmos 412). Callers re-read and retry, bounded."""

    code = "ConcurrencyConflict"


class Unavailable(DomainError):
    """A dependency could not answer, so the request was not carried out; the same request may succeed
    after `retry_after_seconds` (503 with Retry-After)."""

    code = "ServiceUnavailable"

    def __init__(
        self, message: str, *, retry_after_seconds: int, details: Sequence[dict[str, Any]] = ()
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with the input: which field (wire spelling, dotted path) and what to do."""

    field: str
    problem: str

    def to_wire(self) -> dict[str, Any]:
        return {"field": self.field, "problem": self.problem}


class ValidationFailed(DomainError):
    code = "ValidationFailed"

    def __init__(self, problems: Iterable[FieldProblem], *, message: str | None = None) -> None:
        self.problems = list(problems)
        if not self.problems:
            raise ValueError("ValidationFailed needs at least one problem")
        summary = "; ".join(f"{p.field}: {p.problem}" for p in self.problems)
        super().__init__(
            message or f"invalid request: {summary}", details=[p.to_wire() for p in self.problems]
        )

    @classmethod
    def single(cls, field: str, problem: str) -> ValidationFailed:
        return cls([FieldProblem(field, problem)])

    @classmethod
    def from_pydantic(cls, exc: ValidationError, *, prefix: str = "") -> ValidationFailed:
        problems = []
        for err in exc.errors(include_url=False):
            path = _field_of(err)
            field = ".".join(p for p in (prefix, path) if p) or "(body)"
            problems.append(FieldProblem(field, _explain(err)))
        return cls(problems)


class FieldValueError(ValueError):
    """Raised by a cross-field (model) validator to blame one field: pydantic alone would blame the body."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _field_of(err: Any) -> str:
    parts = [str(part) for part in err["loc"] if part != "__root__"]
    error = (err.get("ctx") or {}).get("error")
    if isinstance(error, FieldValueError):
        parts.append(error.field)
    return ".".join(parts)


def _explain(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "is not a known field: remove it or check its spelling (fields are camelCase)"
    if kind == "missing":
        return "is required"
    msg = str(err["msg"])
    # Our own validators raise ValueError with the full remedy; pydantic prefixes it.
    return msg.removeprefix("Value error, ")
