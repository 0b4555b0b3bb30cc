"""One function per step of Azure's preparation of a machine for migration (Windows), each on the offline SYSTEM hive."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from hydration.guest import GuestFS
from hydration.report import Change
from hydration.scan import find_ci
from hydration.steps import StepSkipped
from hydration.support import WindowsRelease
from hydration.windows.hive import (
    REG_DWORD,
    REG_EXPAND_SZ,
    REG_SZ,
    Hive,
    encode_dword,
    encode_string,
    show,
)

BOOT_START = 0
AUTO_START = 2
DISABLED = 4
SAN_ONLINE_ALL = 1
SERVICE_KERNEL_DRIVER = 1
SERVICE_WIN32_OWN_PROCESS = 0x10
FIRSTBOOT_SERVICE = "AzureMigrateFirstBoot"
STAGING_DIR = "AzureMigrate"  # under %SystemRoot%
AGENT_MSI = "WindowsAzureVmAgent.msi"
AGENT_URL = "https://go.microsoft.com/fwlink/?LinkID=394789"


@dataclass(frozen=True)
class Driver:
    name: str
    group: str
    display: str


# Seed: IntelIde.sys, Atapi, Storflt, Storvsc, VMbus must be present and boot-start.
BOOT_DRIVERS = (
    Driver("intelide", "System Bus Extender", "Intel(R) IDE controller driver"),
    Driver("atapi", "SCSI miniport", "IDE Channel"),
    Driver("storflt", "Boot Bus Extender", "Microsoft Hyper-V Storage Accelerator"),
    Driver("storvsc", "SCSI miniport", "Microsoft Hyper-V Storage Controller"),
    Driver("vmbus", "System Bus Extender", "Microsoft Hyper-V Virtual Machine Bus"),
)


@dataclass
class WindowsContext:
    hive: Hive
    control_set: str
    windows_dir: str  # host path of the guest's Windows directory
    fs: GuestFS  # rooted at the volume, for staged files
    windows_rel: str  # "/Windows" as spelled on this volume
    release: WindowsRelease
    version: tuple[int, int]
    dry_run: bool
    warn: Callable[[str], None]
    payload_dir: str
    changes_by_step: dict[str, list[Change]] = field(default_factory=dict)

    def services(self) -> str:
        return f"{self.control_set}\\Services"

    def set_dword(self, step: str, key: str, name: str, value: int, note: str = "") -> Change:
        target = f"HKLM\\SYSTEM\\{key}\\{name}"
        current = self.hive.value(key, name)
        before = show(*current) if current else None
        after = show(REG_DWORD, encode_dword(value))
        if current is not None and current[0] == REG_DWORD and current[1][:4] == encode_dword(value):
            return Change(step, target, False, before, before, note=note)
        if not self.dry_run:
            self.hive.set_value(key, name, REG_DWORD, encode_dword(value))
        return Change(step, target, True, before, after, note=note)

    def set_string(self, step: str, key: str, name: str, value: str, vtype: int = REG_SZ) -> Change:
        target = f"HKLM\\SYSTEM\\{key}\\{name}"
        current = self.hive.value(key, name)
        before = show(*current) if current else None
        data = encode_string(value)
        if current is not None and current[0] == vtype and current[1].rstrip(b"\0") == data.rstrip(b"\0"):
            return Change(step, target, False, before, before)
        if not self.dry_run:
            self.hive.set_value(key, name, vtype, data)
        return Change(step, target, True, before, show(vtype, data))

    def driver_file(self, name: str) -> str | None:
        return find_ci(self.windows_dir, ("System32", "drivers", f"{name}.sys"))


def ensure_boot_drivers(ctx: WindowsContext) -> list[Change]:
    step = "ensure_boot_drivers"
    changes: list[Change] = []
    for drv in BOOT_DRIVERS:
        key = f"{ctx.services()}\\{drv.name}"
        exists = ctx.hive.node(key) is not None
        if ctx.driver_file(drv.name) is None:
            # Boot-starting a driver whose file is missing would stop the boot (or be ignored at best).
            ctx.warn(
                f"{drv.name}.sys is missing from System32\\drivers: install the Hyper-V Integration "
                "Services in the source VM (Windows Server 2008) and replicate again"
            )
            continue
        if not exists:
            changes.append(ctx.set_dword(step, key, "Type", SERVICE_KERNEL_DRIVER, "service key created"))
            changes.append(ctx.set_dword(step, key, "ErrorControl", 1))
            changes.append(
                ctx.set_string(step, key, "ImagePath", f"System32\\drivers\\{drv.name}.sys", REG_EXPAND_SZ)
            )
            changes.append(ctx.set_string(step, key, "Group", drv.group))
            changes.append(ctx.set_string(step, key, "DisplayName", drv.display))
        changes.append(ctx.set_dword(step, key, "Start", BOOT_START, "boot start"))
    return changes


def set_san_policy_online_all(ctx: WindowsContext) -> list[Change]:
    key = f"{ctx.services()}\\partmgr\\Parameters"
    return [
        ctx.set_dword(
            "set_san_policy_online_all",
            key,
            "SanPolicy",
            SAN_ONLINE_ALL,
            "OnlineAll keeps the drive letters; Azure's temporary disk takes the next free one",
        )
    ]


def set_dhcp_automatic(ctx: WindowsContext) -> list[Change]:
    key = f"{ctx.services()}\\Dhcp"
    if ctx.hive.node(key) is None:
        ctx.warn("the DHCP Client service (Dhcp) is missing from the registry: the VM may get no IP address")
        return []
    return [ctx.set_dword("set_dhcp_automatic", key, "Start", AUTO_START, "Automatic")]


def disable_vmware_tools(ctx: WindowsContext) -> list[Change]:
    services = ctx.services()
    names = [
        n
        for n in ctx.hive.children(services)
        if n.lower() == "vmtools"
        or (ctx.hive.string(f"{services}\\{n}", "DisplayName") or "") == "VMware Tools"
    ]
    if not names:
        return [Change("disable_vmware_tools", "VMware Tools", False, "not installed", "not installed")]
    return [
        ctx.set_dword("disable_vmware_tools", f"{services}\\{n}", "Start", DISABLED, "Disabled")
        for n in names
    ]


FIRSTBOOT_CMD = rf"""@echo off
rem Staged by the Azure Migrate hydration toolkit: installs the Azure VM agent on the first boot
rem in Azure, then disables itself. Log: %SystemRoot%\{STAGING_DIR}\agent-install.log
set DIR=%SystemRoot%\{STAGING_DIR}
if exist "%DIR%\agent-installed" goto done
if not exist "%DIR%\{AGENT_MSI}" bitsadmin /transfer azagent /download /priority high "{AGENT_URL}" "%DIR%\{AGENT_MSI}"
msiexec.exe /i "%DIR%\{AGENT_MSI}" /quiet /norestart /l*v "%DIR%\agent-install.log"
if %ERRORLEVEL%==0 echo installed> "%DIR%\agent-installed"
:done
sc.exe config {FIRSTBOOT_SERVICE} start= disabled
""".replace("\n", "\r\n")


def stage_azure_vm_agent(ctx: WindowsContext) -> list[Change]:
    step = "stage_azure_vm_agent"
    if ctx.version < (6, 1):
        raise StepSkipped(
            f"{ctx.release.name}: the Azure VM agent is installed automatically only on Windows "
            f"Server 2008 R2 and later; install it by hand ({AGENT_URL})"
        )
    services = ctx.services()
    for installed in ("WindowsAzureGuestAgent", "RdAgent"):
        if ctx.hive.node(f"{services}\\{installed}") is not None:
            return [
                Change(step, "Azure VM agent", False, f"installed ({installed})", f"installed ({installed})")
            ]
    staging = f"{ctx.windows_rel}/{STAGING_DIR}"
    changes: list[Change] = []
    msi = _bundled_msi(ctx.payload_dir)
    if msi is not None:
        with open(msi, "rb") as f:
            changes.append(ctx.fs.write_bytes(step, f"{staging}/{AGENT_MSI}", f.read(), backup=False))
    else:
        ctx.warn(
            f"no {AGENT_MSI} bundled in {ctx.payload_dir}: the first boot downloads it from {AGENT_URL} "
            "(needs outbound internet access in Azure)"
        )
    changes.append(ctx.fs.write_text(step, f"{staging}/firstboot.cmd", FIRSTBOOT_CMD, backup=False))
    key = f"{services}\\{FIRSTBOOT_SERVICE}"
    command = rf'%SystemRoot%\System32\cmd.exe /c start "" /b %SystemRoot%\{STAGING_DIR}\firstboot.cmd'
    changes.append(ctx.set_dword(step, key, "Type", SERVICE_WIN32_OWN_PROCESS))
    changes.append(ctx.set_dword(step, key, "Start", AUTO_START))
    changes.append(ctx.set_dword(step, key, "ErrorControl", 0))
    changes.append(ctx.set_string(step, key, "ImagePath", command, REG_EXPAND_SZ))
    changes.append(ctx.set_string(step, key, "ObjectName", "LocalSystem"))
    changes.append(
        ctx.set_string(step, key, "DisplayName", "Azure Migrate first boot (installs the Azure VM agent)")
    )
    return changes


def _bundled_msi(payload_dir: str) -> str | None:
    if not os.path.isdir(payload_dir):
        return None
    for name in sorted(os.listdir(payload_dir)):
        if name.lower().endswith(".msi") and "agent" in name.lower():
            return os.path.join(payload_dir, name)
    return None
