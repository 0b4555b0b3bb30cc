"""The command line contract, the report upload, agent installation paths and LVM handling."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from devhost.waiting import wait_until
from tests.hydration.conftest import REPO, SYSTEM_PYTHON, debugfs_cat, debugfs_exists
from tests.hydration.guests import GuestSpec, boot_tree, root_tree
from tests.hydration.images import Part, build_disk
from tests.hydration.layouts import single_root

pytestmark = [pytest.mark.root]


def test_usage_error_without_disk() -> None:
    proc = subprocess.run(
        [SYSTEM_PYTHON, "-m", "hydration", "prepare", "--report", "/tmp/x.json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "--disk" in proc.stderr


def test_missing_disk_is_a_clear_error(tmp_path: Path, hydrate: Any) -> None:
    result = hydrate(tmp_path / "nope.img", expect_rc=1)
    assert "does not exist" in result.report["errors"][0]
    assert result.report["status"] == "failed"


class _Capture(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Capture.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_report_is_put_to_the_sas_url_and_stdout_is_short(tmp_path: Path, hydrate: Any) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        layout = single_root(tmp_path, GuestSpec("ubuntu", "20.04"))
        url = f"http://127.0.0.1:{server.server_port}/reports/vm1.json?sv=2021-08-06&sp=cw&sig=x"
        result = hydrate(layout.disk, args=("--report-url", url))
    finally:
        server.shutdown()
    path, headers, body = _Capture.received[-1]
    assert path.startswith("/reports/vm1.json?")
    assert headers["x-ms-blob-type"] == "BlockBlob"
    assert json.loads(body)["status"] == "succeeded"
    assert json.loads(body)["os"]["distribution"] == "ubuntu"
    assert len(result.stdout.encode()) < 4096  # the Linux extension keeps only the last 4 KiB


def test_agent_from_bundled_package(tmp_path: Path, hydrate: Any) -> None:
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "WALinuxAgent-2.9.1.1-1.el7.noarch.rpm").write_bytes(b"fake rpm")
    layout = single_root(tmp_path, GuestSpec("centos", "7.7"))
    result = hydrate(layout.disk)
    step = result.step("install_azure_linux_agent")
    assert step["status"] == "changed", step
    assert "WALinuxAgent-2.9.1.1" in step["changes"][0]["note"]
    log = debugfs_cat(layout.disk, layout.root_mb, "/var/log/fake-tools.log") or ""
    assert "rpm -Uvh --replacepkgs /tmp/WALinuxAgent-2.9.1.1-1.el7.noarch.rpm" in log
    assert "systemctl enable waagent.service" in log
    assert debugfs_exists(
        layout.disk, layout.root_mb, "/etc/systemd/system/multi-user.target.wants/waagent.service"
    )
    assert not debugfs_exists(layout.disk, layout.root_mb, "/tmp/WALinuxAgent-2.9.1.1-1.el7.noarch.rpm")
    again = hydrate(layout.disk)
    assert again.step("install_azure_linux_agent")["status"] == "unchanged"


def test_bundled_deb_goes_in_with_the_dependencies_the_guest_lacks_and_no_warning(
    tmp_path: Path, hydrate: Any
) -> None:
    payload = tmp_path / "payload"
    payload.mkdir()
    for name in (
        "waagent_2.7.3.0-4.1_all.deb",
        "python3-distro_1.8.0-1_all.deb",
        "python3-pkg-resources_66.1.1-1+deb12u2_all.deb",
    ):
        (payload / name).write_bytes(b"fake deb")
    spec = GuestSpec("debian", "11")
    fstab = "/dev/sda1 / ext4 defaults 0 1\n"
    root = {**root_tree(spec, fstab), **boot_tree(spec, "/dev/sda1")}
    # The guest has its own (newer) pkg_resources: the bundled one must not replace it.
    root["/var/lib/dpkg/status"] = (
        "Package: python3-pkg-resources\nStatus: install ok installed\nVersion: 68.1.2-2\n\n"
        "Package: python3-distro\nStatus: deinstall ok config-files\nVersion: 1.5.0-1\n"
    )
    disk = tmp_path / "d.img"
    parts = build_disk(str(disk), "gpt", [Part(64, "ext4", root)])
    result = hydrate(disk)  # repositories disabled, as on the temporary VM
    step = result.step("install_azure_linux_agent")
    assert step["status"] == "changed", step
    assert "waagent_2.7.3.0-4.1_all.deb" in step["changes"][0]["note"]
    log = debugfs_cat(disk, parts[0].start_mb, "/var/log/fake-tools.log") or ""
    assert "dpkg -i /tmp/waagent_2.7.3.0-4.1_all.deb /tmp/python3-distro_1.8.0-1_all.deb\n" in log
    assert not any("agent" in warning for warning in result.report["warnings"])
    assert not debugfs_exists(disk, parts[0].start_mb, "/tmp/python3-distro_1.8.0-1_all.deb")


def test_agent_from_guest_repositories_keeps_guest_resolv_conf(tmp_path: Path, hydrate: Any) -> None:
    spec = GuestSpec("ubuntu", "22.04")
    fstab = "/dev/sda1 / ext4 defaults 0 1\n"
    root = {**root_tree(spec, fstab), **boot_tree(spec, "/dev/sda1")}
    from tests.hydration.images import Symlink

    root["/etc/resolv.conf"] = Symlink("../run/systemd/resolve/stub-resolv.conf")
    disk = tmp_path / "u.img"
    parts = build_disk(str(disk), "gpt", [Part(64, "ext4", root)])
    result = hydrate(disk, repos=True)
    step = result.step("install_azure_linux_agent")
    assert step["status"] == "changed"
    assert "repositories" in step["changes"][0]["note"]
    log = debugfs_cat(disk, parts[0].start_mb, "/var/log/fake-tools.log") or ""
    assert "apt-get" in log and "install walinuxagent" in log
    stat = subprocess.run(
        ["debugfs", "-R", "stat /etc/resolv.conf", f"{disk}?offset={parts[0].start_mb << 20}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert "Type: symlink" in stat and "stub-resolv.conf" in stat
    assert not debugfs_exists(disk, parts[0].start_mb, "/usr/sbin/policy-rc.d")


def test_lvm_physical_volume_is_reported_and_root_still_found(tmp_path: Path, hydrate: Any) -> None:
    spec = GuestSpec("rhel", "8.4", bls=True)
    fstab = (
        "/dev/sda1 / ext4 defaults 0 1\n/dev/mapper/vg_data-lv_data /data xfs defaults 0 0\n"
        "/dev/vg_data/lv_logs /logs ext4 defaults 0 0\n"
    )
    root = {**root_tree(spec, fstab), **boot_tree(spec, "/dev/sda1")}
    disk = tmp_path / "lvm.img"
    parts = build_disk(str(disk), "mbr", [Part(64, "ext4", root), Part(16, "raw", kind="lvm")])
    loop = subprocess.run(
        [
            "losetup",
            "--show",
            "-f",
            "-o",
            str(parts[1].start_mb << 20),
            "--sizelimit",
            str(16 << 20),
            str(disk),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        cfg = "devices { use_devicesfile = 0 } activation { udev_sync = 0 udev_rules = 0 }"
        subprocess.run(["pvcreate", "--config", cfg, "-q", loop], capture_output=True, check=True)
        subprocess.run(["vgcreate", "--config", cfg, "-q", "vg_data", loop], capture_output=True, check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
    result = hydrate(disk)
    pv = next(p for p in result.report["partitions"] if p["fstype"] == "LVM2_member")
    assert pv["name"] == "disk0p2"
    fstab_after = debugfs_cat(disk, parts[0].start_mb, "/etc/fstab") or ""
    assert "/dev/mapper/vg_data-lv_data /data" in fstab_after and "/dev/vg_data/lv_logs /logs" in fstab_after
    assert fstab_after.startswith("UUID=")


def _guest_with_dracut(tmp_path: Path, dracut: str) -> tuple[Path, int]:
    from tests.hydration.images import Exe

    spec = GuestSpec("rhel", "8.6", kernels=("4.18.0-372.el8.x86_64",))
    root = {**root_tree(spec, "/dev/sda1 / ext4 defaults 0 1\n"), **boot_tree(spec, "/dev/sda1")}
    root["/usr/bin/dracut"] = Exe(dracut)
    disk = tmp_path / "rhel.img"
    parts = build_disk(str(disk), "mbr", [Part(64, "ext4", root)])
    return disk, parts[0].start_mb


def test_failed_initrd_rebuild_restores_the_original(tmp_path: Path, hydrate: Any) -> None:
    disk, start = _guest_with_dracut(
        tmp_path,
        '#!/bin/sh\n[ "$1" = --help ] && exit 0\necho broken > "$5"; echo \'dracut: boom\'; exit 1\n',
    )
    initrd = "/boot/initramfs-4.18.0-372.el8.x86_64.img"
    original = debugfs_cat(disk, start, initrd)
    result = hydrate(disk, expect_rc=1)
    step = result.step("rebuild_initrd")
    assert step["status"] == "failed" and "original initrd was restored" in step["message"]
    assert "dracut: boom" in step["message"]
    assert debugfs_cat(disk, start, initrd) == original
    assert result.step("validate_fstab")["status"] == "changed"  # the other steps still ran and reported
    assert result.step("unmount_everything")["status"] == "ok"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _descendant_running(ancestor: int, command: str) -> int | None:
    """The pid of a process running `command` that descends from `ancestor`, if any."""
    found = subprocess.run(["pgrep", "-f", command], capture_output=True, text=True).stdout.split()
    for pid in map(int, found):
        current = pid
        while current > 1:
            try:
                stat = Path(f"/proc/{current}/stat").read_text()
            except OSError:
                break
            current = int(stat.rsplit(")", 1)[1].split()[1])  # ppid: after the (comm) field and the state
            if current == ancestor:
                return pid
    return None


def test_sigterm_during_a_guest_tool_releases_everything(tmp_path: Path, hydrate: Any) -> None:
    import os
    import signal

    disk, _ = _guest_with_dracut(tmp_path, '#!/bin/sh\n[ "$1" = --help ] && exit 0\nsleep 60 & wait\n')
    report = tmp_path / "killed.json"
    argv = [
        SYSTEM_PYTHON,
        "-m",
        "hydration",
        "prepare",
        "--disk",
        str(disk),
        "--report",
        str(report),
        "--work-root",
        str(tmp_path / "azure_sms_root"),
        "--no-repos",
    ]
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # The guest tool of *this* run (another test or demo on the machine may run the same guest): its pid.
    tool = wait_until(
        lambda: _descendant_running(proc.pid, "sleep 60"),
        timeout=30,
        interval=0.2,
        what="the guest tool running under the toolkit",
    )
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    data = json.loads(report.read_text())
    assert "interrupted" in data["errors"][-1]
    # Killed by the toolkit's clean-up; reaped by init a moment later (a zombie is dead already).
    wait_until(lambda: not _alive(tool), timeout=10, interval=0.1, what=f"the guest tool {tool} to be gone")
    assert hydrate is not None  # its teardown asserts that no mount or loop device is left


def test_kernel_without_netvsc_is_a_warning_not_a_rebuild(tmp_path: Path, hydrate: Any) -> None:
    import gzip

    from tests.hydration.images import newc

    k = "3.10.0-123.el7.x86_64"
    spec = GuestSpec("rhel", "7.0", kernels=(k,))
    root = {**root_tree(spec, "/dev/sda1 / ext4 defaults 0 1\n"), **boot_tree(spec, "/dev/sda1")}
    del root[f"/lib/modules/{k}/kernel/drivers/net/hyperv/hv_netvsc.ko.xz"]
    base = f"usr/lib/modules/{k}/kernel/drivers"
    root[f"/boot/initramfs-{k}.img"] = gzip.compress(
        newc({f"{base}/hv/hv_vmbus.ko.xz": b"x", f"{base}/scsi/hv_storvsc.ko.xz": b"x"})
    )
    disk = tmp_path / "old.img"
    build_disk(str(disk), "mbr", [Part(64, "ext4", root)])
    result = hydrate(disk)
    step = result.step("rebuild_initrd")
    assert step["status"] == "warning" and "hv_netvsc" in step["message"]
    assert not [c for c in step["changes"] if c["changed"]]


def test_whole_disk_block_device(tmp_path: Path, hydrate: Any) -> None:
    """The helper VM passes /dev/sdc-style devices; the local CSE passes loop devices."""
    from tests.hydration.layouts import gpt_uefi

    layout = gpt_uefi(tmp_path, GuestSpec("debian", "11.9"))
    device = subprocess.run(
        ["losetup", "--show", "-f", str(layout.disk)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        result = hydrate(device)
        assert result.report["disks"] == [device]
        assert result.report["os"]["mounts"] == {"/boot": "disk0p2", "/boot/efi": "disk0p1"}
        assert result.report["os"]["firmware"] == "uefi"
        assert hydrate(device).report["changes"] == []
    finally:
        subprocess.run(["losetup", "-d", device], check=False)
    assert (debugfs_cat(layout.disk, layout.root_mb, "/etc/fstab") or "").startswith("UUID=")


def test_two_disks_with_var_on_the_second(tmp_path: Path, hydrate: Any) -> None:
    """All of a Linux VM's disks are attached; /var lives on the second one (by UUID)."""
    var_uuid = "5f0dbec0-5555-4b4c-9d5e-6f7a8b9cadbe"
    spec = GuestSpec("ubuntu", "18.04")
    fstab = (
        "/dev/sda1 / ext4 defaults 0 1\n"
        f"UUID={var_uuid} /var ext4 defaults 0 2\n"
        "/dev/sdb2 /data ext4 defaults 0 2\n"
    )
    root = {**root_tree(spec, fstab), **boot_tree(spec, "/dev/sda1")}
    var_tree = {k[len("/var") :]: v for k, v in root.items() if k.startswith("/var/")}
    root = {k: v for k, v in root.items() if not k.startswith("/var/")}
    root["/var"] = None
    disk0, disk1 = tmp_path / "os.img", tmp_path / "data.img"
    p0 = build_disk(str(disk0), "mbr", [Part(64, "ext4", root)])
    p1 = build_disk(
        str(disk1), "gpt", [Part(24, "ext4", var_tree, uuid=var_uuid), Part(16, "ext4", {"/x": "data"})]
    )
    result = hydrate(disk0, disk1)
    assert result.report["os"]["mounts"] == {"/var": "disk1p1"}
    fstab_after = debugfs_cat(disk0, p0[0].start_mb, "/etc/fstab") or ""
    assert fstab_after.splitlines()[0].startswith("UUID=")
    assert "/dev/sdb2 /data" in fstab_after  # not root's or /boot's disk: left alone
    # The backups went to the guest's /var, i.e. onto the second disk.
    backup = "/lib/azure-migrate/hydration-backup/etc/udev/rules.d/70-persistent-net.rules"
    assert debugfs_exists(disk1, p1[0].start_mb, backup)
    assert hydrate(disk0, disk1).report["changes"] == []


def test_linux_and_windows_disks_prefers_linux_with_a_warning(tmp_path: Path, hydrate: Any) -> None:
    from tests.hydration.windows_images import WindowsSpec, build_windows_disk

    layout = single_root(tmp_path, GuestSpec("debian", "12.5"))
    win = build_windows_disk(tmp_path, WindowsSpec("2019", "Windows Server 2019", "10.0", 17763))
    result = hydrate(layout.disk, win.disk)
    assert result.report["os"]["family"] == "linux"
    assert any("both Linux and Windows" in w for w in result.report["warnings"])
