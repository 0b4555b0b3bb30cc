"""The errors of a push installation of the Mobility service (job InstallMobilityService), as data.

Digit codes are Site Recovery's published push-installation error ids ("Troubleshoot Mobility Service
push installation issues"), kept as it publishes them; the second id of a pair it documents together
(95106, 97118) is an alias. MCP-55xx are the installer's VSS provider exit codes (Site Recovery
documents them by exit code, without an id), MCP-5599 any other VSS exit code, MCP-50xx conditions the
control plane or the appliance detects that Site Recovery publishes no id for, MCP-5999 an installer
exit code nobody documents, kept verbatim with the installer's log.

A push installation that fails leaves nothing installed: the appliance removes what it copied and
whatever the installer had written before it failed, so every recommendation ends with "push again".
"""

from __future__ import annotations

from shared.domain.event import Severity
from shared.domain.health import ClearedBy
from shared.health.catalog.models import CatalogEntry, EventType, Origin, Scope

_TROUBLESHOOTING = "https://learn.microsoft.com/azure/site-recovery/vmware-azure-troubleshoot-push-install"

_PLACEHOLDERS = {
    "step": "the InstallMobilityService step that failed",
    "server": "the source server's address as the appliance reached it",
    "reason": "what the appliance or the installer reported",
}

_LEFT_NOTHING = (
    "Nothing is left half-installed: the appliance removed the copied installer and anything the installer "
    "had written. Once the cause is fixed, push again (POST /api/machines/<id>/mobility/install)."
)

_SSHD_PASSWORD_AND_SFTP = (
    "On the server, as root, edit /etc/ssh/sshd_config: uncomment PasswordAuthentication and set it to yes "
    "(or give the credential a key), uncomment the Subsystem sftp line, then restart sshd "
    "(`systemctl restart sshd`)."
)

_VSS_MANUAL = (
    "Install the VSS provider by hand on the server, in an elevated command prompt: "
    '"C:\\Program Files (x86)\\Microsoft Azure Site Recovery\\agent\\InMageVSSProvider_Install.cmd".'
)
_VSS_LOG = (
    "The installer's log names the exact error: C:\\ProgramData\\ASRSetupLogs\\ASRUnifiedAgentInstaller.log "
    "({logPath})."
)
_VSS_RULE = (
    "From agent 9.23 a VSS provider failure leaves the installation in Warning: the agent is installed and "
    "crash-consistent recovery points work, app-consistent ones do not until the provider is installed. "
    "Up to 9.22 it fails the installation, and nothing is left installed."
)
_VSS_PLACEHOLDERS = {
    **_PLACEHOLDERS,
    "exitCode": "the installer's exit code",
    "logPath": "the installer's log on the server",
}


def _push(
    code: str,
    name: str,
    title: str,
    action: str,
    causes: tuple[str, ...],
    recommendations: tuple[str, ...],
    *,
    anchor: str,
    aliases: tuple[str, ...] = (),
    severity: Severity = Severity.CRITICAL,
    retryable: bool = False,
    origin: Origin = Origin.APPLIANCE,
    placeholders: dict[str, str] | None = None,
    template: str = "Mobility service push installation on {server} failed at step '{step}': {reason}",
) -> CatalogEntry:
    return CatalogEntry(
        code=code,
        name=name,
        aliases=aliases,
        title=title,
        action=action,
        origin=origin,
        template=template,
        placeholders=placeholders or _PLACEHOLDERS,
        causes=causes,
        recommendations=recommendations,
        references=(f"{_TROUBLESHOOTING}{anchor}",) if anchor else (),
        severity=severity,
        retryable=retryable,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.MOBILITY_INSTALL_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    )


