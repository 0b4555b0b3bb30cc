"""The error catalog, as data: every error Azure Migrate documents for agentless VMware replication
(its guide "Troubleshooting replication issues in agentless VMware VM migration"), then the control
plane's own, then the failures of a failover to Azure (Site Recovery's published failover errors, whose
ids and meaning are Site Recovery's "Troubleshoot errors when failing over VMware VM or physical
machine to Azure").

Codes (docs/error-catalog.md has the table; `scripts/render_error_catalog.py` writes it):
- Digits only: the products' published error ids, kept as they publish them: Azure Migrate's (1011,
  181008), which the appliance reports, and Site Recovery's failover errors (28031, 28092, 170010),
  which the control plane's failover raises. All-digit codes are reserved for these, so an appliance
  code can never collide with one of ours.
- MCP-1xxx: errors the appliance reports that the guide documents without an id; we match them by
  their fixed message formats. 1001 changed block tracking, 1101-1108 the VMware "An internal error
  occurred. [...]" errors in the guide's order, 1199 any other VMware internal error, 1201-1202 Key Vault.
- MCP-2xxx: uploads the control plane's apply engine rejects (the replica is left unchanged). The
  apply engine's exception codes (CycleDataMissing, ...) are aliases, so `match_domain_error` finds them.
- MCP-3xxx: conditions the control plane detects itself: cycle sequence gap, RPO, appliance silence.
- MCP-4xxx: failover failures Site Recovery publishes no id for (4001: any other failover step).
- Site Recovery's push-installation ids (951xx, 953xx, 95524) and MCP-5xxx, the push installation's
  errors it publishes no id for (VSS exit codes, our own checks): see `push_install.py`.
- MCP-51xx: conditions of an installed Mobility agent the control plane detects (5101: silent agent).
- MCP-9999: anything unrecognised, kept verbatim.
A code, once published, is never reused for a different error.

Message formats are the English product strings, verbatim as the guide prints them, including its
placeholder words such as VMName. Recommendations are ours: each says what to
check, where, and with which command, so an operator can act from the event alone.
"""

from __future__ import annotations

from shared.domain.event import Severity
from shared.domain.health import ClearedBy
from shared.health.catalog.models import (
    CatalogEntry,
    EventType,
    MessageFormat,
    Origin,
    Scope,
)
from shared.health.catalog.push_install import PUSH_INSTALL_ENTRIES

# --- pieces several entries share ---------------------------------------------------------------

# The appliance may wrap a message in the quotes the guide shows (“...”) or prefix the portal's label.
_OPEN_QUOTE = r"""["'\u201c\u2018]"""  # also the typographic quotes the guide prints
_CLOSE_QUOTE = r"""["'\u201d\u2019]"""
# A closing quote is stripped only if an opening one was: "... status code 'Forbidden'" keeps its quote.
# Groups named with a leading underscore are syntax, not placeholders.
_LEAD = r"^(?:Error(?:\s+Message)?\s*:\s*)?(?P<_q>" + _OPEN_QUOTE + r")?\s*"
_TRAIL = r"\s*(?(_q)" + _CLOSE_QUOTE + r")\s*$"

_APPLIANCE_PLACEHOLDERS = {
    "vmName": "the source virtual machine's name",
    "applianceName": "the Azure Migrate appliance replicating the machine",
}

_CHECK_APPLIANCE_UP = (
    "Check that the Azure Migrate appliance {applianceName} is powered on and reachable: sign in to it "
    "with Remote Desktop. If the appliance VM is down, start it in vCenter; replication of every machine "
    "it serves resumes with the next cycle."
)
_CHECK_GATEWAY_SERVICE = (
    "On the appliance, open the Services console (Win+R, services.msc) and check that "
    '"Microsoft Azure Gateway Service" is Running. If it is stopped, start it there, or run '
    "`net start asrgwy` in an elevated Command Prompt or PowerShell."
)
_CHECK_CACHE_STORAGE = (
    "Check that the appliance can write to the storage account it uploads to (in the migration "
    "project's resource group; the cache account is named like migratelsa..., the appliance's own like "
    "migrategwsa...). In the Azure portal, in the same subscription as the account, create a container "
    "(Blob service > Containers > + Container, default access level), then Settings > Shared access "
    "signature, allowed resource type Container, Generate SAS and connection string, and copy the SAS. "
    "On the appliance, download AzCopy and run "
    '`azcopy bench "https://<account>.blob.core.windows.net/<container>?<SAS>"`; alternatively upload '
    "about ten 64 MB blobs with Azure Storage Explorer. If this fails it is a network problem: ask the "
    "network team to allow outbound HTTPS (TCP 443) from the appliance to <account>.blob.core.windows.net "
    "through every firewall and proxy."
)
_CHECK_MESSAGING = (
    "Check that the appliance reaches the service back end it exchanges messages with. For Azure "
    "Migrate's Service Bus: copy the connection string of the Service Bus namespace in the migration "
    "project's resource group, open Service Bus Explorer on the appliance, File > Connect, paste it, then "
    'right-click the topic "Snapshot Manager" > Receive Messages > Peek > OK: "[x] messages received" '
    "means the path works. For this control plane, the appliance posts its events to the Event Grid "
    "topic endpoint (https://<topic>.<region>-1.eventgrid.azure.net/api/events): run "
    "`Test-NetConnection <topic>.<region>-1.eventgrid.azure.net -Port 443` on the appliance. A failure "
    "means outbound TCP 443 is blocked: ask the network team to open it."
)
_CHECK_KEY_VAULT = (
    "Check that the appliance reaches the project's Key Vault (it manages access to the replication "
    "storage account): take the vault URI from the migration project's resource group and run "
    "`Test-NetConnection <vault-name>.vault.azure.net -Port 443` in PowerShell on the appliance. "
    "TcpTestSucceeded must be True; False means a firewall or proxy blocks outbound TCP 443 to the vault."
)

_GATEWAY_STOP = (
    "Stop the gateway service on the appliance first: services.msc > "
    '"Microsoft Azure Gateway Service" > Stop, or `net stop asrgwy`, and wait until it reports that the '
    "service is no longer running."
)
_GATEWAY_START = (
    'Then start it again: services.msc > "Microsoft Azure Gateway Service" > Start, or `net start asrgwy`.'
)

_VMWARE_CYCLE_RETRIED = (
    "After the fix, nothing needs to be restarted in Azure: the appliance retries on its next scheduled "
    "cycle and the error clears when a cycle is applied."
)


def vmware_internal(inner_pattern: str, *examples: str) -> MessageFormat:
    """The appliance's fixed VMware format, "An internal error occurred. [<VMware's message>]", with the
    VMware message captured as {innerMessage}. The guide shows it with and without quotes inside the
    brackets and with and without a final period."""
    pattern = (
        _LEAD
        + r"An\s+internal\s+error\s+occurred\.?\s*\[\s*(?P<_iq>"
        + _OPEN_QUOTE
        + r")?\s*(?P<innerMessage>"
        + inner_pattern
        + r")\s*(?(_iq)"
        + _CLOSE_QUOTE
        + r")\s*\]\s*\.?"
        + _TRAIL
    )
    return MessageFormat(pattern=pattern, examples=examples)


def _key_vault(operation: str, *examples: str) -> MessageFormat:
    return MessageFormat(
        pattern=_LEAD
        + r"Key\s+Vault\s+operation\s+failed\.\s*Operation\s*:\s*"
        + operation
        + r"\s*,\s*Key\s+Vault\s*:\s*(?P<keyVaultName>.+?)\s*,\s*Storage\s+Account\s*:\s*"
        r"(?P<storageAccountName>.+?)\s+failed\s+with\s+the\s+error\s*:?\s*(?P<innerError>.*?)" + _TRAIL,
        examples=examples,
    )


_VMWARE_PLACEHOLDERS = {
    **_APPLIANCE_PLACEHOLDERS,
    "innerMessage": "the VMware API's message, inside the brackets",
}

_VMWARE_CAUSE_GENERIC = (
    "VMware vCenter Server or the ESXi host failed a snapshot operation the appliance asked for (create "
    "the cycle's snapshot, read its changed blocks, delete it, or consolidate the disks); the text in "
    "brackets is VMware's own error."
)

