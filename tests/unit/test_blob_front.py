"""The blob front's Put Page From URL validation and the engine's CRC64 helpers for that path (no I/O)."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from azure.storage.extensions.checksums import crc64

from devhost.blob_front import (
    FrontError,
    PutPageFromUrl,
    check_source_content,
    is_put_page_from_url,
    parse_put_page_from_url,
    shared_key_signature,
)
from devhost.emulators import AZURITE_KEY
from shared.replication.checksums import ChecksumAlgorithm, checksum_hex
from shared.replication.delta_manifest import Extent
from shared.replication.page_from_url import Crc64Run, is_zero_extent, service_verifiable

SOURCE = "http://127.0.0.1:10000/devstoreaccount1/cache/m/c/d/data-00000.bin?sig=x"


def headers(**overrides: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "x-ms-copy-source": SOURCE,
        "x-ms-range": "bytes=4096-8191",
        "x-ms-source-range": "bytes=512-4607",
        "x-ms-page-write": "update",
        "content-length": "0",
    }
    base.update({k.replace("_", "-"): v for k, v in overrides.items()})
    return {k: v for k, v in base.items() if v is not None}


def crc_header(data: bytes) -> str:
    return base64.b64encode(crc64.compute(data, 0).to_bytes(8, "little")).decode()


def refusal(**overrides: str | None) -> FrontError:
    with pytest.raises(FrontError) as caught:
        parse_put_page_from_url(headers(**overrides))
    return caught.value


def test_a_valid_request_is_parsed() -> None:
    data = os.urandom(4096)
    parsed = parse_put_page_from_url(
        headers(x_ms_source_content_crc64=crc_header(data), x_ms_source_if_match='"0x1"')
    )
    assert (parsed.offset, parsed.source_offset, parsed.length) == (4096, 512, 4096)
    assert parsed.source_crc64 == crc64.compute(data, 0)
    assert parsed.source_conditions == (("If-Match", '"0x1"'),)
    check_source_content(parsed, data)  # the right bytes pass


def test_only_a_put_of_comp_page_with_a_copy_source_is_taken_over() -> None:
    assert is_put_page_from_url("PUT", {"comp": "page"}, {"x-ms-copy-source": SOURCE})
    assert not is_put_page_from_url("PUT", {"comp": "page"}, {})  # a plain Put Page: forwarded
    assert not is_put_page_from_url("PUT", {"comp": "block"}, {"x-ms-copy-source": SOURCE})
    assert not is_put_page_from_url("GET", {"comp": "page"}, {"x-ms-copy-source": SOURCE})


@pytest.mark.parametrize(
    ("override", "header"),
    [
        ({"x_ms_range": "bytes=100-611"}, "x-ms-range"),  # start not 512-aligned
        ({"x_ms_range": "bytes=0-1000"}, "x-ms-range"),  # end not 512-aligned
        ({"x_ms_source_range": "bytes=10-4105"}, "x-ms-source-range"),
        ({"x_ms_source_range": "bytes=0-511"}, "x-ms-source-range"),  # lengths differ
        ({"x_ms_range": "bytes=0-8388607", "x_ms_source_range": "bytes=0-8388607"}, "x-ms-range"),  # > 4 MiB
        ({"x_ms_range": "4096-8191"}, "x-ms-range"),  # not bytes=
        ({"x_ms_page_write": "clear"}, "x-ms-page-write"),
        ({"content_length": "512"}, "Content-Length"),
        ({"x_ms_copy_source": "/devstoreaccount1/cache/blob"}, "x-ms-copy-source"),
        ({"x_ms_source_content_crc64": "AAAA"}, "x-ms-source-content-crc64"),  # not 8 bytes
        ({"x_ms_copy_source_authorization": "SharedKey a:b"}, "x-ms-copy-source-authorization"),
    ],
)
def test_malformed_headers_are_400_naming_the_header(override: dict[str, str], header: str) -> None:
    error = refusal(**override)
    assert (error.status, error.code, error.header_name) == (400, "InvalidHeaderValue", header)


@pytest.mark.parametrize("missing", ["x_ms_source_range", "x_ms_page_write"])
def test_missing_headers_are_named(missing: str) -> None:
    error = refusal(**{missing: None})
    assert (error.status, error.code) == (400, "MissingRequiredHeader")
    assert error.header_name == missing.replace("_", "-")


def test_the_range_header_may_be_used_instead_of_x_ms_range() -> None:
    parsed = parse_put_page_from_url(headers(x_ms_range=None, range="bytes=0-4095"))
    assert (parsed.offset, parsed.length) == (0, 4096)


def _request(data: bytes, **digests: object) -> PutPageFromUrl:
    fields: dict[str, object] = {
        "source_url": SOURCE,
        "offset": 0,
        "source_offset": 0,
        "length": len(data),
        "source_crc64": None,
        "source_md5": None,
        "source_authorization": None,
        "source_conditions": (),
    }
    fields.update(digests)
    return PutPageFromUrl(**fields)  # type: ignore[arg-type]


def test_a_crc64_mismatch_is_azures_400() -> None:
    data = os.urandom(1024)
    wrong = crc64.compute(data, 0) ^ 1
    with pytest.raises(FrontError) as caught:
        check_source_content(_request(data, source_crc64=wrong), data)
    assert (caught.value.status, caught.value.code) == (400, "Crc64Mismatch")


def test_an_md5_mismatch_is_azures_400() -> None:
    data = os.urandom(1024)
    check_source_content(_request(data, source_md5=hashlib.md5(data).digest()), data)
    with pytest.raises(FrontError) as caught:
        check_source_content(_request(data, source_md5=hashlib.md5(b"other").digest()), data)
    assert (caught.value.status, caught.value.code) == (400, "Md5Mismatch")


def test_a_short_source_read_is_refused() -> None:
    data = os.urandom(1024)
    with pytest.raises(FrontError) as caught:
        check_source_content(_request(data), data[:512])
    assert caught.value.code == "CannotVerifyCopySource"


def test_shared_key_signature_is_the_sdks() -> None:
    """The SDK's own signer over the same request gives the same Authorization value."""
    from azure.core.pipeline import PipelineRequest
    from azure.core.pipeline.transport import HttpRequest
    from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

    url = "http://127.0.0.1:10000/devstoreaccount1/replicas/m/disk-0.vhd?comp=page"
    hdrs = {
        "x-ms-date": "Thu, 03 Dec 2026 11:00:00 GMT",
        "x-ms-version": "2025-01-05",
        "x-ms-range": "bytes=0-511",
        "x-ms-page-write": "update",
        "Content-Length": "512",
        "If-Match": '"0x8D"',
    }
    request = HttpRequest("PUT", url, headers=dict(hdrs))
    pipeline_request = PipelineRequest(request, context=_Context())  # type: ignore[arg-type]
    SharedKeyCredentialPolicy("devstoreaccount1", AZURITE_KEY).on_request(pipeline_request)  # type: ignore[no-untyped-call]
    ours = shared_key_signature(
        AZURITE_KEY,
        "devstoreaccount1",
        "PUT",
        "/devstoreaccount1/replicas/m/disk-0.vhd",
        [("comp", "page")],
        hdrs,
    )
    assert ours == request.headers["Authorization"]


