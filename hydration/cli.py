"""python3 -m hydration prepare --disk PATH [--disk PATH ...] --report report.json ..."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from hydration.options import DEFAULT_PAYLOAD, DEFAULT_WORK_ROOT, Options
from hydration.proc import Interrupted
from hydration.report import Report, RunStatus

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MANUAL = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m hydration", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="prepare the attached disks of one VM to boot in Azure")
    p.add_argument(
        "--disk",
        action="append",
        required=True,
        metavar="PATH",
        help="whole-disk block device or raw image; repeat in the source VM's disk order",
    )
    p.add_argument("--report", required=True, metavar="FILE", help="where to write the JSON report")
    p.add_argument("--os-hint", choices=("windows", "linux"), help="look only for this OS family")
    p.add_argument("--dry-run", action="store_true", help="report what would change; change nothing")
    p.add_argument(
        "--report-url", metavar="SAS_URL", help="also PUT the JSON report to this write-only blob SAS URL"
    )
    p.add_argument(
        "--work-root", default=DEFAULT_WORK_ROOT, help=f"guest mount point (default {DEFAULT_WORK_ROOT})"
    )
    p.add_argument(
        "--payload-dir",
        default=DEFAULT_PAYLOAD,
        help="bundled agent packages/installers (default: the toolkit's payload/)",
    )
    p.add_argument(
        "--no-repos",
        action="store_true",
        help="never use the guest's package repositories (no network from the helper VM)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        print("error: hydration needs root (loop devices, mount, chroot); run it with sudo", file=sys.stderr)
        return EXIT_USAGE
    opts = Options(
        disks=[os.path.abspath(d) if not d.startswith("/dev/") else d for d in args.disk],
        dry_run=args.dry_run,
        os_hint=args.os_hint,
        work_root=os.path.abspath(args.work_root),
        payload_dir=os.path.abspath(args.payload_dir),
        use_repos=not args.no_repos,
    )
    from hydration.prepare import prepare

    # The extension (or an operator) may stop us: unwind through the finally blocks first.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    report = prepare(opts, echo=lambda line: print(line, flush=True))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    text = report.to_json()
    try:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        print(f"error: cannot write the report to {args.report}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.report_url:
        upload_report(args.report_url, text, report)
    print_summary(report, args.report)
    if report.status is RunStatus.SUCCEEDED:
        return EXIT_OK
    if report.status is RunStatus.MANUAL:
        return EXIT_MANUAL
    return EXIT_FAILED


def _interrupt(signum: int, frame: object) -> None:
    # Further signals are ignored so that the clean-up itself is not cut short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Interrupted(signum)


def upload_report(url: str, text: str, report: Report) -> None:
    """The Linux Custom Script Extension keeps only 4 KiB of output, so the full report goes to a blob."""
    request = urllib.request.Request(
        url,
        data=text.encode("utf-8"),
        method="PUT",
        headers={
            "x-ms-blob-type": "BlockBlob",
            "x-ms-version": "2021-08-06",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            resp.read()
    except (urllib.error.URLError, OSError) as exc:
        print(f"warning: could not upload the report ({exc}); it is still in the local file", file=sys.stderr)


def print_summary(report: Report, path: str) -> None:
    changes = report.changes
    verb = "would change" if report.dry_run else "changed"
    print(
        f"hydration {report.status}: {report.os.get('name', 'no OS found')}; "
        f"{len(changes)} settings {verb}; {len(report.warnings)} warnings; {len(report.errors)} errors"
    )
    for err in report.errors:
        print(f"error: {err.splitlines()[0][:300]}")
    for item in report.manual_steps:
        print(f"manual: {item[:300]}")
    print(f"full report: {path}")
