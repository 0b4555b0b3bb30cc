"""Appliance-facing routes (and the operator's registration and policy routes), upload credentials included.

Appliance calls carry a function key (authLevel FUNCTION; appliances get keys scoped to these functions
only) AND `Authorization: Bearer <appliance credential>`; an appliance acts only as itself.

The Event Grid trigger for appliance events: validate, record, wake the machine's orchestration.

Event Grid delivers at least once and retries whatever fails. So: a malformed or unauthorised event
is a permanent error (never retried; kept as a dead letter with its reason and, where it names a
machine, as an event on that machine: see shared/appliances/refusals.py); anything
transient (Cosmos or the Durable endpoint unavailable) raises, and the redelivery is harmless because
every step is idempotent by cycle id.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from functools import partial
from typing import overload

import azure.durable_functions as df
import azure.functions as func

from functions.auth import requires
from functions.http_errors import (
    bearer_token,
    handle_errors,
    json_response,
    parse_body,
    path_id,
    query_model,
)
from functions.orchestration_signals import wake_machine_orchestration
from orchestrators.blueprints import durable_blueprint
from orchestrators.names import CYCLE_STARTED_SIGNAL, CYCLE_UPLOADED_SIGNAL
from shared import health
from shared.appliances import commands, refusals, upload_credentials
from shared.appliances import registry as appliances
from shared.appliances.events import (
    ApplianceEvent,
    CycleFailed,
    CycleStarted,
    CycleUploaded,
    Heartbeat,
    check_subject,
    parse_appliance_event,
)
from shared.bootstrap import Services, get_services
from shared.domain.api import (
    ApplianceListQuery,
    CommandList,
    CycleSignal,
    RegisterApplianceRequest,
    UploadCredentialsRequest,
)
from shared.domain.appliance import Appliance
from shared.domain.command import CommandAnswer
from shared.domain.errors import Conflict, DomainError, Forbidden, NotFound, ValidationFailed
from shared.domain.inventory import DiscoveryReport
from shared.domain.policy import ReplicationPolicyUpdate
from shared.domain.principal import Role
from shared.health import events as machine_events
from shared.health.appliance_failures import record_appliance_failure, record_cycle_started
from shared.mobility import agent_replication
from shared.platform.operator_auth import is_json_web_token
from shared.platform.telemetry import get_telemetry
from shared.replication import cycles

bp = durable_blueprint()
log = logging.getLogger(__name__)


def _appliance(req: func.HttpRequest, services: Services) -> Appliance:
    """The authenticated appliance named in the path (401 no/invalid credential, 403 another appliance)."""
    appliance = appliances.authenticate_appliance(services.repos, services.hasher, bearer_token(req))
    appliances.authorize_appliance(appliance, path_id(req, "applianceId"))
    return appliance


@bp.route(route="appliances", methods=["POST"])
@handle_errors
@requires(Role.ADMINISTRATOR)
def register_appliance(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    request = parse_body(req, RegisterApplianceRequest)
    registered = appliances.register_appliance(services.repos, services.hasher, request, now=services.clock())
    return json_response(
        registered,
        201,
        {"Location": f"/api/appliances/{registered.id}/policy", "Cache-Control": "no-store"},
    )


@bp.route(route="appliances", methods=["GET"])
@handle_errors
@requires(Role.READER)
def list_appliances(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    query = query_model(req, ApplianceListQuery)
    return json_response(
        appliances.list_appliances(
            services.repos,
            now=services.clock(),
            heartbeat_timeout=services.health.rules.heartbeat_timeout,
            page_size=query.page_size,
            continuation=query.continuation_token,
        )
    )


@bp.route(route="appliances/{applianceId}", methods=["GET"])
@handle_errors
@requires(Role.READER)
def get_appliance(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    return json_response(
        appliances.get_appliance(
            services.repos,
            path_id(req, "applianceId"),
            now=services.clock(),
            heartbeat_timeout=services.health.rules.heartbeat_timeout,
        )
    )


@bp.route(route="appliances/{applianceId}/machines", methods=["POST"])
@handle_errors
def report_machines(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    appliance = _appliance(req, services)
    report = parse_body(req, DiscoveryReport)
    return json_response(
        appliances.report_machines(
            services.repos,
            appliance,
            report,
            now=services.clock(),
            on_disks_changed=partial(health.flag_source_disks_changed, rules=services.health.rules),
        )
    )


@bp.route(route="appliances/{applianceId}/commands", methods=["GET"])
@handle_errors
def list_commands(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    appliance = _appliance(req, services)
    return json_response(
        CommandList(commands=agent_replication.appliance_commands(services.repos, appliance.id))
    )


@bp.route(route="appliances/{applianceId}/commands/{commandId}/ack", methods=["POST"])
@handle_errors
def acknowledge_command(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    appliance = _appliance(req, services)
    command_id = path_id(req, "commandId")
    # The body is optional: commands that produce something (reverse protection) send their answer.
    answer = parse_body(req, CommandAnswer) if req.get_body() else None
    return json_response(
        commands.acknowledge_command(
            services.repos, appliance.id, command_id, now=services.clock(), answer=answer
        )
    )


@bp.route(route="appliances/{applianceId}/upload-credentials", methods=["POST"])
@handle_errors
def issue_upload_credentials(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    appliance = _appliance(req, services)
    request = parse_body(req, UploadCredentialsRequest)
    issued = upload_credentials.issue_upload_credentials(
        services.repos, services.upload_signer, appliance, request, now=services.clock()
    )
    # The URLs are bearer secrets: no cache may keep them.
    return json_response(issued, 200, {"Cache-Control": "no-store"})


@bp.route(route="appliances/{applianceId}/policy", methods=["GET"])
@handle_errors
def get_policy(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    token = bearer_token(req)
    if token is not None and not is_json_web_token(token):
        # The appliance: its policy comes with the document that authenticated it (no extra read).
        return json_response(_appliance(req, services).policy)
    return _operator_policy(req)


@requires(Role.READER, function="get_policy")
def _operator_policy(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(appliances.get_policy(get_services().repos, path_id(req, "applianceId")))


@bp.route(route="appliances/{applianceId}/policy", methods=["PUT"])
@handle_errors
@requires(Role.ADMINISTRATOR)
def update_policy(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    appliance_id = path_id(req, "applianceId")
    update = parse_body(req, ReplicationPolicyUpdate)
    return json_response(appliances.update_policy(services.repos, appliance_id, update))


PERMANENT = (ValidationFailed, NotFound, Forbidden, Conflict)


@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def on_appliance_event(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    # CloudEvents arrive as a CloudEvent with `type`; the Event Grid schema as an EventGridEvent.
    event_type = str(getattr(event, "event_type", None) or getattr(event, "type", ""))
    services = get_services()
    now = services.clock()
    try:
        payload = parse_appliance_event(event_type, event.get_json())
        check_subject(str(getattr(event, "subject", "") or ""), payload)
    except DomainError as exc:
        await _refuse(services, event, event_type, exc, parsed=False, now=now)
        return
    try:
        await _apply_event(services, client, event, payload, now)
    except PERMANENT as exc:
        await _refuse(services, event, event_type, exc, parsed=True, now=now)


async def _refuse(
    services: Services,
    event: func.EventGridEvent,
    event_type: str,
    error: DomainError,
    *,
    parsed: bool,
    now: datetime,
) -> None:
    """Never retried, never lost: a dead letter with the reason, and an event on the machine it names.

    A failure to write either raises, so Event Grid redelivers the event and the refusal is written then
    (both writes are idempotent by the event's id)."""
    received = refusals.ReceivedEvent(
        id=str(event.id),
        type=event_type,
        subject=str(getattr(event, "subject", "") or ""),
        time=_event_time(event, None),
        data=event.get_json(),
    )
    refusal = refusals.Refusal(
        received, refusals.kind_of(error, parsed=parsed), error, refusals.named_machine(received)
    )
    dead_letter = await asyncio.to_thread(
        refusals.write_dead_letter, services.refused_events, refusal, now=now
    )
    log.error(
        "appliance event %s (%s) refused (%s), not retried: %s; dead letter %s",
        event.id,
        event_type,
        refusal.kind.value,
        error.message,
        dead_letter,
    )
    if refusal.machine_id is None:
        return
    machine = await asyncio.to_thread(services.repos.machines.get, refusal.machine_id)
    if machine is not None:
        recorded = refusals.machine_event(refusal, dead_letter=dead_letter, at=now)
        await asyncio.to_thread(machine_events.record_event, services.repos, recorded)


async def _apply_event(
    services: Services,
    client: df.DurableOrchestrationClient,
    event: func.EventGridEvent,
    payload: ApplianceEvent,
    now: datetime,
) -> None:
    if isinstance(payload, Heartbeat):
        await asyncio.to_thread(
            appliances.record_heartbeat,
            services.repos,
            payload.appliance_id,
            payload.time or now,
            agent_version=payload.agent_version,
        )
    elif isinstance(payload, CycleUploaded):
        accepted = await asyncio.to_thread(cycles.accept_cycle_upload, services.repos, payload, now=now)
        log.info(
            "cycle %s of machine %s %s",
            accepted.cycle_id,
            accepted.machine_id,
            "was a duplicate" if accepted.duplicate else "accepted",
        )
        await wake_machine_orchestration(
            client,
            payload.machine_id,
            CYCLE_UPLOADED_SIGNAL,
            CycleSignal(
                cycle_id=payload.cycle_id,
                sequence=payload.sequence,
                cycle=accepted.cycle,
                machine=accepted.machine,
            ),
        )
    elif isinstance(payload, CycleFailed):
        recorded = await asyncio.to_thread(
            record_appliance_failure,
            services.repos,
            payload,
            event_id=str(event.id),
            reported_at=_event_time(event, now),
            settings=services.health,
        )
        get_telemetry().cycle_failed(
            machine_id=payload.machine_id,
            cycle_id=payload.cycle_id,
            error_code=recorded.events[0].error_code or "",
            message=payload.message,
            job_id=recorded.machine.active_job_id,
        )
        log.info(
            "machine %s: %s (%s), health %s",
            payload.machine_id,
            recorded.events[0].error_code,
            recorded.events[0].type,
            recorded.change.health.value,
        )
    elif isinstance(payload, CycleStarted):
        watched = await asyncio.to_thread(
            record_cycle_started,
            services.repos,
            payload,
            reported_at=_event_time(event, now),
            settings=services.health,
        )
        if watched is not None:
            # The orchestration races a timer against this deadline (the signal carries it).
            await wake_machine_orchestration(
                client,
                payload.machine_id,
                CYCLE_STARTED_SIGNAL,
                CycleSignal(
                    cycle_id=payload.cycle_id,
                    started=True,
                    upload_watch=watched.watch,
                    machine=watched.machine,
                ),
            )


@overload
def _event_time(event: func.EventGridEvent, default: datetime) -> datetime: ...
@overload
def _event_time(event: func.EventGridEvent, default: None) -> datetime | None: ...
def _event_time(event: func.EventGridEvent, default: datetime | None) -> datetime | None:
    """When the appliance published the event (identical on every redelivery), else `default`."""
    published = getattr(event, "event_time", None) or getattr(event, "time", None)
    if not isinstance(published, datetime):
        return default
    # Event Grid stamps UTC; the binding may hand it over without a zone.
    return published if published.tzinfo is not None else published.replace(tzinfo=UTC)
