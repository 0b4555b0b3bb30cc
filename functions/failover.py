"""Operator routes for failover to Azure (function keys, authLevel FUNCTION).

GET   /api/machines/{id}/failover-settings   what the failover will create: VM name, resource group,
                                              size, disk type per disk, VNet/subnet, static IP
PATCH /api/machines/{id}/failover-settings   a JSON merge patch (RFC 7396) of the same document
"""

from __future__ import annotations

import asyncio
from typing import Any

import azure.functions as func

from functions.http_errors import handle_errors, json_object_body, json_response, path_id
from orchestrators.blueprints import durable_blueprint
from shared.bootstrap import get_services
from shared.domain.errors import ValidationFailed
from shared.failover import settings as failover_settings

bp = durable_blueprint()

MERGE_PATCH = "application/merge-patch+json"


def _merge_patch_body(req: func.HttpRequest) -> dict[str, Any]:
    media_type = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if media_type not in ("", MERGE_PATCH, "application/json"):
        # A JSON Patch (RFC 6902) is a list of operations; applied as a merge patch it would be refused
        # anyway, but this says why.
        raise ValidationFailed.single(
            "Content-Type",
            f"{media_type} is not accepted: send the changed members as a JSON merge patch "
            f'({MERGE_PATCH}), e.g. {{"vmSize": "Standard_D8s_v3"}}',
        )
    # A merge patch that is not an object would replace the whole settings document.
    return json_object_body(req, what="a JSON object holding the members to change (a JSON merge patch)")


@bp.route(route="machines/{machineId}/failover-settings", methods=["GET"])
@handle_errors
def get_failover_settings(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    return json_response(failover_settings.get_failover_settings(services.repos, path_id(req, "machineId")))


@bp.route(route="machines/{machineId}/failover-settings", methods=["PATCH"])
@handle_errors
async def update_failover_settings(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    machine_id = path_id(req, "machineId")
    patch = _merge_patch_body(req)
    # The Cosmos SDK is synchronous: keep it off the worker's event loop.
    updated = await asyncio.to_thread(
        failover_settings.update_failover_settings, services.repos, machine_id, patch, now=services.clock()
    )
    return json_response(updated)