_KEY_VAULT_PLACEHOLDERS = {
    "keyVaultName": "the Key Vault created for the migration project",
    "storageAccountName": "the replication storage account the vault is to manage",
    "innerError": "Key Vault's own error text",
}
_KEY_VAULT_CAUSES = (
    "The signed-in user has no access policy on Key Vault {keyVaultName} with the storage permissions "
    "needed to make storage account {storageAccountName} Key Vault managed and to create SAS definitions "
    "for it (Key Vault error: {innerError}).",
    "The user is a remote principal in the customer's tenant (a CSP subscription used by the partner's "
    "admin account), so the access policy the portal adds when it creates the vault does not apply.",
    "Another user set up replication first and the vault was created then, with an access policy for "
    "that user only; the current user has none.",
)
_KEY_VAULT_RECOMMENDATIONS = (
    "Check the vault's access policies: Azure portal > Key vaults > {keyVaultName} > Access policies, "
    "and look for the user who is enabling replication.",
    "Grant that user the storage permissions, as someone allowed to change the vault's policies, in "
    'Azure PowerShell: `$id = (Get-AzADUser -UserPrincipalName "<user@domain>").Id` then '
    '`Set-AzKeyVaultAccessPolicy -VaultName "{keyVaultName}" -ObjectId $id -PermissionsToStorage '
    "get,list,delete,set,update,regeneratekey,getsas,listsas,deletesas,setsas,recover,backup,restore,purge` "
    "(the AzureRM equivalents are Get-AzureRmADUser and Set-AzureRmKeyVaultAccessPolicy). Then enable "
    "replication again.",
    "CSP subscriptions: do not use the partner's remote account. Delete the key vault, sign out, sign in "
    "with an account of the customer's own Microsoft Entra ID tenant (create one there if the partner "
    "has none) that holds Owner, or Contributor plus User Access Administrator, on the migration "
    "project's resource group, and enable replication again.",
)

# --- failover to Azure ----------------------------------------------------------------------------

_FAILOVER_PLACEHOLDERS = {
    "step": "the failover job's step that failed",
    "reason": "the error as Azure or the control plane reported it",
    "vmName": "the virtual machine the step was creating (the failover settings' vmName)",
}
_FAILOVER_LEFT_NOTHING = (
    "Nothing needs cleaning up: the failover deleted what it had created and replication resumed from "
    "where it was. Once the cause is fixed, run the failover again (POST /api/machines/<id>/failover). "
    "This error clears when replication applies its next cycle; the failed job keeps it."
)
_SITE_RECOVERY_FAILOVER_TROUBLESHOOTING = (
    "https://learn.microsoft.com/azure/site-recovery/site-recovery-failover-to-azure-troubleshoot"
)


# --- reverse protection (reprotect to on-premises) ------------------------------------------------

_REPROTECT_PLACEHOLDERS = {
    "step": "the Reprotect job's step, or 'Reverse cycle'",
    "reason": "the error as the appliance, Azure or the control plane reported it",
}
_PLANNED_PLACEHOLDERS = {
    "step": "the job's step that failed",
    "reason": "the error as the appliance, Azure or the control plane reported it",
}
_REPROTECT_LEFT_NOTHING = (
    "Nothing needs cleaning up: the reprotect ended read access and deleted the snapshots it had taken, "
    "and the machine is FailoverCommitted again, running in Azure. Once the cause is fixed, run the "
    "reprotect again (POST /api/machines/<id>/reprotect)."
)


def _reverse(
    code: str,
    name: str,
    title: str,
    action: str,
    origin: Origin,
    causes: tuple[str, ...],
    recommendations: tuple[str, ...],
    *,
    severity: Severity = Severity.CRITICAL,
    retryable: bool = False,
    placeholders: dict[str, str] | None = None,
    template: str = "Reverse protection failed at step '{step}': {reason}",
) -> CatalogEntry:
    return CatalogEntry(
        code=code,
        name=name,
        title=title,
        action=action,
        origin=origin,
        template=template,
        placeholders=placeholders or _REPROTECT_PLACEHOLDERS,
        causes=causes,
        recommendations=recommendations,
        severity=severity,
        retryable=retryable,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.REPROTECT_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    )


