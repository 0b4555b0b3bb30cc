"""Mobility service routes: the installer catalog and its OS resolution, a machine's manual install
commands, its push installation and update (job InstallMobilityService, carried out by its appliance),
its agent's view, the registration passphrase, agent registration and the agents' heartbeats, and the
routes an agent replicates its own server through (its cycle commands, policy, upload credentials and
uploaded cycles: the appliance's cycle protocol over HTTP, since the agent cannot publish to Event Grid).

Operators call them with a host key. An agent registering itself should be given a function key
scoped to `register_mobility_agent` only; the passphrase in its body is what authenticates it. Every
later agent route is authenticated by the agent's own credential (`Authorization: Bearer`), and the
agent acts for its own machine only.
"""

from __future__ import annotations

import asyncio
import io
from typing import TypeVar
from urllib.parse import urlsplit

import azure.durable_functions as df
import azure.functions as func
from pydantic import BaseModel, ValidationError

from functions.auth import requires
from functions.http_errors import (
    accepted_job,
    bearer_token,
    handle_errors,
    json_response,
    new_job_id,
    parse_body,
    path_id,
)
from functions.orchestration_signals import wake_machine_orchestration
from functions.starts import idempotency_key, launch
from orchestrators.blueprints import durable_blueprint
from orchestrators.mobility.contracts import PushInput
from orchestrators.mobility.orchestrator import PUSH_INSTALL
from orchestrators.names import CYCLE_UPLOADED_SIGNAL
from shared.bootstrap import Services, get_services
from shared.domain.api import CycleSignal, ErrorDetail, ErrorResponse, UploadCredentialsRequest
from shared.domain.errors import ValidationFailed
from shared.domain.principal import Role
from shared.mobility import agent_replication, push, registration, service
from shared.mobility.install_command import InstallCommandQuery
from shared.mobility.installers import InstallerList, installers_container, list_installers, store_installer

