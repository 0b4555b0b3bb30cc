"""Direct upload to a managed disk: `createOption: Upload`, a Write grant, Put Page through its SAS.

Azure's flow: a disk created for upload (`creationData.uploadSizeBytes` = the VHD's size with its
512-byte footer, a whole number of MiB plus 512, from 20 MiB + 512 to 32 TiB + 512) is
`ReadyToUpload`; `beginGetAccess` with `access: Write` makes it `ActiveUpload` and hands out a SAS on
which the uploader writes pages (Put Page, at most 4 MiB per call, 512-byte aligned); `endGetAccess`
ends the upload and the disk becomes an ordinary `Unattached` disk of the VHD's virtual size. Until
then the disk can neither be read nor attached, and Write is granted to no other disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from devhost.arm.disks import GIB
from devhost.arm.errors import ArmError, invalid_parameter
from devhost.arm.store import Doc

MIB: Final = 1024 * 1024
FOOTER: Final = 512
MIN_UPLOAD: Final = 20 * MIB + FOOTER
MAX_UPLOAD: Final = 32 * 1024 * GIB + FOOTER
MAX_PAGE_WRITE: Final = 4 * MIB
# Where a disk stands in its upload (absent once the upload has ended).
STATE: Final = "_upload"
READY: Final = "ReadyToUpload"
ACTIVE: Final = "ActiveUpload"


def planned_size(creation: dict[str, Any]) -> int:
    """The upload size (with the footer) a `createOption: Upload` disk is made for, or a refusal."""
    size = creation.get("uploadSizeBytes")
    if size is None:
        raise invalid_parameter(
            "uploadSizeBytes is required when createOption is Upload.", "creationData.uploadSizeBytes"
        )
    if not isinstance(size, int) or isinstance(size, bool) or not MIN_UPLOAD <= size <= MAX_UPLOAD:
        raise invalid_parameter(
            f"uploadSizeBytes {size!r} is out of range: it must be between {MIN_UPLOAD} (20 MiB + 512) and "
            f"{MAX_UPLOAD} (32 TiB + 512).",
            "creationData.uploadSizeBytes",
        )
    if (size - FOOTER) % MIB:
        raise invalid_parameter(
            f"uploadSizeBytes {size} is not a whole number of MiB plus the 512-byte VHD footer.",
            "creationData.uploadSizeBytes",
        )
    return size


def state(doc: Doc) -> str | None:
    value = doc.get(STATE)
    return str(value) if value else None


def refuse_while_uploading(doc: Doc, doing: str) -> None:
    current = state(doc)
    if current is not None:
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Cannot {doing} disk '{doc['name']}' while it is {current}: finish the upload with "
            "endGetAccess first.",
        )


def check_grant(doc: Doc, access: str) -> None:
    """Write goes to a disk made for upload, and such a disk takes nothing else until its upload ends."""
    current = state(doc)
    if access == "Write" and current is None:
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Write access can be granted only to a disk created for upload (createOption Upload); "
            f"'{doc['name']}' is not.",
        )
    if access == "Write" and current == ACTIVE:
        raise ArmError(409, "OperationNotAllowed", f"Disk '{doc['name']}' is already being uploaded.")
    if access != "Write" and current is not None:
        refuse_while_uploading(doc, f"grant {access} access to")


def blob_size(doc: Doc) -> int:
    """The page blob an uploader sees: the VHD with its footer while the upload runs."""
    if state(doc) == ACTIVE:
        return int(doc["properties"]["creationData"]["uploadSizeBytes"])
    return int(doc["properties"]["diskSizeBytes"])


def on_granted(doc: Doc, access: str) -> None:
    if access == "Write":
        doc[STATE] = ACTIVE


def on_revoked(doc: Doc, image: Path) -> None:
    """End an upload: the disk keeps the VHD's data, without its footer page."""
    if state(doc) != ACTIVE:
        return
    with image.open("r+b") as handle:
        handle.truncate(int(doc["properties"]["diskSizeBytes"]))
    doc.pop(STATE, None)


def write_pages(image: Path, offset: int, data: bytes) -> None:
    fd = os.open(image, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def prepare_image(image: Path, upload_size: int) -> None:
    image.parent.mkdir(parents=True, exist_ok=True)
    with image.open("wb") as handle:
        handle.truncate(upload_size)