def _vss(exit_code: int, name: str, title: str, cause: str, fix: str) -> CatalogEntry:
    return _push(
        f"MCP-5{exit_code}",
        name,
        title,
        "Install the VSS provider by hand (InMageVSSProvider_Install.cmd); see the installer log.",
        (cause, _VSS_RULE),
        (fix, _VSS_MANUAL, _VSS_LOG),
        anchor="#vss-installation-failures",
        aliases=(f"VssExit{exit_code}",),
        severity=Severity.WARNING,
        placeholders=_VSS_PLACEHOLDERS,
        template="The VSS provider installation on {server} failed with exit code {exitCode}: {reason}",
    )


PUSH_INSTALL_ENTRIES: tuple[CatalogEntry, ...] = (
    _push(
        "95107",
        "PushWindowsCredentialsNotAdministrator",
        "The account given for the push installation is not an administrator of the Windows server",
        "Give an account with local or domain administrator rights; allow remote local accounts.",
        (
            "The push installation signs in to the Windows server with the credential named in the request; "
            "the account is wrong, or it has no administrator rights there (local or domain).",
            "A local (non-domain) administrator is filtered by Remote User Account Control when it signs in "
            "over the network, so it arrives without its administrator rights.",
        ),
        (
            "Check the user name and password stored under the credential's name, and that the account is "
            "in the server's local Administrators group (or a domain administrator).",
            "For a local account, allow remote administration in an elevated command prompt on the server: "
            "`REG ADD HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System "
            "/v LocalAccountTokenFilterPolicy /t REG_DWORD /d 1`.",
            _LEFT_NOTHING,
        ),
        anchor="#credentials-check-errorid-95107--95108",
    ),
    _push(
        "95108",
        "PushLinuxCredentialsNotRoot",
        "The account given for the push installation cannot sign in as root on the Linux server",
        "Store the root account's credential (password or key) and enable SFTP in sshd.",
        (
            "The push installation needs the root account of a Linux server: the user name or password "
            "stored under the credential's name is wrong, or the account is not root.",
            "sshd refuses password authentication, or its SFTP subsystem is not enabled, so the installer "
            "cannot be copied.",
        ),
        (
            "Store the root account's user name and password (or private key) under the credential's name.",
            _SSHD_PASSWORD_AND_SFTP,
            _LEFT_NOTHING,
        ),
        anchor="#credentials-check-errorid-95107--95108",
    ),
    _push(
        "95117",
        "PushServerNotReachable",
        "The appliance cannot reach the source server to push the Mobility service",
        "Check the network path from the appliance to the server (SSH 22 / SMB, WMI) and retry.",
        (
            "The appliance could not connect to the server {server}: it is off, its address is wrong, a "
            "firewall blocks the port (SSH, port 22, for Linux; SMB and WMI for Windows), the connection "
            "timed out, or the name does not resolve.",
        ),
        (
            "From the appliance, check that the server answers: `ping {server}`, and for Linux "
            "`ssh root@{server}` (port 22).",
            "On a Linux server check that openssh-server is installed and sshd runs on port 22 "
            "(`systemctl status sshd`), and that the SFTP subsystem is enabled. " + _SSHD_PASSWORD_AND_SFTP,
            "Check DNS resolution of the server's name and any firewall between the appliance and the server.",
            _LEFT_NOTHING,
        ),
        anchor="#connectivity-failure-errorid-95117--97118",
        aliases=("97118",),
        retryable=True,
    ),
    _push(
        "95103",
        "PushWmiNotEnabled",
        "Windows Management Instrumentation is blocked on the source server",
        "Allow WMI through the server's firewall for the domain, private and public profiles.",
        (
            "The push installation runs the installer remotely through WMI, and the server's firewall "
            "blocks Windows Management Instrumentation.",
        ),
        (
            "On the server, in an elevated command prompt: `netsh advfirewall firewall set rule "
            'group="windows management instrumentation (wmi)" new enable=yes`.',
            _LEFT_NOTHING,
        ),
        anchor="#windows-management-instrumentation-wmi-configuration-check-error-code-95103",
    ),
    _push(
        "95105",
        "PushFileSharingNotEnabled",
        "File and printer sharing is off on the source server",
        "Enable File and Printer Sharing (SMB-In, NB-Session-In) in the server's firewall.",
        (
            "The installer is copied to a Windows server over file sharing, and File and Printer Sharing is "
            "disabled in its firewall or by group policy.",
        ),
        (
            "In Windows Firewall with Advanced Security, Inbound Rules, enable File and Printer Sharing "
            "(NB-Session-In) and File and Printer Sharing (SMB-In).",
            "If a group policy prevents sharing (Network Sharing: Prevent users from sharing files within "
            "their profile), set it to Disabled.",
            _LEFT_NOTHING,
        ),
        anchor="#file-and-printer-sharing-services-check-errorid-95105--95106",
        aliases=("95106",),
    ),
    _push(
        "95309",
        "BootAndSystemOnDifferentDisks",
        "The boot and system partitions are on different disks",
        "Push installer 9.20 or later: it supports this layout.",
        ("Before agent 9.20, boot and system partitions on different disks could not be protected.",),
        ("Upload installer 9.20 or later to the catalog and push again.", _LEFT_NOTHING),
        anchor="#boot-and-system-partitions--volumes-are-not-the-same-disk-errorid-95309",
    ),
    _push(
        "95310",
        "BootDiskNotAvailable",
        "The source server has no boot disk",
        "Attach the server's boot disk; a server without one cannot be protected.",
        (
            "The server has no boot disk the agent can find: it would not start after a failover, so it "
            "cannot be protected.",
        ),
        ("Make sure the server has exactly one boot disk, then push again.", _LEFT_NOTHING),
        anchor="#the-boot-disk-is-not-available-errorid-95310",
    ),
    _push(
        "95311",
        "MultipleBootDisks",
        "The source server has several boot disks",
        "Leave one boot disk on the server; several are not supported.",
        ("The server has more than one boot disk, a configuration Site Recovery does not protect.",),
        ("Remove the boot flag from all disks but one, then push again.", _LEFT_NOTHING),
        anchor="#multiple-boot-disks-present-on-the-source-machine-errorid-95311",
    ),
    _push(
        "95313",
        "SystemPartitionOnMultipleDisks",
        "The root partition or volume spans several disks",
        "Push installer 9.20 or later: it supports a root volume on several disks.",
        ("Before agent 9.20, a root partition or volume laid over several disks could not be protected.",),
        ("Upload installer 9.20 or later to the catalog and push again.", _LEFT_NOTHING),
        anchor="#system-partition-on-multiple-disks-errorid-95313",
    ),
    _push(
        "95320",
        "GrubUsesDeviceNames",
        "GRUB names the root or resume device by its device name instead of its UUID",
        "Replace root=/dev/... and resume=/dev/... in GRUB's files by root=UUID=... (blkid).",
        (
            "A GRUB file on the server (/boot/grub/menu.lst, /boot/grub/grub.cfg, /boot/grub2/grub.cfg or "
            "/etc/default/grub) gives root= or resume= as a device name (such as /dev/sda2): device names "
            "can change when the machine starts in Azure, so it might not boot after a failover. {reason}",
        ),
        (
            "Find each device's UUID with `blkid <device>` (e.g. `blkid /dev/sda2`).",
            "In each file named above replace the device name with its UUID, as root=UUID=<uuid> and "
            "resume=UUID=<uuid>, then regenerate the GRUB configuration (`update-grub` or "
            "`grub2-mkconfig -o /boot/grub2/grub.cfg`).",
            _LEFT_NOTHING,
        ),
        anchor="#enable-protection-failed-as-device-name-mentioned-in-the-grub-configuration-instead-of-uuid-errorid-95320",
    ),
    _push(
        "95524",
        "InstallLocationTooSmall",
        "Less than 100 MB is free where the Mobility service is copied and installed",
        "Free at least 100 MB at the install location (or choose another) and push again.",
        (
            "Copying and installing the agent needs at least 100 MB free at the install location; the "
            "server has less there. {reason}",
        ),
        (
            "On the server, check the free space with `df -h <install location>` (Windows: the drive's "
            "properties) and free at least 100 MB, or give another installLocation in the request.",
            _LEFT_NOTHING,
        ),
        anchor="#insufficient-space-errorid-95524",
    ),
    _push(
        "95265",
        "InstallCompletedRebootRequired",
        "The Mobility service was installed; a reboot loads its new filter driver",
        "Reboot the server in a maintenance window to load the new filter driver.",
        (
            "The agent's filter driver is loaded only when the server starts: until it restarts, the old "
            "driver keeps working and replication goes on with the agent's other fixes.",
        ),
        ("Reboot the server when convenient; replication goes on meanwhile. The installation is complete.",),
        anchor="#install-mobility-service-completed-with-warning-to-reboot-errorid-95265--95266",
        severity=Severity.WARNING,
        template="The Mobility service on {server} was installed; restart the server to load the new "
        "filter driver ({reason})",
    ),
    _push(
        "95266",
        "UpdateCompletedRebootRequired",
        "The Mobility service was updated; a reboot loads its new filter driver",
        "Reboot the server in a maintenance window to load the new filter driver.",
        (
            "The updated agent's filter driver is loaded only when the server starts: until it restarts, "
            "the old driver keeps working; the update's other fixes already apply.",
        ),
        ("Reboot the server when convenient; replication goes on meanwhile. The update is complete.",),
        anchor="#install-mobility-service-completed-with-warning-to-reboot-errorid-95265--95266",
        severity=Severity.WARNING,
        template="The Mobility service on {server} was updated; restart the server to load the new filter "
        "driver ({reason})",
    ),
    _vss(
        511,
        "VssProviderRegistrationBlocked",
        "The VSS provider could not be registered (exit code 511)",
        "Error -2147023170 [0x800706BE]: anti-virus software blocks Site Recovery's operations; error 7 "
        "[0x7]: not enough memory or disk space to install the provider.",
        "Exclude Site Recovery's folders from the anti-virus program and unblock its DLL registration; make "
        "sure the server has enough free memory and disk space.",
    ),
    _vss(
        512,
        "VssProviderServiceDatabaseLocked",
        "The service database was locked while the VSS provider was installed (exit code 512)",
        "Error -2147023841 [0x8007041F]: the service control manager's database is locked, usually by a "
        "service stuck in the Starting state.",
        "Make sure no service is stuck in Starting (an anti-virus program often is), then install the "
        "provider by hand.",
    ),
    _vss(
        517,
        "VssProviderServiceMarkedForDeletion",
        "The VSS provider service is marked for deletion (exit code 517)",
        "Error -2147023824 [0x80070430]: the Azure Site Recovery VSS Provider service is marked for "
        "deletion and cannot be installed again until the server restarts or the service is released.",
        "Close the Services console and any tool holding the service, or restart the server.",
    ),
    _vss(
        802,
        "VssProviderDcomFailure",
        "COM+ could not register the VSS provider (exit code 802)",
        "Error -2147164145 [0x8004E00F]: DCOM or COM+ is in a critical state (COM+ could not talk to the "
        "Distributed Transaction Coordinator), for example cluster components enabled on a machine that is "
        "not a cluster node.",
        "Have the DCOM issue fixed (on a machine that is not a cluster node, remove the cluster components), "
        "then install the provider by hand.",
    ),
    _vss(
        806,
        "VssProviderScriptNotPermitted",
        "The installing account may not run CScript (exit code 806)",
        "The account used for the installation has no permission to run the CScript command the provider's "
        "installation uses.",
        "Give the account permission to run cscript.exe, then install the provider by hand.",
    ),
    _push(
        "MCP-5599",
        "VssProviderInstallFailed",
        "The VSS provider installation failed with an exit code Site Recovery does not document",
        "Install the VSS provider by hand (InMageVSSProvider_Install.cmd); see the installer log.",
        ("The VSS provider's installation script exited with code {exitCode}.", _VSS_RULE),
        (_VSS_MANUAL, _VSS_LOG),
        anchor="#other-vss-errors",
        severity=Severity.WARNING,
        placeholders=_VSS_PLACEHOLDERS,
        template="The VSS provider installation on {server} failed with exit code {exitCode}: {reason}",
    ),
    _push(
        "MCP-5001",
        "PushCredentialNotFound",
        "The credential named for the push installation does not exist",
        "Store the server's account under that name in the appliance's secret store, or name another.",
        (
            "The request names a credential (a secret's name) the appliance's secret store does not hold, "
            "or the secret is not a user name with a password or key.",
        ),
        (
            "Store the server's administrator (Windows) or root (Linux) account under the name given in "
            "credentialName: a JSON object with username and password (or privateKey).",
            _LEFT_NOTHING,
        ),
        anchor="",
    ),
    _push(
        "MCP-5002",
        "PushNotEnoughMemory",
        "The source server has too little memory for the Mobility service",
        "Free memory on the server (or add some) and push again.",
        (
            "The agent needs memory to run beside the server's workload; the server has less available. {reason}",
        ),
        (
            "Check `free -m` on the server; stop what holds memory or add memory, then push again.",
            _LEFT_NOTHING,
        ),
        anchor="",
    ),
    _push(
        "MCP-5003",
        "PushApplianceDidNotAnswer",
        "The appliance did not carry out the push installation in time",
        "Check that the appliance is running and polls the control plane; push again.",
        (
            "The appliance that discovered the machine did not acknowledge the push command within the "
            "wait: it is off, cannot reach the control plane, or runs a version without push installation.",
        ),
        (
            "Check the appliance's heartbeat (GET /api/appliances) and its service; update it if it is old.",
            _LEFT_NOTHING,
        ),
        anchor="",
        origin=Origin.CONTROL_PLANE,
        retryable=True,
    ),
    _push(
        "MCP-5004",
        "PushAgentRegistrationFailed",
        "The installed agent could not register with the control plane",
        "Check the server's outbound HTTPS to the control plane and the registration passphrase.",
        (
            "UnifiedAgentConfigurator could not register the agent: the server cannot reach the control "
            "plane over HTTPS, or no registration passphrase is set (POST /api/mobility/passphrase).",
        ),
        (
            "From the server, check `curl -sS https://<control plane>/api/liveness`; set the passphrase "
            "if none exists.",
            _LEFT_NOTHING,
        ),
        anchor="",
    ),
    _push(
        "MCP-5005",
        "PushWindowsNotSupported",
        "The appliance cannot push the Mobility service to a Windows server",
        "Install the agent on the Windows server by hand (GET .../mobility/install-command).",
        (
            "Pushing to Windows needs file sharing and WMI from the appliance; this appliance pushes only to "
            "Linux servers, over SSH and SFTP.",
        ),
        (
            "Get the commands with GET /api/machines/<id>/mobility/install-command and run them on the server "
            "in an elevated command prompt; the agent then registers with the passphrase.",
        ),
        anchor="",
    ),
    _push(
        "MCP-5999",
        "InstallerExitCodeUnknown",
        "The Mobility service installer failed with an exit code nobody documents",
        "Read the installer's log on the server (its path is in the message) and push again.",
        (
            "The installer exited with code {exitCode}, which neither Site Recovery nor this catalog "
            "documents; the code and the log's path are kept as reported.",
        ),
        (
            "Read the installer's log {logPath} on the server for the failing component.",
            _LEFT_NOTHING,
            "If it fails the same way again, keep the job (GET /api/jobs/<id>) and the log and report them.",
        ),
        anchor="",
        placeholders=_VSS_PLACEHOLDERS,
        template="The Mobility service installer on {server} exited with code {exitCode} at step '{step}' "
        "(log: {logPath}): {reason}",
    ),
)
