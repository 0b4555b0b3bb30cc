"""The appliance guide's minimal example, run as written against the local stack: register, report,
replication enabled by the operator, one full cycle uploaded with the API's upload credentials and
published, and the replica equals the image byte for byte."""

from __future__ import annotations

import importlib.util
import random
import uuid
from pathlib import Path
from types import ModuleType

from azure.core.credentials import AzureKeyCredential

from devhost.local_appliance import function_key, stack_storage
from devhost.stack import LocalStack
from shared.replication.replica_disks import replica_blob_name
from tests.e2e.conftest import Operator, wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "minimal_appliance.py"
MIB = 1024 * 1024


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("minimal_appliance", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_minimal_appliance_replicates_an_image_byte_for_byte(
    local_stack: LocalStack, operator: Operator, tmp_path: Path
) -> None:
    example = load_example()
    image = tmp_path / "disk0.img"
    rng = random.Random(18)
    with image.open("wb") as handle:
        handle.truncate(9 * MIB + 512)  # not a whole number of extents or MiB
        for offset in (0, 5 * MIB, 9 * MIB - 4096):
            handle.seek(offset)
            handle.write(rng.randbytes(4096 + 512))
    settings = local_stack.settings
    key = function_key(local_stack)

    appliance_id, credential = example.register(
        local_stack.functions_url, key, local_stack.operator_token(), "minimal"
    )
    appliance = example.Appliance(local_stack.functions_url, key, appliance_id, credential)
    machine_id = f"vm-{uuid.uuid4().hex[:10]}"
    appliance.report(machine_id, image)
    operator.enable_replication(machine_id)
    topic = example.topic_client(
        settings["EVENTGRID_TOPIC_ENDPOINT"], AzureKeyCredential(settings["EVENTGRID_TOPIC_KEY"])
    )
    cycles: list[str] = wait_for(
        lambda: appliance.run_commands(topic, machine_id, image) or None, what="the initial-copy command"
    )
    assert len(cycles) == 1
    operator.wait_applied(machine_id, cycles[0])

    source = image.read_bytes()
    replica = stack_storage(local_stack).replicas.get_blob_client(replica_blob_name(machine_id, "disk0"))
    assert replica.download_blob(offset=0, length=len(source)).readall() == source
