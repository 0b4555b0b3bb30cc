"""Read access to managed disks and snapshots, and their page-range diffs, with the real SDKs.

azure-mgmt-compute's `begin_grant_access`/`begin_revoke_access` against the local ARM endpoint, and
azure-storage-blob's `BlobClient.from_blob_url(sas)` against the data plane its SAS URLs name.
"""

from __future__ import annotations

import os
import re
import stat
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from itertools import chain
from urllib.parse import unquote

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import models as cm
from azure.storage.blob import BlobClient

from devhost.arm import access
from shared.failback import snapshot_diff
from shared.failback.snapshot_diff import ChangedRange, RangeOp
from shared.migration import resources as ops
from shared.migration.tags import ResourceTags
from shared.platform.arm_clients import ArmClients
from tests.arm.conftest import LOCATION, LocalArmEndpoint
from tests.support import arm_operations as support
from tests.support.guest_disk import guest_trim, guest_write

pytestmark = pytest.mark.integration

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
STORAGE_VERSION = "2021-08-06"


@dataclass
class GuestVm:
    name: str
    data_disk_id: str


def _empty_disk(clients: ArmClients, rg: str, name: str, size_gb: int = 1) -> str:
    disk = clients.compute.disks.begin_create_or_update(
        rg,
        name,
        cm.Disk(
            location=LOCATION,
            properties=cm.DiskProperties(
                creation_data=cm.CreationData(create_option="Empty"), disk_size_gb=size_gb
            ),
        ),
    ).result()
    return str(disk.id)


def _running_vm(clients: ArmClients, rg: str, tags: ResourceTags) -> GuestVm:
    vnet = ops.ensure_virtual_network(
        clients,
        rg,
        "vnet",
        location=LOCATION,
        address_prefix="10.30.0.0/24",
        subnet_name="default",
        subnet_prefix="10.30.0.0/26",
        tags=tags,
    )
    nic = ops.ensure_network_interface(
        clients,
        rg,
        "nic-guest",
        location=LOCATION,
        subnet_id=vnet.subnet_id,
        network_security_group_id=None,
        tags=tags,
    )
    data_disk = _empty_disk(clients, rg, "guest-data")
    ops.ensure_vm_from_disks(
        clients,
        rg,
        "guest",
        location=LOCATION,
        size="Standard_B2s",
        nic_id=nic.id,
        os_disk_id=_empty_disk(clients, rg, "guest-os"),
        os_type="Linux",
        data_disk_ids=[data_disk],
        tags=tags,
    )
    return GuestVm("guest", data_disk)


def _snapshot(clients: ArmClients, rg: str, name: str, disk_id: str, tags: ResourceTags, **kw: bool) -> str:
    return support.create_snapshot(
        clients, rg, name, location=LOCATION, source_disk_id=disk_id, tags=tags, **kw
    ).id


def _grant(clients: ArmClients, rg: str, name: str, seconds: int = 300) -> str:
    granted = clients.compute.snapshots.begin_grant_access(
        rg, name, cm.GrantAccessData(access="Read", duration_in_seconds=seconds)
    ).result()
    return str(granted.access_sas)


def _state(clients: ArmClients, rg: str, name: str) -> object:
    return clients.compute.snapshots.get(rg, name).properties.disk_state  # a str enum


def _code(error: HttpResponseError) -> object:
    """The service's error code: the storage SDK's `error_code` (a str enum), or ARM's `error.code`."""
    code = getattr(error, "error_code", None)
    return code if code else (error.error.code if error.error else None)


