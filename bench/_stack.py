"""Fresh emulators for one benchmark: started in a temp directory, stopped afterwards."""

from __future__ import annotations

import os
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
    with azurite_process() as (endpoints, _pid):
        yield endpoints


@contextmanager
def azurite_process() -> Iterator[tuple[EmulatorEndpoints, int]]:
    """As `azurite`, with the emulator's process id (for its CPU time: `process_cpu_seconds`)."""
    root = Path(tempfile.mkdtemp(prefix="bench-azurite-"))
    ports = EmulatorPorts(blob=free_port(), queue=free_port(), table=free_port(), cosmos=free_port())
    process = start_azurite(root / "data", ports, root / "logs")
    try:
        yield EmulatorEndpoints(ports), process.pid
    finally:
        process.stop()
        shutil.rmtree(root, ignore_errors=True)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds another process has used so far (Linux /proc; its own threads included)."""
    return _cpu_seconds(Path(f"/proc/{pid}/stat"))


def main_thread_cpu_seconds(pid: int) -> float:
    """As `process_cpu_seconds`, for the process's main thread alone: a Node.js server's JavaScript thread,
    which serves its requests one at a time (its other threads collect garbage and do file I/O)."""
    return _cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))


def _cpu_seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib() -> int:
    """This process's own peak resident set (VmHWM, KiB). Not `getrusage(...).ru_maxrss`: Linux carries
    that across fork and exec, so a child started by a large parent reports at least the parent's RSS
    (the benchmarks' children did: 419.7 MiB at every extent count, run after benchmarks that had grown
    the parent)."""
    return _status_kib("VmHWM")


def rss_kib() -> int:
    """This process's resident set now (VmRSS, KiB)."""
    return _status_kib("VmRSS")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}: a Linux kernel is needed for memory figures")


def blob_service(endpoints: EmulatorEndpoints) -> BlobServiceClient:
    # Large single GETs: verification reads are 8 MiB and should be one request each.
    return BlobServiceClient.from_connection_string(endpoints.storage_connection_string)
