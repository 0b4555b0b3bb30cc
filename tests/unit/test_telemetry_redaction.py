"""shared.platform.telemetry redaction: secrets never reach a log line, ordinary text stays readable."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from shared.platform.telemetry import SecretRedactingFilter, install_secret_redaction, redact

ACCOUNT_KEY = "Zm9vYmFyYmF6cXV4c2VjcmV0a2V5MTIzNDU2Nzg5MA=="
SAS_SIG = "3kZ%2F8h1qv0X2p9w%3D"


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        (
            f"https://stcache.blob.core.windows.net/uploads/m1/c1.bin?sv=2024-08-04&se=2026-01-01&sp=cw&sig={SAS_SIG}",
            SAS_SIG,
            "https://stcache.blob.core.windows.net/uploads/m1/c1.bin?sv=2024-08-04&se=2026-01-01&sp=cw&sig=***",
        ),
        (
            f"DefaultEndpointsProtocol=https;AccountName=sthost;AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net",
            ACCOUNT_KEY,
            "AccountName=sthost;AccountKey=***;EndpointSuffix=core.windows.net",
        ),
        (
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=abcDEF123456=",
            "abcDEF123456=",
            "SharedAccessKeyName=send;SharedAccessKey=***",
        ),
        (
            "Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi.payload.sig",
            "eyJ0eXAi",
            "Authorization: Bearer ***",
        ),
        ("aeg-sas-key: local-topic-key-change-me", "local-topic-key-change-me", "aeg-sas-key: ***"),
        (
            "POST https://func.azurewebsites.net/runtime/webhooks/eventgrid?functionName=on_appliance_event&code=k3y",
            "k3y",
            "functionName=on_appliance_event&code=***",
        ),
        (
            '{"applianceId": "a-1", "credential": "c2VjcmV0LWNyZWQ="}',
            "c2VjcmV0LWNyZWQ=",
            '"credential": "***"',
        ),
        ("client_secret=s3cr3t&grant_type=client_credentials", "s3cr3t", "client_secret=***"),
        ("APPLIANCE_CREDENTIAL_PEPPER=hunter2", "hunter2", "APPLIANCE_CREDENTIAL_PEPPER=***"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAKC\n-----END RSA PRIVATE KEY-----",
            "MIIEow",
            "-----BEGIN PRIVATE KEY-----***-----END PRIVATE KEY-----",
        ),
    ],
)
def test_redact_removes_the_secret_and_keeps_the_context(text: str, secret: str, kept: str) -> None:
    redacted = redact(text)
    assert secret not in redacted
    assert kept in redacted


@pytest.mark.parametrize(
    "text",
    [
        "cycle c-42 of machine m-1 applied: 37 extents, 4194304 bytes",
        "https://stcache.blob.core.windows.net/uploads/m1/manifest.json",
        "GET /api/machines/m-1/events?top=20 -> 200",
        "AzureWebJobsStorage__accountName=sthostabc",
    ],
)
def test_ordinary_text_is_untouched(text: str) -> None:
    assert redact(text) == text


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s|%(sas_url)s"))
    handler.addFilter(SecretRedactingFilter())
    logger = logging.getLogger("tests.telemetry.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_filter_redacts_args_and_extra_fields(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.info(
        "uploading with %s (key %s)",
        f"https://a.blob.core.windows.net/c/b?sp=r&sig={SAS_SIG}",
        f"AccountKey={ACCOUNT_KEY}",
        extra={"sas_url": f"https://a.blob.core.windows.net/c/b?sig={SAS_SIG}"},
    )
    line = stream.getvalue()
    assert SAS_SIG not in line and ACCOUNT_KEY not in line
    assert "uploading with https://a.blob.core.windows.net/c/b?sp=r&sig=***" in line


def test_exception_text_is_redacted_and_raw_exc_info_dropped(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    try:
        raise RuntimeError(f"copy failed for https://a.blob.core.windows.net/c/b?sig={SAS_SIG}")
    except RuntimeError:
        logger.exception("replica copy failed", extra={"sas_url": "-"})
    output = stream.getvalue()
    assert SAS_SIG not in output
    assert "RuntimeError: copy failed for https://a.blob.core.windows.net/c/b?sig=***" in output


def test_install_redacts_records_of_every_logger_whatever_the_handler() -> None:
    install_secret_redaction()
    install_secret_redaction()  # idempotent: one factory wrapper, not two
    record = logging.getLogger("any.library").makeRecord(
        "any.library", logging.WARNING, __file__, 1, "token=%s", ("abc.def.ghi",), None
    )
    assert record.getMessage() == "token=***"
