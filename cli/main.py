"""The `migrate` command: every operator action of the API, with `--output table|json` and `--wait`.

Exit codes: 0 success (a waited-for job Succeeded); 1 a waited-for job Failed or was Cancelled, or the
API refused the request, or it could not be reached; 2 a waited-for job finished with a Warning;
64 the command line itself is wrong; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
from rich.console import Console, RenderableType

from cli import render
from cli.client import ApiClient, ApiError, EndpointUnreachable
from cli.config import ConfigError, Profile, default_profile_path, load_profile, save_profile
from cli.wait import EXIT_FAILED, EXIT_SUCCEEDED, exit_code, follow_job
from shared.domain.command import DISK_PATH_PATTERN
from shared.domain.job import JobKind, JobStatus
from shared.domain.wire import is_resource_id

EXIT_USAGE = 64
MERGE_PATCH = "application/merge-patch+json"
EXIT_INTERRUPTED = 130


class Context:
    """Per-invocation state; the client is built on first use so `--help` and `configure` need no API."""

    def __init__(self, output: str, client_factory: Callable[[], ApiClient]) -> None:
        self.output = output
        self._factory = client_factory
        self._client: ApiClient | None = None
        self.out = Console(highlight=False, soft_wrap=False)

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            self._client = self._factory()
        return self._client

    @property
    def as_json(self) -> bool:
        return self.output == "json"

    def show(self, body: Any, table: Callable[[Any], RenderableType]) -> None:
        if self.as_json:
            click.echo(render.to_json(body))
        else:
            self.out.print(table(body))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


pass_ctx = click.make_pass_decorator(Context)


def _configured_client() -> ApiClient:
    return ApiClient(load_profile())


# Tests replace it to put a scripted API behind the commands.
CLIENT_FACTORY: Callable[[], ApiClient] = _configured_client


class DefaultCommandGroup(click.Group):
    """A group whose bare form runs its default command: `test-migrate vm-1` and `test-migrate cleanup vm-1`."""

    default_command = "start"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "MACHINE_ID [OPTIONS] | COMMAND [ARGS]...")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people; json prints the API's JSON for scripts",
)
@click.pass_context
def cli(ctx: click.Context, output: str) -> None:
    """Operate the migration and disaster-recovery control plane.

    Configure with MIGRATE_ENDPOINT and MIGRATE_FUNCTION_KEY plus an operator's Entra ID credentials
    (MIGRATE_AUTHORITY, MIGRATE_CLIENT_ID, MIGRATE_CLIENT_SECRET, MIGRATE_AUDIENCE; or MIGRATE_ACCESS_TOKEN),
    or `migrate configure` (a 0600 profile in ~/.config/migrate/profile.toml). Long actions take --wait: a live view of the job's steps, exit code
    0 succeeded, 2 warning, 1 failed.
    """
    state = Context(output, CLIENT_FACTORY)
    ctx.obj = state
    ctx.call_on_close(state.close)


@cli.command()
@click.option("--endpoint", required=True, help="the API's base URL, e.g. https://myapp.azurewebsites.net")
@click.option("--function-key", prompt=True, hide_input=True, help="a host key (operators)")
@click.option("--authority", default=None, help="https://login.microsoftonline.com/{tenant}/v2.0")
@click.option("--client-id", default=None, help="the operator's service principal (client credentials)")
@click.option("--client-secret", default=None, hide_input=True, help="its secret (stored 0600)")
@click.option(
    "--audience", default=None, help="the API's application ID URI, e.g. api://migration-control-plane"
)
def configure(
    endpoint: str,
    function_key: str,
    authority: str | None,
    client_id: str | None,
    client_secret: str | None,
    audience: str | None,
) -> int:
    """Save the endpoint, key and operator credentials in the profile file (mode 0600)."""
    path = default_profile_path(os.environ)
    save_profile(
        path,
        Profile(
            endpoint=endpoint.rstrip("/"),
            function_key=function_key or None,
            authority=authority,
            client_id=client_id,
            client_secret=client_secret,
            audience=audience,
        ),
    )
    click.echo(f"saved {path} (readable by you only)")
    return EXIT_SUCCEEDED


# --- the replication policy's options: `appliances policy set` and `reprotect` (to Azure) -----------------

# Flag -> the policy member it sets; the API checks the ranges.
_POLICY_FLAGS = {
    "throttling": "throttlingEnabled",
    "work_hours_bandwidth_kbps": "workHoursBandwidthKbps",
    "non_work_hours_bandwidth_kbps": "nonWorkHoursBandwidthKbps",
    "upload_threads_per_vm": "uploadThreadsPerVm",
    "recovery_point_retention_count": "recoveryPointRetentionCount",
    "recovery_point_retention_hours": "recoveryPointRetentionHours",
    "app_consistent_frequency_minutes": "appConsistentFrequencyMinutes",
    "reverse_cycle_minutes": "reverseCycleMinutes",
}


def policy_options(file_option: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """The policy's flags and a JSON file of members (`file_option`), passed as `policy_file` and one
    keyword per flag; `policy_changes` turns them into the members to change."""
    decorators: list[Callable[[Any], Any]] = [
        click.option("--throttling/--no-throttling", default=None, help="limit the upload bandwidth, or not"),
        click.option("--work-hours-bandwidth-kbps", type=int, help="512 Kbps to 1,023 Mbps"),
        click.option("--non-work-hours-bandwidth-kbps", type=int, help="512 Kbps to 1,023 Mbps"),
        click.option("--upload-threads-per-vm", type=int, help="1..32 (default 4)"),
        click.option("--recovery-point-retention-count", type=int),
        click.option("--recovery-point-retention-hours", type=int),
        click.option("--app-consistent-frequency-minutes", type=int, help="0: no app-consistent points"),
        click.option(
            "--reverse-cycle-minutes", type=int, help="reverse protection: minutes between reverse cycles"
        ),
        click.option(
            file_option,
            "policy_file",
            type=click.File("r"),
            help="policy members as a JSON object ('-': stdin); the flags above win over it",
        ),
    ]

    def decorate(command: Callable[..., int]) -> Callable[..., int]:
        for option in reversed(decorators):
            command = option(command)
        return command

    return decorate


def policy_changes(policy_file: Any, fields: dict[str, Any], file_option: str) -> dict[str, Any]:
    """The policy members the command line names: the file's, then the flags' (the flags win)."""
    changes: dict[str, Any] = {}
    if policy_file is not None:
        loaded = json.load(policy_file)
        if not isinstance(loaded, dict):
            raise click.BadParameter("must hold a JSON object of policy members", param_hint=file_option)
        changes = loaded
    changes.update({_POLICY_FLAGS[k]: v for k, v in fields.items() if v is not None})
    return changes


def changed_policy(state: Context, appliance_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """APPLIANCE_ID's current policy with `changes`: the API takes a whole policy (an omitted member takes
    its default), so sending the current one changes only what the command line names."""
    current = state.client.get(f"/api/appliances/{appliance_id}/policy")
    return {**current, **changes}


# --- long operations -------------------------------------------------------------------------------------

wait_option = click.option(
    "--wait", is_flag=True, help="follow the job's steps until it ends; exit 0 succeeded, 2 warning, 1 failed"
)
timeout_option = click.option(
    "--timeout",
    type=float,
    default=None,
    metavar="SECONDS",
    help="with --wait: give up after this long (exit 1)",
)


def start_job(
    state: Context, /, method: str, path: str, body: dict[str, Any] | None, wait: bool, timeout: float | None
) -> int:
    answer = state.client.request(method, path, json=body)
    accepted = answer.body
    job = accepted.get("job") if isinstance(accepted, dict) else None
    job_id = accepted["jobId"]
    if not wait:
        if state.as_json:
            click.echo(render.to_json(accepted))
        else:
            state.out.print(
                f"accepted: job {job_id} ({job['kind'] if job else '?'}) on machine {accepted['machineId']}\n"
                f"follow it with: migrate jobs show {job_id} --wait"
            )
        return EXIT_SUCCEEDED
    return wait_for(state, job_id, job, timeout, first_delay=answer.retry_after(2.0))


def wait_for(
    state: Context,
    /,
    job_id: str,
    job: dict[str, Any] | None,
    timeout: float | None,
    first_delay: float = 2.0,
) -> int:
    final = follow_job(
        state.client,
        job_id,
        state.out,
        first=job,
        live=not state.as_json,
        timeout_seconds=timeout,
        poll_seconds=first_delay,
    )
    if state.as_json:
        click.echo(render.to_json(final))
    return exit_code(final["status"])


@cli.group()
def replication() -> None:
    """Enable, stop or repair a machine's replication."""


