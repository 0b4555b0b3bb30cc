"""Upload credentials: SAS URLs that let an appliance write its own machines' cycle blobs and nothing else.

Each URL is scoped to one named blob under `{machineId}/{cycleId}/` in the cache container, grants create
and write only (no read, list or delete) and expires after `UPLOAD_SAS_LIFETIME`. The appliance names the
blobs it is about to write (a cycle's names are deterministic, see the delta format), so no SAS ever
covers another machine's or another appliance's uploads; a long upload asks again before expiry.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from azure.storage.blob import BlobSasPermissions

from shared.domain.api import UploadCredentials, UploadCredentialsRequest
from shared.domain.appliance import Appliance
from shared.domain.errors import FieldProblem, Forbidden, ValidationFailed
from shared.domain.wire import is_resource_id
from shared.platform.repository import Repositories
from shared.platform.storage import WRITE_ONLY_SAS

UPLOAD_SAS_LIFETIME = timedelta(hours=1)
# Below the 1,024 characters Azure allows, with room for the account and container in the URL.
MAX_BLOB_NAME = 512


class BlobSigner(Protocol):
    def blob_url(
        self, blob_name: str, *, permission: BlobSasPermissions, expiry: datetime, now: datetime
    ) -> str: ...


def issue_upload_credentials(
    repos: Repositories,
    signer: BlobSigner,
    appliance: Appliance,
    request: UploadCredentialsRequest,
    *,
    now: datetime,
) -> UploadCredentials:
    """SAS URLs for `request.blobs` of the appliance's own machine (404 unknown, 403 another appliance's)."""
    check_cycle_blob_names(request)
    machine = repos.machines.require(request.machine_id).item
    if machine.appliance_id != appliance.id:
        raise Forbidden(
            f"machine {machine.id} belongs to another appliance: upload only your own machines' cycles",
            details=[{"machineId": machine.id}],
        )
    return sign_cycle_blobs(signer, request, now=now)


def check_cycle_blob_names(request: UploadCredentialsRequest) -> None:
    """400 naming every blob outside the cycle's own prefix (checked before anything is read)."""
    prefix = f"{request.machine_id}/{request.cycle_id}/"
    bad = [i for i, name in enumerate(request.blobs) if not _is_cycle_blob(name, prefix)]
    if bad:
        raise ValidationFailed(
            FieldProblem(
                f"blobs[{i}]",
                f"must be named '{prefix}<diskId>/<file>' (letters, digits, '.', '_' or '-' in each part, "
                f"at most {MAX_BLOB_NAME} characters)",
            )
            for i in bad
        )


def sign_cycle_blobs(
    signer: BlobSigner, request: UploadCredentialsRequest, *, now: datetime
) -> UploadCredentials:
    """Write-only SAS URLs for the named blobs; the caller has checked the names and who is asking (the
    machine's appliance, or the machine's own Mobility agent)."""
    expiry = now + UPLOAD_SAS_LIFETIME
    return UploadCredentials(
        machine_id=request.machine_id,
        cycle_id=request.cycle_id,
        expires_on=expiry,
        permissions="cw",
        blobs={
            name: signer.blob_url(name, permission=WRITE_ONLY_SAS, expiry=expiry, now=now)
            for name in dict.fromkeys(request.blobs)
        },
    )


def _is_cycle_blob(name: str, prefix: str) -> bool:
    if len(name) > MAX_BLOB_NAME or not name.startswith(prefix):
        return False
    parts = name[len(prefix) :].split("/")
    # Plain ids only (they start with a letter or digit): no '..', empty or encoded segment can step
    # outside the cycle's prefix.
    return len(parts) == 2 and all(is_resource_id(part) for part in parts)
