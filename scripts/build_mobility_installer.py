"""Build the Mobility service installer from the project's agent package (agent/), named as the vendor
names its installers: Microsoft-ASR_UA_<version>_<OS>_GA_<date>_release.tar.gz.

    .venv/bin/python scripts/build_mobility_installer.py [--version 9.60.0.0] [--os DEBIAN9-64]
        [--date 20261202] [--out dist]

The tarball is reproducible (sorted entries, fixed owners and times): the same inputs give the same
bytes, so its SHA-256 in the catalog identifies the build. `make mobility-installer` runs it.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from shared.mobility.installers import InstallerKind, parse_installer_name  # noqa: E402

AGENT = REPO / "agent"
FILES = ("install", "UnifiedAgentConfigurator.sh", "svagent", "uninstall.sh", "asr_agent.py", "replicator.py")
EXECUTABLE = frozenset({"install", "UnifiedAgentConfigurator.sh", "svagent", "uninstall.sh"})
DEFAULT_VERSION = "9.60.0.0"
DEFAULT_OS = "DEBIAN9-64"


def installer_name(version: str, os_token: str, date: str) -> str:
    name = f"Microsoft-ASR_UA_{version}_{os_token}_GA_{date}_release.tar.gz"
    parsed = parse_installer_name(name)  # the catalog's own check: a name it would refuse is never built
    if parsed.kind is not InstallerKind.TAR_GZ:
        raise SystemExit(f"{os_token} is not a Linux installer")
    return name


def build(version: str, os_token: str, date: str, out: Path) -> Path:
    name = installer_name(version, os_token, date)
    mtime = int(datetime.strptime(date, "%Y%m%d").replace(tzinfo=UTC).timestamp())
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [(f, (AGENT / f).read_bytes()) for f in FILES] + [("VERSION", f"{version}\n".encode())]
        for file_name, data in sorted(entries):
            info = tarfile.TarInfo(file_name)
            info.size, info.mtime = len(data), mtime
            info.mode = 0o755 if file_name in EXECUTABLE else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    with path.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=mtime) as gz:
        gz.write(raw.getvalue())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=DEFAULT_VERSION)
    parser.add_argument("--os", default=DEFAULT_OS, dest="os_token")
    parser.add_argument("--date", default=datetime.now(UTC).strftime("%Y%m%d"))
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    args = parser.parse_args(argv)
    print(build(args.version, args.os_token, args.date, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
