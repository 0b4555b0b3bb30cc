"""What the client prints: rich tables for people, the API's own JSON for scripts (`--output json`).

Everything here takes the API's JSON (camelCase dicts) and returns renderables, so it is tested without
a terminal or a server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cli.client import ApiError, EndpointUnreachable
from shared.domain.job import JobStatus

STATUS_STYLE = {
    JobStatus.SUCCEEDED.value: "green",
    JobStatus.WARNING.value: "yellow",
    JobStatus.FAILED.value: "red",
    JobStatus.CANCELLED.value: "dim",
    JobStatus.IN_PROGRESS.value: "cyan",
    JobStatus.NOT_STARTED.value: "dim",
}
RECOVERY_POINTS_SHOWN = 10
HEALTH_STYLE = {"Healthy": "green", "Warning": "yellow", "Critical": "red", "NotResponding": "red"}
STATUS_MARK = {
    JobStatus.SUCCEEDED.value: "✔",
    JobStatus.WARNING.value: "!",
    JobStatus.FAILED.value: "✘",
    JobStatus.CANCELLED.value: "-",
    JobStatus.IN_PROGRESS.value: "…",
    JobStatus.NOT_STARTED.value: " ",
}


def to_json(body: Any) -> str:
    return json.dumps(body, indent=2, sort_keys=False)


def _styled(value: str | None, styles: dict[str, str]) -> Text:
    return Text(value or "-", style=styles.get(value or "", ""))


def _time(value: str | None) -> str:
    """ISO times as the API sends them, shortened to the second and kept in UTC."""
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%SZ")
    except ValueError:
        return value


def _duration(seconds: int | float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def _table(*columns: str, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _fields(rows: Iterable[tuple[str, RenderableType | str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    return table


# --- appliances ------------------------------------------------------------------------------------------


def appliances_table(body: dict[str, Any]) -> RenderableType:
    table = _table("id", "name", "kind", "site", "health", "last heartbeat", "version", title="Appliances")
    for a in body.get("appliances", []):
        table.add_row(
            a["id"],
            a["name"],
            a["kind"],
            a["site"],
            _styled(a.get("health"), HEALTH_STYLE),
            _time(a.get("lastHeartbeat")),
            a.get("agentVersion") or "-",
        )
    return Group(table, *_more(body))


def appliance_view(a: dict[str, Any]) -> RenderableType:
    policy = a.get("policy") or {}
    return _fields(
        [
            ("id", a["id"]),
            ("name", a["name"]),
            ("kind", a["kind"]),
            ("site", a["site"]),
            ("health", _styled(a.get("health"), HEALTH_STYLE)),
            ("last heartbeat", _time(a.get("lastHeartbeat"))),
            ("heartbeat timeout", _duration(a.get("heartbeatTimeoutSeconds"))),
            ("agent version", a.get("agentVersion") or "-"),
            ("machines", "-" if a.get("machineCount") is None else str(a["machineCount"])),
            ("registered", _time(a.get("registeredAt"))),
            ("policy", ", ".join(f"{k}={v}" for k, v in policy.items()) or "-"),
        ]
    )


def registered_view(r: dict[str, Any]) -> RenderableType:
    return Group(
        _fields([("id", r["id"]), ("name", r["name"]), ("kind", r["kind"]), ("site", r["site"])]),
        Text(""),
        Text("credential (shown once; give it to the appliance, it is not stored):", style="bold yellow"),
        Text(r["credential"]),
    )


def policy_view(p: dict[str, Any]) -> RenderableType:
    """Every policy member as the API names it, nested ones (work hours) on one line."""
    rows: list[tuple[str, RenderableType | str]] = []
    for name, value in p.items():
        if isinstance(value, dict):
            shown = ", ".join(
                f"{k}={'/'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in value.items()
            )
        else:
            shown = "-" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        rows.append((name, shown))
    return _fields(rows)


# --- machines --------------------------------------------------------------------------------------------


def machines_table(body: dict[str, Any]) -> RenderableType:
    table = _table(
        "id",
        "name",
        "state",
        "health",
        "progress",
        "RPO",
        "last sync",
        "allowed operations",
        title="Machines",
    )
    for m in body.get("machines", []):
        table.add_row(
            m["id"],
            m.get("displayName", "-"),
            m["state"],
            _styled(m.get("health"), HEALTH_STYLE),
            f"{m.get('progressPercent', 0):.0f}%",
            _duration(m.get("rpoSeconds")),
            _time(m.get("lastSyncTime")),
            ", ".join(m.get("allowedOperations", [])) or "-",
        )
    return Group(table, *_more(body))


def machine_view(m: dict[str, Any]) -> RenderableType:
    points = m.get("recoveryPointList") or []
    newest = points[0] if points else None
    parts: list[RenderableType] = [
        _fields(
            [
                ("id", m["id"]),
                ("name", m.get("displayName", "-")),
                ("appliance", m.get("applianceId", "-")),
                ("state", m["state"]),
                ("health", _styled(m.get("health"), HEALTH_STYLE)),
                ("progress", f"{m.get('progressPercent', 0):.0f}%"),
                ("RPO", _duration(m.get("rpoSeconds"))),
                (
                    "last cycle",
                    f"{_time(m.get('lastSyncTime'))} (sequence {m.get('lastAppliedSequence', '-')})",
                ),
                (
                    "recovery points",
                    f"{len(points)}"
                    + (f", newest {newest['id']} at {_time(newest.get('time'))}" if newest else ""),
                ),
                ("active job", m.get("activeJobId") or "-"),
                ("allowed operations", ", ".join(m.get("allowedOperations", [])) or "-"),
            ]
        )
    ]
    stats = m.get("replicationStatistics")
    if stats:
        parts += [Text(""), replication_statistics_view(stats)]
    if points:
        table = _table("recovery point", "time", "consistency", title="Recovery points (newest first)")
        for point in points[:RECOVERY_POINTS_SHOWN]:
            table.add_row(point["id"], _time(point.get("time")), point.get("consistency", "-"))
        parts += [Text(""), table]
    errors = m.get("currentErrors") or []
    if errors:
        parts.append(Text(""))
        parts.append(Text("Current errors", style="bold red"))
        for e in errors:
            parts.append(_error_block(e.get("code"), e.get("message", ""), e.get("recommendations") or []))
    return Group(*parts)


def _rate(bytes_per_second: float | None) -> str:
    return "-" if bytes_per_second is None else f"{_size(bytes_per_second)}/s"


def replication_statistics_view(stats: dict[str, Any]) -> RenderableType:
    """Per-disk copy progress, then throughput, backlog, ETA and the last cycle."""
    last = stats.get("lastCycle")
    backlog = f"{stats.get('backlogCycles', 0)} cycle(s)"
    if stats.get("backlogBytes") is not None:
        backlog += f", {_size(stats['backlogBytes'])}"
    rows: list[tuple[str, RenderableType | str]] = [
        (
            "throughput",
            f"{_rate(stats.get('throughputBytesPerSecond'))} over the last {stats.get('throughputCycles', 0)} "
            "cycle(s)",
        ),
        ("backlog", backlog + " uploaded, not applied yet"),
        ("initial copy ETA", _duration(stats.get("initialCopyEtaSeconds"))),
        (
            "last cycle",
            "-"
            if not last
            else f"{last['kind']} #{last['sequence']}: {_size(last['bytesApplied'])} in "
            f"{last['durationSeconds']:.1f}s, applied {_time(last['appliedAt'])}",
        ),
    ]
    parts: list[RenderableType] = []
    disks = stats.get("disks") or []
    if disks:
        table = _table("disk", "copied", "of", "progress", "updated", title="Whole-disk copy per disk")
        for d in disks:
            table.add_row(
                d["diskId"],
                _size(d["bytesApplied"]),
                _size(d["bytesToCopy"]),
                f"{d['percent']:.1f}%",
                _time(d.get("updatedAt")),
            )
        parts.append(table)
    parts.append(_fields(rows))
    return Group(*parts)


def events_table(body: dict[str, Any]) -> RenderableType:
    table = _table("time", "severity", "type", "code", "message", title="Events (newest first)")
    for e in body.get("events", []):
        message = Text(e.get("message", ""))
        for advice in e.get("recommendations") or []:
            message.append(f"\n→ {advice}", style="yellow")
        table.add_row(
            _time(e.get("time")),
            _styled(e.get("severity"), {"Critical": "red", "Warning": "yellow"}),
            e.get("type", ""),
            e.get("errorCode") or "-",
            message,
        )
    return Group(table, *_more(body))


# --- failover settings -----------------------------------------------------------------------------------


def failover_settings_view(machine_id: str, s: dict[str, Any]) -> RenderableType:
    """The VM a failover of `machine_id` creates, then the managed disk type of each of its disks."""
    fields = _fields(
        [
            ("VM name", s.get("vmName") or "-"),
            ("resource group", s.get("resourceGroup") or "-"),
            ("VM size", s.get("vmSize") or "-"),
            ("virtual network", s.get("virtualNetwork") or "-"),
            ("subnet", s.get("subnet") or "-"),
            ("subnet prefix", s.get("subnetAddressPrefix") or "-"),
            ("IP address", s.get("staticIpAddress") or "dynamic (Azure assigns one)"),
        ]
    )
    disks = _table("disk", "disk type", title="Managed disks")
    for disk_id, disk in (s.get("disks") or {}).items():
        disks.add_row(disk_id, disk.get("diskType", "-"))
    return Group(Text(f"Failover settings of {machine_id}", style="bold"), fields, Text(""), disks)


# --- jobs ------------------------------------------------------------------------------------------------


def jobs_table(body: dict[str, Any]) -> RenderableType:
    table = _table("id", "kind", "machine", "status", "created", "updated", title="Jobs (newest first)")
    for j in body.get("jobs", []):
        table.add_row(
            j["id"],
            j["kind"],
            j["machineId"],
            _styled(j["status"], STATUS_STYLE),
            _time(j.get("createdAt")),
            _time(j.get("updatedAt")),
        )
    return Group(table, *_more(body))


def job_view(job: dict[str, Any], recommendations: dict[str, list[str]] | None = None) -> RenderableType:
    """The job's steps with their status and message; a failed or warned step with the catalog's steps."""
    recommendations = recommendations or {}
    title = Text.assemble(
        (f"{job['kind']} ", "bold"),
        f"on {job['machineId']}  ",
        (job["status"], STATUS_STYLE.get(job["status"], "")),
        f"  ({job['id']})",
    )
    started_by = job.get("startedBy")
    if started_by:
        title.append(f"  started by {started_by['name']} ({started_by['kind']})", style="dim")
    table = _table("", "step", "status", "started", "ended", "message")
    for step in job.get("steps", []):
        status = step.get("status", JobStatus.NOT_STARTED.value)
        error = step.get("error") or {}
        message = Text(error.get("message", ""))
        for advice in recommendations.get(error.get("code", ""), []) if error else []:
            message.append(f"\n→ {advice}", style="yellow")
        table.add_row(
            Text(STATUS_MARK.get(status, "?"), style=STATUS_STYLE.get(status, "")),
            step["name"],
            _styled(status, STATUS_STYLE),
            _time(step.get("startTime")),
            _time(step.get("endTime")),
            message,
        )
    parts: list[RenderableType] = [title, table]
    job_error = job.get("error")
    if job_error:
        parts.append(
            _error_block(
                job_error.get("code"),
                job_error.get("message", ""),
                recommendations.get(job_error.get("code", ""), []),
            )
        )
    return Group(*parts)


def _error_block(code: str | None, message: str, steps: Sequence[str]) -> RenderableType:
    text = Text.assemble((f"{code or 'Error'}: ", "bold red"), message)
    for advice in steps:
        text.append(f"\n  → {advice}", style="yellow")
    return text


def _more(body: dict[str, Any]) -> list[RenderableType]:
    token = body.get("continuationToken")
    if not token:
        return []
    return [Text(f"more: repeat with --continuation-token '{token}'", style="dim")]


# --- mobility --------------------------------------------------------------------------------------------


def _size(value: int | float | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def installers_table(body: dict[str, Any]) -> RenderableType:
    table = _table("file", "version", "OS", "size", "uploaded", "sha256", title="Mobility service installers")
    for i in body.get("installers", []):
        table.add_row(
            i["fileName"],
            i.get("version", "-"),
            i.get("os", "-"),
            _size(i.get("sizeBytes")),
            _time(i.get("uploadedAt")),
            (i.get("sha256") or "-")[:16],
        )
    return table


def installer_resolution(r: dict[str, Any]) -> RenderableType:
    installer = r.get("installer") or {}
    parts: list[RenderableType] = [
        _fields(
            [
                ("OS", r.get("os", "-")),
                ("recognised as", r.get("recognisedAs", "-")),
                ("installer OS", r.get("installerOs", "-")),
                ("catalog", r.get("catalogStatus", "-")),
                (
                    "installer",
                    installer.get("fileName") or f"none uploaded ({r.get('installerPattern', '-')})",
                ),
                ("placed by hand", "yes" if r.get("placedByHand") else "no"),
            ]
        )
    ]
    for advice in r.get("instructions") or []:
        parts.append(Text(f"→ {advice}", style="yellow"))
    return Group(*parts)


def mobility_view(body: dict[str, Any]) -> RenderableType:
    agent = body.get("agent")
    if not agent:
        return Text("no Mobility agent has registered for this machine", style="dim")
    return _fields(
        [
            ("agent", agent["agentId"]),
            ("machine", agent.get("machineId") or "-"),
            ("version", agent.get("version") or "-"),
            ("health", _styled(agent.get("health"), HEALTH_STYLE)),
            ("registered", _time(agent.get("registeredAt"))),
            ("last heartbeat", _time(agent.get("lastHeartbeatAt"))),
        ]
    )


def passphrase_status(body: dict[str, Any]) -> RenderableType:
    if not body.get("exists"):
        return Text(
            "no registration passphrase is set: `migrate mobility passphrase rotate` sets one", style="dim"
        )
    return _fields([("set", _time(body.get("setAt"))), ("generation", str(body.get("generation", "-")))])


def passphrase_issued(body: dict[str, Any]) -> RenderableType:
    replaced = "yes: the previous passphrase no longer works" if body.get("replacedPrevious") else "no"
    return Group(
        _fields(
            [
                ("set", _time(body.get("setAt"))),
                ("generation", str(body.get("generation", "-"))),
                ("replaced previous", replaced),
            ]
        ),
        Text(""),
        Text(
            "passphrase (shown once; the agents' installations need it, it is not stored):",
            style="bold yellow",
        ),
        Text(body["passphrase"]),
    )


# --- errors ----------------------------------------------------------------------------------------------


def error_view(error: ApiError | EndpointUnreachable) -> RenderableType:
    """An API error as the API says it: status, code, message, then each detail (what to fix)."""
    if isinstance(error, EndpointUnreachable):
        return Text.assemble(("error: ", "bold red"), f"cannot reach {error.url}: {error.reason}")
    text = Text.assemble(
        ("error: ", "bold red"), (f"{error.code} ", "bold"), f"(HTTP {error.status}): {error.message}"
    )
    for detail in error.details:
        text.append("\n  " + _detail_line(detail))
    return text


def _detail_line(detail: Any) -> str:
    if not isinstance(detail, dict):
        return str(detail)
    if "field" in detail and "problem" in detail:
        return f"{detail['field']}: {detail['problem']}"
    if "allowedOperations" in detail:
        allowed = ", ".join(detail.get("allowedOperations") or []) or "none"
        state = detail.get("from", "?")
        return f"machine {detail.get('machineId', '?')} is {state}; allowed now: {allowed}"
    return ", ".join(f"{k}={v}" for k, v in detail.items())
