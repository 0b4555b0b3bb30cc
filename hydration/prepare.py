"""The top of the toolkit: attach the disks, find the OS, dispatch to its family, report."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

from hydration.devices import DiskSet
from hydration.linux.prepare import choose_root, prepare_linux
from hydration.options import Options
from hydration.proc import HydrationError, Interrupted
from hydration.report import Report, RunStatus
from hydration.scan import scan
from hydration.steps import StepRunner


def prepare(opts: Options, echo: Callable[[str], None] = print) -> Report:
    report = Report(dry_run=opts.dry_run, disks=list(opts.disks))
    runner = StepRunner(report, opts.dry_run, echo)
    try:
        with DiskSet(list(opts.disks), readonly=opts.dry_run) as disks:
            try:
                report.partitions = [v.describe() for v in disks.volumes]
                _dispatch(opts, disks, report, runner)
            finally:
                for w in disks.warnings:
                    report.warn(w)
        for w in disks.warnings:
            report.warn(w)
    except HydrationError as exc:
        report.fail(str(exc))
        echo(f"[      failed] {exc}")
    except Exception as exc:  # a bug must still produce a report (the mounts were undone on the way out)
        report.fail(f"internal error {exc!r}; please report it with this file")
        echo(f"[      failed] internal error {exc!r}")
    except Interrupted:
        report.fail("interrupted by a signal; every mount and loop device was released, run it again")
        echo("[      failed] interrupted; mounts and loop devices released")
    report.finished_at = time.time()
    return report


def _dispatch(opts: Options, disks: DiskSet, report: Report, runner: StepRunner) -> None:
    os.makedirs(os.path.dirname(opts.work_root) or "/", exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hydration-scan-") as scratch:
        found = scan(disks, opts.os_hint, scratch, report.warnings)
    locked = [v.name for v in disks.volumes if v.fstype.lower() == "bitlocker"]
    if locked and not found:
        raise HydrationError(
            f"{', '.join(locked)} is BitLocker-encrypted and cannot be prepared offline: suspend or turn off "
            "BitLocker in the source VM (manage-bde -off C:), let replication catch up and retry"
        )
    linux = [f for f in found if f.kind == "linux"]
    windows = [f for f in found if f.kind == "windows"]
    if opts.os_hint == "windows" or (windows and not linux):
        if not windows:
            raise HydrationError(
                "no partition holds Windows\\System32\\config\\SYSTEM: the wrong OS disk was chosen or "
                "the disk is corrupt; check the replicated OS disk and retry"
            )
        from hydration.windows.prepare import prepare_windows

        prepare_windows(windows[0], disks, opts, report, runner)
        return
    if not linux:
        raise HydrationError(
            "no partition holds etc/fstab: the wrong OS disk was chosen or the disk is corrupt "
            "(for Linux, attach all of the VM's disks); check the disks and retry"
        )
    if windows:
        report.warn("both Linux and Windows installations found; preparing Linux (use --os-hint to choose)")
    prepare_linux(choose_root(linux, disks), disks, opts, report, runner)
    if report.errors and report.status is not RunStatus.MANUAL:
        report.status = RunStatus.FAILED
