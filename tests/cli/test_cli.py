"""The `migrate` client against a scripted API (httpx.MockTransport): what it prints, what it sends,
and the exit codes scripts rely on (0 succeeded, 2 warning, 1 failed, 64 a wrong command line)."""

from __future__ import annotations

import io
import json
import re
import shlex
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

import cli.main as main_module
from cli import wait
from cli.client import ApiClient
from cli.config import ConfigError, Profile, load_profile, save_profile
from cli.main import run
from shared.mobility.push import PushInstallBody

ENDPOINT = "http://api.test"
REPO = Path(__file__).resolve().parents[2]
Handler = Callable[[httpx.Request], httpx.Response]


def job(
    status: str, steps: list[tuple[str, str]], *, kind: str = "TestMigration", error: Any = None
) -> dict[str, Any]:
    return {
        "id": "job-1",
        "kind": kind,
        "machineId": "vm-1",
        "status": status,
        "steps": [
            {
                "name": name,
                "status": step_status,
                "startTime": "2026-11-22T03:00:00Z",
                "endTime": None,
                "error": {"code": "HydrationFailed", "message": "the guest did not boot"}
                if step_status == "Failed"
                else (
                    {"code": "Warning", "message": "source still on"} if step_status == "Warning" else None
                ),
            }
            for name, step_status in steps
        ],
        "createdAt": "2026-11-22T03:00:00Z",
        "updatedAt": "2026-11-22T03:00:00Z",
        "error": error,
    }


MACHINES: dict[str, Any] = {
    "machines": [
        {
            "id": "vm-1",
            "applianceId": "appl-1",
            "displayName": "web01",
            "state": "Replicating",
            "health": "Healthy",
            "progressPercent": 100.0,
            "lastSyncTime": "2026-11-22T02:58:00Z",
            "rpoSeconds": 120,
            "allowedOperations": ["stopReplication", "repair", "testMigrate"],
        }
    ],
    "continuationToken": None,
}


