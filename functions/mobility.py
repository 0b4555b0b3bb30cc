"""Mobility service routes: the installer catalog and its OS resolution, a machine's manual install
commands, the registration passphrase, and agent registration.

Operators call them with a host key. An agent registering itself should be given a function key
scoped to `register_mobility_agent` only; the passphrase in its body is what authenticates it.
"""

from __future__ import annotations

import io
from typing import TypeVar

import azure.functions as func
from pydantic import BaseModel, ValidationError

from functions.http_errors import handle_errors, json_response, parse_body, path_id
from orchestrators.blueprints import blueprint
from shared.bootstrap import get_services
from shared.domain.api import ErrorDetail, ErrorResponse
from shared.domain.errors import ValidationFailed
from shared.mobility import registration, service
from shared.mobility.install_command import InstallCommandQuery
from shared.mobility.installers import InstallerList, installers_container, list_installers, store_installer

bp = blueprint()

RESOLVE_SEGMENT = "resolve"
Q = TypeVar("Q", bound=BaseModel)

# Secrets in these answers: no cache may keep them.
NO_STORE = {"Cache-Control": "no-store"}


def _query(req: func.HttpRequest, model: type[Q]) -> Q:
    try:
        # `code` is the function key when sent in the query string: authentication, not a setting.
        return model.model_validate({k: v for k, v in req.params.items() if k != "code"})
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(exc) from None


def _content_length(req: func.HttpRequest) -> int | None:
    raw = req.headers.get("Content-Length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed.single("Content-Length", f"must be a number of bytes; got {raw!r}") from None


@bp.route(route="mobility/installers/{fileName}", methods=["PUT"])
@handle_errors
def upload_mobility_installer(req: func.HttpRequest) -> func.HttpResponse:
    file_name = req.route_params.get("fileName", "")
    if file_name == RESOLVE_SEGMENT:
        # `mobility/installers/resolve` is a GET route of its own; routing hands a PUT of that path to
        # this function, which must answer for the other route: a 405 with its Allow, as for any path.
        error = ErrorDetail(
            code="MethodNotAllowed",
            message=f"{req.method} is not an operation of /api/mobility/installers/{RESOLVE_SEGMENT}; "
            "it answers GET",
            details=[{"allowed": ["GET"]}],
        )
        return json_response(ErrorResponse(error=error), 405, {"Allow": "GET"})
    services = get_services()
    installer = store_installer(
        installers_container(services.replicas),
        file_name,
        io.BytesIO(req.get_body()),
        content_length=_content_length(req),
        now=services.clock(),
    )
    return json_response(installer, 201, {"Location": "/api/mobility/installers"})


@bp.route(route="mobility/installers", methods=["GET"])
@handle_errors
def list_mobility_installers(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    return json_response(InstallerList(installers=list_installers(installers_container(services.replicas))))


@bp.route(route=f"mobility/installers/{RESOLVE_SEGMENT}", methods=["GET"])
@handle_errors
def resolve_mobility_installer(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    query = _query(req, service.ResolveQuery)
    return json_response(service.resolve_installer(installers_container(services.replicas), query.os))


@bp.route(route="machines/{machineId}/mobility/install-command", methods=["GET"])
@handle_errors
def get_mobility_install_command(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    machine_id = path_id(req, "machineId")
    query = _query(req, InstallCommandQuery)
    return json_response(
        service.install_command_for(
            services.repos, installers_container(services.replicas), machine_id, query
        )
    )


@bp.route(route="mobility/passphrase", methods=["POST"])
@handle_errors
def rotate_mobility_passphrase(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    issued = registration.rotate_passphrase(services.repos, services.hasher, now=services.clock())
    return json_response(issued, 201, NO_STORE)


@bp.route(route="mobility/passphrase", methods=["GET"])
@handle_errors
def get_mobility_passphrase(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(registration.passphrase_status(get_services().repos))


@bp.route(route="mobility/agents/register", methods=["POST"])
@handle_errors
def register_mobility_agent(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    request = parse_body(req, registration.RegisterAgentRequest)
    registered = registration.register_agent(services.repos, services.hasher, request, now=services.clock())
    return json_response(registered, 201, NO_STORE)
