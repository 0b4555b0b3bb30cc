"""Windows hydration on synthetic OS disks; results read back with ntfscat and regipy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from regipy.registry import RegistryHive

from tests.hydration.conftest import image_digest
from tests.hydration.windows_images import (
    WindowsDisk,
    WindowsSpec,
    build_windows_disk,
    extract_partition,
    ntfscat,
    set_ntfs_dirty,
)

pytestmark = [pytest.mark.root]

SUPPORTED = [
    WindowsSpec(
        "2008",
        "Windows Server (R) 2008 Standard",
        "6.0",
        6002,
        missing_driver_files=("storvsc", "vmbus", "storflt"),
    ),
    WindowsSpec("2008r2", "Windows Server 2008 R2 Standard", "6.1", 7601),
    WindowsSpec("2012", "Windows Server 2012 Datacenter", "6.2", 9200, scheme="gpt"),
    WindowsSpec("2012r2", "Windows Server 2012 R2 Datacenter", "6.3", 9600, current_control_set=2),
    WindowsSpec("2016", "Windows Server 2016 Datacenter", "10.0", 14393, scheme="gpt"),
    WindowsSpec("2019", "Windows Server 2019 Datacenter", "10.0", 17763, missing_service_keys=("intelide",)),
    WindowsSpec("2022", "Windows Server 2022 Datacenter", "10.0", 20348, scheme="gpt", agent_installed=True),
    WindowsSpec("2025", "Windows Server 2025 Datacenter", "10.0", 26100, vmware_tools=False),
]


def _hive(disk: WindowsDisk, tmp: Path, name: str = "SYSTEM") -> RegistryHive:
    vol = extract_partition(disk, tmp / "os-volume.img")
    out = ntfscat(vol, f"Windows/System32/config/{name}", tmp / f"{name}.out")
    assert out is not None
    return RegistryHive(str(out))


def _values(hive: RegistryHive, key: str) -> dict[str, Any]:
    return {v.name: v.value for v in hive.get_key(key).iter_values()}


@pytest.mark.parametrize("spec", SUPPORTED, ids=[s.name for s in SUPPORTED])
def test_prepares_windows_and_second_run_changes_nothing(
    spec: WindowsSpec, tmp_path: Path, hydrate: Any
) -> None:
    payload = tmp_path / "payload"
    if spec.name == "2025":
        payload.mkdir()
        (payload / "WindowsAzureVmAgent.2.7.41491.1102_2305250600.fre.msi").write_bytes(b"MSI test payload")
    disk = build_windows_disk(tmp_path, spec)
    first = hydrate(disk.disk, args=("--os-hint", "windows"))
    rep = first.report
    assert rep["status"] == "succeeded"
    assert rep["os"]["family"] == "windows"
    assert rep["os"]["support"].startswith("automatic")
    assert rep["os"]["version"].endswith(str(spec.build))
    cs = f"ControlSet{spec.current_control_set:03d}"
    assert rep["os"]["control_set"] == cs

    hive = _hive(disk, tmp_path)
    services = f"\\{cs}\\Services"
    for drv in ("intelide", "atapi", "storflt", "storvsc", "vmbus"):
        if drv in spec.missing_driver_files:
            assert _values(hive, f"{services}\\{drv}")["Start"] == 3  # not boot-started without its file
            assert any(f"{drv}.sys is missing" in w for w in rep["warnings"])
            continue
        vals = _values(hive, f"{services}\\{drv}")
        assert vals["Start"] == 0, drv
        assert vals["Type"] == 1
        assert vals["ImagePath"].lower() == f"system32\\drivers\\{drv}.sys"
    assert _values(hive, f"{services}\\partmgr\\Parameters")["SanPolicy"] == 1
    assert _values(hive, f"{services}\\Dhcp")["Start"] == 2
    if spec.vmware_tools:
        assert _values(hive, f"{services}\\VMTools")["Start"] == 4
    else:
        assert first.step("disable_vmware_tools")["status"] == "unchanged"
    other = "ControlSet001" if spec.current_control_set != 1 else "ControlSet002"
    assert _values(hive, f"\\{other}\\Services\\atapi")["Start"] == 3  # only Select\Current's set changes

    vol = tmp_path / "os-volume.img"
    firstboot = ntfscat(vol, "Windows/AzureMigrate/firstboot.cmd", tmp_path / "fb.cmd")
    agent_step = first.step("stage_azure_vm_agent")
    if spec.version == "6.0":
        assert agent_step["status"] == "skipped" and "2008 R2" in agent_step["message"]
        assert firstboot is None
    elif spec.agent_installed:
        assert agent_step["status"] == "unchanged"
        assert firstboot is None
    else:
        assert firstboot is not None and b"msiexec.exe /i" in firstboot.read_bytes()
        svc = _values(hive, f"{services}\\AzureMigrateFirstBoot")
        assert svc["Start"] == 2 and svc["Type"] == 0x10 and "firstboot.cmd" in svc["ImagePath"]
        msi = ntfscat(vol, "Windows/AzureMigrate/WindowsAzureVmAgent.msi", tmp_path / "agent.msi")
        if spec.name == "2025":
            assert msi is not None and msi.read_bytes() == b"MSI test payload"
        else:
            assert msi is None and any("downloads it" in w for w in rep["warnings"])
    backup = ntfscat(vol, "Windows/AzureMigrate/backup/SYSTEM", tmp_path / "SYSTEM.bak")
    assert backup is not None
    assert _values(RegistryHive(str(backup)), f"{services}\\Dhcp")["Start"] == 4  # the original

    second = hydrate(disk.disk)
    assert second.report["os"]["family"] == "windows"
    assert second.report["changes"] == []


@pytest.mark.parametrize(
    "spec",
    [
        WindowsSpec("win10", "Windows 10 Pro", "10.0", 19045, installation_type="Client"),
        WindowsSpec("2003", "Microsoft Windows Server 2003", "5.2", 3790),
    ],
    ids=["windows10-client", "server2003"],
)
def test_unsupported_windows_is_manual_and_untouched(spec: WindowsSpec, tmp_path: Path, hydrate: Any) -> None:
    disk = build_windows_disk(tmp_path, spec)
    before = image_digest(disk.disk)
    result = hydrate(disk.disk, expect_rc=3)
    assert result.report["status"] == "manual_preparation_required"
    assert image_digest(disk.disk) == before
    manual = "\n".join(result.report["manual_steps"])
    assert "SanPolicy" in manual and "Dhcp\\Start" in manual and "vmbus\\Start" in manual


def test_fast_startup_hibernation_is_refused(tmp_path: Path, hydrate: Any) -> None:
    spec = WindowsSpec("2016", "Windows Server 2016 Datacenter", "10.0", 14393)
    disk = build_windows_disk(tmp_path, spec, hiberfil=b"HIBR" + b"\0" * 4092)
    before = image_digest(disk.disk)
    result = hydrate(disk.disk, expect_rc=1)
    assert "Fast Startup" in result.report["errors"][0]
    assert result.report["os"]["release"] == "Windows Server 2016"
    assert "powercfg /h off" in result.stdout
    assert image_digest(disk.disk) == before


def test_dirty_volume_is_refused(tmp_path: Path, hydrate: Any) -> None:
    spec = WindowsSpec("2012r2", "Windows Server 2012 R2 Datacenter", "6.3", 9600)
    disk = build_windows_disk(tmp_path, spec)
    set_ntfs_dirty(disk)
    result = hydrate(disk.disk, expect_rc=1)
    assert "marked dirty" in result.report["errors"][0]
    assert result.step("check_volume_state")["status"] == "failed"


def test_no_windows_on_disk_fails_clearly(tmp_path: Path, hydrate: Any) -> None:
    from tests.hydration.images import Part, build_disk

    disk = tmp_path / "data.img"
    build_disk(str(disk), "mbr", [Part(24, "ntfs", {"/data/file.txt": "x"}, kind="ntfs")])
    result = hydrate(disk, args=("--os-hint", "windows"), expect_rc=1)
    assert "no partition holds Windows\\System32\\config\\SYSTEM" in result.report["errors"][0]
    assert "wrong OS disk" in result.report["errors"][0]


def test_windows_dry_run_changes_nothing(tmp_path: Path, hydrate: Any) -> None:
    disk = build_windows_disk(tmp_path, WindowsSpec("2016", "Windows Server 2016 Standard", "10.0", 14393))
    before = image_digest(disk.disk)
    result = hydrate(disk.disk, args=("--dry-run",))
    assert image_digest(disk.disk) == before
    statuses = {s["name"]: s["status"] for s in result.report["steps"]}
    assert statuses["ensure_boot_drivers"] == "would_change"
    assert statuses["set_san_policy_online_all"] == "would_change"
    targets = [c["target"] for c in result.report["changes"]]
    assert "HKLM\\SYSTEM\\ControlSet001\\Services\\vmbus\\Start" in targets


def test_linux_hint_on_a_windows_disk_fails_clearly(tmp_path: Path, hydrate: Any) -> None:
    disk = build_windows_disk(tmp_path, WindowsSpec("2016", "Windows Server 2016 Standard", "10.0", 14393))
    result = hydrate(disk.disk, args=("--os-hint", "linux"), expect_rc=1)
    assert "no partition holds etc/fstab" in result.report["errors"][0]
