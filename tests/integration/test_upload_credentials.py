"""Upload credentials on Azurite: the route's SAS URLs write exactly the named blobs of the appliance's own
machine's cycle, and can read, list, delete or write nothing else.

The local stack signs service SAS with the emulator's account key (Azure uses user-delegation SAS); the
scope, permissions and expiry under test are the same, and Azurite enforces them like Azure does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobBlock, BlobClient, BlobServiceClient, ContainerClient

from appliance.upload import CycleUpload, DiskCycle, SasDestination, upload_cycle
from devhost.emulators import EmulatorEndpoints
from shared.appliances.credentials import CredentialHasher
from shared.bootstrap import Services, use_services
from shared.domain.cycle import CycleKind
from shared.platform.repository import Repositories
from shared.platform.settings import Settings
from tests.support.memory_store import InMemoryDocumentStore
from tests.unit.test_api_http import TENANT, call, machine_json, register, report

pytestmark = pytest.mark.integration


@pytest.fixture
def cache(emulators: EmulatorEndpoints) -> Iterator[ContainerClient]:
    service = BlobServiceClient.from_connection_string(emulators.storage_connection_string)
    container = service.get_container_client(f"uploads-{uuid.uuid4().hex[:10]}")
    container.create_container()
    yield container
    container.delete_container()


@pytest.fixture
def services(emulators: EmulatorEndpoints, cache: ContainerClient) -> Iterator[Services]:
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
        hasher=CredentialHasher(b"sas-test-pepper-0123456789", n=2**12),
        clock=lambda: datetime.now(UTC),
    )
    built.cache = cache
    # Registering the appliance is an operator (Administrator) route: the tests' tenant validates its token.
    built.operator_auth = TENANT.validator()
    with use_services(built):
        yield built


def issue(appliance_id: str, credential: str, machine_id: str, cycle_id: str, blobs: list[str]) -> Any:
    return call(
        "issue_upload_credentials",
        "POST",
        f"/api/appliances/{appliance_id}/upload-credentials",
        body={"machineId": machine_id, "cycleId": cycle_id, "blobs": blobs},
        route={"applianceId": appliance_id},
        credential=credential,
    )


def refused(action: Any) -> int:
    with pytest.raises(HttpResponseError) as caught:
        action()
    assert caught.value.status_code is not None
    return caught.value.status_code


def test_the_sas_writes_only_its_own_blob_and_cannot_read_list_or_delete(
    services: Services, cache: ContainerClient
) -> None:
    appliance_id, credential = register("a")
    assert report(appliance_id, credential, machine_json("vm-a"), machine_json("vm-a2"))[0] == 200
    mine = "vm-a/c-1/sda/data-00000.bin"
    status, body, response = issue(
        appliance_id, credential, "vm-a", "c-1", [mine, "vm-a/c-1/sda/manifest.json"]
    )
    assert status == 200, body
    assert response.headers["Cache-Control"] == "no-store"
    assert body["permissions"] == "cw" and set(body["blobs"]) == {mine, "vm-a/c-1/sda/manifest.json"}
    url = body["blobs"][mine]
    assert "sr=b" in url and "sp=cw" in url

    blob = BlobClient.from_blob_url(url)
    blob.stage_block("AAAA", b"x" * 1024)
    blob.commit_block_list([BlobBlock(block_id="AAAA")])
    blob.upload_blob(b"y" * 512, overwrite=True)  # a retried upload rewrites its own blob
    assert cache.get_blob_client(mine).download_blob().readall() == b"y" * 512

    assert refused(lambda: blob.download_blob().readall()) == 403
    assert refused(blob.get_blob_properties) == 403
    assert refused(blob.delete_blob) == 403
    token = url.split("?", 1)[1]
    as_container = ContainerClient.from_container_url(f"{cache.url}?{token}")
    assert refused(lambda: list(as_container.list_blobs())) == 403

    # The same token on any other name: another cycle, another machine of this appliance, or another's.
    cache.get_blob_client("vm-b/c-9/sda/data-00000.bin").upload_blob(b"theirs")
    for other in (
        "vm-a/c-2/sda/data-00000.bin",
        "vm-a2/c-1/sda/data-00000.bin",
        "vm-b/c-9/sda/data-00000.bin",
    ):
        stolen = BlobClient.from_blob_url(f"{cache.url}/{other}?{token}")
        assert refused(lambda b=stolen: b.upload_blob(b"z", overwrite=True)) == 403
        assert refused(lambda b=stolen: b.download_blob().readall()) == 403
    assert cache.get_blob_client("vm-b/c-9/sda/data-00000.bin").download_blob().readall() == b"theirs"


def test_only_the_owning_appliance_gets_credentials_and_only_inside_the_cycle(services: Services) -> None:
    a_id, a_cred = register("a")
    b_id, b_cred = register("b")
    assert report(a_id, a_cred, machine_json("vm-a"))[0] == 200
    status, body, _ = issue(b_id, b_cred, "vm-a", "c-1", ["vm-a/c-1/sda/data-00000.bin"])
    assert status == 403 and body["error"]["details"] == [{"machineId": "vm-a"}]
    status, body, _ = issue(a_id, b_cred, "vm-a", "c-1", ["vm-a/c-1/sda/data-00000.bin"])
    assert status == 403
    status, body, _ = issue(a_id, a_cred, "vm-unknown", "c-1", ["vm-unknown/c-1/sda/data-00000.bin"])
    assert status == 404
    status, body, _ = issue(a_id, None, "vm-a", "c-1", ["vm-a/c-1/sda/data-00000.bin"])  # type: ignore[arg-type]
    assert status == 401
    outside = [
        "vm-a/c-2/sda/data-00000.bin",
        "vm-a/c-1/../../vm-b/x/y",
        "vm-a/c-1/sda/sub/data.bin",
        "vm-a/c-1/data.bin",
        "vm-a/c-1//data.bin",
        "vm-a/c-1/sda/%2e%2e",
    ]
    status, body, _ = issue(a_id, a_cred, "vm-a", "c-1", ["vm-a/c-1/sda/manifest.json", *outside])
    assert status == 400
    assert [d["field"] for d in body["error"]["details"]] == [
        f"blobs[{i}]" for i in range(1, len(outside) + 1)
    ]
    status, body, _ = issue(a_id, a_cred, "vm-a", "c-1", [])
    assert status == 400


def test_an_appliance_uploads_a_cycle_with_the_issued_credentials_only(
    services: Services, cache: ContainerClient
) -> None:
    appliance_id, credential = register("a")
    assert report(appliance_id, credential, machine_json("vm-a"))[0] == 200

    class Api:
        """The appliance's API client, answered by the route in-process."""

        calls = 0

        def upload_credentials(self, machine_id: str, cycle_id: str, blobs: list[str]) -> dict[str, Any]:
            Api.calls += 1
            status, body, _ = issue(appliance_id, credential, machine_id, cycle_id, blobs)
            assert status == 200, body
            issued: dict[str, Any] = body
            return issued

    data = bytes(range(256)) * 64 * 1024  # 16 MiB: several 4 MiB blocks
    source = _Bytes(data)
    manifests = upload_cycle(
        SasDestination(Api()),
        CycleUpload(
            machine_id="vm-a",
            cycle_id="c-1",
            sequence=0,
            kind=CycleKind.INITIAL,
            disks=[DiskCycle(disk_id="sda", disk_size=len(data), ranges=[(0, len(data))], source=source)],
        ),
    )
    assert manifests == ["vm-a/c-1/sda/manifest.json"]
    assert Api.calls == 1  # one request covers the whole cycle
    written = sorted(b.name for b in cache.list_blobs(name_starts_with="vm-a/c-1/"))
    assert "vm-a/c-1/sda/manifest.json" in written and "vm-a/c-1/sda/data-00000.bin" in written


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]