def test_grant_read_and_end_access(
    clients: ArmClients, resource_group: str, tags: ResourceTags, local_arm: LocalArmEndpoint
) -> None:
    rg = resource_group
    vm = _running_vm(clients, rg, tags)
    marker = os.urandom(64 * KIB)
    guest_write(local_arm.admin, vm.data_disk_id, 3 * MIB, marker)
    _snapshot(clients, rg, "s0", vm.data_disk_id, tags)
    view = clients.compute.snapshots.get(rg, "s0").properties
    assert view.disk_state == "Unattached" and view.incremental and view.incremental_snapshot_family_id
    assert view.disk_size_bytes == GIB and view.unique_id and view.time_created

    sas = _grant(clients, rg, "s0")
    assert re.search(r"/md-[0-9a-f]+/[0-9a-f]+/abcd\?sv=[\d-]+&sr=b&si=[\w-]+&sig=", sas)
    assert _state(clients, rg, "s0") == "ActiveSAS"
    blob = BlobClient.from_blob_url(sas)
    props = blob.get_blob_properties()
    assert props.size == GIB and props.blob_type == "PageBlob"
    assert blob.download_blob(offset=3 * MIB, length=len(marker)).readall() == marker
    assert blob.download_blob(offset=3 * MIB - 512, length=1024).readall() == bytes(512) + marker[:512]
    # The snapshot is a point in time: later writes to the disk do not show through it.
    guest_write(local_arm.admin, vm.data_disk_id, 3 * MIB, b"\xff" * 512)
    assert blob.download_blob(offset=3 * MIB, length=512).readall() == marker[:512]

    with pytest.raises(HttpResponseError) as write:
        blob.upload_page(bytes(512), offset=0, length=512)
    assert write.value.status_code == 403 and _code(write.value) == "AuthorizationPermissionMismatch"
    with pytest.raises(HttpResponseError) as tampered:
        BlobClient.from_blob_url(re.sub(r"sig=[^&]+", "sig=AAAA", sas)).get_blob_properties()
    assert tampered.value.status_code == 403
    unversioned = httpx.get(sas, headers={"x-ms-range": "bytes=0-511"})
    assert unversioned.status_code == 400
    assert unversioned.headers["x-ms-error-code"] == "MissingRequiredHeader"
    assert "<Code>MissingRequiredHeader</Code>" in unversioned.text
    ranged = httpx.get(
        sas, headers={"Range": f"bytes={3 * MIB}-{3 * MIB + 9}", "x-ms-version": STORAGE_VERSION}
    )
    assert ranged.status_code == 206 and ranged.content == marker[:10]
    assert ranged.headers["Content-Range"] == f"bytes {3 * MIB}-{3 * MIB + 9}/{GIB}"
    beyond = httpx.get(sas, headers={"x-ms-range": f"bytes={GIB}-", "x-ms-version": STORAGE_VERSION})
    assert beyond.status_code == 416 and beyond.headers["x-ms-error-code"] == "InvalidRange"

    clients.compute.snapshots.begin_revoke_access(rg, "s0").result()
    assert _state(clients, rg, "s0") == "Unattached"
    with pytest.raises(HttpResponseError) as revoked:
        blob.download_blob(offset=0, length=512).readall()
    assert revoked.value.status_code == 403 and _code(revoked.value) == "AuthenticationFailed"
    clients.compute.snapshots.begin_revoke_access(rg, "s0").result()  # ending twice is harmless

    # A SAS ends by itself at the end of its duration.
    short = BlobClient.from_blob_url(_grant(clients, rg, "s0", seconds=1))
    assert short.get_blob_properties().size == GIB
    time.sleep(1.2)
    with pytest.raises(HttpResponseError) as expired:
        short.get_blob_properties()
    assert expired.value.status_code == 403
    assert _state(clients, rg, "s0") == "Unattached"

    # A disk of a running VM cannot be read at all (Azure's Conflict); deallocated, it can.
    with pytest.raises(HttpResponseError) as running:
        clients.compute.disks.begin_grant_access(
            rg, "guest-data", cm.GrantAccessData(access="Read", duration_in_seconds=60)
        )
    assert running.value.status_code == 409
    assert "currently attached to running VM" in str(running.value.message)
    clients.compute.virtual_machines.begin_deallocate(rg, vm.name).result()
    disk_sas = clients.compute.disks.begin_grant_access(
        rg, "guest-data", cm.GrantAccessData(access="Read", duration_in_seconds=60)
    ).result()
    assert clients.compute.disks.get(rg, "guest-data").properties.disk_state == "ActiveSAS"
    disk_blob = BlobClient.from_blob_url(str(disk_sas.access_sas))
    assert disk_blob.download_blob(offset=3 * MIB, length=512).readall() == b"\xff" * 512
    with pytest.raises(HttpResponseError) as upload:
        clients.compute.disks.begin_grant_access(
            rg, "guest-data", cm.GrantAccessData(access="Write", duration_in_seconds=60)
        )
    # Write goes only to a disk created for upload (createOption Upload), never to a disk with data.
    assert upload.value.status_code == 409 and "created for upload" in str(upload.value)
    # While the disk is exported its VM does not start.
    with pytest.raises(HttpResponseError) as start:
        clients.compute.virtual_machines.begin_start(rg, vm.name)
    assert start.value.status_code == 409 and "active SAS" in str(start.value)
    clients.compute.disks.begin_revoke_access(rg, "guest-data").result()
    assert clients.compute.disks.get(rg, "guest-data").properties.disk_state == "Reserved"
    with pytest.raises(httpx.HTTPStatusError) as stopped:
        guest_write(local_arm.admin, vm.data_disk_id, 0, bytes(512))
    assert stopped.value.response.status_code == 409


