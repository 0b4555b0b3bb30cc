#!/usr/bin/env python3
"""Write docs/error-catalog.md from the error catalog data (shared/health/catalog/entries.py).

Usage: .venv/bin/python scripts/render_error_catalog.py [--check]
--check writes nothing and exits 1 if the page is out of date (tests/unit/test_error_catalog_doc.py
runs the same comparison).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.health.catalog.markdown import DOC_PATH, render_markdown  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the page is out of date; write nothing")
    args = parser.parse_args(argv)
    path = ROOT / DOC_PATH
    wanted = render_markdown()
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if args.check:
        if current != wanted:
            print(f"{DOC_PATH} is out of date: run scripts/render_error_catalog.py", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        path.write_text(wanted, encoding="utf-8")
        print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
