"""Mobility installers: vendor name parsing, and every OS row of the installer table resolving to its
installer (recognised leniently from the strings machines really report, refused precisely otherwise)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.errors import ValidationFailed
from shared.mobility.installers import (
    OS_TOKENS,
    Installer,
    InstallerKind,
    newest_for,
    parse_installer_name,
    sort_installers,
)
from shared.mobility.os_support import (
    SUPPORT_TABLE,
    SUPPORTED_SYSTEMS,
    CatalogStatus,
    UnsupportedOs,
    describe_resolution,
    resolve_os,
)

NOW = datetime(2026, 12, 2, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "version", "os", "kind", "date"),
    [
        (
            "Microsoft-ASR_UA_9.56.0.0_UBUNTU-20.04-64_GA_20230525_release.tar.gz",
            "9.56.0.0",
            "UBUNTU-20.04-64",
            InstallerKind.TAR_GZ,
            "20230525",
        ),
        (
            "Microsoft-ASR_UA_9.56.0.0_Windows_GA_20230525_release.exe",
            "9.56.0.0",
            "Windows",
            InstallerKind.EXE,
            "20230525",
        ),
        (
            "Microsoft-ASR_UA_9.30.0.0_Windows_GA_22Oct2019_release.exe",
            "9.30.0.0",
            "Windows",
            InstallerKind.EXE,
            "22Oct2019",
        ),
        (
            "Microsoft-ASR_UA_9.36.0.0_SLES11-SP3-64_GA_01Jun2020_Release.tar.gz",
            "9.36.0.0",
            "SLES11-SP3-64",
            InstallerKind.TAR_GZ,
            "01Jun2020",
        ),
        (
            "Microsoft-ASR_UA_9.48.0.0_rhel7-64_GA_20220601_RELEASE.tar.gz",
            "9.48.0.0",
            "RHEL7-64",
            InstallerKind.TAR_GZ,
            "20220601",
        ),
    ],
)
def test_vendor_names_parse(name: str, version: str, os: str, kind: InstallerKind, date: str) -> None:
    parsed = parse_installer_name(name)
    assert (parsed.version, parsed.os, parsed.kind, parsed.build_date) == (version, os, kind, date)
    assert parsed.file_name == name


@pytest.mark.parametrize("token", OS_TOKENS)
def test_every_real_os_token_parses(token: str) -> None:
    extension = "exe" if token == "Windows" else "tar.gz"
    assert (
        parse_installer_name(f"Microsoft-ASR_UA_9.56.0.0_{token}_GA_20230525_release.{extension}").os == token
    )


@pytest.mark.parametrize(
    "name",
    [
        "MobilityServiceInstaller.exe",
        "Microsoft-ASR_UA_9.56.0.0_UBUNTU-20.04-64_GA_20230525_release.zip",
        "Microsoft-ASR_UA_9.56.0.0_UBUNTU-22.04-64_GA_20230525_release.tar.gz",  # no such installer
        "Microsoft-ASR_UA_9.56.0.0_Windows_GA_20230525_release.tar.gz",  # Windows is the .exe
        "Microsoft-ASR_UA_9.56.0.0_RHEL7-64_GA_20230525_release.exe",  # Linux is a tarball
        "Microsoft-ASR_UA_latest_RHEL7-64_GA_20230525_release.tar.gz",
        "Microsoft-ASR_UA_9.56.0.0_RHEL7-64_GA_20230525_debug.tar.gz",
        "../Microsoft-ASR_UA_9.56.0.0_RHEL7-64_GA_20230525_release.tar.gz",
    ],
)
def test_bad_names_are_refused_with_the_pattern_and_an_example(name: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_installer_name(name)
    problem = refused.value.details[0]["problem"]
    assert refused.value.details[0]["field"] == "fileName"
    assert "Microsoft-ASR_UA_<version>_<OS>_GA_<date>_release.(exe|tar.gz)" in problem
    assert "Microsoft-ASR_UA_9.56.0.0_UBUNTU-20.04-64_GA_20230525_release.tar.gz" in problem


# Every OS row of the installer table, as the table writes it and as machines report it.
TABLE_ROWS: list[tuple[str, str]] = [
    ("Windows Server 2016", "Windows"),
    ("Windows Server 2016 Datacenter 10.0.14393", "Windows"),
    ("Windows Server 2012 R2", "Windows"),
    ("Windows Server 2012 R2 Datacenter", "Windows"),
    ("Windows Server 6.3.9600", "Windows"),
    ("Windows Server 2012", "Windows"),
    ("Windows Server 2012 Standard", "Windows"),
    ("Windows Server 2008 R2 SP1", "Windows"),
    ("Windows Server 2008 R2 Enterprise Service Pack 1", "Windows"),
    ("Windows Server 2008 R2 Standard 6.1.7601", "Windows"),
    ("Red Hat Enterprise Linux 5", "RHEL5-64"),
    ("Red Hat Enterprise Linux Server release 5.11 (Tikanga)", "RHEL5-64"),
    ("CentOS 5", "RHEL5-64"),
    ("CentOS release 5.11 (Final)", "RHEL5-64"),
    ("Red Hat Enterprise Linux 6", "RHEL6-64"),
    ("RHEL 6.10", "RHEL6-64"),
    ("CentOS 6", "RHEL6-64"),
    ("CentOS Linux release 6.10", "RHEL6-64"),
    ("Red Hat Enterprise Linux 7", "RHEL7-64"),
    ("Red Hat Enterprise Linux Server 7.9", "RHEL7-64"),
    ("CentOS 7", "RHEL7-64"),
    ("CentOS Linux 7 (Core)", "RHEL7-64"),
    ("Red Hat Enterprise Linux 8", "RHEL8-64"),
    ("Red Hat Enterprise Linux 8.6 (Ootpa)", "RHEL8-64"),
    ("CentOS 8", "RHEL8-64"),
    ("CentOS Linux 8", "RHEL8-64"),
    ("SUSE Linux Enterprise Server 12 SP1", "SLES12-64"),
    ("SUSE Linux Enterprise Server 12 SP2", "SLES12-64"),
    ("SUSE Linux Enterprise Server 12 SP3", "SLES12-64"),
    ("SUSE Linux Enterprise Server 12 SP5", "SLES12-64"),
    ("SLES 12.4", "SLES12-64"),
    ("SUSE Linux Enterprise Server 11 SP3", "SLES11-SP3-64"),
    ("SLES 11 SP3", "SLES11-SP3-64"),
    ("SUSE Linux Enterprise Server 11 SP4", "SLES11-SP4-64"),
    ("SUSE Linux Enterprise Server 11 (x86_64) PATCHLEVEL = 4", "SLES11-SP4-64"),
    ("SUSE Linux Enterprise Server 15", "SLES15-64"),
    ("SUSE Linux Enterprise Server 15 SP4", "SLES15-64"),
    ("Oracle Enterprise Linux 6.4", "OL6-64"),
    ("Oracle Enterprise Linux 6.5", "OL6-64"),
    ("Oracle Linux Server 6.5", "OL6-64"),
    ("Oracle Enterprise Linux 7", "OL7-64"),
    ("Oracle Linux Server 7.9", "OL7-64"),
    ("Oracle Enterprise Linux 8", "OL8-64"),
    ("Oracle Linux 8.7", "OL8-64"),
    ("Ubuntu Linux 14.04", "UBUNTU-14.04-64"),
    ("Ubuntu 14.04.6 LTS", "UBUNTU-14.04-64"),
    ("Ubuntu Linux 16.04 LTS", "UBUNTU-16.04-64"),
    ("Ubuntu Linux 18.04 LTS", "UBUNTU-18.04-64"),
    ("Ubuntu 18.04.6 LTS", "UBUNTU-18.04-64"),
    ("Ubuntu Linux 20.04 LTS", "UBUNTU-20.04-64"),
    ("Ubuntu 20.04.6 LTS (Focal Fossa)", "UBUNTU-20.04-64"),
    ("Debian 7", "DEBIAN7-64"),
    ("Debian GNU/Linux 7 (wheezy)", "DEBIAN7-64"),
    ("Debian 8", "DEBIAN8-64"),
    ("Debian 8.11", "DEBIAN8-64"),
    ("Debian 9", "DEBIAN9-64"),
    ("Debian GNU/Linux 9", "DEBIAN9-64"),
]


@pytest.mark.parametrize(("os", "token"), TABLE_ROWS)
def test_every_row_of_the_installer_table_resolves_to_its_installer(os: str, token: str) -> None:
    assert resolve_os(os).row.os_token == token


def test_the_table_covers_every_installer_and_every_system_once() -> None:
    assert {row.os_token for row in SUPPORT_TABLE} == set(OS_TOKENS)
    assert len(SUPPORTED_SYSTEMS) == len(set(SUPPORTED_SYSTEMS))
    assert {resolve_os(system).row.os_token for system in SUPPORTED_SYSTEMS} == set(OS_TOKENS)


@pytest.mark.parametrize(
    "os",
    [
        "Windows Server 2019 Datacenter",
        "Windows Server 10.0.17763",
        "Windows Server 2008 R2 Standard 6.1.7600",  # no service pack
        "Windows Server 2008",
        "Windows 10 Pro",
        "Red Hat Enterprise Linux 9.2",
        "CentOS Stream 8",
        "Oracle Linux Server 6.6",  # the OL6 installer serves 6.4 and 6.5 only
        "SUSE Linux Enterprise Server 11 SP2",
        "SUSE Linux Enterprise Server 11",
        "openSUSE Leap 15.4",
        "Ubuntu 22.04.3 LTS",
        "Ubuntu 19.10",
        "Debian GNU/Linux 10 (buster)",
        "Fedora Linux 38",
        "Ubuntu",
    ],
)
def test_an_os_outside_the_table_is_refused_with_what_is_supported(os: str) -> None:
    with pytest.raises(UnsupportedOs) as refused:
        resolve_os(os)
    assert refused.value.code == "OsNotSupported"
    assert "Ubuntu 20.04" in refused.value.message and "Windows Server 2008 R2 SP1" in refused.value.message


def test_the_hand_placed_installers_say_what_to_do() -> None:
    for os in ("CentOS 5", "SUSE Linux Enterprise Server 11 SP3", "Debian 7"):
        resolution = describe_resolution(os, [])
        assert resolution.placed_by_hand
        assert any(
            "9.36" in line and "PUT /api/mobility/installers/" in line for line in resolution.instructions
        )
    assert not describe_resolution("Debian 8", []).placed_by_hand


def installer(name: str, uploaded: datetime = NOW) -> Installer:
    parsed = parse_installer_name(name)
    return Installer(**parsed.model_dump(), size_bytes=10, sha256="0" * 64, uploaded_at=uploaded)


def test_resolution_names_the_newest_catalog_installer_or_none() -> None:
    old = installer("Microsoft-ASR_UA_9.9.0.0_UBUNTU-18.04-64_GA_20180101_release.tar.gz")
    new = installer("Microsoft-ASR_UA_9.56.0.0_UBUNTU-18.04-64_GA_20230525_release.tar.gz")
    other = installer("Microsoft-ASR_UA_9.60.0.0_UBUNTU-20.04-64_GA_20240101_release.tar.gz")
    resolution = describe_resolution("Ubuntu 18.04.6 LTS", [old, new, other])
    assert resolution.catalog_status is CatalogStatus.AVAILABLE
    assert resolution.installer == new  # 9.56 beats 9.9: versions compare as numbers
    none = describe_resolution("Debian 9", [old, new, other])
    assert none.catalog_status is CatalogStatus.NONE_UPLOADED and none.installer is None
    assert none.installer_pattern == "Microsoft-ASR_UA_<version>_DEBIAN9-64_GA_<date>_release.tar.gz"
    assert any("No DEBIAN9-64 installer" in line for line in none.instructions)
    assert newest_for([old, new], "Windows") is None
    assert [i.version for i in sort_installers([old, other, new])] == ["9.56.0.0", "9.9.0.0", "9.60.0.0"]


def test_2008_r2_without_a_service_pack_in_the_string_says_sp1_is_needed() -> None:
    resolved = describe_resolution("Windows Server 2008 R2 Datacenter", [])
    assert resolved.installer_os == "Windows"
    assert any("Service Pack 1" in line for line in resolved.instructions)
