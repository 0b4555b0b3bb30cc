"""Which guest OS versions get automatic hydration (those Azure Migrate lists plus newer releases)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SupportLevel(StrEnum):
    LISTED = "automatic"  # listed by Azure Migrate as prepared automatically
    NEWER = "automatic (newer release)"  # releases after that list, prepared the same way
    MANUAL = "manual preparation required"


@dataclass(frozen=True)
class Rule:
    distro: str
    major: int
    minors: tuple[int, ...] | None  # None: every minor release
    level: SupportLevel


def _r(distro: str, major: int, minors: tuple[int, ...] | None, level: SupportLevel) -> Rule:
    return Rule(distro, major, minors, level)


S, N = SupportLevel.LISTED, SupportLevel.NEWER

# SLES minors are service packs; Ubuntu minors are the month (04 or 10).
LINUX_RULES: tuple[Rule, ...] = (
    _r("rhel", 9, None, N),
    _r("rhel", 8, None, S),
    _r("rhel", 7, (0, 4, 5, 6, 7, 8, 9), S),
    _r("rhel", 6, None, S),
    _r("centos", 8, None, S),
    _r("centos", 7, (4, 5, 6, 7), S),
    _r("centos", 6, None, S),
    _r("rocky", 9, None, N),
    _r("almalinux", 9, None, N),
    _r("sles", 15, (0, 1), S),
    _r("sles", 15, tuple(range(2, 10)), N),
    _r("sles", 12, None, S),
    _r("ubuntu", 24, (4,), N),
    _r("ubuntu", 22, (4,), N),
    _r("ubuntu", 20, (4,), S),
    _r("ubuntu", 19, (4, 10), S),
    _r("ubuntu", 18, (4,), S),
    _r("ubuntu", 16, (4,), S),
    _r("ubuntu", 14, (4,), S),
    _r("debian", 12, None, N),
    _r("debian", 11, None, N),
    _r("debian", 10, None, N),
    _r("debian", 9, None, S),
    _r("debian", 8, None, S),
    _r("debian", 7, None, S),
    _r("ol", 7, (7,), S),
    _r("ol", 6, None, S),
)


def linux_support(distro: str, major: int, minor: int) -> SupportLevel:
    for rule in LINUX_RULES:
        if rule.distro == distro and rule.major == major and (rule.minors is None or minor in rule.minors):
            return rule.level
    return SupportLevel.MANUAL


@dataclass(frozen=True)
class WindowsRelease:
    name: str
    level: SupportLevel


# (major, minor, first build) of each Windows Server release, newest first.
WINDOWS_SERVER: tuple[tuple[int, int, int, WindowsRelease], ...] = (
    (10, 0, 26100, WindowsRelease("Windows Server 2025", N)),
    (10, 0, 20348, WindowsRelease("Windows Server 2022", N)),
    (10, 0, 17763, WindowsRelease("Windows Server 2019", N)),
    (10, 0, 14393, WindowsRelease("Windows Server 2016", S)),
    (6, 3, 0, WindowsRelease("Windows Server 2012 R2", S)),
    (6, 2, 0, WindowsRelease("Windows Server 2012", S)),
    (6, 1, 0, WindowsRelease("Windows Server 2008 R2", S)),
    (6, 0, 0, WindowsRelease("Windows Server 2008", S)),
)


def windows_release(major: int, minor: int, build: int, server: bool) -> WindowsRelease:
    if not server:
        return WindowsRelease(f"Windows client {major}.{minor} build {build}", SupportLevel.MANUAL)
    for rmaj, rmin, first_build, release in WINDOWS_SERVER:
        if (major, minor) != (rmaj, rmin) or build < first_build:
            continue
        if rmaj < 10 or build == first_build:
            return release
        # A server build between the long-term releases (a semi-annual/annual channel build):
        # Azure Migrate covers "Windows Server 2008 or later", so it is still prepared automatically.
        return WindowsRelease(f"Windows Server build {build}", SupportLevel.LISTED)
    if (major, minor) >= (6, 0):
        return WindowsRelease(f"Windows Server {major}.{minor} build {build}", SupportLevel.LISTED)
    return WindowsRelease(f"Windows Server {major}.{minor} build {build}", SupportLevel.MANUAL)
