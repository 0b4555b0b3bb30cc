"""Which Mobility service installer serves which operating system.

Two steps, both data-driven: `recognise_os` turns a free-form OS string (as an appliance, `/etc/os-release`
or an operator writes it) into a `Release` (family and release parts, nothing else), by an ordered list
of detectors; `SUPPORT_TABLE` then maps releases onto the vendor's installers, one row per installer.
A row's key matches a release when it is a prefix of the release's parts: the row `SLES 12` serves
`SLES 12 SP5`, the row `SLES 11 SP3` serves only that service pack.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import Field as PydanticField

from shared.domain.errors import FieldProblem, ValidationFailed
from shared.domain.wire import WireModel
from shared.mobility.installers import Installer, newest_for


class Family(StrEnum):
    WINDOWS_SERVER = "Windows Server"
    RHEL = "Red Hat Enterprise Linux"
    CENTOS = "CentOS"
    ORACLE_LINUX = "Oracle Linux"
    SLES = "SUSE Linux Enterprise Server"
    UBUNTU = "Ubuntu"
    DEBIAN = "Debian"
    OTHER = "other"


@dataclass(frozen=True)
class Release:
    """A recognised OS release: its family and its release parts, most significant first."""

    family: Family
    parts: tuple[str, ...]
    label: str = ""
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.label or f"{self.family.value} {_version_text(self.family, self.parts)}".strip()


def _version_text(family: Family, parts: tuple[str, ...]) -> str:
    # Oracle Linux is served by minor release (6.4, 6.5); everything else reads as words (2012 R2, 11 SP3).
    return ".".join(parts) if family is Family.ORACLE_LINUX else " ".join(parts)


def _parts(family: Family, version: str) -> tuple[str, ...]:
    return tuple(version.split("." if family is Family.ORACLE_LINUX else " "))


@dataclass(frozen=True)
class InstallerRow:
    """One installer of the vendor's table and the releases it serves."""

    os_token: str
    serves: tuple[tuple[Family, tuple[str, ...]], ...]
    # From agent 9.36 these installers are not in the vendor's bundle: the operator downloads the
    # latest one and places it by hand (here: uploads it to the catalog).
    placed_by_hand: bool = False

    @property
    def systems(self) -> list[str]:
        return [f"{family.value} {_version_text(family, parts)}" for family, parts in self.serves]

    def serves_release(self, release: Release) -> bool:
        return any(
            family is release.family and release.parts[: len(parts)] == parts for family, parts in self.serves
        )


def _each(family: Family, *versions: str) -> tuple[tuple[Family, tuple[str, ...]], ...]:
    return tuple((family, _parts(family, v)) for v in versions)


# Short names keep the table one row per installer.
_W, _RH, _CO, _OL, _SL, _UB, _DE = (
    Family.WINDOWS_SERVER,
    Family.RHEL,
    Family.CENTOS,
    Family.ORACLE_LINUX,
    Family.SLES,
    Family.UBUNTU,
    Family.DEBIAN,
)
SUPPORT_TABLE: tuple[InstallerRow, ...] = (
    InstallerRow("Windows", _each(_W, "2016", "2012 R2", "2012", "2008 R2 SP1")),
    InstallerRow("RHEL5-64", _each(_RH, "5") + _each(_CO, "5"), placed_by_hand=True),
    InstallerRow("RHEL6-64", _each(_RH, "6") + _each(_CO, "6")),
    InstallerRow("RHEL7-64", _each(_RH, "7") + _each(_CO, "7")),
    InstallerRow("RHEL8-64", _each(_RH, "8") + _each(_CO, "8")),
    InstallerRow("SLES11-SP3-64", _each(_SL, "11 SP3"), placed_by_hand=True),
    InstallerRow("SLES11-SP4-64", _each(_SL, "11 SP4")),
    InstallerRow("SLES12-64", _each(_SL, "12")),
    InstallerRow("SLES15-64", _each(_SL, "15")),
    InstallerRow("OL6-64", _each(_OL, "6.4", "6.5")),
    InstallerRow("OL7-64", _each(_OL, "7")),
    InstallerRow("OL8-64", _each(_OL, "8")),
    InstallerRow("UBUNTU-14.04-64", _each(_UB, "14.04")),
    InstallerRow("UBUNTU-16.04-64", _each(_UB, "16.04")),
    InstallerRow("UBUNTU-18.04-64", _each(_UB, "18.04")),
    InstallerRow("UBUNTU-20.04-64", _each(_UB, "20.04")),
    InstallerRow("DEBIAN7-64", _each(_DE, "7"), placed_by_hand=True),
    InstallerRow("DEBIAN8-64", _each(_DE, "8")),
    InstallerRow("DEBIAN9-64", _each(_DE, "9")),
)

