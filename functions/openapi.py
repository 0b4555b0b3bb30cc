"""GET /api/openapi.json: an OpenAPI 3.1 document generated from the pydantic request/response models.

The schemas come from the models (no hand-written copies); this module only lists the operations, and
tests/unit/test_api_openapi.py checks that list against the routes actually registered on the app.
The appliance events are `webhooks`: the appliance publishes them to the Event Grid topic, which
delivers them to the Event Grid trigger (no route of this API); the delta manifest an appliance uploads
is a component too.

Auth level FUNCTION, not anonymous: every endpoint but liveness is authenticated, everyone who
needs the document (operators, client generators) holds a key anyway, and the map of an API is useful
to an attacker. It contains no data, so any function key may read it.

Also the catch-all route (`{*path}`): a request no other function takes gets the JSON error shape, 405
with `Allow` where the path is an operation's but the method is not, 404 otherwise. The Functions host
matches routes in the alphabetical order of the function names, not by specificity, so the catch-all's
name sorts after every other function's (tests/unit/test_api_openapi.py holds it there).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import azure.functions as func
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from functions.auth import REQUIRED_ROLES
from functions.http_errors import json_response
from orchestrators.blueprints import blueprint
from shared.appliances.events import ENVELOPES
from shared.domain.api import (
    AcceptedJob,
    ApplianceList,
    ApplianceListQuery,
    ApplianceRegistered,
    ApplianceView,
    CommandList,
    DiscoveryResult,
    ErrorDetail,
    ErrorResponse,
    EventList,
    EventListQuery,
    ForbiddenTransitionDetail,
    JobList,
    JobListQuery,
    MachineDetail,
    MachineList,
    MachineListQuery,
    RecoveryPointList,
    RegisterApplianceRequest,
    StatusPageQuery,
    UploadCredentials,
    UploadCredentialsRequest,
)
from shared.domain.command import ApplianceCommand, CommandAnswer
from shared.domain.errors import DomainError
from shared.domain.failover import FailoverSettings
from shared.domain.inventory import DiscoveryReport
from shared.domain.job import Job
from shared.domain.policy import ReplicationPolicy, ReplicationPolicyUpdate
from shared.domain.target import TargetSettings
from shared.domain.wire import RESOURCE_ID_PATTERN
from shared.failback.forward import ForwardReprotectRequest
from shared.failover.service import ChangeRecoveryPointRequest, FailoverRequest
from shared.jobs.starts import IDEMPOTENCY_KEY_HEADER, MAX_IDEMPOTENCY_KEY_LENGTH, NOT_STARTED
from shared.migration.service import MigrationRequest, TestMigrationRequest
from shared.mobility.agent_replication import (
    AgentCommandList,
    AgentCycleAccepted,
    AgentCycleFailed,
    AgentCycleFailureRecorded,
    AgentCycleUploaded,
)
from shared.mobility.install_command import InstallCommand, InstallCommandQuery
from shared.mobility.installers import INSTALLER_NAME_PATTERN, Installer, InstallerList
from shared.mobility.os_support import OsResolution
from shared.mobility.push import PushInstallBody
from shared.mobility.registration import (
    AgentHeartbeat,
    AgentRegistered,
    AgentStatus,
    MachineMobility,
    PassphraseIssued,
    PassphraseStatus,
    RegisterAgentRequest,
)
from shared.mobility.service import ResolveQuery
from shared.replication.delta_manifest import DeltaManifest

bp = blueprint()

Auth = Literal["operator", "appliance", "operatorOrAppliance", "agent", "agentCredential", "keyOnly"]


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
    # The status page answers HTML; everything else answers the response model's JSON.
    response_media_type: str = "application/json"
    # A path parameter that is not an id (its schema instead of the id pattern).
    path_schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # An operator action started through functions/starts.py: takes an Idempotency-Key header.
    idempotent: bool = False


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
        "GET",
        "appliances",
        "list_appliances",
        "Appliances by id, paged: kind, site, last heartbeat, agent version, health (never the credential)",
        "operator",
        ApplianceList,
        query=ApplianceListQuery,
        errors=(400, 401),
    ),
    Operation(
        "GET",
        "appliances/{applianceId}",
        "get_appliance",
        "One appliance, with the number of machines it reported",
        "operator",
        ApplianceView,
        errors=(400, 401, 404),
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
        "Pending commands, oldest first (a Mobility agent's machine's RunCycle and ResyncDisk are the agent's)",
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
        query=EventListQuery,
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
        idempotent=True,
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
        idempotent=True,
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
        idempotent=True,
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
        request_required=False,
        errors=(400, 401, 404, 409),
        idempotent=True,
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
        idempotent=True,
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
        request_required=False,
        errors=(400, 401, 404, 409),
        idempotent=True,
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
        request_required=False,
        errors=(400, 401, 404, 409),
        idempotent=True,
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
        idempotent=True,
    ),
    Operation(
        "POST",
        "machines/{machineId}/commit",
        "commit_failover",
        "Commit the failover: keep the VM's recovery point, delete every other one (blob snapshots and "
        "catalog entries); the recovery point can no longer change. On a machine that failed back to "
        "on-premises (FailedBack), commit that instead (job CommitFailback): bring the replicas to the final "
        "reverse snapshots, delete the Azure VM, its NICs and disks and every reverse snapshot, and have the "
        "appliance delete its pre-power-on copy; the machine is then on-premises and not protected. A commit "
        "that failed after its first deletion is committed again; 409 while one runs (long operation)",
        "operator",
        AcceptedJob,
        202,
        errors=(400, 401, 404, 409),
        idempotent=True,
    ),
    Operation(
        "POST",
        "machines/{machineId}/reprotect",
        "reprotect",
        "Protect a committed failover back to on-premises: check the appliance and the on-premises disks, "
        "power the on-premises VM off, copy only the blocks that differ from the Azure disks' snapshots, "
        "then run reverse cycles every reverseCycleMinutes. On a machine whose failback is committed "
        "(FailbackCommitted), protect it to Azure again without a full copy: the appliance that copied the "
        "disks before power-on sends only what changed since (`policy`, optional, is set on that appliance "
        "first; it is refused with 400 for a reprotect to on-premises); 404 for an unknown appliance, 409 "
        "for another appliance or state (long operation)",
        "operator",
        AcceptedJob,
        202,
        ForwardReprotectRequest,
        errors=(400, 401, 404, 409),
        idempotent=True,
    ),
    Operation(
        "POST",
        "machines/{machineId}/planned-failover",
        "planned_failover",
        "Fail a reverse-replicating machine over to on-premises: pre-sync, stop the Azure VM, a final "
        "reverse sync (nothing written in Azure is lost), copy the on-premises disks, power the on-premises "
        "VM on and wait for its heartbeat; the machine then waits for commit or cancel and shows the "
        "downtime. 409 without a reverse recovery point, with Critical health or in another state; a "
        "failure cancels it by itself (long operation)",
        "operator",
        AcceptedJob,
        202,
        errors=(400, 401, 404, 409),
        idempotent=True,
    ),
    Operation(
        "POST",
        "machines/{machineId}/cancel-planned-failover",
        "cancel_planned_failover",
        "Undo a planned failover to on-premises: power the on-premises VM off, revert its disks to their "
        "copies taken before power-on, re-attach them, start the Azure VM and resume reverse replication. "
        "Allowed while it waits for commit and after a cancel failed; safe to run again (long operation)",
        "operator",
        AcceptedJob,
        202,
        errors=(400, 401, 404, 409),
        idempotent=True,
    ),
    Operation("GET", "jobs/{jobId}", "get_job", "A long operation's status and steps", "operator", Job),
    Operation(
        "POST",
        "jobs/{jobId}/cancel",
        "cancel_job",
        "Cancel a running job. Only a cutover (Migration) can be, while it waits for the source's shutdown "
        "and its final cycle: 202, the job ends Cancelled and the machine goes back to Replicating. 409 "
        "JobNotCancellable otherwise, with the reason and what to do instead (a failover to Azure, a change "
        "of recovery point and a commit never can: a half-built VM is worse than a finished one or none), "
        "409 JobAlreadyFinished naming the status of a finished job",
        "operator",
        AcceptedJob,
        202,
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "GET",
        "jobs",
        "list_jobs",
        "Jobs newest first, paged, filtered by machine, kind and status",
        "operator",
        JobList,
        query=JobListQuery,
        errors=(400, 401),
    ),
    Operation(
        "PUT",
        "mobility/installers/{fileName}",
        "upload_mobility_installer",
        "Upload a Mobility service installer under its vendor name (Content-Length required, at most 1 GiB)",
        "operator",
        Installer,
        201,
        BaseModel,
        request_media_type="application/octet-stream",
        errors=(400, 401),
        path_schemas={"fileName": {"type": "string", "maxLength": 255, "pattern": INSTALLER_NAME_PATTERN}},
    ),
    Operation(
        "GET",
        "mobility/installers",
        "list_mobility_installers",
        "The installer catalog, by OS then newest version first",
        "operator",
        InstallerList,
        errors=(401,),
    ),
    Operation(
        "GET",
        "mobility/installers/resolve",
        "resolve_mobility_installer",
        "Which installer serves an OS, and the newest catalog file for it (400 OsNotSupported otherwise)",
        "operator",
        OsResolution,
        query=ResolveQuery,
        errors=(400, 401),
    ),
    Operation(
        "GET",
        "machines/{machineId}/mobility/install-command",
        "get_mobility_install_command",
        "The manual Mobility service install and registration commands for the machine's OS",
        "operator",
        InstallCommand,
        query=InstallCommandQuery,
    ),
    Operation(
        "POST",
        "machines/{machineId}/mobility/install",
        "push_install_mobility",
        "Push-install the Mobility service from the newest catalog installer for the machine's OS, through "
        "its appliance (job InstallMobilityService: copy agent, check prerequisites, install agent, install "
        "VSS provider, register); credentialName names a secret in the appliance's store, never the secret",
        "operator",
        AcceptedJob,
        202,
        PushInstallBody,
        errors=(400, 401, 404, 409),
        idempotent=True,
    ),
    Operation(
        "POST",
        "machines/{machineId}/mobility/update",
        "push_update_mobility",
        "Update the machine's Mobility service to the newest catalog installer, the same way as install",
        "operator",
        AcceptedJob,
        202,
        PushInstallBody,
        errors=(400, 401, 404, 409),
        idempotent=True,
    ),
    Operation(
        "GET",
        "machines/{machineId}/mobility",
        "get_machine_mobility",
        "The machine's Mobility agent: version, health and last heartbeat (null before it registers)",
        "operator",
        MachineMobility,
    ),
    Operation(
        "POST",
        "mobility/agents/heartbeat",
        "mobility_agent_heartbeat",
        "A registered Mobility agent's heartbeat: its version and health",
        "agentCredential",
        AgentStatus,
        200,
        AgentHeartbeat,
        errors=(400, 401),
    ),
    Operation(
        "GET",
        "mobility/agents/commands",
        "list_mobility_agent_commands",
        "The agent's machine's pending cycle commands (RunCycle, ResyncDisk), oldest first, and its "
        "lastAppliedSequence; 409 for an agent registered without a machine id",
        "agentCredential",
        AgentCommandList,
        errors=(401, 404, 409),
    ),
    Operation(
        "POST",
        "mobility/agents/commands/{commandId}/ack",
        "acknowledge_mobility_agent_command",
        "Acknowledge one of the machine's cycle commands once its cycle is posted (idempotent); 403 for "
        "any other command",
        "agentCredential",
        ApplianceCommand,
        errors=(400, 401, 403, 404, 409),
    ),
    Operation(
        "GET",
        "mobility/agents/policy",
        "get_mobility_agent_policy",
        "The replication policy the agent's uploads follow (its machine's appliance's: bandwidth limits "
        "by work hours, upload threads)",
        "agentCredential",
        ReplicationPolicy,
        errors=(401, 404, 409),
    ),
    Operation(
        "POST",
        "mobility/agents/upload-credentials",
        "issue_mobility_agent_upload_credentials",
        "Write-only SAS URLs for the named blobs of a cycle of the agent's own machine (about 1 hour: ask "
        "again before expiresOn); 403 for another machine",
        "agentCredential",
        UploadCredentials,
        request=UploadCredentialsRequest,
        errors=(400, 401, 403, 404, 409),
    ),
    Operation(
        "POST",
        "mobility/agents/cycles",
        "post_mobility_agent_cycle",
        "The agent's cycle is uploaded (what an appliance's CycleUploaded event says): into the machine's "
        "inbox, applied in sequence order; 409 when the machine does not take uploads or the cycle id was "
        "used with other manifests",
        "agentCredential",
        AgentCycleAccepted,
        202,
        AgentCycleUploaded,
        errors=(400, 401, 403, 404, 409),
    ),
    Operation(
        "POST",
        "mobility/agents/cycle-failures",
        "post_mobility_agent_cycle_failure",
        "The agent could not take or upload a cycle (what an appliance's CycleFailed event says): the "
        "failure becomes the machine's catalog error and health; the same reportId again counts once",
        "agentCredential",
        AgentCycleFailureRecorded,
        201,
        AgentCycleFailed,
        errors=(400, 401, 403, 404, 409),
    ),
    Operation(
        "POST",
        "mobility/passphrase",
        "rotate_mobility_passphrase",
        "Generate the registration passphrase, replacing any previous one; shown once",
        "operator",
        PassphraseIssued,
        201,
        errors=(401, 409),
    ),
    Operation(
        "GET",
        "mobility/passphrase",
        "get_mobility_passphrase",
        "Whether a registration passphrase is set, and when",
        "operator",
        PassphraseStatus,
        errors=(401,),
    ),
    Operation(
        "POST",
        "mobility/agents/register",
        "register_mobility_agent",
        "Register a Mobility agent with the passphrase; returns its own credential once",
        "agent",
        AgentRegistered,
        201,
        RegisterAgentRequest,
    ),
    Operation(
        "GET", "openapi.json", "openapi_document", "This document", "keyOnly", BaseModel, errors=(401,)
    ),
    Operation(
        "GET",
        "status",
        "status_page",
        "The operators' status page (HTML): machines with state, health, RPO and progress; a machine's "
        "recovery points, events and jobs with their steps; it refreshes itself (`?refresh=SECONDS`, "
        "2..3600, default 10). Open it with the key as `?code=` and an operator's access token (Migration."
        "Reader or higher) in the fragment as `#access_token=` (or type them in its form): the page holds no "
        "data and calls this API with both",
        "keyOnly",
        BaseModel,
        query=StatusPageQuery,
        errors=(400, 401),
        response_media_type="text/html",
    ),
)

_ERROR_TEXT = {
    400: "Invalid request: details name each field and what to fix",
    401: "Missing or invalid function key (the Functions host answers with no body), or a missing or invalid "
    "operator token or appliance/agent credential (the app answers the error body, code Unauthorized, and "
    "`WWW-Authenticate: Bearer`; the message says what is wrong with the token)",
    403: "Forbidden: the operator's token lacks the app role this operation needs (the message and the "
    "detail's requiredRole name it; see x-required-role), or the resource is not this appliance's or agent's",
    404: "Not found",
    409: "Conflicts with the machine's state; a ForbiddenTransition's first detail is a ForbiddenTransitionDetail "
    "(the allowed next states and allowedOperations); when an action holds the machine, a detail "
    "{activeJobId, kind, status} names its job (poll GET /api/jobs/{activeJobId}), unless the request is "
    "the same one sent again (its Idempotency-Key, or its body within the retry window while that job "
    "runs), which gets 202 with that job; an Idempotency-Key already used for another action is a 409 too. ConcurrencyConflict (the document kept changing) comes "
    "with Retry-After: send the same request again",
    500: "Unexpected error (InternalError): the message carries an incident id to quote, never internals; "
    "nothing may be assumed done, so read the resource before retrying",
    503: "A dependency could not be reached (AzureCheckUnavailable, ServiceUnavailable); nothing was written; "
    "retry after Retry-After seconds",
}
# A write can always meet a document changing under it (ConcurrencyConflict) and any request an unexpected
# failure: every operation lists those statuses besides its own.
_EVERY_OPERATION_ERRORS = (401, 403, 500)
_EVERY_WRITE_ERRORS = (409,)
# Codes the API answers besides those of the domain's errors (walked from DomainError when the document
# is built, once every capability's module is loaded).
_TRANSPORT_ERROR_CODES = ("InternalError", "MethodNotAllowed", "RouteNotFound")
_SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    # A function key gets the request into the app; the Entra ID token says who the operator is and which
    # app role it holds (x-required-role on each operation).
    "operator": [{"functionKey": [], "operatorToken": []}],
    "appliance": [{"functionKey": [], "applianceCredential": []}],
    # Documents that hold no data (this one, the status page's HTML): any function key.
    "keyOnly": [{"functionKey": []}],
    # A Mobility agent registering: a key scoped to that function; the passphrase is in the body.
    "agent": [{"functionKey": []}],
    # A registered Mobility agent: a key scoped to its functions and its own credential.
    "agentCredential": [{"functionKey": [], "agentCredential": []}],
    # Either an operator (key + token) or an appliance (key + its credential).
    "operatorOrAppliance": [
        {"functionKey": [], "operatorToken": []},
        {"functionKey": [], "applianceCredential": []},
    ],
}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json_body(model: type[BaseModel], media_type: str = "application/json") -> dict[str, Any]:
    if media_type == "application/octet-stream":
        # A file of at least one byte (an empty upload is a 400: Content-Length must be 1 or more).
        return {media_type: {"schema": {"type": "string", "format": "binary", "minLength": 1}}}
    if model is BaseModel:
        return {media_type: {"schema": {"type": "object"}}}
    return {media_type: {"schema": _ref(model)}}


def _error_statuses(op: Operation) -> list[int]:
    writes = _EVERY_WRITE_ERRORS if op.method in ("POST", "PUT", "PATCH", "DELETE") else ()
    # An operator's token is checked against the issuer's keys, which may not be reachable.
    token = (503,) if op.auth in ("operator", "operatorOrAppliance") else ()
    return sorted({*op.errors, *writes, *token, *_EVERY_OPERATION_ERRORS})


def _success_response(op: Operation) -> dict[str, Any]:
    response: dict[str, Any] = {"description": "Success", "content": _success_body(op)}
    if op.status == 202:
        response["description"] = "Accepted: the long operation's job; poll Location until it has finished"
        response["headers"] = {
            "Location": {
                "description": "the job to poll: /api/jobs/{jobId}",
                "required": True,
                "schema": {"type": "string", "pattern": "^/api/jobs/[A-Za-z0-9._-]+$"},
            },
            "Retry-After": {
                "description": "seconds to wait before the first poll",
                "required": True,
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            },
        }
    return response


def error_codes() -> list[str]:
    """Every `error.code` the API can answer: each domain error's, and the few the HTTP layer adds."""

    def walk(kind: type[DomainError]) -> Iterator[type[DomainError]]:
        for sub in kind.__subclasses__():
            yield sub
            yield from walk(sub)

    return sorted({DomainError.code, *(k.code for k in walk(DomainError)), *_TRANSPORT_ERROR_CODES})


