"""Microsoft.Compute resources: managed disks, snapshots, virtual machines and their extensions.

A managed disk or snapshot is a sparse raw file under `<data-dir>/disks/`. A VM is a record of which
disks and NICs it holds; its only behaviour is power state and running Custom Script Extensions
(cse.py) against its attached disks. Attachment is stored on the VM and read back for the disk's
`managedBy`/`diskState`, so a disk is attached to at most one VM by construction of the checks here.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from devhost.arm import (
    access,
    availability_sets,
    disk_performance,
    disk_upload,
    ephemeral_os_disk,
    ids,
    images,
    sealed,
    vm_profile,
)
from devhost.arm.cse import ScriptDisk, run_custom_script
from devhost.arm.disks import GIB, create_empty, import_vhd, sparse_copy
from devhost.arm.errors import ArmError, bad_request, invalid_parameter
from devhost.arm.ids import ResourceId, parse_resource_id
from devhost.arm.store import Doc

if TYPE_CHECKING:
    from devhost.arm.service import LocalArm

# Cores per size, for the quota message; sizes not listed count as 2 cores.
VM_SIZE_CORES: Final = {
    "standard_b1s": 1,
    "standard_b1ms": 1,
    "standard_b2s": 2,
    "standard_b2ms": 2,
    "standard_b4ms": 4,
    "standard_d2s_v3": 2,
    "standard_d4s_v3": 4,
    "standard_d8s_v3": 8,
    "standard_d2s_v5": 2,
    "standard_d4s_v5": 4,
    "standard_d2as_v5": 2,
    "standard_ds1_v2": 1,
    "standard_ds2_v2": 2,
    "standard_e2s_v3": 2,
    "standard_e4s_v3": 4,
    "standard_f2s_v2": 2,
    "standard_f4s_v2": 4,
}
CSE_PUBLISHER: Final = "Microsoft.Azure.Extensions"
CSE_TYPE: Final = "CustomScript"
EMPTY_OS_DISK_GB: Final = 30


def cores_of(vm_size: str) -> int:
    return VM_SIZE_CORES.get(vm_size.lower(), 2)


def _props(body: dict[str, Any]) -> dict[str, Any]:
    props = body.get("properties") or {}
    if not isinstance(props, dict):
        raise bad_request("'properties' must be an object", "properties")
    return props


def disk_file(arm: LocalArm, doc: Doc) -> Path:
    return arm.data_dir / "disks" / f"{doc['properties']['uniqueId']}.raw"


# --- disks and snapshots ------------------------------------------------------------------------------


def _source_doc(arm: LocalArm, source_id: str, target: str) -> tuple[ResourceId, Doc]:
    parsed = parse_resource_id(source_id)
    doc = arm.store.get(parsed.key) if parsed and parsed.type in (ids.DISK, ids.SNAPSHOT) else None
    if parsed is None or doc is None:
        raise ArmError(404, "NotFound", f"Resource {source_id} was not found.", target=target)
    if doc["properties"].get("provisioningState") not in ("Succeeded", "Updating"):
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"The source {source_id} is not ready: provisioning state "
            f"{doc['properties'].get('provisioningState')}.",
            target=target,
        )
    disk_upload.refuse_while_uploading(doc, "copy")
    return parsed, doc


def prepare_disk(arm: LocalArm, rid: ResourceId, body: dict[str, Any], existing: Doc | None) -> Doc:
    props = _props(body)
    creation = props.get("creationData") or {}
    option = str(creation.get("createOption") or "")
    is_snapshot = rid.type == ids.SNAPSHOT
    if existing is not None:
        old = existing["properties"]["creationData"]
        for key in ("createOption", "sourceUri", "sourceResourceId"):
            if str(creation.get(key) or "").lower() != str(old.get(key) or "").lower():
                raise ArmError(
                    409,
                    "PropertyChangeNotAllowed",
                    "Changing property 'creationData' is not allowed.",
                    target="creationData",
                )
        doc = arm.tracked_doc(rid, body, existing)
        doc["properties"] = dict(existing["properties"])
        # An update changes what it names and keeps the rest: a PUT of only the tags keeps the sku.
        for key in MUTABLE_DISK_PROPERTIES:
            if props.get(key) is not None:
                doc["properties"][key] = props[key]
        old_generation = existing["properties"].get("hyperVGeneration")
        if props.get("hyperVGeneration") and old_generation and props["hyperVGeneration"] != old_generation:
            raise ArmError(
                409,
                "PropertyChangeNotAllowed",
                "Changing property 'hyperVGeneration' is not allowed.",
                target="hyperVGeneration",
            )
        doc["sku"] = (
            _disk_sku(body.get("sku"), rid.type == ids.SNAPSHOT) if body.get("sku") else existing.get("sku")
        )
        doc["_work"] = _resize(arm, rid, existing, props.get("diskSizeGB"), doc)
        if not is_snapshot:
            disk_performance.settle(doc["properties"], doc["sku"]["name"], props)
        if existing.get(access.GRANTS):
            doc[access.GRANTS] = existing[access.GRANTS]  # an update keeps the SAS handed out
        return doc
    stored: dict[str, Any] = {
        "creationData": {k: v for k, v in creation.items() if v is not None},
        "uniqueId": str(uuid.uuid4()),
        "timeCreated": arm.now_iso(),
        "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
        "networkAccessPolicy": props.get("networkAccessPolicy", "AllowAll"),
        "publicNetworkAccess": props.get("publicNetworkAccess", "Enabled"),
    }
    for key in ("hyperVGeneration", *MUTABLE_DISK_PROPERTIES):
        if props.get(key) is not None:
            stored[key] = props[key]
    work: dict[str, Any]
    copied_from: Doc | None = None
    requested_gb = props.get("diskSizeGB")
    if option == "Import":
        # Disks and snapshots alike: the disk RP imports a fixed VHD page blob into either.
        source_uri = str(creation.get("sourceUri") or "")
        if not source_uri:
            raise invalid_parameter(
                "sourceUri is required when createOption is Import.", "creationData.sourceUri"
            )
        blob = arm.blobs.blob_for(source_uri, creation.get("storageAccountId"))
        info = arm.blobs.inspect(blob, source_uri)
        size = info.virtual_size
        work = {
            "kind": "import",
            "sourceUri": source_uri,
            "storageAccountId": creation.get("storageAccountId"),
        }
    elif option in ("Copy", "CopyStart"):
        source_id = str(creation.get("sourceResourceId") or "")
        if not source_id:
            raise invalid_parameter(
                "sourceResourceId is required when createOption is Copy.", "creationData.sourceResourceId"
            )
        _, source = _source_doc(arm, source_id, "creationData.sourceResourceId")
        copied_from = source
        size = int(source["properties"]["diskSizeBytes"])
        stored["creationData"]["sourceUniqueId"] = source["properties"]["uniqueId"]
        for key in ("osType", "hyperVGeneration"):
            if key in source["properties"] and key not in stored:
                stored[key] = source["properties"][key]
        work = {"kind": "copy", "source": str(disk_file(arm, source))}
    elif option == "FromImage" and not is_snapshot:
        image_id = str((creation.get("imageReference") or {}).get("id") or "")
        if not image_id:
            raise invalid_parameter(
                "imageReference.id is required when createOption is FromImage.",
                "creationData.imageReference.id",
            )
        image = images.resolve(image_id, "creationData.imageReference.id")
        if props.get("osType") and str(props["osType"]).lower() != image.os_type.lower():
            raise invalid_parameter(
                f"osType {props['osType']} does not match the image's OS ({image.os_type}).", "osType"
            )
        size = image.size_gb * GIB
        stored["osType"] = image.os_type
        stored.setdefault("hyperVGeneration", image.generation)
        stored.setdefault("supportedCapabilities", {"acceleratedNetwork": True, "architecture": "x64"})
        work = {"kind": "empty"}
    elif option == "Upload" and not is_snapshot:
        upload_size = disk_upload.planned_size(creation)
        size = upload_size - disk_upload.FOOTER
        work = {"kind": "upload", "uploadSize": upload_size}
    elif option == "Empty":
        if is_snapshot or not requested_gb:
            raise invalid_parameter("diskSizeGB is required when createOption is Empty.", "diskSizeGB")
        size = int(requested_gb) * GIB
        work = {"kind": "empty"}
    else:
        raise invalid_parameter(
            f"createOption '{option}' is not supported by this local endpoint (Import, Copy, Empty, and "
            "FromImage and Upload for disks, are).",
            "creationData.createOption",
        )
    if requested_gb and option != "Empty":
        wanted = int(requested_gb) * GIB
        if wanted < size:
            raise bad_request(
                f"Disk size {requested_gb} GB is smaller than the size of the source ({math.ceil(size / GIB)} GB). "
                "Disks cannot be shrunk.",
                "diskSizeGB",
                code="BadRequest",
            )
        size = wanted
    stored["diskSizeBytes"] = size
    stored["diskSizeGB"] = math.ceil(size / GIB)
    if is_snapshot:
        stored["incremental"] = bool(props.get("incremental", False))
        if stored["incremental"]:
            if copied_from is None:
                raise invalid_parameter(
                    "An incremental snapshot is made from a managed disk (createOption Copy).",
                    "creationData.createOption",
                )
            stored["incrementalSnapshotFamilyId"] = _snapshot_family(copied_from)
    doc = arm.tracked_doc(rid, body, None)
    doc["properties"] = stored
    doc["sku"] = _disk_sku(body.get("sku"), is_snapshot)
    if not is_snapshot:
        disk_performance.settle(stored, doc["sku"]["name"], props)
    if work["kind"] == "upload":
        doc[disk_upload.STATE] = disk_upload.READY
    work["size"] = size
    doc["_work"] = work
    return doc


# Properties a disk PUT or PATCH may set and change, kept and returned as given (their effect on I/O,
# hibernation or marketplace billing has nothing to emulate here).
MUTABLE_DISK_PROPERTIES: Final = (
    "osType",
    "networkAccessPolicy",
    "publicNetworkAccess",
    "diskIOPSReadWrite",
    "diskMBpsReadWrite",
    "supportsHibernation",
    "supportedCapabilities",
    "purchasePlan",
    "optimizedForFrequentAttach",
)
DISK_SKU_TIERS: Final = {
    "Standard_LRS": "Standard",
    "StandardSSD_LRS": "Standard",
    "StandardSSD_ZRS": "Standard",
    "Premium_LRS": "Premium",
    "Premium_ZRS": "Premium",
    "PremiumV2_LRS": "Premium",
    "UltraSSD_LRS": "Ultra",
}
SNAPSHOT_SKU_TIERS: Final = {"Standard_LRS": "Standard", "Premium_LRS": "Premium", "Standard_ZRS": "Standard"}


def _disk_sku(given: Any, is_snapshot: bool) -> dict[str, str]:
    """The sku as the disk RP returns it: the name given (Standard_LRS by default) and its tier."""
    tiers = SNAPSHOT_SKU_TIERS if is_snapshot else DISK_SKU_TIERS
    name = str((given or {}).get("name") or "Standard_LRS")
    tier = tiers.get(name)
    if tier is None:
        raise invalid_parameter(
            f"The value '{name}' of parameter 'sku.name' is invalid. Allowed values: {', '.join(tiers)}.",
            "sku.name",
        )
    return {"name": name, "tier": tier}


def _resize(arm: LocalArm, rid: ResourceId, existing: Doc, wanted_gb: Any, doc: Doc) -> dict[str, Any] | None:
    """A larger `diskSizeGB` grows the disk (unattached, or its VM deallocated); smaller is refused."""
    if wanted_gb is None:
        return None
    current = int(existing["properties"]["diskSizeBytes"])
    wanted = int(wanted_gb) * GIB
    if wanted == current or int(wanted_gb) == existing["properties"].get("diskSizeGB"):
        return None
    if wanted < current:
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"The disk/snapshot resource with id {existing['id']} cannot be resized down. Reducing "
            "disk/snapshot size is not supported in Azure to prevent data loss. If you do need to reduce "
            "the size of the disk, please create new snapshot/disks with the appropriate size. More "
            "information is available at https://aka.ms/AzureDisksFAQ",
            target="diskSizeGB",
        )
    owner = disk_owner(arm, rid.key) if rid.type == ids.DISK else None
    if owner is not None and owner.get("_powerState", "running") != "deallocated":
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Cannot resize disk {existing['name']} while it is attached to running VM {owner['id']}. "
            "Resizing a disk of an Azure Virtual Machine requires the virtual machine to be deallocated. "
            "Please stop your VM and retry the operation.",
            target="diskSizeGB",
        )
    doc["properties"]["diskSizeBytes"] = wanted
    doc["properties"]["diskSizeGB"] = int(wanted_gb)
    return {"kind": "resize", "size": wanted}


def _snapshot_family(source: Doc) -> str:
    """The family the incremental snapshots of one disk share (a snapshot of a snapshot stays in it);
    a disk deleted and created again under the same name starts a new family (a new uniqueId)."""
    props = source["properties"]
    if props.get("incrementalSnapshotFamilyId"):
        return str(props["incrementalSnapshotFamilyId"])
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"incremental-snapshot-family:{props['uniqueId']}"))


def disk_work(arm: LocalArm, doc: Doc) -> Callable[[], None] | None:
    work = doc.get("_work")
    if not work:
        return None
    target = disk_file(arm, doc)

    def run() -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if work["kind"] == "import":
            blob = arm.blobs.blob_for(work["sourceUri"], work["storageAccountId"])
            info = arm.blobs.inspect(blob, work["sourceUri"])
            import_vhd(blob, info, target)
        elif work["kind"] == "resize":
            pass  # the image grows below, its data kept
        elif work["kind"] == "upload":
            disk_upload.prepare_image(target, int(work["uploadSize"]))
            return  # the blob the uploader writes includes the footer page until the upload ends
        elif work["kind"] == "copy":
            source = Path(work["source"])
            if not source.exists():
                raise ArmError(404, "NotFound", "The source of the copy no longer exists.")
            sparse_copy(source, target)
        else:
            create_empty(target, int(work["size"]))
        if target.stat().st_size < int(work["size"]):
            with target.open("r+b") as handle:
                handle.truncate(int(work["size"]))

    return run


def disk_owner(arm: LocalArm, disk_key: str) -> Doc | None:
    for _, vm in arm.of_type(ids.VIRTUAL_MACHINE):
        if disk_key in _vm_disk_keys(vm):
            return vm
    return None


def _vm_disk_keys(vm: Doc) -> list[str]:
    storage = vm["properties"].get("storageProfile") or {}
    keys = [str(((storage.get("osDisk") or {}).get("managedDisk") or {}).get("id", "")).lower()]
    keys += [str((d.get("managedDisk") or {}).get("id", "")).lower() for d in storage.get("dataDisks") or []]
    return [k for k in keys if k]


def check_disk_deletable(arm: LocalArm, rid: ResourceId, doc: Doc) -> None:
    if rid.type != ids.DISK:
        return
    owner = disk_owner(arm, rid.key)
    if owner is not None:
        raise ArmError(409, "OperationNotAllowed", f"Disk {doc['name']} is attached to VM {owner['id']}.")
    if access.active_grants(doc):
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Disk {doc['name']} cannot be deleted while it has an active SAS (diskState ActiveSAS): end the "
            "access (endGetAccess) first.",
        )


def refuse_start_with_exported_disk(arm: LocalArm, vm: Doc) -> None:
    """A VM does not start while one of its disks is exported through a SAS: the export would change."""
    for key in _vm_disk_keys(vm):
        disk = arm.store.get(key)
        if disk is not None and access.active_grants(disk):
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"Cannot start VM '{vm['name']}': its disk '{disk['name']}' has an active SAS (diskState "
                "ActiveSAS). End the access (endGetAccess) first.",
            )


def on_disk_deleted(arm: LocalArm, rid: ResourceId, doc: Doc) -> None:
    disk_file(arm, doc).unlink(missing_ok=True)
    disk_file(arm, doc).with_suffix(".partial").unlink(missing_ok=True)


def view_disk(arm: LocalArm, rid: ResourceId, doc: Doc) -> Doc:
    view = dict(doc)
    props = dict(doc["properties"])
    if rid.type == ids.DISK:
        owner = disk_owner(arm, rid.key)
        if owner is not None:
            view["managedBy"] = owner["id"]
            props["diskState"] = "Reserved" if owner.get("_powerState") == "deallocated" else "Attached"
        else:
            props["diskState"] = "Unattached"
    else:
        props["diskState"] = "Unattached"  # a snapshot is never attached
    if access.active_grants(doc):
        props["diskState"] = "ActiveSAS"
    if disk_upload.state(doc):
        props["diskState"] = disk_upload.state(doc)
    view["properties"] = props
    return view


# --- virtual machines ---------------------------------------------------------------------------------


def _attach_disk(arm: LocalArm, vm: ResourceId, disk: dict[str, Any], target: str) -> str:
    disk_id = str((disk.get("managedDisk") or {}).get("id") or "")
    parsed = parse_resource_id(disk_id)
    doc = arm.store.get(parsed.key) if parsed and parsed.type == ids.DISK else None
    if parsed is None or doc is None:
        raise ArmError(404, "NotFound", f"Disk {disk_id} was not found.", target=target)
    if doc["properties"].get("provisioningState") != "Succeeded":
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Disk {doc['name']} cannot be attached: its provisioning state is "
            f"{doc['properties'].get('provisioningState')}.",
            target=target,
        )
    disk_upload.refuse_while_uploading(doc, "attach")
    owner = disk_owner(arm, parsed.key)
    if owner is not None and owner["id"].lower() != vm.key:
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Disk '{doc['name']}' cannot be attached to virtual machine '{vm.name}' because it is already "
            f"attached to virtual machine '{owner['id']}'. A disk can be attached to one VM only.",
            target=target,
        )
    return str(doc["id"])


def prepare_vm(arm: LocalArm, rid: ResourceId, body: dict[str, Any], existing: Doc | None) -> Doc:
    props = _props(body)
    size = str((props.get("hardwareProfile") or {}).get("vmSize") or "")
    if not size:
        raise invalid_parameter("hardwareProfile.vmSize is required.", "hardwareProfile.vmSize")
    storage = props.get("storageProfile") or {}
    os_disk = dict(storage.get("osDisk") or {})
    option = str(os_disk.get("createOption") or "")
    implicit: list[tuple[ResourceId, Doc]] = []
    old_storage = ((existing or {}).get("properties") or {}).get("storageProfile") or {}
    if existing is not None:
        os_disk = _updated_os_disk(arm, rid, existing, os_disk)
    elif option == "Attach":
        if os_disk.get("diffDiskSettings"):
            raise invalid_parameter(
                "An ephemeral OS disk (diffDiskSettings) is made from an image: createOption must be FromImage.",
                "properties.storageProfile.osDisk.diffDiskSettings",
            )
        if not os_disk.get("osType"):
            raise invalid_parameter("osDisk.osType is required when createOption is Attach.", "osDisk.osType")
        os_disk["managedDisk"] = {"id": _attach_disk(arm, rid, os_disk, "osDisk.managedDisk.id")}
        disk_doc = arm.store.get(str(os_disk["managedDisk"]["id"]))
        assert disk_doc is not None
        os_disk.setdefault("name", disk_doc["name"])
    elif option == "FromImage":
        image = storage.get("imageReference") or {}
        if not (image.get("id") or (image.get("publisher") and image.get("offer") and image.get("sku"))):
            raise invalid_parameter(
                "imageReference needs publisher, offer and sku (or an image id).", "imageReference"
            )
        os_profile = props.get("osProfile") or {}
        if not os_profile.get("adminUsername"):
            raise invalid_parameter(
                "Required parameter 'osProfile.adminUsername' is missing (null).", "osProfile.adminUsername"
            )
        name = str(os_disk.get("name") or f"{rid.name}_OsDisk_1_{uuid.uuid4().hex}")
        disk_rid = ResourceId(rid.subscription, rid.resource_group, ids.DISK, (name,))
        _refuse_existing_disk_name(arm, disk_rid, "osDisk.name")
        os_disk.setdefault("osType", _image_os_type(image))
        size_gb = int(os_disk.get("diskSizeGB") or EMPTY_OS_DISK_GB)
        ephemeral = ephemeral_os_disk.settle(size, os_disk)
        if ephemeral is not None:
            # On the host's local disk: no managed disk resource, and gone with the VM.
            os_disk.update(
                name=name,
                caching="ReadOnly",
                deleteOption="Delete",
                diffDiskSettings=ephemeral,
                diskSizeGB=size_gb,
                managedDisk={
                    "storageAccountType": (os_disk.get("managedDisk") or {}).get("storageAccountType")
                    or "Standard_LRS"
                },
            )
        else:
            disk_doc = arm.tracked_doc(disk_rid, {"location": body.get("location")}, None)
            disk_doc["properties"] = {
                "creationData": {
                    "createOption": "FromImage",
                    "imageReference": {"id": _image_id(body, image)},
                },
                "uniqueId": str(uuid.uuid4()),
                "timeCreated": arm.now_iso(),
                "diskSizeGB": size_gb,
                "diskSizeBytes": size_gb * GIB,
                "osType": os_disk.get("osType", "Linux"),
                "provisioningState": "Succeeded",
            }
            disk_doc["sku"] = _disk_sku(
                {"name": (os_disk.get("managedDisk") or {}).get("storageAccountType")}, is_snapshot=False
            )
            implicit.append((disk_rid, disk_doc))
            os_disk["managedDisk"] = {"id": disk_doc["id"], "storageAccountType": disk_doc["sku"]["name"]}
            os_disk["name"] = name
        os_disk.setdefault("osType", "Linux")
    else:
        raise invalid_parameter(
            f"osDisk.createOption '{option}' is not supported (Attach, FromImage are).", "osDisk.createOption"
        )
    os_disk.setdefault("deleteOption", "Detach")
    os_disk.setdefault("caching", "ReadWrite")
    data_disks = []
    luns: set[int] = set()
    old_data = {
        str((d.get("managedDisk") or {}).get("id", "")).lower(): d for d in old_storage.get("dataDisks") or []
    }
    old_by_lun = {int(d["lun"]): d for d in old_storage.get("dataDisks") or []}
    for index, disk in enumerate(storage.get("dataDisks") or []):
        lun = int(disk.get("lun", -1))
        if not 0 <= lun <= 63 or lun in luns:
            raise invalid_parameter(
                f"dataDisks[{index}].lun {lun} is invalid or used twice.", f"dataDisks[{index}].lun"
            )
        if disk.get("toBeDetached") is True:
            continue  # Azure detaches a disk marked toBeDetached: the update takes it off the VM
        luns.add(lun)
        disk_option = str(disk.get("createOption") or "")
        given_id = str((disk.get("managedDisk") or {}).get("id") or "")
        # An update names the VM's own disks by id, or by LUN alone (Azure's update examples do).
        kept = old_data.get(given_id.lower()) if given_id else old_by_lun.get(lun)
        if kept is not None:
            # A disk the VM already has, sent back as read (an Empty disk keeps its createOption).
            kept_ref = {"managedDisk": {"id": kept["managedDisk"]["id"]}}
            disk_id = _attach_disk(arm, rid, kept_ref, f"dataDisks[{index}].managedDisk.id")
            disk_option = str(kept.get("createOption") or "Attach")
        elif disk_option == "Attach":
            disk_id = _attach_disk(arm, rid, disk, f"dataDisks[{index}].managedDisk.id")
        elif disk_option == "Empty":
            disk_rid, empty = _empty_data_disk(arm, rid, body, disk, lun, index)
            implicit.append((disk_rid, empty))
            disk_id = empty["id"]
        else:
            raise invalid_parameter(
                f"Data disk createOption '{disk_option}' is not supported by this local endpoint "
                "(Attach, Empty are).",
                f"dataDisks[{index}].createOption",
            )
        disk_doc = arm.store.get(disk_id) or next(d for _, d in implicit if d["id"] == disk_id)
        data_disks.append(
            {
                "lun": lun,
                "name": disk_doc["name"],
                "createOption": disk_option,
                "caching": disk.get("caching", "None"),
                "managedDisk": {"id": disk_id},
                "diskSizeGB": disk_doc["properties"]["diskSizeGB"],
                "deleteOption": disk.get("deleteOption", "Detach"),
                "toBeDetached": False,
            }
        )
    nics = []
    for index, ref in enumerate((props.get("networkProfile") or {}).get("networkInterfaces") or []):
        nic = parse_resource_id(str(ref.get("id", "")))
        nic_doc = arm.store.get(nic.key) if nic and nic.type == ids.NIC else None
        if nic is None or nic_doc is None:
            raise ArmError(
                404,
                "NotFound",
                f"Network interface {ref.get('id')} was not found.",
                target=f"networkProfile.networkInterfaces[{index}]",
            )
        for key, vm in arm.of_type(ids.VIRTUAL_MACHINE):
            if key != rid.key and nic.key in [
                str(n.get("id", "")).lower()
                for n in (vm["properties"].get("networkProfile") or {}).get("networkInterfaces", [])
            ]:
                raise ArmError(
                    400,
                    "NicInUse",
                    f"Network interface {nic_doc['id']} is in use by virtual machine {vm['id']}.",
                )
        nic_props = ref.get("properties") or {}
        nics.append(
            {
                "id": nic_doc["id"],
                "properties": {
                    "primary": bool(nic_props.get("primary", index == 0)),
                    "deleteOption": nic_props.get("deleteOption", "Detach"),
                },
            }
        )
    if not nics:
        raise invalid_parameter(
            "At least one network interface is required.", "networkProfile.networkInterfaces"
        )
    # Everything that can refuse the request runs before the implicit disks exist: Azure creates
    # nothing for a request it refuses.
    if existing is not None:
        _refuse_fixed_changes(existing["properties"], props)
    old_size = (((existing or {}).get("properties") or {}).get("hardwareProfile") or {}).get("vmSize")
    if existing is None or str(old_size).lower() != size.lower():
        vm_profile.check_size_offered(rid, size, body.get("location") or (existing or {}).get("location"))
    hardware: dict[str, Any] = {"vmSize": size}
    sized = vm_profile.size_properties(size, props.get("hardwareProfile") or {})
    if sized:
        hardware["vmSizeProperties"] = sized
    availability_set = availability_sets.join(arm, rid, body, existing)
    given_user_data = vm_profile.user_data(props, (existing or {}).get("properties"))
    if existing is None:
        check_quota(arm, size)
    for disk_rid, disk_doc in implicit:
        # The image is not emulated: the helper's own OS disk is an empty sparse file of its size.
        target = disk_file(arm, disk_doc)
        target.parent.mkdir(parents=True, exist_ok=True)
        create_empty(target, int(disk_doc["properties"]["diskSizeBytes"]))
        arm.store.put(disk_rid.key, disk_doc)
    doc = arm.tracked_doc(rid, body, existing)
    stored: dict[str, Any] = {
        "hardwareProfile": hardware,
        "storageProfile": {"osDisk": os_disk, "dataDisks": data_disks},
        "networkProfile": {"networkInterfaces": nics},
        "vmId": (existing or {}).get("properties", {}).get("vmId") or str(uuid.uuid4()),
        "timeCreated": (existing or {}).get("properties", {}).get("timeCreated") or arm.now_iso(),
    }
    if storage.get("imageReference") or old_storage.get("imageReference"):
        stored["storageProfile"]["imageReference"] = (
            storage.get("imageReference") or old_storage["imageReference"]
        )
    if props.get("osProfile") and existing is None:
        profile = {k: v for k, v in props["osProfile"].items() if k not in ("adminPassword", "customData")}
        profile.setdefault("computerName", rid.name)
        profile.setdefault("secrets", [])
        if str(os_disk.get("osType")) == "Windows":
            profile.setdefault(
                "windowsConfiguration", {"provisionVMAgent": True, "enableAutomaticUpdates": True}
            )
        stored["osProfile"] = profile
    elif existing is not None and "osProfile" in existing["properties"]:
        stored["osProfile"] = existing["properties"]["osProfile"]
    for key in ("diagnosticsProfile", "securityProfile", "priority", "licenseType"):
        if props.get(key) is not None:
            stored[key] = props[key]
    if availability_set is not None:
        stored["availabilitySet"] = availability_set
    if given_user_data:
        stored["userData"] = given_user_data
    doc["properties"] = stored
    doc["_powerState"] = (existing or {}).get("_powerState", "running")
    return doc


def _empty_data_disk(
    arm: LocalArm, vm: ResourceId, body: dict[str, Any], disk: dict[str, Any], lun: int, index: int
) -> tuple[ResourceId, Doc]:
    """A data disk the VM creates (createOption Empty): a new managed disk of `diskSizeGB`, named
    as given or `{vm}_disk{lun + 2}_{guid}` (Azure's implicit disk names)."""
    size_gb = disk.get("diskSizeGB")
    if not size_gb:
        raise invalid_parameter(
            f"Required parameter 'dataDisk.diskSizeGB' is missing (null) for the data disk at LUN {lun}.",
            f"dataDisks[{index}].diskSizeGB",
        )
    name = str(disk.get("name") or f"{vm.name}_disk{lun + 2}_{uuid.uuid4().hex}")
    disk_rid = ResourceId(vm.subscription, vm.resource_group, ids.DISK, (name,))
    _refuse_existing_disk_name(arm, disk_rid, f"dataDisks[{index}].name")
    account = (disk.get("managedDisk") or {}).get("storageAccountType") or "Standard_LRS"
    doc = arm.tracked_doc(disk_rid, {"location": body.get("location")}, None)
    doc["properties"] = {
        "creationData": {"createOption": "Empty"},
        "uniqueId": str(uuid.uuid4()),
        "timeCreated": arm.now_iso(),
        "diskSizeGB": int(size_gb),
        "diskSizeBytes": int(size_gb) * GIB,
        "provisioningState": "Succeeded",
    }
    doc["sku"] = _disk_sku({"name": account}, is_snapshot=False)
    return disk_rid, doc


def _refuse_existing_disk_name(arm: LocalArm, disk_rid: ResourceId, target: str) -> None:
    existing = arm.store.get(disk_rid.key)
    if existing is None:
        return
    owner = disk_owner(arm, disk_rid.key)
    held = f" and is attached to VM {owner['id']}" if owner is not None else ""
    raise ArmError(
        409,
        "ConflictingUserInput",
        f"A disk with name {disk_rid.name} already exists in Resource Group {disk_rid.resource_group.upper()}"
        f"{held}. 'Name' is an optional property for a disk and a unique name will be generated if not provided.",
        target=target,
    )


def _refuse_fixed_changes(current: dict[str, Any], wanted: dict[str, Any]) -> None:
    """What a VM keeps for life: its computer name and admin user, and the image it was made from.
    Sent back unchanged (a read-modify-write) they pass; changed, Azure refuses the update."""
    fixed = [
        (
            "computerName",
            (current.get("osProfile") or {}).get("computerName"),
            (wanted.get("osProfile") or {}).get("computerName"),
        ),
        (
            "adminUsername",
            (current.get("osProfile") or {}).get("adminUsername"),
            (wanted.get("osProfile") or {}).get("adminUsername"),
        ),
    ]
    old_image = (current.get("storageProfile") or {}).get("imageReference") or {}
    new_image = (wanted.get("storageProfile") or {}).get("imageReference") or {}
    for key in ("publisher", "offer", "sku", "id"):
        fixed.append((f"imageReference.{key}", old_image.get(key), new_image.get(key)))
    for name, old, new in fixed:
        if old is not None and new is not None and str(old).lower() != str(new).lower():
            raise ArmError(
                409,
                "PropertyChangeNotAllowed",
                f"Changing property '{name}' is not allowed.",
                target=name,
            )


def _image_os_type(image: dict[str, Any]) -> str:
    """The OS of a marketplace image, as its publisher and offer name it (an image id: Linux)."""
    text = f"{image.get('publisher', '')} {image.get('offer', '')}".lower()
    return "Windows" if "windows" in text or "microsoftsqlserver" in text else "Linux"


def _updated_os_disk(arm: LocalArm, rid: ResourceId, existing: Doc, wanted: dict[str, Any]) -> dict[str, Any]:
    """The OS disk after an update: the same one, or another managed disk swapped in.

    As in Azure: `createOption` never changes (PropertyChangeNotAllowed), a swap needs the VM stopped
    (deallocated), the new disk must be free and of the VM's OS type. Leaving `osDisk` out keeps it.
    """
    current = dict((existing["properties"].get("storageProfile") or {}).get("osDisk") or {})
    if not wanted:
        return current
    option = wanted.get("createOption")
    if option is not None and str(option).lower() != str(current.get("createOption", "")).lower():
        raise ArmError(
            409,
            "PropertyChangeNotAllowed",
            "Changing property 'osDisk.createOption' is not allowed.",
            target="osDisk.createOption",
        )
    new_id = str((wanted.get("managedDisk") or {}).get("id") or "")
    old_id = str((current.get("managedDisk") or {}).get("id") or "")
    if not new_id or new_id.lower() == old_id.lower():
        return current
    power = existing.get("_powerState", "running")
    if power != "deallocated":
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Swapping OS Disk is not allowed since the VM '{rid.name}' is in power state "
            f"'PowerState/{power}'. Stop (deallocate) the VM before swapping its OS disk.",
            target="osDisk.managedDisk.id",
        )
    disk_id = _attach_disk(arm, rid, wanted, "osDisk.managedDisk.id")
    disk_doc = arm.store.get(disk_id)
    assert disk_doc is not None
    disk_os = disk_doc["properties"].get("osType")
    if disk_os and current.get("osType") and str(disk_os).lower() != str(current["osType"]).lower():
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Swapping OS Disk is not allowed since the OS type '{disk_os}' of disk '{disk_doc['name']}' "
            f"differs from the OS type '{current['osType']}' of the VM '{rid.name}'.",
            target="osDisk.managedDisk.id",
        )
    swapped = dict(current)
    swapped["managedDisk"] = {"id": disk_id}
    swapped["name"] = disk_doc["name"]
    for key in ("caching", "deleteOption"):
        if wanted.get(key) is not None:
            swapped[key] = wanted[key]
    return swapped


