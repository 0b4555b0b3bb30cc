"""GET /api/status: the operators' read-only status page.

One static HTML document (inline CSS and script, nothing fetched from anywhere but this API) that reads
the JSON API the CLI reads: machines with state, health, RPO and progress; the selected machine's
recovery points, events (causes, recommended steps) and jobs with their steps. It refreshes itself.

It is static so the page holds no data and needs no store of its own: every figure on it is what an
API call answered, under the same function key (auth level FUNCTION like the API) and an operator's
Entra ID access token with at least the Migration.Reader role (the API's GET routes need it; the page
itself, holding no data, needs only the key). The host accepts the key on the page's own request as
`?code=`; the script sends that same key as `x-functions-key` on its calls, and the token as
`Authorization: Bearer`. The token comes in the URL's fragment (`#access_token=...`, never sent to any
server; the script removes it from the address bar at once) or from the page's form, and is kept in the
tab's sessionStorage only, as is a key typed in the form (a page opened without `code`).

The answer's Content-Security-Policy allows only this document's own script and style (by hash) and
calls to this origin, and `Referrer-Policy: no-referrer` keeps a `?code=` in the address bar from
leaking; the script writes every value with `textContent`, never as markup.
"""

from __future__ import annotations

import base64
import hashlib

import azure.functions as func

from functions.http_errors import handle_errors, query_model
from orchestrators.blueprints import blueprint
from shared.domain.api import StatusPageQuery

bp = blueprint()

