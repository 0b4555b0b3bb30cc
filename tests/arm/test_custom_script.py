"""The Custom Script Extension really runs: files from Azurite, disks as loop devices, the handler's status."""

from __future__ import annotations

import stat
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from azure.mgmt.compute import models as cm
from azure.storage.blob import BlobSasPermissions, ContainerClient, generate_blob_sas

from devhost.arm import start_local_arm
from devhost.emulators import AZURITE_ACCOUNT, AZURITE_KEY, EmulatorEndpoints
from devhost.processes import ManagedProcess, free_port
from devhost.waiting import wait_until
from shared.migration import resources as ops
from shared.migration.tags import ResourceTags
from shared.platform.arm_clients import ArmClients, build_arm_clients
from shared.platform.arm_errors import ExtensionFailed
from shared.replication.replica_disks import ReplicaDiskSpec, create_replica_disk
from shared.replication.vhd import MIB
from tests.arm.conftest import (
    IS_ROOT,
    LOCATION,
    STORAGE_ACCOUNT_ID,
    TOKEN,
    LocalArmEndpoint,
    arm_settings,
    make_tags,
)

pytestmark = pytest.mark.integration
SIGNATURE = b"MIGRATE-LUN0-SIGNATURE"


def sas_url(container: ContainerClient, name: str, data: bytes) -> str:
    blob = container.get_blob_client(name)
    blob.upload_blob(data, overwrite=True)
    sas = generate_blob_sas(
        AZURITE_ACCOUNT,
        container.container_name,
        name,
        account_key=AZURITE_KEY,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"{blob.url}?{sas}"


@pytest.fixture()
def helper(clients: ArmClients, resource_group: str, tags: ResourceTags, container: ContainerClient) -> str:
    """A helper VM with one data disk (LUN 0) imported from a replica that starts with SIGNATURE."""
    spec = ReplicaDiskSpec(machine_id="m-cse", disk_id=uuid.uuid4().hex[:6], disk_size=2 * MIB)
    replica = create_replica_disk(container, spec)
    container.get_blob_client(replica.blob_name).upload_page(
        SIGNATURE.ljust(512, b"\0"), offset=0, length=512
    )
    disk = ops.import_disk(
        clients,
        resource_group,
        "to-prepare",
        location=LOCATION,
        source_uri=replica.url,
        storage_account_id=STORAGE_ACCOUNT_ID,
        tags=tags,
    )
    vnet = ops.ensure_virtual_network(
        clients,
        resource_group,
        "vnet",
        location=LOCATION,
        address_prefix="10.40.0.0/24",
        subnet_name="s",
        subnet_prefix="10.40.0.0/26",
        tags=tags,
    )
    nic = ops.ensure_network_interface(
        clients,
        resource_group,
        "nic",
        location=LOCATION,
        subnet_id=vnet.subnet_id,
        network_security_group_id=None,
        tags=tags,
    )
    ops.ensure_helper_vm(
        clients,
        resource_group,
        "helper",
        location=LOCATION,
        size="Standard_B2s",
        nic_id=nic.id,
        data_disk_ids=[disk.id],
        admin_username="azureuser",
        ssh_public_key="ssh-rsa AAAAB3NzaC1yc2E test",
        tags=tags,
    )
    return "helper"


def _loops_of(local_arm: LocalArmEndpoint) -> str:
    images = [str(p) for p in (local_arm.data_dir / "disks").glob("*.raw")]
    out = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return "\n".join(line for line in out.splitlines() if any(image in line for image in images))


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="attaching disk images as loop devices (losetup) needs root")
def test_script_reads_the_attached_disk_through_its_loop_device(
    clients: ArmClients,
    resource_group: str,
    tags: ResourceTags,
    helper: str,
    container: ContainerClient,
    local_arm: LocalArmEndpoint,
) -> None:
    script = sas_url(
        container,
        "probe.sh",
        (
            "#!/bin/sh\n"
            f"disk={ops.lun_device_path(0)}\n"
            'echo "device=$(readlink -f "$disk")"\n'
            'head -c 22 "$disk"; echo\n'
            'echo "all=$AZURE_LOCAL_DISKS" >&2\n'
        ).encode(),
    )
    result = ops.run_custom_script(
        clients,
        resource_group,
        helper,
        location=LOCATION,
        command="sh probe.sh",
        file_uris=[script],
        run_id=1,
        tags=tags,
    )
    assert result.message.startswith("Enable succeeded: \n[stdout]\n")
    assert SIGNATURE.decode() in result.stdout_tail
    device = result.stdout_tail.split("device=", 1)[1].split("\n", 1)[0]
    assert device.startswith("/dev/loop")
    assert result.stderr_tail == f"all={device}\n"
    view = clients.compute.virtual_machine_extensions.get(
        resource_group, helper, "hydration", expand="instanceView"
    )
    status = view.properties.instance_view.statuses[0]
    assert (status.code, status.display_status) == ("ProvisioningState/succeeded", "Provisioning succeeded")
    assert status.message == result.message
    assert view.properties.provisioning_state == "Succeeded"
    assert view.properties.protected_settings is None  # never returned
    assert _loops_of(local_arm) == ""  # detached after the run


