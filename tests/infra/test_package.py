"""The deployable zip (`make package`): complete for the app to start and to hydrate, and nothing else.

The slow test builds the zip as `make package` does, unpacks it and imports the app in a Python that
sees only the unpacked tree and its `.python_packages` (no repository, no virtualenv): what a Functions
worker has after a zip deploy without a remote build.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath
from types import ModuleType

import pytest

from shared.migration.toolkit_bundle import build_toolkit_bundle

ROOT = Path(__file__).resolve().parents[2]


def _package_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("package_script", ROOT / "scripts" / "package.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_funcignore_keeps_what_the_app_reads_and_drops_the_rest() -> None:
    package = _package_script()
    files = {str(name) for _, name in package.app_files(ROOT, package.IgnoreRules.read(ROOT / ".funcignore"))}
    tops = {PurePosixPath(name).parts[0] for name in files}
    assert tops == {
        "function_app.py",
        "host.json",
        "requirements.txt",
        "functions",
        "orchestrators",
        "shared",
        "hydration",
    }, tops
    assert {"hydration/__main__.py", "hydration/apt-packages.txt", "hydration/payload/README.md"} <= files
    assert not any(name.endswith((".pyc", ".in")) or "__pycache__" in name for name in files)


def test_ignore_rules_follow_the_gitignore_subset() -> None:
    rules = _package_script().IgnoreRules(["# c", "docs/", "*.pyc", "infra/modules", "local.json"])
    assert rules.ignored(PurePosixPath("docs"), is_dir=True)
    assert rules.ignored(PurePosixPath("shared/docs"), is_dir=True)  # a directory name anywhere
    assert not rules.ignored(PurePosixPath("docs"), is_dir=False)  # `docs/` is for directories only
    assert rules.ignored(PurePosixPath("shared/x.pyc"), is_dir=False)
    assert rules.ignored(PurePosixPath("infra/modules"), is_dir=True)
    assert not rules.ignored(PurePosixPath("other/infra/modules"), is_dir=True)  # anchored at the root
    with pytest.raises(ValueError, match="re-include"):
        _package_script().IgnoreRules(["!keep"])


PROBE = """
import json, sys
root = sys.argv[1]
sys.path[:0] = [root, root + "/.python_packages/lib/site-packages"]
import function_app
from shared.migration.toolkit_bundle import TOOLKIT_ROOT, build_toolkit_bundle
import azure.functions, pydantic_core
bundle = build_toolkit_bundle()
print(json.dumps({
    "functions": len(function_app.app.get_functions()),
    "toolkit_root": str(TOOLKIT_ROOT),
    "digest": bundle.digest,
    "modules": [azure.functions.__file__, pydantic_core.__file__, function_app.__file__],
    "path": sys.path,
}))
"""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_zip_alone_starts_the_app_and_builds_the_hydration_toolkit(tmp_path: Path) -> None:
    app_zip = tmp_path / "app.zip"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "package.py"), "--output", str(app_zip)], check=True
    )
    unpacked = tmp_path / "wwwroot"
    with zipfile.ZipFile(app_zip) as archive:
        names = archive.namelist()
        archive.extractall(unpacked)
    assert not any(name.startswith(("tests/", "devhost/", "bench/", "docs/", "appliance/")) for name in names)
    assert any(name.startswith(".python_packages/lib/site-packages/azure/functions/") for name in names)

    # -I: no PYTHONPATH, no current directory; -S: no site-packages of this virtualenv.
    probe = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(unpacked)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["functions"] > 0
    assert found["toolkit_root"] == str(unpacked / "hydration")
    for module in found["modules"]:
        assert module.startswith(str(unpacked)), module
    assert not any(
        str(ROOT) in entry or "site-packages" in entry.split("/.python_packages")[0]
        for entry in found["path"]
    )
    # The deployed app uploads the same toolkit (agent packages included) the repository builds.
    assert found["digest"] == build_toolkit_bundle().digest


def _locked(name: str) -> dict[str, str]:
    """{package: version} of a uv/pip-compile lock; every entry must carry at least one hash."""
    pins: dict[str, str] = {}
    entries = (ROOT / name).read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(entries):
        if line and not line[0].isspace() and not line.startswith("#"):
            requirement = line.split(" ", 1)[0]
            package, _, version = requirement.partition("==")
            assert version, f"{name}: {requirement} is not pinned exactly"
            assert "--hash=sha256:" in entries[i + 1], f"{name}: {requirement} has no hash"
            pins[package.lower().replace("_", "-")] = version
    return pins


def _direct(name: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            package, _, version = line.partition("==")
            package = package.split("[", 1)[0]  # an extra (pyjwt[crypto]) is locked as the package itself
            pins[package.lower().replace("_", "-")] = version
    return pins


def test_the_locks_agree_with_their_inputs_and_with_each_other() -> None:
    app, appliance, dev = (
        _locked(f) for f in ("requirements.txt", "requirements-appliance.txt", "requirements-dev.txt")
    )
    for source, lock in (
        ("requirements.in", app),
        ("requirements-appliance.in", appliance),
        ("requirements-dev.in", dev),
    ):
        for package, version in _direct(source).items():
            assert package in lock, f"{package} of {source} is not in its lock: run `make lock`"
            assert not version or lock[package] == version, (
                f"{package}: {source} {version}, lock {lock[package]}"
            )
    # The tests run against exactly what is deployed and what an appliance installs.
    assert {p: v for p, v in dev.items() if p in app} == app
    assert {p: v for p, v in dev.items() if p in appliance} == appliance
    assert "azure-eventgrid" not in app  # only the appliance publishes events