SUPPORTED_SYSTEMS: tuple[str, ...] = tuple(system for row in SUPPORT_TABLE for system in row.systems)


class UnsupportedOs(ValidationFailed):
    code = "OsNotSupported"

    def __init__(self, os: str, release: Release | None, reason: str = "") -> None:
        seen = f"recognised as {release.name}, " if release is not None else "not recognised, "
        problem = (
            f"{os!r} is {seen}which no Mobility service installer supports{reason}; supported (64-bit "
            f"only): {', '.join(SUPPORTED_SYSTEMS)}"
        )
        super().__init__([FieldProblem("os", problem)], message=f"operating system not supported: {problem}")
        self.release = release


# --- recognising an OS string -------------------------------------------------------------------------

_VERSION = re.compile(r"(?<![\w.])(\d+)(?:\.(\d+))?")
_SERVICE_PACK = re.compile(r"\bsp\s*(\d+)\b|\bservice\s+pack\s+(\d+)\b|\bpatchlevel\s*=?\s*(\d+)")


def _major_minor(text: str) -> tuple[str, ...]:
    match = _VERSION.search(text)
    if match is None:
        return ()
    return (match[1],) if match[2] is None else (match[1], str(int(match[2])))


# Windows Server releases by kernel version, for strings that carry only the build ("6.3.9600").
_WINDOWS_BUILDS: dict[tuple[int, int], str] = {
    (6, 0): "2008",
    (6, 1): "2008 R2",
    (6, 2): "2012",
    (6, 3): "2012 R2",
}
_WINDOWS_10_BUILDS: dict[int, str] = {14393: "2016", 17763: "2019", 20348: "2022", 26100: "2025"}


def _windows(text: str) -> Release | None:
    if "windows" not in text:
        return None
    build = re.search(r"\b(\d+)\.(\d+)\.(\d+)\b", text)
    year = re.search(r"\b(2003|2008|2012|2016|2019|2022|2025)\b(\s*r2)?", text)
    if year is not None:
        version = year[1] + (" R2" if year[2] else "")
    elif build is not None:
        kernel = (int(build[1]), int(build[2]))
        version = _WINDOWS_BUILDS.get(kernel) or _WINDOWS_10_BUILDS.get(int(build[3]), "")
        if kernel == (10, 0) and not version:
            return Release(Family.OTHER, (), label=f"Windows build {build[3]}")
    else:
        version = ""
    if not version or ("server" not in text and year is None):
        return Release(Family.OTHER, (), label="Windows (not a supported Windows Server release)")
    if version != "2008 R2":
        return Release(Family.WINDOWS_SERVER, tuple(version.split()))
    pack = _SERVICE_PACK.search(text)
    if pack is not None:
        return Release(Family.WINDOWS_SERVER, ("2008", "R2", f"SP{next(g for g in pack.groups() if g)}"))
    if build is not None:
        # Build 7600 is 2008 R2 without a service pack; 7601 is SP1.
        return Release(Family.WINDOWS_SERVER, ("2008", "R2", "SP1" if int(build[3]) >= 7601 else "SP0"))
    return Release(
        Family.WINDOWS_SERVER,
        ("2008", "R2", "SP1"),
        notes=("the OS string does not say the service pack: the installer needs Service Pack 1",),
    )


def _after(text: str, name: str) -> str:
    return text[text.index(name) + len(name) :]


def _family(family: Family, *names: str) -> Callable[[str], Release | None]:
    def detect(text: str) -> Release | None:
        for name in names:
            found = re.search(rf"(?<![a-z]){re.escape(name)}(?![a-z])", text)
            if found is not None:
                return Release(family, _major_minor(text[found.end() :]))
        return None

    return detect


def _rhel_like(family: Family, *names: str) -> Callable[[str], Release | None]:
    """RHEL and CentOS releases are served by major version: 7.9 is a 7."""
    detect = _family(family, *names)

    def major_only(text: str) -> Release | None:
        release = detect(text)
        return None if release is None else Release(family, release.parts[:1])

    return major_only


def _centos(text: str) -> Release | None:
    if "centos" in text and "stream" in text:
        return Release(Family.OTHER, (), label="CentOS Stream")
    return _rhel_like(Family.CENTOS, "centos")(text)


def _sles(text: str) -> Release | None:
    if "opensuse" in text:
        return Release(Family.OTHER, (), label="openSUSE")
    for name in ("suse linux enterprise server", "suse linux enterprise", "sles", "suse"):
        if name in text:
            rest = _after(text, name)
            major = _VERSION.search(rest)
            if major is None:
                return Release(Family.SLES, ())
            pack = _SERVICE_PACK.search(rest)
            # Without "SPn", "12.5" is how os-release writes 12 SP5.
            level = next(g for g in pack.groups() if g) if pack is not None else major[2] or "0"
            return Release(Family.SLES, (major[1], f"SP{int(level)}"))
    return None


