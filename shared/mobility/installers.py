"""The installer catalog: Mobility service installers uploaded by the operator, kept in the
`mobility-installers` container of the control plane's replica account with their SHA-256 and size.

An installer's name carries its version and the OS it serves, exactly as the vendor names them
(`Microsoft-ASR_UA_<version>_<OS>_GA_<date>_release.(exe|tar.gz)`), so the catalog needs no database:
the blob listing with its metadata is the catalog.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from enum import StrEnum
from typing import BinaryIO

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobBlock, ContainerClient, ContentSettings
from pydantic import Field

from shared.domain.errors import ValidationFailed
from shared.domain.wire import WireModel
from shared.platform.storage import container_service, ensure_containers_exist

INSTALLERS_CONTAINER = "mobility-installers"
# The largest installer accepted: the vendor's are a few hundred MB; this leaves room without letting a
# mistaken upload fill the account.
MAX_INSTALLER_BYTES = 1024**3
# Blocks of this size go to storage as they are hashed, so the whole file is never copied twice.
UPLOAD_BLOCK_BYTES = 8 * 1024 * 1024

# The OS tokens of the vendor's installer names, one per installer (the resolution table maps OS
# releases onto them).
OS_TOKENS: tuple[str, ...] = (
    "Windows",
    "RHEL5-64",
    "RHEL6-64",
    "RHEL7-64",
    "RHEL8-64",
    "OL6-64",
    "OL7-64",
    "OL8-64",
    "SLES11-SP3-64",
    "SLES11-SP4-64",
    "SLES12-64",
    "SLES15-64",
    "UBUNTU-14.04-64",
    "UBUNTU-16.04-64",
    "UBUNTU-18.04-64",
    "UBUNTU-20.04-64",
    "DEBIAN7-64",
    "DEBIAN8-64",
    "DEBIAN9-64",
)
_TOKEN_BY_LOWER = {token.lower(): token for token in OS_TOKENS}

EXPECTED_PATTERN = "Microsoft-ASR_UA_<version>_<OS>_GA_<date>_release.(exe|tar.gz)"
EXAMPLES = (
    "Microsoft-ASR_UA_9.56.0.0_UBUNTU-20.04-64_GA_20230525_release.tar.gz",
    "Microsoft-ASR_UA_9.56.0.0_Windows_GA_20230525_release.exe",
)
_NAME = re.compile(
    r"^Microsoft-ASR_UA_(?P<version>\d+(?:\.\d+){1,3})_(?P<os>[A-Za-z0-9.-]+?)_GA_(?P<date>[A-Za-z0-9]+)"
    r"_release\.(?P<kind>exe|tar\.gz)$",
    re.IGNORECASE,
)


def _any_case(text: str) -> str:
    """`text` as a regular expression that ignores case without flags (JSON Schema patterns have none)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in text)


def _name_pattern() -> str:
    head = _any_case("Microsoft-ASR_UA_") + r"[0-9]+(\.[0-9]+){1,3}_"
    tail = "_" + _any_case("GA") + "_[A-Za-z0-9]+_" + _any_case("release") + r"\."
    linux = "|".join(_any_case(token) for token in OS_TOKENS if token != "Windows")
    return f"^{head}(({_any_case('Windows')}){tail}{_any_case('exe')}|({linux}){tail}{_any_case('tar.gz')})$"


# Exactly the names parse_installer_name accepts, for the OpenAPI document (ECMA-262, no flags).
INSTALLER_NAME_PATTERN = _name_pattern()


class InstallerKind(StrEnum):
    EXE = "exe"
    TAR_GZ = "tar.gz"


class InstallerName(WireModel):
    """What an installer's file name says."""

    file_name: str
    version: str = Field(description="the agent version, e.g. '9.56.0.0'")
    os: str = Field(description="the vendor's OS token, e.g. 'UBUNTU-20.04-64' or 'Windows'")
    kind: InstallerKind
    build_date: str = Field(
        description="the release date as the name writes it, e.g. '20230525' or '22Oct2019'"
    )

    @property
    def version_key(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))


class Installer(InstallerName):
    size_bytes: int
    sha256: str
    uploaded_at: datetime


class InstallerList(WireModel):
    installers: list[Installer]


def bad_name(file_name: str, problem: str) -> ValidationFailed:
    return ValidationFailed.single(
        "fileName",
        f"{file_name!r} {problem}; installer names follow {EXPECTED_PATTERN} with one of the OS tokens "
        f"{', '.join(OS_TOKENS)}, e.g. {EXAMPLES[0]} or {EXAMPLES[1]}",
    )


