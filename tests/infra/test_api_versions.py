"""Every resource API version in infra/ is one verified to exist (infra/verified-api-versions.json)."""

from __future__ import annotations

import json
import re

from tests.infra.bicep_model import INFRA, bicep_files, resources, strip_comments

ALLOW_LIST = json.loads((INFRA / "verified-api-versions.json").read_text())
VERIFIED = {kind: set(entry["versions"]) for kind, entry in ALLOW_LIST.items() if not kind.startswith("_")}
API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


def test_every_resource_uses_a_verified_api_version() -> None:
    unverified = sorted(
        f"{r.file.relative_to(INFRA)}:{r.symbol} {r.type}@{r.api_version}"
        for r in resources()
        if r.api_version not in VERIFIED.get(r.type, set())
    )
    assert not unverified, "API versions without evidence in verified-api-versions.json:\n" + "\n".join(
        unverified
    )


def test_child_resources_declared_inline_are_covered_too() -> None:
    # `resource x 'config' = {...}` nested children carry no type@version of their own in pycep's model;
    # forbid them so every versioned type goes through the allow-list check above.
    for path in bicep_files():
        text = strip_comments(path.read_text())
        assert not re.search(r"^\s+resource \w+ '[a-zA-Z]+' = ", text, re.MULTILINE), path.name


def test_allow_list_entries_are_well_formed_and_in_use() -> None:
    used = {r.type for r in resources()}
    for kind, entry in ALLOW_LIST.items():
        if kind.startswith("_"):
            continue
        assert entry["evidence"].strip(), f"{kind}: a verified version needs its evidence"
        assert all(API_VERSION.match(version) for version in entry["versions"]), kind
        assert kind in used, f"{kind} is allow-listed but no longer used: remove it"
