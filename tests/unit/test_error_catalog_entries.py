"""The catalog as data: complete for Azure Migrate's documented replication errors, unambiguous, and every entry renders into something an
operator can act on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.domain.event import Severity
from shared.health.catalog import (
    CATALOG,
    Catalog,
    CatalogEntry,
    ClearedBy,
    EventType,
    MessageFormat,
    Origin,
    Scope,
    build_event,
    match_appliance_error,
    render,
)
from shared.health.catalog.entries import ENTRIES
from shared.health.catalog.models import template_fields

ALL = [pytest.param(entry, id=entry.name) for entry in CATALOG.entries]

# The errors the catalog must hold (Azure Migrate's documented ones and ours), with their attributes.
# (code, name, severity, retryable, auto_repairable, scope, event type)
REQUIRED = [
    (
        "1011",
        "DiskUploadTimedOut",
        Severity.WARNING,
        True,
        False,
        Scope.DISK,
        EventType.REPLICATION_CYCLE_FAILED_FOR_DISK,
    ),
    (
        "181008",
        "DisposeArtefactsTimedOut",
        Severity.WARNING,
        True,
        False,
        Scope.CYCLE,
        EventType.REPLICATION_CYCLE_FAILED,
    ),
    (
        "MCP-1001",
        "ChangedBlockTrackingReset",
        Severity.CRITICAL,
        False,
        True,
        Scope.MACHINE,
        EventType.REPLICATION_CYCLE_FAILED,
    ),
    (
        "MCP-1101",
        "VmwareServerRefusedConnection",
        Severity.WARNING,
        True,
        False,
        Scope.CYCLE,
        EventType.REPLICATION_CYCLE_FAILED,
    ),
    (
        "MCP-1102",
        "VmwareInvalidSnapshotConfiguration",
        Severity.CRITICAL,
        False,
        False,
        Scope.MACHINE,
        EventType.REPLICATION_CYCLE_FAILED,
    ),
    (
        "MCP-1103",
        "VmwareGenerateSnapshotHung",
        Severity.WARNING,
        True,
        False,
        Scope.CYCLE,
        EventType.REPLICATION_CYCLE_FAILED,
    ),
    (
        "MCP-1104",
        "VmwareFailedToConsolidateDisks",
        Severity.CRITICAL,
        False,
        False,
        Scope.MACHINE,
        EventType.REPLICATION_CYCLE_FAILED,
    ),
    (
        "MCP-1105",
        "VmwareAnotherTaskInProgress",
        Severity.WARNING,
        True,
        False,
        Scope.CYCLE,
        EventType.REPLICATION_CYCLE_FAILED,
    ),
    (
        "MCP-1106",
        "VmwareOperationNotAllowedInCurrentState",
        Severity.CRITICAL,
        False,
        False,
        Scope.MACHINE,
        EventType.REPLICATION_CYCLE_FAILED,
    ),
    (
        "MCP-1107",
        "VmwareSnapshotDiskSizeInvalid",
        Severity.CRITICAL,
        False,
        False,
        Scope.MACHINE,
        EventType.REPLICATION_CYCLE_FAILED,
    ),
    (
        "MCP-1108",
        "VmwareMemoryAllocationFailed",
        Severity.WARNING,
        True,
        False,
        Scope.CYCLE,
        EventType.REPLICATION_CYCLE_FAILED,
    ),
    (
        "MCP-1201",
        "KeyVaultConfigureManagedStorageAccountFailed",
        Severity.CRITICAL,
        False,
        False,
        Scope.MACHINE,
        EventType.REPLICATION_CYCLE_FAILED,
    ),
    (
        "MCP-1202",
        "KeyVaultGenerateSasDefinitionFailed",
        Severity.CRITICAL,
        False,
        False,
        Scope.MACHINE,
        EventType.REPLICATION_CYCLE_FAILED,
    ),
]


@pytest.mark.parametrize(("code", "name", "severity", "retryable", "auto", "scope", "event_type"), REQUIRED)
def test_the_documented_errors_are_catalogued(
    code: str, name: str, severity: Severity, retryable: bool, auto: bool, scope: Scope, event_type: EventType
) -> None:
    entry = CATALOG[code]
    assert (
        entry.name,
        entry.severity,
        entry.retryable,
        entry.auto_repairable,
        entry.scope,
        entry.event_type,
    ) == (
        name,
        severity,
        retryable,
        auto,
        scope,
        event_type,
    )
    assert entry.origin is Origin.APPLIANCE


def test_a_cbt_reset_is_repaired_automatically_only_for_machines_that_opted_in_and_needs_a_resync() -> None:
    entry = CATALOG["ChangedBlockTrackingReset"]
    assert entry.repair_requires_opt_in
    assert entry.cleared_by is ClearedBy.RESYNC


def test_codes_names_and_aliases_are_unique_case_insensitively() -> None:
    keys = [key for entry in CATALOG.entries for key in set(entry.codes())]
    assert len(keys) == len(set(keys))


def test_numbering_scheme() -> None:
    for entry in CATALOG.entries:
        if entry.code.isdigit():
            # All-digit codes are the products' own: Azure Migrate's, reported by the appliance, or Site
            # Recovery's failover errors, raised by the control plane's failover.
            if entry.event_type is EventType.FAILOVER_FAILED:
                assert entry.origin is Origin.CONTROL_PLANE, entry.code
            else:
                assert entry.origin is Origin.APPLIANCE, entry.code
            continue
        prefix, number = entry.code.split("-")
        assert prefix == "MCP" and len(number) == 4, entry.code
        family = number[0]
        if entry.generic:
            assert number == "9999"
        elif family == "1":
            assert entry.origin is Origin.APPLIANCE
        elif family == "4":
            assert entry.origin is Origin.CONTROL_PLANE, entry.code
            assert entry.event_type is EventType.FAILOVER_FAILED, entry.code
        elif number.startswith("51"):
            # An installed agent's conditions, which the control plane detects (a silent agent).
            assert entry.origin is Origin.CONTROL_PLANE, entry.code
            assert entry.event_type is EventType.MOBILITY_AGENT_NOT_RESPONDING, entry.code
        elif family == "5":
            # The push installation's: VSS exit codes, its own checks, an undocumented installer exit code.
            assert entry.event_type is EventType.MOBILITY_INSTALL_FAILED, entry.code
        else:
            assert family in "23" and entry.origin is Origin.CONTROL_PLANE, entry.code


def test_exactly_one_generic_entry_and_it_is_last() -> None:
    assert [e for e in CATALOG.entries if e.generic] == [CATALOG.entries[-1]]
    assert CATALOG.generic.template == "{message}"


@pytest.mark.parametrize("entry", ALL)
def test_every_entry_renders_with_causes_and_recommendations(entry: CatalogEntry) -> None:
    values = {name: f"value-of-{name}" for name in entry.placeholders}
    rendered = render(entry, **values)

    assert rendered.code == entry.code and rendered.severity is entry.severity
    assert rendered.causes and all(line.strip() for line in rendered.causes)
    assert rendered.recommendations and all(line.strip() for line in rendered.recommendations)
    assert rendered.missing == ()
    for text in (rendered.message, *rendered.causes, *rendered.recommendations):
        assert "{" not in text and "}" not in text, text
    for name in template_fields(entry.template):
        assert f"value-of-{name}" in rendered.message


@pytest.mark.parametrize("entry", ALL)
def test_every_entry_renders_without_values_showing_the_gaps(entry: CatalogEntry) -> None:
    rendered = render(entry)
    needed = {n for t in (entry.template, *entry.causes, *entry.recommendations) for n in template_fields(t)}
    assert set(rendered.missing) == needed
    for name in template_fields(entry.template):
        assert f"<{name}>" in rendered.message


@pytest.mark.parametrize("entry", ALL)
def test_every_format_matches_its_examples_to_this_entry_first(entry: CatalogEntry) -> None:
    # Catalog order decides between overlapping formats: each example must not be claimed earlier.
    for fmt in entry.formats:
        for example in fmt.examples:
            assert match_appliance_error(None, example).entry is entry, example


def test_every_operator_action_the_guide_names_is_in_the_recommendations() -> None:
    def text(name: str) -> str:
        return " ".join(CATALOG[name].recommendations)

    for name in ("DiskUploadTimedOut", "DisposeArtefactsTimedOut"):
        steps = text(name)
        for needle in (
            "Microsoft Azure Gateway Service",
            "net start asrgwy",
            "azcopy bench",
            "Snapshot Manager",
            "Test-NetConnection",
            "-Port 443",
            "TcpTestSucceeded",
        ):
            assert needle in steps, (name, needle)
    assert "net stop asrgwy" in text("VmwareServerRefusedConnection")
    assert "-PermissionsToStorage" in text("KeyVaultConfigureManagedStorageAccountFailed")
    assert "Repair replication" in text("ChangedBlockTrackingReset")
    assert "ctkEnabled" in text("ChangedBlockTrackingReset")
    assert "vMotion" in text("VmwareMemoryAllocationFailed")
    assert "Consolidate" in text("VmwareFailedToConsolidateDisks")


def test_render_refuses_a_placeholder_the_entry_does_not_have() -> None:
    with pytest.raises(ValueError, match="has no placeholder vmNmae"):
        render(CATALOG["1011"], vmNmae="web01")


def test_render_fills_causes_and_commands() -> None:
    rendered = render(CATALOG["MCP-1201"], keyVaultName="migratekv01", storageAccountName="migratelsa01")
    assert '-VaultName "migratekv01"' in " ".join(rendered.recommendations)
    assert "migratelsa01" in rendered.causes[0]
    assert rendered.missing == ("innerError",)


def test_build_event_carries_the_entry_and_the_verbatim_message() -> None:
    message = "The upload of data for disk [ds1] a.vmdk, d-1 of virtual machine a; vm-1 did not complete within the expected time."
    match = match_appliance_error("1011", message)
    at = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)

    event = build_event(
        match, event_id="e1", machine_id="m1", time=at, cycle_id="c7", values={"applianceName": "site-a"}
    )

    assert event.type == "Replication cycle failed for disk"
    assert event.error_code == "1011"
    assert event.message == message
    assert event.disk_id == "d-1"  # from the message when the caller did not know it
    assert event.cycle_id == "c7"
    assert event.severity is Severity.WARNING
    assert event.causes and event.recommendations
    assert any("site-a" in line for line in event.recommendations)


def _entry(**changes: object) -> dict[str, object]:
    base = CATALOG["1011"].model_dump()
    base.update(changes)
    return base


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"template": "disk {diskPth}"}, "undeclared placeholders"),
        ({"causes": ()}, "at least 1"),
        ({"recommendations": ("do this", " ")}, "blank line"),
        ({"severity": Severity.INFO}, "not Info"),
        ({"retryable": True, "cleared_by": ClearedBy.RESYNC}, "cannot need a resync"),
        ({"repair_requires_opt_in": True}, "needs auto_repairable"),
        ({"scope": Scope.CYCLE}, "failed for disk"),
        ({"code": "has space"}, "letters, digits"),
        (
            {"formats": [MessageFormat(pattern=r"^nothing$", examples=("something",))]},
            "does not match its example",
        ),
        ({"formats": [MessageFormat(pattern=r"^(?P<vmNme>.+)$", examples=("x",))]}, "captures undeclared"),
    ],
)
def test_a_bad_entry_fails_validation(changes: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        CatalogEntry.model_validate(_entry(**changes))


def test_a_bad_pattern_fails_validation() -> None:
    with pytest.raises(ValidationError, match="does not compile"):
        MessageFormat(pattern="(unclosed", examples=("x",))


def test_a_catalog_with_a_code_twice_or_no_generic_entry_fails_validation() -> None:
    twice = CATALOG["1011"].model_copy(update={"name": "Other"})
    with pytest.raises(ValidationError, match="'1011' names both"):
        Catalog(entries=(*ENTRIES[:-1], twice, ENTRIES[-1]))
    with pytest.raises(ValidationError, match="exactly one entry must be generic"):
        Catalog(entries=ENTRIES[:-1])


# Site Recovery's failover errors (code, name) and the words of their published meaning each must keep.
FAILOVER_ERRORS = [
    ("28031", "FailoverVmCreationFailed", ("quota", "policy", "size")),
    ("28092", "FailoverNicCreationFailed", ("network interface", "quota", "intermittent")),
    ("170010", "FailoverHydrationFailed", ("atapi, intelide, storflt, vmbus and", "storvsc", "DHCP")),
]


@pytest.mark.parametrize(("code", "name", "words"), FAILOVER_ERRORS)
def test_site_recoverys_failover_errors_are_catalogued(code: str, name: str, words: tuple[str, ...]) -> None:
    entry = CATALOG[code]
    assert entry.name == name
    assert (entry.severity, entry.retryable, entry.auto_repairable, entry.scope, entry.event_type) == (
        Severity.CRITICAL,
        False,
        False,
        Scope.MACHINE,
        EventType.FAILOVER_FAILED,
    )
    causes = " ".join(entry.causes)
    for word in words:
        assert word in causes, word
    assert {"step", "reason", "vmName"} <= set(entry.placeholders)
    assert entry.references[0].endswith(f"#failover-failed-with-error-id-{code}")
    # Every failover error tells the operator what was left behind and how to go on.
    assert any("run the failover again" in step for step in entry.recommendations)


def test_the_no_hydration_script_is_in_the_hydration_failures_steps() -> None:
    steps = " ".join(CATALOG["170010"].recommendations)
    assert "Script-no-hydration.ps1` in an elevated PowerShell" in steps
    assert "Script-no-hydration.ps1 -set" in steps
    assert "hv_storvsc" in steps
