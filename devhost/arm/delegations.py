"""Subnet delegations: a subnet handed to an Azure service, with the network actions that service is
granted on it (what `GET .../availableDelegations` lists per service).

Only the services in the table are known here; any other name is refused as Azure refuses a service
that does not offer delegation. Nothing of the service itself is emulated, and a delegated subnet
takes no NIC of ours (`nic_refused_in_delegated_subnet`): such subnets belong to their service.
"""

from __future__ import annotations

from typing import Any, Final

from devhost.arm.errors import ArmError
from devhost.arm.ids import ResourceId

DELEGATION_TYPE: Final = "Microsoft.Network/virtualNetworks/subnets/delegations"
_JOIN: Final = "Microsoft.Network/virtualNetworks/subnets/join/action"
_PREPARE: Final = "Microsoft.Network/virtualNetworks/subnets/prepareNetworkPolicies/action"
_UNPREPARE: Final = "Microsoft.Network/virtualNetworks/subnets/unprepareNetworkPolicies/action"
_SUBNET_ACTION: Final = "Microsoft.Network/virtualNetworks/subnets/action"
_NICS: Final = "Microsoft.Network/networkinterfaces/*"

SERVICE_ACTIONS: Final[dict[str, tuple[str, ...]]] = {
    "Microsoft.Sql/managedInstances": (_JOIN, _PREPARE, _UNPREPARE),
    "Microsoft.Web/serverFarms": (_SUBNET_ACTION,),
    "Microsoft.Web/hostingEnvironments": (_SUBNET_ACTION,),
    "Microsoft.ContainerInstance/containerGroups": (_SUBNET_ACTION,),
    "Microsoft.Netapp/volumes": (_NICS, _JOIN),
    "Microsoft.DBforPostgreSQL/flexibleServers": (_JOIN,),
    "Microsoft.DBforMySQL/flexibleServers": (_JOIN,),
    "Microsoft.Databricks/workspaces": (_JOIN, _PREPARE, _UNPREPARE),
    "Microsoft.Batch/batchAccounts": (_SUBNET_ACTION,),
    "Microsoft.ApiManagement/service": (_JOIN, _PREPARE),
}


def settle(subnet_id: str, given: Any, target: str) -> list[dict[str, Any]]:
    """The stored delegations of a subnet, or a refusal naming the bad one."""
    if not given:
        return []
    if not isinstance(given, list):
        raise ArmError(400, "InvalidRequestFormat", "delegations must be an array.", target=target)
    known = {name.lower(): name for name in SERVICE_ACTIONS}
    settled: list[dict[str, Any]] = []
    services: set[str] = set()
    for index, item in enumerate(given):
        name = str((item or {}).get("name") or "")
        service = str(((item or {}).get("properties") or {}).get("serviceName") or "")
        if not name:
            raise ArmError(
                400,
                "InvalidRequestFormat",
                f"delegations[{index}].name is required.",
                target=f"{target}[{index}]",
            )
        canonical = known.get(service.lower())
        if canonical is None:
            raise ArmError(
                400,
                "InvalidServiceNameOnDelegation",
                f"Subnet delegation {name} names service '{service}', which does not offer subnet delegation "
                f"(known here: {', '.join(sorted(SERVICE_ACTIONS))}).",
                target=f"{target}[{index}].properties.serviceName",
            )
        services.add(canonical)
        settled.append(
            {
                "name": name,
                "id": f"{subnet_id}/delegations/{name}",
                "type": DELEGATION_TYPE,
                "properties": {
                    "serviceName": canonical,
                    "actions": list(SERVICE_ACTIONS[canonical]),
                    "provisioningState": "Succeeded",
                },
            }
        )
    if len(services) > 1:
        raise ArmError(
            400,
            "SubnetDelegationsMultipleServices",
            f"A subnet can be delegated to one service only; {target} names {', '.join(sorted(services))}.",
            target=target,
        )
    return settled


def nic_refused_in_delegated_subnet(subnet: ResourceId, subnet_doc: dict[str, Any], target: str) -> None:
    delegated = subnet_doc["properties"].get("delegations") or []
    if delegated:
        service = delegated[0]["properties"]["serviceName"]
        raise ArmError(
            400,
            "NotSupported",
            f"The local ARM endpoint does not emulate network interfaces in subnet {subnet.name}, which is "
            f"delegated to {service}; it refuses it rather than ignore it.",
            target=target,
        )