def _image_id(body: dict[str, Any], image: dict[str, Any]) -> str:
    if image.get("id"):
        return str(image["id"])
    return (
        f"/Subscriptions/local/Providers/Microsoft.Compute/Locations/{body.get('location')}/Publishers/"
        f"{image.get('publisher')}/ArtifactTypes/VMImage/Offers/{image.get('offer')}/Skus/{image.get('sku')}/"
        f"Versions/{image.get('version', 'latest')}"
    )


def check_quota(arm: LocalArm, size: str) -> None:
    if arm.core_quota is None:
        return
    in_use = arm.cores_in_use()
    wanted = cores_of(size)
    if in_use + wanted > arm.core_quota:
        raise quota_error(arm.core_quota, in_use, wanted)


def quota_error(limit: int, in_use: int, wanted: int) -> ArmError:
    return ArmError(
        409,
        "OperationNotAllowed",
        f"Operation could not be completed as it results in exceeding quota limits of Core. Maximum allowed: "
        f"{limit}, Current in use: {in_use}, Additional requested: {wanted}. Read more about quota limits at "
        "https://aka.ms/AzurePerVMQuotaLimits. Submit a request for Quota increase using the link "
        "https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView.",
    )


def on_vm_deleted(arm: LocalArm, rid: ResourceId, doc: Doc) -> None:
    for key, _ in list(arm.children(rid, "extensions")):
        arm.store.delete(key)
    storage = doc["properties"].get("storageProfile") or {}
    # deleteOption Delete removes the disk / NIC with the VM; Detach (the API default) leaves it.
    for disk in [storage.get("osDisk") or {}, *(storage.get("dataDisks") or [])]:
        if disk.get("deleteOption") == "Delete":
            disk_id = str((disk.get("managedDisk") or {}).get("id", ""))
            disk_doc = arm.store.get(disk_id)
            if disk_doc is not None:
                arm.store.delete(disk_id)
                on_disk_deleted(
                    arm,
                    ResourceId(rid.subscription, rid.resource_group, ids.DISK, (disk_doc["name"],)),
                    disk_doc,
                )
    for nic in (doc["properties"].get("networkProfile") or {}).get("networkInterfaces") or []:
        if (nic.get("properties") or {}).get("deleteOption") == "Delete":
            arm.store.delete(str(nic["id"]))


