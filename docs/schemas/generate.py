"""Write (or, with --check, verify) the JSON schemas generated from the pydantic models.

.venv/bin/python docs/schemas/generate.py          # regenerate after changing a model
.venv/bin/python docs/schemas/generate.py --check  # exit 1 if a committed schema is stale
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shared.replication.delta_manifest import manifest_json_schema  # noqa: E402

SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "delta-manifest.schema.json": manifest_json_schema,
}


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
