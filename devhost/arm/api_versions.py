"""The api-versions each resource provider publishes for the types this endpoint serves.

ARM routes a request to a resource provider only for an api-version the provider registered for
the type; anything else never reaches the provider. Two refusals, both 400, as ARM words them:

- ARM's own types (resource groups, the generic resource list): `InvalidApiVersionParameter`
  "The api-version '{v}' is invalid. The supported versions are '{comma-separated list}'.";
- a provider type: `NoRegisteredProviderFound` "No registered resource provider found for location
  '{location}' and API version '{v}' for type '{type}'. The supported api-versions are '{list}'.
  The supported locations are '{locations}'.";
- an api-version that is not a date at all is `InvalidApiVersionParameter` for every type, listing
  ARM's own versions (ARM rejects it before looking for a provider).

The lists are the stable and preview versions of the REST specification (azure-rest-api-specs,
`specification/{compute,network,resources}/resource-manager`) plus the newer ones the pinned SDKs
call (azure-mgmt-compute 39: 2026-04-01 for VMs and extensions, 2026-03-02 for disks and snapshots;
azure-mgmt-network 33.1: 2026-03-01).
"""

from __future__ import annotations

import re
from typing import Final

from devhost.arm import ids
from devhost.arm.errors import ArmError

# Microsoft.Compute's compute RP (virtualMachines and their extensions).
COMPUTE_RP: Final = (
    "2015-05-01-preview", "2015-06-15", "2016-03-30", "2016-04-30-preview", "2016-08-30", "2017-03-30",
    "2017-12-01", "2018-04-01", "2018-06-01", "2018-10-01", "2019-03-01", "2019-07-01", "2019-12-01",
    "2020-06-01", "2020-12-01", "2021-03-01", "2021-04-01", "2021-07-01", "2021-11-01", "2022-03-01",
    "2022-08-01", "2022-11-01", "2023-03-01", "2023-07-01", "2023-09-01", "2024-03-01", "2024-07-01",
    "2024-11-01", "2025-04-01", "2025-11-01", "2026-04-01",
)  # fmt: skip
# Microsoft.Compute's disk RP (disks, snapshots).
DISK_RP: Final = (
    "2016-04-30-preview", "2017-03-30", "2018-04-01", "2018-06-01", "2018-09-30", "2019-03-01",
    "2019-07-01", "2019-11-01", "2020-05-01", "2020-06-30", "2020-09-30", "2020-12-01", "2021-04-01",
    "2021-08-01", "2021-12-01", "2022-03-02", "2022-07-02", "2023-01-02", "2023-04-02", "2023-10-02",
    "2024-03-02", "2025-01-02", "2026-03-02",
)  # fmt: skip
NETWORK_RP: Final = (
    "2015-05-01-preview", "2015-06-15", "2016-03-30", "2016-06-01", "2016-07-01", "2016-08-01",
    "2016-09-01", "2016-10-01", "2016-11-01", "2016-12-01", "2017-03-01", "2017-04-01", "2017-06-01",
    "2017-08-01", "2017-09-01", "2017-10-01", "2017-11-01", "2018-01-01", "2018-02-01", "2018-03-01",
    "2018-04-01", "2018-06-01", "2018-07-01", "2018-08-01", "2018-10-01", "2018-11-01", "2018-12-01",
    "2019-02-01", "2019-04-01", "2019-06-01", "2019-07-01", "2019-08-01", "2019-09-01", "2019-11-01",
    "2019-12-01", "2020-03-01", "2020-04-01", "2020-05-01", "2020-06-01", "2020-07-01", "2020-08-01",
    "2020-11-01", "2021-02-01", "2021-03-01", "2021-05-01", "2021-08-01", "2022-01-01", "2022-05-01",
    "2022-07-01", "2022-09-01", "2022-11-01", "2023-02-01", "2023-04-01", "2023-05-01", "2023-06-01",
    "2023-09-01", "2023-11-01", "2024-01-01", "2024-03-01", "2024-05-01", "2024-07-01", "2024-10-01",
    "2025-01-01", "2025-03-01", "2025-05-01", "2025-07-01", "2025-09-01", "2025-12-01", "2026-01-01",
    "2026-03-01",
)  # fmt: skip
# ARM itself (Microsoft.Resources): resource groups and the generic resource list.
RESOURCES: Final = (
    "2014-04", "2014-02-26", "2013-03-01", "2014-01-01", "2014-04-01", "2014-04-01-preview",
    "2015-01-01", "2015-11-01", "2016-02-01", "2016-06-01", "2016-07-01", "2016-09-01", "2017-03-01",
    "2017-05-01", "2017-05-10", "2017-06-01", "2017-08-01", "2017-12-01", "2018-01-01", "2018-02-01",
    "2018-05-01", "2018-06-01", "2018-07-01", "2018-08-01", "2018-09-01", "2018-11-01", "2019-03-01",
    "2019-05-01", "2019-05-10", "2019-06-01", "2019-07-01", "2019-08-01", "2019-09-01", "2019-10-01",
    "2019-11-01", "2020-01-01", "2020-05-01", "2020-06-01", "2020-07-01", "2020-08-01", "2020-09-01",
    "2020-10-01", "2021-01-01", "2021-04-01", "2022-01-01", "2022-03-01-preview", "2022-05-01",
    "2022-06-01", "2022-09-01", "2022-11-01-preview", "2022-12-01", "2023-03-01-preview", "2023-07-01",
    "2023-07-01-preview", "2024-03-01", "2024-06-01-preview", "2024-07-01", "2024-08-01", "2024-11-01",
    "2025-01-01", "2025-03-01", "2025-04-01",
)  # fmt: skip

