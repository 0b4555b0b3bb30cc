"""The toolkit bundle the helper VM downloads: reproducible, complete, and the run script really runs the
toolkit's command line with what it is given (checked with a stand-in python3 on PATH)."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

from shared.migration.toolkit_bundle import RUN_SCRIPT, build_toolkit_bundle


def test_the_bundle_is_reproducible_and_holds_the_package_only() -> None:
    first, second = build_toolkit_bundle(), build_toolkit_bundle()
    assert first.digest == second.digest and first.data == second.data
    assert first.blob_name == f"toolkit/hydration-{first.digest[:16]}.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(first.data)) as tar:
        names = tar.getnames()
        assert {m.mtime for m in tar.getmembers()} == {0}
    assert "hydration/__main__.py" in names and "hydration/cli.py" in names
    assert "hydration/apt-packages.txt" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_run_script_unpacks_and_calls_the_toolkit(tmp_path: Path) -> None:
    bundle = build_toolkit_bundle()
    download = tmp_path / "download"
    download.mkdir()
    (download / bundle.file_name).write_bytes(bundle.data)
    (download / "run-hydration.sh").write_text(RUN_SCRIPT)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    # Stands in for the helper's python3: records where it ran and with what.
    (fake_bin / "python3").write_text(
        '#!/bin/sh\necho "cwd=$(pwd)"\necho "args=$*"\nls hydration/__main__.py\n'
    )
    (fake_bin / "python3").chmod(0o755)
    env = {"PATH": f"{fake_bin}:/usr/bin:/bin"}
    out = subprocess.run(
        ["sh", "run-hydration.sh", bundle.file_name, "--disk", "/dev/loop9", "--report", "r.json"],
        cwd=download,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"cwd={download}/toolkit" in out
    assert (
        "args=-m hydration prepare --work-root /mnt/azure_sms_root --disk /dev/loop9 --report r.json" in out
    )
    assert "hydration/__main__.py" in out
    # Wherever it runs, the command and the work root are the same (no environment-specific branch).
    out = subprocess.run(
        ["sh", "run-hydration.sh", bundle.file_name, "--disk", "/dev/sdc"],
        cwd=download,
        env={**env, "HOME": os.environ.get("HOME", "/root")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--work-root /mnt/azure_sms_root --disk /dev/sdc" in out


def test_helper_packages_are_bundled_and_installed_first(tmp_path: Path) -> None:
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / "ntfs-3g_2022_amd64.deb").write_bytes(b"deb")
    bundle = build_toolkit_bundle(helper_debs=debs)
    with tarfile.open(fileobj=io.BytesIO(bundle.data)) as tar:
        assert "helper-debs/ntfs-3g_2022_amd64.deb" in tar.getnames()
    assert bundle.digest != build_toolkit_bundle().digest
    download = tmp_path / "download"
    download.mkdir()
    (download / bundle.file_name).write_bytes(bundle.data)
    (download / "run-hydration.sh").write_text(RUN_SCRIPT)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    # Stand-ins record the install; every tool "exists", so apt-get is never needed.
    (fake_bin / "dpkg").write_text(f'#!/bin/sh\necho "dpkg $*" >> {tmp_path}/calls\n')
    (fake_bin / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> {tmp_path}/calls\n')
    (fake_bin / "python3").write_text('#!/bin/sh\necho "python3 $*"\n')
    for tool in ("losetup", "mount", "blkid", "mkfs.ext4", "debugfs", "ntfs-3g", "vgchange", "cpio"):
        (fake_bin / tool).write_text("#!/bin/sh\n")
    for exe in fake_bin.iterdir():
        exe.chmod(0o755)
    out = subprocess.run(
        ["sh", "run-hydration.sh", bundle.file_name, "--install-helper-packages", "--disk", "d"],
        cwd=download,
        env={"PATH": f"{fake_bin}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    calls = (tmp_path / "calls").read_text()
    assert "dpkg -i --skip-same-version" in calls and "helper-debs/ntfs-3g_2022_amd64.deb" in calls
    assert "apt-get" not in calls
    assert "python3 -m hydration prepare --work-root /mnt/azure_sms_root --disk d" in out
