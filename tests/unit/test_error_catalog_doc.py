"""docs/error-catalog.md is generated from the catalog data and must be up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shared.health.catalog import CATALOG
from shared.health.catalog.markdown import DOC_PATH, escape_prose, render_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_the_catalog_page_is_up_to_date() -> None:
    page = (ROOT / DOC_PATH).read_text(encoding="utf-8")
    assert page == render_markdown(), "docs/error-catalog.md is stale: run scripts/render_error_catalog.py"


def test_the_page_has_a_row_and_a_section_per_entry() -> None:
    page = render_markdown()
    for entry in CATALOG.entries:
        assert f"| [{entry.code}](#" in page
        assert f"\n## {entry.code} {entry.name}\n" in page
        for line in (*entry.causes, *entry.recommendations):
            assert escape_prose(line) in page


def test_placeholders_outside_code_spans_are_escaped_for_markdown() -> None:
    assert escape_prose("run `azcopy <x>` on <appliance>") == "run `azcopy <x>` on &lt;appliance&gt;"


def test_the_script_checks_without_writing() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "render_error_catalog.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