def _success_body(op: Operation) -> dict[str, Any]:
    if op.response_media_type == "text/html":
        return {"text/html": {"schema": {"type": "string"}}}
    return _json_body(op.response, op.response_media_type)


# Every path parameter is a resource id (checked by path_id): say which strings those are.
_PATH_ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": RESOURCE_ID_PATTERN}
# JSON Schema's "time" format is RFC 3339's full-time, which needs an offset; these are local times of
# day, written the way pydantic writes them.
_LOCAL_TIME = {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$"}
# 401 from the Functions host itself (no or a wrong function key) has no body; an appliance credential's
# 401 has the error body: the document promises no media type for it.
_BODILESS_ERRORS = frozenset({401})


def _local_times(node: Any) -> Any:
    """`node` with every "format": "time" string replaced by the local time-of-day pattern."""
    if isinstance(node, dict):
        if node.get("format") == "time" and node.get("type") == "string":
            rest = {k: v for k, v in node.items() if k not in ("format", "type")}
            return {**rest, **_LOCAL_TIME}
        return {key: _local_times(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_local_times(value) for value in node]
    return node


# Request bodies refuse control characters in every value and member name (json_object_body).
_PRINTABLE = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


def _printable_strings(node: Any) -> Any:
    """`node` with the printable-text pattern on every string (and member name) it does not constrain."""
    if isinstance(node, dict):
        out = {key: _printable_strings(value) for key, value in node.items()}
        constrained = {"pattern", "enum", "const", "format"} & out.keys()
        if out.get("type") == "string" and not constrained:
            out["pattern"] = _PRINTABLE
        if out.get("type") == "object" and isinstance(out.get("additionalProperties"), dict):
            out.setdefault("propertyNames", {"pattern": _PRINTABLE})
        return out
    if isinstance(node, list):
        return [_printable_strings(value) for value in node]
    return node


def _request_schemas(schemas: dict[str, Any], roots: set[str]) -> set[str]:
    """The schemas a request body can contain: `roots` and every schema they reference."""
    found: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in found or name not in schemas:
            continue
        found.add(name)
        pending += [ref.rsplit("/", 1)[1] for ref in _refs(schemas[name])]
    return found


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _error_response(code: int) -> dict[str, Any]:
    if code in _BODILESS_ERRORS:
        return {"description": _ERROR_TEXT[code]}
    return {"description": _ERROR_TEXT[code], "content": _json_body(ErrorResponse)}


def _parameters(op: Operation, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params = [
        {
            "name": part[1:-1],
            "in": "path",
            "required": True,
            "schema": dict(op.path_schemas.get(part[1:-1], _PATH_ID_SCHEMA)),
        }
        for part in op.route.split("/")
        if part.startswith("{")
    ]
    if op.idempotent:
        params.append(
            {
                "name": IDEMPOTENCY_KEY_HEADER,
                "in": "header",
                "required": False,
                "description": "Any 1 to 200 printable ASCII characters without spaces, new for each action "
                "(a UUID). A request retried with the same key on the same machine answers 202 with the job "
                "the first one started (same Location) and starts nothing more; if the first request died "
                "before its job was handed to its orchestration, the retry does it. Without a key, the same "
                "request (same method, path, JSON body and caller) sent again within "
                "OPERATOR_RETRY_WINDOW_SECONDS (600) while its job runs answers the same way instead of "
                "409. A start that no retry completes is delivered again or rolled back after "
                f"OPERATOR_START_GRACE_SECONDS (rolled back: the job ends Failed {NOT_STARTED}); a key used "
                "for another action is a 409.",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH,
                    "pattern": "^[!-~]+$",
                },
            }
        )
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
                "control plane's Event Grid trigger. A `data` that does not match the schema, or a "
                "`subject` that names another machine than the `data`, is refused and never retried: the publish still succeeds, so the appliance sees no error; the control "
                "plane keeps the event as a dead letter with the reason and records the refusal on the "
                "machine it names (see docs/appliance-contract.md).",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "array", "items": _ref(envelope)}}},
                },
                "responses": {"200": {"description": "Event Grid accepted the events"}},
            }
        }
    return hooks


