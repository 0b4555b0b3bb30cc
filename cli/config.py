"""Where the client finds the API and how it proves who the operator is: the environment first, then
the profile file.

`MIGRATE_ENDPOINT` and `MIGRATE_FUNCTION_KEY` override `~/.config/migrate/profile.toml`
(`endpoint = "..."`, `function_key = "..."`); likewise `MIGRATE_AUTHORITY`, `MIGRATE_CLIENT_ID`,
`MIGRATE_CLIENT_SECRET`, `MIGRATE_AUDIENCE` (`authority`, `client_id`, `client_secret`, `audience`: the
client-credentials grant, cli/auth.py), and `MIGRATE_ACCESS_TOKEN` (a token obtained elsewhere, never
stored). The profile holds a secret, so it is written 0600 and a
profile that others can read is refused rather than silently used.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cli.auth import ClientCredentials

ENDPOINT_VARIABLE = "MIGRATE_ENDPOINT"
KEY_VARIABLE = "MIGRATE_FUNCTION_KEY"
PROFILE_VARIABLE = "MIGRATE_PROFILE"


class ConfigError(Exception):
    """The client is not configured, or its profile is unsafe: the message says what to do."""


AUTH_FIELDS = {
    "authority": "MIGRATE_AUTHORITY",
    "client_id": "MIGRATE_CLIENT_ID",
    "client_secret": "MIGRATE_CLIENT_SECRET",
    "audience": "MIGRATE_AUDIENCE",
}
TOKEN_VARIABLE = "MIGRATE_ACCESS_TOKEN"


@dataclass(frozen=True)
class Profile:
    endpoint: str
    function_key: str | None
    authority: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    audience: str | None = None
    access_token: str | None = None

    def credentials(self) -> ClientCredentials | None:
        if self.authority and self.client_id and self.client_secret and self.audience:
            return ClientCredentials(self.authority, self.client_id, self.client_secret, self.audience)
        return None


def default_profile_path(environ: Mapping[str, str]) -> Path:
    if environ.get(PROFILE_VARIABLE):
        return Path(environ[PROFILE_VARIABLE])
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "migrate" / "profile.toml"


def _read_profile(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} holds a function key but others may read it (mode {stat.S_IMODE(mode):o}): "
            f"run `chmod 600 {path}`"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the profile {path}: {exc}") from None
    return {k: str(v) for k, v in data.items() if k in ("endpoint", "function_key", *AUTH_FIELDS)}


def load_profile(environ: Mapping[str, str] | None = None) -> Profile:
    env = os.environ if environ is None else environ
    path = default_profile_path(env)
    stored = _read_profile(path)
    endpoint = env.get(ENDPOINT_VARIABLE) or stored.get("endpoint")
    if not endpoint:
        raise ConfigError(
            f"no API endpoint: set {ENDPOINT_VARIABLE} (e.g. http://localhost:7071) or run "
            f"`migrate configure --endpoint URL --function-key KEY` (writes {path})"
        )
    auth = {name: env.get(variable) or stored.get(name) for name, variable in AUTH_FIELDS.items()}
    return Profile(
        endpoint=endpoint.rstrip("/"),
        function_key=env.get(KEY_VARIABLE) or stored.get("function_key"),
        access_token=env.get(TOKEN_VARIABLE) or None,
        **auth,
    )


def save_profile(path: Path, profile: Profile) -> None:
    """Write the profile readable by its owner only (created 0600, never world-readable for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = [f"endpoint = {_toml_string(profile.endpoint)}"]
    if profile.function_key:
        lines.append(f"function_key = {_toml_string(profile.function_key)}")
    for name in AUTH_FIELDS:
        value = getattr(profile, name)
        if value:
            lines.append(f"{name} = {_toml_string(value)}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
