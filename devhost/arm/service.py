"""The local ARM endpoint's behaviour: resources, long-running operations, faults, listings.

Every PUT, DELETE and POST action on a provider resource is an async operation as in Azure: it is
validated synchronously (a bad request is a 4xx on the call itself), the resource shows
Creating/Updating/Deleting, and an operation record stays InProgress for the latency model's duration
or the real work's (a disk import, a custom script), whichever is longer. Clients poll the
`Azure-AsyncOperation` URL (status JSON) or the `Location` URL (202 until done, then the final
result), both honouring `Retry-After`, exactly as azure-mgmt-core's ARMPolling does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

from devhost.arm import (
    access,
    availability_sets,
    compute,
    disk_upload,
    ephemeral_os_disk,
    ids,
    network,
    preconditions,
    public_ips,
    snapshot_limits,
    validation,
)
from devhost.arm.control import FaultRegistry, FaultRule, LatencyConfig, retry_after_for
from devhost.arm.cse import kill_running_scripts
from devhost.arm.disks import BlobSource
from devhost.arm.errors import ArmError, not_found, resource_group_not_found
from devhost.arm.ids import ResourceId, namespace_of, resource_group_id
from devhost.arm.store import Doc, Store

log = logging.getLogger("devhost.arm")

OPERATION_RETENTION: Final = timedelta(hours=1)
# Network answers a write that collides with a running operation with a retryable 429; compute with 409.
_BUSY_RETRY_AFTER: Final = 1
# The policy a `policy` fault pretends was violated: Azure's built-in "Not allowed resource types".
POLICY_DEFINITION_ID: Final = (
    "/providers/Microsoft.Authorization/policyDefinitions/6c112d4e-5bc7-47ae-a041-ea2d9dccd749"
)
POLICY_DEFINITION_NAME: Final = "Not allowed resource types"


@dataclass(frozen=True)
class Answer:
    """What a handler wants sent: status, JSON body (None for no body) and headers."""

    status: int
    body: Any = None
    headers: dict[str, str] | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


class LocalArm:
    def __init__(
        self,
        data_dir: Path,
        *,
        blob_connection_string: str | None,
        latency: LatencyConfig,
        disk_exposure: str = "loop",
        extension_timeout: float = 90 * 60,
        snapshot_window: timedelta = snapshot_limits.WINDOW,
    ) -> None:
        self.data_dir = data_dir
        self.snapshot_window = snapshot_window
        self.store = Store(data_dir / "arm.sqlite3")
        self.blobs = BlobSource(blob_connection_string)
        self.latency = latency
        self.faults = FaultRegistry()
        self.disk_exposure = disk_exposure
        self.extension_timeout = extension_timeout
        self.core_quota: int | None = None
        self.stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="arm-operation")

    # --- helpers used by the providers ----------------------------------------------------------------

    @staticmethod
    def now_iso() -> str:
        return utc_now().isoformat().replace("+00:00", "Z")

    @staticmethod
    def new_guid() -> str:
        return str(uuid.uuid4())

    @staticmethod
    def etag(doc: Doc) -> str:
        public = {k: v for k, v in doc.items() if not k.startswith("_")}
        digest = hashlib.sha256(json.dumps(public, sort_keys=True).encode()).hexdigest()[:32]
        return f'W/"{uuid.UUID(digest)}"'

    def tracked_doc(self, rid: ResourceId, body: dict[str, Any], existing: Doc | None) -> Doc:
        location = str(body.get("location") or (existing or {}).get("location") or "")
        if not location:
            raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
        if existing is not None and existing.get("location", "").lower() != location.lower():
            raise ArmError(
                409,
                "InvalidResourceLocation",
                f"The resource '{rid.name}' already exists in location '{existing['location']}' in resource group "
                f"'{rid.resource_group}'. A resource with the same name cannot be created in location "
                f"'{location}'. Please select a new resource name.",
            )
        tags = body.get("tags") or {}
        if not isinstance(tags, dict) or len(tags) > 50:
            raise ArmError(400, "InvalidTag", "Tags must be an object of at most 50 name/value pairs.")
        for name, value in tags.items():
            if len(name) > 512 or len(str(value)) > 256 or re.search(r"[<>%&\\?/]", name):
                raise ArmError(
                    400,
                    "InvalidTagNameCharacters",
                    f"The tag name '{name}' has invalid characters '<,>,%,&,\\,?,/' or is too long.",
                )
        return {
            "id": existing["id"] if existing else rid.arm_id,
            "name": existing["name"] if existing else rid.name,
            "type": rid.type,
            "location": location,
            "tags": {str(k): str(v) for k, v in tags.items()},
            "_created": (existing or {}).get("_created") or self.now_iso(),
            "_changed": self.now_iso(),
        }

    def of_type(self, resource_type: str) -> Iterator[tuple[str, Doc]]:
        for key, doc in self.store.items():
            if doc.get("type") == resource_type:
                yield key, doc

    def children(self, parent: ResourceId, child_type: str) -> list[tuple[str, Doc]]:
        prefix = f"{parent.key}/{child_type.lower()}/"
        return sorted(
            ((k, d) for k, d in self.store.items() if k.startswith(prefix) and "/" not in k[len(prefix) :]),
            key=lambda item: item[0],
        )

    def update_doc(self, rid: ResourceId, change: Callable[[Doc], None]) -> None:
        with self.store.lock:
            doc = self.store.get(rid.key)
            if doc is not None:
                change(doc)
                self.store.put(rid.key, doc)

    def cores_in_use(self) -> int:
        return sum(
            compute.cores_of(d["properties"]["hardwareProfile"]["vmSize"])
            for _, d in self.of_type(ids.VIRTUAL_MACHINE)
            if d.get("_powerState") != "deallocated"
        )

    # --- resource groups ------------------------------------------------------------------------------

    def _rg_key(self, subscription: str, name: str) -> str:
        return resource_group_id(subscription, name).lower()

    def require_resource_group(self, subscription: str, name: str) -> Doc:
        doc = self.store.get(self._rg_key(subscription, name))
        if doc is None:
            raise resource_group_not_found(name)
        return doc

    def put_resource_group(self, subscription: str, name: str, body: dict[str, Any]) -> Answer:
        validation.check_resource_group_name(name)
        self._sync_fault("PUT", ids.RESOURCE_GROUP, name, None)
        existing = self.store.get(self._rg_key(subscription, name))
        location = str(body.get("location") or "")
        if not location:
            raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
        if existing is not None and existing.get("_deleting"):
            raise ArmError(
                409,
                "ResourceGroupBeingDeleted",
                f"The resource group '{name}' is in deprovisioning state and cannot perform this operation.",
            )
        doc = {
            "id": existing["id"] if existing else resource_group_id(subscription, name),
            "name": existing["name"] if existing else name,
            "type": ids.RESOURCE_GROUP,
            "location": existing["location"] if existing else location,
            "tags": {str(k): str(v) for k, v in (body.get("tags") or {}).items()},
            "properties": {"provisioningState": "Succeeded"},
            "_created": (existing or {}).get("_created") or self.now_iso(),
        }
        self.store.put(self._rg_key(subscription, name), doc)
        return Answer(200 if existing else 201, self.public(doc))

    def get_resource_group(self, subscription: str, name: str) -> Answer:
        return Answer(200, self.public(self.require_resource_group(subscription, name)))

    def list_resource_groups(self, subscription: str) -> Answer:
        prefix = f"/subscriptions/{subscription}/resourcegroups/".lower()
        groups = [
            self.public(d)
            for k, d in self.store.items()
            if d.get("type") == ids.RESOURCE_GROUP and k.startswith(prefix)
        ]
        return Answer(200, {"value": groups})

    def delete_resource_group(self, subscription: str, name: str, base_url: str, api_version: str) -> Answer:
        self._sync_fault("DELETE", ids.RESOURCE_GROUP, name, None)
        doc = self.require_resource_group(subscription, name)
        rg_key = self._rg_key(subscription, name)
        self.update_doc_key(
            rg_key, lambda d: d.update(_deleting=True, properties={"provisioningState": "Deleting"})
        )
        op = self._new_operation(
            subscription,
            "Microsoft.Resources",
            doc["location"],
            doc["id"],
            "DELETE",
            ids.RESOURCE_GROUP,
            "delete",
            work=None,
        )
        return self._accepted(op, base_url, api_version, 202, None)

    def update_doc_key(self, key: str, change: Callable[[Doc], None]) -> None:
        with self.store.lock:
            doc = self.store.get(key)
            if doc is not None:
                change(doc)
                self.store.put(key, doc)

    def _finish_resource_group_delete(self, rg_id: str) -> None:
        prefix = rg_id.lower() + "/"
        for key, doc in list(self.store.items()):
            if key.startswith(prefix):
                rid = ids.parse_resource_id(doc["id"])
                if rid is not None and rid.type in (ids.DISK, ids.SNAPSHOT):
                    compute.on_disk_deleted(self, rid, doc)
                self.store.delete(key)
        self.store.delete(rg_id)

    # --- faults ---------------------------------------------------------------------------------------

    def _sync_fault(
        self, method: str, resource_type: str, name: str, action: str | None, *, cores: int = 2
    ) -> None:
        rule = self.faults.take(method, resource_type, name, action, asynchronous=False)
        if rule is None:
            return
        raise self._fault_error(rule, method, resource_type, name, cores)

    def _fault_error(
        self, rule: FaultRule, method: str, resource_type: str, name: str, cores: int
    ) -> ArmError:
        if rule.fault == "throttle":
            kind = {"GET": "read", "DELETE": "delete"}.get(method.upper(), "write")
            return ArmError(
                429,
                "SubscriptionRequestsThrottled",
                f"Number of '{kind}' requests for subscription actor exceeded. Please try again after "
                f"'{rule.retryAfter}' seconds after additional tokens are available. Refer to "
                "https://aka.ms/arm-throttling",
                headers={"Retry-After": str(rule.retryAfter)},
            )
        if rule.fault == "conflict":
            return ArmError(
                409,
                "AnotherOperationInProgress",
                f"Another operation on this or dependent resource is in progress. Operation on '{name}' "
                "cannot be performed now.",
            )
        if rule.fault == "internal":
            return ArmError(
                500, "InternalServerError", "Encountered internal server error. Please try again."
            )
        if rule.fault == "quota":
            in_use = self.cores_in_use()
            limit = rule.quotaLimit if rule.quotaLimit is not None else in_use
            return compute.quota_error(limit, in_use, cores)
        # policy
        assignment_id = (
            "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.Authorization/"
            "policyAssignments/deny-network-artefacts"
        )
        identifiers = [
            {
                "policyAssignment": {"name": "Deny network artefacts", "id": assignment_id},
                "policyDefinition": {
                    "name": POLICY_DEFINITION_NAME,
                    "id": POLICY_DEFINITION_ID,
                    "version": "1.0.0",
                },
            }
        ]
        return ArmError(
            403,
            "RequestDisallowedByPolicy",
            f"Resource '{name}' was disallowed by policy. Policy identifiers: '{json.dumps(identifiers)}'.",
            target=name,
            additional_info=[
                {
                    "type": "PolicyViolation",
                    "info": {
                        "evaluationDetails": {
                            "evaluatedExpressions": [
                                {
                                    "result": "True",
                                    "expressionKind": "Field",
                                    "expression": "type",
                                    "path": "type",
                                    "expressionValue": resource_type,
                                    "targetValue": [resource_type],
                                    "operator": "In",
                                }
                            ]
                        },
                        "policyDefinitionId": POLICY_DEFINITION_ID,
                        "policyDefinitionName": "6c112d4e-5bc7-47ae-a041-ea2d9dccd749",
                        "policyDefinitionDisplayName": POLICY_DEFINITION_NAME,
                        "policyDefinitionEffect": "deny",
                        "policyAssignmentId": assignment_id,
                        "policyAssignmentName": "deny-network-artefacts",
                        "policyAssignmentDisplayName": "Deny network artefacts",
                        "policyAssignmentScope": "/subscriptions/00000000-0000-0000-0000-000000000000",
                        "policyAssignmentParameters": {},
                    },
                }
            ],
        )

    # --- provider resources ---------------------------------------------------------------------------

    def public(self, doc: Doc) -> Doc:
        return {k: v for k, v in doc.items() if not k.startswith("_")}

    def view(self, rid: ResourceId, doc: Doc, expand: str | None = None) -> Doc:
        if rid.type == ids.VIRTUAL_NETWORK:
            out = network.view_vnet(self, rid, doc)
        elif rid.type == ids.SUBNET:
            out = network.view_subnet(self, rid, doc)
        elif rid.type == ids.NSG:
            out = network.view_nsg(self, rid, doc)
        elif rid.type == ids.NIC:
            out = network.view_nic(self, rid, doc)
        elif rid.type in (ids.DISK, ids.SNAPSHOT):
            out = compute.view_disk(self, rid, doc)
        elif rid.type == ids.VIRTUAL_MACHINE:
            out = compute.view_vm(self, rid, doc, expand)
        elif rid.type == ids.VM_EXTENSION:
            out = compute.view_extension(self, rid, doc, expand)
        elif rid.type == ids.AVAILABILITY_SET:
            out = availability_sets.view(self, rid, doc)
        elif rid.type == ids.PUBLIC_IP:
            out = public_ips.view(self, rid, doc)
        else:
            out = doc
        out = self.public(out)
        if namespace_of(rid.type) == "Microsoft.Network":
            out.setdefault("etag", self.etag(doc))
        elif rid.type == ids.VIRTUAL_MACHINE and preconditions.etag_of(doc):
            out["etag"] = preconditions.etag_of(doc)
        return out

    def _busy(self, rid: ResourceId) -> None:
        """Refuse a write while an operation on the resource or one of its parents is still running."""
        keys = {rid.key}
        parent = rid.parent
        while parent is not None:
            keys.add(parent.key)
            parent = parent.parent
        for op in self.store.operations():
            if op["status"] == "InProgress" and op["resourceId"].lower() in keys:
                if namespace_of(rid.type) == "Microsoft.Network":
                    raise ArmError(
                        429,
                        "RetryableErrorDueToAnotherOperation",
                        f"Operation on {rid.type} {rid.name} cannot be performed now because another operation "
                        f"({op['name']}) on the same or a dependent resource is in progress. Retry later.",
                        headers={"Retry-After": str(_BUSY_RETRY_AFTER)},
                    )
                raise ArmError(
                    409,
                    "AnotherOperationInProgress",
                    f"Operation '{op['method']}' on '{rid.name}' is not allowed since another operation "
                    f"({op['name']}) is in progress on it.",
                )

    def _prepare(self, rid: ResourceId, body: dict[str, Any], existing: Doc | None) -> Doc:
        if rid.type == ids.VIRTUAL_NETWORK:
            return network.prepare_vnet(self, rid, body, existing)
        if rid.type == ids.SUBNET:
            return network.prepare_subnet(self, rid, body, existing)
        if rid.type == ids.NSG:
            return network.prepare_nsg(self, rid, body, existing)
        if rid.type == ids.SECURITY_RULE:
            return network.prepare_security_rule(self, rid, body, existing)
        if rid.type == ids.NIC:
            return network.prepare_nic(self, rid, body, existing)
        if rid.type in (ids.DISK, ids.SNAPSHOT):
            return compute.prepare_disk(self, rid, body, existing)
        if rid.type == ids.VIRTUAL_MACHINE:
            return compute.prepare_vm(self, rid, body, existing)
        if rid.type == ids.VM_EXTENSION:
            return compute.prepare_extension(self, rid, body, existing)
        if rid.type == ids.AVAILABILITY_SET:
            return availability_sets.prepare(self, rid, body, existing)
        if rid.type == ids.PUBLIC_IP:
            return public_ips.prepare(self, rid, body, existing)
        raise ArmError(400, "InvalidResourceType", f"The resource type '{rid.type}' is not supported here.")

    def _put_action(self, rid: ResourceId, doc: Doc, existing: Doc | None) -> str:
        if rid.type == ids.DISK and existing is None:
            kind = (doc.get("_work") or {}).get("kind")
            return f"put:{kind}" if kind in ("import", "copy") else "put"
        if rid.type == ids.VIRTUAL_MACHINE and existing is not None:
            return "put:update"
        return "put"

    def put(
        self, rid: ResourceId, body: dict[str, Any], base_url: str, api_version: str, *, method: str = "PUT"
    ) -> Answer:
        self.require_resource_group(rid.subscription, rid.resource_group)
        validation.refuse_unemulated(rid.type, body)
        size = str(((body.get("properties") or {}).get("hardwareProfile") or {}).get("vmSize") or "")
        if method == "PUT":  # a PATCH met its front-door faults already
            self._sync_fault("PUT", rid.type, rid.name, None, cores=compute.cores_of(size))
        if rid.type == ids.AVAILABILITY_SET:  # synchronous in Azure: no operation to poll
            with self.store.lock:
                doc = self._prepare(rid, body, self.store.get(rid.key))
                self.store.put(rid.key, doc)
            return Answer(200, self.view(rid, doc))
        with self.store.lock:
            self._busy(rid)
            existing = self.store.get(rid.key)
            doc = self._prepare(rid, body, existing)
            if rid.type == ids.VIRTUAL_MACHINE:
                # The VM's etag: a new version of its model at each accepted PUT or PATCH.
                doc[preconditions.VERSION] = int((existing or {}).get(preconditions.VERSION) or 0) + 1
            doc.setdefault("properties", {})
            doc["properties"]["provisioningState"] = "Updating" if existing else "Creating"
            if rid.type in (ids.DISK, ids.SNAPSHOT) and existing is None:
                doc["properties"]["provisioningState"] = (
                    "Updating"  # what the disk RP reports while importing
                )
            self.store.put(rid.key, doc)
        fault = self.faults.take(method, rid.type, rid.name, None, asynchronous=True)
        work: Callable[[], None] | None = None
        if rid.type in (ids.DISK, ids.SNAPSHOT):
            work = compute.disk_work(self, doc)
        elif rid.type == ids.VM_EXTENSION:
            injected = fault.exitStatus if fault is not None and fault.fault == "extensionFailure" else None
            if injected is not None:
                self.update_doc(rid, lambda d: d.update(_run=True))
                doc["_run"] = True
            work = compute.extension_work(self, rid, doc, injected)
        if fault is not None and fault.fault == "operationFailure":
            work = _failing_work
        location = self._location_of(rid, doc)
        op = self._new_operation(
            rid.subscription,
            namespace_of(rid.type),
            location,
            doc["id"],
            "PUT",
            rid.type,
            self._put_action(rid, doc, existing),
            work=work,
        )
        if rid.type in (ids.DISK, ids.SNAPSHOT):
            status = 202 if existing is None else 200
        else:
            status = 201 if existing is None else 200
        return self._accepted(op, base_url, api_version, status, self.view(rid, doc))

    def _location_of(self, rid: ResourceId, doc: Doc) -> str:
        if doc.get("location"):
            return str(doc["location"])
        parent = rid.parent
        while parent is not None:
            parent_doc = self.store.get(parent.key)
            if parent_doc and parent_doc.get("location"):
                return str(parent_doc["location"])
            parent = parent.parent
        return "local"

    def get(self, rid: ResourceId, expand: str | None) -> Answer:
        self.require_resource_group(rid.subscription, rid.resource_group)
        self._sync_fault("GET", rid.type, rid.name, None)
        doc = self.store.get(rid.key)
        if doc is None:
            if rid.parent is not None and self.store.get(rid.parent.key) is None:
                raise not_found(rid.parent.type, rid.parent.name, rid.resource_group)
            raise not_found(rid.type, rid.name, rid.resource_group)
        return Answer(200, self.view(rid, doc, expand))

    def delete(self, rid: ResourceId, base_url: str, api_version: str) -> Answer:
        self.require_resource_group(rid.subscription, rid.resource_group)
        self._sync_fault("DELETE", rid.type, rid.name, None)
        with self.store.lock:
            doc = self.store.get(rid.key)
            if doc is None:
                return Answer(204)
            self._busy(rid)
            if rid.type == ids.SUBNET:
                network.check_subnet_unused(self, rid)
            elif rid.type == ids.VIRTUAL_NETWORK:
                network.check_vnet_deletable(self, rid, doc)
            elif rid.type == ids.NSG:
                network.check_nsg_deletable(self, rid, doc)
            elif rid.type == ids.NIC:
                network.check_nic_deletable(self, rid, doc)
            elif rid.type == ids.PUBLIC_IP:
                public_ips.check_deletable(self, rid, doc)
            elif rid.type == ids.DISK:
                compute.check_disk_deletable(self, rid, doc)
            elif rid.type == ids.AVAILABILITY_SET:
                availability_sets.check_deletable(self, rid)
                self.store.delete(rid.key)
                return Answer(200)
            doc["properties"] = dict(doc.get("properties") or {}, provisioningState="Deleting")
            self.store.put(rid.key, doc)
        fault = self.faults.take("DELETE", rid.type, rid.name, None, asynchronous=True)
        op = self._new_operation(
            rid.subscription,
            namespace_of(rid.type),
            self._location_of(rid, doc),
            doc["id"],
            "DELETE",
            rid.type,
            "delete",
            work=_failing_work if fault is not None else None,
        )
        return self._accepted(op, base_url, api_version, 202, None)

    def post_action(self, rid: ResourceId, action: str, base_url: str, api_version: str) -> Answer:
        self.require_resource_group(rid.subscription, rid.resource_group)
        if rid.type != ids.VIRTUAL_MACHINE or action.lower() not in (
            "poweroff",
            "deallocate",
            "start",
            "restart",
        ):
            raise ArmError(
                404, "InvalidResourceType", f"The action '{action}' on '{rid.type}' is not supported here."
            )
        found = self.store.get(rid.key)
        size = str(((found or {}).get("properties") or {}).get("hardwareProfile", {}).get("vmSize") or "")
        self._sync_fault("POST", rid.type, rid.name, action, cores=compute.cores_of(size))
        with self.store.lock:
            doc = self.store.get(rid.key)
            if doc is None:
                raise not_found(rid.type, rid.name, rid.resource_group)
            self._busy(rid)
            if action.lower() == "deallocate":
                ephemeral_os_disk.refuse_deallocate(doc)
            if action.lower() == "start":
                compute.refuse_start_with_exported_disk(self, doc)
            if action.lower() == "start" and doc.get("_powerState") == "deallocated":
                # A deallocated VM holds no cores: starting it allocates them again, against the quota.
                compute.check_quota(self, size)
        fault = self.faults.take("POST", rid.type, rid.name, action, asynchronous=True)
        op = self._new_operation(
            rid.subscription,
            "Microsoft.Compute",
            doc["location"],
            doc["id"],
            "POST",
            rid.type,
            f"post:{action.lower()}",
            work=_failing_work if fault is not None and fault.fault == "operationFailure" else None,
        )
        return self._accepted(op, base_url, api_version, 202, None)

    def disk_access(
        self, rid: ResourceId, action: str, body: dict[str, Any], base_url: str, api_version: str
    ) -> Answer:
        """`beginGetAccess` (a read SAS, the operation's result) and `endGetAccess` (revokes every SAS
        of the resource) on a disk or snapshot, both async like Azure's."""
        self.require_resource_group(rid.subscription, rid.resource_group)
        verb = action.lower()
        if verb not in ("begingetaccess", "endgetaccess"):
            raise ArmError(
                404, "InvalidResourceType", f"The action '{action}' on '{rid.type}' is not supported here."
            )
        params: dict[str, Any] | None = None
        if verb == "begingetaccess":
            level, duration = access.parse_grant_request(body)
            params = {"access": level, "durationInSeconds": duration, "baseUrl": base_url}
        self._sync_fault("POST", rid.type, rid.name, action)
        with self.store.lock:
            doc = self.store.get(rid.key)
            if doc is None:
                raise not_found(rid.type, rid.name, rid.resource_group)
            self._busy(rid)
            if verb == "begingetaccess":
                access.check_grantable(self, rid, doc)
                disk_upload.check_grant(doc, level)
        fault = self.faults.take("POST", rid.type, rid.name, action, asynchronous=True)
        op = self._new_operation(
            rid.subscription,
            "Microsoft.Compute",
            doc["location"],
            doc["id"],
            "POST",
            rid.type,
            f"post:{verb}",
            work=_failing_work if fault is not None and fault.fault == "operationFailure" else None,
            params=params,
        )
        return self._accepted(op, base_url, api_version, 202, None)

    def patch(self, rid: ResourceId, body: dict[str, Any], base_url: str, api_version: str) -> Answer:
        """PATCH of a compute resource: the stored resource merged with the body (objects merged,
        arrays and the tag set replaced, as the compute RP's update does), then the same checks and
        async operation as a PUT that updates it."""
        self.require_resource_group(rid.subscription, rid.resource_group)
        if rid.type not in (
            ids.VIRTUAL_MACHINE,
            ids.DISK,
            ids.SNAPSHOT,
            ids.VM_EXTENSION,
            ids.AVAILABILITY_SET,
        ):
            raise ArmError(405, "MethodNotAllowed", f"PATCH is not supported on {rid.type} here.")
        self._sync_fault("PATCH", rid.type, rid.name, None)
        existing = self.store.get(rid.key)
        if existing is None:
            raise not_found(rid.type, rid.name, rid.resource_group)
        merged = merge_patch(self.public(existing), body)
        if body.get("tags") is not None:
            merged["tags"] = body["tags"]  # a resource PATCH replaces the whole tag set (ARM's rule)
        return self.put(rid, merged, base_url, api_version, method="PATCH")

    def vm_instance_view(self, rid: ResourceId) -> Answer:
        doc = self.store.get(rid.key)
        if doc is None:
            raise not_found(rid.type, rid.name, rid.resource_group)
        return Answer(200, compute.vm_instance_view(self, rid, doc))

    # --- listings -------------------------------------------------------------------------------------

    def list_type(
        self, subscription: str, resource_group: str | None, resource_type: str, parent: ResourceId | None
    ) -> Answer:
        if resource_group is not None:
            self.require_resource_group(subscription, resource_group)
        if parent is not None:
            if self.store.get(parent.key) is None:
                raise not_found(parent.type, parent.name, parent.resource_group)
            items = [
                (ids.parse_resource_id(d["id"]), d)
                for _, d in self.children(parent, resource_type.rsplit("/", 1)[1])
            ]
        else:
            prefix = (
                resource_group_id(subscription, resource_group)
                if resource_group
                else f"/subscriptions/{subscription}"
            ).lower() + "/"
            items = [
                (ids.parse_resource_id(d["id"]), d)
                for k, d in self.of_type(resource_type)
                if k.startswith(prefix)
            ]
        return Answer(200, {"value": [self.view(r, d) for r, d in items if r is not None]})

    def list_generic(
        self, subscription: str, resource_group: str | None, query: dict[str, str], base_url: str, path: str
    ) -> Answer:
        if resource_group is not None:
            self.require_resource_group(subscription, resource_group)
        predicate = parse_filter(query.get("$filter"))
        expand = {e.strip().lower() for e in (query.get("$expand") or "").split(",") if e.strip()}
        prefix = (
            resource_group_id(subscription, resource_group)
            if resource_group
            else f"/subscriptions/{subscription}"
        ).lower() + "/"
        rows = []
        for key, doc in sorted(self.store.items()):
            if not key.startswith(prefix) or doc.get("type") == ids.RESOURCE_GROUP or "location" not in doc:
                continue
            if not predicate(doc):
                continue
            row: Doc = {
                "id": doc["id"],
                "name": doc["name"],
                "type": doc["type"],
                "location": doc["location"],
            }
            if doc.get("tags"):
                row["tags"] = doc["tags"]
            if doc.get("sku"):
                row["sku"] = doc["sku"]
            if doc.get("managedBy"):
                row["managedBy"] = doc["managedBy"]
            if "createdtime" in expand:
                row["createdTime"] = doc.get("_created")
            if "changedtime" in expand:
                row["changedTime"] = doc.get("_changed") or doc.get("_created")
            if "provisioningstate" in expand:
                row["provisioningState"] = (doc.get("properties") or {}).get("provisioningState", "Succeeded")
            rows.append(row)
        top = int(query.get("$top") or 1000)
        skip = int(query.get("$skiptoken") or 0)
        page = rows[skip : skip + top]
        body: Doc = {"value": page}
        if skip + top < len(rows):
            params = {k: v for k, v in query.items() if k != "$skiptoken"}
            params["$skiptoken"] = str(skip + top)
            body["nextLink"] = f"{base_url.rstrip('/')}{path}?{urlencode(params)}"
        return Answer(200, body)

    # --- async operations -----------------------------------------------------------------------------

    def _new_operation(
        self,
        subscription: str,
        namespace: str,
        location: str,
        resource_id: str,
        method: str,
        resource_type: str,
        action: str,
        *,
        work: Callable[[], None] | None,
        params: dict[str, Any] | None = None,
    ) -> Doc:
        duration = self.latency.duration(resource_type, action)
        now = utc_now()
        self._prune_operations(now)
        op: Doc = {
            "name": str(uuid.uuid4()),
            "subscription": subscription,
            "namespace": namespace,
            "location": location.replace(" ", "").lower(),
            "resourceId": resource_id,
            "resourceType": resource_type,
            "method": method,
            "action": action,
            "status": "InProgress",
            "startTime": now.isoformat().replace("+00:00", "Z"),
            "due": now.timestamp() + duration,
        }
        if params is not None:
            op["params"] = params  # what the operation's end needs (a grant's access and duration)
        self.store.put_operation(op)
        self._spawn(op, work)
        return op

    def _prune_operations(self, now: datetime) -> None:
        # Clients poll an operation for minutes at most; an hour keeps late pollers answered.
        horizon = (now - OPERATION_RETENTION).isoformat().replace("+00:00", "Z")
        for op in self.store.operations():
            if op["status"] != "InProgress" and str(op.get("endTime", "")) < horizon:
                self.store.delete_operation(op["name"])

    def _spawn(self, op: Doc, work: Callable[[], None] | None) -> None:
        task = asyncio.get_running_loop().create_task(self._complete(op, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _complete(self, op: Doc, work: Callable[[], None] | None) -> None:
        error: ArmError | None = None
        try:
            if work is not None:
                await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except ArmError as exc:
            error = exc
        except Exception as exc:  # a bug or an I/O failure: the operation fails like an RP's internal error
            log.exception("operation %s failed", op["name"])
            error = ArmError(500, "InternalExecutionError", f"An internal execution error occurred: {exc}")
        remaining = float(op["due"]) - utc_now().timestamp()
        if remaining > 0:
            await asyncio.sleep(remaining)
        self._finish(op, error)

    def _finish(self, op: Doc, error: ArmError | None) -> None:
        rid = ids.parse_resource_id(op["resourceId"])
        with self.store.lock:
            if op["resourceType"] == ids.RESOURCE_GROUP:
                self._finish_resource_group_delete(op["resourceId"])
            elif rid is not None:
                doc = self.store.get(rid.key)
                if op["method"] == "DELETE" and doc is not None:
                    if error is None:
                        self._finish_delete(rid, doc)
                    else:
                        self.update_doc(rid, lambda d: d["properties"].update(provisioningState="Failed"))
                elif op["method"] == "PUT" and doc is not None:
                    state = "Failed" if error else "Succeeded"

                    def settle(d: Doc) -> None:
                        d["properties"]["provisioningState"] = state
                        d.pop("_work", None)  # done: a restart must not import or copy again

                    self.update_doc(rid, settle)
                    if rid.type == ids.VM_EXTENSION and rid.parent is not None:
                        # The VM's provisioning state is its latest operation's: a failed extension
                        # leaves it Failed, a later successful one Succeeded again, as in Azure.
                        self.update_doc(rid.parent, lambda d: d["properties"].update(provisioningState=state))
                elif (
                    op["method"] == "POST"
                    and doc is not None
                    and error is None
                    and rid.type in (ids.DISK, ids.SNAPSHOT)
                ):
                    if op["action"] == "post:begingetaccess":
                        op["output"] = access.without_signature(
                            access.grant(self, rid, op.get("params") or {})
                        )
                    else:
                        access.revoke(self, rid)
                elif op["method"] == "POST" and doc is not None and error is None:
                    power = {
                        "post:poweroff": "stopped",
                        "post:deallocate": "deallocated",
                        "post:start": "running",
                        "post:restart": "running",
                    }[op["action"]]
                    self.update_doc(rid, lambda d: d.update(_powerState=power))
            op["status"] = "Failed" if error else "Succeeded"
            op["endTime"] = self.now_iso()
            if error is not None:
                op["error"] = {"status": error.status, **error.body()["error"]}
            self.store.put_operation(op)

    def _finish_delete(self, rid: ResourceId, doc: Doc) -> None:
        if rid.type == ids.VIRTUAL_MACHINE:
            compute.on_vm_deleted(self, rid, doc)
        elif rid.type in (ids.DISK, ids.SNAPSHOT):
            compute.on_disk_deleted(self, rid, doc)
        for key, _ in list(self.store.items()):
            if key.startswith(rid.key + "/"):
                self.store.delete(key)
        self.store.delete(rid.key)

    def resume_operations(self) -> None:
        """After a restart: operations that were InProgress run to completion (their work again, if any)."""
        for op in self.store.operations():
            if op["status"] != "InProgress":
                continue
            rid = ids.parse_resource_id(op["resourceId"])
            doc = self.store.get(rid.key) if rid else None
            work: Callable[[], None] | None = None
            if rid is not None and doc is not None and op["method"] == "PUT":
                if rid.type in (ids.DISK, ids.SNAPSHOT):
                    work = compute.disk_work(self, doc)
                elif rid.type == ids.VM_EXTENSION:
                    work = compute.extension_work(self, rid, doc, None)
            self._spawn(op, work)

    async def drain(self) -> None:
        # Operations still running stay InProgress in the store and are resumed at the next start;
        # scripts are killed now so that their threads end (recording nothing) and release their loop
        # devices before the store closes.
        self.stopping = True
        kill_running_scripts()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.to_thread(self._executor.shutdown, True)

    def _accepted(self, op: Doc, base_url: str, api_version: str, status: int, body: Doc | None) -> Answer:
        base = base_url.rstrip("/")
        prefix = f"{base}/subscriptions/{op['subscription']}/providers/{op['namespace']}/locations/{op['location']}"
        remaining = float(op["due"]) - utc_now().timestamp()
        headers = {
            "Azure-AsyncOperation": f"{prefix}/operations/{op['name']}?api-version={api_version}",
            "Location": f"{prefix}/operationResults/{op['name']}?api-version={api_version}",
            "Retry-After": str(retry_after_for(remaining)),
        }
        return Answer(status, body, headers)

    def operation_status(self, op_id: str) -> Answer:
        op = self.store.get_operation(op_id)
        if op is None:
            raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' was not found.")
        body: Doc = {
            "id": f"/subscriptions/{op['subscription']}/providers/{op['namespace']}/locations/{op['location']}"
            f"/operations/{op['name']}",
            "name": op["name"],
            "status": op["status"],
            "startTime": op["startTime"],
        }
        headers = {}
        if op["status"] == "InProgress":
            headers["Retry-After"] = str(retry_after_for(float(op["due"]) - utc_now().timestamp()))
        else:
            body["endTime"] = op["endTime"]
        if op.get("error"):
            body["error"] = {k: v for k, v in op["error"].items() if k != "status"}
        if op.get("output") is not None and op["status"] == "Succeeded":
            # The disk RP's status carries a grant's SAS.
            body["properties"] = {"output": access.signed(self, op["output"])}
        return Answer(200, body, headers)

    def operation_result(self, op_id: str, base_url: str, api_version: str) -> Answer:
        op = self.store.get_operation(op_id)
        if op is None:
            raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' was not found.")
        if op["status"] == "InProgress":
            return self._accepted(op, base_url, api_version, 202, None)
        if op.get("error"):
            error = op["error"]
            status = int(error.get("status") or 500)
            raise ArmError(
                status if status >= 400 else 400,
                error["code"],
                error["message"],
                target=error.get("target"),
                details=error.get("details"),
                additional_info=error.get("additionalInfo"),
            )
        if op.get("output") is not None:
            return Answer(200, access.signed(self, op["output"]))
        if op["method"] == "PUT":
            rid = ids.parse_resource_id(op["resourceId"])
            doc = self.store.get(rid.key) if rid else None
            if rid is not None and doc is not None:
                return Answer(200, self.view(rid, doc))
        return Answer(204)

    def fault_rule(self, rule: FaultRule) -> int:
        return self.faults.add(rule)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects are merged key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def _failing_work() -> None:
    raise ArmError(
        500,
        "InternalOperationError",
        "An internal execution error occurred. Please retry later. (injected operationFailure)",
    )


_CLAUSE = re.compile(
    r"^\s*(?:(?P<field>tagName|tagValue|resourceType|name)\s+eq\s+'(?P<value>(?:[^']|'')*)'"
    r"|substringof\(\s*'(?P<sub>(?:[^']|'')*)'\s*,\s*name\s*\))\s*$",
    re.IGNORECASE,
)


def parse_filter(text: str | None) -> Callable[[Doc], bool]:
    """ARM's resources-list `$filter`: `tagName eq 'x' [and tagValue eq 'y']`, `resourceType eq '...'`,
    `name eq '...'`, `substringof('...', name)`, joined with `and`. Tag names match case-insensitively and
    tag values case-sensitively; a tag filter cannot be combined with other fields, as in ARM."""
    if not text or not text.strip():
        return lambda doc: True
    clauses: dict[str, str] = {}
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.match(part)
        if match is None:
            raise ArmError(
                400,
                "InvalidFilterInQueryString",
                f"Invalid $filter '{text}': clause '{part}' is not supported.",
            )
        if match.group("sub") is not None:
            clauses["substringof"] = match.group("sub").replace("''", "'")
        else:
            clauses[match.group("field").lower()] = match.group("value").replace("''", "'")
    tag_fields = {"tagname", "tagvalue"} & clauses.keys()
    if tag_fields and len(clauses) > len(tag_fields):
        raise ArmError(
            400,
            "InvalidFilterInQueryString",
            "The tag filter cannot be combined with filters on other fields.",
        )
    if "tagvalue" in clauses and "tagname" not in clauses:
        raise ArmError(400, "InvalidFilterInQueryString", "A tagValue filter needs a tagName filter.")

    def predicate(doc: Doc) -> bool:
        tags = {k.lower(): v for k, v in (doc.get("tags") or {}).items()}
        if "tagname" in clauses:
            if clauses["tagname"].lower() not in tags:
                return False
            if "tagvalue" in clauses and tags[clauses["tagname"].lower()] != clauses["tagvalue"]:
                return False
        if "resourcetype" in clauses and str(doc.get("type", "")).lower() != clauses["resourcetype"].lower():
            return False
        if "name" in clauses and str(doc.get("name", "")).lower() != clauses["name"].lower():
            return False
        return not (
            "substringof" in clauses
            and clauses["substringof"].lower() not in str(doc.get("name", "")).lower()
        )

    return predicate
