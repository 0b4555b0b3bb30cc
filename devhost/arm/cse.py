"""The Custom Script Extension for Linux (Microsoft.Azure.Extensions/CustomScript 2.x), run for real.

What the handler does inside a VM (Azure/custom-script-extension-linux main/cmds.go), done here on
the host: validate the settings, download `fileUris` into `download/<seqnum>/`, run the command with
`/bin/sh -c` in that folder with stdout/stderr going to files there, and report the last 4 KiB of
each in the status message. The VM's disks are what the script works on: the helper VM sees its
data disks as /dev/sdc, /dev/sdd... and as /dev/disk/azure/scsi1/lun<N> (the Azure Linux agent's udev
rules); here each attached disk's raw file is attached to a loop device (with partition scanning, so
/dev/loopNp1... exist).

The command is the one Azure runs: it names a data disk by its Azure path. As a VM has its own mount
table, the command runs in its own mount namespace (root only: the non-root "file" exposure attaches
nothing and mounts nothing), which gives it what the VM would have: `/dev/disk/azure/scsi1/lun<N>`,
standing in for the agent's udev rules (the VM's folder of links to its loop devices, bind-mounted on
an empty /dev/disk/azure created once on the host), and a private /mnt, so concurrent scripts
mounting guests under /mnt never meet. The devices are also given to the script in variables (the only
way in the "file" exposure):

- `AZURE_LOCAL_DISK_LUN<N>`: the device of the data disk at LUN N;
- `AZURE_LOCAL_DISKS`: all data disk devices, space-separated, in LUN order;
- `AZURE_LOCAL_OS_DISK`: the VM's OS disk device (a helper VM's own system disk: normally unused);
- `AZURE_LOCAL_DISKS_FILE`: a JSON file with the same (`{"osDisk": ..., "dataDisks": {"0": ...}}`).

Loop devices are detached when the script ends, whatever the outcome.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import httpx

# What a script sees of its environment on a VM: root's login basics, not the endpoint's own (its venv).
VM_ENVIRONMENT: Final = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "SHELL": "/bin/sh",
}
MAX_TAIL: Final = 4 * 1024  # maxTailLen of the Linux handler
MAX_SCRIPT: Final = 256 * 1024
DEFAULT_TIMEOUT: Final = 90 * 60  # the agent gives an extension 90 minutes


@dataclass(frozen=True)
class ScriptDisk:
    lun: int | None  # None: the OS disk
    image: Path


@dataclass
class CseOutcome:
    succeeded: bool
    message: str  # the status message, exactly as the handler words it
    exit_status: int | None = None
    timed_out: bool = False
    stdout_tail: str = ""
    stderr_tail: str = ""
    devices: dict[str, str] = field(default_factory=dict)


class ConfigError(Exception):
    pass


_running_lock = threading.Lock()
_running: set[subprocess.Popen[bytes]] = set()


def kill_running_scripts() -> None:
    """Kill every script still running (the endpoint is stopping); their runs then detach their disks."""
    with _running_lock:
        processes = list(_running)
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def tail(path: Path, limit: int = MAX_TAIL) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def output_message(stdout_tail: str, stderr_tail: str) -> str:
    return f"\n[stdout]\n{stdout_tail}\n[stderr]\n{stderr_tail}"


def resolve_command(public: dict[str, Any], protected: dict[str, Any], work_dir: Path) -> str:
    """The command to run, with the handler's validation rules (failures are 'failed to get configuration')."""
    for key in ("commandToExecute", "script", "fileUris"):
        if public.get(key) and protected.get(key):
            raise ConfigError(f"'{key}' was specified in both public and protected settings; choose one")
    command = public.get("commandToExecute") or protected.get("commandToExecute")
    script = public.get("script") or protected.get("script")
    if command and script:
        raise ConfigError(
            "'commandToExecute' and 'script' were both specified, but only one is allowed at a time"
        )
    if not command and not script:
        raise ConfigError("either 'script' or 'commandToExecute' must be specified")
    if command:
        return str(command)
    if len(str(script)) > MAX_SCRIPT:
        raise ConfigError(
            f"The script's length ({len(str(script))}) exceeded the maximum allowed length of {MAX_SCRIPT}!"
        )
    try:
        raw = base64.b64decode(str(script), validate=True)
    except ValueError as exc:
        raise ConfigError(f"failed to decode script: {exc}") from exc
    with contextlib.suppress(OSError, EOFError):
        raw = gzip.decompress(raw)
    path = work_dir / "script.sh"
    path.write_bytes(raw if public.get("skipDos2Unix") else raw.replace(b"\r\n", b"\n"))
    path.chmod(0o500)
    return str(path)


def download(urls: list[str], work_dir: Path) -> None:
    for index, url in enumerate(urls):
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or f"file{index}"
        try:
            with httpx.stream("GET", url, timeout=60) as response:
                if response.status_code != 200:
                    raise ConfigError(
                        f"failed to download file[{index}]: http request failed: {response.status_code}"
                    )
                with (work_dir / name).open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise ConfigError(f"failed to download file[{index}]: {exc}") from exc


