"""Managed disks and snapshots as sparse raw image files, and Import from a fixed-VHD page blob.

Import does what the disk RP does with a `sourceUri`: it reads the VHD footer first (synchronously,
so a bad blob is a 400 on the PUT, as in Azure), then copies the data area. Only the page blob's
populated ranges are read (Get Page Ranges), and zero chunks inside them are skipped, so a mostly
empty 30 GiB replica costs what it holds, in time and in disk space.

The footer check here is written independently of shared/replication/vhd.py on purpose: the emulator is the
referee of what the product writes, so it must not share the product's reading of the format.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobServiceClient

from devhost.arm.errors import ArmError, bad_request, invalid_parameter

FOOTER: Final = 512
MIB: Final = 1024 * 1024
GIB: Final = 1024 * MIB
CHUNK: Final = 4 * MIB
_ZERO_CHUNK: Final = bytes(CHUNK)


class VhdInfo:
    def __init__(self, virtual_size: int, blob_size: int) -> None:
        self.virtual_size = virtual_size
        self.blob_size = blob_size


def check_fixed_vhd_footer(footer: bytes, blob_size: int, source_uri: str) -> VhdInfo:
    """Accept exactly what Azure imports: a fixed VHD whose data area is a whole number of MiB."""
    if blob_size < FOOTER + MIB or blob_size % 512:
        raise invalid_parameter(
            f"The blob {source_uri} of {blob_size} bytes is not a fixed VHD: its length must be a whole "
            "number of MiB plus the 512-byte footer.",
            "sourceUri",
        )
    if footer[:8] != b"conectix":
        raise bad_request(
            f"The specified cookie value in VHD footer indicates that disk with blob {source_uri} is not a "
            "supported VHD. Disk is expected to have cookie value 'conectix'.",
            "sourceUri",
        )
    stored_checksum = struct.unpack(">I", footer[64:68])[0]
    computed = ~sum(footer[:64] + footer[68:]) & 0xFFFFFFFF
    if stored_checksum != computed:
        raise bad_request(
            f"The VHD footer of blob {source_uri} has checksum {stored_checksum:#010x}; its bytes give "
            f"{computed:#010x}. The VHD is corrupt.",
            "sourceUri",
        )
    disk_type = struct.unpack(">I", footer[60:64])[0]
    if disk_type != 2:
        raise bad_request(
            f"The VHD {source_uri} is of disk type {disk_type}; only fixed VHDs (type 2) can be imported. "
            "Convert it with `qemu-img convert -O vpc -o subformat=fixed,force_size`.",
            "sourceUri",
        )
    current_size = struct.unpack(">Q", footer[48:56])[0]
    if current_size != blob_size - FOOTER:
        raise bad_request(
            f"The VHD footer of {source_uri} gives a virtual size of {current_size} bytes but the blob holds "
            f"{blob_size - FOOTER} bytes before the footer.",
            "sourceUri",
        )
    if current_size % MIB:
        raise invalid_parameter(
            f"The VHD {source_uri} has an unsupported virtual size of {current_size} bytes. "
            "The size must be a whole number (in MBs).",
            "sourceUri",
        )
    return VhdInfo(current_size, blob_size)


class BlobSource:
    """Reads the page blobs an Import names, through the connection string the endpoint was given."""

    def __init__(self, connection_string: str | None) -> None:
        self._service = (
            BlobServiceClient.from_connection_string(connection_string) if connection_string else None
        )

    def blob_for(self, source_uri: str, storage_account_id: str | None) -> BlobClient:
        if self._service is None:
            raise bad_request(
                "this local ARM endpoint was started without --blob-connection-string", "sourceUri"
            )
        if not storage_account_id:
            raise invalid_parameter(
                "storageAccountId is required when createOption is Import.", "storageAccountId"
            )
        parts = [p for p in storage_account_id.split("/") if p]
        if (
            len(parts) != 8
            or parts[4].lower() != "providers"
            or parts[5].lower() != "microsoft.storage"
            or parts[6].lower() != "storageaccounts"
        ):
            raise invalid_parameter(
                f"storageAccountId '{storage_account_id}' is not a storage account resource id.",
                "storageAccountId",
            )
        account = self._service.account_name or ""
        url = urlsplit(source_uri)
        path = [unquote(p) for p in url.path.split("/") if p]
        # Azurite's URLs are path-style (host/account/container/blob); Azure's put the account in the host.
        if path and path[0] == account:
            path = path[1:]
        elif not (url.hostname or "").startswith(f"{account}."):
            raise invalid_parameter(
                f"sourceUri '{source_uri}' is not in storage account '{account}'.", "sourceUri"
            )
        if parts[7].lower() != account.lower():
            raise invalid_parameter(
                f"The blob {source_uri} is not in the storage account {storage_account_id}.",
                "storageAccountId",
            )
        if len(path) < 2:
            raise invalid_parameter(f"sourceUri '{source_uri}' does not name a blob.", "sourceUri")
        return self._service.get_blob_client(path[0], "/".join(path[1:]))

    def inspect(self, blob: BlobClient, source_uri: str) -> VhdInfo:
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError as exc:
            raise ArmError(
                404, "ResourceNotFound", f"The blob {source_uri} does not exist.", target="sourceUri"
            ) from exc
        if props.blob_type != "PageBlob":
            raise invalid_parameter(
                f"The blob {source_uri} is a {props.blob_type}; a disk can only be imported from a page blob.",
                "sourceUri",
            )
        size = int(props.size)
        footer = blob.download_blob(offset=size - FOOTER, length=FOOTER).readall() if size >= FOOTER else b""
        return check_fixed_vhd_footer(footer, size, source_uri)


def import_vhd(blob: BlobClient, info: VhdInfo, target: Path) -> None:
    """Copy the VHD's data area into a sparse raw file, reading only populated page ranges."""
    partial = target.with_suffix(".partial")
    try:
        spans = [
            (int(r.start or 0), min(int(r.end or 0) + 1, info.virtual_size))  # the footer is not disk data
            for r in blob.list_page_ranges()
            if not r.cleared
        ]
    except HttpResponseError:
        # A service without Get Page Ranges: read everything (zero chunks are still skipped).
        spans = [(0, info.virtual_size)]
    with partial.open("wb") as out:
        out.truncate(info.virtual_size)
        for start, end in spans:
            while start < end:
                length = min(CHUNK, end - start)
                data = blob.download_blob(offset=start, length=length).readall()
                if data != _ZERO_CHUNK[: len(data)]:
                    out.seek(start)
                    out.write(data)
                start += length
        out.flush()
        os.fsync(out.fileno())
    partial.replace(target)


def sparse_copy(source: Path, target: Path) -> None:
    """A snapshot or a disk copy: reflink where the filesystem can, else a sparse copy."""
    partial = target.with_suffix(".partial")
    if shutil.which("cp"):
        subprocess.run(["cp", "--reflink=auto", "--sparse=always", str(source), str(partial)], check=True)
    else:  # pragma: no cover - GNU cp is on every machine this runs on
        shutil.copyfile(source, partial)
    partial.replace(target)


def create_empty(target: Path, size: int) -> None:
    with target.open("wb") as out:
        out.truncate(size)
