"""The README's settings table and local.settings.example.json follow the Settings model.

The table is generated from the model: `python -m tests.unit.test_settings_doc` rewrites it in place.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

from shared.platform.settings import Settings, SettingVariable, variables

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLE = ROOT / "local.settings.example.json"
BEGIN = (
    "<!-- settings table: generated from shared/platform/settings.py by tests/unit/test_settings_doc.py -->"
)
END = "<!-- end of settings table -->"
# Read by the Functions host, not by the app.
HOST_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "AzureWebJobsFeatureFlags"}
UNITS = {"_SECONDS": 1.0, "_MINUTES": 60.0, "_HOURS": 3600.0, "_MS": 0.001}


def _default(variable: SettingVariable) -> str:
    value = variable.default
    if variable.required:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, timedelta):
        unit = next(u for suffix, u in UNITS.items() if variable.env.endswith(suffix))
        value = value.total_seconds() / unit
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _meaning(variable: SettingVariable) -> str:
    if variable.group is not None and variable.path[0] in {"cache_storage", "replica_storage"}:
        group = Settings.model_fields[variable.path[0]].description
        return f"{group}: {variable.description}"
    return variable.description


def settings_table() -> str:
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    rows += [f"| `{v.env}` | {_default(v)} | {_meaning(v)} |" for v in variables()]
    return "\n".join([BEGIN, *rows, END])


def _readme_table(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def test_the_readme_table_is_the_model() -> None:
    assert _readme_table(README.read_text()) == settings_table(), (
        "README.md's settings table differs from shared/platform/settings.py; "
        "run `python -m tests.unit.test_settings_doc` to regenerate it"
    )


def test_every_setting_in_the_readme_is_read_by_the_model_and_vice_versa() -> None:
    table = _readme_table(README.read_text())
    listed = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert listed == {v.env for v in variables()}


def test_local_settings_example_lists_every_setting() -> None:
    values = json.loads(EXAMPLE.read_text())["Values"]
    model = {v.env for v in variables()}
    assert sorted(model - set(values)) == [], "settings missing from local.settings.example.json"
    assert sorted(set(values) - model - HOST_SETTINGS) == [], "settings the model does not read"
    # The example is a working local configuration.
    Settings.from_environ(values)


if __name__ == "__main__":
    text = README.read_text()
    README.write_text(text.replace(_readme_table(text), settings_table()))
    sys.stdout.write("README.md settings table regenerated\n")
