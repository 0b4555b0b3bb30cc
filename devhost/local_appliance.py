"""An appliance registered against a running local stack, with its clients wired to the stack's
endpoints: the HTTP API, the Event Grid topic, and the cache and replica containers. Used by the demo,
the end-to-end tests and the benchmarks, which all act as an appliance would."""

from __future__ import annotations

import json
from dataclasses import dataclass

from azure.core.credentials import AzureKeyCredential
from azure.storage.blob import BlobServiceClient, ContainerClient

from appliance.control_plane import ApplianceApi, ApplianceEvents, Registration
from devhost.stack import LocalStack
from shared.platform.storage import CACHE_CONTAINER, REPLICA_CONTAINER


@dataclass
class LocalAppliance:
    api: ApplianceApi
    registration: Registration
    events: ApplianceEvents
    cache: ContainerClient
    replicas: ContainerClient


def function_key(stack: LocalStack) -> str:
    keys = json.loads((stack.data_dir / "host" / "keys.json").read_text())
    return str(keys["function_default"])


def register_local_appliance(
    stack: LocalStack, *, name: str, kind: str = "vmware", site: str = "dc1"
) -> LocalAppliance:
    settings = stack.settings
    api, registration = ApplianceApi.register(
        stack.functions_url, function_key(stack), name=name, kind=kind, site=site
    )
    events = ApplianceEvents(
        settings["EVENTGRID_TOPIC_ENDPOINT"],
        AzureKeyCredential(settings["EVENTGRID_TOPIC_KEY"]),
        registration.appliance_id,
    )
    cache = BlobServiceClient.from_connection_string(
        settings["CACHE_STORAGE_CONNECTION_STRING"]
    ).get_container_client(CACHE_CONTAINER)
    if not cache.exists():
        cache.create_container()
    replicas = BlobServiceClient.from_connection_string(
        settings["REPLICA_STORAGE_CONNECTION_STRING"]
    ).get_container_client(REPLICA_CONTAINER)
    return LocalAppliance(api=api, registration=registration, events=events, cache=cache, replicas=replicas)