def test_a_disk_with_an_active_sas_is_not_deleted(clients: ArmClients, resource_group: str) -> None:
    _empty_disk(clients, resource_group, "exported")
    clients.compute.disks.begin_grant_access(
        resource_group, "exported", cm.GrantAccessData(access="Read", duration_in_seconds=60)
    ).result()
    with pytest.raises(HttpResponseError) as delete:
        clients.compute.disks.begin_delete(resource_group, "exported")
    assert delete.value.status_code == 409 and "active SAS" in str(delete.value)
    clients.compute.disks.begin_revoke_access(resource_group, "exported").result()
    clients.compute.disks.begin_delete(resource_group, "exported").result()


@dataclass
class Diffed:
    vm: GuestVm
    s0: str
    s1: str
    expected: list[ChangedRange]


@pytest.fixture()
def diffed(
    clients: ArmClients, resource_group: str, tags: ResourceTags, local_arm: LocalArmEndpoint
) -> Iterator[Diffed]:
    """Two incremental snapshots of a disk, and between them: an overwrite in the middle of data, new
    data, and a trim of earlier data."""
    rg = resource_group
    vm = _running_vm(clients, rg, tags)
    guest_write(local_arm.admin, vm.data_disk_id, 0, os.urandom(2 * MIB))
    guest_write(local_arm.admin, vm.data_disk_id, 10 * MIB, os.urandom(64 * KIB))
    s0 = _snapshot(clients, rg, "s0", vm.data_disk_id, tags)
    guest_write(local_arm.admin, vm.data_disk_id, MIB + 512, os.urandom(4 * KIB + 512))
    guest_write(local_arm.admin, vm.data_disk_id, 20 * MIB, os.urandom(8 * KIB))
    guest_trim(local_arm.admin, vm.data_disk_id, 10 * MIB, 64 * KIB)
    s1 = _snapshot(clients, rg, "s1", vm.data_disk_id, tags)
    yield Diffed(
        vm,
        s0,
        s1,
        [
            ChangedRange(offset=MIB + 512, length=4 * KIB + 512, op=RangeOp.WRITE),
            ChangedRange(offset=10 * MIB, length=64 * KIB, op=RangeOp.ZERO),
            ChangedRange(offset=20 * MIB, length=8 * KIB, op=RangeOp.WRITE),
        ],
    )


