"""Logs of the local stack never hold a usable SAS: every record's final text has its `sig=` values
replaced, whoever logged it (our code, httpx's request lines, an SDK's exception text, a traceback).

A SAS is a bearer secret: whoever reads a URL with its signature can use it until it expires. The log
keeps the rest of the URL (account, blob, expiry, permissions), which is what a reader debugging needs.
"""

from __future__ import annotations

import logging
import re
import sys

REDACTED = "REDACTED"
# `sig=` in a query string, and `sig%3D` in a URL that is itself URL-encoded inside another one.
_SIGNATURE = re.compile(r"(?i)(?:(?<![A-Za-z0-9_])|(?<=%26)|(?<=%3F))(sig(?:=|%3D))[^&\s\"'<>\\]+")


def redact(text: str) -> str:
    return _SIGNATURE.sub(rf"\1{REDACTED}", text)


class RedactingFormatter(logging.Formatter):
    """Redacts the whole formatted record: message, arguments, exception and stack text alike."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str | int, fmt: str) -> None:
    """`logging.basicConfig` for a stack process: one stderr handler (the stack sends it to the
    process's 0600 log file) whose formatter redacts signatures."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(fmt))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
