"""Replication statistics of the machine view: a whole-disk copy's bytes per disk (recorded as the apply
writes them, only forwards), throughput over the last cycles, the backlog, the initial copy's ETA and the
last cycle; and what the machine GET costs (one point read, one single-partition query)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.cycle import Cycle, CycleKind, CycleState
from shared.domain.inventory import MachineInventory
from shared.domain.lifecycle import MachineState
from shared.domain.machine import DiskCopyProgress, Machine
from shared.platform.repository import Repositories
from shared.replication import cycles
from shared.replication.machines import RECENT_CYCLES, get_machine, replication_statistics
from tests.support.memory_store import InMemoryDocumentStore

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
GIB = 1024**3
MIB = 1024**2


def new_machine(state: MachineState = MachineState.INITIAL_REPLICATION) -> Machine:
    inventory = MachineInventory.model_validate(
        {
            "displayName": "db01",
            "osType": "linux",
            "osName": "Ubuntu",
            "osVersion": "20.04",
            "firmware": "BIOS",
            "disks": [
                {"id": "d0", "sizeBytes": 4 * GIB, "isOsDisk": True},
                {"id": "d1", "sizeBytes": 4 * GIB},
            ],
        }
    )
    return Machine(
        id="vm-1", appliance_id="appl-1", inventory=inventory, state=state, discovered_at=NOW, updated_at=NOW
    )


def cycle(
    sequence: int,
    state: CycleState = CycleState.APPLIED,
    *,
    seconds: float = 10,
    applied_bytes: int = 100 * MIB,
    uploaded: int | None = 50 * MIB,
    queued: float = 0,
) -> Cycle:
    received = NOW + timedelta(minutes=sequence)
    started = received + timedelta(seconds=queued)
    done = state is CycleState.APPLIED
    return Cycle(
        id=f"c{sequence}",
        machine_id="vm-1",
        sequence=sequence,
        kind=CycleKind.INITIAL if sequence == 0 else CycleKind.DELTA,
        manifests={"d0": f"vm-1/c{sequence}/d0/manifest.json"},
        state=state,
        received_at=received,
        apply_started_at=started if done else None,
        applied_at=started + timedelta(seconds=seconds) if done else None,
        bytes_applied=applied_bytes if done else 0,
        uploaded_bytes=uploaded,
    )


def progress(
    disk_id: str, applied: int, *, at: float, cycle_id: str = "c0", total: int = 4 * GIB
) -> DiskCopyProgress:
    return DiskCopyProgress(
        disk_id=disk_id,
        cycle_id=cycle_id,
        bytes_to_copy=total,
        bytes_applied=applied,
        started_at=NOW,
        updated_at=NOW + timedelta(seconds=at),
    )


@pytest.fixture
def repos() -> Repositories:
    repos = Repositories(InMemoryDocumentStore())
    repos.machines.add(new_machine())
    return repos


def test_copy_progress_advances_per_disk_and_moves_the_percentage(repos: Repositories) -> None:
    cycles.record_copy_progress(repos, "vm-1", progress("d0", 1 * GIB, at=10))
    machine = repos.machines.require("vm-1").item
    assert [(c.disk_id, c.bytes_applied) for c in machine.replication.disk_copies] == [("d0", GIB)]
    assert machine.replication.progress_percent == 12.5  # 1 of the machine's 8 GiB

    cycles.record_copy_progress(repos, "vm-1", progress("d0", 4 * GIB, at=40))
    cycles.record_copy_progress(repos, "vm-1", progress("d1", 2 * GIB, at=60))
    machine = repos.machines.require("vm-1").item
    assert [(c.disk_id, c.bytes_applied) for c in machine.replication.disk_copies] == [
        ("d0", 4 * GIB),
        ("d1", 2 * GIB),
    ]
    assert machine.replication.progress_percent == 75.0


def test_copy_progress_never_goes_back_and_stays_below_100_until_applied(repos: Repositories) -> None:
    cycles.record_copy_progress(repos, "vm-1", progress("d0", 3 * GIB, at=30))
    # A retried apply starts over: its smaller figure is not recorded.
    cycles.record_copy_progress(repos, "vm-1", progress("d0", 1 * GIB, at=50))
    machine = repos.machines.require("vm-1").item
    assert machine.replication.disk_copies[0].bytes_applied == 3 * GIB
    assert machine.replication.disk_copies[0].updated_at == NOW + timedelta(seconds=30)
    for disk in ("d0", "d1"):
        cycles.record_copy_progress(repos, "vm-1", progress(disk, 4 * GIB, at=90))
    assert repos.machines.require("vm-1").item.replication.progress_percent == 99.0


def test_a_new_whole_disk_copy_replaces_the_older_ones_figures(repos: Repositories) -> None:
    cycles.record_copy_progress(repos, "vm-1", progress("d0", 4 * GIB, at=10))
    later = progress("d0", 1 * GIB, at=100, cycle_id="c7").model_copy(
        update={"started_at": NOW + timedelta(seconds=95)}
    )
    cycles.record_copy_progress(repos, "vm-1", later)
    [copy] = repos.machines.require("vm-1").item.replication.disk_copies
    assert (copy.cycle_id, copy.bytes_applied, copy.started_at) == ("c7", GIB, NOW + timedelta(seconds=95))


def test_eta_comes_from_the_copys_own_rate_and_counts_disks_not_reached_yet() -> None:
    machine = new_machine()
    # 2 GiB in 20 s: 8 GiB (d1 not started, counted with its size) - 2 GiB left = 6 GiB at 100 MiB/s.
    machine.replication.disk_copies = [progress("d0", 2 * GIB, at=20)]
    stats = replication_statistics(machine, [])
    assert stats.initial_copy_eta_seconds == 60
    [disk] = stats.disks
    assert (disk.disk_id, disk.bytes_applied, disk.bytes_to_copy, disk.percent) == (
        "d0",
        2 * GIB,
        4 * GIB,
        50.0,
    )


def test_without_a_rate_yet_the_eta_uses_the_recent_throughput_and_none_when_copied() -> None:
    machine = new_machine()
    machine.replication.disk_copies = [progress("d0", 0, at=0)]
    # An earlier copy's cycles: 100 MiB in 10 s each.
    stats = replication_statistics(machine, [cycle(1), cycle(2)])
    assert stats.throughput_bytes_per_second == pytest.approx(10 * MIB)
    assert stats.initial_copy_eta_seconds == int(8 * GIB / (10 * MIB) + 0.5)
    assert replication_statistics(new_machine(), []).initial_copy_eta_seconds is None
    replicating = new_machine(MachineState.REPLICATING)
    replicating.replication.disk_copies = [progress("d0", 4 * GIB, at=60), progress("d1", 4 * GIB, at=60)]
    assert replication_statistics(replicating, [cycle(0)]).initial_copy_eta_seconds is None


def test_throughput_over_the_last_cycles_apply_time_not_their_wait() -> None:
    recent = [cycle(s, seconds=4, applied_bytes=40 * MIB, queued=300) for s in range(1, 9)]
    stats = replication_statistics(new_machine(MachineState.REPLICATING), recent)
    assert stats.throughput_cycles == 5
    assert stats.throughput_bytes_per_second == pytest.approx(10 * MIB)
    assert stats.last_cycle is not None
    assert (stats.last_cycle.sequence, stats.last_cycle.duration_seconds) == (8, 4.0)
    assert stats.last_cycle.bytes_applied == 40 * MIB and stats.last_cycle.kind == "delta"


def test_backlog_is_the_uploaded_cycles_not_applied_with_their_declared_bytes() -> None:
    machine = new_machine(MachineState.REPLICATING)
    waiting = [
        cycle(3, CycleState.RECEIVED, uploaded=5 * MIB),
        cycle(4, CycleState.APPLYING, uploaded=7 * MIB),
    ]
    stats = replication_statistics(machine, [cycle(1), cycle(2), *waiting, cycle(9, CycleState.REJECTED)])
    assert (stats.backlog_cycles, stats.backlog_bytes) == (2, 12 * MIB)
    undeclared = replication_statistics(machine, [*waiting, cycle(5, CycleState.RECEIVED, uploaded=None)])
    assert (undeclared.backlog_cycles, undeclared.backlog_bytes) == (3, None)
    empty = replication_statistics(machine, [])
    assert (
        empty.backlog_cycles,
        empty.backlog_bytes,
        empty.last_cycle,
        empty.throughput_bytes_per_second,
    ) == (
        0,
        0,
        None,
        None,
    )


def test_machine_get_costs_one_point_read_and_one_query(repos: Repositories) -> None:
    for s in range(RECENT_CYCLES + 5):
        repos.cycles.add(cycle(s))
    repos.cycles.add(cycle(RECENT_CYCLES + 5, CycleState.RECEIVED, uploaded=3 * MIB))
    counter = repos.store.counter
    counter.reset()
    view = get_machine(repos, "vm-1", now=NOW)
    assert counter.total == 2
    assert sorted(counter.snapshot()) == ["query:cycles", "read:machines"]
    stats = view.replication_statistics
    assert stats.last_cycle is not None and stats.last_cycle.sequence == RECENT_CYCLES + 4
    assert (stats.backlog_cycles, stats.backlog_bytes) == (1, 3 * MIB)
