"""Build the deployable zip of the function app (`make package`): docs/deploy.md, "Publish the app".

The zip has the Azure Functions Python layout for a deployment without a remote build: the app's files
at the root (everything `.funcignore` does not exclude: function_app.py, host.json, functions/,
orchestrators/, shared/, hydration/ with any bundled agent packages) and the whole locked dependency
closure under `.python_packages/lib/site-packages`, installed from requirements.txt with its hashes as
Linux x86-64 CPython 3.11 wheels, whatever machine builds it.

The zip is reproducible (sorted entries, fixed timestamps). The installed dependencies are cached under
.devhost/package/ by the lock's digest, so a rebuild after a code change only re-zips.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
SITE_PACKAGES = PurePosixPath(".python_packages/lib/site-packages")
# The Functions Python 3.11 workers run on Linux x86-64 with glibc 2.28 or newer. pip does not widen
# a `manylinux_2_28` platform to the older tags, so they are listed (manylinux2014 brings 2010 and 1).
PLATFORM_ARGS = (
    *(
        arg
        for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
        for arg in ("--platform", tag)
    ),
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--only-binary=:all:",
)
# Zip entries before 1980 are not representable; a fixed date keeps the zip's bytes a function of its content.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class IgnoreRules:
    """The subset of gitignore syntax .funcignore uses (see the file's header)."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[tuple[str, bool, bool]] = []  # (pattern, directories only, anchored)
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("!"):
                raise ValueError(f".funcignore: re-includes ({line}) are not supported")
            dir_only = line.endswith("/")
            pattern = line.rstrip("/")
            anchored = "/" in pattern
            self.rules.append((pattern.lstrip("/"), dir_only, anchored))

    @classmethod
    def read(cls, path: Path) -> IgnoreRules:
        return cls(path.read_text(encoding="utf-8").splitlines() if path.exists() else [])

    def ignored(self, relative: PurePosixPath, *, is_dir: bool) -> bool:
        for pattern, dir_only, anchored in self.rules:
            if dir_only and not is_dir:
                continue
            target = str(relative) if anchored else relative.name
            if fnmatch.fnmatchcase(target, pattern):
                return True
        return False


def app_files(root: Path, rules: IgnoreRules) -> list[tuple[Path, PurePosixPath]]:
    """Every file of the app under `root` that .funcignore keeps, sorted by its path in the zip."""
    found: list[tuple[Path, PurePosixPath]] = []
    for directory, dirnames, filenames in os.walk(root):
        here = PurePosixPath(Path(directory).relative_to(root).as_posix())
        kept_dirs = []
        for name in sorted(dirnames):
            path = Path(directory) / name
            if path.is_symlink() or rules.ignored(here / name, is_dir=True):
                continue
            kept_dirs.append(name)
        dirnames[:] = kept_dirs
        for name in filenames:
            relative = here / name
            path = Path(directory) / name
            if path.is_file() and not rules.ignored(relative, is_dir=False):
                found.append((path, relative))
    return sorted(found, key=lambda item: str(item[1]))


def lock_digest(lock: Path) -> str:
    return hashlib.sha256(lock.read_bytes()).hexdigest()[:16]


def installed_dependencies(lock: Path, cache: Path) -> Path:
    """The lock's closure installed for the Functions host, reused while the lock is unchanged."""
    target = cache / f"site-packages-{lock_digest(lock)}"
    if (target / ".complete").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="site-packages-", dir=cache))
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--require-hashes",
                "--no-compile",
                "--target",
                str(staging),
                *PLATFORM_ARGS,
                "-r",
                str(lock),
            ],
            check=True,
        )
        (staging / ".complete").write_text(lock_digest(lock) + "\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def dependency_files(site_packages: Path) -> list[tuple[Path, PurePosixPath]]:
    found = []
    for path in sorted(site_packages.rglob("*")):
        relative = path.relative_to(site_packages)
        if path.is_file() and relative.name != ".complete" and "__pycache__" not in relative.parts:
            found.append((path, SITE_PACKAGES / relative.as_posix()))
    return found


def write_zip(output: Path, entries: list[tuple[Path, PurePosixPath]]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path, name in entries:
            info = zipfile.ZipInfo(str(name), date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            info.create_system = 3  # Unix, so the modes above are read back on Linux
            with path.open("rb") as source, archive.open(info, "w") as sink:
                shutil.copyfileobj(source, sink, 1024 * 1024)
    partial.replace(output)


def build(root: Path, output: Path, cache: Path) -> int:
    rules = IgnoreRules.read(root / ".funcignore")
    files = app_files(root, rules)
    names = {str(name) for _, name in files}
    for required in ("function_app.py", "host.json", "requirements.txt", "hydration/__main__.py"):
        if required not in names:
            raise SystemExit(f"package: {required} is missing from the app files (check .funcignore)")
    dependencies = dependency_files(installed_dependencies(root / "requirements.txt", cache))
    write_zip(output, files + dependencies)
    return len(files) + len(dependencies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "dist" / "app.zip")
    parser.add_argument("--cache", type=Path, default=ROOT / ".devhost" / "package")
    args = parser.parse_args(argv)
    count = build(ROOT, args.output.resolve(), args.cache.resolve())
    size = args.output.stat().st_size
    print(f"package: {args.output} ({count} files, {size / 1024 / 1024:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