def _document_schemas(schemas: dict[str, Any]) -> dict[str, Any]:
    requests = _request_schemas(schemas, {op.request.__name__ for op in OPERATIONS if op.request is not None})
    return {
        name: _local_times(_printable_strings(schema) if name in requests else schema)
        for name, schema in schemas.items()
    }


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
                str(op.status): _success_response(op),
                **{str(code): _error_response(code) for code in _error_statuses(op)},
            },
        }
        role = REQUIRED_ROLES.get(op.function_name)
        if op.auth in ("operator", "operatorOrAppliance"):
            if role is None:
                raise RuntimeError(f"{op.function_name} is an operator operation without @requires(Role...)")
            operation["x-required-role"] = role.value
            operation["description"] = (
                f"Operators: an Entra ID access token with the app role {role.value} or a higher one "
                "(Migration.Reader < Migration.Operator < Migration.Administrator)."
            )
        if op.request is not None:
            operation["requestBody"] = {
                "required": op.request_required,
                "content": _json_body(op.request, op.request_media_type),
            }
        paths.setdefault(f"/api/{op.route}", {})[op.method.lower()] = operation
    error_detail = schemas["ErrorDetail"]
    error_detail["properties"]["code"] = {
        **error_detail["properties"]["code"],
        "enum": error_codes(),
        "description": "what went wrong, as a stable code (docs/api.md lists when each is answered)",
    }
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
            "schemas": _document_schemas(schemas),
            "securitySchemes": {
                "functionKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "Azure Functions key (also accepted as ?code=)",
                },
                "operatorToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "an operator's Microsoft Entra ID access token (RS256) for this API's "
                    "audience, carrying app roles in `roles`: Migration.Reader (reads), Migration.Operator "
                    "(actions), Migration.Administrator (appliances, policy, installers, passphrase); each "
                    "includes the ones before it. Obtained from the tenant's token endpoint (client "
                    "credentials, or a signed-in user); locally from the stack's issuer "
                    "(docs/local-stack.md#operator-tokens)",
                },
                "applianceCredential": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the credential returned when the appliance registered",
                },
                "agentCredential": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the credential returned when the Mobility agent registered",
                },
            },
        },
    }


