"""Replicating one machine's disks (raw image files) to the control plane, like an appliance does.

Two flavours of change tracking, as on-premises:
- `vmware`: changed block tracking (appliance/cbt.py); a delta is QueryChangedDiskAreas since the last
  cycle's change id; a CBT reset is reported as the catalog's "An error occurred while trying to fetch
  changed blocks" and left to the control plane, which asks for a resync (automatically or on repair).
- `hyperv`: Hyper-V Replica change logs (appliance/hrl.py); each cycle freezes the log and uploads it.

A cycle: upload each disk's data blobs, then its manifest (appliance/upload.py), then publish
`CycleUploaded`. Sequence numbers and change ids are persisted beside the images, so a restarted
appliance carries on without reusing a cycle id. Writes must go through `write()` between cycles
(the real appliance reads from a VM snapshot; here the images are quiet while a cycle uploads).

Every cycle sent is also recorded in a history beside the images (which ranges of which disk), so the
appliance can say which blocks changed since a given cycle: what reverse protection needs to know
about the on-premises side after a failover. Reverse-protection commands are carried out by
appliance/reverse.py; `handle_commands` dispatches them and acknowledges each with its answer.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from azure.storage.blob import ContainerClient
from pydantic import BaseModel, ConfigDict

from appliance import reverse, snapshots
from appliance.blocks import BlockSource, ImageFile, Range, merge_ranges, nonzero_ranges
from appliance.cbt import ALL_AREAS, ChangedBlockTracker, ChangeTrackingReset
from appliance.control_plane import ApplianceApi, ApplianceEvents
from appliance.hrl import HyperVChangeTracker, ReplicationLog, ReplicationLogCorrupt, live_log_path
from appliance.push import PushInstaller
from appliance.upload import CycleUpload, DiskCycle, UploadDestination, UploadOptions, upload_cycle
from shared.domain.command import (
    REVERSE_KINDS,
    ApplianceCommand,
    ApplyReverseManifest,
    ChangedBlocks,
    CommandAnswer,
    CommandError,
    CommandKind,
    DeleteDiskSnapshots,
    DisksSnapshotted,
    HashDiskBlocks,
    PowerChanged,
    PowerOffMachine,
    PowerOnMachine,
    PowerState,
    ReportChangedBlocks,
    RevertDisks,
    SnapshotDisks,
)
from shared.domain.cycle import CycleKind

Flavour = Literal["vmware", "hyperv"]
CBT_RESET_MESSAGE = "An error occurred while trying to fetch changed blocks"


@dataclass(frozen=True)
class SourceDisk:
    disk_id: str
    path: Path
    is_os_disk: bool = False

    @property
    def size(self) -> int:
        return self.path.stat().st_size


class CycleReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    cycle_id: str
    sequence: int
    kind: CycleKind
    manifests: dict[str, str]
    bytes_uploaded: int
    event_id: str


class ChangeTrackingLost(RuntimeError):
    """CBT was reset: reported to the control plane, which will ask for a resync."""


@dataclass
class MachineReplicator:
    machine_id: str
    disks: list[SourceDisk]
    # Where cycles are written: the API's write-only SAS (`SasDestination`), or a container in tests.
    uploads: UploadDestination | ContainerClient
    events: ApplianceEvents
    flavour: Flavour = "vmware"
    upload: UploadOptions = field(default_factory=UploadOptions)
    # Pushes the Mobility service to this machine when asked; without it such a command is left pending.
    push: PushInstaller | None = None
    # Test hook: a command kind answered with this error instead of being carried out (a fault at
    # "power on", a cancel's revert that fails...). Remove the entry to let the next attempt succeed.
    faults: dict[CommandKind, str] = field(default_factory=dict)
    # The local hypervisor boots a powered-on guest at once; False plays a guest that never heartbeats.
    guest_boots: bool = True

    def __post_init__(self) -> None:
        self._state_path = self.disks[0].path.with_name(f".{self.machine_id}.replication.json")
        self._state: dict[str, Any] = (
            json.loads(self._state_path.read_text())
            if self._state_path.exists()
            else {"nextSequence": 0, "changeIds": {}}
        )
        self._history_path = self.disks[0].path.with_name(f".{self.machine_id}.history.jsonl")
        self._hyperv: dict[str, HyperVChangeTracker] = {}
        self._cbt: dict[str, ChangedBlockTracker] = {}
        self.power = reverse.PowerSwitch(self.disks[0].path.parent, self.machine_id)
        self.heartbeat = snapshots.GuestHeartbeat(self.disks[0].path.parent, self.machine_id)
        self.disk_snapshots = snapshots.DiskSnapshots({d.disk_id: d.path for d in self.disks})
        self.apply_options = reverse.ReverseApplyOptions()

    # -- what the appliance reports

    def inventory(
        self, *, os_type: str, os_name: str, os_version: str, firmware: str = "BIOS"
    ) -> dict[str, Any]:
        return {
            "id": self.machine_id,
            "displayName": self.machine_id,
            "osType": os_type,
            "osName": os_name,
            "osVersion": os_version,
            "firmware": firmware,
            "disks": [{"id": d.disk_id, "sizeBytes": d.size, "isOsDisk": d.is_os_disk} for d in self.disks],
        }

    # -- the guest writes (through change tracking)

    def write(self, disk_id: str, offset: int, data: bytes) -> None:
        if self.flavour == "hyperv":
            self._hyperv_tracker(disk_id).write(offset, data)
        else:
            self._cbt_tracker(disk_id).write(offset, data)

    # -- cycles

    def run_cycle(
        self,
        kind: CycleKind = CycleKind.DELTA,
        *,
        app_consistent: bool = False,
        disk_ids: Collection[str] | None = None,
    ) -> CycleReport:
        """Upload one cycle of every disk, or of `disk_ids` only (as an appliance that resyncs just the
        disk a ResyncDisk names); the disks left out keep their changes for the next cycle."""
        sequence = int(self._state["nextSequence"])
        cycle_id = f"{self.machine_id}-{sequence:06d}-{uuid.uuid4().hex[:8]}"
        whole_disk = kind in (CycleKind.INITIAL, CycleKind.RESYNC)
        included = [d for d in self.disks if disk_ids is None or d.disk_id in disk_ids]
        with ExitStack() as stack:
            disks = [
                DiskCycle(disk_id=d.disk_id, disk_size=d.size, ranges=ranges, source=source)
                for d in included
                for ranges, source in [stack.enter_context(self._changes(d, whole_disk))]
            ]
            self.events.cycle_started(
                machine_id=self.machine_id,
                cycle_id=cycle_id,
                sequence=sequence,
                kind=kind.value,
                disks={d.disk_id: sum(n for _, n in d.ranges) for d in disks},
            )
            manifests = upload_cycle(
                self.uploads,
                CycleUpload(
                    machine_id=self.machine_id, cycle_id=cycle_id, sequence=sequence, kind=kind, disks=disks
                ),
                options=self.upload,
            )
        by_disk = {d.disk_id: name for d, name in zip(included, manifests, strict=True)}
        event_id = self.events.cycle_uploaded(
            machine_id=self.machine_id,
            cycle_id=cycle_id,
            sequence=sequence,
            kind=kind.value,
            app_consistent=app_consistent,
            manifests=by_disk,
        )
        # Only once the event is out does the next cycle start from here.
        self._record_history(cycle_id, sequence, kind, disks)
        self._state["nextSequence"] = sequence + 1
        if self.flavour == "vmware":
            for disk in included:
                self._state["changeIds"][disk.disk_id] = self._cbt_tracker(disk.disk_id).next_epoch()
        self._save()
        return CycleReport(
            cycle_id=cycle_id,
            sequence=sequence,
            kind=kind,
            manifests=by_disk,
            bytes_uploaded=sum(length for d in disks for _, length in d.ranges),
            event_id=event_id,
        )

    def handle_commands(self, api: ApplianceApi) -> list[CycleReport]:
        """Carry out this machine's pending commands (on-demand cycle, resync, reverse protection),
        acknowledging each; a reverse-protection command's acknowledgement carries its answer."""
        reports = []
        for command in api.commands():
            if command["machineId"] != self.machine_id:
                continue
            if command["kind"] in REVERSE_KINDS:
                api.acknowledge(command["id"], self.answer(ApplianceCommand.model_validate(command)))
                continue
            if command["kind"] == CommandKind.INSTALL_MOBILITY_SERVICE:
                if self.push is not None:
                    pushed = ApplianceCommand.model_validate(command)
                    assert pushed.push is not None
                    report = self.push.run(self.machine_id, pushed.id, pushed.push)
                    api.acknowledge(command["id"], CommandAnswer(result=report))
                continue
            if command["kind"] == "ShutDownSource":
                # The answer is the power state: the cutover goes on only when the source is off.
                off = self.power.set(PowerOffMachine())
                changed = PowerChanged(
                    kind=CommandKind.SHUT_DOWN_SOURCE, power_state=off.power_state, changed=off.changed
                )
                api.acknowledge(command["id"], CommandAnswer(result=changed))
                continue
            if command["kind"] == "RunCycle":
                kind = CycleKind(command.get("cycleKind") or "delta")
                reports.append(self.run_cycle(kind))
            elif command["kind"] == "ResyncDisk" and not any(r.kind is CycleKind.RESYNC for r in reports):
                # One resync covers every disk: a rejected cycle discarded the changes of all its disks,
                # not only of the disk the command names. `run_cycle(disk_ids=...)` resyncs fewer.
                reports.append(self.run_cycle(CycleKind.RESYNC))
            api.acknowledge(command["id"])
        return reports

    # -- reverse protection

    def answer(self, command: ApplianceCommand) -> CommandAnswer:
        """Carry out one reverse-protection command and say what came of it."""
        request = command.request()
        if request.kind in self.faults:
            return CommandAnswer(
                error=CommandError(
                    code=f"Injected{request.kind.value}Fault", message=self.faults[request.kind]
                )
            )
        if isinstance(request, PowerOffMachine | PowerOnMachine):
            return CommandAnswer(result=self._power(request))
        if isinstance(request, SnapshotDisks | RevertDisks | DeleteDiskSnapshots):
            return self._snapshots(request)
        if not any(d.disk_id == request.disk_id for d in self.disks):
            return CommandAnswer(
                error=CommandError(
                    code="OnPremisesDiskNotFound",
                    message=f"machine {self.machine_id} has no disk {request.disk_id} "
                    f"(its disks: {', '.join(d.disk_id for d in self.disks)})",
                )
            )
        if isinstance(request, ApplyReverseManifest):
            if self.power.state is not PowerState.OFF:
                return CommandAnswer(
                    error=CommandError(
                        code="OnPremisesMachineRunning",
                        message=f"machine {self.machine_id} is running: power it off before its disks "
                        "are written from Azure",
                    )
                )
            applied, error = reverse.apply_reverse_manifest(
                self._disk(request.disk_id).path, request, options=self.apply_options
            )
            return CommandAnswer(result=applied, error=error)
        if isinstance(request, HashDiskBlocks):
            try:
                hashes = reverse.block_hashes_answer(
                    self._disk(request.disk_id).path,
                    disk_id=request.disk_id,
                    block_size=request.block_size,
                    ranges=request.ranges,
                    uploads=self.uploads,
                    machine_id=self.machine_id,
                    answer_id=command.id,
                )
            except reverse.HashRangeBeyondDisk as exc:
                return CommandAnswer(error=CommandError(code=exc.code, message=str(exc)))
            return CommandAnswer(result=hashes)
        assert isinstance(request, ReportChangedBlocks)  # the union has no other member
        return CommandAnswer(result=self.changed_since(request.disk_id, request.since_cycle_id))

    def _power(self, request: PowerOffMachine | PowerOnMachine) -> PowerChanged:
        changed = self.power.set(request)
        if isinstance(request, PowerOffMachine):
            self.heartbeat.stop()
            return changed
        heard = self.heartbeat.last()
        if heard is None and self.guest_boots:
            heard = self.heartbeat.beat()
        return changed.model_copy(update={"guest_heartbeat_at": heard})

    def _snapshots(self, request: SnapshotDisks | RevertDisks | DeleteDiskSnapshots) -> CommandAnswer:
        if isinstance(request, DeleteDiskSnapshots):
            return CommandAnswer(result=self.disk_snapshots.delete(request))
        if isinstance(request, RevertDisks) and self.power.state is not PowerState.OFF:
            return CommandAnswer(
                error=CommandError(
                    code="OnPremisesMachineRunning",
                    message=f"machine {self.machine_id} is running: power it off before its disks are reverted",
                )
            )
        result, error = (
            self.disk_snapshots.take(request)
            if isinstance(request, SnapshotDisks)
            else self.disk_snapshots.revert(request)
        )
        if isinstance(result, DisksSnapshotted) and any(not d.already_taken for d in result.disks):
            self._track_from_snapshot()
        return CommandAnswer(result=result, error=error)

    def _track_from_snapshot(self) -> None:
        """Change tracking starts again from the copy just taken, before the machine is powered on: a
        reprotect to Azure after the failback is committed sends only what changed since then (the
        replicas are brought to the same data in Azure). A copy found already taken moves nothing: the
        machine may have run on it since."""
        for disk in self.disks:
            if self.flavour == "hyperv":
                os.unlink(self._hyperv_tracker(disk.disk_id).switch_log())
            else:
                self._state["changeIds"][disk.disk_id] = self._cbt_tracker(disk.disk_id).next_epoch()
        self._save()

    def changed_since(self, disk_id: str, since_cycle_id: str) -> ChangedBlocks:
        """The ranges of `disk_id` written after cycle `since_cycle_id` was taken: those sent by the
        cycles after it, and those written since the last cycle. Unavailable (with the reason) when the
        record cannot vouch for them."""

        def unavailable(reason: str) -> ChangedBlocks:
            return reverse.changed_blocks_answer(
                disk_id=disk_id, since_cycle_id=since_cycle_id, ranges=None, reason=reason
            )

        history = self._history()
        position = next((i for i, h in enumerate(history) if h["cycleId"] == since_cycle_id), None)
        if position is None:
            return unavailable(f"the appliance has no record of cycle {since_cycle_id}")
        ranges: list[Range] = []
        for entry in history[position + 1 :]:
            if entry.get("full"):
                return unavailable(
                    f"cycle {entry['cycleId']} after it copied whole disks (a resync: tracking had been "
                    "reset); compare block hashes instead"
                )
            ranges += [(o, n) for o, n in entry["disks"].get(disk_id, [])]
        try:
            ranges += self._written_since_last_cycle(disk_id)
        except (ChangeTrackingReset, ReplicationLogCorrupt, OSError) as reset:
            return unavailable(f"{CBT_RESET_MESSAGE}: {reset}")
        return reverse.changed_blocks_answer(
            disk_id=disk_id, since_cycle_id=since_cycle_id, ranges=merge_ranges(ranges)
        )

    def _written_since_last_cycle(self, disk_id: str) -> list[Range]:
        if self.flavour == "hyperv":
            live = live_log_path(self._disk(disk_id).path)
            if not live.exists():
                return []
            with ReplicationLog.open(live) as log:
                return log.changed_ranges()
        since = self._state["changeIds"].get(disk_id)
        if since is None:
            raise ChangeTrackingReset(f"disk {disk_id} has no change id: no cycle of it completed")
        return self._cbt_tracker(disk_id).changed_areas(since)

    def _record_history(self, cycle_id: str, sequence: int, kind: CycleKind, disks: list[DiskCycle]) -> None:
        entry: dict[str, Any] = {"cycleId": cycle_id, "sequence": sequence, "kind": kind.value}
        if kind in (CycleKind.INITIAL, CycleKind.RESYNC):
            entry["full"] = True
        else:
            entry["disks"] = {d.disk_id: [list(r) for r in d.ranges] for d in disks}
        with self._history_path.open("a") as history:
            history.write(json.dumps(entry) + "\n")

    def _history(self) -> list[dict[str, Any]]:
        if not self._history_path.exists():
            return []
        entries = []
        for line in self._history_path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                break  # a torn last line: the cycle it describes was never acknowledged as sent
        return entries

    @contextmanager
    def _changes(self, disk: SourceDisk, whole_disk: bool) -> Iterator[tuple[list[Range], BlockSource]]:
        if self.flavour == "hyperv":
            frozen = self._hyperv_tracker(
                disk.disk_id
            ).switch_log()  # the log restarts in every case: a whole copy covers it
            if whole_disk:
                os.unlink(frozen)
                with ImageFile(disk.path) as image:
                    yield nonzero_ranges(image), image
                return
            with ReplicationLog.open(frozen) as log:
                yield log.changed_ranges(), log
            os.unlink(frozen)  # uploaded: the log's data is in the cache now
            return
        since = ALL_AREAS if whole_disk else self._state["changeIds"].get(disk.disk_id, ALL_AREAS)
        try:
            ranges = self._cbt_tracker(disk.disk_id).changed_areas(since)
        except ChangeTrackingReset as reset:
            self.events.cycle_failed(
                machine_id=self.machine_id, disk_id=disk.disk_id, message=f"{CBT_RESET_MESSAGE}. {reset}"
            )
            raise ChangeTrackingLost(str(reset)) from reset
        with ImageFile(disk.path) as image:
            yield ranges, image

    def _cbt_tracker(self, disk_id: str) -> ChangedBlockTracker:
        if disk_id not in self._cbt:
            path = self._disk(disk_id).path
            try:
                self._cbt[disk_id] = ChangedBlockTracker.open(path)
            except ChangeTrackingReset:
                # First time (or state lost): enable tracking; the next delta then reports the reset.
                self._cbt[disk_id] = ChangedBlockTracker.enable(path)
        return self._cbt[disk_id]

    def _hyperv_tracker(self, disk_id: str) -> HyperVChangeTracker:
        if disk_id not in self._hyperv:
            self._hyperv[disk_id] = HyperVChangeTracker(self._disk(disk_id).path)
        return self._hyperv[disk_id]

    def _disk(self, disk_id: str) -> SourceDisk:
        return next(d for d in self.disks if d.disk_id == disk_id)

    def _save(self) -> None:
        for tracker in self._cbt.values():
            tracker.flush()
        self._state_path.write_text(json.dumps(self._state))

    def close(self) -> None:
        self._save()
        for cbt in self._cbt.values():
            cbt.close()
        for hyperv in self._hyperv.values():
            hyperv.close()