def vm_instance_view(arm: LocalArm, rid: ResourceId, doc: Doc) -> dict[str, Any]:
    power = doc.get("_powerState", "running")
    state = doc["properties"].get("provisioningState", "Succeeded")
    return {
        "computerName": (doc["properties"].get("osProfile") or {}).get("computerName", rid.name),
        "osName": "Local emulated VM",
        "vmAgent": {
            "vmAgentVersion": "2.2.49",
            "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready"}],
        },
        "disks": [
            {
                "name": d,
                "statuses": [
                    {
                        "code": "ProvisioningState/succeeded",
                        "level": "Info",
                        "displayStatus": "Provisioning succeeded",
                        "time": doc["properties"].get("timeCreated"),
                    }
                ],
            }
            for d in [
                (doc["properties"]["storageProfile"].get("osDisk") or {}).get("name"),
                *[d["name"] for d in doc["properties"]["storageProfile"].get("dataDisks") or []],
            ]
            if d
        ],
        "hyperVGeneration": _os_disk_generation(arm, doc),
        "extensions": [
            ext["_instanceView"] for _, ext in arm.children(rid, "extensions") if ext.get("_instanceView")
        ],
        "statuses": [
            {
                "code": f"ProvisioningState/{state.lower()}",
                "level": "Info" if state != "Failed" else "Error",
                "displayStatus": f"Provisioning {state.lower()}",
                "time": doc["properties"].get("timeCreated"),
            },
            {
                "code": f"PowerState/{power}",
                "level": "Info",
                "displayStatus": {
                    "running": "VM running",
                    "stopped": "VM stopped",
                    "deallocated": "VM deallocated",
                }[power],
            },
        ],
    }


