"""Write (or, with --check, verify) the JSON schemas generated from the pydantic models.

.venv/bin/python docs/schemas/generate.py          # regenerate after changing a model
.venv/bin/python docs/schemas/generate.py --check  # exit 1 if a committed schema is stale

Every appliance-facing contract is here, from the model the control plane validates it with: the
events the appliance publishes (each in its Event Grid envelope), the commands it polls, the
discovery report it posts and the delta manifest it uploads. docs/appliance-contract.md says what
each means; the OpenAPI document carries the same models.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shared.appliances.events import (  # noqa: E402
    CYCLE_FAILED,
    CYCLE_STARTED,
    CYCLE_UPLOADED,
    ENVELOPES,
    HEARTBEAT,
)
from shared.domain.api import CommandList  # noqa: E402
from shared.domain.command import ApplianceCommand  # noqa: E402
from shared.domain.inventory import DiscoveryReport  # noqa: E402
from shared.replication.delta_manifest import manifest_json_schema  # noqa: E402

BASE_ID = "https://schemas.migration-control-plane.local/"


def model_schema(
    model: type[BaseModel],
    name: str,
    *,
    title: str,
    description: str,
    mode: Literal["validation", "serialization"],
) -> Callable[[], dict[str, Any]]:
    """`model`'s schema as a standalone document; `mode` is "validation" for what the control plane
    accepts (the appliance sends it) and "serialization" for what it returns."""

    def build() -> dict[str, Any]:
        schema = model.model_json_schema(by_alias=True, mode=mode)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = BASE_ID + name
        schema["title"] = title
        schema["description"] = description
        return schema

    return build


def _event(event_type: str, name: str, what: str) -> tuple[str, Callable[[], dict[str, Any]]]:
    return name, model_schema(
        ENVELOPES[event_type],
        name,
        title=event_type,
        description=f"{what} One Event Grid event as the appliance publishes it (the topic takes a JSON "
        "array of these). An event whose `data` does not match is refused and never retried.",
        mode="validation",
    )


SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = dict(
    [
        ("delta-manifest.schema.json", manifest_json_schema),
        _event(HEARTBEAT, "event-heartbeat.schema.json", "The appliance is alive."),
        _event(
            CYCLE_STARTED,
            "event-cycle-started.schema.json",
            "A cycle began: every listed disk's upload is due within expectedDurationSeconds.",
        ),
        _event(
            CYCLE_UPLOADED,
            "event-cycle-uploaded.schema.json",
            "Every disk's data blobs and manifest of a cycle are in the cache container; apply it.",
        ),
        _event(CYCLE_FAILED, "event-cycle-failed.schema.json", "The appliance could not produce a cycle."),
        (
            "appliance-command.schema.json",
            model_schema(
                ApplianceCommand,
                "appliance-command.schema.json",
                title="Appliance command",
                description="One command as GET /api/appliances/{applianceId}/commands returns it (and "
                "POST .../commands/{commandId}/ack). RunCycle: upload a cycle of cycleKind. ResyncDisk: "
                "upload a resync cycle that includes diskId. ShutDownSource: shut the source down, then "
                "acknowledge.",
                mode="serialization",
            ),
        ),
        (
            "command-list.schema.json",
            model_schema(
                CommandList,
                "command-list.schema.json",
                title="Pending commands",
                description="GET /api/appliances/{applianceId}/commands: the pending commands, oldest "
                "first, at most 100.",
                mode="serialization",
            ),
        ),
        (
            "discovery-report.schema.json",
            model_schema(
                DiscoveryReport,
                "discovery-report.schema.json",
                title="Discovery report",
                description="POST /api/appliances/{applianceId}/machines: the machines the appliance "
                "found, each with its disks and NICs (1-500 machines, each id once).",
                mode="validation",
            ),
        ),
    ]
)


def render(build: Callable[[], dict[str, Any]]) -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, build in SCHEMAS.items():
        path = Path(__file__).resolve().parent / name
        text = render(build)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run: .venv/bin/python docs/schemas/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