class FakeApi:
    """Answers requests from a script of handlers keyed by (method, path); records what it was sent."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[httpx.Response] | Handler] = {}
        self.sent: list[httpx.Request] = []

    def on(self, method: str, path: str, *responses: httpx.Response) -> None:
        self.routes[(method, path)] = list(responses)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        script = self.routes.get((request.method, request.url.path))
        if script is None:
            return httpx.Response(
                404, json={"error": {"code": "NotFound", "message": "no route", "details": []}}
            )
        if callable(script):
            return script(request)
        # The last answer repeats: a job polled after it finished stays finished.
        return script.pop(0) if len(script) > 1 else script[0]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    fake = FakeApi()
    transport = httpx.MockTransport(fake.handle)
    monkeypatch.setattr(
        main_module, "CLIENT_FACTORY", lambda: ApiClient(Profile(ENDPOINT, "key-1"), transport=transport)
    )
    monkeypatch.setenv("COLUMNS", "200")
    yield fake


def ok(body: Any, status: int = 200, *, retry_after: str | None = None, **headers: str) -> httpx.Response:
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return httpx.Response(status, json=body, headers=headers)


def accepted(body: dict[str, Any]) -> httpx.Response:
    return ok(
        {"jobId": body["id"], "machineId": body["machineId"], "statusUrl": "/api/jobs/job-1", "job": body},
        202,
        Location="/api/jobs/job-1",
        retry_after="0",
    )


def test_machines_list_shows_state_health_rpo_and_allowed_operations(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("GET", "/api/machines", ok(MACHINES))
    assert run(["machines", "list", "--appliance-id", "appl-1"]) == 0
    out = capsys.readouterr().out
    for shown in ("vm-1", "web01", "Replicating", "Healthy", "100%", "2m", "testMigrate"):
        assert shown in out
    assert api.sent[0].url.params["applianceId"] == "appl-1"
    assert api.sent[0].headers["x-functions-key"] == "key-1"


def test_json_output_is_the_apis_json(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on("GET", "/api/machines", ok(MACHINES))
    assert run(["--output", "json", "machines", "list"]) == 0
    assert json.loads(capsys.readouterr().out) == MACHINES


def test_jobs_list_sends_the_filters(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on(
        "GET",
        "/api/jobs",
        ok({"jobs": [job("Succeeded", [("Create VM", "Succeeded")])], "continuationToken": "t2"}),
    )
    assert (
        run(["jobs", "list", "--machine-id", "vm-1", "--kind", "TestMigration", "--status", "Succeeded"]) == 0
    )
    params = api.sent[0].url.params
    assert (params["machineId"], params["kind"], params["status"]) == ("vm-1", "TestMigration", "Succeeded")
    assert "pageSize" not in params
    out = capsys.readouterr().out
    assert "job-1" in out and "--continuation-token 't2'" in out


@pytest.mark.parametrize(
    ("final", "code"),
    [
        (job("Succeeded", [("Pick recovery point", "Succeeded"), ("Create VM", "Succeeded")]), 0),
        (job("Warning", [("Pick recovery point", "Succeeded"), ("Shut down source", "Warning")]), 2),
        (
            job(
                "Failed",
                [
                    ("Pick recovery point", "Succeeded"),
                    ("Run preparation script", "Failed"),
                    ("Create VM", "Cancelled"),
                ],
                error={"code": "HydrationFailed", "message": "the guest did not boot"},
            ),
            1,
        ),
        (job("Cancelled", [("Pick recovery point", "Succeeded"), ("Create VM", "Cancelled")]), 1),
    ],
)
def test_wait_follows_the_job_and_exits_by_its_status(
    api: FakeApi, capsys: pytest.CaptureFixture[str], final: dict[str, Any], code: int
) -> None:
    running = job("InProgress", [("Pick recovery point", "InProgress"), ("Create VM", "NotStarted")])
    api.on("POST", "/api/machines/vm-1/test-migrate", accepted(running))
    api.on("GET", "/api/jobs/job-1", ok(running, retry_after="0"), ok(final, retry_after="0"))
    api.on(
        "GET",
        "/api/machines/vm-1/events",
        ok({"events": [{"errorCode": "HydrationFailed", "recommendations": ["Check the guest's fstab"]}]}),
    )
    assert run(["test-migrate", "vm-1", "--recovery-point", "rp-7", "--wait"]) == code
    out = capsys.readouterr().out
    assert final["status"] in out
    for step in final["steps"]:
        assert step["name"] in out
    assert json.loads(api.sent[0].content) == {"recoveryPoint": "rp-7"}
    if code == 1 and final["error"]:
        assert "the guest did not boot" in out and "Check the guest's fstab" in out


def test_wait_with_json_prints_the_finished_job(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    final = job("Succeeded", [("Resync disks", "Succeeded")], kind="RepairReplication")
    api.on("POST", "/api/machines/vm-1/repair", accepted(job("InProgress", [("Resync disks", "InProgress")])))
    api.on("GET", "/api/jobs/job-1", ok(final, retry_after="0"))
    assert run(["-o", "json", "replication", "repair", "vm-1", "--wait"]) == 0
    assert json.loads(capsys.readouterr().out) == final


def test_without_wait_an_action_names_its_job(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on(
        "POST",
        "/api/machines/vm-1/test-migrate/cleanup",
        accepted(job("InProgress", [], kind="TestMigrationCleanup")),
    )
    assert run(["test-migrate", "cleanup", "vm-1"]) == 0
    out = capsys.readouterr().out
    assert "job-1" in out and "migrate jobs show job-1 --wait" in out


def test_enable_replication_sends_the_target_settings(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    api.on("PUT", "/api/machines/vm-1/replication", accepted(job("InProgress", [], kind="EnableReplication")))
    target = tmp_path / "target.json"
    target.write_text(json.dumps({"resourceGroup": "rg", "virtualNetwork": "vnet", "subnet": "app"}))
    assert (
        run(["replication", "enable", "vm-1", "--target", str(target), "--vm-size", "Standard_D2s_v3"]) == 0
    )
    assert json.loads(api.sent[0].content) == {
        "resourceGroup": "rg",
        "virtualNetwork": "vnet",
        "subnet": "app",
        "vmSize": "Standard_D2s_v3",
    }


def test_api_errors_are_shown_as_the_api_says_them(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    refusal = {
        "error": {
            "code": "ForbiddenTransition",
            "message": "machine vm-1 is Discovered: cannot test-migrate",
            "details": [
                {
                    "machineId": "vm-1",
                    "from": "Discovered",
                    "to": "TestMigrating",
                    "allowed": [],
                    "allowedOperations": ["enableReplication"],
                }
            ],
        }
    }
    api.on("POST", "/api/machines/vm-1/test-migrate", ok(refusal, 409))
    assert run(["test-migrate", "vm-1", "--wait"]) == 1
    captured = capsys.readouterr()
    assert "ForbiddenTransition" in captured.err and "HTTP 409" in captured.err
    assert "allowed now: enableReplication" in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_validation_details_name_the_field(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    body = {
        "error": {
            "code": "ValidationFailed",
            "message": "invalid request",
            "details": [{"field": "subnet", "problem": "is required"}],
        }
    }
    api.on("PUT", "/api/machines/vm-1/replication", ok(body, 400))
    assert run(["replication", "enable", "vm-1", "--resource-group", "rg"]) == 1
    assert "subnet: is required" in capsys.readouterr().err


def test_json_errors_go_to_stderr_as_json(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["-o", "json", "jobs", "show", "job-9"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["error"]["code"] == "NotFound"


@pytest.mark.parametrize(
    ("status", "body", "shown"),
    [
        (
            404,
            {
                "error": {
                    "code": "NotFound",
                    "message": "job job-9 does not exist",
                    "details": [{"id": "job-9"}],
                }
            },
            "job job-9 does not exist",
        ),
        (
            409,
            {
                "error": {
                    "code": "NotCancellable",
                    "message": "a failover to Azure cannot be cancelled",
                    "details": [],
                }
            },
            "cannot be cancelled",
        ),
    ],
)
def test_jobs_cancel_refusals(
    api: FakeApi, capsys: pytest.CaptureFixture[str], status: int, body: dict[str, Any], shown: str
) -> None:
    api.on("POST", "/api/jobs/job-9/cancel", ok(body, status))
    assert run(["jobs", "cancel", "job-9"]) == 1
    err = capsys.readouterr().err
    assert body["error"]["code"] in err and shown in err


def test_jobs_cancel_then_wait(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    cancelled = job("Cancelled", [("Create VM", "Cancelled")])
    api.on(
        "POST",
        "/api/jobs/job-1/cancel",
        ok(job("InProgress", [("Create VM", "InProgress")]), 202, retry_after="0"),
    )
    api.on("GET", "/api/jobs/job-1", ok(cancelled, retry_after="0"))
    assert run(["jobs", "cancel", "job-1", "--wait"]) == 1
    assert "Cancelled" in capsys.readouterr().out


def test_a_bare_401_from_the_host_says_to_check_the_key(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("GET", "/api/appliances", httpx.Response(401))
    assert run(["appliances", "list"]) == 1
    assert "MIGRATE_FUNCTION_KEY" in capsys.readouterr().err


def test_an_unreachable_endpoint_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    monkeypatch.setattr(
        main_module,
        "CLIENT_FACTORY",
        lambda: ApiClient(Profile("http://10.0.0.9:7071", None), transport=httpx.MockTransport(refuse)),
    )
    assert run(["machines", "show", "vm-1"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach http://10.0.0.9:7071/api/machines/vm-1" in err and "Traceback" not in err


def test_a_wrong_command_line_is_exit_64(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["jobs", "list", "--status", "Done"]) == 64
    assert run(["change-recovery-point", "vm-1"]) == 64
    assert api.sent == []


def test_appliances_register_show_and_list(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on(
        "POST",
        "/api/appliances",
        ok(
            {
                "id": "appl-1",
                "credential": "appl-1.secret",
                "name": "a",
                "kind": "hyperv",
                "site": "h",
                "policy": {},
            },
            201,
        ),
    )
    view = {
        "id": "appl-1", "name": "a", "kind": "hyperv", "site": "h", "registeredAt": "2026-11-22T03:00:00Z",
        "lastHeartbeat": None, "agentVersion": None, "health": "NeverHeard", "heartbeatTimeoutSeconds": 900,
        "machineCount": 3, "policy": {"uploadThreads": 4},
    }  # fmt: skip
    api.on("GET", "/api/appliances/appl-1", ok(view))
    api.on(
        "GET",
        "/api/appliances",
        ok({"appliances": [view | {"machineCount": None}], "continuationToken": None}),
    )
    assert run(["appliances", "register", "--name", "a", "--kind", "hyperv", "--site", "h"]) == 0
    assert "appl-1.secret" in capsys.readouterr().out
    assert run(["appliances", "show", "appl-1"]) == 0
    out = capsys.readouterr().out
    assert "NeverHeard" in out and "15m" in out and "uploadThreads=4" in out
    assert run(["appliances", "list"]) == 0
    assert "appl-1" in capsys.readouterr().out


def test_follow_job_honours_retry_after_and_rides_out_a_restart() -> None:
    answers = iter(
        [
            ok(job("InProgress", [("a", "InProgress")]), retry_after="7"),
            httpx.Response(503),
            ok(job("InProgress", [("a", "InProgress")]), retry_after="3"),
            ok(job("Succeeded", [("a", "Succeeded")])),
        ]
    )
    client = ApiClient(Profile(ENDPOINT, None), transport=httpx.MockTransport(lambda r: next(answers)))
    slept: list[float] = []
    final = wait.follow_job(
        client, "job-1", Console(file=io.StringIO()), sleep=slept.append, poll_seconds=1.0
    )
    assert final["status"] == "Succeeded"
    # First poll at once, then as Retry-After says; after the 503 a back-off, then Retry-After again.
    assert slept == [0.0, 7.0, 2.0, 3.0]


def test_profile_file_is_private_and_the_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "migrate" / "profile.toml"
    save_profile(path, Profile("https://app.example", 'k"1'))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env = {"MIGRATE_PROFILE": str(path)}
    assert load_profile(env) == Profile("https://app.example", 'k"1')
    assert (
        load_profile(env | {"MIGRATE_ENDPOINT": "http://localhost:7071/"}).endpoint == "http://localhost:7071"
    )
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_profile(env)
    with pytest.raises(ConfigError, match="MIGRATE_ENDPOINT"):
        load_profile({"MIGRATE_PROFILE": str(tmp_path / "none.toml")})


def test_machine_show_has_recovery_points_and_errors_with_their_steps(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    detail = MACHINES["machines"][0] | {
        "health": "Critical",
        "lastAppliedSequence": 4,
        "activeJobId": None,
        "recoveryPointList": [
            {"id": "rp-2", "time": "2026-11-22T02:58:00Z", "consistency": "app"},
            {"id": "rp-1", "time": "2026-11-22T02:28:00Z", "consistency": "crash"},
        ],
        "currentErrors": [
            {
                "code": "CbtReset",
                "message": "changed block tracking was reset",
                "recommendations": ["Run Repair replication"],
            }
        ],
    }
    api.on("GET", "/api/machines/vm-1", ok(detail))
    assert run(["machines", "show", "vm-1"]) == 0
    out = capsys.readouterr().out
    for shown in ("Critical", "sequence 4", "rp-2", "rp-1", "crash", "CbtReset", "→ Run Repair replication"):
        assert shown in out


@pytest.mark.parametrize(
    ("argv", "path", "body", "kind"),
    [
        (["planned-failover", "vm-1"], "/api/machines/vm-1/planned-failover", None, "PlannedFailover"),
        (
            ["cancel-planned-failover", "vm-1"],
            "/api/machines/vm-1/cancel-planned-failover",
            None,
            "CancelPlannedFailover",
        ),
        (
            ["reprotect", "vm-1", "--appliance-id", "appl-2"],
            "/api/machines/vm-1/reprotect",
            {"applianceId": "appl-2"},
            "Reprotect",
        ),
        (
            ["mobility", "install", "vm-1", "--credential-name", "root-cred"],
            "/api/machines/vm-1/mobility/install",
            {"credentialName": "root-cred"},
            "InstallMobilityService",
        ),
        (
            ["mobility", "update", "vm-1", "--credential-name", "root-cred", "--server-port", "2222"],
            "/api/machines/vm-1/mobility/update",
            {"credentialName": "root-cred", "serverPort": 2222},
            "InstallMobilityService",
        ),
        (
            [
                "mobility",
                "install",
                "vm-1",
                "--credential-name",
                "root-cred",
                "--disk-path",
                "os=/dev/sda",
                "--disk-path",
                "data-1=/srv/disks/data.img",
            ],
            "/api/machines/vm-1/mobility/install",
            {"credentialName": "root-cred", "diskPaths": {"os": "/dev/sda", "data-1": "/srv/disks/data.img"}},
            "InstallMobilityService",
        ),
        (
            ["mobility", "update", "vm-1", "--credential-name", "root-cred", "--disk-path", "os=/dev/sda"],
            "/api/machines/vm-1/mobility/update",
            {"credentialName": "root-cred", "diskPaths": {"os": "/dev/sda"}},
            "InstallMobilityService",
        ),
    ],
)
def test_failback_and_mobility_actions_start_their_job_and_wait_for_it(
    api: FakeApi,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    path: str,
    body: dict[str, Any] | None,
    kind: str,
) -> None:
    final = job("Warning", [("Copy agent", "Succeeded"), ("Install VSS provider", "Warning")], kind=kind)
    api.on("POST", path, accepted(job("InProgress", [("Copy agent", "InProgress")], kind=kind)))
    api.on("GET", "/api/jobs/job-1", ok(final, retry_after="0"))
    api.on("GET", "/api/machines/vm-1/events", ok({"events": []}))
    assert run([*argv, "--wait"]) == 2
    sent = api.sent[0]
    assert (sent.method, sent.url.path) == ("POST", path)
    assert (json.loads(sent.content) if sent.content else None) == body
    out = capsys.readouterr().out
    assert f"{kind} on vm-1" in out and "Install VSS provider" in out


@pytest.mark.parametrize(
    ("disk_path", "said"),
    [
        ("/dev/sdb", "is not DISK_ID=PATH, e.g. data=/dev/sdb"),
        ("data=", "is not DISK_ID=PATH"),
        ("data=dev/sdb", "'dev/sdb' (disk data) must be an absolute path"),
        ("data=/dev/sdb; rm -rf /", "must be an absolute path of letters, digits"),
        ("-data=/dev/sdb", "'-data' is not a disk id"),
        ("data/1=/dev/sdb", "'data/1' is not a disk id"),
    ],
)
def test_a_bad_disk_path_is_refused_before_anything_is_sent(
    api: FakeApi, capsys: pytest.CaptureFixture[str], disk_path: str, said: str
) -> None:
    argv = ["mobility", "install", "vm-1", "--credential-name", "root", f"--disk-path={disk_path}"]
    assert run(argv) == 64
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long messages
    assert "--disk-path" in err and said in err and "Traceback" not in err
    assert api.sent == []


@pytest.mark.parametrize(
    "disk_path",
    ["os=/dev/sda", "data_1.x=/srv/d-1.img", "a=/", "os=/dev/sd a", "os=C:/disk", "x" * 129 + "=/dev/sda"],
)
def test_the_client_accepts_a_disk_path_exactly_when_the_api_does(
    api: FakeApi, capsys: pytest.CaptureFixture[str], disk_path: str
) -> None:
    """The client checks the API's rules (shared.domain.command.DiskPaths), not a copy that could drift."""
    disk_id, _, path = disk_path.partition("=")
    try:
        PushInstallBody.model_validate({"credentialName": "root", "diskPaths": {disk_id: path}})
        api_accepts = True
    except ValueError:
        api_accepts = False
    argv = ["mobility", "install", "vm-1", "--credential-name", "root", "--disk-path", disk_path]
    assert (run(argv) != 64) is api_accepts, capsys.readouterr().err
    assert bool(api.sent) is api_accepts


