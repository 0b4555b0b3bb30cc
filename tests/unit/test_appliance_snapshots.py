"""The appliance's copies of a machine's disks before power-on (a reflink or a sparse copy), reverting to
them byte for byte, deleting them, and power-on with the guest's heartbeat: on real image files."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from appliance import snapshots
from appliance.control_plane import ApplianceEvents
from appliance.replicator import MachineReplicator, SourceDisk
from shared.domain.command import (
    ApplianceCommand,
    CommandKind,
    DeleteDiskSnapshots,
    DiskSnapshotsDeleted,
    DisksReverted,
    DisksSnapshotted,
    PowerChanged,
    PowerOffMachine,
    PowerOnMachine,
    PowerState,
    RevertDisks,
    SnapshotDisks,
    SnapshotMethod,
)

MIB = 1024 * 1024
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def make_image(path: Path, size: int, seed: int) -> Path:
    """A sparse image with data at a few scattered places."""
    with path.open("wb") as image:
        image.truncate(size)
        for i in range(3):
            image.seek((i * 3 + seed % 2) * MIB)
            image.write(bytes([seed + i + 1]) * (64 * 1024))
    return path


def machine(tmp_path: Path) -> MachineReplicator:
    disks = [
        SourceDisk("os", make_image(tmp_path / "m1-os.img", 12 * MIB, 1), is_os_disk=True),
        SourceDisk("data", make_image(tmp_path / "m1-data.img", 8 * MIB, 2)),
    ]
    return MachineReplicator("m1", disks, cast(Any, None), cast(ApplianceEvents, None))


def command(request: Any, command_id: str = "c-1") -> ApplianceCommand:
    return ApplianceCommand.of(
        request, command_id=command_id, appliance_id="a-1", machine_id="m1", created_at=NOW
    )


def test_a_sparse_copy_equals_its_image_and_keeps_its_holes(tmp_path: Path) -> None:
    image = make_image(tmp_path / "disk.img", 16 * MIB, 3)
    copy = tmp_path / "copy.img"
    fd_in, fd_out = os.open(image, os.O_RDONLY), os.open(copy, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        copied = snapshots._sparse_copy(fd_in, fd_out)
    finally:
        os.close(fd_in)
        os.close(fd_out)
    assert copy.read_bytes() == image.read_bytes()
    assert copied < 16 * MIB  # only the data extents (or, without SEEK_DATA, the non-zero blocks)
    assert copy.stat().st_blocks * 512 <= image.stat().st_blocks * 512 + MIB


def test_snapshot_then_writes_then_revert_gives_the_images_back_byte_for_byte(tmp_path: Path) -> None:
    m = machine(tmp_path)
    m.answer(command(PowerOffMachine()))
    before = {d.disk_id: d.path.read_bytes() for d in m.disks}

    answer = m.answer(command(SnapshotDisks(snapshot_name="job-1"), "c-snap"))
    assert answer.error is None and isinstance(answer.result, DisksSnapshotted)
    assert [d.disk_id for d in answer.result.disks] == ["os", "data"]
    assert all(d.method in (SnapshotMethod.REFLINK, SnapshotMethod.SPARSE) for d in answer.result.disks)
    assert snapshots.snapshot_path(m.disks[0].path, "job-1").read_bytes() == before["os"]

    # The machine runs and writes; a snapshot asked again keeps the copy taken before power-on.
    m.answer(command(PowerOnMachine(), "c-on"))
    with m.disks[1].path.open("r+b") as image:
        image.seek(5 * MIB)
        image.write(b"\xee" * MIB)
        image.truncate(9 * MIB)  # even a grown disk is put back as it was
    again = m.answer(command(SnapshotDisks(snapshot_name="job-1"), "c-snap-2"))
    assert isinstance(again.result, DisksSnapshotted) and all(d.already_taken for d in again.result.disks)

    refused = m.answer(command(RevertDisks(snapshot_name="job-1"), "c-rev-0"))
    assert refused.error is not None and refused.error.code == "OnPremisesMachineRunning"

    m.answer(command(PowerOffMachine(), "c-off"))
    reverted = m.answer(command(RevertDisks(snapshot_name="job-1"), "c-rev"))
    assert reverted.error is None and isinstance(reverted.result, DisksReverted)
    assert {d.disk_id: d.path.read_bytes() for d in m.disks} == before
    # Reverting again (a retried cancel) ends the same.
    m.answer(command(RevertDisks(snapshot_name="job-1"), "c-rev-2"))
    assert {d.disk_id: d.path.read_bytes() for d in m.disks} == before

    deleted = m.answer(command(DeleteDiskSnapshots(snapshot_name="job-1"), "c-del"))
    assert isinstance(deleted.result, DiskSnapshotsDeleted) and deleted.result.deleted == ["os", "data"]
    assert not snapshots.snapshot_path(m.disks[0].path, "job-1").exists()
    gone = m.answer(command(DeleteDiskSnapshots(snapshot_name="job-1"), "c-del-2"))
    assert isinstance(gone.result, DiskSnapshotsDeleted) and gone.result.deleted == []


def test_reverting_to_a_missing_snapshot_changes_nothing(tmp_path: Path) -> None:
    m = machine(tmp_path)
    m.answer(command(PowerOffMachine()))
    before = [d.path.read_bytes() for d in m.disks]
    answer = m.answer(command(RevertDisks(snapshot_name="nope"), "c-rev"))
    assert answer.error is not None and answer.error.code == "DiskSnapshotNotFound"
    assert [d.path.read_bytes() for d in m.disks] == before


def test_power_on_reports_the_guest_heartbeat_and_power_off_stops_it(tmp_path: Path) -> None:
    m = machine(tmp_path)
    m.answer(command(PowerOffMachine()))
    on = m.answer(command(PowerOnMachine(), "c-on")).result
    assert isinstance(on, PowerChanged) and on.power_state is PowerState.ON
    assert on.guest_heartbeat_at is not None
    off = m.answer(command(PowerOffMachine(), "c-off")).result
    assert isinstance(off, PowerChanged) and off.guest_heartbeat_at is None
    m.guest_boots = False
    silent = m.answer(command(PowerOnMachine(), "c-on-2")).result
    assert isinstance(silent, PowerChanged) and silent.guest_heartbeat_at is None


@pytest.mark.parametrize("kind", [CommandKind.POWER_ON_MACHINE, CommandKind.REVERT_DISKS])
def test_an_injected_fault_answers_an_error_and_does_nothing(tmp_path: Path, kind: CommandKind) -> None:
    m = machine(tmp_path)
    m.answer(command(PowerOffMachine()))
    m.faults[kind] = "the hypervisor refused"
    request = PowerOnMachine() if kind is CommandKind.POWER_ON_MACHINE else RevertDisks(snapshot_name="x")
    answer = m.answer(command(request, "c-fault"))
    assert answer.error is not None and answer.error.message == "the hypervisor refused"
    assert m.power.state is PowerState.OFF


def test_snapshot_commands_round_trip_through_the_stored_command() -> None:
    for request in (
        SnapshotDisks(snapshot_name="job-1"),
        RevertDisks(snapshot_name="job-1"),
        DeleteDiskSnapshots(snapshot_name="job-1"),
    ):
        wire = command(request).to_wire()
        assert wire["snapshotName"] == "job-1"
        assert ApplianceCommand.model_validate(wire).request() == request
    with pytest.raises(ValueError):
        SnapshotDisks(snapshot_name="../etc")


def test_change_tracking_starts_again_from_the_copy_taken_before_power_on(tmp_path: Path) -> None:
    """What a reprotect to Azure after the commit sends: the writes after the copy, not those before it
    (the replicas already hold those). A copy asked again after the machine ran moves nothing."""
    m = machine(tmp_path)
    m.write("data", 0, b"\x01" * 65536)  # before the copy: in Azure already (the final snapshot)
    m.answer(command(SnapshotDisks(snapshot_name="job-1"), "c-snap"))
    assert m._written_since_last_cycle("data") == [] and m._written_since_last_cycle("os") == []
    m.answer(command(PowerOnMachine(), "c-on"))
    m.write("data", 2 * MIB, b"\x02" * 131072)
    m.answer(command(SnapshotDisks(snapshot_name="job-1"), "c-snap-again"))
    assert m._written_since_last_cycle("data") == [(2 * MIB, 131072)]
    # The state survives the appliance's restart.
    m.close()
    again = machine_reopened(tmp_path)
    assert again._written_since_last_cycle("data") == [(2 * MIB, 131072)]


def machine_reopened(tmp_path: Path) -> MachineReplicator:
    disks = [
        SourceDisk("os", tmp_path / "m1-os.img", is_os_disk=True),
        SourceDisk("data", tmp_path / "m1-data.img"),
    ]
    return MachineReplicator("m1", disks, cast(Any, None), cast(ApplianceEvents, None))
