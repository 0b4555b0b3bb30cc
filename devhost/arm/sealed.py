"""Secrets the local ARM endpoint must keep across a restart, kept sealed (encrypted) in its store.

A Custom Script Extension's protected settings hold read SAS URLs (`fileUris`) and a command with a
write SAS; the endpoint needs them only until the script has run, and a restart in between must be able
to run it. So they are stored encrypted (Fernet) with a key of this endpoint (`protected-settings.key`,
mode 0600, next to the store) while the run is pending, and dropped once it has run. The SQLite file
and its WAL never hold them in clear. Azure also encrypts protected settings and never returns them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

KEY_FILE = "protected-settings.key"
SEALED = "sealed"


def _fernet(data_dir: Path) -> Fernet:
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
        partial.replace(path)
    return Fernet(path.read_bytes())


def seal(data_dir: Path, value: dict[str, Any]) -> dict[str, str]:
    return {SEALED: _fernet(data_dir).encrypt(json.dumps(value).encode()).decode()}


def unseal(data_dir: Path, stored: dict[str, Any] | None) -> dict[str, Any]:
    if not stored:
        return {}
    opened: dict[str, Any] = json.loads(_fernet(data_dir).decrypt(str(stored[SEALED]).encode()))
    return opened
