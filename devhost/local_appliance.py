"""An appliance registered against a running local stack, with its clients wired to the stack's
endpoints: the HTTP API, the Event Grid topic, and the write-only upload SAS the API issues. Used by the
demo, the end-to-end tests and the benchmarks, which all act as an appliance would.

The appliance holds no storage key: what the demos and tests read back to check a result (the replicas,
the cache's blobs) comes from `StackStorage`, the control plane's side of the emulator, never from the
appliance."""

from __future__ import annotations

import json
from dataclasses import dataclass

from azure.core.credentials import AzureKeyCredential
from azure.storage.blob import BlobServiceClient, ContainerClient

from appliance.control_plane import ApplianceApi, ApplianceEvents, Registration
from appliance.upload import SasDestination
from devhost.stack import LocalStack
from shared.platform.storage import CACHE_CONTAINER, REPLICA_CONTAINER


@dataclass
class LocalAppliance:
    api: ApplianceApi
    registration: Registration
    events: ApplianceEvents
    uploads: SasDestination


@dataclass
class StackStorage:
    """The stack's containers with the emulator's account key: for checking results, not for appliances."""

    cache: ContainerClient
    replicas: ContainerClient


def function_key(stack: LocalStack) -> str:
    keys = json.loads((stack.data_dir / "host" / "keys.json").read_text())
    return str(keys["function_default"])


def stack_storage(stack: LocalStack) -> StackStorage:
    settings = stack.settings
    cache = BlobServiceClient.from_connection_string(
        settings["CACHE_STORAGE_CONNECTION_STRING"]
    ).get_container_client(CACHE_CONTAINER)
    replicas = BlobServiceClient.from_connection_string(
        settings["REPLICA_STORAGE_CONNECTION_STRING"]
    ).get_container_client(REPLICA_CONTAINER)
    return StackStorage(cache=cache, replicas=replicas)


def local_appliance(stack: LocalStack, api: ApplianceApi, registration: Registration) -> LocalAppliance:
    """The clients of an appliance already registered (its API client carries the credential)."""
    settings = stack.settings
    events = ApplianceEvents(
        settings["EVENTGRID_TOPIC_ENDPOINT"],
        AzureKeyCredential(settings["EVENTGRID_TOPIC_KEY"]),
        registration.appliance_id,
    )
    return LocalAppliance(api=api, registration=registration, events=events, uploads=SasDestination(api))


def register_local_appliance(
    stack: LocalStack, *, name: str, kind: str = "vmware", site: str = "dc1"
) -> LocalAppliance:
    api, registration = ApplianceApi.register(
        stack.functions_url,
        function_key(stack),
        name=name,
        kind=kind,
        site=site,
        operator_token=stack.operator_token(),
    )
    # The app creates the cache container when its worker starts; a fresh stack may not have run one yet.
    cache = stack_storage(stack).cache
    if not cache.exists():
        cache.create_container()
    return local_appliance(stack, api, registration)