def parse_installer_name(file_name: str) -> InstallerName:
    """The parts of a vendor installer name, or a 400 showing the expected pattern and an example."""
    match = _NAME.fullmatch(file_name)
    if match is None:
        raise bad_name(file_name, "is not a Mobility service installer name")
    token = _TOKEN_BY_LOWER.get(match["os"].lower())
    if token is None:
        raise bad_name(file_name, f"names an unknown OS {match['os']!r}")
    kind = InstallerKind(match["kind"].lower())
    # The Windows installer is the only self-extracting .exe; every Linux one is a tarball.
    expected = InstallerKind.EXE if token == "Windows" else InstallerKind.TAR_GZ
    if kind is not expected:
        raise bad_name(file_name, f"is a .{kind} but the {token} installer is a .{expected}")
    return InstallerName(
        file_name=file_name, version=match["version"], os=token, kind=kind, build_date=match["date"]
    )


def installers_container(replicas: ContainerClient) -> ContainerClient:
    """The `mobility-installers` container of the replica account (same account and credential)."""
    return container_service(replicas).get_container_client(INSTALLERS_CONTAINER)


class _HashingReader:
    """Reads `source` for the blob upload, hashing and counting what passes, refusing past `limit`."""

    def __init__(self, source: BinaryIO, limit: int) -> None:
        self._source = source
        self._limit = limit
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(size)
        self.size += len(chunk)
        if self.size > self._limit:
            raise ValidationFailed.single(
                "(body)", f"has more than the {self._limit} bytes Content-Length said; upload it again"
            )
        self.sha256.update(chunk)
        return chunk


def _blocks(reader: _HashingReader) -> Iterator[bytes]:
    while chunk := reader.read(UPLOAD_BLOCK_BYTES):
        yield chunk


def store_installer(
    container: ContainerClient,
    file_name: str,
    body: BinaryIO,
    *,
    content_length: int | None,
    now: datetime,
) -> Installer:
    """Upload one installer under its own name, with its SHA-256 and size as metadata.

    The name is checked before a byte is stored; the declared length must match what arrives, so a
    truncated upload never becomes a catalog entry. Uploading the same name again replaces it.
    """
    name = parse_installer_name(file_name)
    if content_length is None:
        raise ValidationFailed.single("Content-Length", "is required: send the installer's size in bytes")
    if content_length <= 0 or content_length > MAX_INSTALLER_BYTES:
        raise ValidationFailed.single(
            "Content-Length", f"must be between 1 and {MAX_INSTALLER_BYTES} bytes; got {content_length}"
        )
    ensure_containers_exist(container)
    reader = _HashingReader(body, content_length)
    blob = container.get_blob_client(name.file_name)
    # Staged blocks stay invisible until committed: a failed upload leaves the previous file, or none.
    block_ids: list[BlobBlock] = []
    for index, chunk in enumerate(_blocks(reader)):
        block_id = f"{index:08d}"
        blob.stage_block(block_id, chunk)
        block_ids.append(BlobBlock(block_id=block_id))
    if reader.size != content_length:
        raise ValidationFailed.single(
            "(body)", f"has {reader.size} bytes but Content-Length said {content_length}; upload it again"
        )
    digest = reader.sha256.hexdigest()
    metadata = {"sha256": digest, "size": str(reader.size), "uploadedat": now.isoformat()}
    content_type = "application/octet-stream" if name.kind is InstallerKind.EXE else "application/gzip"
    blob.commit_block_list(
        block_ids, metadata=metadata, content_settings=ContentSettings(content_type=content_type)
    )
    return Installer(**name.model_dump(), size_bytes=reader.size, sha256=digest, uploaded_at=now)


def list_installers(container: ContainerClient) -> list[Installer]:
    """Every catalog installer, by OS token then newest version first."""
    try:
        blobs = list(container.list_blobs(include=["metadata"]))
    except ResourceNotFoundError:
        return []  # nothing uploaded yet: the container is created by the first upload
    installers = []
    for blob in blobs:
        metadata = blob.metadata or {}
        try:
            name = parse_installer_name(blob.name)
        except ValidationFailed:
            continue  # not ours to list (only parsed names are ever stored)
        uploaded_at = metadata.get("uploadedat")
        installers.append(
            Installer(
                **name.model_dump(),
                size_bytes=int(metadata.get("size", blob.size)),
                sha256=metadata.get("sha256", ""),
                uploaded_at=datetime.fromisoformat(uploaded_at) if uploaded_at else blob.last_modified,
            )
        )
    return sort_installers(installers)


def sort_installers(installers: Iterable[Installer]) -> list[Installer]:
    by_version = sorted(installers, key=lambda i: i.version_key, reverse=True)
    return sorted(by_version, key=lambda i: OS_TOKENS.index(i.os))


def newest_for(installers: Iterable[Installer], os_token: str) -> Installer | None:
    candidates = [i for i in installers if i.os == os_token]
    return max(candidates, key=lambda i: (i.version_key, i.uploaded_at), default=None)
