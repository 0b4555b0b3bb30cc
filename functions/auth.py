"""Operator routes: who may call them. One decorator per route names the least app role it needs.

    @bp.route(route="machines/{machineId}/migrate", methods=["POST"])
    @bp.durable_client_input(client_name="client")
    @handle_errors
    @requires(Role.OPERATOR)
    async def migrate(req, client): ...

The function key (authLevel FUNCTION) still gets a request into the app; this decides what it may do:
a valid Entra ID token (`Authorization: Bearer`, shared/platform/operator_auth.py) whose `roles` include
the role, else 401 (no or invalid token, with `WWW-Authenticate: Bearer`) or 403 (naming the role). An
appliance's credential is not a token, so an appliance is refused here as any other caller without one.
While the handler runs, the caller is the acting principal (`shared.domain.principal.acting_as`): the
job it starts records it as `startedBy`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import azure.functions as func

from functions.http_errors import bearer_token, error_response
from shared.bootstrap import get_services
from shared.domain.errors import Unauthorized
from shared.domain.principal import Caller, Role, acting_as, require_role

F = TypeVar("F", bound=Callable[..., Any])

# What the Functions host's HTTP trigger metadata cannot hold: each operator function's least role. The
# OpenAPI document and the security baseline test read it.
REQUIRED_ROLES: dict[str, Role] = {}
OPERATOR_CHALLENGE = 'Bearer realm="operator", error="invalid_token"'


def authenticate_operator(req: func.HttpRequest, role: Role) -> Caller:
    """The caller of an operator route, holding `role` or higher (Unauthorized / Forbidden otherwise)."""
    caller = get_services().operator_auth.authenticate(bearer_token(req))
    require_role(caller, role)
    return caller


def _request_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> func.HttpRequest:
    req = kwargs.get("req", args[0] if args else None)
    if not isinstance(req, func.HttpRequest):
        raise TypeError("@requires decorates HTTP functions whose request parameter is `req`")
    return req


def _refused(error: Unauthorized) -> func.HttpResponse:
    response = error_response(error)
    response.headers["WWW-Authenticate"] = OPERATOR_CHALLENGE
    return response


def requires(role: Role, *, function: str | None = None) -> Callable[[F], F]:
    """Run the handler only for a caller holding `role` (or a role that includes it). `function` names the
    registered function when the decorated one is its operator branch (a route that also serves
    appliances)."""

    def decorate(fn: F) -> F:
        REQUIRED_ROLES[function or fn.__name__] = role
        if inspect.iscoroutinefunction(fn):
            async_fn = cast(Callable[..., Awaitable[func.HttpResponse]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> func.HttpResponse:
                try:
                    caller = authenticate_operator(_request_of(args, kwargs), role)
                except Unauthorized as error:
                    return _refused(error)
                with acting_as(caller.principal):
                    return await async_fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> func.HttpResponse:
            try:
                caller = authenticate_operator(_request_of(args, kwargs), role)
            except Unauthorized as error:
                return _refused(error)
            with acting_as(caller.principal):
                return cast(func.HttpResponse, fn(*args, **kwargs))

        return cast(F, wrapper)

    return decorate