def test_one_disk_given_two_paths_is_refused(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["mobility", "update", "vm-1", "--credential-name", "root", "--disk-path", "os=/dev/sda"]
    assert run([*argv, "--disk-path", "os=/dev/sda"]) != 64  # the same pair twice is harmless
    capsys.readouterr()
    sent = len(api.sent)
    assert run([*argv, "--disk-path", "os=/dev/sdb"]) == 64
    assert "disk os is given twice: /dev/sda and /dev/sdb" in " ".join(capsys.readouterr().err.split())
    assert len(api.sent) == sent


def test_reprotect_needs_the_appliance(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["reprotect", "vm-1"]) == 64
    assert "--appliance-id" in capsys.readouterr().err
    assert api.sent == []


def test_a_refused_planned_failover_says_what_is_allowed(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    refusal = {
        "error": {
            "code": "OperationNotAllowed",
            "message": "planned failover is not allowed while the machine is Replicating",
            "details": [{"machineId": "vm-1", "from": "Replicating", "allowedOperations": ["failover"]}],
        }
    }
    api.on("POST", "/api/machines/vm-1/planned-failover", httpx.Response(409, json=refusal))
    assert run(["planned-failover", "vm-1", "--wait"]) == 1
    err = capsys.readouterr().err
    assert "OperationNotAllowed" in err and "allowed now: failover" in err and "Traceback" not in err


def test_mobility_installers_catalog_and_resolution(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    name = "Microsoft-ASR_UA_9.60.0.0_UBUNTU-20.04-64_GA_20240101_release.tar.gz"
    installer = {
        "fileName": name,
        "version": "9.60.0.0",
        "os": "UBUNTU-20.04-64",
        "kind": "tar.gz",
        "buildDate": "20240101",
        "sizeBytes": 3 * 1024 * 1024,
        "sha256": "ab" * 32,
        "uploadedAt": "2026-11-22T03:00:00Z",
    }
    api.on("GET", "/api/mobility/installers", ok({"installers": [installer]}))
    assert run(["mobility", "installers"]) == 0
    out = capsys.readouterr().out
    assert name in out and "3.0 MiB" in out and "9.60.0.0" in out

    api.on(
        "GET",
        "/api/mobility/installers/resolve",
        ok(
            {
                "os": "Debian 7",
                "recognisedAs": "Debian 7",
                "installerOs": "DEBIAN7-64",
                "installerPattern": "Microsoft-ASR_UA_<version>_DEBIAN7-64_GA_<date>_release.tar.gz",
                "catalogStatus": "Missing",
                "installer": None,
                "placedByHand": True,
                "instructions": ["Download the installer and upload it to the catalog"],
            }
        ),
    )
    assert run(["mobility", "installers", "--os", "Debian 7"]) == 0
    out = capsys.readouterr().out
    assert api.sent[-1].url.params["os"] == "Debian 7"
    assert "DEBIAN7-64" in out and "none uploaded" in out and "upload it to the catalog" in out


def test_mobility_show_with_and_without_an_agent(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    agent = {
        "agentId": "agent-1",
        "machineId": "vm-1",
        "version": "9.60.0.0",
        "health": "Healthy",
        "registeredAt": "2026-11-22T03:00:00Z",
        "lastHeartbeatAt": "2026-11-22T03:05:00Z",
    }
    api.on("GET", "/api/machines/vm-1/mobility", ok({"agent": agent}))
    assert run(["mobility", "show", "vm-1"]) == 0
    out = capsys.readouterr().out
    assert "agent-1" in out and "9.60.0.0" in out and "2026-11-22 03:05:00Z" in out
    api.on("GET", "/api/machines/vm-2/mobility", ok({"agent": None}))
    assert run(["mobility", "show", "vm-2"]) == 0
    assert "no Mobility agent" in capsys.readouterr().out


def test_machine_show_has_the_replication_statistics(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    mib = 1024 * 1024
    detail = MACHINES["machines"][0] | {
        "state": "InitialReplication",
        "recoveryPointList": [],
        "currentErrors": [],
        "replicationStatistics": {
            "disks": [
                {
                    "diskId": "os",
                    "cycleId": "c0",
                    "bytesToCopy": 40 * mib,
                    "bytesApplied": 10 * mib,
                    "percent": 25.0,
                    "startedAt": "2026-11-22T03:00:00Z",
                    "updatedAt": "2026-11-22T03:00:05Z",
                }
            ],
            "initialCopyEtaSeconds": 15,
            "throughputBytesPerSecond": 2.0 * mib,
            "throughputCycles": 3,
            "backlogCycles": 2,
            "backlogBytes": 3 * mib,
            "lastCycle": {
                "cycleId": "c9",
                "sequence": 9,
                "kind": "delta",
                "appliedAt": "2026-11-22T02:59:00Z",
                "durationSeconds": 1.5,
                "bytesApplied": mib,
            },
        },
    }
    api.on("GET", "/api/machines/vm-1", ok(detail))
    assert run(["machines", "show", "vm-1"]) == 0
    out = capsys.readouterr().out
    for shown in (
        "10.0 MiB",
        "40.0 MiB",
        "25.0%",
        "2.0 MiB/s over the last 3 cycle(s)",
        "2 cycle(s), 3.0 MiB uploaded",
        "15s",
        "delta #9: 1.0 MiB in 1.5s",
    ):
        assert shown in out, shown


SETTINGS: dict[str, Any] = {
    "vmName": "web01",
    "resourceGroup": "rg-target",
    "vmSize": "Standard_D2s_v3",
    "virtualNetwork": "vnet-target",
    "subnet": "default",
    "subnetAddressPrefix": "10.0.0.0/24",
    "staticIpAddress": None,
    "disks": {"os": {"diskType": "Standard_LRS"}, "data": {"diskType": "Standard_LRS"}},
}


def test_failover_settings_show_as_a_table_and_as_json(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("GET", "/api/machines/vm-1/failover-settings", ok(SETTINGS))
    assert run(["failover-settings", "show", "vm-1"]) == 0
    out = capsys.readouterr().out
    for shown in ("Failover settings of vm-1", "web01", "rg-target", "Standard_D2s_v3", "vnet-target"):
        assert shown in out
    assert "dynamic (Azure assigns one)" in out and "10.0.0.0/24" in out
    assert "data" in out and "Standard_LRS" in out
    assert run(["-o", "json", "failover-settings", "show", "vm-1"]) == 0
    assert json.loads(capsys.readouterr().out) == SETTINGS


def test_failover_settings_set_sends_a_merge_patch_of_what_was_given(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    changed = {**SETTINGS, "vmSize": "Standard_D4s_v3", "staticIpAddress": "10.0.0.7"}
    api.on("PATCH", "/api/machines/vm-1/failover-settings", ok(changed))
    patch_file = tmp_path / "settings.json"
    patch_file.write_text(
        json.dumps({"vmSize": "Standard_D8s_v3", "disks": {"data": {"diskType": "StandardSSD_LRS"}}})
    )
    argv = ["failover-settings", "set", "vm-1", "--vm-size", "Standard_D4s_v3", "--static-ip", "10.0.0.7"]
    assert run([*argv, "--disk-type", "os=Premium_LRS", "--from-file", str(patch_file)]) == 0
    [sent] = api.sent
    assert sent.method == "PATCH" and sent.headers["Content-Type"] == "application/merge-patch+json"
    # The flags win over the file; disks merge per disk; nothing else is sent.
    assert json.loads(sent.content) == {
        "vmSize": "Standard_D4s_v3",
        "staticIpAddress": "10.0.0.7",
        "disks": {"data": {"diskType": "StandardSSD_LRS"}, "os": {"diskType": "Premium_LRS"}},
    }
    out = capsys.readouterr().out
    assert "Standard_D4s_v3" in out and "10.0.0.7" in out


def test_failover_settings_dynamic_ip_sends_a_null(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on("PATCH", "/api/machines/vm-1/failover-settings", ok(SETTINGS))
    assert run(["-o", "json", "failover-settings", "set", "vm-1", "--dynamic-ip"]) == 0
    assert json.loads(api.sent[0].content) == {"staticIpAddress": None}
    assert json.loads(capsys.readouterr().out) == SETTINGS


@pytest.mark.parametrize(
    "argv",
    [
        ["failover-settings", "set", "vm-1"],
        ["failover-settings", "set", "vm-1", "--static-ip", "10.0.0.7", "--dynamic-ip"],
        ["failover-settings", "set", "vm-1", "--disk-type", "Premium_LRS"],
        ["failover-settings", "show"],
    ],
)
def test_failover_settings_wrong_command_lines_send_nothing(
    api: FakeApi, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert run(argv) == 64
    assert api.sent == []
    assert "Traceback" not in capsys.readouterr().err


def test_failover_settings_file_must_be_a_json_object(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    listed = tmp_path / "ops.json"
    listed.write_text(json.dumps([{"op": "replace", "path": "/vmSize", "value": "Standard_D4s_v3"}]))
    assert run(["failover-settings", "set", "vm-1", "--from-file", str(listed)]) == 64
    assert "must hold a JSON object" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{vmSize: D4}")
    assert run(["failover-settings", "set", "vm-1", "--from-file", str(broken)]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert api.sent == []


@pytest.mark.parametrize(
    ("status", "error", "shown"),
    [
        (
            400,
            {
                "code": "ValidationFailed",
                "message": "invalid request",
                "details": [
                    {
                        "field": "staticIpAddress",
                        "problem": "10.9.0.4 is outside subnetAddressPrefix 10.0.0.0/24; choose an address "
                        "in it",
                    }
                ],
            },
            "staticIpAddress: 10.9.0.4 is outside subnetAddressPrefix 10.0.0.0/24; choose an address in it",
        ),
        (
            409,
            {
                "code": "FailoverSettingsLocked",
                "message": "cannot change the failover settings of machine vm-1: it is FailedOver",
                "details": [{"machineId": "vm-1", "state": "FailedOver"}],
            },
            "machineId=vm-1, state=FailedOver",
        ),
    ],
)
def test_failover_settings_refusals_are_shown_as_the_api_says_them(
    api: FakeApi, capsys: pytest.CaptureFixture[str], status: int, error: dict[str, Any], shown: str
) -> None:
    api.on("PATCH", "/api/machines/vm-1/failover-settings", ok({"error": error}, status))
    assert run(["failover-settings", "set", "vm-1", "--static-ip", "10.9.0.4"]) == 1
    err = capsys.readouterr().err
    assert f"{error['code']} (HTTP {status})" in err and error["message"] in err and shown in err
    assert "Traceback" not in err


POLICY: dict[str, Any] = {
    "throttlingEnabled": False,
    "workHoursBandwidthKbps": 4096,
    "nonWorkHoursBandwidthKbps": 1047552,
    "workHours": {"days": ["Monday", "Tuesday"], "start": "09:00:00", "end": "18:00:00"},
    "uploadThreadsPerVm": 4,
    "recoveryPointRetentionCount": 24,
    "recoveryPointRetentionHours": 72,
    "appConsistentFrequencyMinutes": 240,
    "maxCycleGapBeforeResync": 8,
    "reverseCycleMinutes": 15,
}


def test_appliance_policy_set_changes_only_what_it_names(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("GET", "/api/appliances/appl-1/policy", ok(POLICY))
    api.routes[("PUT", "/api/appliances/appl-1/policy")] = lambda request: ok(json.loads(request.content))
    assert run(["appliances", "policy", "set", "appl-1", "--reverse-cycle-minutes", "1", "--throttling"]) == 0
    get, put = api.sent
    assert get.method == "GET" and put.method == "PUT"
    # The API's PUT replaces the whole policy: the current one goes back with the two changes.
    assert json.loads(put.content) == {**POLICY, "reverseCycleMinutes": 1, "throttlingEnabled": True}
    out = capsys.readouterr().out
    shown = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}
    assert shown["reverseCycleMinutes"] == "1" and shown["throttlingEnabled"] == "true"
    assert "days=Monday/Tuesday" in out
    assert run(["appliances", "policy", "set", "appl-1"]) == 64
    assert len(api.sent) == 2


def test_reprotect_to_azure_sends_the_appliances_policy_with_the_changes(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    members = tmp_path / "policy.json"
    members.write_text(json.dumps({"uploadThreadsPerVm": 8, "recoveryPointRetentionCount": 12}))
    api.on("GET", "/api/appliances/appl-1/policy", ok(POLICY))
    api.on(
        "POST",
        "/api/machines/vm-1/reprotect",
        accepted(job("InProgress", [("Check prerequisites", "InProgress")], kind="Reprotect")),
    )
    argv = ["reprotect", "vm-1", "--appliance-id", "appl-1", "--policy-file", str(members)]
    assert run([*argv, "--upload-threads-per-vm", "16", "--throttling"]) == 0
    get, post = api.sent
    assert (get.method, get.url.path) == ("GET", "/api/appliances/appl-1/policy")
    # The flags win over the file; every member not named keeps the appliance's current value.
    policy = {
        **POLICY,
        "uploadThreadsPerVm": 16,
        "recoveryPointRetentionCount": 12,
        "throttlingEnabled": True,
    }
    assert json.loads(post.content) == {"applianceId": "appl-1", "policy": policy}
    assert "accepted: job job-1 (Reprotect)" in capsys.readouterr().out


def test_reprotect_policy_refusals(api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    listed = tmp_path / "policy.json"
    listed.write_text(json.dumps([{"uploadThreadsPerVm": 8}]))
    argv = ["reprotect", "vm-1", "--appliance-id", "appl-1"]
    assert run([*argv, "--policy-file", str(listed)]) == 64
    assert "--policy-file" in capsys.readouterr().err
    assert run([*argv, "--upload-threads-per-vm", "many"]) == 64
    assert api.sent == []
    # Toward on-premises the API refuses a policy and says where it is set instead.
    refusal = {
        "code": "ValidationFailed",
        "message": "invalid request",
        "details": [
            {
                "field": "policy",
                "problem": "only for a reprotect to Azure (a FailbackCommitted machine); a reprotect to "
                "on-premises replicates with the reverse appliance's policy",
            }
        ],
    }
    api.on("GET", "/api/appliances/appl-1/policy", ok(POLICY))
    api.on("POST", "/api/machines/vm-1/reprotect", ok({"error": refusal}, 400))
    assert run([*argv, "--reverse-cycle-minutes", "1"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "policy: only for a reprotect to Azure" in err and "Traceback" not in err


def test_appliance_policy_refusal_names_the_field(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on("GET", "/api/appliances/appl-1/policy", ok(POLICY))
    refusal = {
        "code": "ValidationFailed",
        "message": "invalid request",
        "details": [{"field": "uploadThreadsPerVm", "problem": "must be between 1 and 32; got 64"}],
    }
    api.on("PUT", "/api/appliances/appl-1/policy", ok({"error": refusal}, 400))
    assert run(["appliances", "policy", "set", "appl-1", "--upload-threads-per-vm", "64"]) == 1
    assert "uploadThreadsPerVm: must be between 1 and 32; got 64" in capsys.readouterr().err


def test_mobility_upload_installer_sends_the_file_under_its_name(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = "Microsoft-ASR_UA_9.60.0.0_UBUNTU-20.04-64_GA_20240101_release.tar.gz"
    installer = tmp_path / name
    installer.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    stored = {
        "fileName": name,
        "version": "9.60.0.0",
        "os": "UBUNTU-20.04-64",
        "sizeBytes": 1026,
        "uploadedAt": "2026-12-03T08:00:00Z",
        "sha256": "ab" * 32,
    }
    api.on("PUT", f"/api/mobility/installers/{name}", ok(stored, 201))
    assert run(["mobility", "upload-installer", str(installer)]) == 0
    [sent] = api.sent
    assert sent.content == installer.read_bytes()
    assert sent.headers["Content-Type"] == "application/octet-stream"
    out = capsys.readouterr().out
    assert name in out and "9.60.0.0" in out
    assert run(["mobility", "upload-installer", str(tmp_path / "absent.tar.gz")]) == 64


def test_mobility_passphrase_rotate_shows_it_once_and_show_never(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    issued = {
        "passphrase": "p4ss-w0rd-xyz",
        "setAt": "2026-12-03T08:00:00Z",
        "generation": 2,
        "replacedPrevious": True,
    }
    api.on("POST", "/api/mobility/passphrase", ok(issued, 201))
    api.on(
        "GET",
        "/api/mobility/passphrase",
        ok({"exists": True, "setAt": "2026-12-03T08:00:00Z", "generation": 2}),
    )
    assert run(["mobility", "passphrase", "rotate"]) == 0
    out = capsys.readouterr().out
    assert "p4ss-w0rd-xyz" in out and "shown once" in out and "previous passphrase no longer works" in out
    assert run(["mobility", "passphrase", "show"]) == 0
    out = capsys.readouterr().out
    assert "2026-12-03 08:00:00Z" in out and "p4ss" not in out
    api.on("GET", "/api/mobility/passphrase", ok({"exists": False, "setAt": None, "generation": None}))
    assert run(["mobility", "passphrase", "show"]) == 0
    assert "no registration passphrase is set" in capsys.readouterr().out


def _documented_command_lines(doc: Path) -> list[list[str]]:
    """Every `migrate ...` line of the document's bash blocks, continuations joined, comments and pipes cut."""
    lines: list[list[str]] = []
    for block in re.findall(r"```bash\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split(" | ")[0], comments=True)
            if words and words[0] in ("migrate", ".venv/bin/migrate"):
                lines.append(words[1:])
    return lines


@pytest.mark.parametrize("doc", ["docs/operator-guide.md", "README.md"])
def test_every_documented_command_line_is_one_the_client_accepts(
    api: FakeApi,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    doc: str,
) -> None:
    """The guide is read by outside testers: each command it shows must parse (the API's answer aside)."""
    commands = _documented_command_lines(REPO / doc)
    assert commands
    monkeypatch.chdir(tmp_path)
    (tmp_path / "settings.json").write_text(json.dumps({"vmSize": "Standard_D4s_v3"}))
    ran = 0
    for argv in commands:
        for word in argv:
            if word.startswith("./"):
                (tmp_path / word).write_bytes(b"\x1f\x8b installer")
        if argv[0] == "configure":
            continue  # prompts for the key: its profile file is tested above
        # The scripted API knows no route: 1 (the API refused) or 0, never 64 (a wrong command line).
        assert run(argv) in (0, 1), f"migrate {' '.join(argv)}: {capsys.readouterr().err}"
        ran += 1
        # Accepted means it went as far as asking the API.
        assert len(api.sent) >= ran, f"migrate {' '.join(argv)} sent nothing"


def test_the_operator_token_goes_with_every_call_and_credentials_are_kept_in_the_profile(
    tmp_path: Path,
) -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json={"machines": [], "continuationToken": None})

    env = {"MIGRATE_ENDPOINT": ENDPOINT, "MIGRATE_ACCESS_TOKEN": "eyJ.token.sig"}
    client = ApiClient(load_profile(env), transport=httpx.MockTransport(answer))
    client.get("/api/machines")
    assert seen == ["Bearer eyJ.token.sig"]

    path = tmp_path / "profile.toml"
    stored = Profile(
        "https://app.example",
        "k1",
        authority="https://login.microsoftonline.com/t/v2.0",
        client_id="c1",
        client_secret="s1",
        audience="api://migration-control-plane",
    )
    save_profile(path, stored)
    loaded = load_profile({"MIGRATE_PROFILE": str(path)})
    assert loaded == stored
    credentials = loaded.credentials()
    assert credentials is not None and credentials.audience == "api://migration-control-plane"


def test_a_job_shows_who_started_it() -> None:
    from cli.render import job_view

    job = {
        "id": "job-1",
        "kind": "Migration",
        "machineId": "vm-1",
        "status": "InProgress",
        "steps": [],
        "startedBy": {"objectId": "o-1", "name": "Ada", "kind": "user"},
    }
    console = Console(file=io.StringIO(), width=200)
    console.print(job_view(job))
    assert "started by Ada (user)" in console.file.getvalue()  # type: ignore[attr-defined]