def _os_disk_generation(arm: LocalArm, vm: Doc) -> str:
    os_disk_id = str(
        ((vm["properties"]["storageProfile"].get("osDisk") or {}).get("managedDisk") or {}).get("id") or ""
    )
    disk = arm.store.get(os_disk_id) if os_disk_id else None
    return str(((disk or {}).get("properties") or {}).get("hyperVGeneration") or "V1")


def _disk_view(arm: LocalArm, disk: dict[str, Any]) -> dict[str, Any]:
    """A VM's disk entry as Azure returns it: the managed disk's current size and storage type."""
    out = dict(disk)
    managed = dict(disk.get("managedDisk") or {})
    disk_doc = arm.store.get(str(managed.get("id") or "")) if managed.get("id") else None
    if disk_doc is not None:
        out["diskSizeGB"] = disk_doc["properties"].get("diskSizeGB")
        managed["storageAccountType"] = (disk_doc.get("sku") or {}).get("name", "Standard_LRS")
        out["managedDisk"] = managed
    return out


def view_vm(arm: LocalArm, rid: ResourceId, doc: Doc, expand: str | None) -> Doc:
    view = dict(doc)
    storage = dict(doc["properties"].get("storageProfile") or {})
    if storage.get("osDisk"):
        storage["osDisk"] = _disk_view(arm, storage["osDisk"])
    storage["dataDisks"] = [_disk_view(arm, d) for d in storage.get("dataDisks") or []]
    view["properties"] = dict(doc["properties"], storageProfile=storage)
    if not (expand and "userdata" in expand.lower()):
        view["properties"].pop("userData", None)
    if expand and "instanceview" in expand.lower():
        view["properties"]["instanceView"] = vm_instance_view(arm, rid, doc)
    return view


