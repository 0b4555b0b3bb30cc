"""Appliance-facing routes (and the operator's registration and policy routes).

Appliance calls carry a function key (authLevel FUNCTION; appliances get keys scoped to these functions
only) AND `Authorization: Bearer <appliance credential>`; an appliance acts only as itself.
"""

from __future__ import annotations

import azure.functions as func

from functions.http_errors import bearer_token, handle_errors, json_response, parse_body, path_id
from shared.domain.appliance import Appliance
from shared.domain.inventory import DiscoveryReport
from shared.domain.policy import ReplicationPolicyUpdate
from shared.services import appliances, commands
from shared.services.bootstrap import Services, get_services
from shared.services.contracts import CommandList, RegisterApplianceRequest

bp = func.Blueprint()


def _appliance(req: func.HttpRequest, services: Services) -> Appliance:
    """The authenticated appliance named in the path (401 no/invalid credential, 403 another appliance)."""
    appliance = appliances.authenticate_appliance(services.repos, services.hasher, bearer_token(req))
    appliances.authorize_appliance(appliance, path_id(req, "applianceId"))
    return appliance


@bp.route(route="appliances", methods=["POST"])
@handle_errors
def register_appliance(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    request = parse_body(req, RegisterApplianceRequest)
    registered = appliances.register_appliance(services.repos, services.hasher, request, now=services.clock())
    return json_response(
        registered,
        201,
        {"Location": f"/api/appliances/{registered.id}/policy", "Cache-Control": "no-store"},
    )


@bp.route(route="appliances/{applianceId}/machines", methods=["POST"])
@handle_errors
def report_machines(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    appliance = _appliance(req, services)
    report = parse_body(req, DiscoveryReport)
    return json_response(appliances.report_machines(services.repos, appliance, report, now=services.clock()))


@bp.route(route="appliances/{applianceId}/commands", methods=["GET"])
@handle_errors
def list_commands(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    appliance = _appliance(req, services)
    return json_response(CommandList(commands=commands.pending_commands(services.repos, appliance.id)))


@bp.route(route="appliances/{applianceId}/commands/{commandId}/ack", methods=["POST"])
@handle_errors
def acknowledge_command(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    appliance = _appliance(req, services)
    command_id = path_id(req, "commandId")
    return json_response(
        commands.acknowledge_command(services.repos, appliance.id, command_id, now=services.clock())
    )


@bp.route(route="appliances/{applianceId}/policy", methods=["GET"])
@handle_errors
def get_policy(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    if bearer_token(req) is not None:
        # The appliance: its policy comes with the document that authenticated it (no extra read).
        return json_response(_appliance(req, services).policy)
    return json_response(appliances.get_policy(services.repos, path_id(req, "applianceId")))


@bp.route(route="appliances/{applianceId}/policy", methods=["PUT"])
@handle_errors
def update_policy(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    appliance_id = path_id(req, "applianceId")
    update = parse_body(req, ReplicationPolicyUpdate)
    return json_response(appliances.update_policy(services.repos, appliance_id, update))
