"""Every documented appliance message format maps to its entry with its placeholders; unknown errors are kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.errors import DomainError
from shared.health.catalog import (
    CATALOG,
    MatchedBy,
    control_plane_error,
    match_appliance_error,
    match_domain_error,
)
from shared.health.catalog.matching import render
from shared.replication.apply_engine import CycleDataMissing

# The sample messages of Azure Migrate's guide "Troubleshooting replication issues in agentless VMware VM migration", verbatim from its English original (including its placeholder
# words such as VMName and its typographic quotes), with the entry and the placeholders each must yield.
DOCUMENTED_MESSAGES: list[tuple[str, str, dict[str, str]]] = [
    (
        "The upload of data for disk DiskPath, DiskId of virtual machine VMName; VMId did not complete "
        "within the expected time.",
        "DiskUploadTimedOut",
        {"diskPath": "DiskPath", "diskId": "DiskId", "vmName": "VMName", "vmId": "VMId"},
    ),
    (
        "VM: VMName. Error: Encountered timeout event 'DisposeArtefactsTimeout' in the state "
        "&'['Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine+"
        "WaitingForArtefactsDisposalPreCycle' ('WaitingForArtefactsDisposalPreCycle')]'.",
        "DisposeArtefactsTimedOut",
        {
            "vmName": "VMName",
            "state": "&'['Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine+"
            "WaitingForArtefactsDisposalPreCycle' ('WaitingForArtefactsDisposalPreCycle')]'",
        },
    ),
    ("Encountered an error while trying to fetch change blocks", "ChangedBlockTrackingReset", {}),
    ("'Encountered an error while trying to fetch change blocks'", "ChangedBlockTrackingReset", {}),
    ("Encountered an error while trying to fetch changed blocks", "ChangedBlockTrackingReset", {}),
    ("An error occurred while trying to fetch changed blocks", "ChangedBlockTrackingReset", {}),
    (
        "An internal error occurred. [Server Refused Connection]",
        "VmwareServerRefusedConnection",
        {"innerMessage": "Server Refused Connection"},
    ),
    (
        "An internal error occurred. ['An Invalid snapshot configuration was detected.']",
        "VmwareInvalidSnapshotConfiguration",
        {"innerMessage": "An Invalid snapshot configuration was detected."},
    ),
    (
        "An Internal error occurred. [An Invalid snapshot configuration was detected].",
        "VmwareInvalidSnapshotConfiguration",
        {"innerMessage": "An Invalid snapshot configuration was detected"},
    ),
    (
        "An internal error occurred. [Generate Snapshot Hung]",
        "VmwareGenerateSnapshotHung",
        {"innerMessage": "Generate Snapshot Hung"},
    ),
    (
        "An internal error occurred. [Failed to consolidate the disks on VM _[Reasons]_]",
        "VmwareFailedToConsolidateDisks",
        {"innerMessage": "Failed to consolidate the disks on VM _[Reasons]_", "reasons": "_[Reasons]_"},
    ),
    (
        "An internal error occurred. [Another task is already in progress]",
        "VmwareAnotherTaskInProgress",
        {"innerMessage": "Another task is already in progress"},
    ),
    (
        "An internal error occurred. [Operation not allowed in current state]",
        "VmwareOperationNotAllowedInCurrentState",
        {"innerMessage": "Operation not allowed in current state"},
    ),
    (
        "An internal error occurred. [Snapshot Disk size invalid]",
        "VmwareSnapshotDiskSizeInvalid",
        {"innerMessage": "Snapshot Disk size invalid"},
    ),
    (
        "An internal error occurred. [Memory allocation failed. Out of memory.]",
        "VmwareMemoryAllocationFailed",
        {"innerMessage": "Memory allocation failed. Out of memory."},
    ),
    (
        "An internal error occurred. [Error message]",
        "VmwareInternalError",
        {"innerMessage": "Error message"},
    ),
    (
        "“Key Vault operation failed. Operation : Configure managed storage account, Key Vault: "
        "Key-vault-name, Storage Account: storage account name failed with the error:”",
        "KeyVaultConfigureManagedStorageAccountFailed",
        {"keyVaultName": "Key-vault-name", "storageAccountName": "storage account name"},
    ),
    (
        "“Key Vault operation failed. Operation : Generate shared access signature definition, Key Vault: "
        "Key-vault-name, Storage Account: storage account name failed with the error:”",
        "KeyVaultGenerateSasDefinitionFailed",
        {"keyVaultName": "Key-vault-name", "storageAccountName": "storage account name"},
    ),
]


@pytest.mark.parametrize(
    ("message", "name", "values"), DOCUMENTED_MESSAGES, ids=[n for _, n, _ in DOCUMENTED_MESSAGES]
)
def test_each_documented_message_matches_its_entry_and_extracts_placeholders(
    message: str, name: str, values: dict[str, str]
) -> None:
    match = match_appliance_error(None, message)

    assert match.entry.name == name
    assert match.matched_by is MatchedBy.MESSAGE
    assert match.values == values
    assert match.message == message  # verbatim, quotes and all
    assert match.error_code == CATALOG[name].code


def test_every_appliance_entry_with_a_format_has_a_documented_sample_here() -> None:
    sampled = {name for _, name, _ in DOCUMENTED_MESSAGES}
    with_formats = {e.name for e in CATALOG.entries if e.formats}
    assert with_formats == sampled


@pytest.mark.parametrize(
    ("message", "values"),
    [
        (
            "The upload of data for disk [datastore1] web01/web01_1.vmdk, 6000C293-5bd1-b3a4 of virtual "
            "machine web01; 50123abc-9f00-4c1e did not complete within the expected time.",
            {
                "diskPath": "[datastore1] web01/web01_1.vmdk",
                "diskId": "6000C293-5bd1-b3a4",
                "vmName": "web01",
                "vmId": "50123abc-9f00-4c1e",
            },
        ),
        (
            "VM: sql.contoso.local. Error: Encountered timeout event 'DisposeArtefactsTimeout' in the state "
            "&'['X+WaitingForArtefactsDisposalPreCycle' ('WaitingForArtefactsDisposalPreCycle')]'.",
            {
                "vmName": "sql.contoso.local",
                "state": "&'['X+WaitingForArtefactsDisposalPreCycle' ('WaitingForArtefactsDisposalPreCycle')]'",
            },
        ),
        (
            "Key Vault operation failed. Operation : Generate shared access signature definition, Key Vault: "
            "migratekv1234, Storage Account: migratelsa5678 failed with the error: Operation returned an "
            "invalid status code 'Forbidden'",
            {
                "keyVaultName": "migratekv1234",
                "storageAccountName": "migratelsa5678",
                "innerError": "Operation returned an invalid status code 'Forbidden'",
            },
        ),
        (
            "An internal error occurred. [Failed to consolidate the disks on VM 'app02': Unable to access "
            "file since it is locked]",
            {
                "innerMessage": "Failed to consolidate the disks on VM 'app02': Unable to access file since "
                "it is locked",
                "reasons": "'app02': Unable to access file since it is locked",
            },
        ),
    ],
)
def test_real_values_are_extracted_whole(message: str, values: dict[str, str]) -> None:
    assert match_appliance_error(None, message).values == values


def test_message_matching_tolerates_case_line_breaks_and_the_portal_label() -> None:
    assert match_appliance_error(None, "AN INTERNAL ERROR OCCURRED. [generate snapshot hung]").entry.name == (
        "VmwareGenerateSnapshotHung"
    )
    assert match_appliance_error(
        None, "Error Message: An internal error occurred.\n[Server Refused Connection]"
    ).entry.name == ("VmwareServerRefusedConnection")


def test_an_unlisted_vmware_error_keeps_the_inner_message() -> None:
    message = "An internal error occurred. [The object 'vim.VirtualMachine:vm-1042' has already been deleted]"
    match = match_appliance_error(None, message)
    assert match.entry.name == "VmwareInternalError"
    assert match.values["innerMessage"] == "The object 'vim.VirtualMachine:vm-1042' has already been deleted"
    assert "vm-1042" in match.render().causes[0]


@pytest.mark.parametrize("code", ["1011", "DiskUploadTimedOut", "diskuploadtimedout", " 1011 "])
def test_a_code_names_its_entry_by_id_or_name_in_any_case(code: str) -> None:
    match = match_appliance_error(code, "upload did not finish")
    assert match.entry.name == "DiskUploadTimedOut"
    assert match.matched_by is MatchedBy.CODE
    assert match.values == {}  # the message is not in the documented format: nothing to extract
    assert match.message == "upload did not finish"


def test_a_code_match_still_extracts_placeholders_from_the_message() -> None:
    message = DOCUMENTED_MESSAGES[0][0]
    match = match_appliance_error("1011", message)
    assert match.matched_by is MatchedBy.CODE
    assert match.values["vmName"] == "VMName"


def test_an_umbrella_code_gives_way_to_the_specific_vmware_entry() -> None:
    match = match_appliance_error(
        "VmwareInternalError", "An internal error occurred. [Snapshot Disk size invalid]"
    )
    assert match.entry.name == "VmwareSnapshotDiskSizeInvalid"
    assert match.reported_code == "VmwareInternalError"


def test_a_specific_code_wins_over_a_different_message() -> None:
    # The appliance's code is authoritative; the message only fills placeholders.
    match = match_appliance_error("181008", "An internal error occurred. [Generate Snapshot Hung]")
    assert match.entry.name == "DisposeArtefactsTimedOut"


def test_an_unknown_code_falls_back_to_the_message_and_keeps_the_code() -> None:
    match = match_appliance_error("0x80070005", "Encountered an error while trying to fetch change blocks")
    assert match.entry.name == "ChangedBlockTrackingReset"
    assert match.reported_code == "0x80070005"


def test_an_unknown_error_is_kept_verbatim_under_the_generic_entry() -> None:
    message = "  VixDiskLib: Could not open [ds2] db/db.vmdk (error 13: You do not have access rights)\n"
    match = match_appliance_error("VIX_E_FILE_ACCESS_ERROR", message)

    assert match.entry is CATALOG.generic
    assert match.matched_by is MatchedBy.FALLBACK
    assert match.message == message
    assert match.error_code == "VIX_E_FILE_ACCESS_ERROR"  # distinct unknown errors stay distinct
    rendered = match.render()
    assert rendered.message == message
    assert any("VIX_E_FILE_ACCESS_ERROR" in line for line in rendered.recommendations)


def test_an_unknown_error_without_a_code_uses_the_generic_code() -> None:
    match = match_appliance_error(None, "something new")
    assert match.error_code == CATALOG.generic.code
    assert match.render().missing == ("reportedCode",)


@given(st.text(min_size=1, max_size=300))
def test_no_message_is_ever_dropped_or_altered(message: str) -> None:
    match = match_appliance_error(None, message)
    assert match.message == message
    assert match.render().message == message
    if match.entry.generic:
        assert match.values["message"] == message


class _Rejected(DomainError):
    code = "CycleDataTruncated"


def test_a_control_plane_exception_maps_by_its_code_with_its_details() -> None:
    error = _Rejected(
        "data blob c1/d0/0001.bin has 1024 bytes but the manifest reads up to byte 4096: the upload was cut short",
        details=[{"blob": "c1/d0/0001.bin", "size": 1024, "expected": 4096}],
    )
    match = match_domain_error(error, cycle_id="c1", disk_id="d0")

    assert match.entry.code == "MCP-2002"
    assert match.values == {
        "blob": "c1/d0/0001.bin",
        "size": "1024",
        "expected": "4096",
        "cycleId": "c1",
        "diskId": "d0",
    }
    assert match.message == error.message
    assert match.render().missing == ()


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("CycleRejected", "CycleRejected"),
        ("CycleDataMissing", "CycleDataMissing"),
        ("CycleDataTruncated", "CycleDataTruncated"),
        ("CycleDataOversized", "CycleDataOversized"),
        ("CycleDataChanged", "CycleDataChanged"),
        ("ExtentChecksumMismatch", "ExtentChecksumMismatch"),
        ("ManifestMismatch", "ManifestMismatch"),
        ("ManifestInvalid", "ManifestInvalid"),
        ("ReplicaNotFound", "ReplicaNotFound"),
        ("ReplicaSizeMismatch", "ReplicaSizeMismatch"),
    ],
)
def test_the_apply_engine_codes_have_entries(code: str, name: str) -> None:
    error = DomainError("rejected")
    error.code = code
    assert match_domain_error(error).entry.name == name


def test_the_apply_engine_exception_classes_are_all_catalogued() -> None:
    # The classes themselves, so a new rejection added to the engine without an entry fails here.
    from shared.replication import apply_engine, delta_manifest, replica_disks

    classes = [
        *[
            c
            for c in vars(apply_engine).values()
            if isinstance(c, type) and issubclass(c, apply_engine.CycleRejected)
        ],
        delta_manifest.ManifestInvalid,
        replica_disks.ReplicaNotFound,
        replica_disks.ReplicaSizeMismatch,
    ]
    missing = [c.__name__ for c in classes if CATALOG.find(c.code) is None]
    assert not missing, f"no catalog entry for {missing}"
    # A rejected upload discards the cycle and resyncs its disks (the replication activity's
    # reject_cycle): the catalog must say so rather than "no automatic repair".
    silent = [c.__name__ for c in classes if not CATALOG[c.code].resynced_on_rejection]
    assert not silent, f"catalog entries that do not say the rejected cycle's disks are resynced: {silent}"


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (
            CycleDataMissing("vm-1/c-7/disk-0/manifest.json", manifest=True),
            "Cycle c-7 for disk disk-0 was rejected: manifest vm-1/c-7/disk-0/manifest.json named by the "
            "CycleUploaded event does not exist in the cache storage account.",
        ),
        (
            CycleDataMissing("vm-1/c-7/disk-0/data-00001.bin"),
            "Cycle c-7 for disk disk-0 was rejected: data blob vm-1/c-7/disk-0/data-00001.bin named by the "
            "manifest does not exist in the cache storage account.",
        ),
    ],
    ids=["manifest", "data-blob"],
)
def test_a_missing_blob_is_named_for_what_it_is(error: CycleDataMissing, says: str) -> None:
    match = match_domain_error(error, cycle_id="c-7", disk_id="disk-0")
    assert match.entry.code == "MCP-2001"
    assert match.render().missing == ()
    assert render(match.entry, **match.values).message == says
    assert ("named by the manifest" in error.message) is not error.manifest


def test_an_uncatalogued_exception_is_kept_under_the_generic_entry() -> None:
    error = DomainError("replica footer is not a VHD footer")
    error.code = "ReplicaFooterInvalid"
    match = match_domain_error(error)
    assert match.entry.generic
    assert match.error_code == "ReplicaFooterInvalid"
    assert match.message == "replica footer is not a VHD footer"


def test_a_control_plane_condition_renders_its_message() -> None:
    match = control_plane_error(
        "CycleSequenceGap", expectedSequence=7, buffered=8, latestSequence=15, maxGap=8
    )
    assert match.entry.code == "MCP-3001"
    assert match.message.startswith("Cycle sequence 7 never arrived; 8 later cycles are waiting")
    assert match.values["latestSequence"] == "15"
    with pytest.raises(KeyError):
        control_plane_error("NoSuchCondition")
