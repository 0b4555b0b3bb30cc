"""Host keys, as the Functions host keeps them: a master key, a default function key, system keys.

Generated once per data folder with a CSPRNG and stored with mode 0600; never hard-coded.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from pathlib import Path

from pydantic import BaseModel

EVENTGRID_SYSTEM_KEY_NAME = "eventgrid_extension"
DURABLE_SYSTEM_KEY_NAME = "durabletask_extension"
SYSTEM_KEY_NAMES = (EVENTGRID_SYSTEM_KEY_NAME, DURABLE_SYSTEM_KEY_NAME)


class HostKeys(BaseModel):
    master: str
    function_default: str
    system: dict[str, str]

    @classmethod
    def load_or_create(cls, path: Path) -> HostKeys:
        if path.exists():
            keys = cls.model_validate_json(path.read_text())
        else:
            keys = cls(
                master=secrets.token_urlsafe(32), function_default=secrets.token_urlsafe(32), system={}
            )
        missing = [name for name in SYSTEM_KEY_NAMES if name not in keys.system]
        if missing or not path.exists():
            # A keys file kept (`up --keep-data`) from before a system key existed gets it added, the others kept.
            keys.system.update({name: secrets.token_urlsafe(32) for name in missing})
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(keys.model_dump(), handle, indent=2)
        return keys

    def allows(self, presented: str | None, auth_level: str) -> bool:
        """Same rules as the host: anonymous needs nothing, function takes a function or master key, admin only master."""
        level = auth_level.lower()
        if level == "anonymous":
            return True
        if not presented:
            return False
        if level == "admin":
            return _same(presented, self.master)
        return _same(presented, self.master) or _same(presented, self.function_default)

    def allows_system(self, presented: str | None, name: str) -> bool:
        expected = self.system.get(name)
        return bool(presented and expected) and (
            _same(presented or "", expected or "") or _same(presented or "", self.master)
        )


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def presented_key(headers: dict[str, str] | object, query: dict[str, str] | object) -> str | None:
    """A key travels in the `x-functions-key` header or the `code` query parameter."""
    header = headers.get("x-functions-key")  # type: ignore[attr-defined]
    return header or query.get("code")  # type: ignore[attr-defined,no-any-return]