@replication.command("enable")
@click.argument("machine_id")
@click.option(
    "--target", "target_file", type=click.File("r"), help="target settings as a JSON file ('-': stdin)"
)
@click.option("--resource-group")
@click.option("--virtual-network", help="name in the resource group, or an ARM id")
@click.option("--subnet")
@click.option("--subnet-address-prefix", help="e.g. 10.1.2.0/24 (checks a static IP before any Azure call)")
@click.option("--test-virtual-network", help="the isolated VNet test migrations use")
@click.option("--vm-size", help="e.g. Standard_D4s_v3")
@click.option("--disk-type")
@click.option("--static-ip", "static_ip_address")
@click.option("--vm-name", "target_vm_name")
@wait_option
@timeout_option
@pass_ctx
def replication_enable(
    state: Context,
    /,
    machine_id: str,
    target_file: Any,
    wait: bool,
    timeout: float | None,
    **fields: str | None,
) -> int:
    """Enable replication of MACHINE_ID to Azure with its target settings."""
    target: dict[str, Any] = json.load(target_file) if target_file is not None else {}
    names = {
        "resource_group": "resourceGroup",
        "virtual_network": "virtualNetwork",
        "subnet": "subnet",
        "subnet_address_prefix": "subnetAddressPrefix",
        "test_virtual_network": "testVirtualNetwork",
        "vm_size": "vmSize",
        "disk_type": "diskType",
        "static_ip_address": "staticIpAddress",
        "target_vm_name": "targetVmName",
    }
    target.update({names[k]: v for k, v in fields.items() if v is not None})
    return start_job(state, "PUT", f"/api/machines/{machine_id}/replication", target, wait, timeout)