def _ubuntu(text: str) -> Release | None:
    if "ubuntu" not in text:
        return None
    match = re.search(r"\b(\d{2})\.(\d{2})", _after(text, "ubuntu"))
    return Release(Family.UBUNTU, (f"{match[1]}.{match[2]}",) if match else ())


# Most specific first: "Oracle Linux" before anything matching "linux"; openSUSE before SUSE.
DETECTORS: tuple[Callable[[str], Release | None], ...] = (
    _windows,
    _family(Family.ORACLE_LINUX, "oracle enterprise linux", "oracle linux server", "oracle linux", "ol"),
    _centos,
    _rhel_like(Family.RHEL, "red hat enterprise linux server", "red hat enterprise linux", "rhel", "red hat"),
    _sles,
    _ubuntu,
    _rhel_like(Family.DEBIAN, "debian gnu/linux", "debian"),
)


def recognise_os(os: str) -> Release | None:
    """The release an OS string names, or None when no detector knows it."""
    text = " ".join(os.lower().split())
    for detect in DETECTORS:
        release = detect(text)
        if release is not None:
            return release
    return None


@dataclass(frozen=True)
class Resolved:
    release: Release
    row: InstallerRow
    notes: tuple[str, ...] = field(default=())


def resolve_os(os: str) -> Resolved:
    """The installer row serving `os`, or UnsupportedOs (400) naming what is supported."""
    if not os.strip():
        raise ValidationFailed.single("os", "is required: the OS name and version, e.g. 'Ubuntu 20.04'")
    release = recognise_os(os)
    if release is None or release.family is Family.OTHER:
        raise UnsupportedOs(os, release)
    if not release.parts:
        raise UnsupportedOs(os, release, reason=" without a version: add the release, e.g. 'Ubuntu 20.04'")
    for row in SUPPORT_TABLE:
        if row.serves_release(release):
            return Resolved(release, row, release.notes)
    raise UnsupportedOs(os, release)


# --- what the resolve route answers ---------------------------------------------------------------------


class CatalogStatus(StrEnum):
    AVAILABLE = "available"
    NONE_UPLOADED = "noneUploaded"


class OsResolution(WireModel):
    """Which installer serves an OS, and whether the catalog has one for it."""

    os: str = PydanticField(description="the OS string as asked")
    recognised_as: str = PydanticField(description="e.g. 'Red Hat Enterprise Linux 7'")
    installer_os: str = PydanticField(description="the vendor's OS token of the installer, e.g. 'RHEL7-64'")
    installer_pattern: str = PydanticField(description="the name the installer for this OS has")
    catalog_status: CatalogStatus
    installer: Installer | None = PydanticField(
        description="the newest catalog installer for this OS; null when none is uploaded yet"
    )
    placed_by_hand: bool = PydanticField(
        description="true for RHEL 5/CentOS 5, SLES 11 SP3 and Debian 7: from agent 9.36 their installer "
        "is not in the vendor's bundle and is downloaded and placed by hand"
    )
    instructions: list[str] = PydanticField(default_factory=list, description="what to do next, if anything")


def installer_pattern(os_token: str) -> str:
    extension = "exe" if os_token == "Windows" else "tar.gz"
    return f"Microsoft-ASR_UA_<version>_{os_token}_GA_<date>_release.{extension}"


def describe_resolution(os: str, installers: Iterable[Installer]) -> OsResolution:
    resolved = resolve_os(os)
    row = resolved.row
    newest = newest_for(installers, row.os_token)
    instructions = list(resolved.notes)
    if row.placed_by_hand:
        instructions.append(
            f"From agent 9.36 the installer for {' and '.join(row.systems)} is not part of the vendor's "
            f"installer bundle: download the latest {row.os_token} installer (the Site Recovery "
            "release notes link it with each update rollup) and upload it with PUT "
            f"/api/mobility/installers/{installer_pattern(row.os_token)}; the push installation serves "
            "it from this catalog (the vendor's configuration server would need it copied into "
            "INSTALL_DIR\\home\\svsystems\\pushinstallsvc\\repository on it and on every scale-out "
            "process server, then its InMage PushInstall service restarted)."
        )
    if newest is None:
        instructions.append(
            f"No {row.os_token} installer is in the catalog yet: upload one with PUT "
            f"/api/mobility/installers/{installer_pattern(row.os_token)}."
        )
    return OsResolution(
        os=os,
        recognised_as=resolved.release.name,
        installer_os=row.os_token,
        installer_pattern=installer_pattern(row.os_token),
        catalog_status=CatalogStatus.NONE_UPLOADED if newest is None else CatalogStatus.AVAILABLE,
        installer=newest,
        placed_by_hand=row.placed_by_hand,
        instructions=instructions,
    )