@bp.route(route="openapi.json", methods=["GET"])
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(build_document()), mimetype="application/json")


# The anonymous liveness route is not in the document, but it is a route.
_UNDOCUMENTED_ROUTES = (("GET", "health"),)
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def _route_pattern(route: str, path_schemas: Mapping[str, Mapping[str, Any]]) -> re.Pattern[str]:
    """The paths `route` takes; a parameter with its own schema only where its pattern matches (so a
    literal route beside it, as `mobility/installers/resolve`, is not also that parameter's)."""

    def segment(part: str) -> str:
        if not part.startswith("{"):
            return re.escape(part)
        pattern = str(path_schemas.get(part[1:-1], {}).get("pattern", "^[^/]+$"))
        return f"(?:{pattern.removeprefix('^').removesuffix('$')})"

    return re.compile("/".join(segment(part) for part in route.split("/")))


_ROUTE_METHODS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (_route_pattern(route, schemas), method)
    for method, route, schemas in (
        *((op.method, op.route, op.path_schemas) for op in OPERATIONS),
        *((method, route, {}) for method, route in _UNDOCUMENTED_ROUTES),
    )
)


def allowed_methods(path: str) -> list[str]:
    """The methods the API answers on `path` (without the "api/" prefix); none for an unknown path."""
    path = path.strip("/")
    return sorted({method for pattern, method in _ROUTE_METHODS if pattern.fullmatch(path)})


def unmatched_route_response(method: str, path: str) -> func.HttpResponse:
    """404 or 405 in the API's error shape, for a request no operation takes."""
    shown = "/api/" + path.strip("/")
    allowed = allowed_methods(path)
    if allowed:
        error = ErrorDetail(
            code="MethodNotAllowed",
            message=f"{method} is not an operation of {shown}; it answers {', '.join(allowed)}",
            details=[{"allowed": allowed}],
        )
        return json_response(ErrorResponse(error=error), 405, {"Allow": ", ".join(allowed)})
    error = ErrorDetail(
        code="RouteNotFound",
        message=f"{shown} is not a route of this API; its operations are listed in /api/openapi.json",
    )
    return json_response(ErrorResponse(error=error), 404)


# Named to sort last: see the module docstring. Function-key level like every operation, so a caller
# without a key learns nothing about which routes exist.
@bp.route(route="{*path}", methods=ALL_METHODS)
def zz_unmatched_route(req: func.HttpRequest) -> func.HttpResponse:
    return unmatched_route_response(req.method, req.route_params.get("path", ""))