@replication.command("stop")
@click.argument("machine_id")
@wait_option
@timeout_option
@pass_ctx
def replication_stop(state: Context, /, machine_id: str, wait: bool, timeout: float | None) -> int:
    """Stop replication (on a Migrated machine: complete the migration)."""
    return start_job(state, "DELETE", f"/api/machines/{machine_id}/replication", None, wait, timeout)


@replication.command("repair")
@click.argument("machine_id")
@wait_option
@timeout_option
@pass_ctx
def replication_repair(state: Context, /, machine_id: str, wait: bool, timeout: float | None) -> int:
    """Repair replication: resync every disk, keeping the recovery points."""
    return start_job(state, "POST", f"/api/machines/{machine_id}/repair", None, wait, timeout)


@cli.group("test-migrate", cls=DefaultCommandGroup)
def test_migrate() -> None:
    """Test migration into the isolated test VNet, and its clean-up.

    \b
    migrate test-migrate MACHINE_ID [--recovery-point ID] [--prepared-manually]
                                    [--test-virtual-network VNET] [--wait] [--timeout SECONDS]
    migrate test-migrate cleanup MACHINE_ID [--wait]
    """


@test_migrate.command("start", hidden=True)
@click.argument("machine_id")
@click.option("--recovery-point", default=None, help="'latest' (default) or a recovery point id")
@click.option(
    "--prepared-manually", is_flag=True, help="skip hydration: the OS was prepared for Azure by hand"
)
@click.option("--test-virtual-network", default=None, help="default: the target settings' test VNet")
@wait_option
@timeout_option
@pass_ctx
def test_migrate_start(
    state: Context,
    /,
    machine_id: str,
    recovery_point: str | None,
    prepared_manually: bool,
    test_virtual_network: str | None,
    wait: bool,
    timeout: float | None,
) -> int:
    body: dict[str, Any] = {}
    if recovery_point:
        body["recoveryPoint"] = recovery_point
    if prepared_manually:
        body["preparedManually"] = True
    if test_virtual_network:
        body["testVirtualNetwork"] = test_virtual_network
    return start_job(state, "POST", f"/api/machines/{machine_id}/test-migrate", body, wait, timeout)


@test_migrate.command("cleanup")
@click.argument("machine_id")
@wait_option
@timeout_option
@pass_ctx
def test_migrate_cleanup(state: Context, /, machine_id: str, wait: bool, timeout: float | None) -> int:
    """Delete every test-migration resource; the machine goes back to Replicating."""
    return start_job(state, "POST", f"/api/machines/{machine_id}/test-migrate/cleanup", None, wait, timeout)


@cli.command("migrate")
@click.argument("machine_id")
@click.option("--shutdown-source", is_flag=True, help="shut the source down before the final cycle")
@click.option("--prepared-manually", is_flag=True)
@wait_option
@timeout_option
@pass_ctx
def migrate_command(
    state: Context,
    /,
    machine_id: str,
    shutdown_source: bool,
    prepared_manually: bool,
    wait: bool,
    timeout: float | None,
) -> int:
    """Migrate (cutover): final cycle, hydration, the VM in the target subnet."""
    body = {"shutdownSource": shutdown_source, "preparedManually": prepared_manually}
    return start_job(state, "POST", f"/api/machines/{machine_id}/migrate", body, wait, timeout)