def test_same_configuration_does_not_rerun_and_a_new_run_id_does(
    clients: ArmClients,
    resource_group: str,
    tags: ResourceTags,
    helper: str,
    tmp_path: Path,
) -> None:
    counter = tmp_path / "runs"
    command = f"echo ran >> {counter}; wc -l < {counter}"
    first = ops.run_custom_script(
        clients, resource_group, helper, location=LOCATION, command=command, file_uris=[], run_id=7, tags=tags
    )
    assert first.stdout_tail.strip() == "1"
    again = ops.run_custom_script(
        clients, resource_group, helper, location=LOCATION, command=command, file_uris=[], run_id=7, tags=tags
    )
    assert again == first and counter.read_text() == "ran\n"
    rerun = ops.run_custom_script(
        clients, resource_group, helper, location=LOCATION, command=command, file_uris=[], run_id=8, tags=tags
    )
    assert rerun.stdout_tail.strip() == "2"
    listed = clients.compute.virtual_machine_extensions.list(resource_group, helper)
    assert [e.name for e in listed.value] == ["hydration"]
    clients.compute.virtual_machine_extensions.begin_delete(resource_group, helper, "hydration").result()
    assert clients.compute.virtual_machine_extensions.list(resource_group, helper).value == []


def test_protected_settings_are_not_kept_in_clear(
    clients: ArmClients,
    resource_group: str,
    tags: ResourceTags,
    helper: str,
    container: ContainerClient,
    local_arm: LocalArmEndpoint,
) -> None:
    """The read SAS of `fileUris` and the command (which may carry a write SAS) are needed only until
    the script has run: the store (SQLite and its WAL) never holds them in clear, and not at all after."""
    script = sas_url(container, "hello.sh", b"#!/bin/sh\necho hello from the toolkit\n")
    secret_command = "sh hello.sh # report-url sig=NOT-FOR-THE-STORE"
    result = ops.run_custom_script(
        clients,
        resource_group,
        helper,
        location=LOCATION,
        command=secret_command,
        file_uris=[script],
        run_id=1,
        tags=tags,
    )
    assert "hello from the toolkit" in result.stdout_tail  # the script did get its files
    signature = parse_qs(urlsplit(script).query)["sig"][0]
    stored = b"".join(p.read_bytes() for p in local_arm.data_dir.glob("arm.sqlite3*") if p.is_file())
    assert b"Microsoft.Azure.Extensions" in stored  # the extension is in these files ...
    for secret in (signature, quote(signature, safe=""), "NOT-FOR-THE-STORE"):
        assert secret.encode() not in stored, secret  # ... its secrets are not

    # Nor does its log: the download was logged, with the signature redacted; only its owner reads it.
    log = local_arm.log_dir / "local-arm.log"
    text = log.read_text()
    assert "hello.sh?" in text and "sig=REDACTED" in text
    assert signature not in text and quote(signature, safe="") not in text
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_a_failing_script_raises_with_its_output_tails(
    clients: ArmClients,
    resource_group: str,
    tags: ResourceTags,
    helper: str,
    local_arm: LocalArmEndpoint,
) -> None:
    noisy = "x" * 5000
    command = f"echo {noisy}; echo partial; echo 'no OS found on the disks' >&2; exit 3"
    with pytest.raises(ExtensionFailed) as error:
        ops.run_custom_script(
            clients,
            resource_group,
            helper,
            location=LOCATION,
            command=command,
            file_uris=[],
            run_id=1,
            tags=tags,
        )
    failure = error.value
    assert failure.exit_status == 3
    assert failure.arm_code == "VMExtensionProvisioningError"
    assert failure.stderr_tail == "no OS found on the disks\n"
    assert failure.stdout_tail.endswith("partial\n") and len(failure.stdout_tail.encode()) == 4096
    view = clients.compute.virtual_machine_extensions.get(
        resource_group, helper, "hydration", expand="instanceView"
    )
    message = view.properties.instance_view.statuses[0].message
    assert message.startswith(
        "Enable failed: failed to execute command: command terminated with exit status=3"
    )
    assert view.properties.provisioning_state == "Failed"
    # A failed extension leaves the VM Failed too, as in Azure; deleting it still works.
    assert (
        clients.compute.virtual_machines.get(resource_group, helper).properties.provisioning_state == "Failed"
    )
    if IS_ROOT:
        assert _loops_of(local_arm) == ""


