"""The hash fallback's on-premises digests: inline in the answer, or read from the appliance's blob."""

from __future__ import annotations

import base64
import hashlib
from typing import Any, cast

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.domain.command import BlockHashes
from shared.failback.data_path import HashesUnreadable, block_digests

MIB = 1024 * 1024
DIGESTS = [hashlib.sha256(bytes([i])).digest() for i in range(3)]


class _Blob:
    def __init__(self, data: bytes | None) -> None:
        self.data = data

    def download_blob(self, **_: Any) -> _Blob:
        if self.data is None:
            raise ResourceNotFoundError("BlobNotFound")
        return self

    def readall(self) -> bytes:
        assert self.data is not None
        return self.data


class _Container:
    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.read: list[str] = []

    def get_blob_client(self, name: str) -> _Blob:
        self.read.append(name)
        return _Blob(self.blobs.get(name))


def _cache(blobs: dict[str, bytes]) -> ContainerClient:
    return cast(ContainerClient, _Container(blobs))


def _answer(**where: str) -> BlockHashes:
    return BlockHashes(disk_id="data", block_size=MIB, disk_size=3 * MIB - 7, **where)


def test_inline_digests_are_decoded() -> None:
    answer = _answer(hashes=base64.b64encode(b"".join(DIGESTS)).decode())
    assert block_digests(answer, "m-1", _cache({})) == DIGESTS


def test_a_large_disk_s_digests_are_read_from_the_blob_the_appliance_uploaded() -> None:
    name = "m-1/c-9/data/block-hashes.sha256"
    cache = _Container({name: b"".join(DIGESTS)})
    assert block_digests(_answer(hashes_blob=name), "m-1", cast(ContainerClient, cache)) == DIGESTS
    assert cache.read == [name]


@pytest.mark.parametrize(
    ("name", "blobs", "says"),
    [
        ("m-2/c-9/data/block-hashes.sha256", {}, "not under machine m-1"),
        ("m-1/../m-2/block-hashes.sha256", {}, "not under machine m-1"),
        ("m-1/c-9/data/block-hashes.sha256", {}, "does not exist"),
        ("m-1/c-9/data/block-hashes.sha256", {"m-1/c-9/data/block-hashes.sha256": b"x" * 33}, "whole number"),
        (
            "m-1/c-9/data/block-hashes.sha256",
            {"m-1/c-9/data/block-hashes.sha256": DIGESTS[0]},
            "1 block hashes",
        ),
    ],
)
def test_a_blob_that_is_not_the_machine_s_or_not_whole_is_refused(
    name: str, blobs: dict[str, bytes], says: str
) -> None:
    with pytest.raises(HashesUnreadable, match=says):
        block_digests(_answer(hashes_blob=name), "m-1", _cache(blobs))
