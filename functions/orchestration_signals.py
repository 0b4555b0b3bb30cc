"""Waking the machine's orchestration from a trigger: raise the event if it runs, start it if not.

Both the HTTP starters (operator requests) and the Event Grid function (uploaded cycles) need this;
races between them (two triggers starting the same instance) end with the event raised on the
instance that won.
"""

from __future__ import annotations

import logging

import azure.durable_functions as df

from orchestrators.names import MACHINE_REPLICATION, machine_instance_id
from shared.domain.wire import WireModel

log = logging.getLogger(__name__)

_ALIVE = {
    df.OrchestrationRuntimeStatus.Running,
    df.OrchestrationRuntimeStatus.Pending,
    df.OrchestrationRuntimeStatus.ContinuedAsNew,
}


async def wake_machine_orchestration(
    client: df.DurableOrchestrationClient,
    machine_id: str,
    event_name: str,
    signal: WireModel,
    *,
    only_if_not_running: bool = False,
) -> str:
    """Returns "raised", "started" or "running". The orchestration re-reads its work from Cosmos either
    way, so the signal is informative only and a duplicate wake-up is harmless; `only_if_not_running`
    spares a running instance a wake-up it already had (a client retrying the same request)."""
    instance_id = machine_instance_id(machine_id)
    payload = signal.to_wire()
    status = await client.get_status(instance_id)
    if status is not None and status.runtime_status in _ALIVE:
        if only_if_not_running:
            return "running"
        try:
            await client.raise_event(instance_id, event_name, payload)
            return "raised"
        except Exception as exc:  # it finished between the two calls: start a new one below
            log.info("instance %s ended before %s could be raised: %s", instance_id, event_name, exc)
    try:
        await client.start_new(
            MACHINE_REPLICATION, instance_id=instance_id, client_input={"machineId": machine_id, **payload}
        )
        return "started"
    except Exception as exc:
        # Another trigger started it a moment ago (409): the running instance gets the event instead.
        log.info("instance %s was started concurrently (%s); raising %s", instance_id, exc, event_name)
        await client.raise_event(instance_id, event_name, payload)
        return "raised"