def test_an_injected_extension_failure(
    clients: ArmClients,
    resource_group: str,
    tags: ResourceTags,
    helper: str,
    local_arm: LocalArmEndpoint,
    tmp_path: Path,
) -> None:
    local_arm.add_fault(
        {
            "match": {"resourceType": "Microsoft.Compute/virtualMachines/extensions"},
            "fault": "extensionFailure",
            "exitStatus": 1,
        }
    )
    marker = tmp_path / "ran"
    with pytest.raises(ExtensionFailed) as error:
        ops.run_custom_script(
            clients,
            resource_group,
            helper,
            location=LOCATION,
            command=f"touch {marker}",
            file_uris=[],
            run_id=1,
            tags=tags,
        )
    assert error.value.exit_status == 1
    assert "injected fault" in error.value.stderr_tail
    assert "Enable failed" in error.value.message
    assert not marker.exists()


def test_a_download_failure_is_an_enable_failure(
    clients: ArmClients, resource_group: str, tags: ResourceTags, helper: str, container: ContainerClient
) -> None:
    missing = f"{container.url}/not-there.sh"
    with pytest.raises(ExtensionFailed) as error:
        ops.run_custom_script(
            clients,
            resource_group,
            helper,
            location=LOCATION,
            command="sh not-there.sh",
            file_uris=[missing],
            run_id=1,
            tags=tags,
        )
    assert "processing file downloads failed: failed to download file[0]" in error.value.message
    assert error.value.exit_status is None


def test_a_script_interrupted_by_a_restart_runs_again_after_it(
    emulators: EmulatorEndpoints,
    tmp_path: Path,
) -> None:

    port = free_port()
    data = tmp_path / "data"
    marker = tmp_path / "first-run-started"
    # The first run blocks until killed; the run after the restart finds the marker and finishes.
    command = f"if [ -e {marker} ]; then echo resumed; else touch {marker}; sleep 600; fi"
    tags = make_tags()

    def start() -> ManagedProcess:
        return start_local_arm(
            data,
            port,
            emulators.storage_connection_string,
            tmp_path / "logs",
            token=TOKEN,
            latency_scale=0,
            disk_exposure="loop" if IS_ROOT else "file",
        )

    process = start()
    try:
        with build_arm_clients(arm_settings(f"http://127.0.0.1:{port}")) as clients:
            rg = "rg-restart"
            clients.resources.resource_groups.create_or_update(rg, {"location": LOCATION})
            vnet = ops.ensure_virtual_network(
                clients,
                rg,
                "v",
                location=LOCATION,
                address_prefix="10.0.0.0/24",
                subnet_name="s",
                subnet_prefix="10.0.0.0/26",
                tags=tags,
            )
            nic = ops.ensure_network_interface(
                clients,
                rg,
                "n",
                location=LOCATION,
                subnet_id=vnet.subnet_id,
                network_security_group_id=None,
                tags=tags,
            )
            disk = clients.compute.disks.begin_create_or_update(
                rg,
                "d",
                cm.Disk(
                    location=LOCATION,
                    properties=cm.DiskProperties(
                        creation_data=cm.CreationData(create_option="Empty"), disk_size_gb=1
                    ),
                ),
            ).result()
            ops.ensure_helper_vm(
                clients,
                rg,
                "h",
                location=LOCATION,
                size="Standard_B2s",
                nic_id=nic.id,
                data_disk_ids=[str(disk.id)],
                admin_username="u",
                ssh_public_key="ssh-rsa AAAA",
                tags=tags,
            )
            poller = clients.compute.virtual_machine_extensions.begin_create_or_update(
                rg,
                "h",
                "hydration",
                cm.VirtualMachineExtension(
                    location=LOCATION,
                    properties=cm.VirtualMachineExtensionProperties(
                        publisher="Microsoft.Azure.Extensions",
                        type="CustomScript",
                        type_handler_version="2.1",
                        protected_settings={"commandToExecute": command},
                    ),
                ),
            )
            wait_until(marker.exists, timeout=15, interval=0.05, what="the script to start")
            status_url = poller.polling_method()._operation.get_polling_url()  # type: ignore[attr-defined]
    finally:
        process.stop()
    if IS_ROOT:
        leftover = subprocess.run(
            ["losetup", "--list", "--noheadings", "--output", "BACK-FILE"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        assert str(data) not in leftover
    process = start()
    try:
        http = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

        def finished() -> dict[str, object] | None:
            body: dict[str, object] = http.get(status_url).json()
            return body if body["status"] != "InProgress" else None

        body = wait_until(finished, timeout=15, interval=0.05, what="the resumed operation to finish")
        assert body["status"] == "Succeeded"
        with build_arm_clients(arm_settings(f"http://127.0.0.1:{port}")) as clients:
            view = clients.compute.virtual_machine_extensions.get(
                "rg-restart", "h", "hydration", expand="instanceView"
            )
            assert (
                ops.parse_script_message(view.properties.instance_view.statuses[0].message)[0] == "resumed\n"
            )
    finally:
        process.stop()
