"""The Mobility agent's replication of its own server's disks: the appliance's cycle protocol, stdlib only.

A physical server has no changed block tracking, so changes are found by hashing every block and comparing
with the hashes of the last posted cycle (`<disk>.hashes`, 16 bytes a block: a 2 TiB disk at 1 MiB blocks
is a 32 MiB file). One read of the disk per cycle: each changed run of blocks (at most 4 MiB, one extent)
is checksummed and sent as one Put Block to the cycle's data blob while the scan goes on.

A cycle is posted at least once and its base moves on only once it is: the cycle and the new hashes are
kept as `pending` until POST /mobility/agents/cycles answers, and a restarted agent posts the pending
cycle again (same id, same manifests: a duplicate at worst) before taking a new one. A cycle that fails
before its manifests are all written was never posted, so it is simply taken again under the same id
(the contract allows rewriting an unposted cycle's blobs).

The uploads follow the replication policy: `uploadThreadsPerVm` Put Blocks in flight and, when
throttling is enabled, the work-hours or non-work-hours bandwidth limit of the server's local time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

SECTOR: Final = 512
MIB: Final = 1024 * 1024
BLOCK: Final = 1 * MIB  # the hashed unit
MAX_EXTENT: Final = 4 * MIB  # one extent, one Put Block
MAX_DATA_BLOB: Final = 256 * MIB
DIGEST: Final = 16
ZERO_DIGEST_OF: dict[int, bytes] = {}
# A SAS lives about an hour: ask again well before, so a slow, throttled blob never meets its expiry.
SAS_REFRESH_SECONDS: Final = 40 * 60
TIMEOUT: Final = 60
RETRIES: Final = 6
STORAGE_VERSION: Final = "2021-08-06"
FULL_KINDS: Final = ("initial", "resync")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:DIGEST]


def _zero_digest(length: int) -> bytes:
    if length not in ZERO_DIGEST_OF:
        ZERO_DIGEST_OF[length] = _digest(bytes(length))
    return ZERO_DIGEST_OF[length]


def _transient(status: int) -> bool:
    return status in (408, 429) or status >= 500


def _retry_after(headers: Any, attempt: int) -> float:
    raw = headers.get("Retry-After") if headers is not None else None
    try:
        return min(float(raw), 60.0) if raw else float(min(2**attempt, 30))
    except ValueError:
        return float(min(2**attempt, 30))


@dataclass
class ControlPlane:
    """The agent's calls to the API: its function key and `Authorization: Bearer <its credential>`."""

    base: str
    function_key: str
    credential: str
    sleep: Callable[[float], None] = time.sleep

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Accept": "application/json", "Authorization": f"Bearer {self.credential}"}
        if self.function_key:
            headers["x-functions-key"] = self.function_key
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(RETRIES + 1):
            request = urllib.request.Request(f"{self.base}{path}", data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                    raw = response.read()
                    return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                text = exc.read().decode(errors="replace")
                if not _transient(exc.code) or attempt == RETRIES:
                    raise ApiError(exc.code, _error_message(text)) from None
                self.sleep(_retry_after(exc.headers, attempt))
            except (urllib.error.URLError, OSError) as exc:
                if attempt == RETRIES:
                    raise ApiError(0, f"{self.base} unreachable: {exc}") from None
                self.sleep(float(min(2**attempt, 30)))
        raise AssertionError("unreachable")


def _error_message(text: str) -> str:
    try:
        error = json.loads(text)["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return text[:500]


# --- the replication policy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    threads: int = 4
    throttling: bool = False
    work_kbps: int = 0
    other_kbps: int = 0
    work_days: tuple[str, ...] = ()
    work_start: str = "09:00"
    work_end: str = "18:00"

    @classmethod
    def from_wire(cls, policy: dict[str, Any]) -> Policy:
        hours = policy.get("workHours") or {}
        return cls(
            threads=max(1, min(int(policy.get("uploadThreadsPerVm", 4)), 32)),
            throttling=bool(policy.get("throttlingEnabled", False)),
            work_kbps=int(policy.get("workHoursBandwidthKbps", 0)),
            other_kbps=int(policy.get("nonWorkHoursBandwidthKbps", 0)),
            work_days=tuple(hours.get("days", ())),
            work_start=str(hours.get("start", "09:00"))[:5],
            work_end=str(hours.get("end", "18:00"))[:5],
        )

    def bytes_per_second(self, now: datetime) -> float | None:
        """The limit at the server's local time `now` (None: unlimited)."""
        if not self.throttling:
            return None
        hhmm = now.strftime("%H:%M")
        working = now.strftime("%A") in self.work_days and self.work_start <= hhmm < self.work_end
        kbps = self.work_kbps if working else self.other_kbps
        return kbps * 1000 / 8 if kbps > 0 else None


class Throttle:
    """Bytes sent by every upload thread together stay under the policy's rate (a shared schedule)."""

    def __init__(
        self,
        rate: Callable[[], float | None],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate, self._clock, self._sleep = rate, clock, sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def take(self, n: int) -> None:
        rate = self._rate()
        if rate is None:
            return
        with self._lock:
            now = self._clock()
            start = max(self._next, now)
            self._next = start + n / rate
        if start > now:
            self._sleep(start - now)


# --- storage: Put Block / Put Block List / Put Blob with a SAS ------------------------------------------


def _storage(
    url: str, method: str, body: bytes, headers: dict[str, str], sleep: Callable[[float], None]
) -> None:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    version = query.get("sv", [STORAGE_VERSION])[0]
    headers = {"x-ms-version": version, "Content-Length": str(len(body)), **headers}
    for attempt in range(RETRIES + 1):
        request = urllib.request.Request(url, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                response.read()
                return
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            if not _transient(exc.code) or attempt == RETRIES:
                # The URL is a secret: name the blob, never the query string.
                blob = urllib.parse.urlsplit(url).path
                raise ApiError(exc.code, f"storage refused {method} {blob}: {text[:300]}") from None
            sleep(_retry_after(exc.headers, attempt))
        except (urllib.error.URLError, OSError) as exc:
            if attempt == RETRIES:
                raise ApiError(0, f"storage unreachable: {exc}") from None
            sleep(float(min(2**attempt, 30)))


def _with_query(url: str, extra: dict[str, str]) -> str:
    return f"{url}&{urllib.parse.urlencode(extra)}"


# --- one cycle ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Disk:
    disk_id: str
    path: Path

    def size(self) -> int:
        with self.path.open("rb") as f:
            return f.seek(0, os.SEEK_END)


@dataclass
class CycleUpload:
    """The blobs of one cycle: SAS URLs asked for per blob (renewed), data blobs filled extent by extent."""

    api: ControlPlane
    machine_id: str
    cycle_id: str
    throttle: Throttle
    pool: ThreadPoolExecutor
    threads: int
    sleep: Callable[[float], None] = time.sleep
    _sas: dict[str, tuple[str, float]] = field(default_factory=dict)
    _in_flight: list[Future[None]] = field(default_factory=list)
    bytes_sent: int = 0

    def url(self, blob: str) -> str:
        cached = self._sas.get(blob)
        if cached is None or time.monotonic() - cached[1] > SAS_REFRESH_SECONDS:
            issued = self.api.call(
                "POST",
                "/mobility/agents/upload-credentials",
                {"machineId": self.machine_id, "cycleId": self.cycle_id, "blobs": [blob]},
            )
            cached = (str(issued["blobs"][blob]), time.monotonic())
            self._sas[blob] = cached
        return cached[0]

    def put_block(self, blob: str, block_id: str, data: bytes) -> None:
        # Bounded memory: at most `threads` extents in flight (4 MiB each) beyond the one being read.
        while len(self._in_flight) >= self.threads:
            self._in_flight.pop(0).result()
        url = _with_query(self.url(blob), {"comp": "block", "blockid": block_id})

        def send() -> None:
            self.throttle.take(len(data))
            _storage(url, "PUT", data, {}, self.sleep)

        self._in_flight.append(self.pool.submit(send))
        self.bytes_sent += len(data)

    def drain(self) -> None:
        while self._in_flight:
            self._in_flight.pop(0).result()

    def commit(self, blob: str, block_ids: list[str]) -> None:
        self.drain()
        xml = "".join(f"<Latest>{b}</Latest>" for b in block_ids)
        body = f'<?xml version="1.0" encoding="utf-8"?><BlockList>{xml}</BlockList>'.encode()
        _storage(_with_query(self.url(blob), {"comp": "blocklist"}), "PUT", body, {}, self.sleep)

    def put_blob(self, blob: str, data: bytes) -> None:
        self.throttle.take(len(data))
        _storage(
            self.url(blob),
            "PUT",
            data,
            {"x-ms-blob-type": "BlockBlob", "Content-Type": "application/json"},
            self.sleep,
        )


def changed_runs(disk: Disk, previous: bytes | None, full: bool) -> Iterator[tuple[int, bytes] | bytes]:
    """Walk the disk once: yield each run of changed blocks (offset, at most 4 MiB of data) as it is
    found, and finally the disk's new hash table. `full` (initial, resync): every block that is not all
    zero is a change (bytes outside the extents are zero); else a block whose hash differs from
    `previous`, zeros included."""
    digests = bytearray()
    run_offset, run = 0, bytearray()
    with disk.path.open("rb") as f:
        offset = 0
        while True:
            block = f.read(BLOCK)
            if not block:
                break
            if len(block) % SECTOR:
                raise ValueError(
                    f"disk {disk.disk_id} ({disk.path}) is not a whole number of 512-byte sectors"
                )
            digest = _digest(block)
            index = offset // BLOCK
            if full:
                changed = digest != _zero_digest(len(block))
            else:
                assert previous is not None
                changed = previous[index * DIGEST : (index + 1) * DIGEST] != digest
            digests += digest
            if changed and run and run_offset + len(run) == offset and len(run) + len(block) <= MAX_EXTENT:
                run += block
            elif changed:
                if run:
                    yield run_offset, bytes(run)
                run_offset, run = offset, bytearray(block)
            offset += len(block)
    if run:
        yield run_offset, bytes(run)
    yield bytes(digests)


@dataclass
class DiskResult:
    manifest_blob: str
    extents: int
    uploaded: int
    digests: bytes


def upload_disk(
    upload: CycleUpload, disk: Disk, sequence: int, kind: str, previous: bytes | None
) -> DiskResult:
    """Scan one disk, send its changed extents into data blobs, then its manifest (written last)."""
    size = disk.size()
    if size % SECTOR:
        raise ValueError(f"disk {disk.disk_id} ({disk.path}) is {size} bytes, not a multiple of 512")
    if previous is not None and len(previous) != -(-size // BLOCK) * DIGEST:
        previous = None  # the disk changed size: nothing to compare with
    full = kind in FULL_KINDS or previous is None
    prefix = f"{upload.machine_id}/{upload.cycle_id}/{disk.disk_id}/"
    extents: list[dict[str, Any]] = []
    blob_index, blob_size = 0, 0
    block_ids: list[str] = []
    digests = b""
    total = 0

    def blob_name(i: int) -> str:
        return f"{prefix}data-{i:05d}.bin"

    for item in changed_runs(disk, previous, full):
        if isinstance(item, bytes):
            digests = item
            continue
        offset, data = item
        if blob_size + len(data) > MAX_DATA_BLOB:
            upload.commit(blob_name(blob_index), block_ids)
            blob_index, blob_size, block_ids = blob_index + 1, 0, []
        block_id = base64.b64encode(f"{len(block_ids):08d}".encode()).decode()
        upload.put_block(blob_name(blob_index), block_id, data)
        block_ids.append(block_id)
        extents.append(
            {
                "offset": offset,
                "length": len(data),
                "blob": blob_name(blob_index),
                "blobOffset": blob_size,
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
        blob_size += len(data)
        total += len(data)
    if block_ids:
        upload.commit(blob_name(blob_index), block_ids)
    upload.drain()
    manifest = {
        "formatVersion": 1,
        "machineId": upload.machine_id,
        "diskId": disk.disk_id,
        "cycleId": upload.cycle_id,
        "sequence": sequence,
        "kind": kind,
        "diskSize": size,
        "sectorSize": SECTOR,
        "extents": extents,
    }
    manifest_blob = f"{prefix}manifest.json"
    upload.put_blob(manifest_blob, json.dumps(manifest).encode())
    return DiskResult(manifest_blob, len(extents), total, digests)


# --- the agent's replication state and its cycles -----------------------------------------------------


@dataclass
class CycleReport:
    cycle_id: str
    sequence: int
    kind: str
    uploaded: int
    extents: int
    duplicate: bool


class Replicator:
    """The server's disks, the state of its replication under `state_dir`, and the cycles it posts."""

    def __init__(
        self,
        api: ControlPlane,
        disks: list[Disk],
        state_dir: Path,
        *,
        clock: Callable[[], datetime] = datetime.now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api, self.disks, self.state_dir = api, disks, state_dir
        self.clock, self.sleep = clock, sleep
        state_dir.mkdir(parents=True, exist_ok=True)

    # state: {"token", "nextSequence", "base": bool, "lastCycleAt"}; pending.json; <disk>.hashes[.pending]

    def _read(self, name: str) -> dict[str, Any] | None:
        path = self.state_dir / name
        return json.loads(path.read_text()) if path.exists() else None

    def _write(self, name: str, data: dict[str, Any]) -> None:
        tmp = self.state_dir / f"{name}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.state_dir / name)

    def state(self) -> dict[str, Any]:
        state = self._read("state.json")
        if state is None:
            # The token keeps cycle ids unique across re-installs: a cycle id is never reused.
            state = {"token": secrets.token_hex(4), "nextSequence": 1, "base": False, "lastCycleAt": 0.0}
            self._write("state.json", state)
        return state

    def has_base(self) -> bool:
        return bool(self.state()["base"])

    def _hashes(self, disk: Disk) -> bytes | None:
        path = self.state_dir / f"{disk.disk_id}.hashes"
        return path.read_bytes() if path.exists() else None

    def policy(self) -> Policy:
        return Policy.from_wire(self.api.call("GET", "/mobility/agents/policy"))

    def post_pending(self) -> CycleReport | None:
        """Post the cycle whose manifests are all written but whose posting is not confirmed, then move the
        base on. Returns None when there is none."""
        pending = self._read("pending.json")
        if pending is None:
            return None
        try:
            answer = self.api.call("POST", "/mobility/agents/cycles", pending["event"])
        except ApiError as exc:
            if exc.status == 0 or _transient(exc.status):
                raise
            # Refused for good (the machine stopped replicating, another disk layout, ...): the cycle will
            # never apply, so the base stays where it was and the next cycle is taken from it.
            self._discard_pending()
            raise
        for disk in self.disks:
            staged = self.state_dir / f"{disk.disk_id}.hashes.pending"
            if staged.exists():
                os.replace(staged, self.state_dir / f"{disk.disk_id}.hashes")
        state = self.state()
        event = pending["event"]
        state.update(nextSequence=event["sequence"] + 1, base=True, lastCycleAt=time.time())
        self._write("state.json", state)
        (self.state_dir / "pending.json").unlink()
        return CycleReport(
            event["cycleId"],
            event["sequence"],
            event["kind"],
            pending["bytes"],
            pending["extents"],
            bool(answer.get("duplicate")) if isinstance(answer, dict) else False,
        )

    def _discard_pending(self) -> None:
        for disk in self.disks:
            (self.state_dir / f"{disk.disk_id}.hashes.pending").unlink(missing_ok=True)
        (self.state_dir / "pending.json").unlink(missing_ok=True)

    def run_cycle(self, kind: str, machine_id: str, last_applied: int | None) -> CycleReport:
        """Take, upload and post one cycle of every disk. A delta without a base (nothing posted yet, or
        the server's lastAppliedSequence is past this agent's) is taken as a resync."""
        state = self.state()
        sequence = int(state["nextSequence"])
        if kind in ("delta", "final") and (not state["base"] or (last_applied or 0) >= sequence):
            kind = "resync"
        if kind in FULL_KINDS and last_applied is not None and sequence <= last_applied:
            sequence = last_applied + 1
        cycle_id = f"agent-{state['token']}-{sequence:08d}"
        policy = self.policy()
        throttle = Throttle(lambda: policy.bytes_per_second(self.clock()), sleep=self.sleep)
        total = extents = 0
        manifests: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=policy.threads) as pool:
            upload = CycleUpload(self.api, machine_id, cycle_id, throttle, pool, policy.threads, self.sleep)
            for disk in self.disks:
                previous = None if kind in FULL_KINDS else self._hashes(disk)
                try:
                    result = upload_disk(upload, disk, sequence, kind, previous)
                except (OSError, ValueError) as exc:
                    # The server's own problem (a disk it cannot read): the operator must see it on the
                    # machine, not only in the agent's log.
                    self.report_failure(
                        machine_id, f"disk {disk.disk_id} ({disk.path}): {exc}", cycle_id, disk.disk_id
                    )
                    raise
                (self.state_dir / f"{disk.disk_id}.hashes.pending").write_bytes(result.digests)
                manifests[disk.disk_id] = result.manifest_blob
                total, extents = total + result.uploaded, extents + result.extents
        event = {
            "machineId": machine_id,
            "cycleId": cycle_id,
            "sequence": sequence,
            "kind": kind,
            "appConsistent": False,
            "manifests": manifests,
        }
        # From here the cycle is complete in storage: it is posted, now or by the next run.
        self._write("pending.json", {"event": event, "bytes": total, "extents": extents})
        report = self.post_pending()
        assert report is not None
        return report

    def report_failure(self, machine_id: str, message: str, cycle_id: str, disk_id: str) -> None:
        """POST the failure (the machine's health shows it); a report that cannot be sent is only logged."""
        body = {
            "reportId": secrets.token_hex(8),
            "machineId": machine_id,
            "failedAt": datetime.now(UTC).isoformat(),
            "cycleId": cycle_id,
            "diskId": disk_id,
            "message": message[:8192],
        }
        try:
            self.api.call("POST", "/mobility/agents/cycle-failures", body)
        except ApiError as exc:
            print(f"could not report the failed cycle {cycle_id}: {exc}", flush=True)

    def handle_commands(self) -> list[CycleReport]:
        """Post a pending cycle, then answer the machine's RunCycle and ResyncDisk commands with one cycle
        (a resync when any asks for one: it covers every disk), acknowledging them once it is posted."""
        reports = []
        pending = self.post_pending()
        if pending is not None:
            reports.append(pending)
        work = self.api.call("GET", "/mobility/agents/commands")
        todo = work["commands"]
        if not todo:
            return reports
        kinds = [c.get("cycleKind") or ("resync" if c["kind"] == "ResyncDisk" else "delta") for c in todo]
        kind = next((k for k in ("initial", "resync", "final") if k in kinds), "delta")
        reports.append(self.run_cycle(kind, work["machineId"], work["lastAppliedSequence"]))
        for command in todo:
            self.api.call("POST", f"/mobility/agents/commands/{command['id']}/ack")
        return reports

    def scheduled_cycle(self, interval_seconds: float) -> CycleReport | None:
        """A delta when the last cycle is `interval_seconds` old (only once a first cycle was posted)."""
        state = self.state()
        if not state["base"] or time.time() - float(state["lastCycleAt"]) < interval_seconds:
            return None
        work = self.api.call("GET", "/mobility/agents/commands")
        return self.run_cycle("delta", work["machineId"], work["lastAppliedSequence"])