# The refresh period when the page's URL gives none (`?refresh=SECONDS`, 2..3600).
DEFAULT_REFRESH_SECONDS = 10

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #f6f7f9; }
header { background: #0f3a64; color: #fff; padding: 10px 18px; display: flex; gap: 18px; align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
header .meta { font-size: 12px; opacity: .85; }
main { padding: 12px 18px; display: grid; gap: 14px; }
section { background: #fff; border: 1px solid #d9dde3; border-radius: 6px; padding: 10px 14px; }
h2 { font-size: 15px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 12px 0 6px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eceff3; vertical-align: top; }
th { font-weight: 600; color: #4a5361; font-size: 12px; }
tr.machine { cursor: pointer; }
tr.machine:hover, tr.machine.selected { background: #eef4fb; }
.Healthy, .Succeeded { color: #107c10; font-weight: 600; }
.Warning { color: #a65e00; font-weight: 600; }
.Critical, .Failed, .NotResponding { color: #c50f1f; font-weight: 600; }
.InProgress { color: #0f6cbd; font-weight: 600; }
.Cancelled, .NotStarted, .muted { color: #6b7280; }
.bar { display: inline-block; width: 90px; height: 8px; background: #e5e7eb; border-radius: 4px; vertical-align: middle; }
.bar > span { display: block; height: 8px; background: #0f6cbd; border-radius: 4px; }
.job { border: 1px solid #e5e7eb; border-radius: 4px; padding: 6px 10px; margin: 8px 0; }
.advice { color: #7a4b00; }
.advice::before { content: "\\2192  "; }
.error { color: #c50f1f; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; margin: 0; }
dt { font-weight: 600; color: #4a5361; }
dd { margin: 0; }
#problem { display: none; background: #fde7e9; border-color: #f1aeb5; }
#keyform { display: none; }
.pager { margin: 8px 0 0; }
"""

_SCRIPT = """
"use strict";
const params = new URLSearchParams(location.search);
const refreshSeconds = Math.min(3600, Math.max(2, Number(params.get("refresh")) || __REFRESH__));
let key = params.get("code") || sessionStorage.getItem("functionKey") || "";
const handedToken = (location.hash.match(/^#access_token=([^&]+)/) || [])[1];
if (handedToken) {
  sessionStorage.setItem("operatorToken", decodeURIComponent(handedToken));
  // Out of the address bar and the history at once: the token is a bearer secret.
  history.replaceState(null, "", location.pathname + location.search);
}
let token = sessionStorage.getItem("operatorToken") || "";
let selected = (location.hash.match(/^#machine=(.+)$/) || [])[1] || null;
if (selected) selected = decodeURIComponent(selected);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
function time(value) {
  return value ? value.replace("T", " ").replace(/\\.\\d+/, "").replace(/(\\+00:00|Z)$/, "Z") : "-";
}
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  seconds = Math.floor(seconds);
  if (seconds < 120) return seconds + "s";
  if (seconds < 7200) return Math.floor(seconds / 60) + "m";
  return Math.floor(seconds / 3600) + "h" + String(Math.floor((seconds % 3600) / 60)).padStart(2, "0") + "m";
}
function status(value) { return el("span", {class: value || "muted"}, value || "-"); }
function progress(percent) {
  const p = Math.max(0, Math.min(100, Number(percent) || 0));
  const fill = el("span", {});
  // Through the CSSOM: the policy refuses style attributes.
  fill.style.width = p.toFixed(0) + "%";
  const bar = el("span", {class: "bar"}, fill);
  return el("span", {}, bar, " " + p.toFixed(0) + "%");
}
function put(id, ...children) {
  document.getElementById(id).replaceChildren(...children.filter(c => c !== null && c !== undefined));
}
function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...headers.map(h => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}
function advice(lines) { return (lines || []).map(line => el("div", {class: "advice"}, line)); }

async function api(path) {
  const response = await fetch("/api/" + path, {headers: {
    "x-functions-key": key, "Authorization": "Bearer " + token, "Accept": "application/json"}});
  if (response.status === 401) {
    // The API's own 401 (a JSON body) refuses the token; the host's (no body) refuses the key.
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (body && body.error) {
      sessionStorage.removeItem("operatorToken");
      token = "";
      showForm();
      throw new Error("the access token was refused (HTTP 401): " + body.error.message);
    }
    throw new Error("the function key was refused (HTTP 401): open the page with ?code=<key>");
  }
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const error = body && body.error;
    throw new Error(error ? error.code + ": " + error.message : "HTTP " + response.status + " from /api/" + path);
  }
  return body;
}

// The machines come a page at a time, in id order. `pageTokens[i]` is the continuation token that reads
// page i (null: the first), kept as the pages are reached, so "previous" needs no state in the API and a
// refresh reads the page on show again.
const MACHINE_PAGE_SIZE = 100;
let pageTokens = [null];
let pageIndex = 0;

function machinesPath() {
  const token = pageTokens[pageIndex];
  return "machines?pageSize=" + MACHINE_PAGE_SIZE + (token ? "&continuationToken=" + encodeURIComponent(token) : "");
}

function goToPage(index) {
  pageIndex = index;
  refresh();
}

function renderMachines(list) {
  const rows = list.machines.map(m => {
    const row = el("tr", {class: "machine" + (m.id === selected ? " selected" : ""), "data-machine": m.id},
      el("td", {}, m.id), el("td", {}, m.displayName), el("td", {}, m.state), el("td", {}, status(m.health)),
      el("td", {}, progress(m.progressPercent)), el("td", {}, duration(m.rpoSeconds)),
      el("td", {}, time(m.lastSyncTime)), el("td", {}, String(m.recoveryPoints ? m.recoveryPoints.count : 0)),
      el("td", {}, String(m.currentErrorCount)));
    row.addEventListener("click", () => { selected = m.id; location.hash = "machine=" + encodeURIComponent(m.id); refresh(); });
    return row;
  });
  pageTokens = pageTokens.slice(0, pageIndex + 1);
  if (list.continuationToken) pageTokens.push(list.continuationToken);
  const first = pageIndex * MACHINE_PAGE_SIZE + 1;
  const title = rows.length ? "Machines " + first + "\u2013" + (first + rows.length - 1)
    + (list.continuationToken ? " (more on the next page)" : "") : "Machines";
  const previous = el("button", {id: "machines-previous", type: "button", disabled: pageIndex ? null : "disabled"}, "\u2190 previous");
  const next = el("button", {id: "machines-next", type: "button", disabled: list.continuationToken ? null : "disabled"}, "next \u2192");
  previous.addEventListener("click", () => goToPage(Math.max(0, pageIndex - 1)));
  next.addEventListener("click", () => { if (pageTokens.length > pageIndex + 1) goToPage(pageIndex + 1); });
  const nav = pageIndex || list.continuationToken
    ? el("p", {class: "pager"}, previous, " ", el("span", {class: "muted"}, "page " + (pageIndex + 1)), " ", next) : null;
  put("machines",
    el("h2", {}, title),
    rows.length ? table(["id", "name", "state", "health", "progress", "RPO", "last sync", "recovery points", "errors"], rows)
                : el("p", {class: "muted"}, pageIndex ? "no machines on this page any more" : "no machines reported yet"),
    nav);
}

function renderJob(job) {
  const steps = job.steps.map(s => el("tr", {class: "step"},
    el("td", {}, s.name), el("td", {}, status(s.status)), el("td", {}, time(s.startTime)), el("td", {}, time(s.endTime)),
    el("td", {}, s.error ? el("span", {class: "error"}, s.error.code + ": " + s.error.message) : "")));
  return el("div", {class: "job", "data-job": job.id, "data-status": job.status},
    el("div", {}, el("strong", {}, job.kind), " ", status(job.status), el("span", {class: "muted"},
      "  " + job.id + " · created " + time(job.createdAt) + " · updated " + time(job.updatedAt))),
    job.error ? el("div", {class: "error"}, job.error.code + ": " + job.error.message) : null,
    table(["step", "status", "started", "ended", "error"], steps));
}

function size(bytes) {
  if (bytes === null || bytes === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes), unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return (unit ? value.toFixed(1) : String(value)) + " " + units[unit];
}

function renderStatistics(stats) {
  if (!stats) return [];
  const rows = (stats.disks || []).map(d => el("tr", {class: "disk-copy", "data-disk": d.diskId},
    el("td", {}, d.diskId), el("td", {}, size(d.bytesApplied)), el("td", {}, size(d.bytesToCopy)),
    el("td", {}, progress(d.percent)), el("td", {}, time(d.updatedAt))));
  const last = stats.lastCycle;
  return [
    el("h3", {}, "Replication"),
    el("dl", {},
      el("dt", {}, "throughput"), el("dd", {}, stats.throughputBytesPerSecond === null ? "-"
        : size(stats.throughputBytesPerSecond) + "/s over the last " + stats.throughputCycles + " cycle(s)"),
      el("dt", {}, "backlog"), el("dd", {}, stats.backlogCycles + " cycle(s)"
        + (stats.backlogBytes === null ? "" : ", " + size(stats.backlogBytes)) + " uploaded, not applied yet"),
      el("dt", {}, "initial copy ETA"), el("dd", {}, duration(stats.initialCopyEtaSeconds)),
      el("dt", {}, "last cycle"), el("dd", {}, last ? last.kind + " #" + last.sequence + ": " + size(last.bytesApplied)
        + " in " + last.durationSeconds.toFixed(1) + "s, applied " + time(last.appliedAt) : "-")),
    rows.length ? table(["disk", "copied", "of", "progress", "updated"], rows) : null,
  ];
}

function renderMachine(m, events, jobs) {
  const errors = (m.currentErrors || []).map(e => el("div", {class: "job"},
    el("div", {class: "error"}, (e.title || e.code) + " (" + e.code + "): " + e.message),
    ...(e.causes || []).map(c => el("div", {class: "muted"}, "cause: " + c)), ...advice(e.recommendations)));
  const points = (m.recoveryPointList || []).map(p => el("tr", {},
    el("td", {}, p.id), el("td", {}, time(p.time)), el("td", {}, p.consistency)));
  const eventRows = events.events.map(e => el("tr", {class: "event"},
    el("td", {}, time(e.time)), el("td", {}, status(e.severity)), el("td", {}, e.type), el("td", {}, e.errorCode || "-"),
    el("td", {}, el("div", {}, e.message), ...(e.causes || []).map(c => el("div", {class: "muted"}, "cause: " + c)),
      ...advice(e.recommendations))));
  put("machine",
    el("h2", {}, "Machine " + m.id + " (" + m.displayName + ")"),
    el("dl", {},
      el("dt", {}, "state"), el("dd", {id: "machine-state"}, m.state),
      el("dt", {}, "health"), el("dd", {id: "machine-health"}, status(m.health)),
      el("dt", {}, "progress"), el("dd", {}, progress(m.progressPercent)),
      el("dt", {}, "RPO"), el("dd", {}, duration(m.rpoSeconds)),
      el("dt", {}, "last sync"), el("dd", {}, time(m.lastSyncTime)),
      el("dt", {}, "appliance"), el("dd", {}, m.applianceId),
      el("dt", {}, "active job"), el("dd", {}, m.activeJobId || "-"),
      el("dt", {}, "allowed operations"), el("dd", {}, (m.allowedOperations || []).join(", ") || "-")),
    ...renderStatistics(m.replicationStatistics),
    errors.length ? el("h3", {}, "Current errors") : null, ...errors,
    el("h3", {}, "Jobs (newest first)"),
    ...(jobs.jobs.length ? jobs.jobs.map(renderJob) : [el("p", {class: "muted"}, "no jobs")]),
    el("h3", {}, "Recovery points (newest first)"),
    points.length ? table(["id", "time", "consistency"], points) : el("p", {class: "muted"}, "none yet"),
    el("h3", {}, "Events (newest first)"),
    eventRows.length ? table(["time", "severity", "type", "code", "message, causes and what to do"], eventRows)
                     : el("p", {class: "muted"}, "no events"));
}

function problem(message) {
  const box = document.getElementById("problem");
  box.textContent = message || "";
  box.style.display = message ? "block" : "none";
}

let running = false;
let again = false;
async function refresh() {
  if (!key || !token) return;
  // A click while a refresh is on its way is served right after it, not at the next tick.
  if (running) { again = true; return; }
  running = true;
  try {
    const list = await api(machinesPath());
    renderMachines(list);
    if (selected) {
      const id = encodeURIComponent(selected);
      const [m, events, jobs] = await Promise.all([
        api("machines/" + id), api("machines/" + id + "/events?limit=20"), api("jobs?machineId=" + id + "&pageSize=10")]);
      renderMachine(m, events, jobs);
    } else {
      put("machine", el("p", {class: "muted"}, "select a machine to see its recovery points, events and jobs"));
    }
    problem(null);
    document.getElementById("updated").textContent = "updated " + new Date().toISOString().replace(/\\.\\d+Z$/, "Z");
  } catch (error) {
    problem(String(error.message || error));
  } finally {
    running = false;
    if (again) { again = false; refresh(); }
  }
}

document.getElementById("every").textContent = "refreshes every " + refreshSeconds + " s";
function showForm() {
  const form = document.getElementById("keyform");
  document.getElementById("keylabel").style.display = key ? "none" : "inline";
  form.style.display = "block";
}
document.getElementById("keyform").addEventListener("submit", event => {
  event.preventDefault();
  if (!key) {
    key = document.getElementById("key").value.trim();
    sessionStorage.setItem("functionKey", key);
  }
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("operatorToken", token);
  document.getElementById("keyform").style.display = "none";
  refresh();
});
if (!key || !token) showForm();
window.addEventListener("hashchange", () => {
  selected = (location.hash.match(/^#machine=(.+)$/) || [])[1] || null;
  if (selected) selected = decodeURIComponent(selected);
  refresh();
});
refresh();
setInterval(refresh, refreshSeconds * 1000);
""".replace("__REFRESH__", str(DEFAULT_REFRESH_SECONDS))


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Control plane status</title>
<style>{_STYLE}</style>
</head>
<body>
<header><h1>Migration and recovery: status</h1>
<span class="meta" id="updated">loading…</span><span class="meta" id="every"></span></header>
<main>
<form id="keyform"><label id="keylabel">Function key <input id="key" type="password" autocomplete="off"></label>
<label>Access token (Migration.Reader) <input id="token" type="password" autocomplete="off"></label>
<button type="submit">Show</button></form>
<section id="problem" role="alert"></section>
<section id="machines"><p class="muted">loading…</p></section>
<section id="machine"></section>
</main>
<script>{_SCRIPT}</script>
</body>
</html>
"""

HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_sha256(_SCRIPT)}; style-src {_sha256(_STYLE)}; "
        "connect-src 'self'; img-src 'none'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


@bp.route(route="status", methods=["GET"])
@handle_errors
def status_page(req: func.HttpRequest) -> func.HttpResponse:
    # The page reads `refresh` itself; checked here too, so a wrong value is a 400 that says so.
    query_model(req, StatusPageQuery)
    return func.HttpResponse(PAGE, status_code=200, mimetype="text/html", charset="utf-8", headers=HEADERS)