REVERSE_ENTRIES: tuple[CatalogEntry, ...] = (
    _reverse(
        "MCP-1601",
        "ReverseRangeChecksumMismatch",
        "Bytes read from the Azure snapshot did not match their CRC64",
        "Reprotect again; if it repeats, check the appliance's network path to Azure Storage.",
        Origin.APPLIANCE,
        (
            "The appliance read a range of the Azure disk's snapshot whose bytes did not match the CRC64 the "
            "storage service (or the manifest) gave for them, after every read attempt; those ranges were "
            "not written to the on-premises disk.",
        ),
        (
            "The cycle is sent again from the same snapshot; a proxy or network device that alters traffic "
            "to Azure Storage is the usual cause when it repeats.",
            _REPROTECT_LEFT_NOTHING,
        ),
        retryable=True,
    ),
    _reverse(
        "MCP-1602",
        "SnapshotReadFailed",
        "The appliance could not read the Azure snapshot",
        "Check that the appliance reaches Azure Storage over HTTPS; reprotect again.",
        Origin.APPLIANCE,
        (
            "Ranged reads of the Azure disk's snapshot through its read SAS failed: the SAS expired or was "
            "revoked, or the appliance cannot reach the storage endpoint (*.blob.storage.azure.net).",
        ),
        (
            "Allow the appliance outbound HTTPS (443) to *.blob.storage.azure.net and check its proxy.",
            "The cycle is sent again from the same snapshot with a new read SAS.",
            _REPROTECT_LEFT_NOTHING,
        ),
        retryable=True,
    ),
    _reverse(
        "MCP-1603",
        "OnPremisesDiskTooSmall",
        "An on-premises disk is smaller than its Azure disk",
        "Grow the on-premises disk to at least the Azure disk's size, then reprotect again.",
        Origin.APPLIANCE,
        (
            "The Azure disk was resized after the failover, or the on-premises disk was replaced by a "
            "smaller one: the Azure disk's data cannot fit.",
        ),
        (
            "Grow the on-premises disk to at least the size of the Azure disk named in the reason.",
            _REPROTECT_LEFT_NOTHING,
        ),
    ),
    _reverse(
        "MCP-1604",
        "OnPremisesDiskNotFound",
        "The on-premises machine has no disk for an Azure disk",
        "Attach the missing disk to the on-premises machine (or rediscover it), then reprotect again.",
        Origin.APPLIANCE,
        ("The on-premises machine's disk that the Azure disk is written back to was removed or renamed.",),
        (
            "Restore the disk on the on-premises machine so the appliance discovers it again.",
            _REPROTECT_LEFT_NOTHING,
        ),
    ),
    _reverse(
        "MCP-1605",
        "OnPremisesMachineRunning",
        "The on-premises machine is running",
        "Power the on-premises machine off, then reprotect again.",
        Origin.APPLIANCE,
        (
            "Azure's data is written only to a powered-off on-premises machine, and it was running when "
            "the data arrived (it was started again after the reprotect powered it off).",
        ),
        ("Keep the on-premises machine powered off while it is protected back.", _REPROTECT_LEFT_NOTHING),
    ),
    _reverse(
        "MCP-3501",
        "OnPremisesMachineNotFound",
        "The on-premises machine was not found",
        "Check the machine still exists on the appliance's host, then reprotect again.",
        Origin.CONTROL_PLANE,
        (
            "The appliance did not find the on-premises machine to power off or write to: it was deleted, "
            "renamed or moved to a host the appliance does not discover.",
        ),
        ("Restore the machine, or rediscover it with the appliance.", _REPROTECT_LEFT_NOTHING),
    ),
    _reverse(
        "MCP-3502",
        "ApplianceUnreachable",
        "The appliance did not answer",
        "Check the appliance is running and connected (its heartbeat), then reprotect again.",
        Origin.CONTROL_PLANE,
        (
            "The appliance chosen for the reprotect sent no heartbeat recently, is of another kind than the "
            "machine's, or did not answer a command in time.",
        ),
        (
            "Check the appliance's services and its connection to Azure; choose a healthy appliance of the "
            "machine's kind.",
            _REPROTECT_LEFT_NOTHING,
        ),
        retryable=True,
    ),
    _reverse(
        "MCP-3503",
        "ReverseDiffUnavailable",
        "The Azure disk's changes could not be listed; block hashes were compared instead",
        "Nothing to do: the reprotect compared block hashes. Expect a longer initial sync.",
        Origin.CONTROL_PLANE,
        (
            "The failback baseline snapshot is missing or the disk was resized since it, or the appliance "
            "has no change record since the failover point (change tracking was reset): the changed blocks "
            "cannot be known from records.",
        ),
        (
            "No action is needed: the appliance hashed its disk's blocks and only the blocks that differ "
            "were sent. Reading the Azure snapshot to hash it takes longer than a diff.",
        ),
        severity=Severity.WARNING,
        retryable=True,
    ),
    _reverse(
        "MCP-3504",
        "SnapshotLimitReached",
        "An Azure disk has too many snapshots or read grants",
        "Delete the disk's old incremental snapshots you no longer need, then reprotect again.",
        Origin.CONTROL_PLANE,
        (
            "Azure allows 500 incremental snapshots per disk, at most 7 taken per 5 minutes, and read access "
            "to at most 5 snapshots of a disk at a time; other tools' snapshots count too.",
        ),
        ("Delete the disk's snapshots you do not need, or end their read access.", _REPROTECT_LEFT_NOTHING),
        retryable=True,
    ),
    _reverse(
        "MCP-3505",
        "ReverseRpoExceeded",
        "The on-premises copy is older than the reverse cycle interval allows",
        "Check the appliance and its bandwidth to Azure; the next reverse cycle clears it.",
        Origin.CONTROL_PLANE,
        ("Reverse cycles failed or took longer than their interval: the on-premises copy falls behind.",),
        ("Check the appliance's health and its bandwidth to Azure Storage.",),
        severity=Severity.WARNING,
        retryable=True,
    ),
    _reverse(
        "MCP-3506",
        "ReprotectStepFailed",
        "A reprotect step failed",
        "Read the reason, fix it, then reprotect again.",
        Origin.CONTROL_PLANE,
        (
            "A reprotect step failed for a reason the catalog has no other entry for; the reason is shown as reported.",
        ),
        ("Read the reason above and fix what it names.", _REPROTECT_LEFT_NOTHING),
    ),
    CatalogEntry(
        code="MCP-3507",
        name="PlannedFailoverFailed",
        title="A planned failover to on-premises failed and is being cancelled",
        action="Nothing to do now: the cancel runs by itself. Once it has, read the reason and plan the failover again.",
        origin=Origin.CONTROL_PLANE,
        template="Planned failover failed at step '{step}': {reason}. It is cancelled automatically.",
        placeholders=_PLANNED_PLACEHOLDERS,
        causes=(
            "A step of the planned failover to on-premises failed: the appliance did not answer or refused a "
            "command (power, disk copy), Azure refused to stop the VM, or the on-premises VM sent no "
            "heartbeat in time.",
        ),
        recommendations=(
            "Wait for the CancelPlannedFailover job that started by itself: it powers the on-premises VM "
            "off, reverts its disks to the copy taken before power-on, re-attaches them to the appliance, "
            "starts the Azure VM and resumes reverse replication.",
            "Fix the cause the reason names, then run the planned failover again "
            "(POST /api/machines/<id>/planned-failover).",
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.PLANNED_FAILOVER_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-3508",
        name="PlannedFailoverCancelFailed",
        title="Cancelling a planned failover to on-premises failed",
        action="Follow the recommended steps, then run cancel again. Do not disable replication.",
        origin=Origin.CONTROL_PLANE,
        template=(
            "Cancelling the planned failover failed at step '{step}': {reason}. Run cancel again after the "
            "recommended steps; do not disable replication."
        ),
        placeholders=_PLANNED_PLACEHOLDERS,
        causes=(
            "A step of the cancel failed: the appliance did not answer or could not power the on-premises "
            "VM off or revert its disks, or Azure could not start the VM.",
        ),
        recommendations=(
            "Check the appliance is running and connected (its heartbeat), that the on-premises VM can be "
            "powered off on its host, and that the Azure VM can be started (quota, policy).",
            "Then run cancel again (POST /api/machines/<id>/cancel-planned-failover): every step checks what "
            "is already done, so running it again is safe.",
            "Do not disable replication: the reverse snapshots and the disks' copies it keeps are what the "
            "cancel restores the machine from.",
        ),
        severity=Severity.CRITICAL,
        retryable=True,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.PLANNED_FAILOVER_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-3509",
        name="FailbackCommitFailed",
        title="Committing a planned failover to on-premises failed",
        action="Follow the recommended steps, then commit again.",
        origin=Origin.CONTROL_PLANE,
        template="Committing the failback failed at step '{step}': {reason}. {left}",
        placeholders={
            **_PLANNED_PLACEHOLDERS,
            "left": "what the failed commit left, and what may be done now",
        },
        causes=(
            "A step of the commit failed: the replica storage account could not be written or the final "
            "snapshot read, Azure refused to delete the VM, a NIC, a disk or a snapshot (a lock, a policy, "
            "throttling), or the appliance did not delete its copy of the disks.",
        ),
        recommendations=(
            "Read the reason: remove the resource lock or policy that refused the deletion, or check the "
            "appliance's heartbeat.",
            "Then commit again (POST /api/machines/<id>/commit): every step checks what is already done, so "
            "committing again deletes only what is left.",
            "Before anything was deleted the planned failover is as it was: it may also be cancelled "
            "(POST /api/machines/<id>/cancel-planned-failover).",
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.PLANNED_FAILOVER_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-3510",
        name="ForwardReprotectFailed",
        title="Reprotecting a failed-back machine to Azure failed",
        action="Follow the recommended steps, then reprotect again.",
        origin=Origin.CONTROL_PLANE,
        template="Reprotect to Azure failed at step '{step}': {reason}. The machine is on-premises and not protected.",
        placeholders=_PLANNED_PLACEHOLDERS,
        causes=(
            "The appliance chosen is not registered, healthy or of the machine's kind, it did not send the "
            "changes since its pre-power-on copy in time, or the replicas were not brought to the final "
            "snapshots by the commit.",
        ),
        recommendations=(
            "Check the appliance is running and connected (its heartbeat) and that it still has the machine's "
            "change tracking since the planned failover.",
            "Then reprotect again (POST /api/machines/<id>/reprotect): nothing was changed in Azure, and the "
            "replicas still equal the final snapshots.",
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.REPROTECT_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
)


# --- the catalog, in matching order: specific formats before the catch-alls they would also match ---

ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        code="1011",
        name="DiskUploadTimedOut",
        title="A disk's upload did not finish in the expected time",
        action="Check the appliance is up, the gateway service (asrgwy) runs, and it reaches storage, messaging and Key Vault on TCP 443.",
        origin=Origin.APPLIANCE,
        template=(
            "The upload of data for disk {diskPath}, {diskId} of virtual machine {vmName}; {vmId} did not "
            "complete within the expected time."
        ),
        placeholders={
            **_APPLIANCE_PLACEHOLDERS,
            "diskPath": "the source disk's VMDK path, e.g. [datastore1] vm/vm.vmdk",
            "diskId": "the source disk's id",
            "vmId": "the source virtual machine's id (instance UUID)",
        },
        formats=(
            MessageFormat(
                pattern=_LEAD
                + r"The\s+upload\s+of\s+data\s+for\s+disk\s+(?P<diskPath>.+),\s*(?P<diskId>[^,\s]+)\s+of\s+"
                r"virtual\s+machine\s+(?P<vmName>.+);\s*(?P<vmId>[^;\s]+)\s+did\s+not\s+complete\s+within\s+"
                r"the\s+expected\s+time\.?" + _TRAIL,
                examples=(
                    "The upload of data for disk DiskPath, DiskId of virtual machine VMName; VMId did not "
                    "complete within the expected time.",
                ),
            ),
        ),
        causes=(
            "The Azure Migrate appliance is down, so nothing is uploading.",
            'The replication gateway service on the appliance ("Microsoft Azure Gateway Service", asrgwy) '
            "is not running.",
            "The gateway service cannot reach one of the Azure endpoints replication uses: the message "
            "queues (Service Bus / Event Hubs; this control plane's Event Grid topic), the cache storage "
            "account, or the Key Vault.",
            "Replication is progressing too slowly: the gateway service is throttled by vCenter while it "
            "reads the disk, or the upload bandwidth is too small for the disk's changes.",
        ),
        recommendations=(
            _CHECK_APPLIANCE_UP,
            _CHECK_GATEWAY_SERVICE,
            _CHECK_CACHE_STORAGE,
            _CHECK_MESSAGING,
            _CHECK_KEY_VAULT,
            "If every check passes, the upload is slow rather than blocked: look in vCenter for throttled or "
            "queued tasks on the host and datastore of disk {diskPath} and for high datastore latency, and "
            "check the appliance's upload bandwidth limit and threads in the replication policy "
            "(GET /api/appliances/<id>/policy). The cycle is retried on schedule; no repair is needed.",
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        scope=Scope.DISK,
        event_type=EventType.REPLICATION_CYCLE_FAILED_FOR_DISK,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="181008",
        name="DisposeArtefactsTimedOut",
        title="Timed out disposing of the previous cycle's artefacts before a new cycle",
        action="Check the appliance is up, the gateway service (asrgwy) runs, and it reaches storage and messaging on TCP 443.",
        origin=Origin.APPLIANCE,
        template=(
            "VM: {vmName}. Error: Encountered timeout event 'DisposeArtefactsTimeout' in the state {state}."
        ),
        placeholders={
            **_APPLIANCE_PLACEHOLDERS,
            "state": "the gateway state machine's state when the timeout fired",
        },
        formats=(
            MessageFormat(
                pattern=_LEAD + r"VM\s*:\s*(?P<vmName>.+?)\.\s*Error\s*:\s*Encountered\s+timeout\s+event\s+"
                r"'DisposeArtefactsTimeout'\s+in\s+the\s+state\s+(?P<state>.+?)\.?" + _TRAIL,
                examples=(
                    "VM: VMName. Error: Encountered timeout event 'DisposeArtefactsTimeout' in the state "
                    "&'['Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine+"
                    "WaitingForArtefactsDisposalPreCycle' ('WaitingForArtefactsDisposalPreCycle')]'.",
                ),
            ),
        ),
        causes=(
            "The component that replicates data to Azure is down or not responding: the gateway service on "
            "the Azure Migrate appliance is stopped.",
            "The gateway service cannot reach the Service Bus / Event Hubs queues or the appliance storage "
            "account, so the previous cycle's artefacts (snapshots, uploaded data) are never confirmed "
            "disposed of before the next cycle.",
        ),
        recommendations=(
            _CHECK_APPLIANCE_UP,
            _CHECK_GATEWAY_SERVICE,
            _CHECK_CACHE_STORAGE,
            _CHECK_MESSAGING,
            _CHECK_KEY_VAULT,
            "Once the appliance's service and connectivity are fixed, the next cycle disposes of the old "
            "artefacts and proceeds; no repair is needed.",
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        scope=Scope.CYCLE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-1001",
        name="ChangedBlockTrackingReset",
        title="Changed block tracking was reset: the changed blocks could not be fetched",
        action="Automatic resync if opted in; otherwise run Repair replication; if it recurs, reset CBT on the VM and re-enable replication.",
        origin=Origin.APPLIANCE,
        template="Encountered an error while trying to fetch change blocks",
        placeholders={
            **_APPLIANCE_PLACEHOLDERS,
            "details": "anything the appliance added after the fixed text",
        },
        formats=(
            MessageFormat(
                pattern=_LEAD
                + r"(?:Encountered\s+an\s+error|An\s+error\s+occurred)\s+while\s+trying\s+to\s+fetch\s+"
                r"change(?:d)?\s+blocks\s*[.:]?\s*(?P<details>.*?)" + _TRAIL,
                examples=(
                    "Encountered an error while trying to fetch change blocks",
                    "'Encountered an error while trying to fetch change blocks'",
                    "Encountered an error while trying to fetch changed blocks",
                    "An error occurred while trying to fetch changed blocks",
                ),
            ),
        ),
        causes=(
            "Agentless replication reads only the blocks VMware's changed block tracking (CBT) reports as "
            "changed since the last cycle. CBT was reset for this virtual machine, or its CBT file "
            "(-ctk.vmdk) is corrupt, so the changes since the last cycle are unknown and deltas cannot "
            "continue: the disks must be copied again (resync).",
            "On vSphere 5.x a storage vMotion resets CBT (VMware KB 2048201); other VMware operations "
            "(reverting a snapshot, some backup tools) reset it too.",
        ),
        recommendations=(
            'If the machine opted into "Automatically repair replication" when replication was enabled, '
            "the control plane resyncs it by itself: nothing to do unless the error returns.",
            'Otherwise, or if the automatic repair did not help, run "Repair replication" '
            "(POST /api/machines/<id>/repair): it resyncs the disks from a fresh snapshot.",
            "If the repair fails again, reset CBT on the VM (the first link below): stop replication; "
            "power the VM off; in vCenter, Edit Settings > VM Options > Advanced > Edit Configuration, set "
            "ctkEnabled to false and scsiX:Y.ctkEnabled to false for every disk; delete the VM's *-ctk.vmdk "
            "files from its datastore folder; power it on, set the same parameters back to true, and take "
            "and delete a snapshot so tracking starts afresh. VMware PowerCLI can do the same without a "
            "power-off. Then enable replication again.",
            "On vSphere 5.5 apply the update described in VMware KB 2048201 so that storage vMotion no "
            "longer resets CBT.",
        ),
        references=(
            "https://go.microsoft.com/fwlink/?linkid=2139203",
            "https://go.microsoft.com/fwlink/?linkid=2138888",
        ),
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=True,
        repair_requires_opt_in=True,
        scope=Scope.MACHINE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.RESYNC,
    ),
    CatalogEntry(
        code="MCP-1101",
        name="VmwareServerRefusedConnection",
        title="VMware: server refused connection (VDDK 6.7)",
        action="Stop asrgwy, install the VDDK 6.7 fix from the VMware KB, start asrgwy.",
        origin=Origin.APPLIANCE,
        template="An internal error occurred. [Server Refused Connection]",
        placeholders=_VMWARE_PLACEHOLDERS,
        formats=(
            vmware_internal(
                r"Server\s+Refused\s+Connection\.?",
                "An internal error occurred. [Server Refused Connection]",
            ),
        ),
        causes=(
            "A known defect of VMware VDDK 6.7, which the appliance's gateway service uses to read the "
            "disks: the ESXi host's NFC server refuses the connection.",
        ),
        recommendations=(
            _GATEWAY_STOP,
            "Download and install the update from the VMware KB linked below on the appliance.",
            _GATEWAY_START,
            _VMWARE_CYCLE_RETRIED,
        ),
        references=("https://go.microsoft.com/fwlink/?linkid=2138889",),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        scope=Scope.CYCLE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-1102",
        name="VmwareInvalidSnapshotConfiguration",
        title="VMware: an invalid snapshot configuration was detected",
        action="Repair the VM's snapshot configuration after a disk removal (VMware article); re-enable replication if the disk set changed.",
        origin=Origin.APPLIANCE,
        template="An internal error occurred. ['An Invalid snapshot configuration was detected.']",
        placeholders=_VMWARE_PLACEHOLDERS,
        formats=(
            vmware_internal(
                r"An\s+Invalid\s+snapshot\s+configuration\s+was\s+detected\.?",
                "An internal error occurred. ['An Invalid snapshot configuration was detected.']",
                "An Internal error occurred. [An Invalid snapshot configuration was detected].",
            ),
        ),
        causes=(
            "A disk was removed from a virtual machine with several disks; the VM's snapshot chain still "
            "refers to it, so vCenter refuses the snapshot the cycle needs.",
        ),
        recommendations=(
            "In vCenter, open the VM's Snapshots > Manage Snapshots and check its disks: the VMX and the "
            "snapshot descriptor must list the same disks. Follow the VMware article linked below to repair "
            "the snapshot configuration (consolidate, or remove the stale snapshot entries).",
            "If the disk was removed on purpose, the replica still has it: stop replication and enable it "
            "again so the disk list matches, or run Repair replication after the fix.",
            _VMWARE_CYCLE_RETRIED,
        ),
        references=("https://go.microsoft.com/fwlink/?linkid=2138890",),
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-1103",
        name="VmwareGenerateSnapshotHung",
        title="VMware: snapshot creation stopped responding",
        action="Clear the snapshot task stuck at 95-99% in vCenter (VMware KB); the next cycle retries.",
        origin=Origin.APPLIANCE,
        template="An internal error occurred. [Generate Snapshot Hung]",
        placeholders=_VMWARE_PLACEHOLDERS,
        formats=(
            vmware_internal(
                r"Generate\s+Snapshot\s+Hung\.?",
                "An internal error occurred. [Generate Snapshot Hung]",
            ),
        ),
        causes=(
            "Snapshot creation stopped responding: vCenter shows the VM's Create virtual machine snapshot "
            "task stuck at 95% or 99%.",
        ),
        recommendations=(
            "In vCenter, look at the VM's Recent Tasks: if a Create snapshot task is stuck at 95% or 99%, "
            "follow the VMware KB linked below (typically: wait for or cancel the task, check the datastore "
            "has free space and low latency, and restart the host's management agents if the task never "
            "ends).",
            _VMWARE_CYCLE_RETRIED,
        ),
        references=("https://go.microsoft.com/fwlink/?linkid=2138969",),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        scope=Scope.CYCLE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-1104",
        name="VmwareFailedToConsolidateDisks",
        title="VMware: consolidating the disks at the end of the cycle failed",
        action="Consolidate the VM's disks in vCenter, fixing the reported reason (file lock, datastore space).",
        origin=Origin.APPLIANCE,
        template="An internal error occurred. [Failed to consolidate the disks on VM {reasons}]",
        placeholders={**_VMWARE_PLACEHOLDERS, "reasons": "VMware's reason the consolidation failed"},
        formats=(
            vmware_internal(
                r"Failed\s+to\s+consolidate\s+the\s+disks\s+on\s+VM\b\s*(?P<reasons>.*?)",
                "An internal error occurred. [Failed to consolidate the disks on VM _[Reasons]_]",
            ),
        ),
        causes=(
            "At the end of a cycle the cycle's snapshot is deleted and the disks consolidated; vCenter "
            "failed that consolidation ({reasons}). Until it succeeds the VM runs on delta disks that keep "
            "growing.",
        ),
        recommendations=(
            'In vCenter, check the VM\'s Summary for "Virtual machine disks consolidation is needed" and '
            "run Snapshots > Consolidate. Follow the VMware KB linked below for the reason reported "
            "({reasons}): most often a file lock held by a backup proxy or another host, or too little "
            "free space on the datastore.",
            _VMWARE_CYCLE_RETRIED,
        ),
        references=("https://go.microsoft.com/fwlink/?linkid=2138970",),
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-1105",
        name="VmwareAnotherTaskInProgress",
        title="VMware: another task is already in progress",
        action="Let the conflicting vCenter task finish or cancel it; keep backups out of replication cycles.",
        origin=Origin.APPLIANCE,
        template="An internal error occurred. [Another task is already in progress]",
        placeholders=_VMWARE_PLACEHOLDERS,
        formats=(
            vmware_internal(
                r"Another\s+task\s+is\s+already\s+in\s+progress\.?",
                "An internal error occurred. [Another task is already in progress]",
            ),
        ),
        causes=(
            "A snapshot operation (create, delete or consolidate) collided with another task running on the "
            "VM in the background, such as a backup job's snapshot, a vMotion, or a previous task that timed "
            "out inside vCenter Server and still holds the VM.",
        ),
        recommendations=(
            "In vCenter, look at the VM's Recent Tasks and Monitor > Tasks for a running or stuck task; let "
            "it finish or cancel it, and schedule backup jobs outside the replication cycles. Follow the "
            "VMware KB linked below if a timed-out task never clears.",
            _VMWARE_CYCLE_RETRIED,
        ),
        references=("https://go.microsoft.com/fwlink/?linkid=2138891",),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        scope=Scope.CYCLE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-1106",
        name="VmwareOperationNotAllowedInCurrentState",
        title="VMware: operation not allowed in current state",
        action="Restart the ESXi host's management agents (hostd, vpxa).",
        origin=Origin.APPLIANCE,
        template="An internal error occurred. [Operation not allowed in current state]",
        placeholders=_VMWARE_PLACEHOLDERS,
        formats=(
            vmware_internal(
                r"(?:The\s+)?Operation\s+(?:is\s+)?not\s+allowed\s+in\s+(?:the\s+)?current\s+state\.?",
                "An internal error occurred. [Operation not allowed in current state]",
            ),
        ),
        causes=(
            "The management agents of the ESXi host running the VM (hostd, vpxa) stopped working, so "
            "vCenter Server refuses operations on the VM.",
        ),
        recommendations=(
            "Restart the management agents of the VM's ESXi host as the VMware KB linked below describes: "
            "in the DCUI, Troubleshooting Options > Restart Management Agents, or over SSH "
            "`/etc/init.d/hostd restart` and `/etc/init.d/vpxa restart`. Running VMs are not affected.",
            _VMWARE_CYCLE_RETRIED,
        ),
        references=("https://go.microsoft.com/fwlink/?linkid=2138971",),
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-1107",
        name="VmwareSnapshotDiskSizeInvalid",
        title="VMware: the snapshot reports an invalid disk size",
        action="Apply the VMware KB fix for snapshots reporting a zero disk size.",
        origin=Origin.APPLIANCE,
        template="An internal error occurred. [Snapshot Disk size invalid]",
        placeholders=_VMWARE_PLACEHOLDERS,
        formats=(
            vmware_internal(
                r"Snapshot\s+Disk\s+size\s+invalid\.?",
                "An internal error occurred. [Snapshot Disk size invalid]",
            ),
        ),
        causes=(
            "A known VMware defect: the disk size the snapshot reports is zero, so its data cannot be read.",
        ),
        recommendations=(
            "Apply the resolution of the VMware KB linked below to the VM's host (it depends on the ESXi "
            "build); check in vCenter that the VM's disks show their real size again.",
            _VMWARE_CYCLE_RETRIED,
        ),
        references=("https://go.microsoft.com/fwlink/?linkid=2138972",),
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-1108",
        name="VmwareMemoryAllocationFailed",
        title="VMware: memory allocation failed (NFC host buffer out of memory)",
        action="vMotion the VM to a host with free memory, or reduce concurrent replication on its host.",
        origin=Origin.APPLIANCE,
        template="An internal error occurred. [Memory allocation failed. Out of memory.]",
        placeholders=_VMWARE_PLACEHOLDERS,
        formats=(
            vmware_internal(
                r"Memory\s+allocation\s+failed\.?\s*(?:Out\s+of\s+memory\.?)?",
                "An internal error occurred. [Memory allocation failed. Out of memory.]",
            ),
        ),
        causes=(
            "The ESXi host's NFC buffer (the memory it uses to serve disk reads over NFC to the appliance) "
            "is exhausted, typically because the host is short of free memory or serves many concurrent "
            "disk reads.",
        ),
        recommendations=(
            "Move the VM with a compute vMotion to another ESXi host with free memory (vCenter > VM > "
            "Migrate > Change compute resource only), or free memory on its current host.",
            "If many machines on one host replicate at once, lower the concurrency: fewer machines per "
            "cycle window or fewer upload threads per VM in the replication policy.",
            _VMWARE_CYCLE_RETRIED,
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        scope=Scope.CYCLE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-1199",
        name="VmwareInternalError",
        title="VMware: an internal error occurred (other VMware environment errors)",
        action="Look up VMware's message in the VM's vCenter tasks and events and the VMware KB.",
        origin=Origin.APPLIANCE,
        template="An internal error occurred. [{innerMessage}]",
        placeholders=_VMWARE_PLACEHOLDERS,
        formats=(
            vmware_internal(
                r".+?",
                "An internal error occurred. [Error message]",
                "An internal error occurred. [The object has already been deleted or has not been "
                "completely created]",
            ),
        ),
        causes=(_VMWARE_CAUSE_GENERIC + " VMware reported: {innerMessage}",),
        recommendations=(
            "Look up VMware's message ({innerMessage}) in vCenter: the VM's Monitor > Tasks and Events show "
            "the failed snapshot task with its details; search the VMware knowledge base for the exact text.",
            "Check the usual suspects of snapshot failures: free space on the VM's datastore, a backup job "
            "holding a snapshot of the VM, the ESXi host's management agents (restart them if tasks hang), "
            "and a pending disk consolidation.",
            _VMWARE_CYCLE_RETRIED,
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        scope=Scope.CYCLE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
        umbrella=True,
    ),
    CatalogEntry(
        code="MCP-1201",
        name="KeyVaultConfigureManagedStorageAccountFailed",
        title="Key Vault operation failed: configure managed storage account",
        action="Give the user a Key Vault access policy with the storage permissions (Set-AzKeyVaultAccessPolicy), then retry.",
        origin=Origin.APPLIANCE,
        template=(
            "Key Vault operation failed. Operation : Configure managed storage account, Key Vault: "
            "{keyVaultName}, Storage Account: {storageAccountName} failed with the error: {innerError}"
        ),
        placeholders=_KEY_VAULT_PLACEHOLDERS,
        formats=(
            _key_vault(
                r"Configure\s+managed\s+storage\s+account",
                "“Key Vault operation failed. Operation : Configure managed storage account, Key Vault: "
                "Key-vault-name, Storage Account: storage account name failed with the error:”",
                "Key Vault operation failed. Operation : Configure managed storage account, Key Vault: "
                "Key-vault-name, Storage Account: storage account name failed with the error:",
            ),
        ),
        causes=_KEY_VAULT_CAUSES,
        recommendations=_KEY_VAULT_RECOMMENDATIONS,
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-1202",
        name="KeyVaultGenerateSasDefinitionFailed",
        title="Key Vault operation failed: generate shared access signature definition",
        action="Give the user a Key Vault access policy with the storage permissions (Set-AzKeyVaultAccessPolicy), then retry.",
        origin=Origin.APPLIANCE,
        template=(
            "Key Vault operation failed. Operation : Generate shared access signature definition, Key "
            "Vault: {keyVaultName}, Storage Account: {storageAccountName} failed with the error: {innerError}"
        ),
        placeholders=_KEY_VAULT_PLACEHOLDERS,
        formats=(
            _key_vault(
                r"Generate\s+shared\s+access\s+signature\s+definition",
                "“Key Vault operation failed. Operation : Generate shared access signature definition, Key "
                "Vault: Key-vault-name, Storage Account: storage account name failed with the error:”",
            ),
        ),
        causes=_KEY_VAULT_CAUSES,
        recommendations=_KEY_VAULT_RECOMMENDATIONS,
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    # --- the control plane's apply engine: uploads it rejects (the replica is left unchanged) ---
    CatalogEntry(
        code="MCP-2000",
        name="CycleRejected",
        title="The uploaded cycle was rejected",
        action="None unless it repeats: the control plane resyncs every disk of the rejected cycle.",
        origin=Origin.CONTROL_PLANE,
        template="Cycle {cycleId} for disk {diskId} was rejected: {message}",
        placeholders={
            "cycleId": "the appliance's cycle id",
            "diskId": "the disk whose upload was rejected",
            "message": "the apply engine's reason",
        },
        causes=(
            "The control plane could not use the cycle's upload for this disk; nothing was written to the "
            "replica, which still holds the previous recovery point.",
        ),
        recommendations=(
            "Nothing was written to the replica. The control plane discarded the cycle and asked the appliance "
            "to resync every disk it carried (a ResyncDisk command each); health returns to Healthy when the "
            "resync cycle is applied.",
            "If cycles keep being rejected, collect the appliance's logs for cycle {cycleId} and check its "
            "software version.",
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        resynced_on_rejection=True,
        scope=Scope.DISK,
        event_type=EventType.REPLICATION_CYCLE_FAILED_FOR_DISK,
        cleared_by=ClearedBy.NEXT_CYCLE,
        umbrella=True,
    ),
    CatalogEntry(
        code="MCP-2001",
        name="CycleDataMissing",
        title="A blob of the cycle (a disk's manifest, or a data blob it names) is missing from the cache account",
        action="Upload data blobs, then manifests, then post the event; check cache lifecycle rules.",
        origin=Origin.CONTROL_PLANE,
        template=(
            "Cycle {cycleId} for disk {diskId} was rejected: {blobRole} does not exist in the cache storage "
            "account."
        ),
        placeholders={
            "cycleId": "the appliance's cycle id",
            "diskId": "the disk whose upload was rejected",
            "blob": "the missing blob's name in the cache container",
            "blobRole": "which blob is missing and who named it: 'manifest <name> named by the CycleUploaded "
            "event' or 'data blob <name> named by the manifest'",
        },
        causes=(
            "The appliance posted CycleUploaded before all of the cycle's blobs (the data blobs, then each "
            "disk's manifest) were uploaded, named a manifest blob other than the one it uploaded, or the "
            "upload of blob {blob} failed and was not retried.",
            "A lifecycle rule or someone deleted blobs from the cache storage account's container.",
        ),
        recommendations=(
            "Nothing was written to the replica; the control plane asked the appliance to resync every disk "
            "the cycle carried. An appliance must upload a cycle's data blobs, then each disk's manifest, then "
            "post CycleUploaded naming exactly those manifests; check the appliance's log for failed uploads "
            "of {blob}.",
            "Check the cache storage account has no lifecycle-management rule deleting recent blobs "
            "(Storage account > Data management > Lifecycle management).",
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        resynced_on_rejection=True,
        scope=Scope.DISK,
        event_type=EventType.REPLICATION_CYCLE_FAILED_FOR_DISK,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-2002",
        name="CycleDataTruncated",
        title="A data blob is shorter than its manifest says (truncated upload)",
        action="None unless it repeats: the cycle's disks are resynced; check the network path for cut uploads.",
        origin=Origin.CONTROL_PLANE,
        template=(
            "Cycle {cycleId} for disk {diskId} was rejected: data blob {blob} has {size} bytes but the "
            "manifest reads up to byte {expected}: the upload was cut short."
        ),
        placeholders={
            "cycleId": "the appliance's cycle id",
            "diskId": "the disk whose upload was rejected",
            "blob": "the data blob's name in the cache container",
            "size": "the blob's actual size in bytes",
            "expected": "the size the manifest implies",
        },
        causes=(
            "The upload of blob {blob} was interrupted (network drop, appliance restart) and the appliance "
            "posted the cycle anyway.",
        ),
        recommendations=(
            "Nothing was written to the replica; the control plane asked the appliance to resync every disk "
            "the cycle carried. If truncation repeats, check the appliance's network path to the cache "
            "account (proxies that cut long uploads, bandwidth limits) and its log for upload errors.",
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        resynced_on_rejection=True,
        scope=Scope.DISK,
        event_type=EventType.REPLICATION_CYCLE_FAILED_FOR_DISK,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-2003",
        name="CycleDataOversized",
        title="A data blob is longer than its manifest accounts for",
        action="Make sure only this appliance writes under the machine's prefix and cycle ids are never reused.",
        origin=Origin.CONTROL_PLANE,
        template=(
            "Cycle {cycleId} for disk {diskId} was rejected: data blob {blob} has {size} bytes but the "
            "manifest accounts for {expected}: the blob and the manifest are from different uploads."
        ),
        placeholders={
            "cycleId": "the appliance's cycle id",
            "diskId": "the disk whose upload was rejected",
            "blob": "the data blob's name in the cache container",
            "size": "the blob's actual size in bytes",
            "expected": "the size the manifest implies",
        },
        causes=(
            "The blob and the manifest belong to different uploads: the appliance reused a cycle id or a "
            "blob name, or two appliances upload to the same container.",
        ),
        recommendations=(
            "Nothing was written to the replica; the control plane asked the appliance to resync every disk "
            "the cycle carried (under a new cycle id). Check that only this machine's appliance uploads under "
            "its prefix in the cache container and that the appliance never reuses a cycle id.",
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        resynced_on_rejection=True,
        scope=Scope.DISK,
        event_type=EventType.REPLICATION_CYCLE_FAILED_FOR_DISK,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-2004",
        name="CycleDataChanged",
        title="A data blob changed while the cycle was being applied",
        action="Make sure the appliance never rewrites a cycle's blobs after posting it.",
        origin=Origin.CONTROL_PLANE,
        template=(
            "Cycle {cycleId} for disk {diskId} was rejected: data blob {blob} changed while the cycle was "
            "being applied."
        ),
        placeholders={
            "cycleId": "the appliance's cycle id",
            "diskId": "the disk whose upload was rejected",
            "blob": "the data blob's name in the cache container",
        },
        causes=(
            "The appliance (or something else) rewrote blob {blob} after posting the cycle; its ETag no "
            "longer matches the one verified, so its bytes were not written.",
        ),
        recommendations=(
            "Nothing was written to the replica. A cycle's blobs must not change after CycleUploaded is "
            "posted: check that the appliance is not retrying an upload it already reported, and that no "
            "other process writes to the cache container. The control plane asked the appliance to resync "
            "every disk the cycle carried.",
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        resynced_on_rejection=True,
        scope=Scope.DISK,
        event_type=EventType.REPLICATION_CYCLE_FAILED_FOR_DISK,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-2005",
        name="ExtentChecksumMismatch",
        aliases=("CycleDataCorrupt",),
        title="Uploaded data is corrupt: an extent's checksum does not match the manifest",
        action="None unless it repeats: the cycle's disks are resynced; then update the appliance, check HTTPS proxies.",
        origin=Origin.CONTROL_PLANE,
        template=(
            "Cycle {cycleId} for disk {diskId} was rejected: extent {extent} (blob {blob}) has "
            "{algorithm} {actual}, the manifest says {expected}: the data is corrupt."
        ),
        placeholders={
            "cycleId": "the appliance's cycle id",
            "diskId": "the disk whose upload was rejected",
            "extent": "the extent's index in the manifest",
            "blob": "the data blob holding the extent",
            "algorithm": "crc64 or sha256",
            "actual": "the checksum of the bytes in the cache account",
            "expected": "the checksum the manifest gives",
        },
        causes=(
            "The bytes in the cache account differ from what the appliance hashed: corruption in transit "
            "or at rest, or the appliance hashed different data than it uploaded (a defect).",
        ),
        recommendations=(
            "Nothing was written to the replica; the control plane asked the appliance to resync every disk "
            "the cycle carried. If checksums keep failing, update the appliance software and check for a "
            "proxy or WAN optimiser that rewrites HTTPS traffic to the cache account.",
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        resynced_on_rejection=True,
        scope=Scope.DISK,
        event_type=EventType.REPLICATION_CYCLE_FAILED_FOR_DISK,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-2006",
        name="ManifestMismatch",
        title="The manifest is not the one for this cycle or replica",
        action="Check the event and manifest agree; run Repair replication if the disk was resized.",
        origin=Origin.CONTROL_PLANE,
        template="Cycle {cycleId} for disk {diskId} was rejected: {message}",
        placeholders={
            "cycleId": "the appliance's cycle id",
            "diskId": "the disk whose upload was rejected",
            "message": "which field of the manifest disagrees",
        },
        causes=(
            "The manifest is well formed but names another machine, disk, cycle or sequence than the event "
            "that pointed to it, or a disk size that does not match the replica.",
        ),
        recommendations=(
            "Nothing was written to the replica; the control plane asked the appliance to resync every disk "
            "the cycle carried. Check the appliance's CycleUploaded event and the manifest it names: machine "
            "id, disk id, cycle id and sequence must agree. If the source disk was resized, run Repair "
            "replication so the replica is recreated at the new size.",
        ),
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=False,
        resynced_on_rejection=True,
        scope=Scope.DISK,
        event_type=EventType.REPLICATION_CYCLE_FAILED_FOR_DISK,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-2007",
        name="ManifestInvalid",
        title="The delta manifest does not satisfy the format",
        action="Update the appliance to a version that writes the documented manifest format.",
        origin=Origin.CONTROL_PLANE,
        template="Cycle {cycleId} for disk {diskId} was rejected: {message}",
        placeholders={
            "cycleId": "the appliance's cycle id",
            "diskId": "the disk whose upload was rejected",
            "message": "the fields of the manifest that are wrong, and why",
        },
        causes=(
            "The appliance wrote a manifest the control plane cannot accept (unaligned extents, overlapping "
            "extents, a missing checksum, an unknown field): an appliance defect or version mismatch.",
        ),
        recommendations=(
            "Nothing was written to the replica; the control plane asked the appliance to resync every disk "
            "the cycle carried, which fails the same way until the appliance is fixed. Check the manifest "
            "against docs/schemas/delta-manifest.schema.json and update the appliance software to a version "
            "that writes this format.",
        ),
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=False,
        resynced_on_rejection=True,
        scope=Scope.DISK,
        event_type=EventType.REPLICATION_CYCLE_FAILED_FOR_DISK,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-2008",
        name="ReplicaNotFound",
        title="The replica disk does not exist",
        action="Automatic resync recreates the replica; check nothing deletes replica blobs.",
        origin=Origin.CONTROL_PLANE,
        template="Cycle {cycleId} for disk {diskId} could not be applied: {message}",
        placeholders={
            "cycleId": "the appliance's cycle id",
            "diskId": "the disk whose replica is missing",
            "message": "the apply engine's message",
        },
        causes=(
            "The replica page blob of this disk was deleted from the replica storage account, or the disk "
            "was added to the VM after replication was enabled.",
        ),
        recommendations=(
            "Nothing to do at first: the control plane requests a resync, which recreates the replica and "
            "copies the disk again. If the error persists after that, run Repair replication "
            "(POST /api/machines/<id>/repair).",
            "Check that no lifecycle rule, script or person deletes blobs in the replica container of the "
            "replica storage account.",
        ),
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=True,
        resynced_on_rejection=True,
        scope=Scope.DISK,
        event_type=EventType.REPLICATION_CYCLE_FAILED_FOR_DISK,
        cleared_by=ClearedBy.RESYNC,
    ),
    CatalogEntry(
        code="MCP-2009",
        name="ReplicaSizeMismatch",
        title="The replica disk was made for a different disk size",
        action="Automatic resync recreates the replica at the new size.",
        origin=Origin.CONTROL_PLANE,
        template="Cycle {cycleId} for disk {diskId} could not be applied: {message}",
        placeholders={
            "cycleId": "the appliance's cycle id",
            "diskId": "the disk whose replica has the wrong size",
            "message": "the apply engine's message",
        },
        causes=("The source disk was resized after replication was enabled; the replica has the old size.",),
        recommendations=(
            "Nothing to do at first: the control plane requests a resync, which recreates the replica at the "
            "new size and copies the disk again. If the error persists after that, run Repair replication "
            "(POST /api/machines/<id>/repair).",
        ),
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=True,
        resynced_on_rejection=True,
        scope=Scope.DISK,
        event_type=EventType.REPLICATION_CYCLE_FAILED_FOR_DISK,
        cleared_by=ClearedBy.RESYNC,
    ),
    # --- conditions the control plane detects ---
    CatalogEntry(
        code="MCP-3001",
        name="CycleSequenceGap",
        title="A cycle is missing from the sequence: resync requested",
        action="None: the control plane resyncs; if gaps recur, check Event Grid dead-letters.",
        origin=Origin.CONTROL_PLANE,
        template=(
            "Cycle sequence {expectedSequence} never arrived; {buffered} later cycles are waiting (up to "
            "sequence {latestSequence}). The machine is resynced because the gap reached {maxGap} cycles."
        ),
        placeholders={
            "expectedSequence": "the next sequence number the replica needs",
            "buffered": "how many later cycles arrived meanwhile",
            "latestSequence": "the highest sequence number received",
            "maxGap": "the policy's maxCycleGapBeforeResync",
        },
        causes=(
            "The appliance's event for cycle {expectedSequence} was lost or its upload was rejected, while "
            "later cycles arrived. Deltas apply only in order, so the replica cannot move forward from "
            "them.",
        ),
        recommendations=(
            "Nothing to do: the control plane has requested a resync, which copies the disks again from a "
            "fresh snapshot; health returns to Healthy when the resync cycle is applied.",
            "If gaps recur, look for Event Grid delivery failures (the topic's dead-letter container) and "
            "rejected uploads in this machine's events.",
        ),
        severity=Severity.WARNING,
        retryable=False,
        auto_repairable=True,
        scope=Scope.MACHINE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.RESYNC,
    ),
    CatalogEntry(
        code="MCP-3002",
        name="RpoThresholdExceeded",
        title="The recovery point objective was exceeded",
        action="Fix the failing cycles in this machine's events, or the appliance's uploads.",
        origin=Origin.CONTROL_PLANE,
        template=(
            "The latest recovery point is {rpoMinutes} minutes old (last sync {lastSyncTime}); the "
            "threshold is {thresholdMinutes} minutes."
        ),
        placeholders={
            "rpoMinutes": "the age of the latest applied cycle, in minutes",
            "lastSyncTime": "when the latest cycle was applied (UTC)",
            "thresholdMinutes": "the RPO threshold exceeded, in minutes",
        },
        causes=(
            "No cycle has been applied for longer than the threshold: cycles are failing (see this "
            "machine's other events), the appliance is not uploading, or uploads are too slow for the "
            "disks' rate of change.",
        ),
        recommendations=(
            "Look at this machine's recent events for failed cycles and fix their cause first.",
            "If there are none, check the appliance is up and uploading (its heartbeat, the gateway service "
            "asrgwy) and that the upload bandwidth limit in the replication policy suits the churn.",
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.RPO_THRESHOLD_EXCEEDED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-3003",
        name="ApplianceNotResponding",
        title="The appliance is not responding",
        action="Bring the appliance and its gateway service back; check its access to the Event Grid topic.",
        origin=Origin.CONTROL_PLANE,
        template=(
            "Appliance {applianceName} has not been heard from since {lastHeartbeat} (more than "
            "{timeoutMinutes} minutes)."
        ),
        placeholders={
            "applianceName": "the appliance's name",
            "lastHeartbeat": "its last heartbeat or upload (UTC), or never",
            "timeoutMinutes": "the heartbeat timeout, in minutes",
        },
        causes=(
            "The appliance VM is off or hung, its gateway service is stopped, or it cannot reach the "
            "control plane's Event Grid topic; no machine it replicates gets new recovery points.",
        ),
        recommendations=(
            _CHECK_APPLIANCE_UP,
            _CHECK_GATEWAY_SERVICE,
            _CHECK_MESSAGING,
            "The error clears with the appliance's next heartbeat or uploaded cycle.",
        ),
        severity=Severity.CRITICAL,
        retryable=True,
        auto_repairable=False,
        scope=Scope.APPLIANCE,
        event_type=EventType.APPLIANCE_NOT_RESPONDING,
        cleared_by=ClearedBy.HEARTBEAT,
    ),
    CatalogEntry(
        code="MCP-5101",
        name="MobilityAgentNotResponding",
        title="The Mobility agent is not responding",
        action="Start the Mobility agent on the server (svagent start) and let it reach the control plane.",
        origin=Origin.CONTROL_PLANE,
        template=(
            "Mobility agent {agentId} has not sent a heartbeat since {lastHeartbeat} (more than "
            "{timeoutMinutes} minutes)."
        ),
        placeholders={
            "agentId": "the agent's id (GET /api/machines/<id>/mobility)",
            "lastHeartbeat": "its last heartbeat (UTC), or its registration when it never sent one",
            "timeoutMinutes": "the agent heartbeat timeout, in minutes (HEALTH_AGENT_HEARTBEAT_TIMEOUT_SECONDS)",
        },
        causes=(
            "The agent's runner on the source server is stopped (the server is off or was restarted without "
            "starting it, or it crashed), or the server cannot reach the control plane's API over HTTPS; "
            "the agent then takes no cycles of the machine, so no new recovery points are added.",
            "The agent's credential no longer works (the agent was registered again elsewhere with the same "
            "identity): its heartbeats are refused with 401.",
        ),
        recommendations=(
            "On the server, as root: <installLocation>/Vx/bin/svagent status; if it is stopped, "
            "<installLocation>/Vx/bin/svagent start. Its log is <installLocation>/Vx/var/svagent.log.",
            "From the server, check that the API endpoint it registered with answers over HTTPS "
            "(curl -sSI <endpoint>): a proxy or firewall must allow outbound HTTPS to it.",
            "If its log shows 401, register the agent again: UnifiedAgentConfigurator.sh -i <endpoint> "
            "-P <passphrase file> -m <machineId> (the operator rotates the passphrase if it is lost).",
            "The error clears at the health monitor's next check (every 5 minutes) after the agent's next "
            "heartbeat.",
        ),
        severity=Severity.CRITICAL,
        retryable=True,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.MOBILITY_AGENT_NOT_RESPONDING,
        cleared_by=ClearedBy.AGENT_HEARTBEAT,
    ),
    # --- failover to Azure: Site Recovery's published failover errors, then ours ---
    CatalogEntry(
        code="28031",
        name="FailoverVmCreationFailed",
        title="Failover could not create the virtual machine in Azure",
        action="Raise the vCPU quota, pick a size offered in the region, or have the policy allow the VM; then fail over again.",
        origin=Origin.CONTROL_PLANE,
        template="Failover failed at step '{step}': virtual machine {vmName} could not be created in Azure. {reason}",
        placeholders={
            **_FAILOVER_PLACEHOLDERS,
            "vmSize": "the VM size requested (the failover settings' vmSize)",
            "resourceGroup": "the resource group the VM was being created in",
        },
        causes=(
            "There is not enough quota to create the virtual machine: the subscription's vCPU quota for "
            "the size's family (or the regional total) in the target region is used up (ARM QuotaExceeded, "
            "OperationNotAllowed ... exceeding quota limits).",
            "The VM size {vmSize} cannot be used there: it is not offered in the target region or zone, or "
            "not to this subscription (ARM SkuNotAvailable), or Azure has no capacity for it right now "
            "(AllocationFailed). Site Recovery also reports this error when virtual machines of different "
            "size families are failed over into the same availability set.",
            "A policy on the subscription or resource group {resourceGroup} prevents creating the virtual "
            "machine (ARM RequestDisallowedByPolicy): its size, location, tags or disks are not allowed.",
        ),
        recommendations=(
            "Quota: in the Azure portal open Subscriptions > <subscription> > Usage + quotas (or run "
            "`az vm list-usage --location <region> -o table`) and compare the family's vCPUs in use with "
            "its limit. Request an increase there (or open a support request), or choose a smaller size: "
            "set vmSize in the failover settings (PATCH /api/machines/<id>/failover-settings).",
            "Size: run `az vm list-skus --location <region> --size {vmSize} --all -o table`; a size that is "
            "missing or shows NotAvailableForSubscription under Restrictions cannot be used. Choose a size "
            "the region offers in the failover settings (vmSize), or ask Azure support to enable the size. "
            "For a capacity error (AllocationFailed) trying again later or another size usually helps.",
            "Policy: the reason above names the policy assignment that denied the request (see also the "
            "resource group's Activity log). Change the policy, or exempt resource group {resourceGroup}, "
            "so that the virtual machine may be created, or change the failover settings to what it allows.",
            _FAILOVER_LEFT_NOTHING,
        ),
        references=(
            f"{_SITE_RECOVERY_FAILOVER_TROUBLESHOOTING}#failover-failed-with-error-id-28031",
            "https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/error-resource-quota",
            "https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/error-sku-not-available",
            "https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/error-policy-requestdisallowedbypolicy",
        ),
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.FAILOVER_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="28092",
        name="FailoverNicCreationFailed",
        title="Failover could not create the virtual machine's network interface",
        action="Check the network interface quota and that the static IP is free in the subnet; then fail over again.",
        origin=Origin.CONTROL_PLANE,
        template=(
            "Failover failed at step '{step}': the network interface of virtual machine {vmName} could not "
            "be created in subnet {subnet}. {reason}"
        ),
        placeholders={
            **_FAILOVER_PLACEHOLDERS,
            "subnet": "the subnet the network interface joins (the failover settings' subnet)",
            "virtualNetwork": "that subnet's virtual network",
            "staticIpAddress": "the static IP address requested, if any",
        },
        causes=(
            "There is not enough quota to create network interfaces in the subscription and region.",
            "The static IP address {staticIpAddress} is already in use in the virtual network, for example "
            "by a test migration's virtual machine that was not cleaned up (Site Recovery reports that case "
            'as "One or more replica IP addresses for the network adapter of virtual machine is invalid"), '
            "or the subnet has no free address left.",
            "An intermittent error of Azure's network service: with enough quota and a free address, the "
            "same request can succeed when tried again.",
        ),
        recommendations=(
            "Quota: run `az network list-usages --location <region> -o table` (or Subscriptions > "
            "<subscription> > Usage + quotas in the portal) and compare network interfaces in use with the "
            "limit; request an increase there or through a support request.",
            "Address: run `az network vnet check-ip-address --resource-group <vnet's resource group> --name "
            "{virtualNetwork} --ip-address {staticIpAddress}`; if it is taken, clean up a finished test "
            "migration (POST /api/machines/<id>/test-migrate/cleanup) or choose another address: "
            "set staticIpAddress in the failover settings (PATCH /api/machines/<id>/failover-settings) to a "
            "free address, or to null to let Azure assign one.",
            "If quota and address are fine the error was intermittent: run the failover again.",
            _FAILOVER_LEFT_NOTHING,
        ),
        references=(f"{_SITE_RECOVERY_FAILOVER_TROUBLESHOOTING}#failover-failed-with-error-id-28092",),
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.FAILOVER_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="170010",
        name="FailoverHydrationFailed",
        title="Failover could not prepare the machine to boot in Azure (hydration failed)",
        action="Read the failed preparation step; set the boot drivers to boot start and DHCP to automatic in the guest; then fail over again.",
        origin=Origin.CONTROL_PLANE,
        template=(
            "Failover failed at step '{step}': virtual machine {vmName} could not be created in Azure "
            "because preparing its disks to boot in Azure (hydration) failed. {reason}"
        ),
        placeholders=_FAILOVER_PLACEHOLDERS,
        causes=(
            "To boot in Azure a machine needs some drivers set to start at boot and services such as DHCP "
            "set to start automatically. Hydration makes these changes on a copy of the disks before the "
            "virtual machine is created: on Windows it sets the atapi, intelide, storflt, vmbus and "
            "storvsc drivers to boot start and DHCP to automatic; on Linux it adds the Hyper-V drivers to "
            "the initramfs and configures the network for DHCP. One of these changes failed on this "
            "machine's disks, for a reason specific to its environment.",
        ),
        recommendations=(
            "Read the job's hydration steps (GET /api/jobs/<id>): the failed step names the change and "
            "shows the output of the command that failed.",
            "Windows: in the source machine, download the no-hydration script (second link below) and run "
            "`.\\Script-no-hydration.ps1` in an elevated PowerShell. It prints each driver or service that "
            "is not as Azure needs it (e.g. `...\\services\\storvsc start = 3 expected value = 0`) and "
            '"This system doesn\'t meet no-hydration requirement." Run `.\\Script-no-hydration.ps1 -set` to '
            'change them; it ends with "This system is now no-hydration compatible." Let a replication '
            "cycle capture the change before failing over again.",
            "Linux: in the source machine, make sure the Hyper-V drivers are in the initramfs, e.g. "
            '`dracut -f --add-drivers "hv_vmbus hv_storvsc hv_netvsc"` (Red Hat family) or hv_vmbus, '
            "hv_storvsc and hv_netvsc in /etc/initramfs-tools/modules followed by `update-initramfs -u` "
            "(Debian, Ubuntu), and that the primary network interface uses DHCP. Let a replication cycle "
            "capture the change before failing over again.",
            _FAILOVER_LEFT_NOTHING,
        ),
        references=(
            f"{_SITE_RECOVERY_FAILOVER_TROUBLESHOOTING}#failover-failed-with-error-id-170010",
            "https://download.microsoft.com/download/5/D/6/5D60E67C-2B4F-4C51-B291-A97732F92369/Script-no-hydration.ps1",
        ),
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.FAILOVER_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    CatalogEntry(
        code="MCP-4001",
        name="FailoverStepFailed",
        title="A failover step failed",
        action="Read the reason for the resource or condition it names, fix it, then fail over again.",
        origin=Origin.CONTROL_PLANE,
        template="Failover failed at step '{step}': {reason}",
        placeholders=_FAILOVER_PLACEHOLDERS,
        causes=(
            "A failover step other than creating the virtual machine, its network interface or hydration "
            "failed (checking prerequisites, stopping replication, processing pending data, choosing or "
            "copying the recovery point, importing disks, taking the failback baseline); the reason is "
            "shown as reported.",
        ),
        recommendations=(
            "Read the reason above: it names the Azure resource or the condition that failed (a recovery "
            "point that no longer exists, a storage account or disk Azure refused, a quota). Fix that, "
            "then run the failover again.",
            _FAILOVER_LEFT_NOTHING,
            "If it fails the same way again, keep the job (GET /api/jobs/<id>) and this event and report "
            "them.",
        ),
        severity=Severity.CRITICAL,
        retryable=False,
        auto_repairable=False,
        scope=Scope.MACHINE,
        event_type=EventType.FAILOVER_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
    ),
    *REVERSE_ENTRIES,
    *PUSH_INSTALL_ENTRIES,
    CatalogEntry(
        code="MCP-9999",
        name="UnrecognizedError",
        title="An error the catalog does not know, kept verbatim",
        action="Read the message for the failing component; report it if the next cycle fails the same way.",
        origin=Origin.APPLIANCE,
        template="{message}",
        placeholders={
            "message": "the error text exactly as reported",
            "reportedCode": "the error code exactly as reported, if any",
        },
        causes=(
            "The appliance reported an error this control plane has no catalog entry for; its text is "
            "shown exactly as received.",
        ),
        recommendations=(
            "Read the message above for the component it names (vCenter, ESXi host, appliance, Azure "
            "service) and check that component.",
            "If the next scheduled cycle fails the same way, collect the appliance's gateway service logs "
            "and this event's code ({reportedCode}) and message, and report them so the catalog gains an "
            "entry.",
        ),
        severity=Severity.WARNING,
        retryable=True,
        auto_repairable=False,
        scope=Scope.CYCLE,
        event_type=EventType.REPLICATION_CYCLE_FAILED,
        cleared_by=ClearedBy.NEXT_CYCLE,
        generic=True,
    ),
)