def vm_disks_for_script(arm: LocalArm, vm: Doc) -> list[ScriptDisk]:
    storage = vm["properties"]["storageProfile"]
    disks = []
    os_id = str((storage["osDisk"].get("managedDisk") or {}).get("id") or "")
    os_doc = arm.store.get(os_id) if os_id else None  # an ephemeral OS disk has no managed disk
    if os_doc is not None:
        disks.append(ScriptDisk(None, disk_file(arm, os_doc)))
    for data in storage.get("dataDisks") or []:
        data_doc = arm.store.get(str(data["managedDisk"]["id"]))
        if data_doc is not None:
            disks.append(ScriptDisk(int(data["lun"]), disk_file(arm, data_doc)))
    return disks


# --- extensions -----------------------------------------------------------------------------------


def _config_hash(props: dict[str, Any], protected: dict[str, Any]) -> str:
    material = {
        k: props.get(k) for k in ("publisher", "type", "typeHandlerVersion", "settings", "forceUpdateTag")
    }
    material["protectedSettings"] = protected
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def prepare_extension(arm: LocalArm, rid: ResourceId, body: dict[str, Any], existing: Doc | None) -> Doc:
    parent = rid.parent
    assert parent is not None
    vm = arm.store.get(parent.key)
    if vm is None:
        raise ArmError(
            404,
            "ParentResourceNotFound",
            f"Can not perform requested operation on nested resource. Parent resource "
            f"'{parent.name}' not found.",
        )
    if vm.get("_powerState", "running") != "running":
        raise ArmError(
            409, "OperationNotAllowed", "Cannot modify extensions in the VM when the VM is not running."
        )
    props = _props(body)
    publisher, ext_type = str(props.get("publisher") or ""), str(props.get("type") or "")
    if (publisher, ext_type) != (CSE_PUBLISHER, CSE_TYPE):
        raise bad_request(
            f"This local endpoint runs only {CSE_PUBLISHER}/{CSE_TYPE} (Custom Script for Linux); "
            f"got '{publisher}/{ext_type}'.",
            "properties.type",
            code="NotSupported",
        )
    for _, other in arm.children(parent, "extensions"):
        other_props = other.get("properties") or {}
        if other["name"].lower() != rid.name.lower() and (
            other_props.get("publisher"),
            other_props.get("type"),
        ) == (publisher, ext_type):
            raise bad_request(
                f"Multiple VMExtensions per handler not supported for OS type 'Linux'. VMExtension "
                f"'{other['name']}' with handler '{publisher}.{ext_type}' already added or specified in input."
            )
    if not props.get("typeHandlerVersion"):
        raise invalid_parameter("typeHandlerVersion is required.", "properties.typeHandlerVersion")
    protected = props.get("protectedSettings") or {}
    settings = props.get("settings") or {}
    if not isinstance(settings, dict) or not isinstance(protected, dict):
        raise invalid_parameter("settings and protectedSettings must be objects.", "properties.settings")
    config = _config_hash(props, protected)
    doc = arm.tracked_doc(rid, body, existing)
    doc["properties"] = {
        "publisher": publisher,
        "type": ext_type,
        "typeHandlerVersion": props["typeHandlerVersion"],
        "autoUpgradeMinorVersion": bool(props.get("autoUpgradeMinorVersion", False)),
        "settings": settings,
    }
    if props.get("forceUpdateTag") is not None:
        doc["properties"]["forceUpdateTag"] = props["forceUpdateTag"]
    # The agent hands the handler a new sequence number only when the configuration changes; the
    # handler skips a sequence number it has already run (mrseq). Protected settings (SAS URLs) are
    # kept only until the run, sealed, for a restart of the endpoint in between (devhost/arm/sealed.py),
    # and never returned (ARM never returns them either).
    seqnum = int((existing or {}).get("_seqnum", -1))
    doc["_instanceView"] = (existing or {}).get("_instanceView")
    doc["_seqnum"] = seqnum
    if config != (existing or {}).get("_config"):
        doc["_seqnum"] = seqnum + 1
        doc["_config"] = config
        doc["_run"] = True
        doc["_protectedSettings"] = sealed.seal(arm.data_dir, protected) if protected else None
    else:
        doc["_config"] = config
        doc["_run"] = False
        # A run of the same configuration may still be pending: it keeps what it needs.
        doc["_protectedSettings"] = (existing or {}).get("_protectedSettings")
    return doc