class _Context:
    """What the SDK's signer reads of a pipeline context: no transport (so not the aiohttp path)."""

    transport = None

    def __getitem__(self, key: str) -> object:
        raise KeyError(key)

    def get(self, key: str, default: object = None) -> object:
        return default


# --- the engine's side: CRC64 runs and zero units -------------------------------------------------


def test_a_runs_crc64_is_that_of_the_concatenated_bytes() -> None:
    parts = [os.urandom(512 * n) for n in (1, 8, 3)]
    run = Crc64Run()
    for part in parts:
        run.add(crc64.compute(part, 0), len(part))
    whole = crc64.compute(b"".join(parts), 0)
    assert run.crc == whole and run.length == sum(map(len, parts))
    assert bytes(run.header()) == whole.to_bytes(8, "little")


def _extent(data: bytes, *, algorithm: ChecksumAlgorithm = ChecksumAlgorithm.CRC64, **more: str) -> Extent:
    return Extent.model_validate(
        {"offset": 0, "length": len(data), "blob": "m/c/d/data-00000.bin", "blobOffset": 0}
        | {algorithm.value: checksum_hex(algorithm, data)}
        | more
    )


def test_zero_units_are_known_by_their_crc64() -> None:
    assert is_zero_extent(_extent(bytes(4096)))
    assert not is_zero_extent(_extent(bytes(4095) + b"\x01" + bytes(512)))
    assert not is_zero_extent(_extent(bytes(4096), algorithm=ChecksumAlgorithm.SHA256))


def test_only_manifests_the_service_can_verify_take_the_unread_path() -> None:
    assert service_verifiable([_extent(os.urandom(4096)), _extent(bytes(4 * 1024 * 1024))]) is None
    assert "no crc64" in (service_verifiable([_extent(b"x" * 512, algorithm=ChecksumAlgorithm.SHA256)]) or "")
    both = _extent(b"x" * 512, sha256=hashlib.sha256(b"x" * 512).hexdigest())
    assert "sha256" in (service_verifiable([both]) or "")
    assert "4 MiB" in (service_verifiable([_extent(bytes(4 * 1024 * 1024 + 512))]) or "")