@cli.command("failover")
@click.argument("machine_id")
@click.option(
    "--recovery-point",
    default="latest",
    show_default=True,
    help="latest, latestProcessed, latestAppConsistent, latestCrashConsistent or a recovery point id",
)
@click.option("--shutdown-source", is_flag=True)
@wait_option
@timeout_option
@pass_ctx
def failover_command(
    state: Context,
    /,
    machine_id: str,
    recovery_point: str,
    shutdown_source: bool,
    wait: bool,
    timeout: float | None,
) -> int:
    """Fail over to Azure from a recovery point (cannot be cancelled)."""
    body = {"recoveryPoint": recovery_point, "shutdownSource": shutdown_source}
    return start_job(state, "POST", f"/api/machines/{machine_id}/failover", body, wait, timeout)


@cli.command("change-recovery-point")
@click.argument("machine_id")
@click.option("--recovery-point-id", required=True)
@wait_option
@timeout_option
@pass_ctx
def change_recovery_point(
    state: Context, /, machine_id: str, recovery_point_id: str, wait: bool, timeout: float | None
) -> int:
    """Rebuild the failed-over VM's disks from another recovery point."""
    body = {"recoveryPointId": recovery_point_id}
    return start_job(state, "POST", f"/api/machines/{machine_id}/change-recovery-point", body, wait, timeout)


@cli.command("commit")
@click.argument("machine_id")
@wait_option
@timeout_option
@pass_ctx
def commit_command(state: Context, /, machine_id: str, wait: bool, timeout: float | None) -> int:
    """Commit a failover (keep its recovery point, delete every other one), or a planned failover to
    on-premises (delete the machine's Azure VM, disks and snapshots)."""
    return start_job(state, "POST", f"/api/machines/{machine_id}/commit", None, wait, timeout)


@cli.command("planned-failover")
@click.argument("machine_id")
@wait_option
@timeout_option
@pass_ctx
def planned_failover_command(state: Context, /, machine_id: str, wait: bool, timeout: float | None) -> int:
    """Fail a failed-over machine back to on-premises: final sync, Azure VM off, on-premises VM on."""
    return start_job(state, "POST", f"/api/machines/{machine_id}/planned-failover", None, wait, timeout)


@cli.command("cancel-planned-failover")
@click.argument("machine_id")
@wait_option
@timeout_option
@pass_ctx
def cancel_planned_failover_command(
    state: Context, /, machine_id: str, wait: bool, timeout: float | None
) -> int:
    """Undo a planned failover: revert the on-premises disks to their snapshot, resume replication."""
    return start_job(
        state, "POST", f"/api/machines/{machine_id}/cancel-planned-failover", None, wait, timeout
    )


@cli.command("reprotect")
@click.argument("machine_id")
@click.option(
    "--appliance-id",
    required=True,
    help="the appliance that writes the on-premises machine's disks (healthy, of the machine's kind)",
)
@policy_options("--policy-file")
@wait_option
@timeout_option
@pass_ctx
def reprotect_command(
    state: Context,
    /,
    machine_id: str,
    appliance_id: str,
    policy_file: Any,
    wait: bool,
    timeout: float | None,
    **fields: Any,
) -> int:
    """Protect a committed failover back to on-premises (reverse initial sync, then reverse cycles); on a
    FailbackCommitted machine, protect it to Azure again (only what changed on-premises is sent).

    The policy options (reprotect to Azure only; the API refuses them toward on-premises) change members of
    the appliance's replication policy before the reprotect starts, as `appliances policy set` does; the
    other members keep their current values."""
    body: dict[str, Any] = {"applianceId": appliance_id}
    if changes := policy_changes(policy_file, fields, "--policy-file"):
        body["policy"] = changed_policy(state, appliance_id, changes)
    return start_job(state, "POST", f"/api/machines/{machine_id}/reprotect", body, wait, timeout)


@cli.group("failover-settings")
def failover_settings() -> None:
    """What a failover to Azure creates: VM name, resource group, size, network, IP address, disk types.

    \b
    migrate failover-settings show MACHINE_ID
    migrate failover-settings set MACHINE_ID [--vm-size SIZE] [--static-ip IP | --dynamic-ip]
                                  [--disk-type DISK_ID=TYPE ...] [--from-file FILE] ...
    """


