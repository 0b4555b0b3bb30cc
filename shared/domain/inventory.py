"""What an appliance discovers about a source machine."""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address

from pydantic import Field, model_validator

from shared.domain.errors import FieldValueError
from shared.domain.wire import RequestModel, ResourceId, WireModel

SECTOR_BYTES = 512


class OsType(StrEnum):
    WINDOWS = "windows"
    LINUX = "linux"


class Firmware(StrEnum):
    BIOS = "BIOS"
    UEFI = "UEFI"


class Disk(WireModel):
    id: ResourceId = Field(
        description="the appliance's stable disk id (e.g. VMware 'scsi0:0', Hyper-V VHD id)"
    )
    size_bytes: int = Field(gt=0, description="a multiple of 512")
    is_os_disk: bool = False
    name: str | None = None

    @model_validator(mode="after")
    def _whole_sectors(self) -> Disk:
        if self.size_bytes % SECTOR_BYTES:
            raise FieldValueError(
                "sizeBytes", f"sizeBytes {self.size_bytes} is not a whole number of 512-byte sectors"
            )
        return self


class Nic(WireModel):
    id: str
    mac_address: str | None = Field(default=None, pattern=r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")
    ip_addresses: list[IPv4Address | IPv6Address] = Field(default_factory=list)
    network_name: str | None = None


class MachineInventory(WireModel):
    display_name: str = Field(min_length=1, max_length=256)
    os_type: OsType
    os_name: str = Field(description="e.g. 'Windows Server 2019 Datacenter', 'Red Hat Enterprise Linux'")
    os_version: str = Field(description="e.g. '10.0.17763', '7.9'")
    firmware: Firmware
    cpu_count: int | None = Field(default=None, ge=1)
    memory_mb: int | None = Field(default=None, ge=1)
    disks: list[Disk] = Field(min_length=1)
    nics: list[Nic] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_os_disk_unique_ids(self) -> MachineInventory:
        ids = [d.id for d in self.disks]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise FieldValueError("disks", f"disk ids must be unique; repeated: {', '.join(duplicates)}")
        os_disks = [d.id for d in self.disks if d.is_os_disk]
        if len(os_disks) != 1:
            raise FieldValueError("disks", f"exactly one disk must have isOsDisk=true; found {len(os_disks)}")
        return self

    @property
    def os_disk(self) -> Disk:
        return next(d for d in self.disks if d.is_os_disk)


class DiscoveredMachine(RequestModel, MachineInventory):
    """One machine in an appliance's discovery report; `id` is the appliance's stable source id."""

    model_config = RequestModel.model_config

    id: ResourceId


class DiscoveryReport(RequestModel):
    machines: list[DiscoveredMachine] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _unique(self) -> DiscoveryReport:
        ids = [m.id for m in self.machines]
        if len(set(ids)) != len(ids):
            raise FieldValueError(
                "machines", "a report lists each machine once; some machine ids are repeated"
            )
        return self