def test_page_range_diff_is_what_the_guest_wrote(
    clients: ArmClients, resource_group: str, tags: ResourceTags, diffed: Diffed
) -> None:
    rg = resource_group
    s0_sas, s1_sas = _grant(clients, rg, "s0"), _grant(clients, rg, "s1")
    s1 = BlobClient.from_blob_url(s1_sas)
    written, cleared = s1.get_page_range_diff_for_managed_disk(s0_sas)
    assert written == [
        {"start": MIB + 512, "end": MIB + 512 + 4 * KIB + 512 - 1},
        {"start": 20 * MIB, "end": 20 * MIB + 8 * KIB - 1},
    ]
    assert cleared == [{"start": 10 * MIB, "end": 10 * MIB + 64 * KIB - 1}]
    # A window of the disk: only the ranges inside it.
    assert s1.get_page_range_diff_for_managed_disk(s0_sas, offset=16 * MIB, length=8 * MIB) == (
        [{"start": 20 * MIB, "end": 20 * MIB + 8 * KIB - 1}],
        [],
    )
    # The written bytes read back through the newer snapshot are the disk's.
    s0 = BlobClient.from_blob_url(s0_sas)
    assert s1.download_blob(offset=10 * MIB, length=64 * KIB).readall() == bytes(64 * KIB)
    assert s0.download_blob(offset=10 * MIB, length=64 * KIB).readall() != bytes(64 * KIB)

    # Segments: one range per answer, continued with NextMarker, the same ranges in order.
    seen: list[tuple[str, int, int]] = []
    marker = ""
    for _ in range(10):
        answer = httpx.get(
            f"{s1_sas}&comp=pagelist&maxresults=1" + (f"&marker={marker}" if marker else ""),
            headers={"x-ms-version": STORAGE_VERSION, "x-ms-previous-snapshot-url": s0_sas},
        )
        assert answer.status_code == 200, answer.text
        root = ET.fromstring(answer.content)
        seen += [(r.tag, int(r.findtext("Start") or -1), int(r.findtext("End") or -1)) for r in root]
        seen = [s for s in seen if s[0] != "NextMarker"]
        marker = root.findtext("NextMarker") or ""
        if not marker:
            break
    assert [(tag, start) for tag, start, _ in seen] == [
        ("PageRange", MIB + 512),
        ("ClearRange", 10 * MIB),
        ("PageRange", 20 * MIB),
    ]
    segments = list(snapshot_diff.diff_segments(s1, s0_sas, segment_ranges=2))
    assert [len(s) for s in segments] == [2, 1] and list(chain(*segments)) == diffed.expected

    # Refusals: an older target, another disk's family, a full snapshot, an ended previous SAS.
    with pytest.raises(HttpResponseError) as newer:
        s0.get_page_range_diff_for_managed_disk(s1_sas)
    assert newer.value.status_code == 400 and _code(newer.value) == "PreviousSnapshotCannotBeNewer"
    other = _empty_disk(clients, rg, "other")
    _snapshot(clients, rg, "other-s0", other, tags)
    with pytest.raises(HttpResponseError) as family:
        s1.get_page_range_diff_for_managed_disk(_grant(clients, rg, "other-s0"))
    assert family.value.status_code == 409
    assert _code(family.value) == "PreviousSnapshotOperationNotSupported"
    _snapshot(clients, rg, "full", diffed.vm.data_disk_id, tags, incremental=False)
    with pytest.raises(HttpResponseError) as full:
        s1.get_page_range_diff_for_managed_disk(_grant(clients, rg, "full"))
    assert _code(full.value) == "PreviousSnapshotOperationNotSupported"
    clients.compute.snapshots.begin_revoke_access(rg, "s0").result()
    with pytest.raises(HttpResponseError) as ended:
        s1.get_page_range_diff_for_managed_disk(s0_sas)
    assert ended.value.status_code == 409 and _code(ended.value) == "PreviousSnapshotNotFound"


def test_failback_adapter_streams_the_diff_and_ends_access(
    clients: ArmClients, resource_group: str, tags: ResourceTags, diffed: Diffed
) -> None:
    rg = resource_group
    got = list(snapshot_diff.changed_ranges(clients, diffed.s0, diffed.s1, segment_ranges=1))
    assert got == diffed.expected
    assert _state(clients, rg, "s0") == "Unattached" and _state(clients, rg, "s1") == "Unattached"

    # Closed half-way (or failing), the iteration still ends access to both snapshots.
    with closing(snapshot_diff.changed_ranges(clients, diffed.s0, diffed.s1, segment_ranges=1)) as ranges:
        assert next(ranges) == diffed.expected[0]
        assert _state(clients, rg, "s1") == "ActiveSAS"
    assert _state(clients, rg, "s0") == "Unattached" and _state(clients, rg, "s1") == "Unattached"
    with pytest.raises(HttpResponseError):
        list(snapshot_diff.changed_ranges(clients, diffed.s1, diffed.s0))
    assert _state(clients, rg, "s0") == "Unattached" and _state(clients, rg, "s1") == "Unattached"

    s2 = snapshot_diff.take_incremental_snapshot(
        clients, rg, "s2", location=LOCATION, disk_id=diffed.vm.data_disk_id, tags=tags
    )
    assert (
        s2.incremental_snapshot_family_id
        == clients.compute.snapshots.get(rg, "s0").properties.incremental_snapshot_family_id
    )
    assert list(snapshot_diff.changed_ranges(clients, diffed.s1, s2.id)) == []
    deleted = snapshot_diff.delete_snapshots_before(
        clients, rg, disk_id=diffed.vm.data_disk_id, oldest_kept_id=diffed.s1
    )
    assert deleted == [diffed.s0]
    names = {s.name for s in clients.compute.snapshots.list_by_resource_group(rg)}
    assert names == {"s1", "s2"}
    assert (
        snapshot_diff.delete_snapshots_before(
            clients, rg, disk_id=diffed.vm.data_disk_id, oldest_kept_id=diffed.s1
        )
        == []
    )