@failover_settings.command("show")
@click.argument("machine_id")
@pass_ctx
def failover_settings_show(state: Context, /, machine_id: str) -> int:
    """The settings MACHINE_ID's next failover uses (the target settings until changed)."""
    body = state.client.get(f"/api/machines/{machine_id}/failover-settings")
    state.show(body, lambda settings: render.failover_settings_view(machine_id, settings))
    return EXIT_SUCCEEDED


# Flag -> the settings member it sets; the API checks every value (and Azure what it can), so the
# client only builds the merge patch.
_SETTINGS_FLAGS = {
    "vm_name": "vmName",
    "resource_group": "resourceGroup",
    "vm_size": "vmSize",
    "virtual_network": "virtualNetwork",
    "subnet": "subnet",
    "subnet_address_prefix": "subnetAddressPrefix",
    "static_ip": "staticIpAddress",
}


def _disk_types(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, dict[str, str]]:
    disks: dict[str, dict[str, str]] = {}
    for value in values:
        disk_id, sep, disk_type = value.partition("=")
        if not sep or not disk_id or not disk_type:
            raise click.BadParameter(f"{value!r} is not DISK_ID=TYPE, e.g. os=Premium_LRS")
        disks[disk_id] = {"diskType": disk_type}
    return disks


@failover_settings.command("set")
@click.argument("machine_id")
@click.option("--vm-name", help="the failed-over VM's name")
@click.option("--resource-group", help="the resource group the VM is created in")
@click.option("--vm-size", help="e.g. Standard_D4s_v3 (checked against the region's offered sizes)")
@click.option("--virtual-network", help="VNet name in the resource group, or an ARM id")
@click.option("--subnet")
@click.option("--subnet-address-prefix", help="e.g. 10.1.2.0/24 (lets the API check a static IP)")
@click.option("--static-ip", help="the VM's private IP address in the subnet")
@click.option("--dynamic-ip", is_flag=True, help="remove the static IP: Azure assigns one")
@click.option(
    "--disk-type",
    "disks",
    multiple=True,
    metavar="DISK_ID=TYPE",
    callback=_disk_types,
    help="a disk's managed disk type, e.g. os=Premium_LRS (repeat per disk)",
)
@click.option(
    "--from-file",
    "patch_file",
    type=click.File("r"),
    help="a JSON merge patch of the settings ('-': stdin); the flags above win over its members",
)
@pass_ctx
def failover_settings_set(
    state: Context,
    /,
    machine_id: str,
    dynamic_ip: bool,
    disks: dict[str, dict[str, str]],
    patch_file: Any,
    **fields: str | None,
) -> int:
    """Change MACHINE_ID's failover settings (a JSON merge patch: only what is given changes)."""
    if dynamic_ip and fields["static_ip"] is not None:
        raise click.UsageError("give --static-ip or --dynamic-ip, not both")
    patch: dict[str, Any] = {}
    if patch_file is not None:
        loaded = json.load(patch_file)
        if not isinstance(loaded, dict):
            raise click.BadParameter(
                'must hold a JSON object of the members to change, e.g. {"vmSize": "Standard_D4s_v3"}',
                param_hint="--from-file",
            )
        patch = loaded
    patch.update({_SETTINGS_FLAGS[k]: v for k, v in fields.items() if v is not None})
    if dynamic_ip:
        patch["staticIpAddress"] = None  # a null in a merge patch removes the member
    if disks:
        # Merged per disk, so a file's other disks are kept.
        from_file = patch.get("disks")
        patch["disks"] = {**(from_file if isinstance(from_file, dict) else {}), **disks}
    if not patch:
        raise click.UsageError("nothing to change: give at least one option, or --from-file")
    answer = state.client.request(
        "PATCH", f"/api/machines/{machine_id}/failover-settings", json=patch, content_type=MERGE_PATCH
    )
    state.show(answer.body, lambda settings: render.failover_settings_view(machine_id, settings))
    return EXIT_SUCCEEDED


@cli.group()
def mobility() -> None:
    """The Mobility service: installers, push installation and update, a machine's agent."""


