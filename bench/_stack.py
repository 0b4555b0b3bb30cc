"""Fresh emulators for one benchmark: started in a temp directory, stopped afterwards."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from devhost.emulators import EmulatorEndpoints, EmulatorPorts, start_azurite
from devhost.processes import free_port


@contextmanager
def azurite() -> Iterator[EmulatorEndpoints]:
    root = Path(tempfile.mkdtemp(prefix="bench-azurite-"))
    ports = EmulatorPorts(blob=free_port(), queue=free_port(), table=free_port(), cosmos=free_port())
    process = start_azurite(root / "data", ports, root / "logs")
    try:
        yield EmulatorEndpoints(ports)
    finally:
        process.stop()
        shutil.rmtree(root, ignore_errors=True)


def blob_service(endpoints: EmulatorEndpoints) -> BlobServiceClient:
    # Large single GETs: verification reads are 8 MiB and should be one request each.
    return BlobServiceClient.from_connection_string(endpoints.storage_connection_string)
