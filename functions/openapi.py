"""GET /api/openapi.json: an OpenAPI 3.1 document generated from the pydantic request/response models.

The schemas come from the models (no hand-written copies); this module only lists the operations, and
tests/unit/test_api_openapi.py checks that list against the routes actually registered on the app.
The appliance events are `webhooks`: the appliance publishes them to the Event Grid topic, which
delivers them to the Event Grid trigger (no route of this API); the delta manifest an appliance uploads
is a component too.

Auth level FUNCTION, not anonymous: every endpoint but liveness is authenticated, everyone who
needs the document (operators, client generators) holds a key anyway, and the map of an API is useful
to an attacker. It contains no data, so any function key may read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import azure.functions as func
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from orchestrators.blueprints import blueprint
from shared.appliances.events import ENVELOPES
from shared.domain.api import (
    AcceptedJob,
    ApplianceRegistered,
    CommandList,
    DiscoveryResult,
    ErrorResponse,
    EventList,
    ForbiddenTransitionDetail,
    MachineDetail,
    MachineList,
    MachineListQuery,
    RecoveryPointList,
    RegisterApplianceRequest,
    UploadCredentials,
    UploadCredentialsRequest,
)
from shared.domain.command import ApplianceCommand, CommandAnswer
from shared.domain.failover import FailoverSettings
from shared.domain.inventory import DiscoveryReport
from shared.domain.job import Job
from shared.domain.policy import ReplicationPolicy, ReplicationPolicyUpdate
from shared.domain.target import TargetSettings
from shared.failback.service import ReprotectRequest
from shared.failover.service import ChangeRecoveryPointRequest, FailoverRequest
from shared.migration.service import MigrationRequest, TestMigrationRequest
from shared.replication.delta_manifest import DeltaManifest

bp = blueprint()

Auth = Literal["operator", "appliance", "operatorOrAppliance"]


@dataclass(frozen=True)
class Operation:
    method: str
    route: str  # as registered, without the "api/" prefix
    function_name: str
    summary: str
    auth: Auth
    response: type[BaseModel]
    status: int = 200
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = field(default=(400, 401, 404))
    # A merge patch (RFC 7396) is described by the schema of the document it patches.
    request_media_type: str = "application/json"
    request_required: bool = True


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "appliances",
        "register_appliance",
        "Register an appliance; returns its credential once",
        "operator",
        ApplianceRegistered,
        201,
        RegisterApplianceRequest,
        errors=(400, 401),
    ),
    Operation(
        "POST",
        "appliances/{applianceId}/machines",
        "report_machines",
        "Report discovered machines",
        "appliance",
        DiscoveryResult,
        request=DiscoveryReport,
        errors=(400, 401, 403),
    ),
    Operation(
        "GET",
        "appliances/{applianceId}/commands",
        "list_commands",
        "Pending commands, oldest first",
        "appliance",
        CommandList,
        errors=(400, 401, 403),
    ),
    Operation(
        "POST",
        "appliances/{applianceId}/commands/{commandId}/ack",
        "acknowledge_command",
        "Acknowledge a command (idempotent), with its answer when it produced one",
        "appliance",
        ApplianceCommand,
        request=CommandAnswer,
        request_required=False,
        errors=(400, 401, 403, 404),
    ),
    Operation(
        "POST",
        "appliances/{applianceId}/upload-credentials",
        "issue_upload_credentials",
        "SAS URLs to create and write the named blobs of one of the appliance's own machines' cycles "
        "(nothing else; about 1 hour: ask again before expiresOn)",
        "appliance",
        UploadCredentials,
        request=UploadCredentialsRequest,
        errors=(400, 401, 403, 404),
    ),
    Operation(
        "GET",
        "appliances/{applianceId}/policy",
        "get_policy",
        "Replication policy (bandwidth limits, upload threads, retention)",
        "operatorOrAppliance",
        ReplicationPolicy,
        errors=(400, 401, 403, 404),
    ),
    Operation(
        "PUT",
        "appliances/{applianceId}/policy",
        "update_policy",
        "Replace the replication policy",
        "operator",
        ReplicationPolicy,
        request=ReplicationPolicyUpdate,
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "GET",
        "machines",
        "list_machines",
        "Machines with state, health, progress, last sync and RPO",
        "operator",
        MachineList,
        query=MachineListQuery,
        errors=(400, 401),
    ),
    Operation(
        "GET",
        "machines/{machineId}",
        "get_machine",
        "One machine, with recovery points and errors",
        "operator",
        MachineDetail,
    ),
    Operation(
        "GET",
        "machines/{machineId}/recovery-points",
        "list_recovery_points",
        "Recovery points, newest first; each has a snapshot of every disk of the machine",
        "operator",
        RecoveryPointList,
    ),
    Operation(
        "GET",
        "machines/{machineId}/events",
        "list_machine_events",
        "Events, newest first (?limit=1..200, ?continuationToken= for older ones); errors carry causes "
        "and recommendations",
        "operator",
        EventList,
    ),
    Operation(
        "POST",
        "machines/{machineId}/repair",
        "repair_replication",
        "Repair replication: resync every disk, keeping the recovery points (long operation)",
        "operator",
        AcceptedJob,
        202,
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "PUT",
        "machines/{machineId}/replication",
        "enable_replication",
        "Enable replication with target settings (long operation)",
        "operator",
        AcceptedJob,
        202,
        TargetSettings,
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "DELETE",
        "machines/{machineId}/replication",
        "stop_replication",
        "Stop replication, or complete a migration (long operation)",
        "operator",
        AcceptedJob,
        202,
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "POST",
        "machines/{machineId}/test-migrate",
        "test_migrate",
        "Test migration into the isolated test VNet from a recovery point (long operation)",
        "operator",
        AcceptedJob,
        202,
        TestMigrationRequest,
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "POST",
        "machines/{machineId}/test-migrate/cleanup",
        "test_migrate_cleanup",
        "Clean up the test migration: delete every test resource (long operation)",
        "operator",
        AcceptedJob,
        202,
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "POST",
        "machines/{machineId}/migrate",
        "migrate",
        "Migrate (cutover): optional source shutdown, final cycle, hydrate, create the VM (long operation)",
        "operator",
        AcceptedJob,
        202,
        MigrationRequest,
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "GET",
        "machines/{machineId}/failover-settings",
        "get_failover_settings",
        "What a failover creates: VM name, resource group, size, disk type per disk, VNet, subnet, "
        "static IP (the target settings until changed)",
        "operator",
        FailoverSettings,
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "PATCH",
        "machines/{machineId}/failover-settings",
        "update_failover_settings",
        "Change the failover settings with a JSON merge patch (only the members to change; null "
        "removes an optional one); 409 while a failover runs or after it",
        "operator",
        FailoverSettings,
        request=FailoverSettings,
        errors=(400, 401, 404, 409),
        request_media_type="application/merge-patch+json",
    ),
    Operation(
        "POST",
        "machines/{machineId}/failover",
        "fail_over",
        "Fail over to Azure from a recovery point ('latest' applies every received cycle first, "
        "'latestProcessed' uses the newest point now, or the newest app/crash-consistent one, or an id), "
        "optionally shutting the source down first; builds the VM from the failover settings and takes "
        "the failback baseline (long operation, cannot be cancelled)",
        "operator",
        AcceptedJob,
        202,
        FailoverRequest,
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "POST",
        "machines/{machineId}/change-recovery-point",
        "change_recovery_point",
        "Rebuild the failed-over VM's disks from another recovery point (copy, import, hydrate), swap them "
        "into the stopped VM, start it, delete the old disks, take a new failback baseline (long operation; "
        "409 once the failover is committed)",
        "operator",
        AcceptedJob,
        202,
        ChangeRecoveryPointRequest,
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "POST",
        "machines/{machineId}/commit",
        "commit_failover",
        "Commit the failover: keep the VM's recovery point, delete every other one (blob snapshots and "
        "catalog entries); the recovery point can no longer change (long operation)",
        "operator",
        AcceptedJob,
        202,
        errors=(401, 404, 409),
    ),
    Operation(
        "POST",
        "machines/{machineId}/reprotect",
        "reprotect",
        "Protect a committed failover back to on-premises: check the appliance and the on-premises disks, "
        "power the on-premises VM off, copy only the blocks that differ from the Azure disks' snapshots, "
        "then run reverse cycles every reverseCycleMinutes (long operation)",
        "operator",
        AcceptedJob,
        202,
        ReprotectRequest,
        errors=(400, 401, 404, 409),
    ),
    Operation("GET", "jobs/{jobId}", "get_job", "A long operation's status and steps", "operator", Job),
    Operation(
        "GET", "openapi.json", "openapi_document", "This document", "operator", BaseModel, errors=(401,)
    ),
)

_ERROR_TEXT = {
    400: "Invalid request: details name each field and what to fix",
    401: "Missing or invalid credential",
    403: "Not this caller's resource",
    404: "Not found",
    409: "Conflicts with the machine's state; a ForbiddenTransition's one detail is a ForbiddenTransitionDetail "
    "(the allowed next states and allowedOperations)",
}
_SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    "operator": [{"functionKey": []}],
    "appliance": [{"functionKey": [], "applianceCredential": []}],
    # Either an operator (key only) or an appliance (key + its credential).
    "operatorOrAppliance": [{"functionKey": []}, {"functionKey": [], "applianceCredential": []}],
}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json_body(model: type[BaseModel], media_type: str = "application/json") -> dict[str, Any]:
    if model is BaseModel:
        return {media_type: {"schema": {"type": "object"}}}
    return {media_type: {"schema": _ref(model)}}


def _parameters(op: Operation, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params = [
        {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
        for part in op.route.split("/")
        if part.startswith("{")
    ]
    if op.query is not None:
        schema = op.query.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        schemas.update(schema.get("$defs", {}))
        for name, prop in schema["properties"].items():
            params.append(
                {"name": name, "in": "query", "required": name in schema.get("required", []), "schema": prop}
            )
    return params


def _webhooks() -> dict[str, Any]:
    """Each appliance event, as the appliance publishes it to the Event Grid topic."""
    hooks: dict[str, Any] = {}
    for event_type, envelope in ENVELOPES.items():
        data = envelope.model_fields["data"].annotation
        doc = " ".join(((data.__doc__ if data is not None else None) or "").split())
        hooks[event_type] = {
            "post": {
                "operationId": f"publish_{envelope.__name__}",
                "summary": f"{event_type}: published by the appliance to the Event Grid topic",
                "description": f"{doc} POST a JSON array of events to the topic endpoint (Event Grid "
                "schema; `aeg-sas-key` header or an Entra token); Event Grid delivers each to the "
                "control plane's Event Grid trigger. A `data` that does not match the schema is refused "
                "and never retried: the publish still succeeds, the appliance sees no error (see "
                "docs/appliance-contract.md).",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "array", "items": _ref(envelope)}}},
                },
                "responses": {"200": {"description": "Event Grid accepted the events"}},
            }
        }
    return hooks


@lru_cache(maxsize=1)
def build_document() -> dict[str, Any]:
    # The 409 detail is not any operation's body, but clients read it: its schema is published too.
    extra: set[type[BaseModel]] = {ErrorResponse, ForbiddenTransitionDetail}
    # What an appliance sends outside this API: its events (webhooks) and the manifests it uploads.
    inbound: set[type[BaseModel]] = {*ENVELOPES.values(), DeltaManifest}
    requests = {op.request for op in OPERATIONS if op.request} | inbound
    models = {op.response for op in OPERATIONS} | requests | extra
    models.discard(BaseModel)
    ordered = sorted(models, key=lambda m: m.__name__)
    _, top = models_json_schema(
        [(m, "validation" if m in requests else "serialization") for m in ordered],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        operation: dict[str, Any] = {
            "operationId": op.function_name,
            "summary": op.summary,
            "security": _SECURITY[op.auth],
            "parameters": _parameters(op, schemas),
            "responses": {
                str(op.status): {"description": "Success", "content": _json_body(op.response)},
                **{
                    str(code): {"description": _ERROR_TEXT[code], "content": _json_body(ErrorResponse)}
                    for code in op.errors
                },
            },
        }
        if op.request is not None:
            operation["requestBody"] = {
                "required": op.request_required,
                "content": _json_body(op.request, op.request_media_type),
            }
        paths.setdefault(f"/api/{op.route}", {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Migration and disaster-recovery control plane",
            "version": "1.0.0",
            "description": 'Errors are {"error": {"code", "message", "details"}}. See docs/api.md.',
        },
        "paths": paths,
        "webhooks": _webhooks(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "functionKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "Azure Functions key (also accepted as ?code=)",
                },
                "applianceCredential": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the credential returned when the appliance registered",
                },
            },
        },
    }


@bp.route(route="openapi.json", methods=["GET"])
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(build_document()), mimetype="application/json")