def _push_body(
    credential_name: str,
    install_location: str | None,
    passphrase_name: str | None,
    server_address: str | None,
    server_port: int | None,
    disk_paths: dict[str, str],
) -> dict[str, Any]:
    body: dict[str, Any] = {"credentialName": credential_name}
    optional = {
        "installLocation": install_location,
        "passphraseName": passphrase_name,
        "serverAddress": server_address,
        "serverPort": server_port,
        "diskPaths": disk_paths or None,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


_DISK_PATH = re.compile(DISK_PATH_PATTERN)


def _disk_paths(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """DISK_ID=PATH pairs, checked by the API's own rules so a typo is caught before anything is pushed."""
    paths: dict[str, str] = {}
    for value in values:
        disk_id, sep, path = value.partition("=")
        if not sep or not disk_id or not path:
            raise click.BadParameter(f"{value!r} is not DISK_ID=PATH, e.g. data=/dev/sdb")
        if not is_resource_id(disk_id):
            raise click.BadParameter(
                f"{disk_id!r} is not a disk id: 1-128 letters, digits, '.', '_' or '-', starting with a letter "
                "or digit (the ids `migrate machines show` lists)"
            )
        if not _DISK_PATH.fullmatch(path):
            raise click.BadParameter(
                f"{path!r} (disk {disk_id}) must be an absolute path of letters, digits, '.', '_', '-' and '/' "
                "only, e.g. /dev/sdb or /srv/disks/data.img"
            )
        if paths.get(disk_id, path) != path:
            raise click.BadParameter(f"disk {disk_id} is given twice: {paths[disk_id]} and {path}")
        paths[disk_id] = path
    return paths


def _push_options(command: Callable[..., int]) -> Callable[..., int]:
    decorators: list[Callable[[Any], Any]] = [
        click.argument("machine_id"),
        click.option(
            "--credential-name",
            required=True,
            help="the secret in the appliance's store holding the server's root/administrator account",
        ),
        click.option("--install-location", default=None, help="absolute path (default: the OS's own)"),
        click.option(
            "--passphrase-name", default=None, help="the secret holding the registration passphrase"
        ),
        click.option(
            "--server-address",
            default=None,
            help="how the appliance reaches the server (default: its IP)",
        ),
        click.option("--server-port", type=int, default=None, help="SSH port (Linux; default 22)"),
        click.option(
            "--disk-path",
            "disk_paths",
            multiple=True,
            metavar="DISK_ID=PATH",
            callback=_disk_paths,
            help="Linux: the block device or raw image on the server the agent replicates a disk from, e.g. "
            "data=/dev/sdb (repeat per disk; none: the agent only heartbeats, and an update keeps its disks)",
        ),
        wait_option,
        timeout_option,
        pass_ctx,
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


@mobility.command("install")
@_push_options
def mobility_install(
    state: Context,
    /,
    machine_id: str,
    credential_name: str,
    install_location: str | None,
    passphrase_name: str | None,
    server_address: str | None,
    server_port: int | None,
    disk_paths: dict[str, str],
    wait: bool,
    timeout: float | None,
) -> int:
    """Push-install the Mobility service on MACHINE_ID through its appliance (job InstallMobilityService)."""
    body = _push_body(
        credential_name, install_location, passphrase_name, server_address, server_port, disk_paths
    )
    return start_job(state, "POST", f"/api/machines/{machine_id}/mobility/install", body, wait, timeout)


@mobility.command("update")
@_push_options
def mobility_update(
    state: Context,
    /,
    machine_id: str,
    credential_name: str,
    install_location: str | None,
    passphrase_name: str | None,
    server_address: str | None,
    server_port: int | None,
    disk_paths: dict[str, str],
    wait: bool,
    timeout: float | None,
) -> int:
    """Update the Mobility service on MACHINE_ID to the newest installer for its OS."""
    body = _push_body(
        credential_name, install_location, passphrase_name, server_address, server_port, disk_paths
    )
    return start_job(state, "POST", f"/api/machines/{machine_id}/mobility/update", body, wait, timeout)


@mobility.command("installers")
@click.option("--os", "os_name", default=None, help="show only the installer that serves this OS")
@pass_ctx
def mobility_installers(state: Context, /, os_name: str | None) -> int:
    """The installer catalog; with --os, which installer serves that OS (or why none does)."""
    if os_name is not None:
        state.show(
            state.client.get("/api/mobility/installers/resolve", os=os_name), render.installer_resolution
        )
    else:
        state.show(state.client.get("/api/mobility/installers"), render.installers_table)
    return EXIT_SUCCEEDED


@mobility.command("upload-installer")
@click.argument("installer", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_ctx
def mobility_upload_installer(state: Context, /, installer: Path) -> int:
    """Add INSTALLER to the catalog, under its file name (Microsoft-ASR_UA_<version>_<OS>_GA_<date>_release...)."""
    answer = state.client.request(
        "PUT",
        f"/api/mobility/installers/{quote(installer.name, safe='')}",
        content=installer.read_bytes(),
        content_type="application/octet-stream",
    )
    state.show({"installers": [answer.body]}, render.installers_table)
    return EXIT_SUCCEEDED


@mobility.group("passphrase")
def mobility_passphrase() -> None:
    """The passphrase agents register with (stored as a hash; shown once when set)."""


@mobility_passphrase.command("show")
@pass_ctx
def mobility_passphrase_show(state: Context, /) -> int:
    """Whether a passphrase is set, when, and its generation (never the passphrase)."""
    state.show(state.client.get("/api/mobility/passphrase"), render.passphrase_status)
    return EXIT_SUCCEEDED


@mobility_passphrase.command("rotate")
@pass_ctx
def mobility_passphrase_rotate(state: Context, /) -> int:
    """Set a new passphrase (the old one stops working): shown once, give it to the agents' installations."""
    answer = state.client.request("POST", "/api/mobility/passphrase")
    state.show(answer.body, render.passphrase_issued)
    return EXIT_SUCCEEDED


@mobility.command("show")
@click.argument("machine_id")
@pass_ctx
def mobility_show(state: Context, /, machine_id: str) -> int:
    """MACHINE_ID's Mobility agent: version, health, last heartbeat."""
    state.show(state.client.get(f"/api/machines/{machine_id}/mobility"), render.mobility_view)
    return EXIT_SUCCEEDED


# --- views -----------------------------------------------------------------------------------------------

page_size_option = click.option("--page-size", type=int, default=None, help="1..100 (default 50)")
continuation_option = click.option("--continuation-token", default=None, help="from the previous page")


@cli.group()
def appliances() -> None:
    """Register appliances and see their health."""


@appliances.command("list")
@page_size_option
@continuation_option
@pass_ctx
def appliances_list(state: Context, /, page_size: int | None, continuation_token: str | None) -> int:
    body = state.client.get("/api/appliances", pageSize=page_size, continuationToken=continuation_token)
    state.show(body, render.appliances_table)
    return EXIT_SUCCEEDED


@appliances.command("show")
@click.argument("appliance_id")
@pass_ctx
def appliances_show(state: Context, /, appliance_id: str) -> int:
    state.show(state.client.get(f"/api/appliances/{appliance_id}"), render.appliance_view)
    return EXIT_SUCCEEDED


@appliances.command("register")
@click.option("--name", required=True)
@click.option("--kind", required=True, type=click.Choice(["vmware", "hyperv", "physical"]))
@click.option("--site", required=True, help="vCenter/site, or Hyper-V host/cluster")
@pass_ctx
def appliances_register(state: Context, /, name: str, kind: str, site: str) -> int:
    """Register an appliance; its credential is shown once."""
    answer = state.client.request("POST", "/api/appliances", json={"name": name, "kind": kind, "site": site})
    state.show(answer.body, render.registered_view)
    return EXIT_SUCCEEDED


@appliances.group("policy")
def appliances_policy() -> None:
    """The replication policy an appliance serves its machines: bandwidth, threads, retention, cycles."""


@appliances_policy.command("show")
@click.argument("appliance_id")
@pass_ctx
def appliances_policy_show(state: Context, /, appliance_id: str) -> int:
    state.show(state.client.get(f"/api/appliances/{appliance_id}/policy"), render.policy_view)
    return EXIT_SUCCEEDED


@appliances_policy.command("set")
@click.argument("appliance_id")
@policy_options("--from-file")
@pass_ctx
def appliances_policy_set(state: Context, /, appliance_id: str, policy_file: Any, **fields: Any) -> int:
    """Change members of APPLIANCE_ID's policy; the others keep their current values."""
    changes = policy_changes(policy_file, fields, "--from-file")
    if not changes:
        raise click.UsageError("nothing to change: give at least one option, or --from-file")
    answer = state.client.request(
        "PUT", f"/api/appliances/{appliance_id}/policy", json=changed_policy(state, appliance_id, changes)
    )
    state.show(answer.body, render.policy_view)
    return EXIT_SUCCEEDED


@cli.group()
def machines() -> None:
    """Machines: state, health, RPO, progress, events."""


@machines.command("list")
@click.option("--appliance-id", default=None)
@click.option("--state", "machine_state", default=None, help="e.g. Replicating")
@page_size_option
@continuation_option
@pass_ctx
def machines_list(
    state: Context,
    /,
    appliance_id: str | None,
    machine_state: str | None,
    page_size: int | None,
    continuation_token: str | None,
) -> int:
    body = state.client.get(
        "/api/machines",
        applianceId=appliance_id,
        state=machine_state,
        pageSize=page_size,
        continuationToken=continuation_token,
    )
    state.show(body, render.machines_table)
    return EXIT_SUCCEEDED


@machines.command("show")
@click.argument("machine_id")
@pass_ctx
def machines_show(state: Context, /, machine_id: str) -> int:
    state.show(state.client.get(f"/api/machines/{machine_id}"), render.machine_view)
    return EXIT_SUCCEEDED


@machines.command("events")
@click.argument("machine_id")
@click.option("--limit", type=int, default=None, help="1..200 (default 50)")
@continuation_option
@pass_ctx
def machines_events(
    state: Context, /, machine_id: str, limit: int | None, continuation_token: str | None
) -> int:
    body = state.client.get(
        f"/api/machines/{machine_id}/events", limit=limit, continuationToken=continuation_token
    )
    state.show(body, render.events_table)
    return EXIT_SUCCEEDED


@cli.group()
def jobs() -> None:
    """Long operations: list, show (and follow), cancel."""


@jobs.command("list")
@click.option("--machine-id", default=None)
@click.option("--kind", default=None, type=click.Choice([k.value for k in JobKind]))
@click.option("--status", default=None, type=click.Choice([s.value for s in JobStatus]))
@page_size_option
@continuation_option
@pass_ctx
def jobs_list(
    state: Context,
    /,
    machine_id: str | None,
    kind: str | None,
    status: str | None,
    page_size: int | None,
    continuation_token: str | None,
) -> int:
    body = state.client.get(
        "/api/jobs",
        machineId=machine_id,
        kind=kind,
        status=status,
        pageSize=page_size,
        continuationToken=continuation_token,
    )
    state.show(body, render.jobs_table)
    return EXIT_SUCCEEDED


@jobs.command("show")
@click.argument("job_id")
@wait_option
@timeout_option
@pass_ctx
def jobs_show(state: Context, /, job_id: str, wait: bool, timeout: float | None) -> int:
    """A job's steps; with --wait, follow it to its end (and exit by its status)."""
    if wait:
        return wait_for(state, job_id, None, timeout)
    job = state.client.get(f"/api/jobs/{job_id}")
    state.show(job, render.job_view)
    return EXIT_SUCCEEDED


@jobs.command("cancel")
@click.argument("job_id")
@wait_option
@timeout_option
@pass_ctx
def jobs_cancel(state: Context, /, job_id: str, wait: bool, timeout: float | None) -> int:
    """Ask a running job to stop (409 for a job that cannot be cancelled, or has finished)."""
    answer = state.client.request("POST", f"/api/jobs/{job_id}/cancel")
    body = answer.body if isinstance(answer.body, dict) else {}
    job = body.get("job", body) if body else None
    if wait:
        return wait_for(state, job_id, job if job and "steps" in job else None, timeout)
    if state.as_json:
        click.echo(render.to_json(answer.body))
    else:
        state.out.print(
            f"cancellation of job {job_id} requested; follow it with: migrate jobs show {job_id} --wait"
        )
    return EXIT_SUCCEEDED


# --- entry point -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code; every failure is printed, never a traceback."""
    err = Console(stderr=True, highlight=False)
    as_json = _wants_json(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=argv, prog_name="migrate", standalone_mode=False)
    except click.exceptions.Abort:
        # Ctrl-C: only the client stops; a job it was following goes on (`jobs show ID --wait`).
        err.print("interrupted")
        return EXIT_INTERRUPTED
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        exc.show()
        return EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        return EXIT_FAILED
    except ApiError as exc:
        if as_json:
            error = {"status": exc.status, "code": exc.code, "message": exc.message, "details": exc.details}
            click.echo(render.to_json({"error": error}), err=True)
        else:
            err.print(render.error_view(exc))
        return EXIT_FAILED
    except (EndpointUnreachable, ConfigError, TimeoutError) as exc:
        if isinstance(exc, EndpointUnreachable):
            err.print(render.error_view(exc))
        else:
            err.print(f"[bold red]error:[/] {exc}")
        return EXIT_FAILED
    except (OSError, ValueError) as exc:
        # A --target file that cannot be read or is not JSON.
        err.print(f"[bold red]error:[/] {exc}")
        return EXIT_FAILED
    return result if isinstance(result, int) else EXIT_SUCCEEDED


def _wants_json(argv: list[str]) -> bool:
    for i, arg in enumerate(argv):
        if arg in ("--output=json", "-ojson") or (
            arg in ("--output", "-o") and argv[i + 1 : i + 2] == ["json"]
        ):
            return True
    return False


__all__ = ["cli", "main", "run"]