def test_at_most_five_snapshots_of_a_family_have_a_sas(
    clients: ArmClients, resource_group: str, tags: ResourceTags
) -> None:
    rg = resource_group
    disk = _empty_disk(clients, rg, "limited")
    for index in range(6):
        _snapshot(clients, rg, f"p{index}", disk, tags)
    for index in range(5):
        _grant(clients, rg, f"p{index}")
    _grant(clients, rg, "p4")  # a second SAS of an exported snapshot does not count twice
    with pytest.raises(HttpResponseError) as sixth:
        _grant(clients, rg, "p5")
    assert sixth.value.status_code == 409 and "at most 5 snapshots" in str(sixth.value.message)
    clients.compute.snapshots.begin_revoke_access(rg, "p0").result()
    _grant(clients, rg, "p5")
    for index in range(1, 6):
        clients.compute.snapshots.begin_revoke_access(rg, f"p{index}").result()


def test_a_ranged_get_carries_the_transactional_crc64_the_appliance_checks(
    clients: ArmClients, resource_group: str, tags: ResourceTags, local_arm: LocalArmEndpoint
) -> None:
    """A manifest range read from a snapshot has no CRC64 of its own: the appliance asks the GET for the
    service's `x-ms-content-crc64` (ranges of at most 4 MiB, as Azure) and checks the bytes against it."""
    from appliance.reverse import SnapshotReader
    from shared.failback.manifest import crc64_from_header, crc64_hex

    rg = resource_group
    vm = _running_vm(clients, rg, tags)
    marker = os.urandom(3 * MIB)
    guest_write(local_arm.admin, vm.data_disk_id, MIB, marker)
    _snapshot(clients, rg, "s-crc", vm.data_disk_id, tags)
    sas = _grant(clients, rg, "s-crc")
    headers = {"x-ms-version": STORAGE_VERSION, "x-ms-range-get-content-crc64": "true"}

    ranged = httpx.get(sas, headers={**headers, "x-ms-range": f"bytes={MIB}-{4 * MIB - 1}"})
    assert ranged.status_code == 206 and ranged.content == marker
    assert crc64_from_header(ranged.headers["x-ms-content-crc64"]) == crc64_hex(marker)
    too_long = httpx.get(sas, headers={**headers, "x-ms-range": f"bytes=0-{4 * MIB}"})
    assert too_long.status_code == 400 and too_long.headers["x-ms-error-code"] == "InvalidHeaderValue"
    whole = httpx.get(sas, headers=headers)
    assert whole.status_code == 400
    plain = httpx.get(sas, headers={"x-ms-version": STORAGE_VERSION, "x-ms-range": "bytes=0-511"})
    assert "x-ms-content-crc64" not in plain.headers

    reader = SnapshotReader(sas)
    assert reader.read_checked(MIB, 3 * MIB) == marker
    assert reader.read_checked(0, 512) == bytes(512)
    clients.compute.snapshots.begin_revoke_access(rg, "s-crc").result()


def _store_bytes(local_arm: LocalArmEndpoint) -> bytes:
    """Everything the endpoint's SQLite store holds on disk: the database and its write-ahead log."""
    return b"".join(path.read_bytes() for path in local_arm.data_dir.glob("arm.sqlite3*") if path.is_file())


def test_the_store_keeps_no_grant_signature(
    clients: ArmClients, resource_group: str, tags: ResourceTags, local_arm: LocalArmEndpoint
) -> None:
    """A grant's SAS is read from its operation with a signature the store never held: it is
    recomputed from the endpoint's signing key (mode 0600), and the URL still reads the snapshot."""
    vm = _running_vm(clients, resource_group, tags)
    marker = os.urandom(4 * KIB)
    guest_write(local_arm.admin, vm.data_disk_id, 0, marker)
    _snapshot(clients, resource_group, "s-at-rest", vm.data_disk_id, tags)
    sas = _grant(clients, resource_group, "s-at-rest")
    assert BlobClient.from_blob_url(sas).download_blob(offset=0, length=len(marker)).readall() == marker

    signature = re.search(r"[?&]sig=([^&]+)", sas)
    assert signature is not None
    stored = _store_bytes(local_arm)
    assert b"si=" in stored  # the grant is there (the test looks at the right files) ...
    for form in {signature.group(1), unquote(signature.group(1))}:
        assert form.encode() not in stored  # ... its signature is not
    assert stat.S_IMODE((local_arm.data_dir / access.SIGNING_KEY_FILE).stat().st_mode) == 0o600
