"""HTTP plumbing shared by the API blueprints: body parsing, JSON responses, the 202 of a long operation,
domain error -> status.

Errors always have the normative shape {"error": {"code", "message", "details"}}.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import azure.functions as func
from pydantic import BaseModel, ValidationError

from shared.domain.api import AcceptedJob, ErrorDetail, ErrorResponse
from shared.domain.errors import (
    ConcurrencyConflict,
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from shared.domain.job import Job
from shared.domain.wire import check_resource_id, json_integers

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])

# Most specific first: ConcurrencyConflict and ForbiddenTransition are Conflicts.
STATUS_BY_ERROR: tuple[tuple[type[DomainError], int], ...] = (
    (ValidationFailed, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (ConcurrencyConflict, 409),
    (Conflict, 409),
    (Unavailable, 503),
)
MAX_BODY_BYTES = 1024 * 1024
# No request body nests anywhere near this deep; far deeper and json.loads would exhaust the stack.
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")
_INTEGER = re.compile(r"-?[0-9]{1,9}")
# C0 controls, DEL and C1 controls: never part of a name, an id or any other value a request carries.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex}"


def accepted_job(job: Job, *, retry_after_seconds: int) -> func.HttpResponse:
    """202 for a long operation: the job, and `Location` to poll (GET /api/jobs/{id})."""
    status_url = f"/api/jobs/{job.id}"
    body = AcceptedJob(job_id=job.id, machine_id=job.machine_id, status_url=status_url, job=job)
    return json_response(body, 202, {"Location": status_url, "Retry-After": str(retry_after_seconds)})


def status_for(error: DomainError) -> int:
    for kind, status in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return 500


def json_response(
    body: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    payload = body.model_dump_json(by_alias=True)
    return func.HttpResponse(payload, status_code=status, mimetype="application/json", headers=headers)


def error_response(error: DomainError) -> func.HttpResponse:
    status = status_for(error)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="appliance"'
    if isinstance(error, ConcurrencyConflict):
        headers["Retry-After"] = "1"  # contention is transient: the same request will very likely succeed
    if isinstance(error, Unavailable):
        headers["Retry-After"] = str(error.retry_after_seconds)
    body = ErrorResponse(error=ErrorDetail(code=error.code, message=error.message, details=error.details))
    return json_response(body, status, headers)


def internal_error_response() -> func.HttpResponse:
    incident = uuid.uuid4().hex
    log.exception("unhandled error, incident %s", incident)
    body = ErrorResponse(
        error=ErrorDetail(
            code="InternalError",
            message=f"an unexpected error occurred; retry later, and quote incident {incident} if it persists",
            details=[{"incident": incident}],
        )
    )
    return json_response(body, 500)


def handle_errors(fn: F) -> F:
    """Map DomainError to its status and anything else to a 500 that leaks nothing (sync or async)."""
    if inspect.iscoroutinefunction(fn):
        async_fn = cast(Callable[..., Awaitable[func.HttpResponse]], fn)

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> func.HttpResponse:
            try:
                return await async_fn(*args, **kwargs)
            except DomainError as error:
                return error_response(error)
            except Exception:
                return internal_error_response()

        return cast(F, async_wrapper)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> func.HttpResponse:
        try:
            return cast(func.HttpResponse, fn(*args, **kwargs))
        except DomainError as error:
            return error_response(error)
        except Exception:
            return internal_error_response()

    return cast(F, wrapper)


def json_nesting_depth(raw: bytes) -> int:
    """How deeply the arrays and objects of the JSON text `raw` nest, counted without parsing it, so
    that an absurd depth is refused before a recursive parser sees it. Brackets inside strings do not
    count."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return 0  # the common case: too few brackets to matter
    depth = deepest = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub(b'""', raw)):
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def refuse_control_characters(value: Any, where: str = "") -> None:
    """ValidationFailed naming the first member (or key) of a parsed body whose text holds a control
    character: such a value is a forged or broken request, never a name or an id."""
    if isinstance(value, str):
        found = _CONTROL.search(value)
        if found is not None:
            raise ValidationFailed.single(
                where or "(body)",
                f"contains the control character U+{ord(found.group()):04X}; "
                "send printable text (control characters are refused in every value)",
            )
    elif isinstance(value, dict):
        for key, member in value.items():
            path = f"{where}.{key}" if where else str(key)
            refuse_control_characters(key, path)
            refuse_control_characters(member, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            refuse_control_characters(item, f"{where}[{index}]" if where else f"[{index}]")


def json_object_body(req: func.HttpRequest, *, what: str = "a JSON object") -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it (`what` names the expected kind).

    Refused before parsing: an oversized body, and one nested deeper than MAX_JSON_DEPTH; after: any
    value holding a control character."""
    raw = req.get_body()
    if len(raw) > MAX_BODY_BYTES:
        raise ValidationFailed.single("(body)", f"is larger than {MAX_BODY_BYTES} bytes")
    if json_nesting_depth(raw) > MAX_JSON_DEPTH:
        raise ValidationFailed.single(
            "(body)", f"nests arrays and objects more than {MAX_JSON_DEPTH} deep; no request needs that"
        )
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValidationFailed.single("(body)", f"is not valid JSON ({exc}); send a JSON object") from None
    if not isinstance(data, dict):
        raise ValidationFailed.single("(body)", f"must be {what}")
    refuse_control_characters(data)
    return data


def validate_strictly(model: type[M], data: Any) -> M:
    """`data` (parsed JSON) as `model`, with JSON's own types only: no true for 1, no "5" for 5 (pydantic's
    lax mode would coerce each, and store what the client did not send); 5.0 is the integer 5, as in
    JSON Schema."""
    data = json_integers(data)
    try:
        # Lax first for its clearer messages on values that are wrong whatever their type.
        parsed = model.model_validate(data)
        model.model_validate_json(json.dumps(data), strict=True)
        return parsed
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(exc) from None


def parse_body(req: func.HttpRequest, model: type[M]) -> M:
    return validate_strictly(model, json_object_body(req))


def query_model(req: func.HttpRequest, model: type[M]) -> M:
    """The query string as `model` (400 naming each bad parameter); `code` is the function key, not a filter."""
    try:
        return model.model_validate({k: v for k, v in req.params.items() if k != "code"})
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(exc) from None


def path_id(req: func.HttpRequest, name: str) -> str:
    value = req.route_params.get(name, "")
    try:
        return check_resource_id(value)
    except ValueError as exc:
        raise ValidationFailed.single(name, str(exc)) from None


def bearer_token(req: func.HttpRequest) -> str | None:
    header = req.headers.get("Authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def query_int(req: func.HttpRequest, name: str, default: int) -> int:
    raw = req.params.get(name)
    if raw is None:
        return default
    # int() alone would also take " 5", "5_0" and non-ASCII digits.
    if not _INTEGER.fullmatch(raw):
        raise ValidationFailed.single(name, f"must be an integer; got {raw!r}")
    return int(raw)
