"""No log of the local stack holds a usable SAS, and only its owner reads it."""

from __future__ import annotations

import io
import logging
import stat
import sys
from pathlib import Path

from devhost.processes import ManagedProcess
from devhost.redaction import RedactingFormatter, redact

SAS = (
    "http://127.0.0.1:10000/devstoreaccount1/hydration/toolkit/run.sh?st=2026-12-03T06%3A48%3A40Z"
    "&se=2026-12-03T08%3A53%3A40Z&sp=r&sv=2026-10-06&sr=b&sig=7khKSb/kAZsJkeYTlxvl1gGG%2Bn/%2BZE%3D"
)


def test_signatures_are_redacted_wherever_they_appear() -> None:
    line = f'HTTP Request: GET {SAS} "HTTP/1.1 200 OK"'
    assert redact(line) == line.replace("7khKSb/kAZsJkeYTlxvl1gGG%2Bn/%2BZE%3D", "REDACTED")
    # A SAS URL-encoded inside another URL (a copy source), and a disk RP's grant URL.
    nested = "copy?source=http%3A%2F%2Fh%2Fb%3Fsv%3D1%26sig%3DAbC%2BdEf%3D%26se%3D1"
    assert "AbC" not in redact(nested) and "sig%3DREDACTED" in redact(nested)
    grant = "http://127.0.0.1:7072/md-1/abc/abcd?sv=2018-03-28&sr=b&si=1f-2&sig=Zm9v%2Fbg%3D%3D"
    assert redact(grant).endswith("&si=1f-2&sig=REDACTED")
    # Words that merely contain "sig" are left alone.
    assert redact("signature=abc design=x assig=1") == "signature=abc design=x assig=1"


def test_the_formatter_redacts_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test-redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("download of %s failed", SAS)
        try:
            raise RuntimeError(f"could not read {SAS}")
        except RuntimeError:
            logger.exception("operation failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "7khKSb" not in text
    assert text.count("sig=REDACTED") == 2 and "RuntimeError: could not read" in text


def test_process_logs_are_created_and_kept_private(tmp_path: Path) -> None:
    fresh, older = tmp_path / "fresh.log", tmp_path / "older.log"
    older.write_text("from an earlier run\n")
    older.chmod(0o644)
    for log in (fresh, older):
        process = ManagedProcess(
            name="echo", argv=[sys.executable, "-c", "print('hello')"], log_path=log
        ).start()
        assert process.popen is not None and process.popen.wait(timeout=30) == 0
        assert stat.S_IMODE(log.stat().st_mode) == 0o600, log
    assert older.read_text() == "from an earlier run\nhello\n"  # appended, not replaced
