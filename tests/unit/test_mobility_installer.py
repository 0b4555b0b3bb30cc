"""The installer the project builds from its agent package: named as the catalog expects, reproducible,
and its `install` honours the vendor's options and checks its prerequisites before changing anything."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.build_mobility_installer import build
from shared.mobility.installers import parse_installer_name


@pytest.fixture
def unpacked(tmp_path: Path) -> Iterator[Path]:
    tarball = build("9.60.0.0", "DEBIAN9-64", "20261202", tmp_path / "dist")
    # Outside pytest's private tmp: the non-root user must be able to run it.
    with tempfile.TemporaryDirectory() as readable:
        out = Path(readable) / "installer"
        with tarfile.open(tarball) as tar:
            tar.extractall(out, filter="data")
        Path(readable).chmod(0o755)
        out.chmod(0o755)
        yield out


def test_the_name_parses_as_a_catalog_installer_and_the_build_is_reproducible(tmp_path: Path) -> None:
    first = build("9.60.0.0", "UBUNTU-20.04-64", "20261202", tmp_path / "a")
    second = build("9.60.0.0", "UBUNTU-20.04-64", "20261202", tmp_path / "b")
    assert first.name == "Microsoft-ASR_UA_9.60.0.0_UBUNTU-20.04-64_GA_20261202_release.tar.gz"
    assert parse_installer_name(first.name).version == "9.60.0.0"
    assert first.read_bytes() == second.read_bytes()


def _install(unpacked: Path, *args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(unpacked / "install"), *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, check=False)


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root")


@needs_root
def test_install_lays_out_the_agent_and_the_configurator(unpacked: Path, tmp_path: Path) -> None:
    target = tmp_path / "ASR"
    done = _install(unpacked, "-d", str(target), "-r", "MS", "-v", "VmWare", "-q")
    assert done.returncode == 0, done.stderr
    assert (target / "Vx/etc/version").read_text().strip() == "9.60.0.0"
    assert os.access(target / "Vx/bin/UnifiedAgentConfigurator.sh", os.X_OK)
    subprocess.run([str(target / "Vx/bin/uninstall.sh")], check=True)
    assert not target.exists()


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("-r", "Agent", "-v", "VmWare"), 2),
        (("-r", "MS", "-v", "HyperV"), 2),
        (("-r", "MS", "-v", "VmWare"), 10),
    ],
)
@needs_root
def test_install_refuses_bad_options_and_a_non_root_user_and_changes_nothing(
    unpacked: Path, tmp_path: Path, args: tuple[str, ...], code: int
) -> None:
    target = tmp_path / "ASR"
    done = _install(unpacked, "-d", str(target), *args, "-q", user=65534 if code == 10 else None)
    assert done.returncode == code, done.stderr
    assert "ERROR" in done.stderr
    assert not target.exists()


@needs_root
def test_install_refuses_too_little_memory(unpacked: Path, tmp_path: Path) -> None:
    target = tmp_path / "ASR"
    env = {**os.environ, "ASR_MIN_MEMORY_KB": str(1 << 40)}
    done = subprocess.run(
        [str(unpacked / "install"), "-d", str(target), "-r", "MS", "-v", "VmWare", "-q"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 12 and not target.exists()
