"""Cosmos containers, partition keys and TTLs in infra/ match the repository code and docs/data-model.md."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from tests.infra.bicep_model import MAIN, ROOT, literal, parse, resources, variables

DATA_MODEL = ROOT / "docs" / "data-model.md"
CODE_MODULE = "shared.platform.documents"
PATH_CELL = re.compile(r"^/[A-Za-z_][\w]*(/[\w]+)*$")
INLINE = re.compile(
    r"`(?P<name>[a-z][\w-]*)`[^`\n]*?partition(?:\s|-)?key[^`\n]*?`(?P<path>/[A-Za-z_][\w/]*)`", re.IGNORECASE
)


def bicep_containers() -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in literal(variables(MAIN)["cosmosContainers"])}


def code_containers() -> dict[str, dict[str, Any]]:
    """The repository's container specs (name, partition key path, default TTL), read from the code."""
    specs = importlib.import_module(CODE_MODULE).ALL_CONTAINERS
    found: dict[str, dict[str, Any]] = {}
    for spec in specs:
        entry: dict[str, Any] = {"name": spec.name, "partitionKeyPath": spec.partition_key_path}
        if spec.default_ttl is not None:
            entry["defaultTtl"] = spec.default_ttl
        found[spec.name] = entry
    return found


def documented_containers(text: str) -> dict[str, str]:
    """Containers named in the data model: table rows `| name | ... | /pk | ...` or `name` ... partition key `/pk`."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            cells = [cell.strip().strip("`*").strip() for cell in stripped.strip("|").split("|")]
            paths = [cell for cell in cells[1:] if PATH_CELL.match(cell)]
            if paths and re.fullmatch(r"[a-z][\w-]*", cells[0]):
                found[cells[0]] = paths[0]
            continue
        for match in INLINE.finditer(line):
            found.setdefault(match["name"], match["path"])
    return found


def test_the_container_list_is_wired_into_the_cosmos_module() -> None:
    containers = bicep_containers()
    assert containers and all(c["partitionKeyPath"].startswith("/") for c in containers.values())
    module = parse(MAIN)["modules"]["cosmos"]["config"]
    assert module["params"]["containers"] == "cosmosContainers"
    (sql_containers,) = [r for r in resources() if r.type.endswith("/sqlDatabases/containers")]
    assert sql_containers.looped


def test_infra_matches_the_repository_code() -> None:
    assert bicep_containers() == code_containers(), (
        f"infra/main.bicep cosmosContainers and {CODE_MODULE}.ALL_CONTAINERS disagree "
        "(name, partition key path, default TTL)"
    )


def test_documented_parser_reads_tables_and_prose(tmp_path: Path) -> None:
    sample = (
        "| Container | Partition key | Notes |\n|---|---|---|\n| `machines` | `/id` | state |\n"
        "- `events` (partition key `/machineId`, TTL 90 days)\n"
    )
    assert documented_containers(sample) == {"machines": "/id", "events": "/machineId"}


def test_infra_matches_the_data_model_document() -> None:
    if not DATA_MODEL.exists():
        return  # the code comparison above is the contract until the document lands
    documented = documented_containers(DATA_MODEL.read_text())
    assert documented, (
        "docs/data-model.md names no container with its partition key; write them as a table row "
        "'| `container` | `/partitionKey` | ...' or as '`container` ... partition key `/path`'"
    )
    infra = {name: c["partitionKeyPath"] for name, c in bicep_containers().items()}
    assert documented == infra, (
        "infra/main.bicep cosmosContainers and docs/data-model.md disagree:\n"
        f"  only in docs:  {sorted(set(documented.items()) - set(infra.items()))}\n"
        f"  only in infra: {sorted(set(infra.items()) - set(documented.items()))}"
    )
