"""The hydration toolkit as the helper VM downloads it: one tarball of `hydration/` plus a run script.

The Custom Script Extension fetches `fileUris` into its download folder and runs `commandToExecute`
there. We ship two files: `hydration-<digest>.tar.gz` (the package, deterministic: sorted entries,
fixed mtimes and owners, so the same source always has the same digest and blob name, and an upload
is skipped when the blob already exists) and `run-hydration.sh`, which unpacks the package and runs
`python3 -m hydration prepare` with the disks and the report URL it is given.

Both blobs live in the control plane's replica storage account (container `hydration`): the account
Import already reads from, so the helper's NSG needs one storage destination only. The helper receives
a read-only SAS per file, valid for the run; its report goes to a blob named by a create/write-only SAS.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobSasPermissions, ContainerClient, UserDelegationKey, generate_blob_sas

TOOLKIT_ROOT: Final = Path(__file__).resolve().parents[2] / "hydration"
HYDRATION_CONTAINER: Final = "hydration"
RUN_SCRIPT_NAME: Final = "run-hydration.sh"
_EXCLUDED_PARTS: Final = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache"})

# `$1` is the tarball's file name; with `--install-helper-packages` next, the helper's own packages are
# installed first: the bundled .debs if the release pipeline shipped them (HYDRATION_HELPER_DEBS_DIR at
# build time: the helper's NSG admits no package mirror), else, only when a tool is missing, apt-get (which
# works where the network allows it, e.g. in the operator's subnet). The rest goes to
# `python3 -m hydration prepare` unchanged.
# The guest is assembled under /mnt/azure_sms_root, the toolkit's default work root.
RUN_SCRIPT: Final = """#!/bin/sh
# Unpack the hydration toolkit next to this script and prepare the attached disks (docs/migration.md).
set -eu
bundle="$1"
shift
here=$(pwd)
rm -rf "$here/toolkit"
mkdir -p "$here/toolkit"
tar -xzf "$here/$bundle" -C "$here/toolkit"
if [ "${1:-}" = "--install-helper-packages" ]; then
    shift
    if ls "$here"/toolkit/helper-debs/*.deb >/dev/null 2>&1; then
        dpkg -i --skip-same-version "$here"/toolkit/helper-debs/*.deb >/dev/null
    fi
    missing=""
    for tool in losetup mount blkid mkfs.ext4 debugfs ntfs-3g vgchange cpio; do
        command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
    done
    python3 -c "import hivex" 2>/dev/null || missing="$missing python3-hivex"
    if [ -n "$missing" ]; then
        echo "helper tools missing:$missing; installing hydration/apt-packages.txt"
        timeout 600 apt-get install -y -q --no-install-recommends \
            $(grep -v '^#' "$here/toolkit/hydration/apt-packages.txt") >/dev/null 2>&1 ||
            echo "warning: could not install the helper's packages; the toolkit reports what it lacks"
    fi
fi
cd "$here/toolkit"
exec python3 -m hydration prepare --work-root /mnt/azure_sms_root "$@"
"""


@dataclass(frozen=True)
class ToolkitBundle:
    data: bytes
    digest: str  # sha256 of the tarball

    @property
    def blob_name(self) -> str:
        return f"toolkit/hydration-{self.digest[:16]}.tar.gz"

    @property
    def file_name(self) -> str:
        return self.blob_name.rsplit("/", 1)[1]

    @property
    def script_blob_name(self) -> str:
        # The script travels with the bundle it unpacks: a new toolkit never runs with an old script.
        return f"toolkit/{self.digest[:16]}/{RUN_SCRIPT_NAME}"


def build_toolkit_bundle(root: Path = TOOLKIT_ROOT, helper_debs: Path | None = None) -> ToolkitBundle:
    """A reproducible gzip tarball of the toolkit package (`hydration/...` inside) and, if given (the
    HYDRATION_HELPER_DEBS_DIR setting in the app), the helper's Debian packages under `helper-debs/`."""
    if not (root / "__main__.py").exists():
        raise FileNotFoundError(f"{root} is not the hydration package (no __main__.py)")
    entries = [(path, path.relative_to(root.parent)) for path in sorted(root.rglob("*"))]
    if helper_debs is not None:
        entries += [(deb, Path("helper-debs") / deb.name) for deb in sorted(helper_debs.glob("*.deb"))]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, relative in entries:
            if _EXCLUDED_PARTS & set(relative.parts) or path.suffix in (".pyc", ".pyo"):
                continue
            info = tar.gettarinfo(str(path), arcname=str(relative))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            info.mode = 0o755 if path.is_dir() or info.mode & 0o111 else 0o644
            if path.is_file():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            elif path.is_dir():
                tar.addfile(info)
    # mtime=0 in the gzip header too, or every build would differ.
    data = gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)
    return ToolkitBundle(data=data, digest=hashlib.sha256(data).hexdigest())


def hydration_container_of(replicas: ContainerClient) -> ContainerClient:
    """The `hydration` container (toolkit, reports, recovery-point pins) of the replica account."""
    service = replicas._get_blob_service_client()  # the same account and credential
    return service.get_container_client(HYDRATION_CONTAINER)


def upload_toolkit(container: ContainerClient, bundle: ToolkitBundle) -> ToolkitBundle:
    """Upload the bundle and its run script unless already there (content-addressed names)."""
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    for name, data in ((bundle.blob_name, bundle.data), (bundle.script_blob_name, RUN_SCRIPT.encode())):
        blob = container.get_blob_client(name)
        if not blob.exists():
            with contextlib.suppress(ResourceExistsError):  # a concurrent job uploaded the same content
                blob.upload_blob(data, overwrite=False)
    return bundle


def blob_sas_url(
    container: ContainerClient,
    blob_name: str,
    permission: BlobSasPermissions,
    *,
    lifetime: timedelta,
    now: datetime | None = None,
) -> str:
    """A SAS URL for one blob: signed with the account key when the client has one (a connection string),
    else with a user delegation key (managed identity).

    The start is backdated a few minutes for clock skew between us and the storage service.
    """
    start = (now or datetime.now(UTC)) - timedelta(minutes=5)
    expiry = start + timedelta(minutes=5) + lifetime
    credential = container.credential
    account = container.account_name or ""
    account_key = getattr(credential, "account_key", None)
    if account_key:
        token = generate_blob_sas(
            account,
            container.container_name,
            blob_name,
            account_key=account_key,
            permission=permission,
            start=start,
            expiry=expiry,
            protocol=_protocol(container),
        )
    else:
        service = container._get_blob_service_client()  # no public accessor in the SDK
        key: UserDelegationKey = service.get_user_delegation_key(start, expiry)
        token = generate_blob_sas(
            account,
            container.container_name,
            blob_name,
            user_delegation_key=key,
            permission=permission,
            start=start,
            expiry=expiry,
            protocol="https",
        )
    return f"{container.get_blob_client(blob_name).url}?{token}"


def _protocol(container: ContainerClient) -> str:
    # HTTPS whenever the endpoint speaks it; plain HTTP is allowed only for an http:// endpoint.
    return "https" if container.url.startswith("https://") else "https,http"


READ_ONLY: Final = BlobSasPermissions(read=True)
WRITE_ONLY: Final = BlobSasPermissions(create=True, write=True)
