"""A guest's writes into an Azure VM's managed disk, played through the local ARM endpoint's admin hook.

The disk must be attached to a running VM (only a running guest writes); offsets and lengths are whole
512-byte sectors. `trim` punches a hole: whole 4 KiB blocks become a ClearRange in a snapshot diff.
"""

from __future__ import annotations

import base64

import httpx


def guest_write(admin: httpx.Client, disk_id: str, offset: int, data: bytes) -> None:
    answer = admin.post(
        "/_admin/disk-write",
        json={"diskId": disk_id, "offset": offset, "data": base64.b64encode(data).decode()},
    )
    answer.raise_for_status()


def guest_trim(admin: httpx.Client, disk_id: str, offset: int, length: int) -> None:
    answer = admin.post(
        "/_admin/disk-write", json={"diskId": disk_id, "offset": offset, "length": length, "op": "zero"}
    )
    answer.raise_for_status()
