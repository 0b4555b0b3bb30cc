"""The shape of a catalog entry, validated when the catalog is imported.

A bad entry (a template naming an undeclared placeholder, a sample message its own pattern does not
match, a retryable error that only a resync clears, two entries claiming one code) fails the import of
`shared.health.catalog`, so it fails every test and every function start, never an operator's event.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from enum import StrEnum
from functools import cached_property
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.domain.event import Severity
from shared.domain.health import ClearedBy

# Camel case, as the wire models spell fields: placeholders travel into event details unchanged.
_PLACEHOLDER = re.compile(r"^[a-z][A-Za-z0-9]*$")
# Catalog codes are what `Event.error_code` and `MachineError.code` carry: short, no spaces.
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")


class Scope(StrEnum):
    """What one occurrence puts out of action: the cycle, one disk, the whole machine, or every machine
    the appliance replicates."""

    CYCLE = "cycle"
    DISK = "disk"
    MACHINE = "machine"
    APPLIANCE = "appliance"


class EventType(StrEnum):
    """`Event.type` values. The first two are Azure Migrate's; the others are the control plane's health
    events, the failure of a failover to Azure, of a reprotect and of a Mobility service installation, and a
    silent Mobility agent."""

    REPLICATION_CYCLE_FAILED = "Replication cycle failed"
    REPLICATION_CYCLE_FAILED_FOR_DISK = "Replication cycle failed for disk"
    RPO_THRESHOLD_EXCEEDED = "RPO threshold exceeded"
    APPLIANCE_NOT_RESPONDING = "Appliance not responding"
    FAILOVER_FAILED = "Failover failed"
    REPROTECT_FAILED = "Reprotect failed"
    MOBILITY_INSTALL_FAILED = "Mobility service installation failed"
    MOBILITY_AGENT_NOT_RESPONDING = "Mobility agent not responding"
    PLANNED_FAILOVER_FAILED = "Planned failover failed"


class Origin(StrEnum):
    APPLIANCE = "appliance"  # reported by the appliance in a CycleFailed event (Azure Migrate's errors)
    CONTROL_PLANE = "controlPlane"  # raised by this control plane (apply engine, orchestration, monitors)


class MessageFormat(BaseModel):
    """One fixed message format: a regex whose named groups are the entry's placeholders, and the sample
    messages (verbatim from the source document) it must match."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str
    examples: tuple[str, ...] = Field(min_length=1)

    @cached_property
    def regex(self) -> re.Pattern[str]:
        # Products reflow and recase these texts between versions (the guide itself spells "An Internal
        # error" and "An internal error"): match case-insensitively and across line breaks.
        return re.compile(self.pattern, re.IGNORECASE | re.DOTALL)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from exc
        return value

    def extract(self, message: str) -> dict[str, str] | None:
        """The placeholders this format finds in `message` (empty groups left out), or None."""
        found = self.regex.match(message.strip())
        if found is None:
            return None
        return {
            k: v.strip()
            for k, v in found.groupdict().items()
            if not k.startswith("_") and v is not None and v.strip()
        }


def template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


