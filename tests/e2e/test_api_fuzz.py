"""Property-based testing of the HTTP API from its own OpenAPI document (schemathesis), with every check:
no 5xx, only documented status codes, response bodies, content types and headers as documented,
schema-valid requests accepted and invalid ones refused with a 4xx.

Runs the schemathesis command line (its pytest plugin does not support this pytest version) against
the whole local stack with no real machines, with the operator's function key, a fixed seed and a
bounded number of examples per operation so that it fits CI (a few minutes on two busy cores).
tests/e2e/schemathesis.toml turns every check on and says which parameter is pinned and which check
one operation skips, and why."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.stack import LocalStack
from tests.e2e.conftest import Operator, e2e_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = 12


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of its own, with no machines: what the document's examples and the checks expect (a
    machine another test left, an Ubuntu 22.04 one say, turns schema-valid requests into 400s for the
    machine's reasons), whatever ran before in this process."""
    with e2e_stack(tmp_path_factory) as stack:
        yield stack


@pytest.fixture(scope="module")
def operator(local_stack: LocalStack) -> Operator:
    return Operator(local_stack)


# Every operation of the document, three phases (about 3,500 requests): 200 s on 2 cores busy with other
# work (coverage 137 s, fuzzing 54 s, stateful 8 s) since the local Cosmos answers a missing document 404 at
# once; each of the hundreds of unknown-id requests used to cost a second of SDK retries (443 s in all). The
# subprocess's own timeout (below) bounds it.
@pytest.mark.timeout(1200)
def test_the_api_conforms_to_its_openapi_document(operator: Operator, tmp_path: Path) -> None:
    base = operator.stack.functions_url
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis),
            "--config-file",
            str(CONFIG),
            "run",
            f"{base}/api/openapi.json",
            # The document's paths carry the /api prefix already.
            "--url",
            base,
            "--header",
            f"x-functions-key: {operator.function_key}",
            # An Administrator's token: every operator route is reachable (appliance routes answer 401).
            "--header",
            f"Authorization: Bearer {operator.stack.operator_token()}",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "2026",
            "--request-timeout",
            "30",
            "--generation-deterministic",
        ],
        capture_output=True,
        text=True,
        timeout=1100,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "API Operations" in output, output[-2000:]  # it really ran the operations