class ExtensionFailure(ArmError):
    def __init__(self, name: str, message: str, *, timed_out: bool = False) -> None:
        if timed_out:
            super().__init__(
                200,
                "VMExtensionProvisioningTimeout",
                "Provisioning of VM extension "
                + name
                + " has timed out. Extension provisioning has taken too "
                "long to complete. The extension last reported a message: '" + message + "'.",
            )
        else:
            super().__init__(
                200,
                "VMExtensionProvisioningError",
                f"VM has reported a failure when processing extension '{name}' (publisher '{CSE_PUBLISHER}' and "
                f"type '{CSE_TYPE}'). Error message: '{message}'. More information on troubleshooting is "
                "available at https://aka.ms/VMExtensionCSELinuxTroubleshoot.",
            )


def extension_work(
    arm: LocalArm, rid: ResourceId, doc: Doc, injected_exit: int | None
) -> Callable[[], None] | None:
    if not doc.get("_run"):
        return None
    parent = rid.parent
    assert parent is not None

    def run() -> None:
        vm = arm.store.get(parent.key)
        if vm is None:
            raise ArmError(404, "ParentResourceNotFound", f"Parent resource '{parent.name}' not found.")
        vm_dir = arm.data_dir / "vms" / vm["properties"]["vmId"]
        if injected_exit is not None:
            out, err = "", f"injected fault: the script exited with status {injected_exit}\n"
            message = (
                f"Enable failed: failed to execute command: command terminated with exit status="
                f"{injected_exit}\n[stdout]\n{out}\n[stderr]\n{err}"
            )
            outcome_ok, timed_out = False, False
        else:
            outcome = run_custom_script(
                vm_dir,
                int(doc["_seqnum"]),
                doc["properties"].get("settings") or {},
                sealed.unseal(arm.data_dir, doc.get("_protectedSettings")),
                vm_disks_for_script(arm, vm),
                exposure=arm.disk_exposure,
                timeout=arm.extension_timeout,
            )
            message, outcome_ok, timed_out = outcome.message, outcome.succeeded, outcome.timed_out
            if arm.stopping:
                # Killed by the endpoint's shutdown, not a result: the run is resumed at the next start.
                raise ArmError(500, "InternalExecutionError", "the local ARM endpoint stopped during the run")
        state = "succeeded" if outcome_ok else "failed"
        view = {
            "name": rid.name,
            "type": f"{CSE_PUBLISHER}.{CSE_TYPE}",
            "typeHandlerVersion": doc["properties"]["typeHandlerVersion"],
            "statuses": [
                {
                    "code": f"ProvisioningState/{state}",
                    "level": "Info" if outcome_ok else "Error",
                    "displayStatus": f"Provisioning {state}",
                    "message": message,
                    "time": arm.now_iso(),
                }
            ],
        }
        # Run: the protected settings (SAS URLs) are no longer needed, so not kept.
        arm.update_doc(rid, lambda d: d.update(_instanceView=view, _run=False, _protectedSettings=None))
        if not outcome_ok:
            raise ExtensionFailure(rid.name, message, timed_out=timed_out)

    return run


def view_extension(arm: LocalArm, rid: ResourceId, doc: Doc, expand: str | None) -> Doc:
    view = dict(doc)
    if expand and "instanceview" in expand.lower() and doc.get("_instanceView"):
        view["properties"] = dict(doc["properties"], instanceView=doc["_instanceView"])
    return view
