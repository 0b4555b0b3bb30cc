"""DiskSet.close() returns with its loop devices really gone: `losetup -d` on a loop another process holds
open (a scan of every block device, e.g. another hydration's LVM scan) succeeds but only detaches it when
that process closes it, so close() waits for the kernel to unbind it, and says so when it does not."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hydration import devices
from hydration.devices import DiskSet
from tests.hydration.conftest import _skip_reason

pytestmark = [pytest.mark.root]


@pytest.fixture
def image(tmp_path: Path) -> Iterator[Path]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    path = tmp_path / "blank.img"
    with path.open("wb") as f:
        f.truncate(16 * 1024 * 1024)  # no partition table: the whole disk is one volume
    yield path


def _bound(loop: str) -> bool:
    return (Path("/sys/block") / Path(loop).name / "loop").exists()


def test_close_waits_until_a_loop_held_open_elsewhere_is_detached(image: Path) -> None:
    disks = DiskSet(disks=[str(image)], readonly=True)
    disks.attach()
    [loop] = disks.loops
    holder = os.open(loop, os.O_RDONLY)  # as a concurrent block-device scan would
    release = threading.Timer(0.5, os.close, args=(holder,))
    release.start()
    try:
        disks.close()
        assert not _bound(loop), f"close() returned with {loop} still attached"
        assert disks.warnings == []
    finally:
        release.join()


def test_close_says_which_loop_is_still_held_when_the_wait_runs_out(
    image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices, "LOOP_DETACH_SECONDS", 0.2)
    disks = DiskSet(disks=[str(image)], readonly=True)
    disks.attach()
    [loop] = disks.loops
    holder = os.open(loop, os.O_RDONLY)
    try:
        disks.close()
        assert _bound(loop)
        assert len(disks.warnings) == 1 and loop in disks.warnings[0]
        assert "another process holds it open" in disks.warnings[0]
    finally:
        os.close(holder)
    # the detach was only deferred: the kernel completes it on the last close
    assert devices.wait_detached(loop, 10.0)
