"""The Mobility use cases the routes call: resolve an OS against the catalog, a machine's install command."""

from __future__ import annotations

from azure.storage.blob import ContainerClient
from pydantic import Field

from shared.domain.inventory import MachineInventory, OsType
from shared.domain.wire import RequestModel
from shared.mobility.install_command import InstallCommand, InstallCommandQuery, render_install_command
from shared.mobility.installers import list_installers
from shared.mobility.os_support import OsResolution, describe_resolution
from shared.platform.repository import Repositories


def resolve_installer(installers: ContainerClient, os: str) -> OsResolution:
    return describe_resolution(os, list_installers(installers))


def os_string(inventory: MachineInventory) -> str:
    """Name and version as one string ("Red Hat Enterprise Linux" + "7.9"), without repeating a version
    the name already carries."""
    name, version = inventory.os_name.strip(), inventory.os_version.strip()
    return name if not version or version in name else f"{name} {version}"


def install_command_for(
    repos: Repositories, installers: ContainerClient, machine_id: str, query: InstallCommandQuery
) -> InstallCommand:
    """The manual install commands for the machine's OS as its appliance reported it (404, 400)."""
    machine = repos.machines.require(machine_id).item
    resolution = resolve_installer(installers, os_string(machine.inventory))
    # The installer decides the command flavour: it is what will run.
    os_type = OsType.WINDOWS if resolution.installer_os == "Windows" else OsType.LINUX
    return render_install_command(machine_id, os_type, resolution, query)


class ResolveQuery(RequestModel):
    """The query of GET /api/mobility/installers/resolve."""

    os: str = Field(
        min_length=1,
        max_length=256,
        description="the OS name and version, e.g. 'Ubuntu 18.04.6 LTS', 'Windows Server 2012 R2 Datacenter'",
    )
