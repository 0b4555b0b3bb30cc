"""The conformance figure in docs/local-arm.md is the register's: examples passing fully / transcribed."""

from __future__ import annotations

import importlib
import re
from collections import Counter
from pathlib import Path

from tests.arm.conformance.spec import REGISTER, Outcome

EXAMPLE_MODULES = (
    "tests.arm.conformance.test_network_examples",
    "tests.arm.conformance.test_disk_examples",
    "tests.arm.conformance.test_vm_examples",
    "tests.arm.conformance.test_access_examples",
    "tests.arm.conformance.test_availability_set_examples",
)
DOC = Path(__file__).resolve().parents[3] / "docs" / "local-arm.md"


def test_the_documented_figure_is_the_registers() -> None:
    for module in EXAMPLE_MODULES:
        importlib.import_module(module)
    examples = {(e.provider, e.name): e for e in REGISTER}
    assert len(examples) == len(REGISTER), "an example is transcribed twice"
    passing = sum(1 for e in examples.values() if e.outcome is Outcome.PASSES)
    match = re.search(
        r"\*\*(\d+) of the (\d+)\*\* transcribed specification examples pass fully", DOC.read_text()
    )
    assert match is not None, "docs/local-arm.md states the conformance figure"
    assert (int(match.group(1)), int(match.group(2))) == (passing, len(examples))
    per_provider = Counter(e.provider for e in examples.values())
    for provider, count in per_provider.items():
        assert f"| {provider} | {count} |" in DOC.read_text().replace("  ", " "), provider
