"""`GET .../virtualNetworks/{vnet}/CheckIPAddressAvailability?ipAddress=` as the network RP answers it.

`{"available": true, "isPlatformReserved": false}` for a free address; for a taken or platform-reserved
one `available: false` with up to five free addresses of the same subnet nearest to it in
`availableIPAddresses` (Azure's own hint). An address in none of the VNet's subnets is Azure's 400
`PrivateIPAddressNotInAnySubnet`; a missing `ipAddress` is its 400 naming the query parameter. "Taken"
reads the same NIC relations the NIC PUT checks, so the answer and a later create agree.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from devhost.arm.errors import ArmError, not_found
from devhost.arm.ids import ResourceId
from devhost.arm.network import used_addresses
from devhost.arm.service import Answer, LocalArm

SUGGESTIONS: Final = 5
# Azure keeps the first four addresses of every subnet (network, gateway, two DNS) and the last.
_RESERVED_HEAD: Final = 4


def check_ip_address_availability(arm: LocalArm, vnet: ResourceId, address: str | None) -> Answer:
    arm.require_resource_group(vnet.subscription, vnet.resource_group)
    if arm.store.get(vnet.key) is None:
        raise not_found(vnet.type, vnet.name, vnet.resource_group)
    if not address:
        raise ArmError(
            400,
            "PrivateIPAddressIsNullOrEmpty",
            "Private IP address is null or empty in the CheckIpAddressAvailability call. Specify "
            "IpAddress=$(ipaddress) as a query parameter in the request URI.",
        )
    try:
        ip = ipaddress.ip_address(address)
    except ValueError as exc:
        raise ArmError(
            400, "InvalidPrivateIPAddressFormat", f"Private IP address {address} has an invalid format."
        ) from exc
    for subnet_key, subnet in arm.children(vnet, "subnets"):
        props = subnet.get("properties") or {}
        prefixes = props.get("addressPrefixes") or [props.get("addressPrefix")]
        for prefix in (str(p) for p in prefixes if p):
            network = ipaddress.ip_network(prefix, strict=False)
            if ip not in network:
                continue
            used = used_addresses(arm, subnet_key, except_nic="")
            usable = list(network)[_RESERVED_HEAD:-1] if network.num_addresses <= 65536 else []
            reserved = ip not in usable
            if not reserved and str(ip) not in used:
                return Answer(200, {"available": True, "isPlatformReserved": False})
            free = [a for a in usable if str(a) not in used and a != ip]
            nearest = sorted(free, key=lambda a: (abs(int(a) - int(ip)), int(a)))[:SUGGESTIONS]
            return Answer(
                200,
                {
                    "available": False,
                    "availableIPAddresses": [str(a) for a in sorted(nearest)],
                    "isPlatformReserved": reserved,
                },
            )
    raise ArmError(
        400,
        "PrivateIPAddressNotInAnySubnet",
        f"Private static IP address {address} does not belong to the range of any subnet in the virtual "
        f"network {vnet.arm_id}.",
    )