GENERIC_RESOURCES: Final = "Microsoft.Resources/resources"

BY_TYPE: Final[dict[str, tuple[str, ...]]] = {
    ids.RESOURCE_GROUP: RESOURCES,
    GENERIC_RESOURCES: RESOURCES,
    ids.VIRTUAL_MACHINE: COMPUTE_RP,
    ids.VM_EXTENSION: COMPUTE_RP,
    ids.AVAILABILITY_SET: COMPUTE_RP,
    ids.DISK: DISK_RP,
    ids.SNAPSHOT: DISK_RP,
    ids.VIRTUAL_NETWORK: NETWORK_RP,
    ids.SUBNET: NETWORK_RP,
    ids.NSG: NETWORK_RP,
    ids.SECURITY_RULE: NETWORK_RP,
    ids.NIC: NETWORK_RP,
    ids.PUBLIC_IP: NETWORK_RP,
}
# The operation monitors (`locations/operations`, `operationResults`) of a namespace answer the
# versions of any of its types: the endpoint hands out the version of the request that started it.
BY_NAMESPACE: Final[dict[str, tuple[str, ...]]] = {
    "microsoft.compute": tuple(sorted(set(COMPUTE_RP) | set(DISK_RP))),
    "microsoft.network": NETWORK_RP,
    "microsoft.resources": RESOURCES,
}
_ARM_OWN: Final = frozenset({ids.RESOURCE_GROUP, GENERIC_RESOURCES})
_WELL_FORMED: Final = re.compile(r"^\d{4}-\d{2}(-\d{2})?(-[A-Za-z]+)?$")
LOCAL_LOCATIONS: Final = "westeurope, northeurope, eastus, eastus2, westus, westus2, uksouth, swedencentral"


def _invalid(api_version: str, supported: tuple[str, ...]) -> ArmError:
    return ArmError(
        400,
        "InvalidApiVersionParameter",
        f"The api-version '{api_version}' is invalid. The supported versions are '{','.join(reversed(supported))}'.",
    )


def check(resource_type: str, api_version: str, location: str | None) -> None:
    """Refuse an api-version the provider of `resource_type` does not publish, as ARM does."""
    supported = BY_TYPE.get(resource_type)
    if supported is None or api_version in supported:
        return
    if resource_type in _ARM_OWN or not _WELL_FORMED.match(api_version):
        raise _invalid(api_version, RESOURCES)
    short_type = resource_type.split("/", 1)[1]
    raise ArmError(
        400,
        "NoRegisteredProviderFound",
        f"No registered resource provider found for location '{(location or 'westeurope').replace(' ', '').lower()}' "
        f"and API version '{api_version}' for type '{short_type}'. The supported api-versions are "
        f"'{', '.join(supported)}'. The supported locations are '{LOCAL_LOCATIONS}'.",
    )


def check_namespace(namespace: str, api_version: str) -> None:
    supported = BY_NAMESPACE.get(namespace.lower())
    if supported is None or api_version in supported:
        return
    raise _invalid(api_version, supported if _WELL_FORMED.match(api_version) else RESOURCES)