class CatalogEntry(BaseModel):
    """One error operators can meet, with everything they need to act on it without other documents."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(description="stable code, as it appears in events (see docs/error-catalog.md)")
    name: str = Field(description="PascalCase identifier, e.g. DiskUploadTimedOut")
    aliases: tuple[str, ...] = Field(
        default=(), description="other codes that mean this entry, e.g. the apply engine's exception codes"
    )
    title: str = Field(description="one line for tables and alerts")
    action: str = Field(max_length=160, description="what to do, in one line, for the catalog table")
    origin: Origin
    template: str = Field(description="the message, with {placeholders}, as the product shows it")
    placeholders: dict[str, str] = Field(default_factory=dict, description="placeholder -> what it holds")
    formats: tuple[MessageFormat, ...] = Field(
        default=(), description="fixed formats to recognise the message by when no code is reported"
    )
    causes: tuple[str, ...] = Field(min_length=1)
    recommendations: tuple[str, ...] = Field(min_length=1)
    references: tuple[str, ...] = Field(default=(), description="VMware KB / Microsoft links for the error")
    severity: Severity
    retryable: bool = Field(
        description="transient: the next scheduled cycle (or a re-upload) can succeed with nobody changing anything"
    )
    auto_repairable: bool = Field(
        description="the control plane can repair it by itself by resyncing the disk or machine"
    )
    repair_requires_opt_in: bool = Field(
        default=False,
        description='auto-repair only if the machine opted into "Automatically repair replication"',
    )
    resynced_on_rejection: bool = Field(
        default=False,
        description="a cycle rejected with it is discarded whole and every disk it carried gets a ResyncDisk "
        "command, every time: not the bounded auto-repair (no Resyncing state, no attempt limit)",
    )
    scope: Scope
    event_type: EventType
    cleared_by: ClearedBy
    umbrella: bool = Field(
        default=False,
        description="a catch-all for a family of messages: a more specific entry matched by message wins "
        "over it even when the reported code named it",
    )
    generic: bool = Field(default=False, description="the entry for errors nothing else matches")

    @field_validator("code", "aliases")
    @classmethod
    def _code_syntax(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        for code in (value,) if isinstance(value, str) else value:
            if not _CODE.fullmatch(code):
                raise ValueError(f"code {code!r} must be 1-64 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("name")
    @classmethod
    def _name_syntax(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"name {value!r} must be PascalCase letters and digits")
        return value

    @field_validator("causes", "recommendations")
    @classmethod
    def _no_blank_lines(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not line.strip() for line in value):
            raise ValueError("has a blank line")
        return value

    @field_validator("placeholders")
    @classmethod
    def _placeholder_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, meaning in value.items():
            if not _PLACEHOLDER.fullmatch(name):
                raise ValueError(f"placeholder {name!r} must be camelCase")
            if not meaning.strip():
                raise ValueError(f"placeholder {name!r} needs a description")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        declared = set(self.placeholders)
        texts = [("template", self.template)]
        texts += [(f"causes[{i}]", t) for i, t in enumerate(self.causes)]
        texts += [(f"recommendations[{i}]", t) for i, t in enumerate(self.recommendations)]
        for where, text in texts:
            undeclared = set(template_fields(text)) - declared
            if undeclared:
                raise ValueError(f"{self.name}: {where} uses undeclared placeholders {sorted(undeclared)}")
        for i, fmt in enumerate(self.formats):
            groups = {g for g in fmt.regex.groupindex if not g.startswith("_")}
            if groups - declared:
                raise ValueError(f"{self.name}: formats[{i}] captures undeclared {sorted(groups - declared)}")
            for example in fmt.examples:
                if fmt.extract(example) is None:
                    raise ValueError(f"{self.name}: formats[{i}] does not match its example {example!r}")
        if self.severity is Severity.INFO:
            raise ValueError(f"{self.name}: an error is Warning or Critical, not Info")
        if self.retryable and self.cleared_by is ClearedBy.RESYNC:
            # A success must clear every retryable error (health heals on its own); one that only a
            # resync clears is, by definition, not transient.
            raise ValueError(f"{self.name}: a retryable error cannot need a resync to clear")
        if self.resynced_on_rejection and self.scope is not Scope.DISK:
            raise ValueError(f"{self.name}: only a disk's rejected upload discards the cycle and resyncs")
        if self.repair_requires_opt_in and not self.auto_repairable:
            raise ValueError(f"{self.name}: repair_requires_opt_in needs auto_repairable")
        if (self.scope is Scope.DISK) != (self.event_type is EventType.REPLICATION_CYCLE_FAILED_FOR_DISK):
            raise ValueError(f"{self.name}: disk-scoped errors, and only they, raise '... failed for disk'")
        if self.generic and (self.formats or "message" not in self.placeholders):
            raise ValueError(
                f"{self.name}: the generic entry matches nothing by format and keeps {{message}}"
            )
        return self

    def codes(self) -> Iterator[str]:
        """Every code this entry answers to, case-folded: code, name and aliases."""
        yield self.code.casefold()
        yield self.name.casefold()
        yield from (alias.casefold() for alias in self.aliases)

    def extract(self, message: str) -> dict[str, str] | None:
        """Placeholders from the first of this entry's formats that matches `message`, or None."""
        for fmt in self.formats:
            values = fmt.extract(message)
            if values is not None:
                return values
        return None


class RenderedError(BaseModel):
    """An entry filled in for one occurrence: what an event shows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    name: str
    title: str
    severity: Severity
    event_type: EventType
    message: str
    causes: tuple[str, ...]
    recommendations: tuple[str, ...]
    references: tuple[str, ...]
    missing: tuple[str, ...] = Field(description="placeholders the text needed but nobody supplied")


class Catalog(BaseModel):
    """All entries, in matching order. Every code, name and alias names exactly one entry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entries: tuple[CatalogEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unambiguous(self) -> Self:
        owners: dict[str, str] = {}
        for entry in self.entries:
            for key in set(entry.codes()):
                if key in owners:
                    raise ValueError(f"{key!r} names both {owners[key]} and {entry.name}")
                owners[key] = entry.name
        generic = [e.name for e in self.entries if e.generic]
        if len(generic) != 1:
            raise ValueError(f"exactly one entry must be generic; found {generic}")
        if not self.entries[-1].generic:
            raise ValueError("the generic entry comes last: it is what nothing else matched")
        return self

    @cached_property
    def _by_key(self) -> dict[str, CatalogEntry]:
        return {key: entry for entry in self.entries for key in entry.codes()}

    @property
    def generic(self) -> CatalogEntry:
        return self.entries[-1]

    def find(self, code: str) -> CatalogEntry | None:
        """The entry a code, name or alias names (case-insensitive), or None."""
        return self._by_key.get(code.strip().casefold())

    def __getitem__(self, code: str) -> CatalogEntry:
        entry = self.find(code)
        if entry is None:
            raise KeyError(f"no catalog entry for {code!r}")
        return entry
