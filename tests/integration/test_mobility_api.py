"""The Mobility routes through the registered functions, with the installer catalog on Azurite: upload
and list installers (checksum and size kept with the blob, bad names and truncated uploads never
stored), resolve an OS against the catalog, a machine's install command, the passphrase and agent
registration."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from devhost.emulators import EmulatorEndpoints
from shared.appliances.credentials import CredentialHasher
from shared.bootstrap import Services, use_services
from shared.domain.machine import Machine
from shared.mobility.installers import INSTALLERS_CONTAINER, MAX_INSTALLER_BYTES
from shared.platform.repository import Repositories
from shared.platform.settings import Settings
from tests.support.memory_store import InMemoryDocumentStore
from tests.unit.test_api_http import ADMINISTRATOR_TOKEN, FUNCTIONS, TENANT, machine_json

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 2, 16, 0, tzinfo=UTC)
UBUNTU = "Microsoft-ASR_UA_9.56.0.0_UBUNTU-20.04-64_GA_20230525_release.tar.gz"
WINDOWS = "Microsoft-ASR_UA_9.56.0.0_Windows_GA_20230525_release.exe"


@pytest.fixture
def installers(emulators: EmulatorEndpoints) -> Iterator[ContainerClient]:
    service = BlobServiceClient.from_connection_string(emulators.storage_connection_string)
    container = service.get_container_client(INSTALLERS_CONTAINER)
    if container.exists():
        container.delete_container()
    yield container
    if container.exists():
        container.delete_container()


@pytest.fixture
def services(emulators: EmulatorEndpoints, installers: ContainerClient) -> Iterator[Services]:
    built = Services(
        settings=Settings.from_environ(
            {
                "COSMOS_ENDPOINT": "https://127.0.0.1:1/",
                "CACHE_STORAGE_CONNECTION_STRING": emulators.storage_connection_string,
                "REPLICA_STORAGE_CONNECTION_STRING": emulators.storage_connection_string,
                "EVENTGRID_TOPIC_ENDPOINT": "http://127.0.0.1:1/",
                "APPLIANCE_CREDENTIAL_PEPPER": "unused",
            }
        ),
        repos=Repositories(InMemoryDocumentStore()),
        hasher=CredentialHasher(b"mobility-api-pepper-0123456", n=2**12),
        clock=lambda: NOW,
    )
    service = BlobServiceClient.from_connection_string(emulators.storage_connection_string)
    built.replicas = service.get_container_client(f"replicas-{uuid.uuid4().hex[:10]}")
    built.operator_auth = TENANT.validator()
    with use_services(built):
        yield built


def call(
    name: str,
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    route: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, Any, func.HttpResponse]:
    # Operator routes need a token: an Administrator's, unless the test sends its own Authorization.
    headers = {"Authorization": f"Bearer {ADMINISTRATOR_TOKEN}", **(headers or {})}
    req = func.HttpRequest(
        method, url, headers=headers, params=params or {}, route_params=route or {}, body=body
    )
    response = FUNCTIONS[name].get_user_function()(req=req)
    payload = json.loads(response.get_body()) if response.get_body() else None
    return response.status_code, payload, response


def upload(name: str, data: bytes, length: int | None = None) -> tuple[int, Any, func.HttpResponse]:
    headers = {"Content-Type": "application/octet-stream"}
    if length is not None:
        headers["Content-Length"] = str(length)
    return call(
        "upload_mobility_installer",
        "PUT",
        f"/api/mobility/installers/{name}",
        body=data,
        headers=headers,
        route={"fileName": name},
    )


def test_upload_keeps_checksum_and_size_and_the_catalog_lists_it(
    services: Services, installers: ContainerClient
) -> None:
    # More than one 8 MiB block, so the staged blocks are committed in order.
    data = os.urandom(9 * 1024 * 1024 + 17)
    status, body, _ = upload(UBUNTU, data, len(data))
    assert status == 201, body
    digest = hashlib.sha256(data).hexdigest()
    assert (body["os"], body["version"], body["kind"], body["sizeBytes"], body["sha256"]) == (
        "UBUNTU-20.04-64",
        "9.56.0.0",
        "tar.gz",
        len(data),
        digest,
    )
    blob = installers.get_blob_client(UBUNTU)
    assert blob.download_blob().readall() == data
    assert blob.get_blob_properties().metadata["sha256"] == digest
    small = b"MZ" + os.urandom(1000)
    assert upload(WINDOWS, small, len(small))[0] == 201

    status, listed, _ = call("list_mobility_installers", "GET", "/api/mobility/installers")
    assert status == 200
    assert [(i["fileName"], i["os"], i["sizeBytes"], i["sha256"]) for i in listed["installers"]] == [
        (WINDOWS, "Windows", len(small), hashlib.sha256(small).hexdigest()),
        (UBUNTU, "UBUNTU-20.04-64", len(data), digest),
    ]
    assert listed["installers"][0]["uploadedAt"].startswith("2026-12-02T16:00:00")


def test_bad_names_missing_length_and_truncated_uploads_store_nothing(
    services: Services, installers: ContainerClient
) -> None:
    status, body, _ = upload("MobilityServiceInstaller.exe", b"x", 1)
    assert status == 400 and "Microsoft-ASR_UA_<version>_<OS>_GA_<date>_release" in body["error"]["message"]
    assert "Microsoft-ASR_UA_9.56.0.0_UBUNTU-20.04-64_GA_20230525_release.tar.gz" in body["error"]["message"]
    status, body, _ = upload(UBUNTU, b"data", None)
    assert status == 400 and body["error"]["details"][0]["field"] == "Content-Length"
    assert upload(UBUNTU, b"data", MAX_INSTALLER_BYTES + 1)[0] == 400
    status, body, _ = upload(UBUNTU, b"only part", 1000)
    assert status == 400 and "Content-Length said 1000" in body["error"]["message"]
    status, body, _ = upload(UBUNTU, b"more than said", 4)
    assert status == 400 and "more than the 4 bytes" in body["error"]["message"]
    assert not installers.exists() or not list(installers.list_blobs())
    assert call("list_mobility_installers", "GET", "/api/mobility/installers")[1] == {"installers": []}


def resolve(os_name: str) -> tuple[int, Any, func.HttpResponse]:
    return call(
        "resolve_mobility_installer",
        "GET",
        "/api/mobility/installers/resolve",
        params={"os": os_name, "code": "k"},
    )


def test_resolve_names_the_catalog_installer_or_says_none_or_not_supported(services: Services) -> None:
    data = os.urandom(2048)
    upload(UBUNTU, data, len(data))
    status, body, _ = resolve("Ubuntu 20.04.6 LTS")
    assert status == 200
    assert (body["installerOs"], body["catalogStatus"], body["installer"]["fileName"]) == (
        "UBUNTU-20.04-64",
        "available",
        UBUNTU,
    )
    status, body, _ = resolve("Debian GNU/Linux 7 (wheezy)")
    assert status == 200 and body["catalogStatus"] == "noneUploaded" and body["placedByHand"] is True
    assert body["installer"] is None and any("9.36" in line for line in body["instructions"])
    status, body, _ = resolve("Windows Server 2019 Datacenter")
    assert status == 400 and body["error"]["code"] == "OsNotSupported"
    assert "Windows Server 2016" in body["error"]["message"]
    assert call("resolve_mobility_installer", "GET", "/api/mobility/installers/resolve")[0] == 400


def test_install_command_for_a_reported_machine(services: Services) -> None:
    data = os.urandom(2048)
    upload(UBUNTU, data, len(data))
    services.repos.machines.add(
        Machine.model_validate(
            {
                "id": "m-ubuntu",
                "applianceId": "appl-1",
                "inventory": {k: v for k, v in machine_json("m-ubuntu").items() if k != "id"},
                "discoveredAt": NOW.isoformat(),
                "updatedAt": NOW.isoformat(),
            }
        )
    )
    url = "/api/machines/m-ubuntu/mobility/install-command"
    params = {"csEndpoint": "10.1.0.4", "passphraseFilePath": "/var/passphrase.txt", "code": "key"}
    status, body, _ = call(
        "get_mobility_install_command", "GET", url, route={"machineId": "m-ubuntu"}, params=params
    )
    assert status == 200, body
    assert [line for step in body["steps"] for line in step["commands"]] == [
        "cd /tmp",
        f"tar -xvf {UBUNTU}",
        "sudo ./install -d /usr/local/ASR -r MS -v VmWare -q",
        "sudo /usr/local/ASR/Vx/bin/UnifiedAgentConfigurator.sh -i 10.1.0.4 -P /var/passphrase.txt",
    ]
    status, body, _ = call(
        "get_mobility_install_command",
        "GET",
        url,
        route={"machineId": "m-ubuntu"},
        params={**params, "role": "Agent"},
    )
    assert status == 400 and "9.48" in body["error"]["details"][0]["problem"]
    status, body, _ = call(
        "get_mobility_install_command", "GET", url, route={"machineId": "m-ubuntu"}, params={"code": "key"}
    )
    assert status == 400 and {d["field"] for d in body["error"]["details"]} == {
        "csEndpoint",
        "passphraseFilePath",
    }
    missing = "/api/machines/m-none/mobility/install-command"
    assert (
        call("get_mobility_install_command", "GET", missing, route={"machineId": "m-none"}, params=params)[0]
        == 404
    )


def register(body: dict[str, Any]) -> tuple[int, Any, func.HttpResponse]:
    return call(
        "register_mobility_agent",
        "POST",
        "/api/mobility/agents/register",
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )


def test_passphrase_shown_once_rotation_and_agent_registration(services: Services) -> None:
    assert call("get_mobility_passphrase", "GET", "/api/mobility/passphrase")[1] == {
        "exists": False,
        "setAt": None,
        "generation": None,
    }
    status, first, response = call("rotate_mobility_passphrase", "POST", "/api/mobility/passphrase")
    assert status == 201 and response.headers["Cache-Control"] == "no-store"
    status, state, _ = call("get_mobility_passphrase", "GET", "/api/mobility/passphrase")
    assert state == {"exists": True, "setAt": "2026-12-02T16:00:00Z", "generation": 1}
    identity = {"hostname": "db01", "biosUuid": "4c4c4544-0042-3510-8052-b4c04f4d4e31"}

    status, _, response = register({"passphrase": "not-it", **identity})
    assert status == 401 and response.headers.get("WWW-Authenticate")
    status, agent, response = register({"passphrase": first["passphrase"], **identity})
    assert status == 201 and response.headers["Cache-Control"] == "no-store"
    assert agent["credential"].startswith(agent["agentId"] + ".") and agent["hostname"] == "db01"

    status, second, _ = call("rotate_mobility_passphrase", "POST", "/api/mobility/passphrase")
    assert second["replacedPrevious"] is True and second["passphrase"] != first["passphrase"]
    assert register({"passphrase": first["passphrase"], **identity})[0] == 401
    assert register({"passphrase": second["passphrase"], **identity})[0] == 201
    assert register({"passphrase": second["passphrase"], "hostname": "db01"})[0] == 400
