"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis): whatever a
client sends, the API answers with a clear 4xx, never a 500.

Runs the schemathesis command line (its pytest plugin does not support this pytest version) against
the whole local stack, with the operator's function key; the only check is `not_a_server_error`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Operator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_api_never_answers_a_server_error(operator: Operator, tmp_path: Path) -> None:
    base = f"{operator.stack.functions_url}/api"
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{base}/openapi.json",
            "--url",
            base,
            "--header",
            f"x-functions-key: {operator.function_key}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "15",
            "--seed",
            "2026",
            "--request-timeout",
            "30",
            "--generation-deterministic",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "not_a_server_error" in output or "passed" in output.lower(), output[-2000:]