bp = durable_blueprint()

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
@requires(Role.ADMINISTRATOR)
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
@requires(Role.READER)
def list_mobility_installers(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    return json_response(InstallerList(installers=list_installers(installers_container(services.replicas))))


@bp.route(route=f"mobility/installers/{RESOLVE_SEGMENT}", methods=["GET"])
@handle_errors
@requires(Role.READER)
def resolve_mobility_installer(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    query = _query(req, service.ResolveQuery)
    return json_response(service.resolve_installer(installers_container(services.replicas), query.os))


@bp.route(route="machines/{machineId}/mobility/install-command", methods=["GET"])
@handle_errors
@requires(Role.READER)
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
@requires(Role.ADMINISTRATOR)
def rotate_mobility_passphrase(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    issued = registration.rotate_passphrase(services.repos, services.hasher, now=services.clock())
    return json_response(issued, 201, NO_STORE)


@bp.route(route="mobility/passphrase", methods=["GET"])
@handle_errors
@requires(Role.ADMINISTRATOR)
def get_mobility_passphrase(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(registration.passphrase_status(get_services().repos))


@bp.route(route="mobility/agents/register", methods=["POST"])
@handle_errors
def register_mobility_agent(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    request = parse_body(req, registration.RegisterAgentRequest)
    registered = registration.register_agent(services.repos, services.hasher, request, now=services.clock())
    return json_response(registered, 201, NO_STORE)


def _control_plane_url(req: func.HttpRequest) -> str:
    """The API's base URL as the operator reached it: what the installed agent registers with."""
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}/api"


async def _push(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, *, update: bool
) -> func.HttpResponse:
    services = get_services()
    machine_id = path_id(req, "machineId")
    body = parse_body(req, push.PushInstallBody)
    started = await asyncio.to_thread(
        push.start_push_install,
        services.repos,
        installers_container(services.replicas),
        machine_id,
        body,
        job_id=new_job_id(),
        control_plane_url=_control_plane_url(req),
        now=services.clock(),
        update=update,
        idempotency_key=idempotency_key(req),
    )
    job_input = PushInput(
        machine_id=machine_id,
        job_id=started.job.id,
        request=started.request,
        poll_seconds=push.POLL_SECONDS,
        timeout_seconds=push.ANSWER_TIMEOUT_SECONDS,
    )
    try:
        await launch(client, PUSH_INSTALL, started.job, job_input)
    except Exception:
        # Recorded but not started: nothing would run the job, so end it before answering 500.
        outcome = push.push_outcome(None, started.request, "PushApplianceDidNotAnswer")
        await asyncio.to_thread(
            push.end_push_job, services.repos, started.job.id, outcome, now=services.clock()
        )
        raise
    return accepted_job(started.job, retry_after_seconds=int(push.POLL_SECONDS))


@bp.route(route="machines/{machineId}/mobility/install", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handle_errors
@requires(Role.OPERATOR)
async def push_install_mobility(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _push(req, client, update=False)


@bp.route(route="machines/{machineId}/mobility/update", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handle_errors
@requires(Role.OPERATOR)
async def push_update_mobility(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _push(req, client, update=True)


@bp.route(route="machines/{machineId}/mobility", methods=["GET"])
@handle_errors
@requires(Role.READER)
def get_machine_mobility(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    agent = registration.machine_agent(services.repos, path_id(req, "machineId"))
    return json_response(registration.MachineMobility(agent=agent))


@bp.route(route="mobility/agents/heartbeat", methods=["POST"])
@handle_errors
def mobility_agent_heartbeat(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    beat = parse_body(req, registration.AgentHeartbeat)
    status = registration.record_heartbeat(
        services.repos, services.hasher, bearer_token(req), beat, now=services.clock()
    )
    return json_response(status)


# --- the agent replicating its own server -------------------------------------------------------------


def _agent(req: func.HttpRequest, services: Services) -> registration.MobilityAgent:
    return registration.authenticate_agent(services.repos, services.hasher, bearer_token(req))


@bp.route(route="mobility/agents/commands", methods=["GET"])
@handle_errors
def list_mobility_agent_commands(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    return json_response(agent_replication.agent_commands(services.repos, _agent(req, services)))


@bp.route(route="mobility/agents/commands/{commandId}/ack", methods=["POST"])
@handle_errors
def acknowledge_mobility_agent_command(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    agent = _agent(req, services)
    command_id = path_id(req, "commandId")
    return json_response(
        agent_replication.acknowledge_agent_command(services.repos, agent, command_id, now=services.clock())
    )


@bp.route(route="mobility/agents/policy", methods=["GET"])
@handle_errors
def get_mobility_agent_policy(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    return json_response(agent_replication.agent_policy(services.repos, _agent(req, services)))


@bp.route(route="mobility/agents/upload-credentials", methods=["POST"])
@handle_errors
def issue_mobility_agent_upload_credentials(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    agent = _agent(req, services)
    request = parse_body(req, UploadCredentialsRequest)
    issued = agent_replication.issue_agent_upload_credentials(
        services.repos, services.upload_signer, agent, request, now=services.clock()
    )
    return json_response(issued, 200, NO_STORE)


@bp.route(route="mobility/agents/cycles", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handle_errors
async def post_mobility_agent_cycle(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    services = get_services()
    agent = await asyncio.to_thread(_agent, req, services)
    body = parse_body(req, agent_replication.AgentCycleUploaded)
    answer, accepted = await asyncio.to_thread(
        agent_replication.accept_agent_cycle, services.repos, agent, body, now=services.clock()
    )
    # As for an appliance's event: the inbox is the truth, the signal only saves the orchestration a read.
    await wake_machine_orchestration(
        client,
        answer.machine_id,
        CYCLE_UPLOADED_SIGNAL,
        CycleSignal(cycle_id=answer.cycle_id, sequence=answer.sequence, cycle=accepted.cycle),
    )
    return json_response(answer, 202)


@bp.route(route="mobility/agents/cycle-failures", methods=["POST"])
@handle_errors
def post_mobility_agent_cycle_failure(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    agent = _agent(req, services)
    body = parse_body(req, agent_replication.AgentCycleFailed)
    recorded = agent_replication.record_agent_cycle_failure(
        services.repos, agent, body, now=services.clock(), settings=services.health
    )
    return json_response(recorded, 201)
