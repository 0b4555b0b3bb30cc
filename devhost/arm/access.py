"""Read access to managed disks and snapshots: `beginGetAccess`/`endGetAccess` and the SAS they hand out.

As in the disk RP, a grant is an async operation whose result is `{"accessSAS": url}`; the URL names a
page blob on a per-resource "account" and carries a stored-access-policy id (`si`) and a signature, not
an expiry: the expiry lives with the grant, here in the resource's `_grants`, so `endGetAccess` (which
drops them all) makes every URL of the resource answer 403 at once, as Azure's do. The signature is an
HMAC with a key of this endpoint, kept in the data directory so a restart keeps URLs valid.

What Azure refuses and this endpoint refuses too:
- access to a disk attached to a VM that is not deallocated: 409 `Conflict` "Access not permitted
  because disk X is currently attached to running VM Y." (the disk RP's words);
- a SAS for more than five snapshots of one incremental-snapshot family at a time (409
  `OperationNotAllowed`; the code and text are this endpoint's, the limit is Azure's);
- `Write` access (disk upload), VM guest state and VHDX exports are not emulated: 400, naming them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlsplit

from devhost.arm import disk_upload, ids
from devhost.arm.errors import ArmError, invalid_parameter
from devhost.arm.ids import ResourceId
from devhost.arm.store import Doc

if TYPE_CHECKING:
    from devhost.arm.service import LocalArm

GRANTS: Final = "_grants"
# Azure: "SAS URIs can be generated for at most five snapshots of a given snapshot family at a time".
MAX_SAS_SNAPSHOTS_PER_FAMILY: Final = 5
# The signed version and blob name of the disk RP's SAS URLs (`.../<container>/abcd?sv=...&sr=b&si=...`).
SAS_VERSION: Final = "2018-03-28"
BLOB_NAME: Final = "abcd"
ACCOUNT_PREFIX: Final = "md-"
SIGNING_KEY_FILE: Final = "sas-signing.key"


def parse_grant_request(body: dict[str, Any]) -> tuple[str, int]:
    """The GrantAccessData body: `{access, durationInSeconds[, getSecureVMGuestStateSAS, fileFormat]}`."""
    access = body.get("access")
    if access is None:
        raise invalid_parameter("Required parameter 'access' is missing (null).", "grantAccessData.access")
    duration = body.get("durationInSeconds")
    if duration is None:
        raise invalid_parameter(
            "Required parameter 'durationInSeconds' is missing (null).", "grantAccessData.durationInSeconds"
        )
    if not isinstance(duration, int) or isinstance(duration, bool) or duration <= 0:
        raise invalid_parameter(
            f"The value {duration!r} of parameter 'durationInSeconds' is invalid: it must be a positive "
            "number of seconds.",
            "grantAccessData.durationInSeconds",
        )
    if access not in ("None", "Read", "Write"):
        raise invalid_parameter(
            f"The value '{access}' of parameter 'access' is invalid (None, Read, Write).",
            "grantAccessData.access",
        )
    if access == "None":
        raise invalid_parameter(
            "Access 'None' grants nothing: ask for Read, or Write on a disk created for upload.",
            "grantAccessData.access",
        )
    if body.get("getSecureVMGuestStateSAS"):
        raise invalid_parameter(
            "getSecureVMGuestStateSAS is not emulated by this local endpoint.",
            "grantAccessData.getSecureVMGuestStateSAS",
        )
    if body.get("fileFormat") not in (None, "VHD"):
        raise invalid_parameter(
            f"fileFormat '{body.get('fileFormat')}' is not emulated by this local endpoint (VHD is).",
            "grantAccessData.fileFormat",
        )
    return str(access), duration


def active_grants(doc: Doc, now: float | None = None) -> list[dict[str, Any]]:
    moment = time.time() if now is None else now
    return [g for g in doc.get(GRANTS) or [] if float(g["expires"]) > moment]


def check_grantable(arm: LocalArm, rid: ResourceId, doc: Doc) -> None:
    """Refuse synchronously what Azure refuses on the grant call itself."""
    from devhost.arm.compute import disk_owner  # compute imports this module for diskState

    state = doc["properties"].get("provisioningState")
    if state != "Succeeded":
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Cannot grant access to '{doc['name']}': its provisioning state is {state}.",
        )
    if rid.type == ids.DISK:
        owner = disk_owner(arm, rid.key)
        if owner is not None and owner.get("_powerState", "running") != "deallocated":
            raise ArmError(
                409,
                "Conflict",
                f"Access not permitted because disk {doc['name']} is currently attached to running VM "
                f"{owner['id']}.",
            )
        return
    family = doc["properties"].get("incrementalSnapshotFamilyId")
    if not family or active_grants(doc):
        return  # a snapshot that already has a SAS does not count twice
    exported = [
        d["name"]
        for _, d in arm.of_type(ids.SNAPSHOT)
        if d["properties"].get("incrementalSnapshotFamilyId") == family and active_grants(d)
    ]
    if len(exported) >= MAX_SAS_SNAPSHOTS_PER_FAMILY:
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Cannot grant access to snapshot '{doc['name']}': SAS URIs can be generated for at most "
            f"{MAX_SAS_SNAPSHOTS_PER_FAMILY} snapshots of an incremental snapshot family at a time, and "
            f"{', '.join(sorted(exported))} have one. End access to one of them first.",
        )


def account_of(doc: Doc) -> tuple[str, str]:
    """The (account, container) a resource's SAS URLs name, stable for the resource's lifetime."""
    digest = hashlib.sha256(str(doc["properties"]["uniqueId"]).encode()).hexdigest()
    return f"{ACCOUNT_PREFIX}{digest[:12]}", digest[12:24]


def signing_key(arm: LocalArm) -> bytes:
    path = arm.data_dir / SIGNING_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
        partial.replace(path)
    return path.read_bytes()


def without_signature(output: dict[str, Any]) -> dict[str, Any]:
    """A grant's operation output as the store keeps it: the URL without its `sig`, which `signed`
    recomputes from the signing key, so that the SQLite file and its WAL hold no usable SAS."""
    url = str(output.get("accessSAS") or "")
    if not url:
        return output
    base, _, query = url.partition("?")
    kept = "&".join(p for p in query.split("&") if not p.startswith("sig="))
    return {**output, "accessSAS": f"{base}?{kept}"}


def signed(arm: LocalArm, output: dict[str, Any]) -> dict[str, Any]:
    """The output a client reads: the stored URL with its signature put back."""
    url = str(output.get("accessSAS") or "")
    if not url or "&sig=" in url:
        return output
    base, _, query = url.partition("?")
    params = dict(p.partition("=")[::2] for p in query.split("&"))
    path = urlsplit(base).path
    sig = signature(
        signing_key(arm), version=params["sv"], resource=params["sr"], identifier=params["si"], path=path
    )
    return {**output, "accessSAS": f"{url}&sig={quote(sig, safe='')}"}


def signature(key: bytes, *, version: str, resource: str, identifier: str, path: str) -> str:
    to_sign = f"{version}\n{resource}\n{identifier}\n{path}"
    return base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()


def grant(arm: LocalArm, rid: ResourceId, params: dict[str, Any]) -> dict[str, Any]:
    """Record a grant when its operation completes and return the operation's output."""
    identifier = str(uuid.uuid4())
    expires = time.time() + int(params["durationInSeconds"])
    output: dict[str, Any] = {}

    def add(doc: Doc) -> None:
        doc[GRANTS] = [
            *active_grants(doc),
            {"si": identifier, "access": params["access"], "expires": expires},
        ]
        disk_upload.on_granted(doc, str(params["access"]))
        account, container = account_of(doc)
        path = f"/{account}/{container}/{BLOB_NAME}"
        sig = signature(signing_key(arm), version=SAS_VERSION, resource="b", identifier=identifier, path=path)
        base = str(params["baseUrl"]).rstrip("/")
        output["accessSAS"] = f"{base}{path}?sv={SAS_VERSION}&sr=b&si={identifier}&sig={quote(sig, safe='')}"

    arm.update_doc(rid, add)
    return output


def revoke(arm: LocalArm, rid: ResourceId) -> None:
    from devhost.arm.compute import disk_file  # compute imports this module for diskState

    def end(doc: Doc) -> None:
        doc.pop(GRANTS, None)
        disk_upload.on_revoked(doc, disk_file(arm, doc))

    arm.update_doc(rid, end)


def find_grant(arm: LocalArm, identifier: str) -> tuple[ResourceId, Doc, dict[str, Any]] | None:
    """The resource and grant a SAS's `si` names, expired or not (the caller checks the expiry)."""
    for _, doc in arm.store.items():
        if doc.get("type") not in (ids.DISK, ids.SNAPSHOT):
            continue
        for entry in doc.get(GRANTS) or []:
            if entry["si"] == identifier:
                rid = ids.parse_resource_id(doc["id"])
                if rid is not None:
                    return rid, doc, entry
    return None