@contextlib.contextmanager
def attached(disks: list[ScriptDisk], exposure: str) -> Any:
    """Attach each disk image as a loop device (or hand out the file itself); always detach."""
    devices: list[tuple[ScriptDisk, str]] = []
    try:
        for disk in disks:
            if exposure == "file":
                devices.append((disk, str(disk.image)))
                continue
            result = subprocess.run(
                ["losetup", "--find", "--show", "--partscan", str(disk.image)],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise ConfigError(
                    f"could not attach {disk.image.name} as a loop device: {result.stderr.strip()}"
                )
            devices.append((disk, result.stdout.strip()))
        yield devices
    finally:
        if exposure != "file":
            for _, device in devices:
                subprocess.run(["losetup", "-d", device], capture_output=True, check=False)


def disk_environment(devices: list[tuple[ScriptDisk, str]], disks_file: Path) -> dict[str, str]:
    data = sorted(((d.lun, dev) for d, dev in devices if d.lun is not None), key=lambda pair: pair[0])
    os_disk = next((dev for d, dev in devices if d.lun is None), "")
    env = {f"AZURE_LOCAL_DISK_LUN{lun}": dev for lun, dev in data}
    env["AZURE_LOCAL_DISKS"] = " ".join(dev for _, dev in data)
    env["AZURE_LOCAL_OS_DISK"] = os_disk
    env["AZURE_LOCAL_DISKS_FILE"] = str(disks_file)
    disks_file.write_text(json.dumps({"osDisk": os_disk, "dataDisks": {str(lun): dev for lun, dev in data}}))
    return env


AZURE_DISK_LINKS: Final = Path("/dev/disk/azure")
# Mount, then `exec`: the script is the namespace's first process, so a timeout's killpg reaches it and
# its children; the mounts go with the namespace when it ends.
OWN_VM_VIEW: Final = (
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "/bin/sh",
    "-c",
    'mount -t tmpfs -o mode=0755 vm-mnt /mnt && mount --bind "$1" /dev/disk/azure && exec /bin/sh -c "$2"',
    "vm",
)


def lun_links(devices: list[tuple[ScriptDisk, str]], vm_dir: Path) -> Path:
    """The VM's `/dev/disk/azure`: `scsi1/lun<N>` links to the device of each data disk."""
    folder = vm_dir / "dev-disk-azure"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "scsi1").mkdir(parents=True)
    for disk, device in devices:
        if disk.lun is not None:
            (folder / "scsi1" / f"lun{disk.lun}").symlink_to(device)
    return folder


def script_argv(command: str, exposure: str, links: Path) -> list[str]:
    if exposure == "file":
        return ["/bin/sh", "-c", command]
    AZURE_DISK_LINKS.mkdir(parents=True, exist_ok=True)  # the mount point, empty on the host
    return [*OWN_VM_VIEW, str(links), command]


def run_custom_script(
    vm_dir: Path,
    seqnum: int,
    public: dict[str, Any],
    protected: dict[str, Any],
    disks: list[ScriptDisk],
    *,
    exposure: str = "loop",
    timeout: float = DEFAULT_TIMEOUT,
) -> CseOutcome:
    work_dir = vm_dir / "custom-script" / "download" / str(seqnum)
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        command = resolve_command(public, protected, work_dir)
    except ConfigError as exc:
        return CseOutcome(False, f"Enable failed: failed to get configuration: {exc}")
    try:
        download(list(public.get("fileUris") or protected.get("fileUris") or []), work_dir)
    except ConfigError as exc:
        return CseOutcome(False, f"Enable failed: processing file downloads failed: {exc}")
    stdout_path, stderr_path = work_dir / "stdout", work_dir / "stderr"
    try:
        with attached(disks, exposure) as devices:
            env = {**VM_ENVIRONMENT, **disk_environment(devices, vm_dir / "disks.json")}
            argv = script_argv(command, exposure, lun_links(devices, vm_dir))
            with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
                process = subprocess.Popen(
                    argv,
                    cwd=work_dir,
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                )
                with _running_lock:
                    _running.add(process)
                timed_out = False
                try:
                    status = process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    # The whole group: a toolkit's own children (mount, chroot...) go too.
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    status = process.wait()
                finally:
                    with _running_lock:
                        _running.discard(process)
            device_map = {str(d.lun if d.lun is not None else "os"): dev for d, dev in devices}
    except ConfigError as exc:
        return CseOutcome(False, f"Enable failed: failed to execute command: {exc}")
    out_tail, err_tail = tail(stdout_path), tail(stderr_path)
    if timed_out:
        return CseOutcome(
            False,
            "Enable failed: the command did not finish within the time limit"
            + output_message(out_tail, err_tail),
            exit_status=status,
            timed_out=True,
            stdout_tail=out_tail,
            stderr_tail=err_tail,
            devices=device_map,
        )
    if status != 0:
        return CseOutcome(
            False,
            f"Enable failed: failed to execute command: command terminated with exit status={status}"
            + output_message(out_tail, err_tail),
            exit_status=status,
            stdout_tail=out_tail,
            stderr_tail=err_tail,
            devices=device_map,
        )
    return CseOutcome(
        True,
        "Enable succeeded: " + output_message(out_tail, err_tail),
        exit_status=0,
        stdout_tail=out_tail,
        stderr_tail=err_tail,
        devices=device_map,
    )
